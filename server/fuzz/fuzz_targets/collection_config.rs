//! Any bytes a client could send as a CollectionConfig: validation must answer, never panic.
#![no_main]

use libfuzzer_sys::fuzz_target;
use prost::Message as _;
use sieve_proto::v1::CollectionConfig;
use sieve_server::convert;

fuzz_target!(|data: &[u8]| {
    if let Ok(config) = CollectionConfig::decode(data) {
        if let Ok((config, _)) = convert::collection_config(Some(config)) {
            let _ = config.check(4096);
        }
    }
});
