//! One HTTP(S) POST per delivery, on hyper's HTTP/1 connection API and rustls with the `ring`
//! provider. A new connection each time: alerts are rare, and an idle connection would need
//! keep-alive traffic (wake-ups) or would go stale. Certificates are always verified, against
//! the system's store or a webhook's `ca-file`; there is no switch to skip that.

use std::sync::{Arc, OnceLock};
use std::time::Duration;

use http_body_util::{BodyExt, Full, Limited};
use hyper::body::Bytes;
use hyper_util::rt::TokioIo;
use rustls::RootCertStore;
use rustls_pki_types::{CertificateDer, ServerName};
use tokio::net::TcpStream;

use crate::config::webhook::{CaFile, Target};

/// Why a POST did not get an answer. Messages never contain the URL's path or query.
#[derive(Debug, thiserror::Error)]
pub enum PostError {
    #[error("cannot resolve {host}: {source}")]
    Resolve {
        host: String,
        #[source]
        source: std::io::Error,
    },
    #[error("cannot connect: {0}")]
    Connect(#[source] std::io::Error),
    #[error("TLS: {0}")]
    Tls(#[source] std::io::Error),
    #[error("{0}")]
    TlsSetup(String),
    #[error("HTTP: {0}")]
    Http(#[from] hyper::Error),
    #[error("no answer within {}", humantime::format_duration(*.0))]
    Timeout(Duration),
}

/// What a request carries besides its body.
#[derive(Debug, Clone)]
pub struct Request<'a> {
    pub target: &'a Target,
    pub headers: &'a [(http::HeaderName, http::HeaderValue)],
    pub timeout: Duration,
}

/// A client for one webhook: TLS settings fixed at creation.
#[derive(Debug, Clone)]
pub struct Client {
    tls: Option<Result<Arc<rustls::ClientConfig>, String>>,
}

impl Client {
    /// For `target`; `ca` replaces the system store when given.
    pub fn new(target: &Target, ca: Option<&CaFile>) -> Self {
        let tls = target.https.then(|| match ca {
            Some(ca) => private_ca(ca).map(Arc::new),
            None => system_tls(),
        });
        Self { tls }
    }

    /// POSTs `body`; the answer's status code, whatever it is.
    pub async fn post(&self, req: &Request<'_>, body: Vec<u8>) -> Result<u16, PostError> {
        match tokio::time::timeout(req.timeout, self.exchange(req, body)).await {
            Ok(r) => r,
            Err(_) => Err(PostError::Timeout(req.timeout)),
        }
    }

    async fn exchange(&self, req: &Request<'_>, body: Vec<u8>) -> Result<u16, PostError> {
        let target = req.target;
        let stream = connect(target).await?;
        let mut builder = hyper::Request::post(target.path_and_query())
            .header(http::header::HOST, target.authority())
            .header(http::header::CONTENT_TYPE, "application/json")
            .header(
                http::header::USER_AGENT,
                concat!("fwdguard/", env!("CARGO_PKG_VERSION")),
            );
        for (name, value) in req.headers {
            builder = builder.header(name, value);
        }
        let request = builder
            .body(Full::new(Bytes::from(body)))
            .map_err(|e| PostError::TlsSetup(format!("cannot build the request: {e}")))?;
        match &self.tls {
            None => send(TokioIo::new(stream), request).await,
            Some(Err(e)) => Err(PostError::TlsSetup(e.clone())),
            Some(Ok(config)) => {
                let name = ServerName::try_from(target.bare_host().to_owned())
                    .map_err(|e| PostError::TlsSetup(format!("{}: {e}", target.host)))?;
                let tls = tokio_rustls::TlsConnector::from(config.clone())
                    .connect(name, stream)
                    .await
                    .map_err(PostError::Tls)?;
                send(TokioIo::new(tls), request).await
            }
        }
    }
}

async fn connect(target: &Target) -> Result<TcpStream, PostError> {
    let addrs = tokio::net::lookup_host((target.bare_host(), target.port))
        .await
        .map_err(|source| PostError::Resolve {
            host: target.host.clone(),
            source,
        })?;
    let mut last = None;
    for addr in addrs {
        match TcpStream::connect(addr).await {
            Ok(s) => {
                let _ = s.set_nodelay(true);
                return Ok(s);
            }
            Err(e) => last = Some(e),
        }
    }
    Err(PostError::Connect(last.unwrap_or_else(|| {
        std::io::Error::new(std::io::ErrorKind::NotFound, "no address")
    })))
}

async fn send<I>(io: I, request: hyper::Request<Full<Bytes>>) -> Result<u16, PostError>
where
    I: hyper::rt::Read + hyper::rt::Write + Unpin + Send + 'static,
{
    let (mut sender, connection) = hyper::client::conn::http1::handshake(io).await?;
    let exchange = async move {
        let response = sender.send_request(request).await?;
        let status = response.status().as_u16();
        // Read a bounded answer so the server sees the exchange through; its content is not
        // used (and may be large or hostile).
        let _ = Limited::new(response.into_body(), 64 * 1024)
            .collect()
            .await;
        Ok::<_, PostError>(status)
        // `sender` drops here, which lets `connection` finish.
    };
    let (status, _) = tokio::join!(exchange, connection);
    status
}

fn provider() -> Arc<rustls::crypto::CryptoProvider> {
    Arc::new(rustls::crypto::ring::default_provider())
}

fn config_with(roots: RootCertStore) -> Result<rustls::ClientConfig, String> {
    let mut config = rustls::ClientConfig::builder_with_provider(provider())
        .with_safe_default_protocol_versions()
        .map_err(|e| format!("TLS setup: {e}"))?
        .with_root_certificates(roots)
        .with_no_client_auth();
    config.alpn_protocols = vec![b"http/1.1".to_vec()];
    Ok(config)
}

fn private_ca(ca: &CaFile) -> Result<rustls::ClientConfig, String> {
    let mut roots = RootCertStore::empty();
    let (added, _) =
        roots.add_parsable_certificates(ca.certs.iter().map(|c| CertificateDer::from(c.clone())));
    if added == 0 {
        return Err(format!(
            "ca-file {}: no usable CA certificate",
            ca.path.display()
        ));
    }
    config_with(roots)
}

/// The system's CA store, loaded once per process (on first use, on the delivery thread).
fn system_tls() -> Result<Arc<rustls::ClientConfig>, String> {
    static SYSTEM: OnceLock<Result<Arc<rustls::ClientConfig>, String>> = OnceLock::new();
    SYSTEM
        .get_or_init(|| {
            let found = rustls_native_certs::load_native_certs();
            let mut roots = RootCertStore::empty();
            let (added, _) = roots.add_parsable_certificates(found.certs);
            if added == 0 {
                let why = found
                    .errors
                    .first()
                    .map(|e| format!(" ({e})"))
                    .unwrap_or_default();
                return Err(format!(
                    "no CA certificates in the system store{why}: install ca-certificates, or give the webhook a ca-file"
                ));
            }
            config_with(roots).map(Arc::new)
        })
        .clone()
}
