//! Running one search: embed, retrieve, fuse, fetch, rerank — reporting each list as it lands.

use std::sync::Arc;
use std::time::{Duration, Instant};

use sieve_models::Registry;
use sieve_rerank::{Candidate, Cascade, CrossEncoder, Run, ScoreCache, StagePlacement};
use sieve_storage::Metadata;

use crate::corpus::{Corpus, Hybrid, Ranked};
use crate::fusion::{Ranking, linear_fusion, reciprocal_rank_fusion};
use crate::query::{Fusion, Mode, Query};
use crate::{
    DEFAULT_CANDIDATES, DEFAULT_RERANK_CANDIDATES, DEFAULT_RRF_K, DEFAULT_TOP_K, SearchError,
};
use sieve_rerank::StageSpec;

/// Where a retriever or the fusion placed a hit.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Placement {
    /// From 1.
    pub rank: u32,
    /// The retriever's own score (or the fused score).
    pub score: f32,
}

/// One hit of a list.
#[derive(Clone, Debug, PartialEq)]
pub struct Hit {
    /// Document id.
    pub id: Arc<str>,
    /// The score of the list it is in: fused, or the stage's logit.
    pub score: f64,
    /// Where BM25 placed it.
    pub bm25: Option<Placement>,
    /// Where dense retrieval placed it.
    pub dense: Option<Placement>,
    /// Where fusion placed it.
    pub fused: Placement,
    /// Where each rerank stage it went through placed it.
    pub stages: Vec<StagePlacement>,
    /// The stage whose list this is did not keep it (plan.backfill): it follows the kept hits
    /// in first-stage order, and `score` is its fused score.
    pub backfilled: bool,
    /// Title.
    pub title: String,
    /// Text (empty when the query omits texts).
    pub text: String,
    /// Metadata.
    pub metadata: Metadata,
}

/// The list after one stage.
#[derive(Clone, Debug, PartialEq)]
pub struct StageList {
    /// "fused", then "rerank:1", "rerank:2", ...
    pub name: String,
    /// The stage's cross-encoder (rerank stages).
    pub model: Option<String>,
    /// Best first.
    pub hits: Vec<Hit>,
}

/// Time spent per phase.
#[derive(Clone, Copy, Debug, Default, PartialEq)]
pub struct Timings {
    /// Embedding the query.
    pub embed: Duration,
    /// BM25 retrieval.
    pub bm25: Duration,
    /// Dense retrieval.
    pub dense: Duration,
    /// Fusion.
    pub fusion: Duration,
    /// Payload fetch from sled.
    pub fetch: Duration,
    /// The whole cascade.
    pub rerank: Duration,
    /// Whole search.
    pub total: Duration,
}

/// One model call of a search.
#[derive(Clone, Debug, PartialEq)]
pub struct ModelStep {
    /// "embed", or "rerank:N".
    pub step: String,
    /// The model.
    pub model: String,
    /// Inputs it ran.
    pub inputs: usize,
    /// Hits kept (rerank stages).
    pub kept: usize,
    /// Inputs whose score came from the score cache (rerank stages).
    pub cached: usize,
    /// Waiting in the model's queue.
    pub queue_time: Duration,
    /// Computing.
    pub compute_time: Duration,
}

/// How a search went.
#[derive(Clone, Debug, PartialEq)]
pub struct Summary {
    /// The mode that ran.
    pub mode: Mode,
    /// Candidates BM25 returned.
    pub bm25_candidates: usize,
    /// Candidates dense retrieval returned.
    pub dense_candidates: usize,
    /// Distinct documents after fusion.
    pub fused_candidates: usize,
    /// Hits in the final list.
    pub returned: usize,
    /// Time per phase.
    pub timings: Timings,
    /// Time per model call.
    pub models: Vec<ModelStep>,
}

/// Runs searches with the server's models and default cascade.
pub struct Planner {
    models: Arc<Registry>,
    default_cascade: Vec<StageSpec>,
    score_cache: Option<Arc<ScoreCache>>,
}

/// The first stage's output: candidates with payloads, and counts.
struct FirstStage {
    hits: Vec<Hit>,
    /// Each hit as the cross-encoders read it.
    candidates: Vec<Candidate>,
    bm25_candidates: usize,
    dense_candidates: usize,
    fused_candidates: usize,
    timings: Timings,
}

fn check_weight(name: &str, weight: Option<f32>) -> Result<f64, SearchError> {
    match weight {
        None => Ok(1.0),
        Some(w) if w.is_finite() && w >= 0.0 => Ok(f64::from(w)),
        Some(w) => Err(SearchError::InvalidArgument(format!(
            "plan.{name}: must be a finite number >= 0, got {w}"
        ))),
    }
}

impl Planner {
    /// A planner over these models; `default_cascade` runs when a search names no stages.
    pub fn new(models: Arc<Registry>, default_cascade: Vec<StageSpec>) -> Planner {
        Planner { models, default_cascade, score_cache: None }
    }

    /// Rerank stages look scores up in `cache` first and keep the models' scores there.
    pub fn with_score_cache(mut self, cache: Arc<ScoreCache>) -> Planner {
        self.score_cache = Some(cache);
        self
    }

    /// The score cache, when there is one.
    pub fn score_cache(&self) -> Option<&Arc<ScoreCache>> {
        self.score_cache.as_ref()
    }

    /// The loaded models.
    pub fn models(&self) -> &Arc<Registry> {
        &self.models
    }

    /// The default cascade.
    pub fn default_cascade(&self) -> &[StageSpec] {
        &self.default_cascade
    }

    /// The cascade a plan asks for, checked against the loaded models and `candidates`.
    pub fn cascade(&self, specs: &[StageSpec], candidates: usize) -> Result<Cascade, SearchError> {
        let find = |name: &str| -> Result<Arc<dyn CrossEncoder>, String> {
            let model = self.models.cross_encoder(name).map_err(|e| e.to_string())?;
            Ok(Arc::new(model))
        };
        Ok(Cascade::from_specs(specs, candidates, find)?)
    }

    /// Runs one search; `on_list` receives the fused list, then each rerank stage's list, as
    /// they land. The last list (cut to `top_k`) is the answer.
    pub async fn search<C: Corpus + ?Sized>(
        &self,
        collection: Arc<C>,
        mut query: Query,
        mut on_list: impl FnMut(StageList),
    ) -> Result<Summary, SearchError> {
        let started = Instant::now();
        // Every check before any model or retrieval work.
        let mode = query.resolve_mode(&*collection)?;
        check_weight("bm25_weight", query.plan.bm25_weight)?;
        check_weight("dense_weight", query.plan.dense_weight)?;
        let top_k = query.top_k.unwrap_or(DEFAULT_TOP_K);
        let specs = query.plan.rerank.as_deref().unwrap_or(&self.default_cascade);
        let cascade = if specs.is_empty() {
            None
        } else {
            let candidates = query.plan.candidates.unwrap_or(DEFAULT_RERANK_CANDIDATES);
            Some((self.cascade(specs, candidates)?, candidates))
        };
        let first_n = cascade.as_ref().map_or(top_k, |(_, candidates)| *candidates);
        let text = query.text.clone();
        let windows = query.plan.rerank_windows;
        let backfill = query.plan.backfill.unwrap_or(false);
        let no_score_cache = query.plan.no_score_cache;

        let mut models = Vec::new();
        let mut embed_time = Duration::ZERO;
        if matches!(mode, Mode::Dense | Mode::Hybrid) && query.vector.is_none() {
            let name = collection
                .config()
                .dense
                .as_ref()
                .and_then(|d| d.embedder.clone())
                .expect("resolve_mode checked there is an embedder");
            let t = Instant::now();
            let span = tracing::info_span!("embed", model = name.as_str());
            let embedder = self.models.embedder(&name)?;
            let embedded = embedder.embed(vec![text.clone()]);
            let embedded = tracing::Instrument::instrument(embedded, span).await?;
            embed_time = t.elapsed();
            models.push(ModelStep {
                step: "embed".into(),
                model: name,
                inputs: 1,
                kept: 0,
                cached: 0,
                queue_time: embedded.queue_time,
                compute_time: embedded.compute_time,
            });
            query.vector = embedded.vectors.into_iter().next();
        }

        let want_candidates = cascade.is_some();
        let span = tracing::info_span!("first_stage", mode = ?mode, candidates = first_n);
        let first = tokio::task::spawn_blocking(move || {
            let _entered = span.enter();
            first_stage(&*collection, &query, mode, first_n, want_candidates)
        })
        .await
        .map_err(|e| SearchError::Internal(format!("first stage: {e}")))??;
        let mut timings = Timings { embed: embed_time, ..first.timings };
        let mut summary = Summary {
            mode,
            bm25_candidates: first.bm25_candidates,
            dense_candidates: first.dense_candidates,
            fused_candidates: first.fused_candidates,
            returned: first.hits.len().min(top_k),
            timings,
            models,
        };
        let FirstStage { hits: fused, candidates, .. } = first;
        let fused_list = if cascade.is_some() {
            fused.clone()
        } else {
            fused.iter().take(top_k).cloned().collect()
        };
        on_list(StageList { name: "fused".into(), model: None, hits: fused_list });

        if let Some((cascade, _)) = cascade {
            let rerank_started = Instant::now();
            let rerank_span = tracing::info_span!("rerank", stages = cascade.stages().len());
            let returned = &mut summary.returned;
            let cache = if no_score_cache { None } else { self.score_cache.as_deref() };
            let run = Run { query: &text, top_k, windows, backfill, cache };
            let outcomes = cascade.run(&run, &candidates, |outcome, list| {
                let hits: Vec<Hit> = list
                    .into_iter()
                    .map(|ranked| {
                        let fused = &fused[ranked.index];
                        Hit {
                            score: ranked.score.map_or(fused.score, f64::from),
                            stages: ranked.placements,
                            backfilled: ranked.score.is_none(),
                            ..fused.clone()
                        }
                    })
                    .collect();
                *returned = hits.len();
                on_list(StageList {
                    name: format!("rerank:{}", outcome.stage),
                    model: Some(outcome.model.clone()),
                    hits,
                });
            });
            let outcomes = tracing::Instrument::instrument(outcomes, rerank_span).await?;
            timings.rerank = rerank_started.elapsed();
            summary.models.extend(outcomes.into_iter().map(|o| ModelStep {
                step: format!("rerank:{}", o.stage),
                model: o.model,
                inputs: o.scored,
                kept: o.kept.len(),
                cached: o.cached,
                queue_time: o.queue_time,
                compute_time: o.compute_time,
            }));
        }
        timings.total = started.elapsed();
        summary.timings = timings;
        Ok(summary)
    }
}

/// The most first-stage candidates a corpus over shards brings back with its lists (a
/// cascade's candidates, usually more, are fetched in their own round).
const MAX_PREFETCH: usize = 20;

/// BM25 and dense retrieval (in parallel when both run), fusion, and the payloads of the best
/// `first_n` fused candidates.
fn first_stage(
    collection: &(impl Corpus + ?Sized),
    query: &Query,
    mode: Mode,
    first_n: usize,
    want_candidates: bool,
) -> Result<FirstStage, SearchError> {
    let plan = &query.plan;
    let bm25_weight = check_weight("bm25_weight", plan.bm25_weight)?;
    let dense_weight = check_weight("dense_weight", plan.dense_weight)?;
    let filter = query.filter.as_ref();
    // A retriever running alone must supply at least the candidates asked for.
    let alone = |retriever: Mode| if mode == retriever { first_n } else { 0 };
    let parent = tracing::Span::current();
    let run_bm25 = || -> Result<(Ranked, Duration), SearchError> {
        let _span = tracing::info_span!(parent: &parent, "bm25").entered();
        let t = Instant::now();
        let k = plan.bm25_k.unwrap_or(DEFAULT_CANDIDATES).max(alone(Mode::Bm25));
        Ok((collection.bm25(&query.text, k, filter)?, t.elapsed()))
    };
    let run_dense = || -> Result<(Ranked, Duration), SearchError> {
        let _span = tracing::info_span!(parent: &parent, "dense").entered();
        let t = Instant::now();
        let k = plan.dense_k.unwrap_or(DEFAULT_CANDIDATES).max(alone(Mode::Dense));
        let vector = query.vector.as_deref().expect("the vector was given or embedded");
        Ok((collection.dense(vector, k, filter)?, t.elapsed()))
    };
    let none = || Ok((Vec::new(), Duration::ZERO));
    collection.prefetch(if first_n <= MAX_PREFETCH { first_n } else { 0 });
    let (bm25, dense) = match mode {
        Mode::Bm25 => (run_bm25(), none()),
        Mode::Dense => (none(), run_dense()),
        // Each list in its own `bm25` and `dense` span.
        Mode::Hybrid => {
            let lists = Hybrid {
                text: &query.text,
                bm25_k: plan.bm25_k.unwrap_or(DEFAULT_CANDIDATES),
                vector: query.vector.as_deref().expect("the vector was given or embedded"),
                dense_k: plan.dense_k.unwrap_or(DEFAULT_CANDIDATES),
                filter,
            };
            match collection.hybrid(lists) {
                Ok(both) => (Ok(both.bm25), Ok(both.dense)),
                Err(e) => (Err(e), none()),
            }
        }
    };
    let (bm25, bm25_time) = bm25?;
    let (dense, dense_time) = dense?;

    let fusion_span = tracing::info_span!("fusion").entered();
    let fusion_started = Instant::now();
    let to_ranking = |weight: f64, list: &Ranked| Ranking { weight, entries: list.clone() };
    let lists = [to_ranking(bm25_weight, &bm25), to_ranking(dense_weight, &dense)];
    let fused = match plan.fusion {
        Fusion::Rrf => {
            reciprocal_rank_fusion(&lists, f64::from(plan.rrf_k.unwrap_or(DEFAULT_RRF_K)))
        }
        Fusion::Linear => linear_fusion(&lists),
    };
    let fusion_time = fusion_started.elapsed();
    drop(fusion_span);
    let _fetch_span = tracing::info_span!("fetch").entered();

    let fetch_started = Instant::now();
    let placement = |list: &Ranked, rank: Option<u32>| {
        rank.map(|rank| Placement { rank, score: list[rank as usize - 1].1 })
    };
    let mut hits = Vec::with_capacity(first_n.min(fused.len()));
    let mut candidates = Vec::new();
    let mut next = fused.iter().enumerate();
    // Fetched in batches of what is still missing: a document deleted since retrieval is
    // skipped, and the next one takes its place.
    while hits.len() < first_n {
        let batch: Vec<(usize, &crate::Fused)> = next.by_ref().take(first_n - hits.len()).collect();
        if batch.is_empty() {
            break;
        }
        let ids: Vec<Arc<str>> = batch.iter().map(|(_, entry)| Arc::clone(&entry.id)).collect();
        for ((position, entry), doc) in batch.into_iter().zip(collection.fetch(&ids)?) {
            let Some(doc) = doc else { continue };
            if want_candidates {
                candidates
                    .push(Candidate { passage: sieve_rerank::passage(&doc.title, &doc.text) });
            }
            hits.push(Hit {
                id: Arc::clone(&entry.id),
                score: entry.score,
                bm25: placement(&bm25, entry.ranks[0]),
                dense: placement(&dense, entry.ranks[1]),
                fused: Placement { rank: position as u32 + 1, score: entry.score as f32 },
                stages: Vec::new(),
                backfilled: false,
                title: doc.title,
                text: if query.omit_text { String::new() } else { doc.text },
                metadata: doc.metadata,
            });
        }
    }
    let fetch_time = fetch_started.elapsed();
    Ok(FirstStage {
        bm25_candidates: bm25.len(),
        dense_candidates: dense.len(),
        fused_candidates: fused.len(),
        hits,
        candidates,
        timings: Timings {
            bm25: bm25_time,
            dense: dense_time,
            fusion: fusion_time,
            fetch: fetch_time,
            ..Timings::default()
        },
    })
}
