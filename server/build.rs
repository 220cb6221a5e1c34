//! Records the git commit and build profile for `Info.build`.

use std::path::Path;
use std::process::Command;

fn main() {
    let commit = Command::new("git")
        .args(["rev-parse", "--short=12", "HEAD"])
        .output()
        .ok()
        .filter(|out| out.status.success())
        .map(|out| String::from_utf8_lossy(&out.stdout).trim().to_string())
        .unwrap_or_else(|| "unknown".to_string());
    println!("cargo:rustc-env=SIEVE_GIT_COMMIT={commit}");
    println!("cargo:rustc-env=SIEVE_PROFILE={}", std::env::var("PROFILE").unwrap_or_default());
    for path in ["../.git/HEAD", "../.git/refs/heads"] {
        if Path::new(path).exists() {
            println!("cargo:rerun-if-changed={path}");
        }
    }
}
