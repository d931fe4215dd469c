//! Writes the man pages and shell completions of `fleetcert`, generated from the clap
//! definitions the binary parses with (`fleetcert::cli`, src/cli.rs), into a directory that
//! cargo-deb packages
//! (`[package.metadata.deb]` in Cargo.toml; `packaging/build-deb.sh` runs this first):
//!
//!   cargo run --example package-assets -- target/package-assets
//!
//! It writes `man/fleetcert.1`, one `man/fleetcert-<subcommand>.1` per subcommand, and
//! `completions/fleetcert.bash`, `_fleetcert` (zsh) and `fleetcert.fish`.
//!
//! An example rather than a build script: only packaging needs these files, so neither a
//! `cargo build` nor the binary pays for generating them.

use std::fs;
use std::io::{self, Write as _};
use std::path::Path;
use std::process::ExitCode;

use clap::CommandFactory as _;
use clap_complete::Shell;
use fleetcert::cli;

/// The binary's name, as installed and as typed.
const NAME: &str = "fleetcert";

/// What the main page says beyond the options: the exit codes (docs/exit-codes.md) and where
/// things are, so `man fleetcert` answers what an operator asks first.
const MAIN_PAGE_EXTRA: &str = r#".SH "EXIT STATUS"
.TP
.B 0
success; the JSON report is on standard output
.TP
.B 1
some certificates failed; the report on standard output lists them, the others were handled
.TP
.B 2
bad usage, configuration or input; nothing was changed and nothing is on standard output
.TP
.B 3
publish only: the zone is published but not yet served by every server; the report is on
standard output and standard error names the server that lags
.TP
.B 4
the run failed as a whole (CA or DNS server unreachable, an I/O error); nothing is on
standard output and the old files stay
.PP
Every failure prints one line on standard error that names the thing and the fix.
.SH FILES
.TP
.I /etc/fleetcert/fleetcert.yaml
the host configuration
.TP
.I /etc/fleetcert/zone.yaml
the zone configuration of the DNS primary
.TP
.I /etc/fleetcert/certs
issued certificates and keys (keys 0640, group fleetcert)
.TP
.I /var/lib/fleetcert
the ACME account and pending orders (0700)
.TP
.I /usr/lib/systemd/system/fleetcert-renew.timer
daily renewal of a server on its own with
.BR "fleetcert renew" ;
shipped disabled
.SH "SEE ALSO"
.BR fleetcert-request (1),
.BR fleetcert-publish (1),
.BR fleetcert-finalize (1),
.BR fleetcert-hiera (1),
.BR fleetcert-status (1)
.PP
The operator documentation: /usr/share/doc/fleetcert/ and the docs/ directory of the source.
"#;

fn main() -> ExitCode {
    let mut args = std::env::args_os().skip(1);
    let (Some(out), None) = (args.next(), args.next()) else {
        eprintln!("usage: cargo run --example package-assets -- OUT_DIR");
        return ExitCode::from(2);
    };
    match write_all(Path::new(&out)) {
        Ok(()) => ExitCode::SUCCESS,
        Err(err) => {
            eprintln!(
                "package-assets: cannot write into {}: {err}",
                Path::new(&out).display()
            );
            ExitCode::FAILURE
        }
    }
}

fn write_all(out: &Path) -> io::Result<()> {
    let man = out.join("man");
    let completions = out.join("completions");
    fs::create_dir_all(&man)?;
    fs::create_dir_all(&completions)?;

    let mut command = cli::Args::command().disable_help_subcommand(true);
    command.build();
    for sub in command.get_subcommands().filter(|sub| !sub.is_hide_set()) {
        clap_mangen::Man::new(sub.clone()).generate_to(&man)?;
    }
    let mut page = Vec::new();
    clap_mangen::Man::new(command.clone()).render(&mut page)?;
    page.extend_from_slice(MAIN_PAGE_EXTRA.as_bytes());
    fs::File::create(man.join(format!("{NAME}.1")))?.write_all(&page)?;

    for shell in [Shell::Bash, Shell::Zsh, Shell::Fish] {
        clap_complete::generate_to(shell, &mut command, NAME, &completions)?;
    }
    Ok(())
}
