//! DNS: the name type, questions to one server, the delegation pre-check on hosts, the DNSSEC
//! checks (a bogus chain before ordering, every server's signatures after publishing), finding
//! a zone's servers, the every-server wait of `publish`, and DNS UPDATE signed with TSIG.

mod caa;
mod client;
mod discover;
mod dnssec;
mod name;
mod precheck;
mod tsig;
mod update;
mod wait;

pub(crate) use caa::{CaaError, relevant_set};
pub(crate) use client::{DnsError, Recursion, query};
pub(crate) use discover::{DiscoverError, discover_servers};
pub(crate) use dnssec::{ChainError, InvalidServer, check_chains, check_servers};
pub(crate) use name::{DnsName, NameError};
pub(crate) use precheck::{DelegationError, check_delegation};
pub(crate) use tsig::{TsigAlgo, TsigKey};
pub(crate) use update::{SetChange, UpdateClient, UpdateError, pack};
pub(crate) use wait::{Propagation, Served, ServerWait, SetCheck, current_serials, wait_and_check};
