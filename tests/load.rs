//! A short load run in CI (the long one is bench/reliability/load.sh): 8 clients for a few
//! seconds mixing ingest batches, searches through a cross-encoder cascade and deletes, twice,
//! against the real server. Every operation must succeed; the server's resident memory after
//! each run is printed (the script reports it over 60-second runs).

use crate::common;

use std::io::Write as _;
use std::path::Path;

use clap::Parser;
use common::{SERVING, TestServer, shared};
use serde_json::Value;
use sieve_client::cli::{self, Cli};

/// The server's resident and peak resident memory, MiB (Linux).
fn memory_mib(pid: u32) -> (f64, f64) {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
    let field = |name: &str| {
        let line = status.lines().find(|l| l.starts_with(name)).unwrap();
        line.split_whitespace().nth(1).unwrap().parse::<f64>().unwrap() / 1024.0
    };
    (field("VmRSS:"), field("VmHWM:"))
}

async fn load(server: &TestServer, out: &Path) -> Value {
    let out_arg = out.to_str().unwrap();
    let argv = [
        "sieve",
        "--addr",
        &server.url,
        "bench",
        "load",
        "-c",
        "load",
        "--clients",
        "8",
        "--duration",
        "4",
        "--initial",
        "500",
        "--candidates",
        "20",
        "--out",
        out_arg,
    ];
    cli::run(Cli::parse_from(argv)).await.expect("sieve bench load runs");
    serde_json::from_slice(&std::fs::read(out).unwrap()).unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn eight_clients_mixing_ingest_cascaded_search_and_delete_get_no_errors() {
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("sieve.toml");
    let tiny = shared().join("fixtures/tiny-bert-ce");
    let mut file = std::fs::File::create(&config).unwrap();
    write!(
        file,
        "[[models]]\nname = \"tiny-bert-ce\"\npath = {tiny:?}\nmax_length = 128\n\n\
         [[cascade]]\nmodel = \"tiny-bert-ce\"\nkeep = 10\n"
    )
    .unwrap();
    let server =
        TestServer::start(&dir.path().join("data"), &["--config", config.to_str().unwrap()]);
    for run in 1..=2 {
        let report = load(&server, &dir.path().join(format!("load{run}.json"))).await;
        assert_eq!(report["errors"], 0, "run {run}: {report:#}");
        for op in ["ingest", "search", "delete"] {
            assert!(
                report["operations"][op]["ok"].as_u64().unwrap() > 0,
                "run {run}: no {op}: {report:#}"
            );
        }
        let (rss, peak) = memory_mib(server.pid());
        println!(
            "run {run}: {} searches/s (p99 {} ms), {} ingest batches/s, {} deletes/s, 0 errors; server RSS {rss:.0} MiB, peak {peak:.0} MiB",
            report["operations"]["search"]["per_sec"],
            report["operations"]["search"]["latency_ms"]["p99"],
            report["operations"]["ingest"]["per_sec"],
            report["operations"]["delete"]["per_sec"],
        );
    }
    assert_eq!(server.health().await, SERVING);
}
