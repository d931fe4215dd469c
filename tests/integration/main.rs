//! Integration tests: the real binary against real Pebble, Unbound and BIND (see `sandbox`).
//!
//! One test binary, as ripgrep does, so the shared helpers compile once.

// A test reads as its scenario, start to end; splitting one to fit a line count hides it.
#![allow(clippy::too_many_lines)]

mod ansible;
mod ari;
mod cluster;
mod collection;
mod config;
mod crash;
mod dnssec;
mod fallback;
mod hiera;
mod host;
mod issuer;
mod keystore;
mod lxd;
mod monitoring;
mod newcomer;
mod package;
mod publish;
mod recovery;
mod security;
mod served;
mod support;
mod timer;
mod update;
