//! `sieve ingest FILE`: streams a JSON-lines corpus in batches, with a progress bar, and
//! reports what landed and what did not.

use std::collections::VecDeque;
use std::fs::File;
use std::io::{BufRead, BufReader, Read};
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use crate::{Client, Error, jsonl, proto};
use anyhow::Context as _;
use futures::StreamExt;
use indicatif::{ProgressBar, ProgressStyle};
use tokio::sync::mpsc;
use tokio_stream::wrappers::ReceiverStream;

use super::collections::{AnalyzerArg, DistanceArg, config};

#[derive(Debug, clap::Args)]
pub struct Args {
    /// JSON lines: {"_id", "title", "text", "metadata", "vector"}; `.gz` is decompressed.
    file: PathBuf,
    /// Collection.
    #[arg(short, long, env = "SIEVE_COLLECTION")]
    collection: String,
    /// Documents per batch.
    #[arg(long, default_value_t = 256)]
    batch_size: usize,
    /// Create the collection if it does not exist (dense when the first document has a vector,
    /// with its dimension).
    #[arg(long)]
    create: bool,
    /// Vector similarity for --create.
    #[arg(long, value_enum, default_value_t = DistanceArg::Cosine)]
    distance: DistanceArg,
    /// Hide the progress bar.
    #[arg(long)]
    quiet: bool,
}

/// How many failures are printed; the rest are counted.
const SHOWN_FAILURES: usize = 10;

pub fn open(path: &Path) -> anyhow::Result<Box<dyn BufRead + Send>> {
    let file = File::open(path).with_context(|| format!("opening {}", path.display()))?;
    let reader: Box<dyn Read + Send> = if path.extension().is_some_and(|e| e == "gz") {
        Box::new(flate2::read::MultiGzDecoder::new(file))
    } else {
        Box::new(file)
    };
    Ok(Box::new(BufReader::with_capacity(1 << 20, reader)))
}

/// A batch read from the file, and the lines that did not parse.
struct Chunk {
    documents: Vec<proto::Document>,
    unreadable: Vec<String>,
}

/// Reads the file on a blocking thread, a batch at a time.
fn read_batches(
    path: PathBuf,
    batch_size: usize,
) -> anyhow::Result<mpsc::Receiver<anyhow::Result<Chunk>>> {
    let reader = open(&path)?;
    let (tx, rx) = mpsc::channel(4);
    std::thread::spawn(move || {
        let mut chunk = Chunk { documents: Vec::with_capacity(batch_size), unreadable: Vec::new() };
        for (number, line) in reader.lines().enumerate() {
            let line = match line {
                Ok(line) => line,
                Err(e) => {
                    let _ =
                        tx.blocking_send(Err(anyhow::anyhow!("reading {}: {e}", path.display())));
                    return;
                }
            };
            if line.trim().is_empty() {
                continue;
            }
            match jsonl::parse_document(&line) {
                Ok(doc) => chunk.documents.push(doc),
                Err(why) => chunk.unreadable.push(format!("line {}: {why}", number + 1)),
            }
            if chunk.documents.len() == batch_size {
                let full = std::mem::replace(
                    &mut chunk,
                    Chunk { documents: Vec::with_capacity(batch_size), unreadable: Vec::new() },
                );
                if tx.blocking_send(Ok(full)).is_err() {
                    return;
                }
            }
        }
        if !chunk.documents.is_empty() || !chunk.unreadable.is_empty() {
            let _ = tx.blocking_send(Ok(chunk));
        }
    });
    Ok(rx)
}

pub(super) fn count_lines(path: &Path) -> anyhow::Result<u64> {
    let mut reader = open(path)?;
    let mut count = 0;
    let mut buf = Vec::new();
    while reader.read_until(b'\n', &mut buf)? > 0 {
        if !buf.trim_ascii().is_empty() {
            count += 1;
        }
        buf.clear();
    }
    Ok(count)
}

/// What one ingest run landed.
pub struct Outcome {
    pub accepted: u64,
    /// Documents the server refused, with why.
    pub rejected: Vec<String>,
    /// Lines that did not parse.
    pub unreadable: Vec<String>,
    /// Durable sequence of the last ack.
    pub sequence: u64,
    pub seconds: f64,
    /// Why the stream stopped early, if it did.
    pub failure: Option<Error>,
}

impl Outcome {
    pub fn failed(&self) -> usize {
        self.rejected.len() + self.unreadable.len()
    }

    /// Prints the summary line and the first failures.
    pub fn print(&self, collection: &str) {
        println!(
            "{collection}: accepted {}, rejected by the server {}, unreadable {} in {:.1} s ({:.0} docs/s), durable at sequence {}",
            self.accepted,
            self.rejected.len(),
            self.unreadable.len(),
            self.seconds,
            self.accepted as f64 / self.seconds.max(1e-9),
            self.sequence,
        );
        for line in self.rejected.iter().chain(&self.unreadable).take(SHOWN_FAILURES) {
            eprintln!("  failed: {line}");
        }
        if self.failed() > SHOWN_FAILURES {
            eprintln!("  ... and {} more", self.failed() - SHOWN_FAILURES);
        }
    }
}

pub async fn run(client: &Client, args: Args) -> anyhow::Result<ExitCode> {
    anyhow::ensure!(args.batch_size > 0, "--batch-size must be at least 1");
    if args.create {
        let mut chunks = read_batches(args.file.clone(), 1)?;
        let first = chunks.recv().await.transpose()?;
        ensure_collection(client, &args, first.as_ref().and_then(|c| c.documents.first())).await?;
    }
    let outcome =
        stream_file(client, &args.file, &args.collection, args.batch_size, args.quiet).await?;
    outcome.print(&args.collection);
    if let Some(error) = outcome.failure {
        return Err(anyhow::Error::from(error).context("ingest stopped"));
    }
    Ok(if outcome.failed() == 0 { ExitCode::SUCCESS } else { ExitCode::FAILURE })
}

/// The server's latest backpressure advice (from the acks), read before each batch is sent.
#[derive(Default)]
struct Advice {
    /// Suggested documents per batch (0: none yet).
    size: AtomicUsize,
    /// Pause before the next batch.
    backoff_ms: AtomicU64,
}

/// Streams a JSON-lines file into `collection` in batches of at most `batch_size` (smaller when
/// the server's acks suggest it, with the pauses they ask for), with a progress bar unless
/// `quiet`.
pub async fn stream_file(
    client: &Client,
    file: &Path,
    collection: &str,
    batch_size: usize,
    quiet: bool,
) -> anyhow::Result<Outcome> {
    let total = count_lines(file)?;
    let mut chunks = read_batches(file.to_path_buf(), batch_size)?;
    let progress = if quiet { ProgressBar::hidden() } else { ProgressBar::new(total) };
    progress.set_style(
        ProgressStyle::with_template("{bar:40} {pos}/{len} docs  {per_sec}  eta {eta}  {msg}")
            .expect("valid template"),
    );
    let (requests_tx, requests_rx) = mpsc::channel::<proto::IngestRequest>(2);
    let advice = Arc::new(Advice::default());
    let feeder = {
        let progress = progress.clone();
        let collection = collection.to_string();
        let advice = Arc::clone(&advice);
        tokio::spawn(async move {
            let mut unreadable = Vec::new();
            let mut pending: VecDeque<proto::Document> = VecDeque::new();
            let mut read_all = false;
            loop {
                // The server's suggested size, never above --batch-size.
                let size = match advice.size.load(Ordering::Relaxed) {
                    0 => batch_size,
                    advised => advised.min(batch_size),
                };
                while pending.len() < size && !read_all {
                    match chunks.recv().await {
                        Some(chunk) => {
                            let chunk: Chunk = chunk?;
                            progress.inc(chunk.unreadable.len() as u64);
                            unreadable.extend(chunk.unreadable);
                            pending.extend(chunk.documents);
                        }
                        None => read_all = true,
                    }
                }
                if pending.is_empty() {
                    break;
                }
                let backoff = advice.backoff_ms.swap(0, Ordering::Relaxed);
                if backoff > 0 {
                    tokio::time::sleep(Duration::from_millis(backoff)).await;
                }
                let request = proto::IngestRequest {
                    collection: collection.clone(),
                    documents: pending.drain(..size.min(pending.len())).collect(),
                    ..Default::default()
                };
                if requests_tx.send(request).await.is_err() {
                    break;
                }
            }
            anyhow::Ok(unreadable)
        })
    };

    let started = Instant::now();
    let mut acks = client.ingest(ReceiverStream::new(requests_rx)).await?;
    let (mut accepted, mut rejected) = (0u64, Vec::new());
    let mut sequence = 0;
    let mut failure = None;
    while let Some(ack) = acks.next().await {
        match ack {
            Ok(ack) => {
                if ack.next_batch_size > 0 {
                    advice.size.store(ack.next_batch_size as usize, Ordering::Relaxed);
                }
                advice.backoff_ms.store(u64::from(ack.backoff_ms), Ordering::Relaxed);
                accepted += ack.accepted.len() as u64;
                progress.inc((ack.accepted.len() + ack.errors.len()) as u64);
                rejected.extend(ack.errors.into_iter().map(|e| {
                    format!("{}: {}", e.id, e.error.map(|e| e.message).unwrap_or_default())
                }));
                sequence = ack.sequence;
            }
            Err(status) => {
                failure = Some(Error::from(status));
                break;
            }
        }
    }
    progress.finish_and_clear();
    let unreadable = feeder.await??;
    let seconds = started.elapsed().as_secs_f64();
    Ok(Outcome { accepted, rejected, unreadable, sequence, seconds, failure })
}

async fn ensure_collection(
    client: &Client,
    args: &Args,
    first: Option<&proto::Document>,
) -> anyhow::Result<()> {
    match client.collection(&args.collection).await {
        Ok(_) => return Ok(()),
        Err(Error::Status(s)) if s.code() == tonic::Code::NotFound => {}
        Err(e) => return Err(e.into()),
    }
    let dimension = first.map(|d| d.vector.len() as u32).filter(|&d| d > 0);
    let settings = config(
        dimension,
        None,
        false,
        args.distance,
        AnalyzerArg::English,
        proto::HnswParams::default(),
    );
    let created = client.create_collection(&args.collection, settings).await?;
    let dense = created.config.and_then(|c| c.dense);
    match (dimension, dense) {
        (Some(d), _) => {
            eprintln!("created collection '{}' ({d}-dimensional vectors)", args.collection)
        }
        (None, Some(dense)) => eprintln!(
            "created collection '{}' (vectors made by the server's embedder {})",
            args.collection, dense.embedder
        ),
        (None, None) => eprintln!(
            "created collection '{}' (keyword only: the first document has no vector and the server has no default embedder)",
            args.collection
        ),
    }
    Ok(())
}
