//! Model errors: what failed, with which model and which file.

/// Why a model could not be loaded or run.
#[derive(Debug, thiserror::Error)]
pub enum ModelError {
    /// The checkpoint folder is missing or incomplete; the message says where it looked and how
    /// to get the model.
    #[error("{0}")]
    NotFound(String),
    /// The checkpoint exists but cannot be used (unknown architecture, bad config, bad weights).
    #[error("{0}")]
    Unsupported(String),
    /// A request the model cannot serve (wrong kind of model, empty input).
    #[error("{0}")]
    InvalidInput(String),
    /// The model's queue is full.
    #[error("{0}")]
    Overloaded(String),
    /// Tokenization or inference failed.
    #[error("{0}")]
    Inference(String),
    /// The model's worker stopped.
    #[error("model '{0}' is shut down")]
    Closed(String),
    /// The process that runs the model (a model tier) cannot be reached now.
    #[error("{0}")]
    Unavailable(String),
}

/// Result with [`ModelError`].
pub type Result<T, E = ModelError> = std::result::Result<T, E>;

impl ModelError {
    pub(crate) fn inference(model: &str, what: &str, error: impl std::fmt::Display) -> Self {
        ModelError::Inference(format!("model '{model}': {what}: {error}"))
    }
}
