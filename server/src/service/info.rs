//! `sieve.v1.Info`: version, build and limits.

use std::sync::Arc;

use sieve_proto::v1::info_server::Info;
use sieve_proto::v1::{GetInfoRequest, GetInfoResponse, Limits};
use tonic::{Request, Response, Status};

use super::State;

pub struct InfoService(pub Arc<State>);

/// `<git commit> <profile>`, fixed at build time.
pub const BUILD: &str = concat!(env!("SIEVE_GIT_COMMIT"), " ", env!("SIEVE_PROFILE"));

#[tonic::async_trait]
impl Info for InfoService {
    async fn get_info(
        &self,
        _request: Request<GetInfoRequest>,
    ) -> Result<Response<GetInfoResponse>, Status> {
        let c = &self.0.config;
        let limits = Limits {
            max_message_bytes: c.max_message_bytes as u64,
            max_batch_documents: c.max_batch_documents as u32,
            max_text_bytes: c.max_text_bytes as u64,
            max_id_bytes: c.max_id_bytes as u32,
            max_metadata_entries: c.max_metadata_entries as u32,
            max_dimension: c.max_dimension as u32,
            max_top_k: c.max_top_k as u32,
            max_candidates: c.max_candidates as u32,
            max_filter_depth: c.max_filter_depth as u32,
            max_query_bytes: c.max_query_bytes as u64,
            max_ids_per_request: c.max_ids_per_request as u32,
        };
        Ok(Response::new(GetInfoResponse {
            version: env!("CARGO_PKG_VERSION").to_string(),
            build: BUILD.to_string(),
            collections: self.0.store.collections().len() as u64,
            limits: Some(limits),
        }))
    }
}
