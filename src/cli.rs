//! Command-line arguments: what the operator typed, before any of it is checked.
//!
//! Each subcommand has one struct; the meaning of the flags lives in `commands/`.

use std::path::PathBuf;

use clap::{Parser, Subcommand};

/// Issue and renew TLS certificates for a fleet with ACME DNS-01 and a delegated signing zone.
#[derive(Debug, Parser)]
#[command(name = "fleetcert", version, about, long_about = None)]
pub struct Args {
    /// More log output on stderr (-v: info, -vv: debug, -vvv: trace). `RUST_LOG` overrides it.
    #[arg(short, long, action = clap::ArgAction::Count, global = true)]
    pub verbose: u8,
    /// What to do.
    #[command(subcommand)]
    pub command: Command,
}

/// The subcommands.
#[derive(Debug, Subcommand)]
pub enum Command {
    /// Decide which certificates are due, create their orders, print the token document.
    Request(HostArgs),
    /// Collate token documents, publish the signing zone, wait for every server.
    Publish(PublishArgs),
    /// Complete the pending orders: validate, finalize, install the certificates.
    Finalize(HostArgs),
    /// A server on its own: request, publish its records by dynamic update, wait, finalize,
    /// remove the records, in one run (from a systemd timer).
    Renew(HostArgs),
    /// Install a set another host issued (a cluster member's copy): checked as finalize
    /// checks, installed as finalize installs, then the certificate's reload.
    Install(InstallArgs),
    /// Export one host's issued material as a hiera YAML file for Puppet.
    Hiera(HieraArgs),
    /// Show the certificates on disk and their state, without contacting anyone.
    Status(StatusArgs),
    /// Check the certificates for Nagios, Icinga or Sensu: expiry, renewal, what is served.
    Check(CheckArgs),
}

/// Arguments of `request`, `finalize` and `renew`.
#[derive(Debug, clap::Args)]
pub struct HostArgs {
    /// Host configuration file (YAML).
    #[arg(long, default_value = "/etc/fleetcert/fleetcert.yaml")]
    pub config: PathBuf,
    /// Say what would be done; create no order, write no file.
    #[arg(long)]
    pub dry_run: bool,
}

/// Arguments of `install`.
#[derive(Debug, clap::Args)]
pub struct InstallArgs {
    /// Host configuration file (YAML) that lists the certificate.
    #[arg(long, default_value = "/etc/fleetcert/fleetcert.yaml")]
    pub config: PathBuf,
    /// The certificate's name in the config's `certs`.
    #[arg(long)]
    pub cert: String,
    /// The directory holding the set, named as the config's `layout` names the files: the
    /// key and the full chain, and the certificate and chain when given.
    #[arg(long)]
    pub from: PathBuf,
    /// Check the set and say whether it would be installed; write nothing, reload nothing.
    #[arg(long)]
    pub dry_run: bool,
}

/// Arguments of `publish`.
#[derive(Debug, clap::Args)]
pub struct PublishArgs {
    /// Zone configuration file (YAML).
    #[arg(long, default_value = "/etc/fleetcert/zone.yaml")]
    pub config: PathBuf,
    /// Token documents: FILE, `-` for stdin, or HOST=FILE (the file speaks for HOST); may be
    /// repeated.
    #[arg(long = "tokens", required = true)]
    pub tokens: Vec<PathBuf>,
    /// Validate and render, but do not replace the zone, reload or wait.
    #[arg(long)]
    pub dry_run: bool,
}

/// Arguments of `hiera`.
#[derive(Debug, clap::Args)]
pub struct HieraArgs {
    /// Host configuration file of the issuing host (the bastion's, for legacy hosts).
    #[arg(long, default_value = "/etc/fleetcert/fleetcert.yaml")]
    pub config: PathBuf,
    /// The legacy host whose material to export (its `host` in the config).
    #[arg(long)]
    pub host: String,
    /// Where to write the hiera YAML file.
    #[arg(long)]
    pub out: PathBuf,
    /// Say whether the file would change; write nothing.
    #[arg(long)]
    pub dry_run: bool,
}

/// Arguments of `status`.
#[derive(Debug, clap::Args)]
pub struct StatusArgs {
    /// Host configuration file (YAML).
    #[arg(long, default_value = "/etc/fleetcert/fleetcert.yaml")]
    pub config: PathBuf,
    /// Output format.
    #[arg(long, value_enum, default_value = "json")]
    pub format: StatusFormat,
}

/// How `status` prints.
#[derive(Debug, Clone, Copy, clap::ValueEnum)]
pub enum StatusFormat {
    /// One JSON document.
    Json,
    /// Aligned columns, for people.
    Table,
}

/// Arguments of `check`.
#[derive(Debug, clap::Args)]
pub struct CheckArgs {
    /// Host configuration file (YAML).
    #[arg(long, default_value = "/etc/fleetcert/fleetcert.yaml")]
    pub config: PathBuf,
    /// WARNING when a certificate expires within this many days (default: half its renewal
    /// window, 15 days for a 90-day certificate renewed from 30 days before expiry).
    #[arg(long, value_name = "N")]
    pub warning_days: Option<u32>,
    /// CRITICAL when a certificate expires within this many days (default: a quarter of its
    /// renewal window, 7.5 days for a 90-day certificate renewed from 30 days before expiry).
    #[arg(long, value_name = "N")]
    pub critical_days: Option<u32>,
}

/// Whether a command line (without the program name) runs `check`: its first word that is
/// not a flag. Used only when the line does not parse, to answer in the plugins' convention.
pub fn names_check<I: IntoIterator<Item = std::ffi::OsString>>(args: I) -> bool {
    args.into_iter()
        .find(|arg| !arg.to_string_lossy().starts_with('-'))
        .is_some_and(|arg| arg == "check")
}
