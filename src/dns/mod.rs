//! DNS questions: the delegation pre-check on hosts and the propagation wait in `publish`.

mod client;

pub(crate) use client::{Answer, DnsError, Recursion, parse_name, query};
