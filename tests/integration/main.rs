//! Integration tests: the real binary against real Pebble, Unbound and BIND (see `sandbox`).
//!
//! One test binary, as ripgrep does, so the shared helpers compile once.

mod ansible;
mod ari;
mod collection;
mod config;
mod fixture;
mod hiera;
mod host;
mod package;
mod publish;
mod sandbox;
mod util;
mod venv;
