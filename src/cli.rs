//! Command-line arguments: what the operator typed, before any of it is checked.
//!
//! Each subcommand has one struct; the meaning of the flags lives in `commands/`.

use std::path::PathBuf;

use clap::{Parser, Subcommand};

/// Issue and renew a fleet's TLS certificates by ACME DNS-01 via a signing zone.
#[derive(Debug, Parser)]
#[command(name = "fleetcert", version, about, long_about = None, after_long_help = MAIN_HELP)]
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
    #[command(after_long_help = REQUEST_HELP)]
    Request(HostArgs),
    /// Collate token documents, publish the signing zone, wait for every server.
    #[command(after_long_help = PUBLISH_HELP)]
    Publish(PublishArgs),
    /// Complete the pending orders: validate, finalize, install the certificates.
    #[command(after_long_help = FINALIZE_HELP)]
    Finalize(HostArgs),
    /// A server on its own: request, publish its records by dynamic update, wait, finalize,
    /// remove the records, in one run (from a systemd timer).
    #[command(after_long_help = RENEW_HELP)]
    Renew(HostArgs),
    /// Install a set another host issued (a cluster member's copy): checked as finalize
    /// checks, installed as finalize installs, then the certificate's reload.
    Install(InstallArgs),
    /// Export one host's issued material as a hiera YAML file for Puppet.
    #[command(after_long_help = HIERA_HELP)]
    Hiera(HieraArgs),
    /// Show the certificates on disk and their state, without contacting anyone.
    #[command(after_long_help = STATUS_HELP)]
    Status(StatusArgs),
    /// Check the certificates for Nagios, Icinga or Sensu: expiry, renewal, what is served.
    #[command(after_long_help = CHECK_HELP)]
    Check(CheckArgs),
}

/// Arguments of `request`, `finalize` and `renew`.
#[derive(Debug, clap::Args)]
pub struct HostArgs {
    /// Host configuration file (YAML).
    #[arg(long, default_value = "/etc/fleetcert/fleetcert.yaml")]
    pub config: PathBuf,
    /// Say what would be done; create no order, write no file (request still reads the CA's
    /// directory where it would order, and fails as the run would when the CA does not answer).
    #[arg(long)]
    pub dry_run: bool,
    /// Also say what `fleetcert check` says after the run, in the report's `check` (its code
    /// and line), and record its probes in the metrics: one process where two ran.
    #[arg(long)]
    pub check: bool,
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

// The text after each command's options in `--help` and its man page (examples/package-assets.rs
// turns the "Examples:" and "Exit status:" blocks into the man page's EXAMPLES and EXIT STATUS
// sections): what to type first, and what each exit code means for it (docs/exit-codes.md).

const MAIN_HELP: &str = "\
Examples:
  fleetcert request --config /etc/fleetcert/fleetcert.yaml > tokens.json
      On each host: order what is due, print the token document.
  fleetcert publish --config /etc/fleetcert/zone.yaml --tokens web01.example.org=tokens.json
      On the DNS primary: publish every host's records, wait for every server.
  fleetcert finalize --config /etc/fleetcert/fleetcert.yaml
      On each host: validate, finalize, install the certificates.
  fleetcert status --format table
      What is installed, without contacting anyone.

Exit status:
  0  success; the JSON report is on standard output
  1  some certificates failed; the report lists why, the others were handled
  2  bad usage, config or input: the line on standard error names the key or file and the fix; nothing changed
  3  publish, renew: the zone is published but not yet served by every server (the report, then the laggard)
  4  the run failed as a whole (the CA or a DNS server did not answer, a reload failed, an I/O error); the old files stay
  fleetcert check speaks the monitoring plugins' codes instead: 0 OK, 1 WARNING, 2 CRITICAL, 3 UNKNOWN.

The operator's guide: docs/guide.md (/usr/share/doc/fleetcert/docs/guide.md in the package).";

const REQUEST_HELP: &str = "\
Examples:
  fleetcert request --config /etc/fleetcert/fleetcert.yaml > tokens.json
      Order what is due; give tokens.json to publish on the DNS primary.
  fleetcert request --dry-run
      Say what is due and why, without ordering (it reads the CA's directory where it would order).

Exit status:
  0  every certificate is valid, pending or ready; the token document is on standard output
  1  some certificate failed (no _acme-challenge CNAME, the CA refused); the document says why
  2  the config is refused (the line names the key and the fix); nothing written
  4  an order is needed and the CA did not answer (check acme.directory); nothing written";

const PUBLISH_HELP: &str = "\
Examples:
  fleetcert publish --config /etc/fleetcert/zone.yaml --tokens web01.example.org=web01.json --tokens web02.example.org=web02.json
      Each file speaks for the host named before it.
  fleetcert publish --tokens hostvars.json
      A JSON object of host name -> token document, as the Ansible role writes it.
  fleetcert publish --tokens - --dry-run < tokens.json
      Validate and render, replace nothing.

Exit status:
  0  the zone is published and every authoritative server serves it (or nothing changed)
  2  the zone config or a token document is refused, or the rendered zone fails its check; nothing changed
  3  published, but not every server serves it within `timeout`; the report, then the servers that lag
  4  the reload failed (the previous zone was put back), a server or the lock did not answer; nothing changed";

const FINALIZE_HELP: &str = "\
Examples:
  fleetcert finalize --config /etc/fleetcert/fleetcert.yaml
      After publish: validate, finalize, install; the report's `changed` says what was replaced.
  fleetcert finalize --dry-run
      Say which pending orders would be completed.

Exit status:
  0  every pending order was completed (or none was pending)
  1  some certificate failed (the CA refused the validation); its old files are untouched
  2  the config is refused; nothing written
  4  an order is pending and the CA did not answer (check acme.directory); every file stays";

const RENEW_HELP: &str = "\
Examples:
  fleetcert renew --config /etc/fleetcert/fleetcert.yaml
      A server on its own (the config has an update: block); the package's fleetcert-renew.timer runs it daily.
  systemctl enable --now fleetcert-renew.timer

Exit status:
  0  every certificate is valid or was renewed
  1  some certificate failed; the report says why
  2  the config is refused (renew needs update:); nothing written
  3  the records were not served by every server in time; finalize was skipped, the records removed
  4  the run failed as a whole (the CA or the DNS server did not answer); the old files stay";

const HIERA_HELP: &str = "\
Examples:
  fleetcert hiera --config /etc/fleetcert/legacy/wiki01.yaml --host wiki01.example.org --out /etc/puppet/hieradata/wiki01.certs.yaml
      Export what the bastion issued for a legacy Puppet host.

Exit status:
  0  the file was written, or was already current
  2  the config is refused, or a certificate to export is missing or broken; nothing written
  4  the file could not be written";

const STATUS_HELP: &str = "\
Examples:
  fleetcert status --format table
  fleetcert status | jq '.certs[] | {name, not_after}'

Exit status:
  0  always, once the config is accepted (a certificate that cannot be read says so in `problem`)
  2  the config is refused";

const CHECK_HELP: &str = "\
Examples:
  fleetcert check
      FLEETCERT OK - 1 certificate OK, main expires first, in 61 days | main_days=61.00;15:;7.5:
  fleetcert check --warning-days 20 --critical-days 10
  command_line /usr/bin/fleetcert check --config $ARG1$
      As a Nagios or Icinga command.

Exit status (the monitoring plugins' convention, not the other commands'):
  0  OK: every certificate is installed, outside the warning window, served as installed
  1  WARNING: a certificate expires within the warning window, or is due (names, key type or issuer changed)
  2  CRITICAL: a certificate expires within the critical window, has expired, is missing, or a probe target serves another one
  3  UNKNOWN: the check cannot tell (the config cannot be read, bad arguments)";
