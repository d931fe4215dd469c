//! Keys, CSRs and the certificates on disk: what exists, and whether it is due.

mod inspect;
mod key;

pub(crate) use inspect::{Inspection, RenewalDecision, inspect_chain};
pub(crate) use key::{KeyError, KeyType, PrivateKey};
