//! Starting and stopping the real `sieve-server` binary for end-to-end tests.

#![allow(dead_code)]

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use sieve_client::{Client, proto};

/// A running `sieve-server` on a free loopback port; killed on drop.
pub struct TestServer {
    child: Child,
    /// `http://127.0.0.1:PORT`.
    pub url: String,
    /// The data directory it serves.
    pub data_dir: PathBuf,
    /// `http://127.0.0.1:PORT/metrics` when started with `--metrics-listen`.
    pub metrics_url: Option<String>,
}

impl TestServer {
    /// Starts the server on `data_dir` with extra flags and waits until it listens.
    pub fn start(data_dir: &Path, extra: &[&str]) -> TestServer {
        Self::start_logged(data_dir, &[&["--log-level", "warn"], extra].concat(), None)
    }

    /// Like [`start`](Self::start), with the server's log (stderr) written to `log` if given.
    pub fn start_logged(data_dir: &Path, extra: &[&str], log: Option<&Path>) -> TestServer {
        let command = Command::new(env!("CARGO_BIN_EXE_sieve-server"));
        Self::spawn(command, "127.0.0.1:0", data_dir, extra, log)
    }

    /// A server on a given address (`127.0.0.1:port`), so that a restart keeps it.
    pub fn start_at(data_dir: &Path, listen: &str, extra: &[&str]) -> TestServer {
        let command = Command::new(env!("CARGO_BIN_EXE_sieve-server"));
        Self::spawn(command, listen, data_dir, &[&["--log-level", "warn"], extra].concat(), None)
    }

    /// Starts the server unable to grow any file past `max_file_bytes` (`ulimit -f`, SIGXFSZ
    /// ignored), so writes fail as they do on a full disk: with `EFBIG` instead of `ENOSPC`.
    pub fn start_with_file_limit(
        data_dir: &Path,
        extra: &[&str],
        max_file_bytes: u64,
        log: &Path,
    ) -> TestServer {
        let mut command = Command::new("bash");
        command.args([
            "-c",
            &format!("trap '' XFSZ; ulimit -f {}; exec \"$0\" \"$@\"", max_file_bytes / 1024),
            env!("CARGO_BIN_EXE_sieve-server"),
            "--log-level",
            "warn",
        ]);
        Self::spawn(command, "127.0.0.1:0", data_dir, extra, Some(log))
    }

    fn spawn(
        mut command: Command,
        listen: &str,
        data_dir: &Path,
        extra: &[&str],
        log: Option<&Path>,
    ) -> TestServer {
        let stderr = match log {
            Some(path) => Stdio::from(std::fs::File::create(path).expect("log file")),
            None => Stdio::inherit(),
        };
        command
            .args(["--listen", listen, "--data-dir"])
            .arg(data_dir)
            .args(extra)
            .stdout(Stdio::piped())
            .stderr(stderr);
        let mut child = command.spawn().expect("sieve-server starts");
        let stdout = child.stdout.take().expect("stdout is piped");
        let (tx, rx) = mpsc::channel();
        std::thread::spawn(move || {
            let mut metrics = None;
            for line in BufReader::new(stdout).lines().map_while(Result::ok) {
                if let Some(url) = line.strip_prefix("sieve-server metrics on ") {
                    metrics = Some(url.to_string());
                }
                if let Some(addr) = line.strip_prefix("sieve-server listening on ") {
                    let _ = tx.send((addr.to_string(), metrics.clone()));
                }
            }
        });
        let (addr, metrics_url) = match rx.recv_timeout(Duration::from_secs(60)) {
            Ok(found) => found,
            Err(_) => {
                let _ = child.kill();
                panic!("sieve-server did not report its address within 60 s");
            }
        };
        TestServer {
            child,
            url: format!("http://{addr}"),
            data_dir: data_dir.to_path_buf(),
            metrics_url,
        }
    }

    pub async fn client(&self) -> Client {
        Client::connect(&self.url).await.expect("client connects")
    }

    /// `https://localhost:PORT`, for a server started with TLS.
    pub fn https_url(&self) -> String {
        self.url.replace("http://127.0.0.1", "https://localhost")
    }

    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// Sends SIGTERM and waits for a clean exit.
    pub fn terminate(&mut self) -> ExitStatus {
        let sent = Command::new("kill")
            .args(["-TERM", &self.child.id().to_string()])
            .status()
            .expect("kill runs");
        assert!(sent.success(), "SIGTERM delivered");
        self.wait(Duration::from_secs(60))
    }

    /// `kill -9`: no shutdown, no flush; returns once the process is gone.
    pub fn kill(&mut self) {
        self.child.kill().expect("SIGKILL delivered");
        self.child.wait().expect("the killed server is reaped");
    }

    /// Waits for the process to exit.
    pub fn wait(&mut self, limit: Duration) -> ExitStatus {
        let started = Instant::now();
        loop {
            if let Some(status) = self.child.try_wait().expect("try_wait") {
                return status;
            }
            assert!(started.elapsed() < limit, "sieve-server still running after {limit:?}");
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// One scrape of `/metrics`: every sample as (name, labels) → value.
    pub fn scrape(&self) -> std::collections::BTreeMap<(String, Vec<(String, String)>), f64> {
        use std::io::{Read as _, Write as _};
        let url = self.metrics_url.as_deref().expect("started with --metrics-listen");
        let host = url.trim_start_matches("http://").trim_end_matches("/metrics");
        let mut stream = std::net::TcpStream::connect(host).expect("metrics port answers");
        write!(stream, "GET /metrics HTTP/1.1\r\nHost: {host}\r\nConnection: close\r\n\r\n")
            .unwrap();
        let mut response = String::new();
        stream.read_to_string(&mut response).unwrap();
        let (head, body) = response.split_once("\r\n\r\n").expect("an HTTP response");
        assert!(head.starts_with("HTTP/1.1 200"), "{head}");
        assert!(head.contains("content-type: text/plain; version=0.0.4"), "{head}");
        parse_exposition(body)
    }

    /// The `grpc.health.v1` status of the whole server.
    pub async fn health(&self) -> i32 {
        self.health_of("").await
    }

    /// The `grpc.health.v1` status of `service` ("" is the whole server).
    pub async fn health_of(&self, service: &str) -> i32 {
        let channel = tonic::transport::Channel::from_shared(self.url.clone())
            .unwrap()
            .connect()
            .await
            .unwrap();
        let mut health = tonic_health::pb::health_client::HealthClient::new(channel);
        let request = tonic_health::pb::HealthCheckRequest { service: service.to_string() };
        health.check(request).await.expect("health check answers").into_inner().status
    }
}

impl Drop for TestServer {
    fn drop(&mut self) {
        if self.child.try_wait().ok().flatten().is_none() {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
    }
}

/// `grpc.health.v1` SERVING.
pub const SERVING: i32 = tonic_health::pb::health_check_response::ServingStatus::Serving as i32;
/// `grpc.health.v1` NOT_SERVING.
pub const NOT_SERVING: i32 =
    tonic_health::pb::health_check_response::ServingStatus::NotServing as i32;

pub fn dense_config(dimension: u32, distance: proto::Distance) -> proto::CollectionConfig {
    proto::CollectionConfig {
        dense: Some(proto::DenseConfig {
            dimension,
            distance: distance as i32,
            ..Default::default()
        }),
        ..Default::default()
    }
}

/// The status inside a failed call.
pub fn status_of<T: std::fmt::Debug>(result: Result<T, sieve_client::Error>) -> tonic::Status {
    match result {
        Err(sieve_client::Error::Status(status)) => status,
        other => panic!("expected an error status, got {other:?}"),
    }
}

/// `../shared` beside the checkout (models, fixtures, SciFact); a missing folder fails the test.
pub fn shared() -> PathBuf {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../shared");
    assert!(
        dir.join("models").is_dir() && dir.join("data/beir/scifact").is_dir(),
        "{} is missing: these tests need the shared models and data",
        dir.display()
    );
    dir
}

/// The lines of a gzipped file.
pub fn gz_lines(path: &Path) -> Vec<String> {
    let file = std::fs::File::open(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    BufReader::new(flate2::read::GzDecoder::new(file)).lines().map(Result::unwrap).collect()
}

/// Prometheus text format, samples only: `name{k="v",...} value` → ((name, sorted labels), value).
pub fn parse_exposition(
    text: &str,
) -> std::collections::BTreeMap<(String, Vec<(String, String)>), f64> {
    let mut samples = std::collections::BTreeMap::new();
    for line in text.lines().filter(|l| !l.is_empty() && !l.starts_with('#')) {
        let (series, value) = line.rsplit_once(' ').expect("`series value`");
        let (name, labels) = match series.split_once('{') {
            Some((name, rest)) => {
                let inner = rest.strip_suffix('}').expect("labels end with }");
                let mut labels: Vec<(String, String)> = inner
                    .split("\",")
                    .filter(|pair| !pair.is_empty())
                    .map(|pair| {
                        let (k, v) = pair.split_once("=\"").expect("label=\"value\"");
                        (k.to_string(), v.trim_end_matches('"').to_string())
                    })
                    .collect();
                labels.sort();
                (name.to_string(), labels)
            }
            None => (series.to_string(), Vec::new()),
        };
        samples.insert((name, labels), value.parse::<f64>().expect("a number"));
    }
    samples
}
