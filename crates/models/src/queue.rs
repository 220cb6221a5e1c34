//! One queue per model, in the manner of text-embeddings-inference: callers enqueue tokenized
//! inputs; a worker thread owns the pending list, drops entries whose caller has gone, and cuts
//! batches by a token budget (padded tokens) and a size cap, grouping inputs of similar length
//! around the oldest waiting entry so nothing starves and padding stays small.

use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, mpsc};
use std::time::{Duration, Instant};

use tokio::sync::oneshot;

use crate::error::{ModelError, Result};
use crate::model::Model;
use crate::network::Outputs;
use crate::tokenize::Encoded;

/// How a model's queue cuts batches.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct BatchPolicy {
    /// Most padded tokens (longest input × inputs) in one forward pass.
    pub max_batch_tokens: usize,
    /// Most inputs in one forward pass.
    pub max_batch_requests: usize,
    /// Most inputs waiting; more are refused as overloaded.
    pub queue_capacity: usize,
}

impl Default for BatchPolicy {
    fn default() -> Self {
        Self { max_batch_tokens: 8192, max_batch_requests: 64, queue_capacity: 8192 }
    }
}

/// One model output.
#[derive(Clone, Debug, PartialEq)]
pub enum Output {
    /// A cross-encoder logit.
    Score(f32),
    /// A normalised embedding.
    Vector(Vec<f32>),
}

/// Counters of a queue, updated where the events happen.
#[derive(Debug, Default)]
pub struct QueueStats {
    /// Inputs waiting now.
    pub queued: AtomicUsize,
    /// Inputs dropped unrun because their caller went away.
    pub cancelled: AtomicU64,
    /// Forward passes run.
    pub batches: AtomicU64,
    /// Inputs run.
    pub inputs: AtomicU64,
    /// Padded tokens run.
    pub padded_tokens: AtomicU64,
}

struct Entry {
    input: Encoded,
    reply: oneshot::Sender<Result<Done>>,
}

/// What the worker sends back for one input.
struct Done {
    output: Output,
    started: Instant,
}

/// Outputs of one call, in input order, with where the time went.
#[derive(Clone, Debug, PartialEq)]
pub struct Batched {
    /// One output per input.
    pub outputs: Vec<Output>,
    /// From enqueueing to the first of these inputs starting to compute.
    pub queue_time: Duration,
    /// From then until the last one finished.
    pub compute_time: Duration,
}

/// A model's queue and the worker thread behind it.
pub struct Queue {
    model: Arc<Model>,
    sender: mpsc::Sender<Entry>,
    stats: Arc<QueueStats>,
    policy: BatchPolicy,
}

impl Queue {
    /// Starts the worker thread for `model`.
    pub fn start(model: Arc<Model>, policy: BatchPolicy) -> Result<Queue> {
        if policy.max_batch_tokens < model.max_length() || policy.max_batch_requests == 0 {
            return Err(ModelError::Unsupported(format!(
                "model '{}': max_batch_tokens ({}) must be at least its max_length ({}) and \
                 max_batch_requests at least 1",
                model.name(),
                policy.max_batch_tokens,
                model.max_length()
            )));
        }
        let (sender, receiver) = mpsc::channel();
        let stats = Arc::new(QueueStats::default());
        let worker =
            Worker { model: Arc::clone(&model), receiver, stats: Arc::clone(&stats), policy };
        std::thread::Builder::new()
            .name(format!("model-{}", model.name()))
            .spawn(move || worker.run())
            .map_err(|e| {
                ModelError::Inference(format!("starting the worker of '{}': {e}", model.name()))
            })?;
        Ok(Queue { model, sender, stats, policy })
    }

    /// The model behind the queue.
    pub fn model(&self) -> &Arc<Model> {
        &self.model
    }

    /// Its counters.
    pub fn stats(&self) -> &QueueStats {
        &self.stats
    }

    /// Its batch policy.
    pub fn policy(&self) -> BatchPolicy {
        self.policy
    }

    /// Runs the inputs, batched with whatever else is waiting. Dropping the returned future
    /// withdraws the inputs that have not started.
    pub async fn run(&self, inputs: Vec<Encoded>) -> Result<Batched> {
        let count = inputs.len();
        let waiting = self.stats.queued.fetch_add(count, Ordering::AcqRel);
        if waiting + count > self.policy.queue_capacity {
            self.stats.queued.fetch_sub(count, Ordering::AcqRel);
            return Err(ModelError::Overloaded(format!(
                "model '{}' is overloaded: {waiting} inputs waiting, {count} more would pass its \
                 queue_capacity of {}",
                self.model.name(),
                self.policy.queue_capacity
            )));
        }
        let enqueued = Instant::now();
        let mut replies = Vec::with_capacity(count);
        for input in inputs {
            let (reply, receiver) = oneshot::channel();
            if self.sender.send(Entry { input, reply }).is_err() {
                return Err(ModelError::Closed(self.model.name().to_string()));
            }
            replies.push(receiver);
        }
        let mut outputs = Vec::with_capacity(count);
        let mut first_start: Option<Instant> = None;
        for receiver in replies {
            let done =
                receiver.await.map_err(|_| ModelError::Closed(self.model.name().to_string()))??;
            first_start = Some(first_start.map_or(done.started, |t| t.min(done.started)));
            outputs.push(done.output);
        }
        let first_start = first_start.unwrap_or(enqueued);
        Ok(Batched {
            outputs,
            queue_time: first_start.saturating_duration_since(enqueued),
            compute_time: first_start.elapsed(),
        })
    }
}

struct Worker {
    model: Arc<Model>,
    receiver: mpsc::Receiver<Entry>,
    stats: Arc<QueueStats>,
    policy: BatchPolicy,
}

impl Worker {
    fn run(self) {
        let mut pending: Vec<Entry> = Vec::new();
        loop {
            if pending.is_empty() {
                match self.receiver.recv() {
                    Ok(entry) => pending.push(entry),
                    Err(_) => return,
                }
            }
            pending.extend(self.receiver.try_iter());
            pending.retain(|entry| {
                let gone = entry.reply.is_closed();
                if gone {
                    self.stats.queued.fetch_sub(1, Ordering::AcqRel);
                    self.stats.cancelled.fetch_add(1, Ordering::Relaxed);
                }
                !gone
            });
            if pending.is_empty() {
                continue;
            }
            let mut chosen = select_batch(&pending, self.policy);
            chosen.sort_unstable_by(|a, b| b.cmp(a));
            let mut batch: Vec<Entry> = chosen.into_iter().map(|i| pending.remove(i)).collect();
            batch.reverse();
            self.stats.queued.fetch_sub(batch.len(), Ordering::AcqRel);
            self.compute(batch);
        }
    }

    fn compute(&self, batch: Vec<Entry>) {
        let longest = batch.iter().map(|e| e.input.len()).max().unwrap_or(0);
        let started = Instant::now();
        let result = self.model.forward(&batch.iter().map(|e| &e.input).collect::<Vec<_>>());
        self.stats.batches.fetch_add(1, Ordering::Relaxed);
        self.stats.inputs.fetch_add(batch.len() as u64, Ordering::Relaxed);
        self.stats.padded_tokens.fetch_add((longest * batch.len()) as u64, Ordering::Relaxed);
        let elapsed = started.elapsed();
        tracing::trace!(
            model = self.model.name(),
            inputs = batch.len(),
            longest,
            ?elapsed,
            "batch"
        );
        let model = self.model.name().to_string();
        metrics::histogram!("sieve_model_batch_inputs", "model" => model.clone())
            .record(batch.len() as f64);
        metrics::histogram!("sieve_model_batch_tokens", "model" => model.clone())
            .record((longest * batch.len()) as f64);
        metrics::histogram!("sieve_model_batch_seconds", "model" => model).record(elapsed);
        match result {
            Ok(Outputs::Scores(scores)) => {
                for (entry, score) in batch.into_iter().zip(scores) {
                    let _ = entry.reply.send(Ok(Done { output: Output::Score(score), started }));
                }
            }
            Ok(Outputs::Vectors(vectors)) => {
                for (entry, vector) in batch.into_iter().zip(vectors) {
                    let _ = entry.reply.send(Ok(Done { output: Output::Vector(vector), started }));
                }
            }
            Err(error) => {
                let message = error.to_string();
                for entry in batch {
                    let _ = entry.reply.send(Err(ModelError::Inference(message.clone())));
                }
            }
        }
    }
}

/// Picks the next batch: the oldest pending input, then others in order of closeness to its
/// length, while the padded-token budget and the size cap hold. Returns indices into `pending`.
fn select_batch(pending: &[Entry], policy: BatchPolicy) -> Vec<usize> {
    let anchor = pending[0].input.len();
    let mut order: Vec<usize> = (1..pending.len()).collect();
    order.sort_by_key(|&i| (pending[i].input.len().abs_diff(anchor), i));
    let mut chosen = vec![0];
    let mut longest = anchor;
    for i in order {
        if chosen.len() == policy.max_batch_requests {
            break;
        }
        let candidate_longest = longest.max(pending[i].input.len());
        if candidate_longest * (chosen.len() + 1) <= policy.max_batch_tokens {
            chosen.push(i);
            longest = candidate_longest;
        }
    }
    chosen
}

#[cfg(test)]
mod tests {
    use super::*;

    fn entry(len: usize) -> Entry {
        let (reply, _) = oneshot::channel();
        Entry { input: Encoded { ids: vec![0; len], type_ids: vec![0; len] }, reply }
    }

    #[test]
    fn batches_group_similar_lengths_around_the_oldest_within_budget() {
        let pending: Vec<Entry> = [100, 10, 95, 300, 105, 12, 98].into_iter().map(entry).collect();
        let policy =
            BatchPolicy { max_batch_tokens: 420, max_batch_requests: 8, queue_capacity: 100 };
        // Oldest is 100 long; closest are 98, 95, 105 (4 x 105 = 420 tokens); 12 and 10 still
        // fit under the longest (6 x 105 = 630 > 420 would not): they do not.
        let mut chosen = select_batch(&pending, policy);
        chosen.sort();
        assert_eq!(chosen, vec![0, 2, 4, 6]);
        let capped = select_batch(&pending, BatchPolicy { max_batch_requests: 2, ..policy });
        assert_eq!(capped, vec![0, 6]);
        // An oversized oldest entry still goes, alone.
        let lone = select_batch(&pending[3..], BatchPolicy { max_batch_tokens: 300, ..policy });
        assert_eq!(lone, vec![0]);
    }
}
