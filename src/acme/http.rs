//! The HTTPS client that talks to the CA: instant-acme's default client, with TCP_NODELAY.
//!
//! instant-acme builds hyper's `HttpConnector` with Nagle's algorithm left on. hyper writes
//! an HTTP/2 POST as two segments (HEADERS, then DATA); with Nagle the DATA segment waits
//! until the HEADERS segment is acknowledged, and the CA's kernel delays that ACK (Linux:
//! up to 40 ms). So every JWS POST cost about 45 ms of idle waiting: a `finalize` makes
//! about eight of them, 0.35 s of its 0.75 s on the sandbox (seen with strace, see
//! docs/dev/benchmarks.md). Everything else is as in instant-acme 0.8: the system's trust
//! store by default, or exactly the first certificate of `ca_bundle` when it is set.
//!
//! One addition: a CA that takes a request and never answers it (Pebble 2.4 wedged like
//! that twice in the fleet benchmark) no longer hangs `request` or `finalize` for good;
//! each request gives up after [`REQUEST_TIMEOUT`]. And one more: inside
//! [`super::observe::watch`], each answer's `Retry-After` and `expires` are kept for the
//! caller, which instant-acme's own types drop.

use std::future::Future;
use std::path::Path;
use std::pin::Pin;
use std::time::Duration;

use bytes::Bytes;
use hyper_rustls::{HttpsConnector, HttpsConnectorBuilder};
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::TokioExecutor;
use instant_acme::{BodyWrapper, BytesResponse, HttpClient};
use rustls::pki_types::CertificateDer;
use rustls::pki_types::pem::PemObject;
use rustls::{ClientConfig, RootCertStore};

/// How long one request to the CA may take until its response headers arrive. CAs answer
/// in well under a second; finalizing at Let's Encrypt is asynchronous (polled), so no
/// single request legitimately takes this long.
const REQUEST_TIMEOUT: Duration = Duration::from_secs(30);

/// hyper's client, with [`REQUEST_TIMEOUT`] on every request.
struct TimeoutClient(Client<HttpsConnector<HttpConnector>, BodyWrapper<Bytes>>);

impl HttpClient for TimeoutClient {
    fn request(
        &self,
        req: http::Request<BodyWrapper<Bytes>>,
    ) -> Pin<Box<dyn Future<Output = Result<BytesResponse, instant_acme::Error>> + Send>> {
        // Only a request made inside `observe::watch` has its answer read beyond instant-acme.
        let watched = super::observe::watching().then(|| req.uri().to_string());
        let response = HttpClient::request(&self.0, req);
        Box::pin(async move {
            let response = tokio::time::timeout(REQUEST_TIMEOUT, response)
                .await
                .unwrap_or_else(|_| {
                    Err(instant_acme::Error::Other(
                        format!(
                            "no answer within {} s (the CA accepted the connection)",
                            REQUEST_TIMEOUT.as_secs()
                        )
                        .into(),
                    ))
                })?;
            match watched {
                Some(url) => super::observe::record(url, response).await,
                None => Ok(response),
            }
        })
    }
}

/// The client for [`instant_acme::Account::builder_with_http`].
pub(crate) fn client(ca_bundle: Option<&Path>) -> Result<Box<dyn HttpClient>, instant_acme::Error> {
    let other = |err: Box<dyn std::error::Error + Send + Sync>| instant_acme::Error::Other(err);
    let tls = match ca_bundle {
        Some(path) => {
            let root = CertificateDer::from_pem_file(path).map_err(|err| other(err.into()))?;
            let mut roots = RootCertStore::empty();
            roots.add(root).map_err(|err| other(err.into()))?;
            HttpsConnectorBuilder::new().with_tls_config(
                ClientConfig::builder()
                    .with_root_certificates(roots)
                    .with_no_client_auth(),
            )
        }
        None => HttpsConnectorBuilder::new()
            .try_with_platform_verifier()
            .map_err(|err| other(err.into()))?,
    };
    let mut tcp = HttpConnector::new();
    tcp.set_nodelay(true);
    // The TLS layer above speaks https; the TCP connector must not insist on http.
    tcp.enforce_http(false);
    let connector = tls
        .https_only()
        .enable_http1()
        .enable_http2()
        .wrap_connector(tcp);
    Ok(Box::new(TimeoutClient(
        Client::builder(TokioExecutor::new()).build(connector),
    )))
}
