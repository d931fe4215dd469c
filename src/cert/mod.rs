//! Keys, CSRs and the certificates on disk: what exists, and whether it is due.

mod inspect;
mod key;

pub(crate) use inspect::{Inspection, RenewalDecision, Wanted, inspect_chain};
pub(crate) use key::{KeyError, KeyType, PrivateKey};
