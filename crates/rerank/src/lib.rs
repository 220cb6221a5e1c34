//! The reranking cascade: stages of cross-encoders, each scoring the survivors of the one
//! before and keeping its best `keep`, so cheap models prune for expensive ones.
//!
//! ```no_run
//! # async fn demo(model: sieve_models::CrossEncoder) -> Result<(), sieve_rerank::RerankError> {
//! use sieve_rerank::{Cascade, Stage};
//!
//! let cascade = Cascade::new(vec![Stage { model, keep: 2 }], 3)?;
//! let texts = vec!["Berlin has 3.5 million people.".to_string(), "Paris is in France.".into(), "Bees dance.".into()];
//! let stages = cascade.run("how many people live in berlin", &texts, false, |_| {}).await?;
//! assert_eq!(stages[0].kept.len(), 2);
//! # Ok(())
//! # }
//! ```

use std::time::Duration;

use sieve_models::{CrossEncoder, ModelError};

/// Why a cascade cannot run.
#[derive(Debug, thiserror::Error)]
pub enum RerankError {
    /// The cascade is malformed; the message names the stage.
    #[error("{0}")]
    InvalidCascade(String),
    /// A model failed or refused.
    #[error(transparent)]
    Model(#[from] ModelError),
}

/// One stage: a cross-encoder and how many of its best it passes on.
#[derive(Clone)]
pub struct Stage {
    /// A loaded cross-encoder.
    pub model: CrossEncoder,
    /// Candidates this stage keeps.
    pub keep: usize,
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
    /// Survivors as (index into the cascade's input, score), best first; ties keep input order.
    pub kept: Vec<(usize, f32)>,
    /// Waiting in the model's queue.
    pub queue_time: Duration,
    /// Computing.
    pub compute_time: Duration,
}

/// Stages run in order, each on the survivors of the previous one.
#[derive(Clone)]
pub struct Cascade {
    stages: Vec<Stage>,
}

impl Cascade {
    /// Checks the stages for `candidates` inputs: each keeps at least one and no more than it
    /// receives, and every model is a cross-encoder.
    pub fn new(stages: Vec<Stage>, candidates: usize) -> Result<Cascade, RerankError> {
        let mut receives = candidates;
        for (i, stage) in stages.iter().enumerate() {
            let invalid =
                |why: String| RerankError::InvalidCascade(format!("rerank[{i}].keep: {why}"));
            if stage.keep == 0 {
                return Err(invalid("must be at least 1".into()));
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

    /// The stages.
    pub fn stages(&self) -> &[Stage] {
        &self.stages
    }

    /// Runs every stage over `texts` for `query`; `on_stage` sees each outcome as it lands.
    /// Passages longer than a model's window are cut, or with `windows` scored as
    /// overlapping windows and given the best window's score.
    pub async fn run(
        &self,
        query: &str,
        texts: &[String],
        windows: bool,
        mut on_stage: impl FnMut(&StageOutcome),
    ) -> Result<Vec<StageOutcome>, RerankError> {
        let mut survivors: Vec<usize> = (0..texts.len()).collect();
        let mut outcomes = Vec::with_capacity(self.stages.len());
        for (i, stage) in self.stages.iter().enumerate() {
            let batch: Vec<String> = survivors.iter().map(|&s| texts[s].clone()).collect();
            let span = tracing::info_span!(
                "rerank_stage",
                stage = i + 1,
                model = stage.model.name(),
                candidates = batch.len(),
                keep = stage.keep,
            );
            let scored =
                tracing::Instrument::instrument(stage.model.score(query, batch, windows), span)
                    .await?;
            let kept = best(&survivors, &scored.scores, stage.keep);
            survivors = kept.iter().map(|&(index, _)| index).collect();
            let outcome = StageOutcome {
                stage: i + 1,
                model: stage.model.name().to_string(),
                scored: scored.scores.len(),
                kept,
                queue_time: scored.queue_time,
                compute_time: scored.compute_time,
            };
            on_stage(&outcome);
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
mod tests {
    use super::*;

    #[test]
    fn best_keeps_the_top_scores_and_input_order_on_ties() {
        let kept = best(&[7, 3, 9, 4, 1], &[0.5, 2.0, -1.0, 2.0, 0.5], 4);
        assert_eq!(kept, vec![(3, 2.0), (4, 2.0), (7, 0.5), (1, 0.5)]);
        assert_eq!(best(&[7, 3], &[1.0, 2.0], 5), vec![(3, 2.0), (7, 1.0)]);
    }
}
