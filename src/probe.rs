//! What a TLS server really serves: connect to a `probe:` target, read the leaf it sends, and
//! compare it with the installed one.
//!
//! The most common silent failure after a renewal is a service that was never reloaded: the
//! files on disk are new, the service serves the previous certificate until it expires. The
//! probe tells exactly that apart from a service serving something else altogether, or
//! nothing.
//!
//! Any chain is accepted for reading: the probe compares, it does not trust (a test CA, an
//! expired leaf, a missing intermediate must all still be read). The handshake signature is
//! still checked against the served leaf's key, so the server proves it holds that leaf's
//! key. Each probe is bounded by [`PROBE_TIMEOUT`], name resolution included.

use std::sync::Arc;
use std::time::Duration;

use base64::Engine as _;
use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::crypto::{CryptoProvider, verify_tls12_signature, verify_tls13_signature};
use rustls::pki_types::{CertificateDer, ServerName, UnixTime};
use rustls::{ClientConfig, DigitallySignedStruct, SignatureScheme};
use time::OffsetDateTime;
use tokio::net::TcpStream;
use tokio_rustls::TlsConnector;

use crate::cert::{Inspection, inspect_chain};
use crate::dns::DnsName;
use crate::shown::bare;

/// How long one probe may take, from resolving the name to the end of the handshake: a
/// local service answers in milliseconds, a remote one within a second.
const PROBE_TIMEOUT: Duration = Duration::from_secs(5);
/// How much of a connection or TLS error goes into a line.
const MAX_REASON: usize = crate::shown::MAX_EXCERPT;

/// What a target serves, compared with the installed certificate.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Verdict {
    /// The installed leaf.
    Same,
    /// A certificate for these names from the installed one's issuer (the same authority
    /// key), issued before it: the previous certificate, still served because the service
    /// was not reloaded.
    Older,
    /// Any other certificate (other names, another issuer, a self-signed one, a newer one,
    /// or nothing installed to compare).
    Other,
    /// No TLS handshake: why, in one line.
    Unreachable(String),
}

impl Verdict {
    /// The metrics label (`metrics::RESULTS`).
    pub(crate) fn label(&self) -> &'static str {
        match self {
            Self::Same => "same",
            Self::Older => "older",
            Self::Other => "other",
            Self::Unreachable(_) => "unreachable",
        }
    }
}

/// One probe of one target.
#[derive(Debug, Clone)]
pub(crate) struct Probe {
    pub(crate) target: String,
    pub(crate) verdict: Verdict,
    /// The served leaf, when there was one.
    pub(crate) served: Option<Inspection>,
    /// When the probe started.
    pub(crate) at: OffsetDateTime,
}

/// The name sent as SNI for a certificate with `names`: the first name that is not a
/// wildcard (a wildcard is no host name), else the first wildcard's base name.
pub(crate) fn sni_name(names: &[DnsName]) -> Option<DnsName> {
    names
        .iter()
        .find(|name| !name.is_wildcard())
        .or_else(|| names.first())
        .map(DnsName::base)
}

/// Probes `target` (`host:port`) with SNI `sni` and compares what it serves with `installed`.
pub(crate) async fn probe(target: &str, sni: &DnsName, installed: Option<&Inspection>) -> Probe {
    probe_within(target, sni, installed, PROBE_TIMEOUT).await
}

async fn probe_within(
    target: &str,
    sni: &DnsName,
    installed: Option<&Inspection>,
    limit: Duration,
) -> Probe {
    let at = OffsetDateTime::now_utc();
    let served = match tokio::time::timeout(limit, served_leaf(target, sni)).await {
        Ok(served) => served,
        Err(_) => Err(ProbeError::Timeout(limit)),
    };
    let (verdict, served) = match served {
        Ok(leaf) => (compare(installed, &leaf), Some(leaf)),
        Err(reason) => (Verdict::Unreachable(reason.to_string()), None),
    };
    Probe {
        target: target.to_owned(),
        verdict,
        served,
        at,
    }
}

/// Why a target served no certificate to compare; each is one line, outside text bounded.
#[derive(Debug, thiserror::Error)]
enum ProbeError {
    #[error("not a TLS server name: {}", bare(&.0.to_string(), MAX_REASON))]
    ServerName(rustls::pki_types::InvalidDnsNameError),
    #[error("cannot connect: {}", bare(&.0.to_string(), MAX_REASON))]
    Connect(std::io::Error),
    #[error("cannot set up TLS: {0}")]
    Setup(rustls::Error),
    #[error("TLS handshake failed: {}", bare(&.0.to_string(), MAX_REASON))]
    Handshake(std::io::Error),
    #[error("the server sent no certificate")]
    NoCertificate,
    #[error("the served certificate: {}", bare(&.0.to_string(), MAX_REASON))]
    Served(crate::cert::InspectError),
    #[error("no TLS handshake within {} ms", .0.as_millis())]
    Timeout(Duration),
}

/// The leaf `target` serves for `sni`; `Err` says why there is none.
async fn served_leaf(target: &str, sni: &DnsName) -> Result<Inspection, ProbeError> {
    let name = ServerName::try_from(sni.as_str().to_owned()).map_err(ProbeError::ServerName)?;
    let stream = TcpStream::connect(target)
        .await
        .map_err(ProbeError::Connect)?;
    let connector = TlsConnector::from(Arc::new(client_config()?));
    let tls = connector
        .connect(name, stream)
        .await
        .map_err(ProbeError::Handshake)?;
    let (_, connection) = tls.get_ref();
    let leaf = connection
        .peer_certificates()
        .and_then(<[CertificateDer<'_>]>::first)
        .ok_or(ProbeError::NoCertificate)?;
    inspect_chain(pem(leaf).as_bytes()).map_err(ProbeError::Served)
}

/// The client: aws-lc-rs, TLS 1.2 and 1.3, any chain (see the module doc).
fn client_config() -> Result<ClientConfig, ProbeError> {
    let provider = Arc::new(rustls::crypto::aws_lc_rs::default_provider());
    let config = ClientConfig::builder_with_provider(provider.clone())
        .with_safe_default_protocol_versions()
        .map_err(ProbeError::Setup)?
        .dangerous()
        .with_custom_certificate_verifier(Arc::new(AnyChain(provider)))
        .with_no_client_auth();
    Ok(config)
}

/// The installed leaf, the previous one (see [`Verdict::Older`]), or another.
fn compare(installed: Option<&Inspection>, served: &Inspection) -> Verdict {
    let Some(installed) = installed else {
        return Verdict::Other;
    };
    // Issuer and serial name one certificate (RFC 5280 4.1.2.2); the key makes it certain.
    if served.serial == installed.serial
        && served.authority_key_id == installed.authority_key_id
        && served.public_key_info == installed.public_key_info
    {
        return Verdict::Same;
    }
    let shares_a_name = served
        .names
        .iter()
        .any(|name| installed.names.contains(name));
    // "Previous" only for what fleetcert could have installed before: the same issuer's
    // certificate, issued earlier (CAs draw serials at random, so the issue time orders
    // them). An expired self-signed one for the same name is something else, said as such.
    let same_issuer =
        served.authority_key_id.is_some() && served.authority_key_id == installed.authority_key_id;
    if shares_a_name && same_issuer && served.not_before <= installed.not_before {
        Verdict::Older
    } else {
        Verdict::Other
    }
}

/// A DER certificate as PEM, for the one parser the installed files go through too.
fn pem(der: &CertificateDer<'_>) -> String {
    let body = base64::engine::general_purpose::STANDARD.encode(der.as_ref());
    let mut text = String::from("-----BEGIN CERTIFICATE-----\n");
    for line in body.as_bytes().chunks(64) {
        text.push_str(&String::from_utf8_lossy(line));
        text.push('\n');
    }
    text.push_str("-----END CERTIFICATE-----\n");
    text
}

/// Accepts any chain, checks the handshake signature (see the module doc).
#[derive(Debug)]
struct AnyChain(Arc<CryptoProvider>);

impl ServerCertVerifier for AnyChain {
    fn verify_server_cert(
        &self,
        _end_entity: &CertificateDer<'_>,
        _intermediates: &[CertificateDer<'_>],
        _server_name: &ServerName<'_>,
        _ocsp_response: &[u8],
        _now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        Ok(ServerCertVerified::assertion())
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        verify_tls12_signature(
            message,
            cert,
            dss,
            &self.0.signature_verification_algorithms,
        )
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        verify_tls13_signature(
            message,
            cert,
            dss,
            &self.0.signature_verification_algorithms,
        )
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.0.signature_verification_algorithms.supported_schemes()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn leaf(serial: u8, not_before: i64, names: &[&str]) -> Inspection {
        Inspection {
            not_before: OffsetDateTime::from_unix_timestamp(not_before).expect("time"),
            not_after: OffsetDateTime::from_unix_timestamp(not_before + 86_400).expect("time"),
            names: names.iter().map(|n| (*n).to_owned()).collect(),
            key_type: None,
            public_key_info: vec![serial],
            authority_key_id: Some(vec![1]),
            serial: vec![serial],
            seed: u64::from(serial),
        }
    }

    #[test]
    fn the_served_leaf_is_the_installed_one_the_previous_one_or_another() {
        let installed = leaf(2, 2_000, &["a.org", "b.org"]);
        assert_eq!(compare(Some(&installed), &installed.clone()), Verdict::Same);
        // Issued before, for one of the names: the service was not reloaded.
        assert_eq!(
            compare(Some(&installed), &leaf(1, 1_000, &["a.org"])),
            Verdict::Older
        );
        // Another name, or issued after the installed one: something else serves there.
        assert_eq!(
            compare(Some(&installed), &leaf(1, 1_000, &["c.org"])),
            Verdict::Other
        );
        assert_eq!(
            compare(Some(&installed), &leaf(3, 3_000, &["a.org"])),
            Verdict::Other
        );
        assert_eq!(compare(None, &installed), Verdict::Other);
    }

    #[test]
    fn only_the_same_issuers_earlier_certificate_is_the_previous_one() {
        let installed = leaf(2, 2_000, &["a.org"]);
        // An expired self-signed certificate for the same name: no authority key, or its own.
        let mut self_signed = leaf(1, 1_000, &["a.org"]);
        self_signed.authority_key_id = None;
        assert_eq!(compare(Some(&installed), &self_signed), Verdict::Other);
        self_signed.authority_key_id = Some(vec![9]);
        assert_eq!(compare(Some(&installed), &self_signed), Verdict::Other);
        // The same CA's earlier one is the previous certificate.
        assert_eq!(
            compare(Some(&installed), &leaf(1, 1_000, &["a.org"])),
            Verdict::Older
        );
    }

    #[test]
    fn sni_is_the_first_name_that_is_no_wildcard() {
        let names = |list: &[&str]| -> Vec<DnsName> {
            list.iter()
                .map(|n| DnsName::parse_identifier(n).expect("name"))
                .collect()
        };
        let sni = |list: &[&str]| sni_name(&names(list)).map(|n| n.to_string());
        assert_eq!(sni(&["*.a.org", "b.org"]).as_deref(), Some("b.org"));
        assert_eq!(sni(&["*.a.org"]).as_deref(), Some("a.org"));
        assert_eq!(sni(&[]), None);
    }

    #[tokio::test]
    async fn a_server_that_never_answers_is_unreachable_within_the_limit() {
        // The kernel completes the TCP handshake from the backlog; nobody ever reads the
        // ClientHello.
        let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
        let target = listener.local_addr().expect("address").to_string();
        let sni = DnsName::parse("a.org").expect("name");
        let started = std::time::Instant::now();
        let probe = probe_within(&target, &sni, None, Duration::from_millis(300)).await;
        assert!(started.elapsed() < Duration::from_secs(2));
        assert_eq!(
            probe.verdict,
            Verdict::Unreachable("no TLS handshake within 300 ms".to_owned())
        );
        drop(listener);
    }

    #[tokio::test]
    async fn a_closed_port_is_unreachable_with_the_reason() {
        // Bind and drop: the port is closed for the moment of the probe.
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .and_then(|listener| listener.local_addr())
            .expect("a free port")
            .port();
        let sni = DnsName::parse("a.org").expect("name");
        let probe = probe(&format!("127.0.0.1:{port}"), &sni, None).await;
        match probe.verdict {
            Verdict::Unreachable(reason) => {
                assert!(reason.starts_with("cannot connect"), "{reason}");
            }
            other => panic!("{other:?}"),
        }
    }
}
