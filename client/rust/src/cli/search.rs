//! `sieve search QUERY`: one search, printed as a table or as JSON.

use crate::{Client, proto};
use clap::ValueEnum;

use super::output;

#[derive(Debug, clap::Args)]
pub struct Args {
    /// Query text.
    query: String,
    /// Collection.
    #[arg(short, long, env = "SIEVE_COLLECTION")]
    collection: String,
    /// Retrievers to run (default: hybrid with --vector and text, dense with --vector alone,
    /// else bm25).
    #[arg(long, value_enum)]
    mode: Option<ModeArg>,
    /// Hits to return.
    #[arg(short = 'k', long, default_value_t = 10)]
    top_k: u32,
    /// Metadata filter, repeatable (all must hold): `key=value`, `key>=number`,
    /// `key<=number`, `key in a,b,c`. Values: true/false, integers, or strings ("quoted" to
    /// force a string).
    #[arg(short, long)]
    filter: Vec<String>,
    /// Query vector as a JSON array, e.g. '[0.1, 0.2]'.
    #[arg(long)]
    vector: Option<String>,
    /// BM25 candidates.
    #[arg(long)]
    bm25_k: Option<u32>,
    /// Dense candidates.
    #[arg(long)]
    dense_k: Option<u32>,
    /// RRF constant.
    #[arg(long)]
    rrf_k: Option<u32>,
    /// Fusion method.
    #[arg(long, value_enum)]
    fusion: Option<FusionArg>,
    /// BM25 weight in fusion.
    #[arg(long)]
    bm25_weight: Option<f32>,
    /// Dense weight in fusion.
    #[arg(long)]
    dense_weight: Option<f32>,
    #[command(flatten)]
    cascade: CascadeArgs,
    /// Score passages longer than a model's window as overlapping windows.
    #[arg(long)]
    windows: bool,
    /// Keep few, backfill: each stage's list goes on, after the hits it keeps, with the other
    /// candidates in first-stage order (so --top-k may exceed the last stage's keep).
    #[arg(long)]
    backfill: bool,
    /// Leave hit texts out.
    #[arg(long)]
    no_text: bool,
    /// Print the whole answer as JSON.
    #[arg(long)]
    json: bool,
}

#[derive(Clone, Copy, Debug, ValueEnum)]
pub enum ModeArg {
    Bm25,
    Dense,
    Hybrid,
}

#[derive(Clone, Copy, Debug, ValueEnum)]
enum FusionArg {
    Rrf,
    Linear,
}

/// The rerank options of `sieve search` and `sieve bench search`.
#[derive(Clone, Debug, clap::Args)]
pub struct CascadeArgs {
    /// Rerank stage `model:keep`, or `model:keep@min` to keep only candidates the model
    /// scores at least `min` (a raw logit), repeatable, in order (default: the server's
    /// cascade).
    #[arg(long, value_name = "MODEL:KEEP[@MIN]")]
    pub rerank: Vec<String>,
    /// No reranking, even if the server has a default cascade.
    #[arg(long, conflicts_with = "rerank")]
    pub no_rerank: bool,
    /// Fused candidates entering the cascade (server default 50).
    #[arg(long)]
    pub candidates: Option<u32>,
}

impl CascadeArgs {
    /// Sets the plan's stages, `no_rerank` and candidates.
    pub fn apply(&self, plan: &mut proto::Plan) -> anyhow::Result<()> {
        plan.rerank = parse_stages(&self.rerank)?;
        plan.no_rerank = self.no_rerank;
        plan.candidates = self.candidates.unwrap_or_default();
        Ok(())
    }
}

/// Parses `--rerank model:keep[@min]` stages.
pub fn parse_stages(stages: &[String]) -> anyhow::Result<Vec<proto::RerankStage>> {
    stages
        .iter()
        .map(|stage| {
            let (model, keep) = stage
                .rsplit_once(':')
                .ok_or_else(|| anyhow::anyhow!("--rerank {stage}: expected MODEL:KEEP"))?;
            let (keep, min_score) = match keep.split_once('@') {
                Some((keep, min)) => {
                    let min = min.parse().map_err(|_| {
                        anyhow::anyhow!("--rerank {stage}: MIN must be a number (a raw logit)")
                    })?;
                    (keep, Some(min))
                }
                None => (keep, None),
            };
            let keep = keep
                .parse()
                .map_err(|_| anyhow::anyhow!("--rerank {stage}: KEEP must be a number"))?;
            Ok(proto::RerankStage { model: model.to_string(), keep, min_score })
        })
        .collect()
}

/// Parses one `--filter` expression.
pub fn parse_filter(expression: &str) -> Result<proto::Filter, String> {
    let expression = expression.trim();
    if let Some((key, values)) = expression.split_once(" in ") {
        let values: Vec<proto::Value> = values.split(',').map(|v| parse_value(v.trim())).collect();
        return Ok(proto::Filter::any_of(key.trim(), values));
    }
    for (operator, is_lower_bound) in [(">=", true), ("<=", false)] {
        if let Some((key, number)) = expression.split_once(operator) {
            let bound: f64 = number
                .trim()
                .parse()
                .map_err(|_| format!("`{expression}`: {number:?} is not a number"))?;
            let (gte, lte) = if is_lower_bound { (Some(bound), None) } else { (None, Some(bound)) };
            return Ok(proto::Filter::range(key.trim(), gte, lte));
        }
    }
    match expression.split_once('=') {
        Some((key, value)) => Ok(proto::Filter::equals(key.trim(), parse_value(value.trim()))),
        None => {
            Err(format!("`{expression}` is not a filter (key=value, key>=n, key<=n, key in a,b)"))
        }
    }
}

fn parse_value(text: &str) -> proto::Value {
    if let Some(quoted) = text.strip_prefix('"').and_then(|t| t.strip_suffix('"')) {
        return quoted.into();
    }
    match text {
        "true" => true.into(),
        "false" => false.into(),
        _ => text.parse::<i64>().map_or_else(|_| text.into(), Into::into),
    }
}

pub async fn run(client: &Client, args: Args) -> anyhow::Result<()> {
    let mut filters = args
        .filter
        .iter()
        .map(|f| parse_filter(f))
        .collect::<Result<Vec<_>, _>>()
        .map_err(anyhow::Error::msg)?;
    let filter = match filters.len() {
        0 => None,
        1 => filters.pop(),
        _ => Some(proto::Filter::and(filters)),
    };
    let query_vector = match &args.vector {
        Some(json) => {
            serde_json::from_str::<Vec<f32>>(json).map_err(|e| anyhow::anyhow!("--vector: {e}"))?
        }
        None => Vec::new(),
    };
    let mode = match args.mode {
        None => proto::Mode::Unspecified,
        Some(ModeArg::Bm25) => proto::Mode::Bm25,
        Some(ModeArg::Dense) => proto::Mode::Dense,
        Some(ModeArg::Hybrid) => proto::Mode::Hybrid,
    };
    let fusion = match args.fusion {
        None => proto::Fusion::Unspecified,
        Some(FusionArg::Rrf) => proto::Fusion::Rrf,
        Some(FusionArg::Linear) => proto::Fusion::Linear,
    };
    let mut plan = proto::Plan {
        mode: mode as i32,
        bm25_k: args.bm25_k.unwrap_or_default(),
        dense_k: args.dense_k.unwrap_or_default(),
        rrf_k: args.rrf_k,
        bm25_weight: args.bm25_weight,
        dense_weight: args.dense_weight,
        fusion: fusion as i32,
        rerank_windows: args.windows,
        backfill: args.backfill.then_some(true),
        ..Default::default()
    };
    args.cascade.apply(&mut plan)?;
    let request = proto::SearchRequest {
        collection: args.collection,
        query: args.query,
        query_vector,
        top_k: args.top_k,
        filter,
        plan: Some(plan),
        include_text: Some(!args.no_text),
        ..Default::default()
    };
    let response = client.search(request).await?;
    if args.json {
        println!("{}", serde_json::to_string_pretty(&output::search(&response))?);
        return Ok(());
    }
    print_table(&response);
    Ok(())
}

fn print_table(response: &proto::SearchResponse) {
    let placement = |p: &Option<proto::RetrieverHit>| {
        p.map_or("-".to_string(), |p| format!("#{} {:.3}", p.rank, p.score))
    };
    let reranked = response.stages.len() > 1;
    print!(
        "{:>4}  {:>8}  {:<20} {:<14} {:<14} {:<5}",
        "RANK", "SCORE", "ID", "BM25", "DENSE", "FUSED"
    );
    if reranked {
        print!(" {:<22}", "RERANK STAGES");
    }
    println!(" TITLE");
    for (rank, hit) in response.hits().iter().enumerate() {
        let title: String = hit.title.chars().take(60).collect();
        print!(
            "{:>4}  {:>8.4}  {:<20} {:<14} {:<14} {:<5}",
            rank + 1,
            hit.score,
            hit.id,
            placement(&hit.bm25),
            placement(&hit.dense),
            hit.fused.map_or("-".to_string(), |f| format!("#{}", f.rank))
        );
        if reranked {
            let stages: Vec<String> =
                hit.stages.iter().map(|s| format!("#{} {:.2}", s.rank, s.score)).collect();
            print!(" {:<22}", stages.join(" > "));
        }
        println!(" {title}");
    }
    if let Some(done) = &response.done {
        let micros =
            |phase: &str| done.timings.iter().find(|t| t.phase == phase).map_or(0, |t| t.micros);
        let ms = |phase: &str| micros(phase) as f64 / 1000.0;
        let mode = proto::Mode::try_from(done.mode)
            .map_or("?", |m| m.as_str_name())
            .trim_start_matches("MODE_")
            .to_lowercase();
        println!(
            "\n{mode}: {} bm25 + {} dense candidates -> {} fused -> {} hits in {:.2} ms (embed {:.2}, bm25 {:.2}, dense {:.2}, fusion {:.2}, fetch {:.2}, rerank {:.2})",
            done.bm25_candidates,
            done.dense_candidates,
            done.fused_candidates,
            done.returned,
            ms("total"),
            ms("embed"),
            ms("bm25"),
            ms("dense"),
            ms("fusion"),
            ms("fetch"),
            ms("rerank"),
        );
        for step in &done.models {
            println!(
                "  {} {}: {} inputs, kept {}, queue {:.2} ms, compute {:.2} ms",
                step.step,
                step.model,
                step.inputs,
                step.kept,
                step.queue_micros as f64 / 1000.0,
                step.compute_micros as f64 / 1000.0
            );
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn filter_expressions_parse() {
        assert_eq!(
            parse_filter("topic=history").unwrap(),
            proto::Filter::equals("topic", "history")
        );
        assert_eq!(
            parse_filter("year >= 1900").unwrap(),
            proto::Filter::range("year", Some(1900.0), None)
        );
        assert_eq!(
            parse_filter("year<=2000.5").unwrap(),
            proto::Filter::range("year", None, Some(2000.5))
        );
        assert_eq!(parse_filter("open=true").unwrap(), proto::Filter::equals("open", true));
        assert_eq!(parse_filter("code=\"42\"").unwrap(), proto::Filter::equals("code", "42"));
        assert_eq!(parse_filter("n=42").unwrap(), proto::Filter::equals("n", 42_i64));
        assert_eq!(
            parse_filter("topic in biology, geology").unwrap(),
            proto::Filter::any_of("topic", ["biology", "geology"])
        );
        assert!(parse_filter("year>=abc").unwrap_err().contains("is not a number"));
        assert!(parse_filter("nonsense").is_err());
    }
}
