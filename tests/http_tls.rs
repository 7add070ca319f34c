//! TLS against the real binary (`cairn serve --tls-cert --tls-key`), with a real rustls client
//! and certificates from a test CA made here with rcgen: the API answers over HTTPS (a Durable
//! Stream's `Location` says `https://`); plain HTTP to the TLS port gets no HTTP answer; a
//! client that trusts another CA refuses the server; an expired certificate or a key of another
//! certificate stops the server at start with an error naming the file; a non-loopback address
//! without TLS is refused unless `--insecure-no-tls`; SIGHUP makes new connections get a renewed
//! certificate, and a bad renewal keeps the old one; `cairn mcp --server https://... --ca-file`
//! trusts the test CA, and without it refuses.

mod support;

use std::io::{Read, Write};
use std::net::TcpStream;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::Arc;
use std::time::Duration;

use rcgen::{BasicConstraints, CertificateParams, IsCa, Issuer, KeyPair};
use support::{cairn, hangup, wait_for_log, Server, BIN};
use tokio_rustls::rustls::{self, pki_types};

/// A failure guard for a client's reads: generous, never a measurement.
const READ_GUARD: Duration = Duration::from_secs(30);

struct Ca {
    issuer: Issuer<'static, KeyPair>,
    pem: String,
}

impl Ca {
    fn new(name: &str) -> Ca {
        let key = KeyPair::generate().unwrap();
        let mut params = CertificateParams::new(Vec::<String>::new()).unwrap();
        params.distinguished_name.push(rcgen::DnType::CommonName, name);
        params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        let cert = params.self_signed(&key).unwrap();
        Ca { issuer: Issuer::new(params, key), pem: cert.pem() }
    }

    /// A leaf for `localhost` and 127.0.0.1, valid from `from` to `to` (years); written to
    /// `dir/NAME.crt` and `dir/NAME.key`. Returns the paths and the certificate's DER.
    fn leaf(&self, dir: &Path, name: &str, years: (i32, i32)) -> (PathBuf, PathBuf, Vec<u8>) {
        let key = KeyPair::generate().unwrap();
        let mut params = CertificateParams::new(vec!["localhost".to_string(), "127.0.0.1".to_string()]).unwrap();
        params.not_before = rcgen::date_time_ymd(years.0, 1, 1);
        params.not_after = rcgen::date_time_ymd(years.1, 1, 1);
        let cert = params.signed_by(&key, &self.issuer).unwrap();
        let (cert_path, key_path) = (dir.join(format!("{name}.crt")), dir.join(format!("{name}.key")));
        std::fs::write(&cert_path, cert.pem()).unwrap();
        std::fs::write(&key_path, key.serialize_pem()).unwrap();
        (cert_path, key_path, cert.der().to_vec())
    }

    fn roots(&self) -> rustls::RootCertStore {
        let mut roots = rustls::RootCertStore::empty();
        let der =
            <pki_types::CertificateDer as pki_types::pem::PemObject>::from_pem_slice(self.pem.as_bytes()).unwrap();
        roots.add(der).unwrap();
        roots
    }
}

/// The validity every good test certificate has.
const NOW_VALID: (i32, i32) = (2020, 4000);

fn addr(server: &Server) -> String {
    server.base.strip_prefix("https://").unwrap_or_else(|| panic!("not an https URL: {}", server.base)).to_string()
}

/// One HTTPS request trusting only `roots`: the server's leaf certificate and the raw answer,
/// or the handshake's error.
fn https_get(addr: &str, roots: rustls::RootCertStore, path: &str) -> Result<(Vec<u8>, String), String> {
    https_send(addr, roots, &format!("GET {path} HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n"))
}

/// One raw HTTPS request (`request`: its head and body, asking `Connection: close`).
fn https_send(addr: &str, roots: rustls::RootCertStore, request: &str) -> Result<(Vec<u8>, String), String> {
    let provider = Arc::new(rustls::crypto::aws_lc_rs::default_provider());
    let config = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_root_certificates(roots)
        .with_no_client_auth();
    let name = pki_types::ServerName::try_from("localhost").unwrap();
    let connection = rustls::ClientConnection::new(Arc::new(config), name).unwrap();
    let tcp = TcpStream::connect(addr).unwrap();
    tcp.set_read_timeout(Some(READ_GUARD)).unwrap();
    let mut tls = rustls::StreamOwned::new(connection, tcp);
    tls.write_all(request.as_bytes()).map_err(|e| e.to_string())?;
    let mut answer = Vec::new();
    if let Err(e) = tls.read_to_end(&mut answer) {
        // A peer that closes without close_notify still delivered its whole answer.
        assert!(e.kind() == std::io::ErrorKind::UnexpectedEof && !answer.is_empty(), "reading the answer: {e}");
    }
    let leaf = tls.conn.peer_certificates().unwrap()[0].to_vec();
    Ok((leaf, String::from_utf8(answer).unwrap()))
}

fn tls_server(dir: &Path, cert: &Path, key: &Path) -> Server {
    Server::start(&dir.join("data"), &["--tls-cert", cert.to_str().unwrap(), "--tls-key", key.to_str().unwrap()])
}

#[test]
fn the_api_answers_over_https_with_the_configured_certificate() {
    let dir = tempfile::tempdir().unwrap();
    let ca = Ca::new("test CA");
    let (cert, key, der) = ca.leaf(dir.path(), "server", NOW_VALID);
    let server = tls_server(dir.path(), &cert, &key);
    assert!(server.base.starts_with("https://127.0.0.1:"), "{}", server.base);
    let (leaf, answer) = https_get(&addr(&server), ca.roots(), "/v1/head").unwrap();
    assert_eq!(leaf, der, "the server presents the configured certificate");
    assert!(answer.starts_with("HTTP/1.1 200"), "{answer}");
    assert!(answer.contains("\"position\":null"), "{answer}");
}

/// A Durable Stream created over HTTPS is given an `https://` `Location` (it was `http://`
/// whatever the server spoke).
#[test]
fn a_durable_stream_created_over_https_has_an_https_location() {
    let dir = tempfile::tempdir().unwrap();
    let ca = Ca::new("test CA");
    let (cert, key, _) = ca.leaf(dir.path(), "server", NOW_VALID);
    let server = tls_server(dir.path(), &cert, &key);
    let request = "PUT /v1/stream/runs/1 HTTP/1.1\r\nHost: localhost:7443\r\ncontent-type: text/plain\r\n\
                   content-length: 0\r\nConnection: close\r\n\r\n";
    let (_, answer) = https_send(&addr(&server), ca.roots(), request).unwrap();
    assert!(answer.starts_with("HTTP/1.1 201"), "{answer}");
    let location = answer.lines().find_map(|l| l.strip_prefix("location: ")).unwrap_or_else(|| panic!("{answer}"));
    assert_eq!(location, "https://localhost:7443/v1/stream/runs/1");
}

#[test]
fn plain_http_to_the_tls_port_gets_no_http_answer() {
    let dir = tempfile::tempdir().unwrap();
    let ca = Ca::new("test CA");
    let (cert, key, _) = ca.leaf(dir.path(), "server", NOW_VALID);
    let server = tls_server(dir.path(), &cert, &key);
    let mut tcp = TcpStream::connect(addr(&server)).unwrap();
    tcp.set_read_timeout(Some(READ_GUARD)).unwrap();
    tcp.write_all(b"GET /v1/head HTTP/1.1\r\nHost: localhost\r\n\r\n").unwrap();
    let mut answer = Vec::new();
    let _ = tcp.read_to_end(&mut answer);
    assert!(!answer.starts_with(b"HTTP/"), "plain HTTP was answered: {:?}", String::from_utf8_lossy(&answer));
    // The server is still fine for a TLS client.
    assert!(https_get(&addr(&server), ca.roots(), "/healthz").unwrap().1.starts_with("HTTP/1.1 200"));
}

#[test]
fn a_client_trusting_another_ca_refuses_the_server() {
    let dir = tempfile::tempdir().unwrap();
    let (ca, other) = (Ca::new("test CA"), Ca::new("another CA"));
    let (cert, key, _) = ca.leaf(dir.path(), "server", NOW_VALID);
    let server = tls_server(dir.path(), &cert, &key);
    let error = https_get(&addr(&server), other.roots(), "/healthz").unwrap_err();
    assert!(error.contains("UnknownIssuer"), "{error}");
}

#[test]
fn an_expired_certificate_or_a_mismatched_key_stops_the_server_at_start() {
    let dir = tempfile::tempdir().unwrap();
    let ca = Ca::new("test CA");
    let (expired, expired_key, _) = ca.leaf(dir.path(), "expired", (2000, 2001));
    let (code, out, err) = cairn(
        &dir.path().join("data"),
        &[
            "serve",
            "--listen",
            "127.0.0.1:0",
            "--tls-cert",
            expired.to_str().unwrap(),
            "--tls-key",
            expired_key.to_str().unwrap(),
        ],
    );
    assert_eq!((code, out.as_str()), (1, ""), "{err}");
    assert!(err.contains("expired.crt") && err.contains("expired on"), "{err}");

    let (good, _, _) = ca.leaf(dir.path(), "good", NOW_VALID);
    let (code, _, err) = cairn(
        &dir.path().join("data"),
        &[
            "serve",
            "--listen",
            "127.0.0.1:0",
            "--tls-cert",
            good.to_str().unwrap(),
            "--tls-key",
            expired_key.to_str().unwrap(),
        ],
    );
    assert_eq!(code, 1, "{err}");
    assert!(
        err.contains("good.crt") && err.contains("expired.key") && err.contains("cannot be served together"),
        "{err}"
    );

    let (code, _, err) = cairn(&dir.path().join("data"), &["serve", "--tls-cert", good.to_str().unwrap()]);
    assert_eq!(code, 2, "--tls-cert needs --tls-key: {err}");
    assert!(err.contains("--tls-key"), "{err}");
}

#[test]
fn a_non_loopback_address_needs_tls_unless_insecure_no_tls_is_given() {
    let dir = tempfile::tempdir().unwrap();
    let auth = dir.path().join("auth.toml");
    let hash = cairn(dir.path(), &["token", "--hash", "t"]).1;
    std::fs::write(&auth, format!("[[principal]]\nname = \"a\"\n{hash}")).unwrap();
    let data = dir.path().join("data");
    let (code, _, err) = cairn(&data, &["serve", "--listen", "0.0.0.0:0", "--auth", auth.to_str().unwrap()]);
    assert_eq!(code, 2, "{err}");
    assert!(err.contains("refusing to listen on 0.0.0.0:0 without TLS") && err.contains("--insecure-no-tls"), "{err}");
    assert!(!data.exists(), "nothing was opened");

    // With the flag it serves, and says at start why that is insecure.
    let stderr_path = dir.path().join("stderr.log");
    let mut child = Command::new(BIN)
        .arg("--data")
        .arg(&data)
        .args(["serve", "--listen", "0.0.0.0:0", "--insecure-no-tls", "--auth", auth.to_str().unwrap()])
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(std::fs::File::create(&stderr_path).unwrap())
        .spawn()
        .unwrap();
    let mut line = String::new();
    std::io::BufRead::read_line(&mut std::io::BufReader::new(child.stdout.take().unwrap()), &mut line).unwrap();
    let _ = child.kill();
    let _ = child.wait();
    assert!(line.starts_with("listening on http://0.0.0.0:"), "{line}");
    let log = std::fs::read_to_string(&stderr_path).unwrap();
    assert!(log.contains("TLS OFF (--insecure-no-tls)") && log.contains("plain text"), "{log}");
}

#[test]
fn sighup_serves_a_renewed_certificate_to_new_connections_and_keeps_the_old_one_on_a_bad_renewal() {
    let dir = tempfile::tempdir().unwrap();
    let ca = Ca::new("test CA");
    let (cert, key, first) = ca.leaf(dir.path(), "server", NOW_VALID);
    let server = tls_server(dir.path(), &cert, &key);
    assert_eq!(https_get(&addr(&server), ca.roots(), "/healthz").unwrap().0, first);

    // Renew: a new pair in place of the old files, then SIGHUP.
    let (renewed_cert, renewed_key, renewed) = ca.leaf(dir.path(), "renewed", NOW_VALID);
    std::fs::rename(&renewed_cert, &cert).unwrap();
    std::fs::rename(&renewed_key, &key).unwrap();
    hangup(&server);
    wait_for_log(&server, "TLS certificate reloaded", 1);
    let (leaf, answer) = https_get(&addr(&server), ca.roots(), "/healthz").unwrap();
    assert_eq!(leaf, renewed, "a new connection gets the renewed certificate");
    assert!(answer.starts_with("HTTP/1.1 200"), "{answer}");

    // A bad renewal (an expired certificate, then garbage): logged, and the renewed pair stays.
    let (expired_cert, expired_key, _) = ca.leaf(dir.path(), "expired", (2000, 2001));
    std::fs::rename(&expired_cert, &cert).unwrap();
    std::fs::rename(&expired_key, &key).unwrap();
    hangup(&server);
    wait_for_log(&server, "TLS certificate NOT reloaded", 1);
    std::fs::write(&cert, "not a certificate").unwrap();
    hangup(&server);
    wait_for_log(&server, "TLS certificate NOT reloaded", 2);
    let log = server.stderr();
    assert!(log.contains("expired on") && log.contains("holds no PEM certificate"), "the log says why: {log}");
    assert_eq!(https_get(&addr(&server), ca.roots(), "/healthz").unwrap().0, renewed);
}

/// One tool call of `cairn mcp ARGS` (stdio, driven by the MCP SDK's client): the result.
async fn mcp_call(args: &[&str], tool: &str) -> rmcp::model::CallToolResult {
    use rmcp::transport::{ConfigureCommandExt, TokioChildProcess};
    use rmcp::ServiceExt;
    let command = tokio::process::Command::new(BIN).configure(|c| {
        c.args(args);
    });
    let client = ().serve(TokioChildProcess::new(command).unwrap()).await.expect("the MCP session starts");
    let result = client.call_tool(rmcp::model::CallToolRequestParams::new(tool.to_string())).await.unwrap();
    client.cancel().await.unwrap();
    result
}

/// `--ca-file` is what lets `cairn mcp --server` reach a server whose certificate a private CA
/// signed: with it the tools answer from the server; without it the same call is refused with
/// `unavailable`, naming the certificate problem.
#[test]
fn cairn_mcp_trusts_a_private_ca_given_with_ca_file() {
    let dir = tempfile::tempdir().unwrap();
    let ca = Ca::new("test CA");
    let (cert, key, _) = ca.leaf(dir.path(), "server", NOW_VALID);
    let server = tls_server(dir.path(), &cert, &key);
    let ca_file = dir.path().join("ca.pem");
    std::fs::write(&ca_file, &ca.pem).unwrap();
    // The leaf names localhost: connect by that name, as a client of a real server would.
    let url = server.base.replace("127.0.0.1", "localhost");
    let runtime = tokio::runtime::Runtime::new().unwrap();
    let trusted =
        runtime.block_on(mcp_call(&["mcp", "--server", &url, "--ca-file", ca_file.to_str().unwrap()], "head"));
    assert_ne!(trusted.is_error, Some(true), "{:?}", trusted.content);
    assert_eq!(trusted.structured_content.unwrap()["position"], serde_json::Value::Null);

    let refused = runtime.block_on(mcp_call(&["mcp", "--server", &url], "head"));
    assert_eq!(refused.is_error, Some(true), "{:?}", refused.structured_content);
    let body: serde_json::Value = serde_json::from_str(&refused.content[0].as_text().unwrap().text).unwrap();
    assert_eq!(body["error"], "unavailable", "{body}");
    assert!(body["message"].as_str().unwrap().contains("certificate"), "{body}");
}
