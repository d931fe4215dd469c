//! The HTTPS client that talks to the CA: instant-acme's default client, with TCP_NODELAY.
//!
//! instant-acme builds hyper's `HttpConnector` with Nagle's algorithm left on. hyper writes
//! an HTTP/2 POST as two segments (HEADERS, then DATA); with Nagle the DATA segment waits
//! until the HEADERS segment is acknowledged, and the CA's kernel delays that ACK (Linux:
//! up to 40 ms). So every JWS POST cost about 45 ms of idle waiting: a `finalize` makes
//! about eight of them, 0.35 s of its 0.75 s on the sandbox (seen with strace, see
//! docs/benchmarks.md). Everything else is as in instant-acme 0.8: the system's trust
//! store by default, or exactly the first certificate of `ca_bundle` when it is set.

use std::path::Path;

use bytes::Bytes;
use hyper_rustls::HttpsConnectorBuilder;
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::TokioExecutor;
use instant_acme::{BodyWrapper, HttpClient};
use rustls::pki_types::CertificateDer;
use rustls::pki_types::pem::PemObject;
use rustls::{ClientConfig, RootCertStore};

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
    let client: Client<_, BodyWrapper<Bytes>> =
        Client::builder(TokioExecutor::new()).build(connector);
    Ok(Box::new(client))
}
