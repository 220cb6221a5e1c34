//! Sieve's end-to-end tests: the real `sieve-server` binary driven through its public API (and,
//! in `cluster`, real NATS servers and shard processes). One test binary with a module per
//! area, so the release build links the server's dependencies once; run one area with
//! `cargo test --release --test server -- crash::`.

mod common;
#[path = "../crates/cluster/tests/common/mod.rs"]
mod nats;

mod bad_input;
mod cluster;
mod crash;
mod e2e;
mod eval;
mod limits;
mod load;
mod models;
mod sdk;
mod security;
