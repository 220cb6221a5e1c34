//! Any bytes a client could send as a SearchRequest: decoding and validation must answer
//! (a request or a status), never panic.
#![no_main]

use libfuzzer_sys::fuzz_target;
use prost::Message as _;
use sieve_proto::v1::SearchRequest;
use sieve_server::config::Config;
use sieve_server::convert;

fuzz_target!(|data: &[u8]| {
    if let Ok(request) = SearchRequest::decode(data) {
        let _ = convert::search_request(request, &Config::default());
    }
});
