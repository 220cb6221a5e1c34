//! The reranking cascade: stages of cross-encoders, each scoring the survivors of the one
//! before and keeping its best `keep`, so cheap models prune for expensive ones. Everything a
//! cascade decides lives here — stage specs turned into stages, what each stage scores and
//! keeps, where it placed each candidate, the final `top_k` cut — behind the [`CrossEncoder`]
//! trait, so its rules are tested with fake scorers (the models crate's cross-encoder is the
//! real one).
//!
//! ```
//! # #[tokio::main(flavor = "current_thread")]
//! # async fn main() -> Result<(), sieve_rerank::RerankError> {
//! use std::sync::Arc;
//! use sieve_rerank::{Candidate, Cascade, CrossEncoder, Run, Stage, passage};
//!
//! // Any CrossEncoder: here, one that scores a passage by how many words it shares with the query.
//! struct Overlap;
//! impl CrossEncoder for Overlap {
//!     fn name(&self) -> &str { "overlap" }
//!     fn score<'a>(&'a self, query: &'a str, passages: Vec<String>, _windows: bool)
//!         -> sieve_rerank::ScoreFuture<'a> {
//!         let scores = passages.iter()
//!             .map(|p| p.split(' ').filter(|w| query.contains(*w)).count() as f32)
//!             .collect();
//!         Box::pin(async move { Ok(sieve_rerank::Scored { scores, ..Default::default() }) })
//!     }
//! }
//! let model: Arc<dyn CrossEncoder> = Arc::new(Overlap);
//! let cascade = Cascade::new(vec![Stage { model, keep: 2, min_score: None }], 3)?;
//! let candidates: Vec<Candidate> = ["Berlin has 3.5 million people.", "Paris is in France.", "Bees dance."]
//!     .iter().map(|text| Candidate { passage: passage("", text) }).collect();
//! let run = Run { query: "how many people live in Berlin", top_k: 10, windows: false, backfill: false, cache: None };
//! let stages = cascade.run(&run, &candidates, |_, _| {}).await?;
//! assert_eq!(stages[0].kept[0].0, 0);
//! # Ok(())
//! # }
//! ```

mod cache;

pub use cache::{ENTRY_BYTES, ScoreCache};

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::time::Duration;

pub use sieve_models::{ModelError, Scored};

/// Why a cascade cannot run.
#[derive(Debug, thiserror::Error)]
pub enum RerankError {
    /// The cascade is malformed; the message names the stage and field.
    #[error("{0}")]
    InvalidCascade(String),
    /// A model failed or refused.
    #[error(transparent)]
    Model(#[from] ModelError),
}

/// What [`CrossEncoder::score`] returns.
pub type ScoreFuture<'a> = Pin<Box<dyn Future<Output = Result<Scored, ModelError>> + Send + 'a>>;

/// A model scoring (query, passage) pairs: one logit per passage, higher is more relevant.
pub trait CrossEncoder: Send + Sync {
    /// The model's name, as requests name it.
    fn name(&self) -> &str;

    /// Scores `passages` for `query`, in order. Passages longer than the model's window are
    /// cut, or with `windows` scored as overlapping windows and given the best window's score.
    fn score<'a>(&'a self, query: &'a str, passages: Vec<String>, windows: bool)
    -> ScoreFuture<'a>;
}

impl CrossEncoder for sieve_models::CrossEncoder {
    fn name(&self) -> &str {
        sieve_models::CrossEncoder::name(self)
    }

    fn score<'a>(
        &'a self,
        query: &'a str,
        passages: Vec<String>,
        windows: bool,
    ) -> ScoreFuture<'a> {
        Box::pin(sieve_models::CrossEncoder::score(self, query, passages, windows))
    }
}

/// The text a cross-encoder reads for a document: its title, a space, its text (either may
/// be empty). The one place a passage is built, so every caller scores the same text.
pub fn passage(title: &str, text: &str) -> String {
    format!("{title} {text}").trim().to_string()
}

/// A rerank stage as a request names it.
#[derive(Clone, Debug, PartialEq)]
pub struct StageSpec {
    /// A loaded cross-encoder.
    pub model: String,
    /// How many of its best it keeps.
    pub keep: usize,
    /// Only candidates it scores at least this high are kept (a raw logit of its model).
    pub min_score: Option<f32>,
}

/// One stage: a cross-encoder and how many of its best it passes on.
#[derive(Clone)]
pub struct Stage {
    /// The cross-encoder.
    pub model: Arc<dyn CrossEncoder>,
    /// Candidates this stage keeps.
    pub keep: usize,
    /// Only candidates it scores at least this high are kept; one scored below is dropped
    /// from the answer (not backfilled).
    pub min_score: Option<f32>,
}

/// One candidate entering the cascade, in first-stage order.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Candidate {
    /// The text the cross-encoders read (see [`passage`]).
    pub passage: String,
}

/// Where a rerank stage placed a candidate.
#[derive(Clone, Debug, PartialEq)]
pub struct StagePlacement {
    /// Cascade position, from 1.
    pub stage: usize,
    /// The stage's model.
    pub model: String,
    /// From 1, within the stage's list.
    pub rank: u32,
    /// The cross-encoder's logit.
    pub score: f32,
}

/// A candidate in a stage's list.
#[derive(Clone, Debug, PartialEq)]
pub struct Ranked {
    /// Its index among the cascade's candidates.
    pub index: usize,
    /// This stage's score; `None` for a candidate the stage did not keep, backfilled after
    /// those it kept (see [`Run::backfill`]).
    pub score: Option<f32>,
    /// Where each stage placed it, up to this one.
    pub placements: Vec<StagePlacement>,
}

/// What one stage did.
#[derive(Clone, Debug, PartialEq)]
pub struct StageOutcome {
    /// Position in the cascade, from 1.
    pub stage: usize,
    /// The model's name.
    pub model: String,
    /// Candidates scored.
    pub scored: usize,
    /// Of those, the scores that came from the score cache, not the model.
    pub cached: usize,
    /// Survivors as (index into the cascade's candidates, score), best first; equal scores
    /// keep the order they entered the stage in.
    pub kept: Vec<(usize, f32)>,
    /// Waiting in the model's queue.
    pub queue_time: Duration,
    /// Computing.
    pub compute_time: Duration,
}

/// One run of a cascade.
#[derive(Clone, Copy, Debug)]
pub struct Run<'a> {
    /// The query the passages are scored for.
    pub query: &'a str,
    /// The last stage's list is cut to this many (earlier stages' lists are whole).
    pub top_k: usize,
    /// Score long passages as overlapping windows instead of cutting them.
    pub windows: bool,
    /// Each stage's list goes on, after what the stage keeps, with the other candidates in
    /// their first-stage order (the next stage still scores only what this one keeps).
    pub backfill: bool,
    /// Scores are looked up here first, and the model's kept here (`None`: no cache).
    pub cache: Option<&'a ScoreCache>,
}

/// Stages run in order, each on the survivors of the previous one.
#[derive(Clone)]
pub struct Cascade {
    stages: Vec<Stage>,
}

impl Cascade {
    /// Checks the stages for `candidates` inputs: each keeps at least one and no more than it
    /// receives.
    pub fn new(stages: Vec<Stage>, candidates: usize) -> Result<Cascade, RerankError> {
        let mut receives = candidates;
        for (i, stage) in stages.iter().enumerate() {
            let invalid =
                |why: String| RerankError::InvalidCascade(format!("rerank[{i}].keep: {why}"));
            if stage.keep == 0 {
                return Err(invalid("must be at least 1".into()));
            }
            if let Some(min) = stage.min_score.filter(|m| !m.is_finite()) {
                return Err(RerankError::InvalidCascade(format!(
                    "rerank[{i}].min_score: must be a finite number (a raw logit), got {min}"
                )));
            }
            if stage.keep > receives {
                return Err(invalid(if i == 0 {
                    format!(
                        "{} is more than the {receives} candidates entering the cascade",
                        stage.keep
                    )
                } else {
                    format!("{} is more than the {receives} the previous stage keeps", stage.keep)
                }));
            }
            receives = stage.keep;
        }
        Ok(Cascade { stages })
    }

    /// The cascade `specs` name, each model found by `find` (which says why a name is not a
    /// loaded cross-encoder), checked for `candidates` inputs. Errors name the request field
    /// (`plan.rerank[i].model`, `plan.rerank[i].keep`).
    pub fn from_specs(
        specs: &[StageSpec],
        candidates: usize,
        find: impl Fn(&str) -> Result<Arc<dyn CrossEncoder>, String>,
    ) -> Result<Cascade, RerankError> {
        let stages = specs
            .iter()
            .enumerate()
            .map(|(i, spec)| {
                let model = find(&spec.model).map_err(|why| {
                    RerankError::InvalidCascade(format!("plan.rerank[{i}].model: {why}"))
                })?;
                Ok(Stage { model, keep: spec.keep, min_score: spec.min_score })
            })
            .collect::<Result<Vec<_>, RerankError>>()?;
        Cascade::new(stages, candidates).map_err(|e| match e {
            RerankError::InvalidCascade(why) => RerankError::InvalidCascade(format!("plan.{why}")),
            other => other,
        })
    }

    /// The stages.
    pub fn stages(&self) -> &[Stage] {
        &self.stages
    }

    /// Runs every stage over `candidates`; `on_stage` sees each stage's outcome and its list
    /// (the last stage's cut to `run.top_k`) as it lands. Returns every stage's outcome.
    pub async fn run(
        &self,
        run: &Run<'_>,
        candidates: &[Candidate],
        mut on_stage: impl FnMut(&StageOutcome, Vec<Ranked>),
    ) -> Result<Vec<StageOutcome>, RerankError> {
        let mut survivors: Vec<usize> = (0..candidates.len()).collect();
        let mut placements: Vec<Vec<StagePlacement>> = vec![Vec::new(); candidates.len()];
        // Scored below a stage's threshold: out of the answer, backfill included.
        let mut rejected = vec![false; candidates.len()];
        let mut outcomes = Vec::with_capacity(self.stages.len());
        let last = self.stages.len();
        for (i, stage) in self.stages.iter().enumerate() {
            let name = stage.model.name();
            let keys: Vec<u128> = match run.cache {
                Some(_) => survivors
                    .iter()
                    .map(|&s| ScoreCache::key(name, run.windows, run.query, &candidates[s].passage))
                    .collect(),
                None => Vec::new(),
            };
            let mut scores: Vec<Option<f32>> = match run.cache {
                Some(cache) => cache.get(&keys),
                None => vec![None; survivors.len()],
            };
            let missing: Vec<usize> =
                (0..survivors.len()).filter(|&j| scores[j].is_none()).collect();
            let batch: Vec<String> =
                missing.iter().map(|&j| candidates[survivors[j]].passage.clone()).collect();
            let span = tracing::info_span!(
                "rerank_stage",
                stage = i + 1,
                model = name,
                candidates = survivors.len(),
                cached = survivors.len() - missing.len(),
                keep = stage.keep,
            );
            let scored = if batch.is_empty() {
                Scored::default()
            } else {
                let scoring = stage.model.score(run.query, batch, run.windows);
                tracing::Instrument::instrument(scoring, span).await?
            };
            if scored.scores.len() != missing.len() {
                return Err(RerankError::Model(ModelError::Inference(format!(
                    "model '{name}' returned {} scores for {} passages",
                    scored.scores.len(),
                    missing.len()
                ))));
            }
            for (&j, &score) in missing.iter().zip(&scored.scores) {
                scores[j] = Some(score);
            }
            if let Some(cache) = run.cache {
                cache.put(missing.iter().zip(&scored.scores).map(|(&j, &score)| (keys[j], score)));
            }
            let scores: Vec<f32> =
                scores.into_iter().map(|s| s.expect("every score is known")).collect();
            let mut kept = best(&survivors, &scores, stage.keep);
            if let Some(min) = stage.min_score {
                for (&index, &score) in survivors.iter().zip(&scores) {
                    rejected[index] |= score < min;
                }
                kept.retain(|&(_, score)| score >= min);
            }
            let outcome = StageOutcome {
                stage: i + 1,
                model: name.to_string(),
                scored: scores.len(),
                cached: scores.len() - missing.len(),
                kept,
                queue_time: scored.queue_time,
                compute_time: scored.compute_time,
            };
            let shown = if i + 1 == last { run.top_k } else { usize::MAX };
            let mut list: Vec<Ranked> = outcome
                .kept
                .iter()
                .take(shown)
                .enumerate()
                .map(|(rank, &(index, score))| {
                    placements[index].push(StagePlacement {
                        stage: outcome.stage,
                        model: outcome.model.clone(),
                        rank: rank as u32 + 1,
                        score,
                    });
                    Ranked { index, score: Some(score), placements: placements[index].clone() }
                })
                .collect();
            if run.backfill && list.len() < shown {
                let mut kept = vec![false; candidates.len()];
                for &(index, _) in &outcome.kept {
                    kept[index] = true;
                }
                let rest = (0..candidates.len()).filter(|&index| !kept[index] && !rejected[index]);
                list.extend(rest.take(shown - list.len()).map(|index| Ranked {
                    index,
                    score: None,
                    placements: placements[index].clone(),
                }));
            }
            survivors = outcome.kept.iter().map(|&(index, _)| index).collect();
            on_stage(&outcome, list);
            outcomes.push(outcome);
        }
        Ok(outcomes)
    }
}

/// The `keep` best of `indices` by score, best first; equal scores keep their input order.
pub fn best(indices: &[usize], scores: &[f32], keep: usize) -> Vec<(usize, f32)> {
    let mut ranked: Vec<(usize, f32)> =
        indices.iter().copied().zip(scores.iter().copied()).collect();
    ranked.sort_by(|a, b| b.1.total_cmp(&a.1));
    ranked.truncate(keep);
    ranked
}

#[cfg(test)]
mod tests;
