//! From the controller's flags to a running approval API: the transport (TLS or, when
//! asked for, plain HTTP), the authenticator for the configured audiences, and Slack
//! with its identity mapping. Everything is read and checked before the controller
//! starts, so a bad certificate or mapping stops startup instead of a dead endpoint.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;

use axum::Router;
use kube::Client;
use tokio::net::TcpListener;

use super::api::{api_router, ApiState};
use super::auth::KubeAuthenticator;
use super::ratelimit::{RateLimit, RateLimiter};
use super::secret::SecretString;
use super::server::{certified_key, serve_api, ApiTransport, ServeError, TlsFiles};
use super::slack::{slack_router, SlackState};
use super::slack_identity::IdentitySource;

/// The approval API's settings, as the controller's flags give them.
#[derive(Clone, Debug, Default)]
pub struct ApiOptions {
    pub addr: Option<SocketAddr>,
    pub tls_cert: Option<PathBuf>,
    pub tls_key: Option<PathBuf>,
    pub insecure_http: bool,
    pub audiences: Vec<String>,
    pub slack_signing_secret_file: Option<PathBuf>,
    pub slack_identities_file: Option<PathBuf>,
}

fn config(m: impl Into<String>) -> ServeError {
    ServeError::Config(m.into())
}

impl ApiOptions {
    /// TLS from the files, or plain HTTP only when explicitly allowed.
    pub fn transport(&self) -> Result<ApiTransport, ServeError> {
        match (&self.tls_cert, &self.tls_key, self.insecure_http) {
            (Some(cert), Some(key), false) => Ok(ApiTransport::Tls(TlsFiles {
                cert: cert.clone(),
                key: key.clone(),
            })),
            (None, None, true) => Ok(ApiTransport::InsecureHttp),
            _ => Err(config(
                "the approval API needs TLS: set --api-tls-cert and --api-tls-key (a Secret as \
                 cert-manager writes it: tls.crt, tls.key), or --api-insecure-http=true to \
                 serve plain HTTP",
            )),
        }
    }

    /// The audiences, trimmed; at least one.
    pub fn audiences(&self) -> Result<Vec<String>, ServeError> {
        let a: Vec<String> = self
            .audiences
            .iter()
            .map(|a| a.trim().to_string())
            .filter(|a| !a.is_empty())
            .collect();
        if a.is_empty() {
            return Err(config("--api-audience: name at least one audience"));
        }
        Ok(a)
    }
}

/// The approval API, bound and checked, ready to serve.
pub struct ApiServer {
    pub listener: TcpListener,
    pub app: Router,
    pub transport: ApiTransport,
}

impl ApiServer {
    /// Build from `opts`: read the certificate and the Slack files now, bind the port.
    pub async fn build(opts: &ApiOptions, client: Client) -> Result<Self, ServeError> {
        let transport = opts.transport()?;
        match &transport {
            ApiTransport::Tls(files) => {
                let read = |p: &PathBuf| {
                    std::fs::read(p).map_err(|e| config(format!("{}: {e}", p.display())))
                };
                certified_key(&read(&files.cert)?, &read(&files.key)?)
                    .map_err(|e| config(format!("--api-tls-cert/--api-tls-key: {e}")))?;
            }
            ApiTransport::InsecureHttp => tracing::warn!(
                "--api-insecure-http: the approval API and Slack endpoint serve plain HTTP; \
                 bearer tokens cross the network readable"
            ),
        }
        let auth = Arc::new(KubeAuthenticator::new(client.clone(), opts.audiences()?));
        let mut app = api_router(ApiState {
            client: client.clone(),
            auth: auth.clone(),
            limiter: Arc::new(RateLimiter::new(RateLimit::default())),
        });
        if let Some(path) = &opts.slack_signing_secret_file {
            let secret = std::fs::read_to_string(path).map_err(|e| {
                config(format!(
                    "--slack-signing-secret-file {}: {e}",
                    path.display()
                ))
            })?;
            let ids = opts
                .slack_identities_file
                .clone()
                .ok_or_else(|| config("--slack-identities-file is required with Slack"))?;
            let identities = IdentitySource::file(ids)
                .await
                .map_err(|e| config(e.to_string()))?;
            app = app.merge(slack_router(SlackState::new(
                client,
                auth,
                SecretString::new(secret.trim().to_string()),
                identities,
            )));
        }
        let addr = opts.addr.unwrap_or_else(|| ([0, 0, 0, 0], 8081).into());
        let listener = TcpListener::bind(addr)
            .await
            .map_err(|e| config(format!("--api-addr {addr}: {e}")))?;
        Ok(Self {
            listener,
            app,
            transport,
        })
    }

    pub async fn serve(self) -> Result<(), ServeError> {
        serve_api(self.listener, self.app, self.transport).await
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn opts(cert: Option<&str>, key: Option<&str>, insecure: bool) -> ApiOptions {
        ApiOptions {
            tls_cert: cert.map(PathBuf::from),
            tls_key: key.map(PathBuf::from),
            insecure_http: insecure,
            audiences: vec!["serin".into()],
            ..Default::default()
        }
    }

    #[test]
    fn api_needs_tls_or_an_explicit_plain_http_flag() {
        let msg = opts(None, None, false).transport().unwrap_err().to_string();
        assert!(
            msg.contains("--api-tls-cert") && msg.contains("--api-insecure-http"),
            "{msg}"
        );
        assert_eq!(
            opts(None, None, true).transport().unwrap(),
            ApiTransport::InsecureHttp
        );
        assert!(matches!(
            opts(Some("/t/tls.crt"), Some("/t/tls.key"), false).transport().unwrap(),
            ApiTransport::Tls(f) if f.key.ends_with("tls.key")
        ));
        assert!(opts(Some("/t/tls.crt"), None, false).transport().is_err());
        assert!(opts(Some("/t/tls.crt"), Some("/t/tls.key"), true)
            .transport()
            .is_err());
        let mut o = opts(None, None, true);
        o.audiences = vec![" ".into()];
        assert!(o.audiences().is_err());
    }

    #[tokio::test]
    async fn a_bad_certificate_stops_startup() {
        let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/data/tls");
        let mut o = opts(None, None, false);
        o.addr = Some(([127, 0, 0, 1], 0).into());
        o.tls_cert = Some(dir.join("a.crt"));
        o.tls_key = Some(dir.join("b.key"));
        let (client, _mock) = crate::testing::MockApi::start(vec![]);
        let err = ApiServer::build(&o, client.clone()).await.err().unwrap();
        assert!(err.to_string().contains("does not belong"), "{err}");
        o.tls_key = Some(dir.join("a.key"));
        assert!(ApiServer::build(&o, client).await.is_ok());
    }
}
