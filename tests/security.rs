//! API keys and TLS against the real server: who may call what, what a refused call gets, that
//! keys stay out of the log, and that a TLS server refuses plaintext and unknown clients.

use crate::common;

use std::path::Path;

use common::TestServer;
use rcgen::{
    BasicConstraints, CertificateParams, CertifiedIssuer, ExtendedKeyUsagePurpose, IsCa, KeyPair,
};
use sieve_client::{Client, ConnectOptions, Error, proto};
use tonic::Code;

const ADMIN: &str = "admin-key-7f3a9c";
const READER: &str = "read-key-52e1d0";

async fn client(server: &TestServer, key: Option<&str>) -> Client {
    let options = ConnectOptions { api_key: key.map(String::from), ..ConnectOptions::default() };
    Client::connect_with(&server.url, &options).await.expect("client connects")
}

fn code(result: Result<impl std::fmt::Debug, Error>) -> (Code, String) {
    match result {
        Err(Error::Status(status)) => (status.code(), status.message().to_string()),
        other => panic!("expected an error status, got {other:?}"),
    }
}

fn doc(id: &str, text: &str) -> proto::Document {
    proto::Document { id: id.into(), text: text.into(), ..Default::default() }
}

#[tokio::test]
async fn keys_grant_by_role_and_never_reach_the_log() {
    let dir = tempfile::tempdir().unwrap();
    let log = dir.path().join("server.log");
    let server = TestServer::start_logged(
        &dir.path().join("data"),
        &["--admin-keys", ADMIN, "--read-keys", READER, "--log-level", "debug"],
        Some(&log),
    );
    let (admin, reader, anonymous) = (
        client(&server, Some(ADMIN)).await,
        client(&server, Some(READER)).await,
        server.client().await,
    );
    let wrong = client(&server, Some("not-a-key")).await;

    // Health stays open: probes and load balancers carry no key.
    assert_eq!(server.health().await, 1, "SERVING without a key");

    admin.create_collection("notes", proto::CollectionConfig::default()).await.unwrap();
    let ack = admin.upsert("notes", vec![doc("a", "rust ownership rules")]).await.unwrap();
    assert_eq!(ack.accepted, ["a"]);

    // Reads: any valid key.
    let hits = reader.search(proto::SearchRequest::new("notes", "ownership")).await.unwrap();
    assert_eq!(hits.hits()[0].id, "a");
    assert_eq!(reader.get("notes", vec!["a".into()], false).await.unwrap().documents.len(), 1);
    assert_eq!(reader.list_collections().await.unwrap().len(), 1);
    assert!(reader.info().await.unwrap().api_keys_required);

    // Writes with a read-only key: PERMISSION_DENIED, naming the method; nothing changes.
    let denied = code(reader.upsert("notes", vec![doc("b", "borrowing")]).await);
    assert_eq!(
        denied,
        (
            Code::PermissionDenied,
            "/sieve.v1.Documents/Ingest needs an admin key; this key is read-only".to_string()
        )
    );
    assert_eq!(code(reader.delete("notes", vec!["a".into()]).await).0, Code::PermissionDenied);
    assert_eq!(
        code(reader.create_collection("other", proto::CollectionConfig::default()).await).0,
        Code::PermissionDenied
    );
    assert_eq!(code(reader.delete_collection("notes").await).0, Code::PermissionDenied);

    // No key or a wrong key: UNAUTHENTICATED, for reads and writes alike.
    assert_eq!(
        code(anonymous.search(proto::SearchRequest::new("notes", "ownership")).await),
        (
            Code::Unauthenticated,
            "an API key is required: send 'authorization: Bearer <key>' or 'x-api-key: <key>'"
                .to_string()
        )
    );
    assert_eq!(
        code(wrong.list_collections().await),
        (Code::Unauthenticated, "the API key is not valid".to_string())
    );
    assert_eq!(code(wrong.upsert("notes", vec![doc("c", "x")]).await).0, Code::Unauthenticated);

    // `x-api-key` works as well as `authorization: Bearer`.
    let channel = tonic::transport::Channel::from_shared(server.url.clone())
        .unwrap()
        .connect()
        .await
        .unwrap();
    let mut raw = proto::collections_client::CollectionsClient::new(channel);
    let mut request = tonic::Request::new(proto::ListCollectionsRequest {});
    request.metadata_mut().insert("x-api-key", READER.parse().unwrap());
    assert_eq!(raw.list_collections(request).await.unwrap().into_inner().collections.len(), 1);

    // The refused calls changed nothing.
    let docs = admin.get("notes", vec!["a".into(), "b".into()], false).await.unwrap();
    assert_eq!((docs.documents.len(), docs.missing.clone()), (1, vec!["b".to_string()]));

    drop(server);
    let text = std::fs::read_to_string(&log).unwrap();
    assert!(text.contains("refused"), "refusals are logged at debug level");
    for key in [ADMIN, READER, "not-a-key"] {
        assert!(!text.contains(key), "the log must not contain the key {key}");
    }
    assert!(!text.contains("no API key configured"), "keys are configured: no open warning");
}

#[tokio::test]
async fn an_open_server_warns_at_start_and_print_config_hides_keys() {
    let dir = tempfile::tempdir().unwrap();
    let log = dir.path().join("server.log");
    let server = TestServer::start_logged(&dir.path().join("data"), &[], Some(&log));
    let open = server.client().await;
    open.create_collection("c", proto::CollectionConfig::default()).await.unwrap();
    drop(server);
    let text = std::fs::read_to_string(&log).unwrap();
    assert!(text.contains("no API key configured"), "startup warning missing from: {text}");

    let printed = std::process::Command::new(env!("CARGO_BIN_EXE_sieve-server"))
        .args(["--print-config", "--admin-keys", ADMIN, "--read-keys", &format!("{READER},r2")])
        .output()
        .unwrap();
    let printed = String::from_utf8(printed.stdout).unwrap();
    assert!(printed.contains("admin_keys = [\"<redacted>\"]"), "{printed}");
    assert!(printed.contains("read_keys = [\"<redacted>\", \"<redacted>\"]"), "{printed}");
    assert!(!printed.contains(ADMIN) && !printed.contains(READER));
}

/// A CA, and PEM certificate + key pairs it signed for the server (`localhost`) and a client.
struct Pki {
    ca: String,
    server: (String, String),
    client: (String, String),
}

fn pki() -> Pki {
    let mut ca_params = CertificateParams::new(Vec::<String>::new()).unwrap();
    ca_params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    let ca = CertifiedIssuer::self_signed(ca_params, KeyPair::generate().unwrap()).unwrap();
    let leaf = |name: &str, usage: ExtendedKeyUsagePurpose| {
        let key = KeyPair::generate().unwrap();
        let mut params = CertificateParams::new(vec![name.to_string()]).unwrap();
        params.extended_key_usages = vec![usage];
        (params.signed_by(&key, &ca).unwrap().pem(), key.serialize_pem())
    };
    Pki {
        ca: ca.pem(),
        server: leaf("localhost", ExtendedKeyUsagePurpose::ServerAuth),
        client: leaf("sieve-test-client", ExtendedKeyUsagePurpose::ClientAuth),
    }
}

fn write(dir: &Path, name: &str, text: &str) -> String {
    let path = dir.join(name);
    std::fs::write(&path, text).unwrap();
    path.to_str().unwrap().to_string()
}

#[tokio::test]
async fn tls_serves_verified_clients_and_refuses_plaintext() {
    let dir = tempfile::tempdir().unwrap();
    let pki = pki();
    let (cert, key) = (
        write(dir.path(), "server.pem", &pki.server.0),
        write(dir.path(), "server.key", &pki.server.1),
    );
    let server =
        TestServer::start(&dir.path().join("data"), &["--tls-cert", &cert, "--tls-key", &key]);

    let trusted =
        ConnectOptions { ca_cert: Some(pki.ca.clone().into_bytes()), ..Default::default() };
    let client = Client::connect_with(server.https_url(), &trusted).await.unwrap();
    client.create_collection("secure", proto::CollectionConfig::default()).await.unwrap();
    assert_eq!(client.list_collections().await.unwrap()[0].name, "secure");
    assert!(client.info().await.unwrap().tls);

    // A plaintext client gets no answer from the TLS port.
    let plaintext = match Client::connect(&server.url).await {
        Ok(client) => client.list_collections().await.map(|_| ()),
        Err(e) => Err(e),
    };
    assert!(plaintext.is_err(), "plaintext must be refused");

    // A client that does not trust the server's CA refuses it (Mozilla roots only).
    let untrusted = match Client::connect(server.https_url()).await {
        Ok(client) => client.list_collections().await.map(|_| ()),
        Err(e) => Err(e),
    };
    assert!(untrusted.is_err(), "a certificate from an unknown CA must be refused");
}

#[tokio::test]
async fn client_certificates_are_required_when_a_client_ca_is_set() {
    let dir = tempfile::tempdir().unwrap();
    let pki = pki();
    let d = dir.path();
    let args = [
        "--tls-cert",
        &write(d, "server.pem", &pki.server.0),
        "--tls-key",
        &write(d, "server.key", &pki.server.1),
        "--tls-client-ca",
        &write(d, "ca.pem", &pki.ca),
    ]
    .map(String::from);
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    let server = TestServer::start(&d.join("data"), &args);

    let ca = Some(pki.ca.clone().into_bytes());
    let without = ConnectOptions { ca_cert: ca.clone(), ..Default::default() };
    let refused = match Client::connect_with(server.https_url(), &without).await {
        Ok(client) => client.list_collections().await.map(|_| ()),
        Err(e) => Err(e),
    };
    assert!(refused.is_err(), "a client without a certificate must be refused");

    let identity = Some((pki.client.0.clone().into_bytes(), pki.client.1.clone().into_bytes()));
    let with = ConnectOptions { ca_cert: ca, identity, ..Default::default() };
    let client = Client::connect_with(server.https_url(), &with).await.unwrap();
    assert!(client.list_collections().await.unwrap().is_empty());
}

#[test]
fn half_configured_tls_is_refused_at_start() {
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_sieve-server"))
        .args(["--listen", "127.0.0.1:0", "--tls-cert", "/nonexistent.pem"])
        .arg("--data-dir")
        .arg(tempfile::tempdir().unwrap().path())
        .output()
        .unwrap();
    assert!(!out.status.success());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("tls_cert is set but tls_key is not"), "{stderr}");
}
