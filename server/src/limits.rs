//! Admission control: how many searches and ingest streams run at once (over the limit a call
//! is refused at once with RESOURCE_EXHAUSTED, not queued), and the deadline a search runs under
//! (the client's `grpc-timeout`, capped by `request_timeout_secs`).
//!
//! Unary calls are also bounded by tonic's own timeout layer, which drops the handler when the
//! deadline passes; searches answer with a stream, so their work is bounded here.

use std::sync::Arc;
use std::time::Duration;

use tokio::sync::{OwnedSemaphorePermit, Semaphore};
use tokio::time::Instant;
use tonic::Status;
use tonic::metadata::MetadataMap;

use crate::config::Config;

/// Permits for the work that holds memory and CPU for a while.
pub struct Admission {
    searches: Arc<Semaphore>,
    ingests: Arc<Semaphore>,
    max_searches: usize,
    max_ingests: usize,
}

impl Admission {
    pub fn new(config: &Config) -> Self {
        Admission {
            searches: Arc::new(Semaphore::new(config.max_concurrent_searches)),
            ingests: Arc::new(Semaphore::new(config.max_ingest_streams)),
            max_searches: config.max_concurrent_searches,
            max_ingests: config.max_ingest_streams,
        }
    }

    /// A slot for one search (or one SearchStream), held until it ends.
    pub fn search(&self) -> Result<OwnedSemaphorePermit, Status> {
        Arc::clone(&self.searches).try_acquire_owned().map_err(|_| {
            Status::resource_exhausted(format!(
                "{} searches are already running, the limit (max_concurrent_searches); retry with backoff",
                self.max_searches
            ))
        })
    }

    /// A slot for one ingest stream, held until it ends.
    pub fn ingest(&self) -> Result<OwnedSemaphorePermit, Status> {
        Arc::clone(&self.ingests).try_acquire_owned().map_err(|_| {
            Status::resource_exhausted(format!(
                "{} ingest streams are already open, the limit (max_ingest_streams); send more \
                 batches on an open stream or retry with backoff",
                self.max_ingests
            ))
        })
    }
}

/// When a call must be finished: its `grpc-timeout`, capped by `request_timeout_secs`
/// (0 = no cap). `None`: no deadline at all.
pub fn deadline(metadata: &MetadataMap, config: &Config) -> Result<Option<Instant>, Status> {
    let cap =
        (config.request_timeout_secs > 0).then(|| Duration::from_secs(config.request_timeout_secs));
    let asked = match metadata.get("grpc-timeout") {
        None => None,
        Some(value) => {
            let text = value.to_str().unwrap_or("");
            Some(parse_grpc_timeout(text).ok_or_else(|| {
                Status::invalid_argument(format!("grpc-timeout: '{text}' is not a gRPC timeout"))
            })?)
        }
    };
    let timeout = match (asked, cap) {
        (Some(a), Some(c)) => Some(a.min(c)),
        (a, c) => a.or(c),
    };
    Ok(timeout.map(|t| Instant::now() + t))
}

/// `grpc-timeout` per the gRPC HTTP/2 spec: up to 8 digits and a unit (H M S m u n).
fn parse_grpc_timeout(text: &str) -> Option<Duration> {
    let (digits, unit) = text.split_at(text.len().checked_sub(1)?);
    if digits.is_empty() || digits.len() > 8 || !digits.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    let n: u64 = digits.parse().ok()?;
    Some(match unit {
        "H" => Duration::from_secs(n * 3600),
        "M" => Duration::from_secs(n * 60),
        "S" => Duration::from_secs(n),
        "m" => Duration::from_millis(n),
        "u" => Duration::from_micros(n),
        "n" => Duration::from_nanos(n),
        _ => return None,
    })
}

/// Runs `work` until `deadline`; past it the work is dropped (its queued model inputs with it)
/// and the caller gets DEADLINE_EXCEEDED.
pub async fn within<T>(
    deadline: Option<Instant>,
    what: &str,
    work: impl Future<Output = Result<T, Status>>,
) -> Result<T, Status> {
    let passed = || {
        Status::deadline_exceeded(format!(
            "{what} passed its deadline and was stopped (grpc-timeout, capped by request_timeout_secs)"
        ))
    };
    match deadline {
        None => work.await,
        // Nothing starts once the deadline has passed (e.g. while queued on a SearchStream).
        Some(at) if Instant::now() >= at => Err(passed()),
        Some(at) => tokio::time::timeout_at(at, work).await.unwrap_or_else(|_| Err(passed())),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn grpc_timeouts_parse_per_the_spec() {
        assert_eq!(parse_grpc_timeout("250m"), Some(Duration::from_millis(250)));
        assert_eq!(parse_grpc_timeout("3S"), Some(Duration::from_secs(3)));
        assert_eq!(parse_grpc_timeout("2M"), Some(Duration::from_secs(120)));
        assert_eq!(parse_grpc_timeout("1H"), Some(Duration::from_secs(3600)));
        assert_eq!(parse_grpc_timeout("99999999u"), Some(Duration::from_micros(99_999_999)));
        assert_eq!(parse_grpc_timeout("5n"), Some(Duration::from_nanos(5)));
        for bad in ["", "m", "123456789m", "10x", "-5S", "1.5S"] {
            assert_eq!(parse_grpc_timeout(bad), None, "{bad}");
        }
    }

    #[test]
    fn the_deadline_is_the_sooner_of_client_and_cap() {
        let config = Config { request_timeout_secs: 10, ..Config::default() };
        let mut metadata = MetadataMap::new();
        let in_secs = |d: Option<Instant>| d.map(|d| (d - Instant::now()).as_secs_f64().round());
        assert_eq!(in_secs(deadline(&metadata, &config).unwrap()), Some(10.0));
        metadata.insert("grpc-timeout", "2S".parse().unwrap());
        assert_eq!(in_secs(deadline(&metadata, &config).unwrap()), Some(2.0));
        metadata.insert("grpc-timeout", "1H".parse().unwrap());
        assert_eq!(in_secs(deadline(&metadata, &config).unwrap()), Some(10.0));
        let uncapped = Config { request_timeout_secs: 0, ..Config::default() };
        assert_eq!(in_secs(deadline(&metadata, &uncapped).unwrap()), Some(3600.0));
        metadata.insert("grpc-timeout", "soon".parse().unwrap());
        assert_eq!(
            deadline(&metadata, &config).unwrap_err().message(),
            "grpc-timeout: 'soon' is not a gRPC timeout"
        );
    }
}
