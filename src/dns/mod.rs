//! DNS questions: the delegation pre-check on hosts and the propagation wait in `publish`.

mod client;
mod discover;
mod precheck;
mod wait;

pub(crate) use client::{DnsError, Recursion, parse_name, query};
pub(crate) use discover::discover_servers;
pub(crate) use precheck::{DelegationError, check_delegation};
pub(crate) use wait::{
    Propagation, Served, ServerWait, current_serials, wait_and_check, zone_name,
};
