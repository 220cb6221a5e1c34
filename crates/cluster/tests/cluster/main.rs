//! The cluster crate against a real 3-server NATS JetStream cluster on loopback, as one test
//! binary (one link of the crate's dependencies): the log and applier (`jetstream`), and
//! cluster == standalone on SciFact (`parity`).

#[path = "../common/mod.rs"]
mod common;

mod jetstream;
mod parity;
