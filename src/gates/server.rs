//! Serving the approval API (and Slack's endpoint): TLS with a certificate and key
//! from files (a Secret mounted as cert-manager writes it: `tls.crt`, `tls.key`),
//! re-read when they change; plain HTTP only when the operator asks for it.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::{Arc, RwLock};
use std::time::{Duration, SystemTime};

use axum::extract::ConnectInfo;
use axum::Router;
use hyper_util::rt::TokioIo;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use rustls::server::{ClientHello, ResolvesServerCert};
use rustls::sign::CertifiedKey;
use tokio::net::TcpListener;

/// Where the certificate chain and its key are (PEM).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TlsFiles {
    pub cert: PathBuf,
    pub key: PathBuf,
}

/// How the API port speaks.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum ApiTransport {
    Tls(TlsFiles),
    /// Plain HTTP: bearer tokens cross the network readable. Only on request.
    InsecureHttp,
}

#[derive(Debug, thiserror::Error)]
pub enum ServeError {
    #[error("{0}")]
    Config(String),
    #[error("TLS certificate {path}: {message}")]
    Tls { path: String, message: String },
    #[error("serving the API: {0}")]
    Io(#[from] std::io::Error),
}

/// How long a client may take for the TLS handshake.
const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);
/// How often the files are looked at for a renewed certificate.
const RELOAD_EVERY: Duration = Duration::from_secs(30);

/// The certificate and key, checked to belong together.
pub fn certified_key(cert_pem: &[u8], key_pem: &[u8]) -> Result<CertifiedKey, String> {
    let certs: Vec<CertificateDer<'static>> = CertificateDer::pem_slice_iter(cert_pem)
        .collect::<Result<_, _>>()
        .map_err(|e| format!("certificate PEM: {e}"))?;
    if certs.is_empty() {
        return Err("no certificate in the PEM".into());
    }
    let key = PrivateKeyDer::from_pem_slice(key_pem).map_err(|e| format!("key PEM: {e}"))?;
    let signer =
        rustls::crypto::ring::sign::any_supported_type(&key).map_err(|e| format!("key: {e}"))?;
    let ck = CertifiedKey::new(certs, signer);
    ck.keys_match()
        .map_err(|e| format!("the key does not belong to the certificate: {e}"))?;
    Ok(ck)
}

fn mtime(p: &PathBuf) -> Option<SystemTime> {
    std::fs::metadata(p).and_then(|m| m.modified()).ok()
}

/// Serves the last good certificate; [`Self::reload`] swaps in a renewed one.
#[derive(Debug)]
struct Reloading {
    files: TlsFiles,
    current: RwLock<(Option<SystemTime>, Option<SystemTime>, Arc<CertifiedKey>)>,
}

impl Reloading {
    fn load(files: &TlsFiles) -> Result<CertifiedKey, ServeError> {
        let read = |p: &PathBuf| {
            std::fs::read(p).map_err(|e| ServeError::Tls {
                path: p.display().to_string(),
                message: e.to_string(),
            })
        };
        let (cert, key) = (read(&files.cert)?, read(&files.key)?);
        certified_key(&cert, &key).map_err(|message| ServeError::Tls {
            path: files.cert.display().to_string(),
            message,
        })
    }

    fn new(files: TlsFiles) -> Result<Self, ServeError> {
        let (cm, km) = (mtime(&files.cert), mtime(&files.key));
        let ck = Self::load(&files)?;
        Ok(Self {
            files,
            current: RwLock::new((cm, km, Arc::new(ck))),
        })
    }

    /// Re-read when either file changed; a bad pair keeps the old one (logged).
    fn reload(&self) {
        let (cm, km) = (mtime(&self.files.cert), mtime(&self.files.key));
        let unchanged = match self.current.read() {
            Ok(c) => c.0 == cm && c.1 == km,
            Err(_) => false,
        };
        if unchanged {
            return;
        }
        match Self::load(&self.files) {
            Ok(ck) => {
                if let Ok(mut c) = self.current.write() {
                    *c = (cm, km, Arc::new(ck));
                }
                tracing::info!(cert = %self.files.cert.display(), "API TLS certificate reloaded");
            }
            // cert-manager writes both files; between the two writes they disagree.
            Err(e) => tracing::warn!(error = %e, "keeping the current API TLS certificate"),
        }
    }
}

impl ResolvesServerCert for Reloading {
    fn resolve(&self, _hello: ClientHello<'_>) -> Option<Arc<CertifiedKey>> {
        self.current.read().ok().map(|c| c.2.clone())
    }
}

/// A rustls server configuration for `files` (read now: a bad pair fails startup),
/// plus the resolver that reloads them.
fn tls_config(files: TlsFiles) -> Result<(rustls::ServerConfig, Arc<Reloading>), ServeError> {
    let resolver = Arc::new(Reloading::new(files)?);
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let mut config = rustls::ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|e| ServeError::Tls {
            path: String::new(),
            message: e.to_string(),
        })?
        .with_no_client_auth()
        .with_cert_resolver(resolver.clone());
    config.alpn_protocols = vec![b"http/1.1".to_vec()];
    Ok((config, resolver))
}

/// Serve `app` on `listener` until an accept error. Handlers see the client address
/// as `ConnectInfo<SocketAddr>` (rate limiting) either way.
pub async fn serve_api(
    listener: TcpListener,
    app: Router,
    transport: ApiTransport,
) -> Result<(), ServeError> {
    let files = match transport {
        ApiTransport::InsecureHttp => {
            axum::serve(
                listener,
                app.into_make_service_with_connect_info::<SocketAddr>(),
            )
            .await?;
            return Ok(());
        }
        ApiTransport::Tls(files) => files,
    };
    let (config, resolver) = tls_config(files)?;
    let reloader = tokio::spawn(async move {
        let mut tick = tokio::time::interval(RELOAD_EVERY);
        loop {
            tick.tick().await;
            let r = resolver.clone();
            // File reads are blocking; keep them off the runtime's workers.
            let _ = tokio::task::spawn_blocking(move || r.reload()).await;
        }
    });
    let acceptor = tokio_rustls::TlsAcceptor::from(Arc::new(config));
    let result = loop {
        let (tcp, addr) = match listener.accept().await {
            Ok(c) => c,
            Err(e) if is_transient(&e) => {
                tracing::warn!(error = %e, "API accept failed; retrying");
                tokio::time::sleep(Duration::from_millis(100)).await;
                continue;
            }
            Err(e) => break Err(ServeError::Io(e)),
        };
        let acceptor = acceptor.clone();
        let app = app.clone();
        tokio::spawn(async move {
            let tls = match tokio::time::timeout(HANDSHAKE_TIMEOUT, acceptor.accept(tcp)).await {
                Ok(Ok(s)) => s,
                Ok(Err(e)) => {
                    tracing::debug!(client = %addr, error = %e, "TLS handshake failed");
                    return;
                }
                Err(_) => {
                    tracing::debug!(client = %addr, "TLS handshake timed out");
                    return;
                }
            };
            let svc =
                hyper::service::service_fn(move |mut req: http::Request<hyper::body::Incoming>| {
                    req.extensions_mut().insert(ConnectInfo(addr));
                    let mut app = app.clone();
                    async move { tower::Service::call(&mut app, req).await }
                });
            let conn = hyper::server::conn::http1::Builder::new()
                .header_read_timeout(HANDSHAKE_TIMEOUT)
                .timer(hyper_util::rt::TokioTimer::new())
                .serve_connection(TokioIo::new(tls), svc);
            if let Err(e) = conn.await {
                tracing::debug!(client = %addr, error = %e, "API connection ended with an error");
            }
        });
    };
    reloader.abort();
    result
}

/// Errors of one connection (the client gave up, too many open files for a moment)
/// that must not stop the server.
fn is_transient(e: &std::io::Error) -> bool {
    use std::io::ErrorKind::*;
    matches!(
        e.kind(),
        ConnectionAborted | ConnectionReset | ConnectionRefused | Interrupted | WouldBlock
    ) || e.raw_os_error() == Some(24) // EMFILE
        || e.raw_os_error() == Some(23) // ENFILE
}

#[cfg(test)]
#[path = "server_tests.rs"]
mod tests;
