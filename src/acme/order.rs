//! Orders: create one, save it between `request` and `finalize`, re-open it, complete it.
//!
//! A pending order lives in `state_dir/orders/<cert>.json` (0600) with the identifiers it
//! was made for: `OrderState` carries none, and the CA may list authorizations in any order,
//! so they are matched by identifier. The certificate key made at finalize is saved in
//! `state_dir/keys/<cert>.pem` before the CSR is sent, so a run that dies after finalizing
//! can still install the chain the CA then hands out.

use std::borrow::Cow;

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use instant_acme::{
    Account, AuthorizationStatus, CertificateIdentifier, ChallengeType, Identifier, NewOrder,
    Order, OrderStatus,
};
use serde::{Deserialize, Serialize};
use time::OffsetDateTime;

use super::limit::RateLimit;
use super::observe;
use super::{AcmeError, BadNonce, POLL, problem_line, problem_type};
use crate::cert::{Inspection, KeyType, PrivateKey};
use crate::dns::DnsName;
use crate::state::StateDir;
use crate::store::Versioned;
use crate::timestamp::rfc3339;
use crate::token::CertStatus;

/// An order saved between `request` and `finalize`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct PendingOrder {
    pub(crate) version: u32,
    /// The order URL, to re-open it with `Account::order`.
    pub(crate) url: String,
    /// The CA's directory URL and the account that made the order.
    pub(crate) directory: String,
    pub(crate) account: String,
    /// The identifiers ordered, as the config lists them.
    pub(crate) names: Vec<DnsName>,
    /// The key type the certificate will get.
    pub(crate) key: KeyType,
    pub(crate) profile: Option<String>,
    /// Why the certificate was due, repeated by later `request`s.
    pub(crate) reason: String,
    /// When the order was made (RFC 3339).
    pub(crate) created: String,
    /// Why a fallback CA was asked (the primary's failure); absent for the primary's
    /// orders, and in files from before fallback CAs.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub(crate) fallback: Option<String>,
}

impl Versioned for PendingOrder {
    const VERSION: u32 = 1;
    const WHAT: &'static str = "a saved ACME order";
}

impl PendingOrder {
    /// The saved order of `cert`, if there is one.
    pub(crate) fn load(state: &StateDir, cert: &str) -> Result<Option<Self>, AcmeError> {
        Ok(state.load_order(cert)?)
    }

    pub(crate) fn save(&self, state: &StateDir, cert: &str) -> Result<(), AcmeError> {
        Ok(state.save_order(cert, self)?)
    }

    /// Forgets the saved order of `cert` and its saved key; nothing to forget is fine.
    pub(crate) fn remove(state: &StateDir, cert: &str) -> Result<(), AcmeError> {
        Ok(state.remove_order(cert)?)
    }

    /// Whether this order still gives what the config asks for, from the same CA. An order
    /// from another CA cannot be completed with this CA's account: re-opening it would only
    /// fail with a confusing "not found" from the wrong server.
    pub(crate) fn fits(
        &self,
        names: &[DnsName],
        key: KeyType,
        profile: Option<&str>,
        directory: &str,
    ) -> bool {
        let mut mine = self.names.clone();
        mine.sort();
        let mut wanted = names.to_vec();
        wanted.sort();
        mine == wanted
            && self.key == key
            && self.profile.as_deref() == profile
            && self.directory == directory
    }

    /// The key saved by [`complete`] before the CSR went out, if any.
    fn saved_key(&self, state: &StateDir, cert: &str) -> Result<Option<PrivateKey>, AcmeError> {
        let Some(bytes) = state.saved_key(cert)? else {
            return Ok(None);
        };
        let pem = String::from_utf8(bytes)
            .map_err(|_| crate::cert::KeyError::Parse { key_type: self.key })?;
        Ok(Some(PrivateKey::from_pem(&pem, self.key)?))
    }
}

/// One DNS-01 TXT value the CA waits for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Challenge {
    /// The identifier as ordered (`*.x` for a wildcard).
    pub(crate) identifier: DnsName,
    /// The TXT value (base64url SHA-256 of the key authorization).
    pub(crate) value: String,
    /// The URL of its authorization, to find what the CA said about it (`expires`).
    pub(crate) authorization: String,
}

/// What an order waits for in the token document: `pending` until its records are
/// published, `ready` when the CA has nothing left to validate (every authorization already
/// valid), so finalize can complete it at once.
pub(crate) fn status_of(challenges: &[Challenge]) -> CertStatus {
    if challenges.is_empty() {
        CertStatus::Ready
    } else {
        CertStatus::Pending
    }
}

/// Refuses a profile the CA's directory does not list: instant-acme sends it unchecked and
/// some CAs (Pebble 2.4) silently ignore an unknown one.
pub(crate) fn check_profile(account: &Account, profile: &str) -> Result<(), AcmeError> {
    let offered: Vec<&str> = account.profiles().map(|meta| meta.name).collect();
    if offered.contains(&profile) {
        return Ok(());
    }
    let mut offered: Vec<String> = offered.into_iter().map(str::to_owned).collect();
    offered.sort();
    Err(AcmeError::UnknownProfile {
        profile: profile.to_owned(),
        offered: if offered.is_empty() {
            "none".to_owned()
        } else {
            offered.join(", ")
        },
    })
}

/// The ARI identifier of a certificate on disk (RFC 9773 section 4.1), when it has an AKI.
pub(crate) fn replaces_for(inspection: &Inspection) -> Option<CertificateIdentifier<'static>> {
    let aki = inspection.authority_key_id.as_ref()?;
    Some(CertificateIdentifier {
        authority_key_identifier: Cow::Owned(URL_SAFE_NO_PAD.encode(aki)),
        serial: Cow::Owned(URL_SAFE_NO_PAD.encode(&inspection.serial)),
    })
}

/// Creates an order for `names`, returning it with the DNS-01 values still to publish.
///
/// `replaces` is the certificate this order renews (RFC 9773 section 5), which exempts
/// it from Let's Encrypt's rate limits. A CA without ARI gets a plain order (instant-acme
/// refuses `replaces` before sending anything), and so does a CA that refuses the field; a
/// rate limit is never retried: the field is what would have exempted the order.
pub(crate) async fn create(
    account: &Account,
    directory: &str,
    names: &[DnsName],
    profile: Option<&str>,
    replaces: Option<&Inspection>,
    now: OffsetDateTime,
) -> Result<(Order, Vec<Challenge>), AcmeError> {
    let replaces = replaces.and_then(replaces_for);
    let identifiers: Vec<Identifier> = names
        .iter()
        .map(|name| Identifier::Dns(name.to_string()))
        .collect();
    let attempt = |with_replaces: bool| {
        let mut new_order = NewOrder::new(&identifiers);
        if let Some(profile) = profile {
            new_order = new_order.profile(profile);
        }
        if let (Some(id), true) = (&replaces, with_replaces) {
            new_order = new_order.replaces(id.clone());
        }
        // Watched for the `Retry-After` of a refusal, which instant-acme drops.
        observe::watch(async move { retry_bad_nonce!(account.new_order(&new_order)) })
    };
    let (mut result, mut seen) = attempt(true).await;
    if replaces.is_some()
        && let Err(err) = &result
        && refused_replaces(err)
    {
        (result, seen) = attempt(false).await;
    }
    let mut order = result.map_err(|source| match source {
        instant_acme::Error::Api(problem) => {
            match RateLimit::from_problem(directory, &problem, seen.refusal_retry_after(), now) {
                Some(limit) => AcmeError::RateLimited(Box::new(limit)),
                None => AcmeError::ca(
                    directory,
                    "create an order",
                    instant_acme::Error::Api(problem),
                ),
            }
        }
        source => AcmeError::ca(directory, "create an order", source),
    })?;
    let challenges = challenges(&mut order, directory, names).await?;
    Ok((order, challenges))
}

/// Whether a new order with `replaces` failed because of that field, so that one without
/// it is worth sending; says so in the log.
fn refused_replaces(err: &instant_acme::Error) -> bool {
    match err {
        // The directory has no `renewalInfo`: nothing was sent (Pebble 2.4).
        instant_acme::Error::Unsupported(_) => {
            tracing::debug!("the CA offers no ARI; ordering without `replaces`");
            true
        }
        instant_acme::Error::Api(problem)
            if problem_type(problem) == Some(super::limit::RATE_LIMITED) =>
        {
            false
        }
        // A CA may refuse `replaces` (the old certificate was already replaced by an order
        // that then failed, or it is another CA's); a renewal without it is still one.
        instant_acme::Error::Api(problem) => {
            tracing::info!(problem = %problem_line(problem), "CA refused `replaces`; ordering without it");
            true
        }
        // The CA took the order but did not echo `replaces` (RFC 9773 says it must; some
        // CAs advertise ARI and ignore the field), which instant-acme reports as `Other`.
        // That order stays unused and expires; a plain one is the renewal.
        instant_acme::Error::Other(err) => {
            tracing::warn!(error = %err, "CA ignored `replaces`; ordering without it");
            true
        }
        _ => false,
    }
}

/// A saved order, asked for again.
#[derive(Debug)]
pub(crate) enum Reopened {
    /// It can still complete: the values of its pending authorizations.
    Open(Vec<Challenge>),
    /// It cannot complete any more, and why.
    Dead(DeadOrder),
}

/// Why a saved order cannot complete any more; each reads after "the saved order" in the
/// token document's reason.
#[derive(Debug, thiserror::Error)]
pub(crate) enum DeadOrder {
    /// The CA no longer has it (404 and friends: expired, or cleaned up).
    #[error("is gone at the CA ({problem})")]
    Gone { problem: String },
    #[error("is invalid at the CA")]
    Invalid,
    /// An authorization went invalid or expired.
    #[error("cannot complete: {problem}")]
    CannotComplete { problem: String },
    /// The CA refuses to show an authorization (Let's Encrypt: 404 once it expired).
    #[error("has an authorization the CA no longer shows ({problem})")]
    AuthorizationHidden { problem: String },
    #[error("expired at {}", rfc3339(*.at))]
    Expired { at: OffsetDateTime },
    /// The account it was made with is not this host's account at that CA any more.
    #[error("was made by another account")]
    OtherAccount,
    #[error("has an authorization for {identifier} that expired at {}", rfc3339(*.at))]
    AuthorizationExpired {
        identifier: DnsName,
        at: OffsetDateTime,
    },
}

/// Re-opens a saved order and checks that it can still complete at `now`: neither it nor a
/// pending authorization has expired (by its `expires`, or as the CA says), and the CA
/// still knows it. Handing out the records of an expired authorization would only make
/// the next finalize fail after the zone was published.
pub(crate) async fn reopen(
    account: &Account,
    saved: &PendingOrder,
    now: OffsetDateTime,
) -> Result<Reopened, AcmeError> {
    // Watched for the `expires` of the order and its authorizations, which instant-acme drops.
    let (walked, seen) = observe::watch(reopen_walk(account, saved)).await;
    let challenges = match walked? {
        Ok(challenges) => challenges,
        Err(dead) => return Ok(Reopened::Dead(dead)),
    };
    let expired = |url: &str| {
        seen.answer(url)
            .and_then(|answer| answer.expires)
            .filter(|expires| *expires <= now)
    };
    if let Some(at) = expired(&saved.url) {
        return Ok(Reopened::Dead(DeadOrder::Expired { at }));
    }
    for challenge in &challenges {
        if let Some(at) = expired(&challenge.authorization) {
            return Ok(Reopened::Dead(DeadOrder::AuthorizationExpired {
                identifier: challenge.identifier.clone(),
                at,
            }));
        }
    }
    Ok(Reopened::Open(challenges))
}

/// The walk of [`reopen`]: the challenges, or why the order is dead.
async fn reopen_walk(
    account: &Account,
    saved: &PendingOrder,
) -> Result<Result<Vec<Challenge>, DeadOrder>, AcmeError> {
    let mut order = match retry_bad_nonce!(account.order(saved.url.clone())) {
        Ok(order) => order,
        // 404 and friends: the order expired or was cleaned up; a new one is needed.
        Err(instant_acme::Error::Api(problem)) => {
            return Ok(Err(DeadOrder::Gone {
                problem: problem_line(&problem),
            }));
        }
        Err(source) => return Err(AcmeError::ca(&saved.directory, "re-open the order", source)),
    };
    if order.state().status == OrderStatus::Invalid {
        return Ok(Err(DeadOrder::Invalid));
    }
    match challenges(&mut order, &saved.directory, &saved.names).await {
        Ok(challenges) => Ok(Ok(challenges)),
        // An authorization went invalid or expired: the order cannot complete any more.
        Err(AcmeError::Invalid { problem }) => Ok(Err(DeadOrder::CannotComplete { problem })),
        // The CA refuses to show an authorization (Let's Encrypt: 404 once it expired).
        Err(AcmeError::Ca {
            source: instant_acme::Error::Api(problem),
            ..
        }) => Ok(Err(DeadOrder::AuthorizationHidden {
            problem: problem_line(&problem),
        })),
        Err(err) => Err(err),
    }
}

/// The DNS-01 values of the order's pending authorizations, matched to `names` by identifier.
async fn challenges(
    order: &mut Order,
    directory: &str,
    names: &[DnsName],
) -> Result<Vec<Challenge>, AcmeError> {
    // Fetching an authorization can meet a bad nonce; authorizations already fetched are
    // cached by instant-acme, so starting the walk again costs nothing.
    match retry_bad_nonce!(collect_challenges(order, names)) {
        Ok(challenges) => Ok(challenges),
        Err(Walk::Ca(source)) => Err(AcmeError::ca(directory, "fetch an authorization", source)),
        Err(Walk::Other(err)) => Err(err),
    }
}

/// Why walking the authorizations stopped.
enum Walk {
    Ca(instant_acme::Error),
    Other(AcmeError),
}

impl BadNonce for Walk {
    fn is_bad_nonce(&self) -> bool {
        matches!(self, Self::Ca(err) if err.is_bad_nonce())
    }
}

async fn collect_challenges(order: &mut Order, names: &[DnsName]) -> Result<Vec<Challenge>, Walk> {
    let mut challenges = Vec::new();
    let mut seen = Vec::new();
    let mut authorizations = order.authorizations();
    while let Some(result) = authorizations.next().await {
        let mut authz = result.map_err(Walk::Ca)?;
        // What the CA says is checked like any outside name: it must be one we ordered.
        let said = authz.identifier().to_string();
        let Some(identifier) = DnsName::parse_identifier(&said)
            .ok()
            .filter(|name| names.contains(name))
        else {
            let ordered: Vec<String> = names.iter().map(ToString::to_string).collect();
            return Err(Walk::Other(AcmeError::Unexpected {
                identifier: crate::shown::shown(&said),
                problem: format!("not one of the names ordered ({})", ordered.join(", ")),
            }));
        };
        seen.push(identifier.clone());
        let authorization = authz.url().to_owned();
        match authz.status {
            AuthorizationStatus::Valid => continue,
            AuthorizationStatus::Pending => {}
            status => {
                return Err(Walk::Other(AcmeError::Invalid {
                    problem: format!("the authorization for {identifier} is {status:?}"),
                }));
            }
        }
        let challenge = authz.challenge(ChallengeType::Dns01).ok_or_else(|| {
            Walk::Other(AcmeError::Unexpected {
                identifier: identifier.to_string(),
                problem: "the CA offers no dns-01 challenge".to_owned(),
            })
        })?;
        let value = challenge.key_authorization().dns_value();
        challenges.push(Challenge {
            identifier,
            value,
            authorization,
        });
    }
    if let Some(missing) = names.iter().find(|name| !seen.contains(name)) {
        return Err(Walk::Other(AcmeError::Unexpected {
            identifier: missing.to_string(),
            problem: "the order has no authorization for it".to_owned(),
        }));
    }
    Ok(challenges)
}

/// Drives a saved order to a certificate: tells the CA the records are up, waits for
/// validation, makes and saves the key, finalizes, and downloads the chain.
///
/// Returns the key and the PEM chain, not yet verified or installed.
pub(crate) async fn complete(
    account: &Account,
    saved: &PendingOrder,
    state: &StateDir,
    cert: &str,
) -> Result<(PrivateKey, String), AcmeError> {
    let directory = saved.directory.as_str();
    let ca = |action| move |source| AcmeError::ca(directory, action, source);
    let mut order =
        retry_bad_nonce!(account.order(saved.url.clone())).map_err(ca("re-open the order"))?;
    let mut status = order.state().status;
    if status == OrderStatus::Pending {
        set_ready(&mut order, directory).await?;
        status = poll_ready(&mut order, directory).await?;
    }
    let key =
        match status {
            OrderStatus::Ready => {
                let key = saved.key.generate()?;
                // Saved before the CSR leaves: if we die after the CA finalizes, the next run
                // downloads the chain and needs this very key.
                state.save_key(cert, key.to_pem().as_bytes())?;
                crash_point!("finalize.key_saved");
                let csr = key.csr(&saved.names)?;
                retry_bad_nonce!(order.finalize_csr(&csr)).map_err(|source| match source {
                    instant_acme::Error::Api(problem) => AcmeError::Invalid {
                        problem: problem_line(&problem),
                    },
                    source => AcmeError::ca(directory, "finalize the order", source),
                })?;
                crash_point!("finalize.csr_sent");
                key
            }
            OrderStatus::Processing | OrderStatus::Valid => saved
                .saved_key(state, cert)?
                .ok_or_else(|| AcmeError::Invalid {
                    problem: "the order was finalized by an earlier run whose key is lost"
                        .to_owned(),
                })?,
            OrderStatus::Invalid => return Err(invalid_order(&mut order).await),
            OrderStatus::Pending => {
                return Err(AcmeError::Timeout {
                    what: "validate the records",
                });
            }
        };
    let chain = match retry_bad_nonce!(order.certificate())
        .map_err(ca("download the certificate"))?
    {
        Some(chain) => chain,
        None => retry_bad_nonce!(order.poll_certificate(&POLL)).map_err(|source| match source {
            instant_acme::Error::Timeout(_) => AcmeError::Timeout {
                what: "issue the certificate",
            },
            instant_acme::Error::Api(problem) => AcmeError::Invalid {
                problem: problem_line(&problem),
            },
            source => AcmeError::ca(directory, "download the certificate", source),
        })?,
    };
    Ok((key, chain))
}

/// Tells the CA that the records of every pending authorization are published.
async fn set_ready(order: &mut Order, directory: &str) -> Result<(), AcmeError> {
    // Challenges already marked by an earlier try: instant-acme keeps the authorizations it
    // fetched and does not update their challenges' status after `set_ready`, so a walk
    // retried after a bad nonce would post them again, and the CA refuses a challenge that
    // is no longer pending (Pebble: "Cannot update challenge with status valid").
    let mut marked = Vec::new();
    retry_bad_nonce!(set_ready_once(order, &mut marked)).map_err(|source| match source {
        instant_acme::Error::Api(problem) => AcmeError::Invalid {
            problem: problem_line(&problem),
        },
        source => AcmeError::ca(directory, "mark a challenge ready", source),
    })
}

/// One walk of [`set_ready`]; `marked` collects the URLs of the challenges posted so far.
async fn set_ready_once(
    order: &mut Order,
    marked: &mut Vec<String>,
) -> Result<(), instant_acme::Error> {
    let mut authorizations = order.authorizations();
    while let Some(result) = authorizations.next().await {
        let mut authz = result?;
        // Only pending ones: a reused (valid) authorization has nothing to answer.
        if authz.status != AuthorizationStatus::Pending {
            continue;
        }
        let Some(mut challenge) = authz.challenge(ChallengeType::Dns01) else {
            continue;
        };
        // A challenge an earlier finalize marked comes back processing or valid from the
        // CA, and one this run marked is in `marked`: posting either again is refused.
        if challenge.status == instant_acme::ChallengeStatus::Pending
            && !marked.contains(&challenge.url)
        {
            let url = challenge.url.clone();
            challenge.set_ready().await?;
            marked.push(url);
        }
    }
    Ok(())
}

/// Polls until the CA has validated every authorization (or refused one).
async fn poll_ready(order: &mut Order, directory: &str) -> Result<OrderStatus, AcmeError> {
    match retry_bad_nonce!(order.poll_ready(&POLL)) {
        Ok(OrderStatus::Invalid) => Err(invalid_order(order).await),
        Ok(status) => Ok(status),
        Err(instant_acme::Error::Timeout(_)) => Err(AcmeError::Timeout {
            what: "validate the records",
        }),
        Err(instant_acme::Error::Api(problem)) => Err(AcmeError::Invalid {
            problem: invalid_problem(order, problem_line(&problem)).await,
        }),
        Err(source) => Err(AcmeError::ca(directory, "poll the order", source)),
    }
}

/// The reason an order went invalid: its own error, else its failed challenges' errors.
async fn invalid_order(order: &mut Order) -> AcmeError {
    let own = order
        .state()
        .error
        .as_ref()
        .map(problem_line)
        .unwrap_or_else(|| "the order is invalid".to_owned());
    AcmeError::Invalid {
        problem: invalid_problem(order, own).await,
    }
}

/// Adds the failed challenges' problems (which name the record and what the CA saw) to the
/// order's own, unless the order's problem already says it.
///
/// Best effort: the order's own problem is reported even when an authorization cannot be
/// fetched.
async fn invalid_problem(order: &mut Order, own: String) -> String {
    // A bad nonce while fetching restarts the walk (fetched authorizations are cached);
    // without the retry a CA rejecting many nonces would hide which record failed.
    let details = retry_bad_nonce!(challenge_problems(order, &own)).unwrap_or_default();
    if details.is_empty() {
        own
    } else {
        format!("{own}; {}", details.join("; "))
    }
}

/// `identifier: problem` of every failed challenge not already said in `own`.
async fn challenge_problems(
    order: &mut Order,
    own: &str,
) -> Result<Vec<String>, instant_acme::Error> {
    let mut details = Vec::new();
    let mut authorizations = order.authorizations();
    while let Some(authz) = authorizations.next().await {
        let authz = authz?;
        let identifier = authz.identifier().to_string();
        for challenge in &authz.challenges {
            if let Some(problem) = &challenge.error {
                let line = problem_line(problem);
                if !own.contains(&line) {
                    details.push(format!("{identifier}: {line}"));
                }
            }
        }
    }
    Ok(details)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn name(text: &str) -> DnsName {
        DnsName::parse_identifier(text).expect("name")
    }

    fn saved() -> PendingOrder {
        PendingOrder {
            version: PendingOrder::VERSION,
            url: "https://ca.test/order/1".to_owned(),
            directory: "https://ca.test/dir".to_owned(),
            account: "https://ca.test/acct/1".to_owned(),
            names: vec![name("b.example.org"), name("*.b.example.org")],
            key: KeyType::EcdsaP384,
            profile: None,
            reason: "no certificate yet".to_owned(),
            created: "2026-01-01T00:00:00Z".to_owned(),
            fallback: None,
        }
    }

    #[test]
    fn saved_order_round_trips_and_is_removed_with_its_key() {
        let dir = tempfile::tempdir().expect("tempdir");
        let state = StateDir::open(dir.path(), true).expect("state");
        let order = saved();
        order.save(&state, "main").expect("save");
        assert_eq!(
            PendingOrder::load(&state, "main").expect("load"),
            Some(order.clone())
        );
        let key = KeyType::EcdsaP384.generate().expect("key");
        state
            .save_key("main", key.to_pem().as_bytes())
            .expect("save key");
        let again = order
            .saved_key(&state, "main")
            .expect("read key")
            .expect("key");
        assert_eq!(again.public_key_info(), key.public_key_info());
        PendingOrder::remove(&state, "main").expect("remove");
        assert_eq!(PendingOrder::load(&state, "main").expect("load"), None);
        assert!(order.saved_key(&state, "main").expect("read key").is_none());
    }

    #[test]
    fn order_fits_the_same_names_in_any_order_only() {
        let order = saved();
        let same = vec![name("*.b.example.org"), name("b.example.org")];
        let dir = "https://ca.test/dir";
        assert!(order.fits(&same, KeyType::EcdsaP384, None, dir));
        assert!(!order.fits(&same, KeyType::Rsa2048, None, dir));
        assert!(!order.fits(&same[..1], KeyType::EcdsaP384, None, dir));
        assert!(!order.fits(&same, KeyType::EcdsaP384, Some("classic"), dir));
        assert!(!order.fits(&same, KeyType::EcdsaP384, None, "https://other.test/dir"));
    }

    #[test]
    fn corrupt_order_file_names_itself() {
        let dir = tempfile::tempdir().expect("tempdir");
        std::fs::create_dir_all(dir.path().join("orders")).expect("mkdir");
        std::fs::write(dir.path().join("orders/main.json"), "{").expect("write");
        let state = StateDir::open(dir.path(), false).expect("state");
        let err = PendingOrder::load(&state, "main").expect_err("must fail");
        assert!(err.to_string().contains("main.json"), "{err}");
    }
}
