//! What a CA's directory says that instant-acme keeps to itself: `meta.caaIdentities`
//! (RFC 8555 section 7.1.1), the names CAA records use to allow this CA.

use serde::Deserialize;

use super::AcmeError;
use crate::config::Acme;

/// The most identities read: a directory lists one or two.
const MAX_IDENTITIES: usize = 16;

#[derive(Deserialize)]
struct Directory {
    #[serde(default)]
    meta: Meta,
}

#[derive(Default, Deserialize)]
struct Meta {
    #[serde(default, rename = "caaIdentities")]
    caa_identities: Vec<String>,
}

/// The CA's CAA identities: `caa_identity` from the config when set, else the directory's
/// list (lower case, as CAA compares them; shown escaped by whoever prints them); empty
/// when it names none.
pub(crate) async fn caa_identities(acme: &Acme) -> Result<Vec<String>, AcmeError> {
    if let Some(identity) = &acme.caa_identity {
        return Ok(vec![identity.clone()]);
    }
    let ca = |source| AcmeError::ca(&acme.directory, "read the directory", source);
    let client = super::http::client(acme.ca_bundle.as_deref()).map_err(ca)?;
    let request = http::Request::get(acme.directory.as_str())
        .body(instant_acme::BodyWrapper::default())
        .map_err(|err| ca(instant_acme::Error::Http(err)))?;
    let response = client.request(request).await.map_err(ca)?;
    let status = response.parts.status;
    let mut body = response.body;
    let body = body
        .into_bytes()
        .await
        .map_err(|err| ca(instant_acme::Error::Other(err)))?;
    if !status.is_success() {
        return Err(ca(instant_acme::Error::Api(instant_acme::Problem {
            r#type: None,
            detail: Some(format!("the directory answered HTTP {status}")),
            status: Some(status.as_u16()),
            subproblems: Vec::new(),
        })));
    }
    let directory: Directory =
        serde_json::from_slice(&body).map_err(|err| ca(instant_acme::Error::Json(err)))?;
    Ok(directory
        .meta
        .caa_identities
        .iter()
        .take(MAX_IDENTITIES)
        .map(|identity| identity.to_ascii_lowercase())
        .collect())
}
