//! Domain errors to gRPC statuses, and running blocking store work off the async runtime.

use sieve_models::ModelError;
use sieve_planner::SearchError;
use tonic::Status;

pub fn storage(error: sieve_storage::Error) -> Status {
    use sieve_storage::Error;
    match error {
        Error::InvalidArgument(msg) => Status::invalid_argument(msg),
        Error::CollectionNotFound(_) | Error::NotFound(_) => Status::not_found(error.to_string()),
        Error::CollectionExists(_) => Status::already_exists(error.to_string()),
        Error::Corrupt(_) => {
            tracing::error!(%error, "corrupt data");
            Status::data_loss(error.to_string())
        }
        Error::Io { .. } => {
            use std::io::ErrorKind;
            tracing::error!(%error, "storage failure");
            match error.io_kind() {
                Some(
                    ErrorKind::StorageFull | ErrorKind::QuotaExceeded | ErrorKind::FileTooLarge,
                ) => Status::resource_exhausted(format!(
                    "the data directory is out of space ({error}); writes are refused until \
                     the server restarts with free space, and nothing acknowledged is lost \
                     (a batch that failed was not acknowledged)"
                )),
                Some(ErrorKind::ReadOnlyFilesystem | ErrorKind::PermissionDenied) => {
                    Status::unavailable(format!(
                        "the data directory cannot be written ({error}); writes are refused \
                         until the server restarts with a writable data directory, and nothing \
                         acknowledged is lost (a batch that failed was not acknowledged)"
                    ))
                }
                _ => Status::internal(error.to_string()),
            }
        }
    }
}

pub fn search(error: SearchError) -> Status {
    match error {
        SearchError::InvalidArgument(msg) => Status::invalid_argument(msg),
        SearchError::Storage(e) => storage(e),
        SearchError::Model(e) => model(e),
        SearchError::Unavailable(msg) => Status::unavailable(msg),
        SearchError::Internal(msg) => {
            tracing::error!(%msg, "search failed");
            Status::internal(msg)
        }
    }
}

pub fn cluster(error: sieve_cluster::ClusterError) -> Status {
    use sieve_cluster::ClusterError;
    match error {
        ClusterError::NotFound(_) => Status::not_found(error.to_string()),
        ClusterError::Exists(_) => Status::already_exists(error.to_string()),
        ClusterError::InvalidArgument(msg) => Status::invalid_argument(msg),
        ClusterError::Unavailable(msg) => Status::unavailable(msg),
        ClusterError::Full(msg) => Status::resource_exhausted(msg),
        ClusterError::Missing(msg) => Status::not_found(msg),
        ClusterError::Precondition(msg) => Status::failed_precondition(msg),
        ClusterError::TimedOut(msg) => Status::deadline_exceeded(msg),
        ClusterError::Internal(msg) => {
            tracing::error!(%msg, "cluster call failed");
            Status::internal(msg)
        }
    }
}

pub fn model(error: ModelError) -> Status {
    sieve_cluster::model_status(error)
}

/// Runs store work on the blocking pool; a panic there becomes INTERNAL, never a crash.
pub async fn blocking<T: Send + 'static>(
    work: impl FnOnce() -> Result<T, Status> + Send + 'static,
) -> Result<T, Status> {
    tokio::task::spawn_blocking(work).await.unwrap_or_else(|e| {
        tracing::error!(error = %e, "request handler panicked");
        Err(Status::internal(format!("internal error: {e}")))
    })
}
