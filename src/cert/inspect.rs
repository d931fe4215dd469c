//! What a certificate on disk says, and whether it is due for renewal.

use std::time::Duration;

use time::OffsetDateTime;
use x509_parser::prelude::{FromDer, GeneralName, ParsedExtension, X509Certificate};
use x509_parser::public_key::PublicKey;

use super::KeyType;
use crate::dns::DnsName;
use crate::timestamp::rfc3339;

/// A certificate file that cannot be understood.
#[derive(Debug, thiserror::Error)]
pub(crate) enum InspectError {
    /// No PEM certificate block in the file.
    #[error("holds no PEM certificate")]
    NoCertificate,
    /// A PEM block or its DER does not parse.
    #[error("does not parse as an X.509 certificate: {0}")]
    Parse(String),
}

/// The facts about a leaf certificate that renewal decisions need.
#[derive(Debug, Clone)]
pub(crate) struct Inspection {
    pub(crate) not_before: OffsetDateTime,
    pub(crate) not_after: OffsetDateTime,
    /// DNS SANs, lower case, sorted.
    pub(crate) names: Vec<String>,
    /// `None` for algorithms fleetcert does not make.
    pub(crate) key_type: Option<KeyType>,
    /// DER SubjectPublicKeyInfo, to match against a private key.
    pub(crate) public_key_info: Vec<u8>,
    /// The DER of the AKI `keyIdentifier`, for the ARI certificate ID (RFC 9773 4.1).
    pub(crate) authority_key_id: Option<Vec<u8>>,
    /// The DER-encoded serial number, for the ARI certificate ID.
    pub(crate) serial: Vec<u8>,
    /// A stable number drawn from the certificate ([`seed_of`]): where its renewal moment
    /// falls inside the days rule's spread and inside the CA's window.
    pub(crate) seed: u64,
}

/// Parses the first certificate of a PEM chain (the leaf) and counts the rest.
pub(crate) fn inspect_chain(pem: &[u8]) -> Result<Inspection, InspectError> {
    let mut blocks = Vec::new();
    for block in x509_parser::pem::Pem::iter_from_buffer(pem) {
        let block = block.map_err(|err| InspectError::Parse(err.to_string()))?;
        if block.label == "CERTIFICATE" {
            blocks.push(block.contents);
        }
    }
    let leaf_der = blocks.first().ok_or(InspectError::NoCertificate)?;
    let (_, leaf) =
        X509Certificate::from_der(leaf_der).map_err(|err| InspectError::Parse(err.to_string()))?;
    let validity = leaf.validity();
    let mut names = Vec::new();
    let mut authority_key_id = None;
    for extension in leaf.extensions() {
        match extension.parsed_extension() {
            ParsedExtension::SubjectAlternativeName(san) => {
                for name in &san.general_names {
                    if let GeneralName::DNSName(dns) = name {
                        names.push(dns.to_ascii_lowercase());
                    }
                }
            }
            ParsedExtension::AuthorityKeyIdentifier(aki) => {
                authority_key_id = aki.key_identifier.as_ref().map(|id| id.0.to_vec());
            }
            _ => {}
        }
    }
    names.sort();
    let spki = leaf.public_key();
    let key_type = match spki.parsed() {
        Ok(PublicKey::EC(point)) => match point.key_size() {
            256 => Some(KeyType::EcdsaP256),
            384 => Some(KeyType::EcdsaP384),
            _ => None,
        },
        Ok(PublicKey::RSA(rsa)) => match rsa.key_size() {
            2048 => Some(KeyType::Rsa2048),
            3072 => Some(KeyType::Rsa3072),
            4096 => Some(KeyType::Rsa4096),
            _ => None,
        },
        _ => None,
    };
    Ok(Inspection {
        not_before: validity.not_before.to_datetime(),
        not_after: validity.not_after.to_datetime(),
        names,
        key_type,
        public_key_info: spki.raw.to_vec(),
        authority_key_id,
        serial: leaf.tbs_certificate.raw_serial().to_vec(),
        seed: seed_of(leaf_der),
    })
}

/// Whether a certificate must be (re)issued, and why.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum RenewalDecision {
    /// Good as it is.
    Valid,
    /// Issue a new one.
    Due(DueReason),
}

/// Why a certificate is due: a small fixed set, so reports say it in words and metrics as a
/// label (`label()`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum DueReason {
    /// There is no certificate on disk.
    Missing,
    /// The files on disk cannot be read or understood.
    Unreadable(String),
    /// The certificate is there, its private key is not.
    KeyMissing,
    /// The configured names differ from the certificate's.
    NamesChanged {
        added: Vec<String>,
        removed: Vec<String>,
    },
    /// The configured key type differs from the certificate's.
    KeyTypeChanged {
        had: Option<KeyType>,
        wanted: KeyType,
    },
    /// It has expired.
    Expired,
    /// Its moment under the days rule (`renew.before_days`, spread) has come; no ARI advice.
    Expiring {
        left: time::Duration,
        threshold: time::Duration,
        at: OffsetDateTime,
    },
    /// Its moment inside the CA's suggested window (ARI) has come, or the window has passed.
    AriWindow {
        window: RenewalWindow,
        at: OffsetDateTime,
    },
    /// The CA's window would keep it until too close to expiry: the safety net.
    AriSafetyNet {
        window: RenewalWindow,
        left: time::Duration,
    },
    /// Someone other than the configured issuer made it (`issuer:` changed).
    IssuerChanged {
        from: &'static str,
        to: &'static str,
    },
}

impl DueReason {
    /// The metrics label of this reason (docs/monitoring.md, docs/renewal.md).
    pub(crate) fn label(&self) -> &'static str {
        match self {
            Self::Missing => "missing",
            Self::Unreadable(_) => "unreadable",
            Self::KeyMissing => "key_missing",
            Self::NamesChanged { .. } => "names_changed",
            Self::KeyTypeChanged { .. } => "key_type_changed",
            Self::Expired => "expired",
            Self::Expiring { .. } => RuleKind::Days.label(),
            Self::AriWindow { .. } => RuleKind::Ari.label(),
            Self::AriSafetyNet { .. } => RuleKind::AriSafetyNet.label(),
            Self::IssuerChanged { .. } => "issuer_changed",
        }
    }

    /// Whether this reason renews at once, whatever the CA's window says.
    pub(crate) fn is_immediate(&self) -> bool {
        !matches!(
            self,
            Self::Expiring { .. } | Self::AriWindow { .. } | Self::AriSafetyNet { .. }
        )
    }
}

impl std::fmt::Display for DueReason {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::Missing => f.write_str("no certificate yet"),
            Self::Unreadable(problem) => write!(f, "{problem}: issuing a new one"),
            Self::KeyMissing => f.write_str("the private key is missing"),
            Self::NamesChanged { added, removed } => write!(
                f,
                "names changed (added: [{}], removed: [{}])",
                added.join(", "),
                removed.join(", ")
            ),
            Self::KeyTypeChanged { had, wanted } => match had {
                Some(had) => write!(f, "key type changed from {had} to {wanted}"),
                None => write!(f, "key type changed from another algorithm to {wanted}"),
            },
            Self::Expired => f.write_str("expired"),
            Self::Expiring {
                left,
                threshold,
                at,
            } => write!(
                f,
                "expires in {} h; renewing from {} h before expiry, this certificate from {}",
                left.whole_hours(),
                threshold.whole_hours(),
                rfc3339(*at)
            ),
            Self::AriWindow { window, at } => write!(
                f,
                "the CA's renewal window (ARI) {}, this certificate's moment in it {}",
                window,
                rfc3339(*at)
            ),
            Self::AriSafetyNet { window, left } => write!(
                f,
                "expires in {} h, and the CA's renewal window (ARI) {} comes too late: renewing anyway",
                left.whole_hours(),
                window
            ),
            Self::IssuerChanged { from, to } => {
                write!(f, "issuer changed to `{to}`: this one is {from}")
            }
        }
    }
}

/// The CA's suggested renewal window for one certificate (RFC 9773 section 4.2).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct RenewalWindow {
    pub(crate) start: OffsetDateTime,
    pub(crate) end: OffsetDateTime,
}

impl std::fmt::Display for RenewalWindow {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{} to {}", rfc3339(self.start), rfc3339(self.end))
    }
}

/// When a certificate renews, and by which rule.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Schedule {
    /// The first moment at which a run orders it.
    pub(crate) at: OffsetDateTime,
    pub(crate) rule: Rule,
}

/// The rule that set a [`Schedule`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Rule {
    /// `renew.before_days` (capped at a third of the lifetime), spread by the certificate.
    Days { threshold: time::Duration },
    /// A moment inside the CA's window, chosen by the certificate.
    Ari(RenewalWindow),
    /// The CA's window ends too close to expiry; the safety net's moment instead.
    AriSafetyNet(RenewalWindow),
}

/// Which rule set a renewal moment, stored beside the moment (the metrics file's `rule`
/// label) so that what is due when it comes is read back, not guessed from the moment.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum RuleKind {
    /// [`Rule::Days`].
    Days,
    /// [`Rule::Ari`].
    Ari,
    /// [`Rule::AriSafetyNet`].
    AriSafetyNet,
}

impl RuleKind {
    const ALL: [Self; 3] = [Self::Days, Self::Ari, Self::AriSafetyNet];

    /// The due reason's label once the moment has come (`DueReason::label` of `Expiring`,
    /// `AriWindow`, `AriSafetyNet`); also how the moment's rule is stored.
    pub(crate) fn label(self) -> &'static str {
        match self {
            Self::Days => "expiring",
            Self::Ari => "ari_window",
            Self::AriSafetyNet => "ari_safety_net",
        }
    }

    /// The rule stored as `label`; `None` for anything else.
    pub(crate) fn from_label(label: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|kind| kind.label() == label)
    }
}

impl Rule {
    /// Which rule this is, without its parameters.
    pub(crate) fn kind(&self) -> RuleKind {
        match self {
            Self::Days { .. } => RuleKind::Days,
            Self::Ari(_) => RuleKind::Ari,
            Self::AriSafetyNet(_) => RuleKind::AriSafetyNet,
        }
    }
}

/// The share of the days rule's threshold over which certificates are spread: with
/// `before_days: 30`, a certificate renews between 30 and 20 days before expiry.
const SPREAD_SHARE: i32 = 3;
/// The share of the days rule's threshold left when the safety net renews regardless of the
/// CA's window: with `before_days: 30`, 10 days before expiry.
const SAFETY_SHARE: i32 = 3;

/// What the certificate should be, to compare the one on disk against.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Wanted<'a> {
    /// Identifiers, canonical.
    pub(crate) names: &'a [DnsName],
    pub(crate) key_type: KeyType,
    pub(crate) before_days: u32,
}

impl Inspection {
    /// Decides at `now`, with the CA's window when it gave one (`ari`). Pure: the caller asks
    /// the CA, and the certificate's own `seed` places its moment, so the answer is the same
    /// on every run until that moment comes, and then stays "due".
    ///
    /// Name and key type changes and expiry renew at once. Otherwise the CA's window decides
    /// (RFC 9773 section 4.2: a moment inside it, at once once it has passed), with the
    /// safety net of [`SAFETY_SHARE`]; without a window, the days rule, spread.
    pub(crate) fn decide(
        &self,
        wanted: Wanted<'_>,
        now: OffsetDateTime,
        ari: Option<RenewalWindow>,
    ) -> RenewalDecision {
        let mut want: Vec<String> = wanted.names.iter().map(ToString::to_string).collect();
        want.sort();
        if want != self.names {
            let added = want
                .iter()
                .filter(|name| !self.names.contains(name))
                .cloned()
                .collect();
            let removed = self
                .names
                .iter()
                .filter(|name| !want.contains(name))
                .cloned()
                .collect();
            return RenewalDecision::Due(DueReason::NamesChanged { added, removed });
        }
        if self.key_type != Some(wanted.key_type) {
            return RenewalDecision::Due(DueReason::KeyTypeChanged {
                had: self.key_type,
                wanted: wanted.key_type,
            });
        }
        let left = self.not_after - now;
        if left <= time::Duration::ZERO {
            return RenewalDecision::Due(DueReason::Expired);
        }
        let schedule = self.schedule(wanted.before_days, ari);
        if now < schedule.at {
            return RenewalDecision::Valid;
        }
        RenewalDecision::Due(match schedule.rule {
            Rule::Days { threshold } => DueReason::Expiring {
                left,
                threshold,
                at: schedule.at,
            },
            Rule::Ari(window) => DueReason::AriWindow {
                window,
                at: schedule.at,
            },
            Rule::AriSafetyNet(window) => DueReason::AriSafetyNet { window, left },
        })
    }

    /// The moment this certificate renews: inside the CA's window when it gave one (but no
    /// later than the safety net), else by the days rule, offset by this certificate's share
    /// of the spread. Both offsets come from [`Inspection::seed`], so certificates issued
    /// together renew apart, and each one's moment stays put from run to run.
    pub(crate) fn schedule(&self, before_days: u32, ari: Option<RenewalWindow>) -> Schedule {
        let threshold = self.renewal_threshold(before_days);
        let Some(window) = ari.filter(|window| window.start <= window.end) else {
            let opens = self.not_after - threshold;
            return Schedule {
                at: opens + share(self.seed, threshold / SPREAD_SHARE),
                rule: Rule::Days { threshold },
            };
        };
        let at = window.start + share(self.seed, window.end - window.start);
        let net = self.safety_net(before_days);
        if at > net {
            return Schedule {
                at: net,
                rule: Rule::AriSafetyNet(window),
            };
        }
        Schedule {
            at,
            rule: Rule::Ari(window),
        }
    }

    /// The safety net's moment: renewed then, whatever the CA's window says.
    fn safety_net(&self, before_days: u32) -> OffsetDateTime {
        self.not_after - self.renewal_threshold(before_days) / SAFETY_SHARE
    }

    /// Whether the certificate has one of `names`: an order for them renews it, for
    /// `replaces` (Let's Encrypt treats an order as this certificate's renewal only then).
    pub(crate) fn shares_a_name(&self, names: &[DnsName]) -> bool {
        names
            .iter()
            .any(|name| self.names.contains(&name.to_string()))
    }

    /// `before_days`, capped at a third of the lifetime: with a 6-day certificate a 30-day
    /// threshold would renew on every run, a third renews with days to spare.
    pub(crate) fn renewal_threshold(&self, before_days: u32) -> time::Duration {
        let configured = time::Duration::days(i64::from(before_days));
        let third = (self.not_after - self.not_before) / 3;
        configured.min(third)
    }

    /// Time left until expiry, zero when already expired.
    pub(crate) fn remaining(&self, now: OffsetDateTime) -> Duration {
        let left = self.not_after - now;
        Duration::try_from(left).unwrap_or(Duration::ZERO)
    }
}

/// The part of `span` that `seed` picks: `span × seed / 2^64`, to the second, so `seed`s
/// spread evenly over `[0, span)`. A negative span (a window given backwards) picks zero.
fn share(seed: u64, span: time::Duration) -> time::Duration {
    let seconds = u128::try_from(span.whole_seconds()).unwrap_or(0);
    let picked = (seconds * u128::from(seed)) >> 64;
    time::Duration::seconds(i64::try_from(picked).unwrap_or(0))
}

/// The stable seed of a certificate: the first 8 bytes of the SHA-256 of its DER. The same
/// certificate gives the same seed on every run and every host; two certificates, even
/// issued in the same second with consecutive serial numbers, give unrelated ones.
fn seed_of(der: &[u8]) -> u64 {
    let digest = aws_lc_rs::digest::digest(&aws_lc_rs::digest::SHA256, der);
    let mut first = [0u8; 8];
    first.copy_from_slice(&digest.as_ref()[..8]);
    u64::from_be_bytes(first)
}

/// A DER serial as upper-case hex without leading zeros, as openssl and keytool compare it.
pub(crate) fn serial_hex(der: &[u8]) -> String {
    let hex: String = der.iter().map(|byte| format!("{byte:02X}")).collect();
    let trimmed = hex.trim_start_matches('0');
    if trimmed.is_empty() {
        "0".to_owned()
    } else {
        trimmed.to_owned()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use time::Duration as Span;

    fn inspection(days_valid: i64, names: &[&str], key_type: KeyType) -> Inspection {
        let not_before = time::macros::datetime!(2026-01-01 0:00 UTC);
        Inspection {
            not_before,
            not_after: not_before + Span::days(days_valid),
            names: names.iter().map(|n| (*n).to_owned()).collect(),
            key_type: Some(key_type),
            public_key_info: Vec::new(),
            authority_key_id: None,
            serial: Vec::new(),
            seed: 0,
        }
    }

    fn ninety_days(seed: u64) -> Inspection {
        Inspection {
            seed,
            ..inspection(90, &["a.org"], KeyType::EcdsaP384)
        }
    }

    fn names(list: &[&str]) -> Vec<DnsName> {
        list.iter()
            .map(|n| DnsName::parse(n).expect("name"))
            .collect()
    }

    fn wanted(names: &[DnsName]) -> Wanted<'_> {
        Wanted {
            names,
            key_type: KeyType::EcdsaP384,
            before_days: 30,
        }
    }

    fn label(decision: &RenewalDecision) -> &'static str {
        match decision {
            RenewalDecision::Valid => "valid",
            RenewalDecision::Due(reason) => reason.label(),
        }
    }

    /// A window `from`..`to` days after the certificate's `not_before`.
    fn window(cert: &Inspection, from: i64, to: i64) -> RenewalWindow {
        RenewalWindow {
            start: cert.not_before + Span::days(from),
            end: cert.not_before + Span::days(to),
        }
    }

    #[test]
    fn ninety_day_certificate_renews_between_thirty_and_twenty_days_before() {
        let names = names(&["a.org"]);
        for seed in [0, 1 << 63, u64::MAX] {
            let cert = ninety_days(seed);
            let day = |n| cert.not_before + Span::days(n);
            assert_eq!(
                cert.decide(wanted(&names), day(59), None),
                RenewalDecision::Valid
            );
            assert_eq!(
                label(&cert.decide(wanted(&names), day(70), None)),
                "expiring"
            );
        }
        let first = ninety_days(0);
        assert_eq!(
            first.schedule(30, None).at,
            first.not_before + Span::days(60),
            "seed 0 renews as the window opens"
        );
        let last = ninety_days(u64::MAX).schedule(30, None).at;
        let ten_days_later = first.not_before + Span::days(70);
        assert!(last < ten_days_later && last > ten_days_later - Span::minutes(1));
    }

    #[test]
    fn certificates_issued_together_renew_apart_and_each_stays_put() {
        let a = ninety_days(seed_of(b"certificate a"));
        let b = ninety_days(seed_of(b"certificate b"));
        assert_ne!(a.seed, b.seed);
        assert_ne!(a.schedule(30, None).at, b.schedule(30, None).at);
        // The same certificate, inspected again on the next run: the same moment.
        let again = ninety_days(seed_of(b"certificate a"));
        assert_eq!(a.schedule(30, None), again.schedule(30, None));
        // And a decision that became "due" does not flip back on a later run.
        let names = names(&["a.org"]);
        let at = a.schedule(30, None).at;
        for hours in [0, 1, 24, 24 * 9] {
            let decision = a.decide(wanted(&names), at + Span::hours(hours), None);
            assert_eq!(label(&decision), "expiring", "{hours} h after its moment");
        }
        assert_eq!(
            a.decide(wanted(&names), at - Span::seconds(1), None),
            RenewalDecision::Valid
        );
    }

    #[test]
    fn six_day_certificate_is_not_renewed_on_every_run() {
        let cert = inspection(6, &["a.org"], KeyType::EcdsaP384);
        let names = names(&["a.org"]);
        let day = |n| cert.not_before + Span::days(n);
        assert_eq!(
            cert.decide(wanted(&names), day(1), None),
            RenewalDecision::Valid
        );
        assert!(matches!(
            cert.decide(wanted(&names), day(5), None),
            RenewalDecision::Due(_)
        ));
    }

    #[test]
    fn changed_names_or_key_type_renew_at_once_whatever_the_window() {
        let cert = inspection(90, &["a.org", "b.org"], KeyType::EcdsaP256);
        let now = cert.not_before;
        let later = Some(window(&cert, 60, 62));
        let same = names(&["b.org", "a.org"]);
        let RenewalDecision::Due(reason) = cert.decide(wanted(&same), now, later) else {
            panic!("key type change not noticed");
        };
        assert_eq!(reason.label(), "key_type_changed");
        assert!(reason.is_immediate());
        assert!(reason.to_string().contains("key type"), "{reason}");
        let other = names(&["a.org", "c.org"]);
        let RenewalDecision::Due(reason) = cert.decide(wanted(&other), now, later) else {
            panic!("name change not noticed");
        };
        let reason = reason.to_string();
        assert!(
            reason.contains("c.org") && reason.contains("b.org"),
            "{reason}"
        );
    }

    #[test]
    fn a_future_window_outranks_the_days_rule() {
        let cert = ninety_days(u64::MAX / 2);
        let names = names(&["a.org"]);
        let day = |n| cert.not_before + Span::days(n);
        // Day 75: the days rule says due; the CA asks for days 78 to 80.
        assert_eq!(
            label(&cert.decide(wanted(&names), day(75), None)),
            "expiring"
        );
        let ari = Some(window(&cert, 78, 80));
        assert_eq!(
            cert.decide(wanted(&names), day(75), ari),
            RenewalDecision::Valid
        );
        // The moment is inside the window (here its middle), and then it is due.
        let at = cert.schedule(30, ari).at;
        assert!(at > day(78) && at < day(80), "{at}");
        assert_eq!(
            cert.decide(wanted(&names), at - Span::seconds(1), ari),
            RenewalDecision::Valid
        );
        assert_eq!(label(&cert.decide(wanted(&names), at, ari)), "ari_window");
        // An earlier window than the days rule (a revocation coming) renews earlier.
        let early = Some(window(&cert, 10, 11));
        assert_eq!(
            label(&cert.decide(wanted(&names), day(11), early)),
            "ari_window"
        );
    }

    #[test]
    fn a_window_that_has_passed_renews_at_once() {
        let names = names(&["a.org"]);
        for seed in [0, u64::MAX] {
            let cert = ninety_days(seed);
            let passed = Some(window(&cert, 40, 41));
            let decision = cert.decide(wanted(&names), cert.not_before + Span::days(42), passed);
            assert_eq!(label(&decision), "ari_window");
        }
    }

    #[test]
    fn a_window_too_close_to_expiry_meets_the_safety_net() {
        let cert = ninety_days(0);
        let names = names(&["a.org"]);
        let day = |n| cert.not_before + Span::days(n);
        // A window that starts after expiry: renew 10 days before expiry (a third of 30).
        let late = Some(window(&cert, 95, 96));
        let schedule = cert.schedule(30, late);
        assert_eq!(schedule.at, day(80));
        assert!(matches!(schedule.rule, Rule::AriSafetyNet(_)));
        assert_eq!(
            cert.decide(wanted(&names), day(79), late),
            RenewalDecision::Valid
        );
        let RenewalDecision::Due(reason) = cert.decide(wanted(&names), day(80), late) else {
            panic!("the safety net did not catch it");
        };
        assert_eq!(reason.label(), "ari_safety_net");
        assert!(reason.to_string().contains("too late"), "{reason}");
    }

    #[test]
    fn a_window_given_backwards_is_no_advice() {
        let cert = ninety_days(0);
        let backwards = RenewalWindow {
            start: cert.not_before + Span::days(80),
            end: cert.not_before + Span::days(70),
        };
        assert_eq!(cert.schedule(30, Some(backwards)), cert.schedule(30, None));
    }

    #[test]
    fn a_renewal_shares_at_least_one_name() {
        let cert = inspection(90, &["a.org", "b.org"], KeyType::EcdsaP384);
        assert!(cert.shares_a_name(&names(&["b.org", "c.org"])));
        assert!(cert.shares_a_name(&names(&["A.org"])));
        let wildcard = DnsName::parse_identifier("*.a.org").expect("wildcard");
        assert!(!cert.shares_a_name(&[names(&["c.org"]).remove(0), wildcard]));
    }

    #[test]
    fn share_stays_inside_its_span() {
        let span = Span::days(10);
        assert_eq!(share(0, span), Span::ZERO);
        assert!(share(u64::MAX, span) < span);
        assert_eq!(share(1 << 63, span), Span::days(5));
        assert_eq!(share(u64::MAX, -span), Span::ZERO);
    }
}
