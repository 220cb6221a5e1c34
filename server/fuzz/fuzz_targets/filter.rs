//! Any bytes a client could send as a Filter: compiling it must answer, never panic or
//! exhaust the stack, and a compiled filter must evaluate on metadata of every value type.
#![no_main]

use libfuzzer_sys::fuzz_target;
use prost::Message as _;
use sieve_proto::v1::Filter;
use sieve_server::config::Config;
use sieve_server::convert;
use sieve_storage::{Metadata, Value};

fuzz_target!(|data: &[u8]| {
    let Ok(filter) = Filter::decode(data) else {
        return;
    };
    let Ok(compiled) = convert::filter(filter, &Config::default()) else {
        return;
    };
    let metadata: Metadata = [
        ("k".to_string(), Value::Int(1)),
        ("s".to_string(), Value::String("a".into())),
        ("f".to_string(), Value::Float(0.5)),
        ("b".to_string(), Value::Bool(true)),
    ]
    .into();
    let _ = compiled.matches(&metadata);
    let _ = compiled.matches(&Metadata::new());
});
