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

/// What the main page says beyond its examples and exit status: where things are, so
/// `man fleetcert` answers what an operator asks first.
const MAIN_PAGE_EXTRA: &str = r#".SH FILES
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
"#;

/// The end of the main page: a page per subcommand, then the operator documentation.
fn see_also(subcommands: &[String]) -> String {
    let pages: Vec<String> = subcommands
        .iter()
        .map(|sub| format!(".BR {NAME}-{sub} (1)"))
        .collect();
    format!(
        ".SH \"SEE ALSO\"\n{}\n.PP\nThe operator documentation: /usr/share/doc/{NAME}/ and the docs/ \
         directory of the source.\n",
        pages.join(",\n")
    )
}

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
    let mut subcommands = Vec::new();
    for sub in command.get_subcommands().filter(|sub| !sub.is_hide_set()) {
        // After `build`, a subcommand's display name is `fleetcert-<sub>`: its page's name.
        let name = sub
            .get_display_name()
            .map_or_else(|| format!("{NAME}-{}", sub.get_name()), str::to_owned);
        let sub_page = clap_mangen::Man::new(sub.clone());
        let mut page = Vec::new();
        sub_page.render_title(&mut page)?;
        sub_page.render_name_section(&mut page)?;
        sub_page.render_synopsis_section(&mut page)?;
        sub_page.render_description_section(&mut page)?;
        sub_page.render_options_section(&mut page)?;
        page.extend_from_slice(help_sections(sub).as_bytes());
        page.extend_from_slice(format!(".SH \"SEE ALSO\"\n.BR {NAME} (1)\n").as_bytes());
        fs::File::create(man.join(format!("{name}.1")))?.write_all(&page)?;
        subcommands.push(sub.get_name().to_owned());
    }
    // The sections in man-pages(7)'s order, with ours before the version.
    let main_page = clap_mangen::Man::new(command.clone());
    let mut page = Vec::new();
    main_page.render_title(&mut page)?;
    main_page.render_name_section(&mut page)?;
    main_page.render_synopsis_section(&mut page)?;
    main_page.render_description_section(&mut page)?;
    main_page.render_options_section(&mut page)?;
    main_page.render_subcommands_section(&mut page)?;
    page.extend_from_slice(help_sections(&command).as_bytes());
    page.extend_from_slice(MAIN_PAGE_EXTRA.as_bytes());
    page.extend_from_slice(see_also(&subcommands).as_bytes());
    main_page.render_version_section(&mut page)?;
    fs::File::create(man.join(format!("{NAME}.1")))?.write_all(&page)?;

    for shell in [Shell::Bash, Shell::Zsh, Shell::Fish] {
        clap_complete::generate_to(shell, &mut command, NAME, &completions)?;
    }
    Ok(())
}

/// The man page's EXAMPLES and EXIT STATUS, from the "Examples:" and "Exit status ...:" blocks
/// of the command's `--help` (src/cli.rs), so that the two never disagree. An example is a
/// line indented by two, its explanation by six; an exit status is `  N  meaning`, and a line
/// of the block that is neither is a paragraph of its own.
fn help_sections(command: &clap::Command) -> String {
    let Some(help) = command.get_after_long_help() else {
        return String::new();
    };
    let mut out = String::new();
    let mut section = "";
    for line in help.to_string().lines() {
        if !line.starts_with(' ') && line.ends_with(':') || line.starts_with("Exit status") {
            section = if line.starts_with("Examples") {
                "examples"
            } else {
                "exit"
            };
            out.push_str(if section == "examples" {
                ".SH EXAMPLES\n"
            } else {
                ".SH \"EXIT STATUS\"\n"
            });
            if let Some(note) = line.strip_prefix("Exit status (") {
                out.push_str(&format!(
                    "{}\n",
                    roff(&format!("({note}").replace("):", ")."))
                ));
            }
            continue;
        }
        if line.trim().is_empty() {
            section = if section.is_empty() { "" } else { "gap" };
            continue;
        }
        match (section, line.strip_prefix("  ")) {
            ("examples", Some(rest)) if rest.starts_with("    ") => {
                out.push_str(&format!("{}\n", roff(rest.trim())));
            }
            ("examples", Some(rest)) => {
                out.push_str(&format!(".TP\n.B {}\n", roff(rest)));
            }
            ("exit", Some(rest)) if rest.starts_with(|c: char| c.is_ascii_digit()) => {
                let (code, meaning) = rest.split_once(' ').unwrap_or((rest, ""));
                out.push_str(&format!(".TP\n.B {code}\n{}\n", roff(meaning.trim())));
            }
            _ => out.push_str(&format!(".PP\n{}\n", roff(line.trim()))),
        }
    }
    out
}

/// `text` as a roff text line: backslashes and hyphens escaped, and a line that would start
/// with a control character made literal.
fn roff(text: &str) -> String {
    let escaped = text.replace('\\', "\\e").replace('-', "\\-");
    if escaped.starts_with(['.', '\'']) {
        format!("\\&{escaped}")
    } else {
        escaped
    }
}
