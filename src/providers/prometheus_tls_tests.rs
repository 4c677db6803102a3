//! TLS options against a loopback HTTPS server whose certificate a test CA signed.

use std::sync::Arc;

use chrono::TimeZone;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

use super::*;

const BODY: &str = r#"{"status":"success","data":{"resultType":"vector","result":[{"metric":{},"value":[1800000000,"1"]}]}}"#;

struct TlsServer {
    address: String,
    task: tokio::task::JoinHandle<()>,
}

impl Drop for TlsServer {
    fn drop(&mut self) {
        self.task.abort();
    }
}

async fn tls_server() -> TlsServer {
    let certs: Vec<CertificateDer<'static>> =
        CertificateDer::pem_slice_iter(include_bytes!("testdata/server.pem"))
            .collect::<Result<_, _>>()
            .unwrap();
    let key = PrivateKeyDer::from_pem_slice(include_bytes!("testdata/server.key")).unwrap();
    let config = rustls::ServerConfig::builder_with_provider(Arc::new(
        rustls::crypto::ring::default_provider(),
    ))
    .with_safe_default_protocol_versions()
    .unwrap()
    .with_no_client_auth()
    .with_single_cert(certs, key)
    .unwrap();
    let acceptor = tokio_rustls::TlsAcceptor::from(Arc::new(config));
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let address = format!(
        "https://127.0.0.1:{}",
        listener.local_addr().unwrap().port()
    );
    let task = tokio::spawn(async move {
        while let Ok((tcp, _)) = listener.accept().await {
            let acceptor = acceptor.clone();
            tokio::spawn(async move {
                let Ok(mut tls) = acceptor.accept(tcp).await else {
                    return;
                };
                let mut request = Vec::new();
                let mut chunk = [0u8; 1024];
                while !request.windows(4).any(|w| w == b"\r\n\r\n") {
                    match tls.read(&mut chunk).await {
                        Ok(0) | Err(_) => return,
                        Ok(n) => request.extend_from_slice(&chunk[..n]),
                    }
                }
                let response = format!(
                    "HTTP/1.1 200 OK\r\ncontent-type: application/json\r\ncontent-length: {}\r\nconnection: close\r\n\r\n{BODY}",
                    BODY.len()
                );
                let _ = tls.write_all(response.as_bytes()).await;
                let _ = tls.shutdown().await;
            });
        }
    });
    TlsServer { address, task }
}

fn at() -> DateTime<Utc> {
    Utc.timestamp_opt(1_800_000_000, 0).unwrap()
}

fn config(address: &str) -> PrometheusConfig {
    PrometheusConfig::new(address, Duration::from_secs(3))
}

#[tokio::test]
async fn an_unknown_ca_is_refused_with_the_reason() {
    let server = tls_server().await;
    let e = PrometheusSource::new(&config(&server.address))
        .unwrap()
        .query_scalar("up", at())
        .await
        .unwrap_err();
    assert_eq!(e.category(), "unreachable", "{e}");
    assert!(e.to_string().contains("UnknownIssuer"), "{e}");
    assert!(e.to_string().contains("secretRef.caKey"), "{e}");
}

#[tokio::test]
async fn the_ca_bundle_from_the_secret_is_trusted() {
    let server = tls_server().await;
    let mut c = config(&server.address);
    c.credentials.ca_pem = Some(include_bytes!("testdata/ca.pem").to_vec());
    let v = PrometheusSource::new(&c)
        .unwrap()
        .query_scalar("up", at())
        .await;
    assert_eq!(v, Ok(1.0));
}

#[tokio::test]
async fn insecure_skip_verify_accepts_any_certificate() {
    let server = tls_server().await;
    let mut c = config(&server.address);
    c.insecure_skip_verify = true;
    let v = PrometheusSource::new(&c)
        .unwrap()
        .query_scalar("up", at())
        .await;
    assert_eq!(v, Ok(1.0));
}
