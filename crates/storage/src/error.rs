//! Storage errors, split by who must act: the caller (bad input, missing or duplicate
//! collection) or the operator (I/O, corruption).

use std::fmt;

/// Why a storage call failed.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The request is malformed; the message names the field.
    #[error("{0}")]
    InvalidArgument(String),
    /// A named collection does not exist.
    #[error("collection '{0}' not found")]
    CollectionNotFound(String),
    /// A named thing other than a collection (a snapshot) does not exist; the message says what.
    #[error("{0}")]
    NotFound(String),
    /// A collection of that name exists already.
    #[error("collection '{0}' already exists")]
    CollectionExists(String),
    /// The on-disk state cannot be trusted; the message says what was found.
    #[error("corrupt data: {0}")]
    Corrupt(String),
    /// An I/O or embedded-engine failure.
    #[error("{context}: {cause}")]
    Io {
        /// What was being done.
        context: String,
        /// What went wrong underneath (already in the message, so not a `source()`).
        cause: Box<dyn std::error::Error + Send + Sync>,
    },
}

/// Result with [`Error`].
pub type Result<T, E = Error> = std::result::Result<T, E>;

impl Error {
    /// The operating system's reason when an I/O failure underlies this error (e.g.
    /// `StorageFull` for a full disk, `ReadOnlyFilesystem`), looking through sled's wrapping.
    pub fn io_kind(&self) -> Option<std::io::ErrorKind> {
        let Error::Io { cause, .. } = self else {
            return None;
        };
        let mut next: Option<&(dyn std::error::Error + 'static)> = Some(cause.as_ref());
        while let Some(error) = next {
            if let Some(io) = error.downcast_ref::<std::io::Error>() {
                return Some(io.kind());
            }
            if let Some(sled::Error::Io(io)) = error.downcast_ref::<sled::Error>() {
                return Some(io.kind());
            }
            next = error.source();
        }
        None
    }

    pub(crate) fn io(
        context: impl fmt::Display,
        source: impl Into<Box<dyn std::error::Error + Send + Sync>>,
    ) -> Self {
        Error::Io { context: context.to_string(), cause: source.into() }
    }
}

/// Attaches context to lower-level errors.
pub(crate) trait Context<T> {
    fn context(self, what: impl fmt::Display) -> Result<T>;
}

impl<T, E: Into<Box<dyn std::error::Error + Send + Sync>>> Context<T>
    for std::result::Result<T, E>
{
    fn context(self, what: impl fmt::Display) -> Result<T> {
        self.map_err(|source| Error::io(what, source))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::ErrorKind;

    #[test]
    fn the_os_reason_is_found_under_sled_and_context() {
        let full = std::io::Error::from(ErrorKind::StorageFull);
        assert_eq!(Error::io("flushing", full).io_kind(), Some(ErrorKind::StorageFull));
        let via_sled = sled::Error::Io(std::io::Error::from(ErrorKind::FileTooLarge));
        assert_eq!(Error::io("writing", via_sled).io_kind(), Some(ErrorKind::FileTooLarge));
        assert_eq!(Error::io("writing", "no os error").io_kind(), None);
        assert_eq!(Error::Corrupt("x".into()).io_kind(), None);
    }
}
