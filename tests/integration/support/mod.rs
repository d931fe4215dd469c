//! What the scenario files share, and all they import: the sandbox of real servers, a host
//! of fleetcert on it, the services that read certificates, the fake CA, the fleet of the
//! playbook tests, a gate job's host, one host's day and a run killed half-way, LXD, the
//! Python tools and the installed collection, and small utilities. Scenario files never
//! import from each other.

pub(crate) mod collection;
pub(crate) mod config;
pub(crate) mod day;
pub(crate) mod fake_ca;
pub(crate) mod faults;
pub(crate) mod fixture;
pub(crate) mod fleet;
pub(crate) mod gate;
pub(crate) mod lxd;
pub(crate) mod sandbox;
pub(crate) mod services;
pub(crate) mod util;
pub(crate) mod venv;
