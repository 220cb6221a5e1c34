//! The SDKs' own test suites, against the `sieve-server` this build made: each script installs
//! its language's dependencies from the public registries (PyPI, npm), checks that the
//! generated stubs match `proto/`, and runs create → ingest → search with a cascade → delete
//! and the error cases against a live server. A missing interpreter or registry fails the test.

use std::path::{Path, PathBuf};
use std::process::Command;

fn repo() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("server/ is in the repository")
        .to_path_buf()
}

fn run(script: &str, scratch: &str) {
    let path = repo().join(script);
    let output = Command::new("bash")
        .arg(&path)
        .env("SIEVE_SERVER_BIN", env!("CARGO_BIN_EXE_sieve-server"))
        .env("SIEVE_PY_VENV", Path::new(env!("CARGO_TARGET_TMPDIR")).join(scratch))
        .output()
        .unwrap_or_else(|e| panic!("{} does not start: {e}", path.display()));
    let stdout = String::from_utf8_lossy(&output.stdout);
    let stderr = String::from_utf8_lossy(&output.stderr);
    println!("{stdout}");
    assert!(output.status.success(), "{script} failed ({}):\n{stdout}\n{stderr}", output.status);
}

#[test]
fn python_sdk_against_the_live_server() {
    run("client/python/run-tests.sh", "python-venv");
}

#[test]
fn typescript_sdk_against_the_live_server() {
    run("client/typescript/run-tests.sh", "unused");
}
