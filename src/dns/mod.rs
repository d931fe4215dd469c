//! DNS: the name type, questions to one server, the delegation pre-check on hosts, finding a
//! zone's servers, and the every-server wait of `publish`.

mod client;
mod discover;
mod name;
mod precheck;
mod wait;

pub(crate) use client::{DnsError, Recursion, query};
pub(crate) use discover::{DiscoverError, discover_servers};
pub(crate) use name::{DnsName, NameError};
pub(crate) use precheck::{DelegationError, check_delegation};
pub(crate) use wait::{Propagation, Served, ServerWait, current_serials, wait_and_check};
