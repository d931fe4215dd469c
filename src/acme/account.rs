//! The ACME account: registered once per host and CA, kept in `state_dir/account.json`.
//!
//! The file maps each directory URL to instant-acme's credentials, so switching between a
//! staging and a production CA keeps both accounts instead of registering again. It holds
//! the account key: mode 0600, inside the 0700 state directory.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use instant_acme::{Account, AccountBuilder, AccountCredentials, ExternalAccountKey, NewAccount};
use serde::{Deserialize, Serialize};

use super::AcmeError;
use crate::config::Acme;
use crate::store::{self, Access};

/// Name of the credentials file in the state directory.
const ACCOUNT_FILE: &str = "account.json";
/// Version of the credentials file layout.
const FILE_VERSION: u32 = 1;
/// The RFC 8555 problem type of a CA that wants external account binding.
const EAB_REQUIRED: &str = "urn:ietf:params:acme:error:externalAccountRequired";

/// `account.json`: directory URL -> credentials (kept as JSON, the type is not `Clone`).
#[derive(Debug, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct AccountFile {
    version: u32,
    accounts: BTreeMap<String, serde_json::Value>,
}

fn account_path(state_dir: &Path) -> PathBuf {
    state_dir.join(ACCOUNT_FILE)
}

fn read_file(path: &Path) -> Result<AccountFile, AcmeError> {
    let Some(bytes) = store::read_optional(path)? else {
        return Ok(AccountFile {
            version: FILE_VERSION,
            accounts: BTreeMap::new(),
        });
    };
    let file: AccountFile = serde_json::from_slice(&bytes).map_err(|err| AcmeError::State {
        path: path.to_owned(),
        problem: format!("does not parse: {err}"),
    })?;
    if file.version != FILE_VERSION {
        return Err(AcmeError::State {
            path: path.to_owned(),
            problem: format!(
                "has version {}, this fleetcert reads {FILE_VERSION}",
                file.version
            ),
        });
    }
    Ok(file)
}

/// An HTTP client trusting the system roots, or only `ca_bundle` when it is set (with
/// TCP_NODELAY, see [`super::http`]).
fn builder(acme: &Acme) -> Result<AccountBuilder, AcmeError> {
    super::http::client(acme.ca_bundle.as_deref())
        .map(Account::builder_with_http)
        .map_err(|source| AcmeError::ca(&acme.directory, "set up HTTPS", source))
}

/// Opens the stored account for this CA; `None` when there is none (no network then).
pub(crate) async fn open_existing(
    acme: &Acme,
    state_dir: &Path,
) -> Result<Option<Account>, AcmeError> {
    let path = account_path(state_dir);
    let mut file = read_file(&path)?;
    let Some(value) = file.accounts.remove(&acme.directory) else {
        return Ok(None);
    };
    let credentials: AccountCredentials =
        serde_json::from_value(value).map_err(|err| AcmeError::State {
            path: path.clone(),
            problem: format!("the account for {} does not parse: {err}", acme.directory),
        })?;
    // Fetches the directory: the one request every CA-facing run needs anyway.
    let account =
        retry_bad_nonce!(builder(acme)?.from_credentials(credentials_clone(&credentials)?))
            .map_err(|source| AcmeError::ca(&acme.directory, "read the directory", source))?;
    Ok(Some(account))
}

/// `AccountCredentials` is not `Clone`; a JSON round trip is the only way to retry with it.
fn credentials_clone(credentials: &AccountCredentials) -> Result<AccountCredentials, AcmeError> {
    serde_json::to_value(credentials)
        .and_then(serde_json::from_value)
        .map_err(|err| AcmeError::State {
            path: PathBuf::from(ACCOUNT_FILE),
            problem: format!("credentials do not round-trip: {err}"),
        })
}

/// Opens the stored account for this CA, or registers one and stores it.
pub(crate) async fn open_or_create(acme: &Acme, state_dir: &Path) -> Result<Account, AcmeError> {
    if let Some(account) = open_existing(acme, state_dir).await? {
        return Ok(account);
    }
    let contact = format!("mailto:{}", acme.email);
    let contacts = [contact.as_str()];
    let new_account = NewAccount {
        contact: &contacts,
        // `acme.agree_tos: true` is required by the config check before we get here.
        terms_of_service_agreed: true,
        only_return_existing: false,
    };
    let eab = match &acme.eab {
        Some(eab) => {
            use base64::Engine as _;
            let hmac = base64::engine::general_purpose::URL_SAFE_NO_PAD
                .decode(eab.hmac_key.trim_end_matches('='))
                .map_err(|err| AcmeError::State {
                    path: PathBuf::from("acme.eab.hmac_key"),
                    problem: format!("is not base64url: {err}"),
                })?;
            Some(ExternalAccountKey::new(eab.kid.clone(), &hmac))
        }
        None => None,
    };
    let (account, credentials) =
        retry_bad_nonce!(builder(acme)?.create(&new_account, acme.directory.clone(), eab.as_ref()))
            .map_err(|source| match &source {
                instant_acme::Error::Api(problem)
                    if acme.eab.is_none() && problem.r#type.as_deref() == Some(EAB_REQUIRED) =>
                {
                    AcmeError::EabRequired {
                        directory: acme.directory.clone(),
                    }
                }
                _ => AcmeError::ca(&acme.directory, "register an account", source),
            })?;
    tracing::info!(account = account.id(), directory = %acme.directory, "registered ACME account");
    store(acme, state_dir, &credentials)?;
    Ok(account)
}

/// Adds this CA's credentials to `account.json`, keeping the other CAs' accounts.
fn store(acme: &Acme, state_dir: &Path, credentials: &AccountCredentials) -> Result<(), AcmeError> {
    let path = account_path(state_dir);
    let mut file = read_file(&path)?;
    let value = serde_json::to_value(credentials).map_err(|err| AcmeError::State {
        path: path.clone(),
        problem: format!("credentials do not serialize: {err}"),
    })?;
    file.accounts.insert(acme.directory.clone(), value);
    let text = serde_json::to_vec_pretty(&file).map_err(|err| AcmeError::State {
        path: path.clone(),
        problem: format!("does not serialize: {err}"),
    })?;
    store::ensure_dir(state_dir, state_dir_access())?;
    store::write_atomic(&path, &text, Access::secret())?;
    Ok(())
}

/// The state directory holds account and order keys: owner only.
pub(super) fn state_dir_access() -> Access {
    Access {
        mode: store::STATE_DIR_MODE,
        gid: None,
    }
}
