use std::path::Path;

use axum::routing::get;

use super::*;

fn tls_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/data/tls")
}

fn files(name: &str, dir: &Path) -> TlsFiles {
    let (cert, key) = (dir.join("tls.crt"), dir.join("tls.key"));
    std::fs::copy(tls_dir().join(format!("{name}.crt")), &cert).unwrap();
    std::fs::copy(tls_dir().join(format!("{name}.key")), &key).unwrap();
    TlsFiles { cert, key }
}

fn scratch(tag: &str) -> PathBuf {
    let d = std::env::temp_dir().join(format!("serin-tls-{tag}-{}", std::process::id()));
    std::fs::create_dir_all(&d).unwrap();
    d
}

/// A client that trusts exactly `name`'s self-signed certificate.
fn client_trusting(name: &str) -> reqwest::Client {
    let pem = std::fs::read(tls_dir().join(format!("{name}-ca.crt"))).unwrap();
    reqwest::Client::builder()
        .tls_certs_only([reqwest::Certificate::from_pem(&pem).unwrap()])
        .timeout(Duration::from_secs(5))
        .build()
        .unwrap()
}

async fn start(transport: ApiTransport) -> SocketAddr {
    let app = Router::new().route(
        "/who",
        get(|ConnectInfo(addr): ConnectInfo<SocketAddr>| async move { addr.ip().to_string() }),
    );
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(serve_api(listener, app, transport));
    addr
}

#[tokio::test]
async fn api_speaks_tls_with_the_mounted_certificate() {
    let dir = scratch("serve");
    let addr = start(ApiTransport::Tls(files("a", &dir))).await;
    let body = client_trusting("a")
        .get(format!("https://localhost:{}/who", addr.port()))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    // Handlers see the client's address, as rate limiting needs.
    assert_eq!(body, "127.0.0.1");
    // A client that does not trust the certificate refuses it...
    assert!(client_trusting("b")
        .get(format!("https://localhost:{}/who", addr.port()))
        .send()
        .await
        .is_err());
    // ...and plain HTTP gets no answer from the TLS port.
    let plain = reqwest::Client::builder()
        .timeout(Duration::from_secs(5))
        .build()
        .unwrap()
        .get(format!("http://127.0.0.1:{}/who", addr.port()))
        .send()
        .await;
    assert!(plain.is_err() || !plain.unwrap().status().is_success());
    std::fs::remove_dir_all(&dir).unwrap();
}

#[tokio::test]
async fn plain_http_only_when_asked() {
    let addr = start(ApiTransport::InsecureHttp).await;
    let r = reqwest::get(format!("http://127.0.0.1:{}/who", addr.port()))
        .await
        .unwrap();
    assert_eq!(r.text().await.unwrap(), "127.0.0.1");
}

#[test]
fn a_key_of_another_certificate_is_refused() {
    let read = |f: &str| std::fs::read(tls_dir().join(f)).unwrap();
    assert!(certified_key(&read("a.crt"), &read("a.key")).is_ok());
    let e = certified_key(&read("a.crt"), &read("b.key")).unwrap_err();
    assert!(e.contains("does not belong"), "{e}");
    assert!(certified_key(b"", &read("a.key")).is_err());
    assert!(certified_key(&read("a.crt"), b"not a key").is_err());
}

#[test]
fn a_renewed_certificate_is_picked_up_and_a_broken_one_ignored() {
    let dir = scratch("reload");
    let f = files("a", &dir);
    let r = Reloading::new(f.clone()).unwrap();
    let served = |r: &Reloading| r.current.read().unwrap().2.cert[0].clone();
    let a = served(&r);
    // cert-manager renews: both files replaced.
    std::fs::copy(tls_dir().join("b.crt"), &f.cert).unwrap();
    std::fs::copy(tls_dir().join("b.key"), &f.key).unwrap();
    let later = SystemTime::now() + Duration::from_secs(5);
    for p in [&f.cert, &f.key] {
        std::fs::File::options()
            .write(true)
            .open(p)
            .unwrap()
            .set_modified(later)
            .unwrap();
    }
    r.reload();
    let b = served(&r);
    assert_ne!(a, b);
    // Halfway through a renewal (new certificate, old key): keep serving b.
    std::fs::copy(tls_dir().join("a.crt"), &f.cert).unwrap();
    std::fs::File::options()
        .write(true)
        .open(&f.cert)
        .unwrap()
        .set_modified(later + Duration::from_secs(5))
        .unwrap();
    r.reload();
    assert_eq!(served(&r), b);
    std::fs::remove_dir_all(&dir).unwrap();
}
