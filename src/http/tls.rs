//! TLS for `cairn serve --tls-cert FILE --tls-key FILE`: rustls (ring provider, no OpenSSL)
//! through tokio-rustls, and the certificate's reload on SIGHUP.
//!
//! Invariants:
//! - A certificate is checked before it is served: the files parse as PEM, the chain is not
//!   empty, the first certificate is valid now (not expired, not yet to come), and the key
//!   matches it. Start-up fails on a bad pair with an error naming the file; a reload that
//!   fails keeps the pair in use and logs why, so a botched renewal never takes the server down.
//! - A reload changes what new connections get; a connection already open keeps the
//!   certificate it was handshaken with.
//! - Only TLS 1.2 and 1.3 with rustls's default (safe) cipher suites; ALPN offers `http/1.1`,
//!   the one protocol the server speaks.
//!
//! The handshake runs in the connection's task, bounded by the header timeout, so a client that
//! stalls it holds one connection slot and never the accept loop.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use parking_lot::RwLock;
use rustls_pki_types::pem::PemObject as _;
use rustls_pki_types::{CertificateDer, PrivateKeyDer};
use tokio_rustls::rustls;

/// Why a certificate and key pair cannot be served.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum TlsError {
    #[error("cannot read the TLS certificate file {}: {message}", path.display())]
    Certificate { path: PathBuf, message: String },
    #[error("cannot read the TLS key file {}: {message}", path.display())]
    Key { path: PathBuf, message: String },
    #[error("the TLS certificate in {} {problem}", path.display())]
    Validity { path: PathBuf, problem: String },
    #[error("the TLS certificate {} and key {} cannot be served together: {message}", cert.display(), key.display())]
    Config { cert: PathBuf, key: PathBuf, message: String },
}

/// The server's TLS settings: the files, and the configuration built from them last.
#[derive(Debug)]
pub struct Tls {
    cert: PathBuf,
    key: PathBuf,
    current: RwLock<Arc<rustls::ServerConfig>>,
}

impl Tls {
    /// Loads and checks the pair; the error names the file at fault.
    pub fn load(cert: &Path, key: &Path) -> Result<Tls, TlsError> {
        let config = server_config(cert, key)?;
        Ok(Tls { cert: cert.to_path_buf(), key: key.to_path_buf(), current: RwLock::new(Arc::new(config)) })
    }

    /// Reads the files again. On success new connections get the new pair; on failure the old
    /// pair stays and the error says why.
    pub fn reload(&self) -> Result<(), TlsError> {
        let config = server_config(&self.cert, &self.key)?;
        *self.current.write() = Arc::new(config);
        Ok(())
    }

    /// The acceptor for the next connection.
    pub fn acceptor(&self) -> tokio_rustls::TlsAcceptor {
        tokio_rustls::TlsAcceptor::from(self.current.read().clone())
    }

    pub fn cert_path(&self) -> &Path {
        &self.cert
    }
}

fn server_config(cert_path: &Path, key_path: &Path) -> Result<rustls::ServerConfig, TlsError> {
    let cert_error = |message: String| TlsError::Certificate { path: cert_path.to_path_buf(), message };
    let certs: Vec<CertificateDer<'static>> = CertificateDer::pem_file_iter(cert_path)
        .map_err(|e| cert_error(pem_message(&e)))?
        .collect::<Result<_, _>>()
        .map_err(|e| cert_error(pem_message(&e)))?;
    let Some(leaf) = certs.first() else {
        return Err(cert_error("it holds no PEM certificate (-----BEGIN CERTIFICATE-----)".into()));
    };
    check_validity(cert_path, leaf)?;
    let key = PrivateKeyDer::from_pem_file(key_path)
        .map_err(|e| TlsError::Key { path: key_path.to_path_buf(), message: pem_message(&e) })?;
    let provider = Arc::new(rustls::crypto::aws_lc_rs::default_provider());
    let config_error = |e: rustls::Error| TlsError::Config {
        cert: cert_path.to_path_buf(),
        key: key_path.to_path_buf(),
        message: e.to_string(),
    };
    let mut config = rustls::ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(config_error)?
        .with_no_client_auth()
        .with_single_cert(certs, key)
        .map_err(config_error)?;
    config.alpn_protocols = vec![b"http/1.1".to_vec()];
    Ok(config)
}

/// Refuses a certificate that clients would refuse anyway, so the operator hears of it at start
/// (or at reload) rather than from every client.
fn check_validity(path: &Path, der: &CertificateDer<'_>) -> Result<(), TlsError> {
    let problem = |problem: String| TlsError::Validity { path: path.to_path_buf(), problem };
    let (_, cert) = x509_parser::parse_x509_certificate(der)
        .map_err(|e| problem(format!("is not a valid X.509 certificate: {e}")))?;
    let validity = cert.validity();
    let now = x509_parser::time::ASN1Time::now();
    if now > validity.not_after {
        return Err(problem(format!("expired on {}", validity.not_after)));
    }
    if now < validity.not_before {
        return Err(problem(format!("is not valid before {}", validity.not_before)));
    }
    Ok(())
}

fn pem_message(e: &rustls_pki_types::pem::Error) -> String {
    use rustls_pki_types::pem::Error;
    match e {
        Error::NoItemsFound => "it holds no PEM item of the expected kind".to_string(),
        Error::Io(io) => io.to_string(),
        other => format!("it is not valid PEM ({other})"),
    }
}
