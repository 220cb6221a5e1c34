//! The parts of `sieve-server` (the binary is `src/main.rs`): configuration, request validation
//! and conversion, API keys, admission limits, and the gRPC services. A library so that fuzz
//! targets (`server/fuzz`) can drive the same validation the server runs.

pub mod auth;
pub mod config;
pub mod convert;
pub mod demo;
pub mod limits;
pub mod metrics;
pub mod router;
pub mod service;
pub mod shard;
pub mod status;
pub mod telemetry;
