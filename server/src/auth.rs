//! API keys: a tower layer in front of every service that checks `authorization: Bearer <key>`
//! (or `x-api-key: <key>`) against the configured admin and read-only keys.
//!
//! Read-only keys may call what reads: Search, Get, Rerank, Info, GetCollection,
//! ListCollections and reflection. Everything else (creating and deleting collections,
//! ingesting, deleting documents, and any method added later) needs an admin key. Health checks
//! are always open, so load balancers and probes need no key. With no key configured the
//! server is open. Keys are compared in constant time and never logged.

use std::fmt;
use std::str::FromStr;
use std::sync::Arc;
use std::task::{Context, Poll};

use futures::future::{Either, Ready, ready};
use serde::{Deserialize, Serialize};
use subtle::ConstantTimeEq as _;
use tonic::Status;
use tower::{Layer, Service};

/// API keys, comma-separated in flags and the environment, a list in the file. Debug output
/// shows how many there are, never the keys.
#[derive(Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(transparent)]
pub struct KeyList(pub Vec<String>);

impl fmt::Debug for KeyList {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "KeyList({} keys)", self.0.len())
    }
}

impl FromStr for KeyList {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        Ok(KeyList(
            s.split(',').map(str::trim).filter(|k| !k.is_empty()).map(String::from).collect(),
        ))
    }
}

impl KeyList {
    /// The same number of keys, each replaced by a placeholder (for `--print-config`).
    pub fn redacted(&self) -> KeyList {
        KeyList(vec!["<redacted>".to_string(); self.0.len()])
    }
}

/// What a method needs.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
enum Access {
    Open,
    Read,
    Admin,
}

/// The access a gRPC path (`/package.Service/Method`) needs.
fn required(path: &str) -> Access {
    let (service, method) = path.trim_start_matches('/').split_once('/').unwrap_or((path, ""));
    match (service, method) {
        ("grpc.health.v1.Health", _) => Access::Open,
        ("grpc.reflection.v1.ServerReflection" | "grpc.reflection.v1alpha.ServerReflection", _) => {
            Access::Read
        }
        ("sieve.v1.Search" | "sieve.v1.Rerank" | "sieve.v1.Info", _) => Access::Read,
        ("sieve.v1.Collections", "GetCollection" | "ListCollections") => Access::Read,
        ("sieve.v1.Documents", "Get") => Access::Read,
        _ => Access::Admin,
    }
}

/// The configured keys.
#[derive(Default)]
pub struct Keys {
    admin: Vec<Vec<u8>>,
    read: Vec<Vec<u8>>,
}

impl Keys {
    /// Admin keys may do everything, read keys only what reads.
    pub fn new(admin: &KeyList, read: &KeyList) -> Self {
        let bytes = |list: &KeyList| list.0.iter().map(|k| k.as_bytes().to_vec()).collect();
        Keys { admin: bytes(admin), read: bytes(read) }
    }

    /// No key configured: everyone may do everything.
    pub fn is_open(&self) -> bool {
        self.admin.is_empty() && self.read.is_empty()
    }

    /// The access `key` grants (checks every key, so timing does not tell which matched).
    fn grant(&self, key: &[u8]) -> Access {
        let matches = |list: &[Vec<u8>]| {
            list.iter().fold(false, |found, k| found | bool::from(k.as_slice().ct_eq(key)))
        };
        let (admin, read) = (matches(&self.admin), matches(&self.read));
        if admin {
            Access::Admin
        } else if read {
            Access::Read
        } else {
            Access::Open
        }
    }

    /// Lets the call through, or says why not.
    pub fn check(&self, path: &str, headers: &http::HeaderMap) -> Result<(), Status> {
        let needed = required(path);
        if needed == Access::Open || self.is_open() {
            return Ok(());
        }
        let key = presented_key(headers)?;
        match self.grant(key) {
            Access::Open => Err(Status::unauthenticated("the API key is not valid")),
            granted if granted < needed => Err(Status::permission_denied(format!(
                "{path} needs an admin key; this key is read-only"
            ))),
            _ => Ok(()),
        }
    }
}

/// The key from `authorization: Bearer <key>` or `x-api-key: <key>`.
fn presented_key(headers: &http::HeaderMap) -> Result<&[u8], Status> {
    if let Some(value) = headers.get(http::header::AUTHORIZATION) {
        let value = value.as_bytes();
        let scheme = b"bearer ";
        if value.len() <= scheme.len() || !value[..scheme.len()].eq_ignore_ascii_case(scheme) {
            return Err(Status::unauthenticated("the authorization header must be 'Bearer <key>'"));
        }
        return Ok(value[scheme.len()..].trim_ascii());
    }
    if let Some(value) = headers.get("x-api-key") {
        return Ok(value.as_bytes().trim_ascii());
    }
    Err(Status::unauthenticated(
        "an API key is required: send 'authorization: Bearer <key>' or 'x-api-key: <key>'",
    ))
}

/// Puts [`Auth`] in front of a service.
#[derive(Clone)]
pub struct AuthLayer(pub Arc<Keys>);

impl<S> Layer<S> for AuthLayer {
    type Service = Auth<S>;
    fn layer(&self, inner: S) -> Auth<S> {
        Auth { inner, keys: Arc::clone(&self.0) }
    }
}

/// Answers calls without a sufficient key with UNAUTHENTICATED or PERMISSION_DENIED.
#[derive(Clone)]
pub struct Auth<S> {
    inner: S,
    keys: Arc<Keys>,
}

impl<S, B, RB> Service<http::Request<B>> for Auth<S>
where
    S: Service<http::Request<B>, Response = http::Response<RB>>,
    RB: Default,
{
    type Response = S::Response;
    type Error = S::Error;
    type Future = Either<S::Future, Ready<Result<S::Response, S::Error>>>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, request: http::Request<B>) -> Self::Future {
        match self.keys.check(request.uri().path(), request.headers()) {
            Ok(()) => Either::Left(self.inner.call(request)),
            Err(status) => {
                tracing::debug!(path = request.uri().path(), code = ?status.code(), "refused");
                Either::Right(ready(Ok(status.into_http())))
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn headers(name: &'static str, value: &str) -> http::HeaderMap {
        let mut map = http::HeaderMap::new();
        map.insert(name, value.parse().unwrap());
        map
    }

    fn keys() -> Keys {
        Keys::new(&"adm1,adm2".parse().unwrap(), &"reader".parse().unwrap())
    }

    #[test]
    fn methods_are_classified() {
        assert_eq!(required("/grpc.health.v1.Health/Check"), Access::Open);
        assert_eq!(required("/sieve.v1.Search/Search"), Access::Read);
        assert_eq!(required("/sieve.v1.Documents/Get"), Access::Read);
        assert_eq!(required("/sieve.v1.Documents/Ingest"), Access::Admin);
        assert_eq!(required("/sieve.v1.Collections/ListCollections"), Access::Read);
        assert_eq!(required("/sieve.v1.Collections/DeleteCollection"), Access::Admin);
        assert_eq!(required("/sieve.v1.Admin/Anything"), Access::Admin);
    }

    #[test]
    fn keys_grant_what_their_role_allows() {
        let keys = keys();
        let search = "/sieve.v1.Search/Search";
        let ingest = "/sieve.v1.Documents/Ingest";
        assert!(keys.check(search, &headers("authorization", "Bearer reader")).is_ok());
        assert!(keys.check(search, &headers("authorization", "bearer adm2")).is_ok());
        assert!(keys.check(ingest, &headers("x-api-key", "adm1")).is_ok());
        let denied = keys.check(ingest, &headers("x-api-key", "reader")).unwrap_err();
        assert_eq!(denied.code(), tonic::Code::PermissionDenied);
        assert_eq!(
            denied.message(),
            "/sieve.v1.Documents/Ingest needs an admin key; this key is read-only"
        );
        let wrong = keys.check(search, &headers("authorization", "Bearer adm")).unwrap_err();
        assert_eq!(
            (wrong.code(), wrong.message()),
            (tonic::Code::Unauthenticated, "the API key is not valid")
        );
        let scheme = keys.check(search, &headers("authorization", "Basic adm1")).unwrap_err();
        assert_eq!(scheme.message(), "the authorization header must be 'Bearer <key>'");
        let missing = keys.check(search, &http::HeaderMap::new()).unwrap_err();
        assert_eq!(missing.code(), tonic::Code::Unauthenticated);
        assert!(keys.check("/grpc.health.v1.Health/Check", &http::HeaderMap::new()).is_ok());
    }

    #[test]
    fn no_keys_means_open_and_keys_never_print() {
        let open = Keys::new(&KeyList::default(), &KeyList::default());
        assert!(open.check("/sieve.v1.Documents/Ingest", &http::HeaderMap::new()).is_ok());
        let list: KeyList = "s3cret, other".parse().unwrap();
        assert_eq!(format!("{list:?}"), "KeyList(2 keys)");
        assert_eq!(list.redacted().0, ["<redacted>", "<redacted>"]);
    }
}
