//! Any bytes a client could send as an IngestRequest: every document and delete id goes
//! through the server's validation, which must answer, never panic.
#![no_main]

use libfuzzer_sys::fuzz_target;
use prost::Message as _;
use sieve_proto::v1::IngestRequest;
use sieve_server::config::Config;
use sieve_server::convert;

fuzz_target!(|data: &[u8]| {
    let config = Config::default();
    if let Ok(request) = IngestRequest::decode(data) {
        for (i, id) in request.delete_ids.iter().enumerate() {
            let _ = convert::id(id, &format!("delete_ids[{i}]"), &config);
        }
        for document in request.documents {
            let _ = convert::document(document, &config);
        }
    }
});
