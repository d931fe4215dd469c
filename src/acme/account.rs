//! The ACME account: registered once per host and CA, kept in `state_dir/account.json`.
//!
//! The file maps each directory URL to instant-acme's credentials, so switching between a
//! staging and a production CA keeps both accounts instead of registering again. It holds
//! the account key: mode 0600, inside the 0700 state directory. Before registering, the
//! state directory is proven writable: an account the CA made but fleetcert could not save
//! would be registered again on every retry. An account the CA no longer knows
//! (`accountDoesNotExist`) is forgotten and registered anew, and the log says so.

use std::collections::BTreeMap;

use instant_acme::{
    Account, AccountBuilder, AccountCredentials, BodyWrapper, ExternalAccountKey, Key, NewAccount,
};
use rustls::pki_types::PrivateKeyDer;
use serde::{Deserialize, Serialize};

use super::{AcmeError, problem_type};
use crate::config::Acme;
use crate::state::StateDir;
use crate::store::Versioned;

/// Name of the credentials file in the state directory.
const ACCOUNT_FILE: &str = "account.json";
/// The RFC 8555 problem type of a CA that wants external account binding.
const EAB_REQUIRED: &str = "urn:ietf:params:acme:error:externalAccountRequired";
/// The RFC 8555 problem type of a CA that does not know the account.
pub(crate) const ACCOUNT_GONE: &str = "urn:ietf:params:acme:error:accountDoesNotExist";

/// `account.json`: directory URL -> credentials (kept as JSON, the type is not `Clone`).
#[derive(Debug, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct AccountFile {
    version: u32,
    accounts: BTreeMap<String, serde_json::Value>,
}

impl Versioned for AccountFile {
    const VERSION: u32 = 1;
    const WHAT: &'static str = "an ACME account file";
}

/// Whether a run has an account, and if not, why.
pub(crate) enum AccountState {
    /// Nothing in this run needs the CA.
    NotNeeded,
    /// The account, opened.
    Open(Account),
    /// It was wanted for something optional (ARI), and could not be opened.
    Unavailable(AcmeError),
}

impl AccountState {
    /// The account, when it is open.
    pub(crate) fn open(&self) -> Option<&Account> {
        match self {
            Self::Open(account) => Some(account),
            Self::NotNeeded | Self::Unavailable(_) => None,
        }
    }

    /// Why the account could not be opened, when it was wanted.
    pub(crate) fn problem(&self) -> Option<&AcmeError> {
        match self {
            Self::Unavailable(err) => Some(err),
            Self::NotNeeded | Self::Open(_) => None,
        }
    }
}

/// An HTTP client trusting the system roots, or only `ca_bundle` when it is set (with
/// TCP_NODELAY, see [`super::http`]).
fn builder(acme: &Acme) -> Result<AccountBuilder, instant_acme::Error> {
    super::http::client(acme.ca_bundle.as_deref()).map(Account::builder_with_http)
}

fn read_file(state: &StateDir) -> Result<AccountFile, AcmeError> {
    Ok(state.load(ACCOUNT_FILE)?.unwrap_or(AccountFile {
        version: AccountFile::VERSION,
        accounts: BTreeMap::new(),
    }))
}

/// The stored credentials for this CA, if any, as JSON: `AccountCredentials` is not
/// `Clone`, and a request retried after a bad nonce needs them again.
fn stored(acme: &Acme, state: &StateDir) -> Result<Option<serde_json::Value>, AcmeError> {
    let mut file = read_file(state)?;
    let Some(value) = file.accounts.remove(&acme.directory) else {
        return Ok(None);
    };
    let _checked: AccountCredentials =
        serde_json::from_value(value.clone()).map_err(|err| AcmeError::BadAccount {
            path: state.path().join(ACCOUNT_FILE),
            problem: format!(
                "the account for {} does not read back ({err})",
                acme.directory
            ),
        })?;
    Ok(Some(value))
}

/// Opens the stored account for this CA; `None` when there is none (no network then).
pub(crate) async fn open_existing(
    acme: &Acme,
    state: &StateDir,
) -> Result<Option<Account>, AcmeError> {
    let Some(value) = stored(acme, state)? else {
        return Ok(None);
    };
    // Fetches the directory: the one request every CA-facing run needs anyway.
    let account = retry_bad_nonce!(async {
        let credentials: AccountCredentials = serde_json::from_value(value.clone())?;
        builder(acme)?.from_credentials(credentials).await
    })
    .map_err(|source| AcmeError::ca(&acme.directory, "read the directory", source))?;
    Ok(Some(account))
}

/// Opens the stored account for this CA; none is an error that says to run request first
/// (finalize, and ARI at a fallback CA, never register one).
pub(crate) async fn open_required(acme: &Acme, state: &StateDir) -> Result<Account, AcmeError> {
    open_existing(acme, state)
        .await?
        .ok_or_else(|| AcmeError::NoAccount {
            directory: acme.directory.clone(),
            state_dir: state.path().to_owned(),
        })
}

/// Opens the stored account for this CA, checking that the CA still knows it, or registers
/// one and stores it.
pub(crate) async fn open_or_create(acme: &Acme, state: &StateDir) -> Result<Account, AcmeError> {
    if let Some(value) = stored(acme, state)? {
        let found = retry_bad_nonce!(async {
            let credentials: AccountCredentials = serde_json::from_value(value.clone())?;
            let key = credentials.private_key().clone_key();
            let signing = Key::from_pkcs8_der(key.clone_key())?;
            builder(acme)?
                .from_key((signing, PrivateKeyDer::Pkcs8(key)), acme.directory.clone())
                .await
        });
        match found {
            Ok((account, _)) => return Ok(account),
            Err(instant_acme::Error::Api(problem))
                if problem_type(&problem) == Some(ACCOUNT_GONE) =>
            {
                tracing::warn!(directory = %acme.directory, "the CA no longer knows this host's account: registering a new one");
            }
            Err(source) => return Err(AcmeError::ca(&acme.directory, "open the account", source)),
        }
    }
    register(acme, state).await
}

/// Reads the CA's directory, and nothing else: what a dry run does to tell whether a real
/// run could reach the CA, without registering, ordering or writing anything.
pub(crate) async fn check_directory(acme: &Acme) -> Result<(), AcmeError> {
    let failed = |source| AcmeError::ca(&acme.directory, "read the directory", source);
    let client = super::http::client(acme.ca_bundle.as_deref()).map_err(failed)?;
    let request = http::Request::get(acme.directory.as_str())
        .body(BodyWrapper::from(Vec::new()))
        .map_err(|err| failed(err.into()))?;
    let mut response = client.request(request).await.map_err(failed)?;
    let status = response.parts.status;
    let body = response
        .body
        .into_bytes()
        .await
        .map_err(|err| failed(instant_acme::Error::Other(err)))?;
    if !status.is_success() {
        return Err(failed(instant_acme::Error::Other(
            format!("it answered HTTP {status}: is this the CA's directory URL?").into(),
        )));
    }
    // The one member every ACME directory has (RFC 8555, 7.1.1).
    let directory: serde_json::Value =
        serde_json::from_slice(&body).map_err(|err| failed(err.into()))?;
    if directory.get("newOrder").is_none() {
        return Err(failed(instant_acme::Error::Str(
            "an ACME directory (no newOrder): is this the CA's directory URL?",
        )));
    }
    Ok(())
}

/// Registers a new account and stores it.
async fn register(acme: &Acme, state: &StateDir) -> Result<Account, AcmeError> {
    state.probe(None)?;
    let contact = format!("mailto:{}", acme.email);
    let contacts = [contact.as_str()];
    let new_account = NewAccount {
        contact: &contacts,
        // `acme.agree_tos: true` is required by the config check before we get here.
        terms_of_service_agreed: true,
        only_return_existing: false,
    };
    let eab = acme
        .eab
        .as_ref()
        .map(|eab| ExternalAccountKey::new(eab.kid.clone(), &eab.hmac_key));
    let (account, credentials) = retry_bad_nonce!(async {
        builder(acme)?
            .create(&new_account, acme.directory.clone(), eab.as_ref())
            .await
    })
    .map_err(|source| match &source {
        instant_acme::Error::Api(problem)
            if acme.eab.is_none() && problem_type(problem) == Some(EAB_REQUIRED) =>
        {
            AcmeError::EabRequired {
                directory: acme.directory.clone(),
            }
        }
        _ => AcmeError::ca(&acme.directory, "register an account", source),
    })?;
    // The CA holds the account now; dying here orphans it there.
    crash_point!("account.registered");
    tracing::info!(account = account.id(), directory = %acme.directory, "registered ACME account");
    let mut file = read_file(state)?;
    let value = serde_json::to_value(&credentials).map_err(|err| AcmeError::BadAccount {
        path: state.path().join(ACCOUNT_FILE),
        problem: format!("the new credentials do not serialize ({err})"),
    })?;
    file.accounts.insert(acme.directory.clone(), value);
    state.save(ACCOUNT_FILE, &file)?;
    Ok(account)
}
