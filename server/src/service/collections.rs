//! `sieve.v1.Collections`: create, get, list and delete collections.

use std::sync::Arc;

use sieve_proto::v1::collections_server::Collections;
use sieve_proto::v1::{
    Collection, CreateCollectionRequest, DeleteCollectionRequest, DeleteCollectionResponse,
    GetCollectionRequest, ListCollectionsRequest, ListCollectionsResponse,
};
use sieve_storage::{CollectionConfig, DenseConfig, Distance, HnswParams};
use tonic::{Request, Response, Status};

use super::{Backend, State};
use crate::convert;
use crate::status::{self, blocking};

pub struct CollectionsService(pub Arc<State>);

fn require_name(name: &str) -> Result<(), Status> {
    if name.is_empty() { Err(Status::invalid_argument("name: must not be empty")) } else { Ok(()) }
}

impl CollectionsService {
    /// Gives a collection without dense settings the server's default embedder (unless it asked
    /// for keyword-only), and checks a named embedder: loaded, a bi-encoder, and of the
    /// collection's dimension (0 takes the model's).
    fn resolve_embedder(
        &self,
        config: &mut CollectionConfig,
        keyword_only: bool,
    ) -> Result<(), Status> {
        let default = &self.0.config.default_embedder;
        if config.dense.is_none() && !keyword_only && !default.is_empty() {
            config.dense = Some(DenseConfig {
                dimension: 0,
                distance: Distance::Cosine,
                embedder: Some(default.clone()),
                hnsw: HnswParams::default(),
            });
        }
        let Some(dense) = config.dense.as_mut() else { return Ok(()) };
        let Some(name) = &dense.embedder else { return Ok(()) };
        let embedder = self
            .0
            .planner
            .models()
            .embedder(name)
            .map_err(|e| Status::invalid_argument(format!("config.dense.embedder: {e}")))?;
        let size = embedder.dimension();
        match dense.dimension {
            0 => dense.dimension = size,
            d if d != size => {
                return Err(Status::invalid_argument(format!(
                    "config.dense.dimension: {d} does not match embedder '{name}', which makes {size}-dimensional vectors"
                )));
            }
            _ => {}
        }
        Ok(())
    }
}

#[tonic::async_trait]
impl Collections for CollectionsService {
    async fn create_collection(
        &self,
        request: Request<CreateCollectionRequest>,
    ) -> Result<Response<Collection>, Status> {
        let request = request.into_inner();
        require_name(&request.name)?;
        let (mut config, keyword_only) =
            convert::collection_config(request.config).map_err(Status::invalid_argument)?;
        self.resolve_embedder(&mut config, keyword_only)?;
        let store = match &self.0.backend {
            Backend::Local(store) => Arc::clone(store),
            Backend::Cluster(cluster) => {
                let created_ms = std::time::SystemTime::now()
                    .duration_since(std::time::UNIX_EPOCH)
                    .map_or(0, |d| d.as_millis() as u64);
                let entry = cluster
                    .create(&request.name, config, created_ms)
                    .await
                    .map_err(status::cluster)?;
                let counts = sieve_cluster::Counts::default();
                return Ok(Response::new(convert::cluster_collection_to_proto(
                    &request.name,
                    &entry,
                    counts,
                )));
            }
            Backend::Models => return Err(super::no_collections()),
        };
        let created = blocking(move || {
            let collection =
                store.create_collection(&request.name, config).map_err(status::storage)?;
            Ok(convert::collection_to_proto(&collection))
        })
        .await?;
        Ok(Response::new(created))
    }

    async fn get_collection(
        &self,
        request: Request<GetCollectionRequest>,
    ) -> Result<Response<Collection>, Status> {
        let name = request.into_inner().name;
        require_name(&name)?;
        match &self.0.backend {
            Backend::Local(store) => {
                let collection = store.collection(&name).map_err(status::storage)?;
                Ok(Response::new(convert::collection_to_proto(&collection)))
            }
            Backend::Cluster(cluster) => {
                let entry = cluster.get(&name).await.map_err(status::cluster)?;
                let counts = cluster.counts(&name).await.map_err(status::cluster)?;
                Ok(Response::new(convert::cluster_collection_to_proto(&name, &entry, counts)))
            }
            Backend::Models => Err(super::no_collections()),
        }
    }

    async fn list_collections(
        &self,
        _request: Request<ListCollectionsRequest>,
    ) -> Result<Response<ListCollectionsResponse>, Status> {
        let collections = match &self.0.backend {
            Backend::Local(store) => {
                store.collections().iter().map(|c| convert::collection_to_proto(c)).collect()
            }
            Backend::Cluster(cluster) => {
                let mut collections = Vec::new();
                for (name, entry) in cluster.list().await.map_err(status::cluster)? {
                    let counts = cluster.counts(&name).await.map_err(status::cluster)?;
                    collections.push(convert::cluster_collection_to_proto(&name, &entry, counts));
                }
                collections
            }
            Backend::Models => Vec::new(),
        };
        Ok(Response::new(ListCollectionsResponse { collections }))
    }

    async fn delete_collection(
        &self,
        request: Request<DeleteCollectionRequest>,
    ) -> Result<Response<DeleteCollectionResponse>, Status> {
        let name = request.into_inner().name;
        require_name(&name)?;
        match &self.0.backend {
            Backend::Local(store) => {
                let store = Arc::clone(store);
                blocking(move || store.delete_collection(&name).map_err(status::storage)).await?;
            }
            Backend::Cluster(cluster) => cluster.delete(&name).await.map_err(status::cluster)?,
            Backend::Models => return Err(super::no_collections()),
        }
        Ok(Response::new(DeleteCollectionResponse {}))
    }
}
