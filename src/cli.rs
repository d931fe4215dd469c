//! Command-line arguments: what the operator typed, before any of it is checked.
//!
//! Each subcommand has one struct; the meaning of the flags lives in `commands/`.

use std::path::PathBuf;

use clap::{Parser, Subcommand};

/// Issue and renew TLS certificates for a fleet with ACME DNS-01 and a delegated signing zone.
#[derive(Debug, Parser)]
#[command(name = "fleetcert", version, about, long_about = None)]
pub(crate) struct Args {
    /// More log output on stderr (-v: debug, -vv: trace). `RUST_LOG` overrides it.
    #[arg(short, long, action = clap::ArgAction::Count, global = true)]
    pub(crate) verbose: u8,
    #[command(subcommand)]
    pub(crate) command: Command,
}

#[derive(Debug, Subcommand)]
pub(crate) enum Command {
    /// Decide which certificates are due, create their orders, print the token document.
    Request(HostArgs),
    /// Collate token documents, publish the signing zone, wait for every server.
    Publish(PublishArgs),
    /// Complete the pending orders: validate, finalize, install the certificates.
    Finalize(HostArgs),
    /// Export one host's issued material as a hiera YAML file for Puppet.
    Hiera(HieraArgs),
    /// Show the certificates on disk and their state, without contacting anyone.
    Status(StatusArgs),
}

#[derive(Debug, clap::Args)]
pub(crate) struct HostArgs {
    /// Host configuration file (YAML).
    #[arg(long, default_value = "/etc/fleetcert/fleetcert.yaml")]
    pub(crate) config: PathBuf,
    /// Say what would be done; create no order, write no file.
    #[arg(long)]
    pub(crate) dry_run: bool,
}

#[derive(Debug, clap::Args)]
pub(crate) struct PublishArgs {
    /// Zone configuration file (YAML).
    #[arg(long, default_value = "/etc/fleetcert/zone.yaml")]
    pub(crate) config: PathBuf,
    /// Token documents: a file or `-` for stdin; may be repeated.
    #[arg(long = "tokens", required = true)]
    pub(crate) tokens: Vec<PathBuf>,
    /// Validate and render, but do not replace the zone, reload or wait.
    #[arg(long)]
    pub(crate) dry_run: bool,
}

#[derive(Debug, clap::Args)]
pub(crate) struct HieraArgs {
    /// Host configuration file of the issuing host (the bastion's, for legacy hosts).
    #[arg(long, default_value = "/etc/fleetcert/fleetcert.yaml")]
    pub(crate) config: PathBuf,
    /// The legacy host whose material to export (its `host` in the config).
    #[arg(long)]
    pub(crate) host: String,
    /// Where to write the hiera YAML file.
    #[arg(long)]
    pub(crate) out: PathBuf,
    /// Say whether the file would change; write nothing.
    #[arg(long)]
    pub(crate) dry_run: bool,
}

#[derive(Debug, clap::Args)]
pub(crate) struct StatusArgs {
    /// Host configuration file (YAML).
    #[arg(long, default_value = "/etc/fleetcert/fleetcert.yaml")]
    pub(crate) config: PathBuf,
    /// Output format.
    #[arg(long, value_enum, default_value = "json")]
    pub(crate) format: StatusFormat,
}

#[derive(Debug, Clone, Copy, clap::ValueEnum)]
pub(crate) enum StatusFormat {
    Json,
    Table,
}
