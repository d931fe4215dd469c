//! DNS questions: the delegation pre-check on hosts and the propagation wait in `publish`.

mod client;
mod precheck;

pub(crate) use client::{Answer, DnsError, Recursion, parse_name, query};
pub(crate) use precheck::{DelegationError, check_delegation};
