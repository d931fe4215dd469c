//! The test sandbox: a real BIND primary and secondary, Unbound and Pebble on 127.0.0.1,
//! started by `tests/sandbox/sandbox.sh` in a fresh temporary directory (docs/dev/sandbox.md).
//!
//! ```ignore
//! let sb = Sandbox::start();
//! sb.place_records(&[("host1.example.test.acme.test.", "value")]);
//! assert_eq!(sb.dig(sb.resolver(), "_acme-challenge.host1.example.test", "TXT").last(), ...);
//! ```
//!
//! Every sandbox has its own ports, so tests run in parallel. Dropping a `Sandbox` stops its
//! servers (also when the test panics; the directory is then kept and its path printed, for
//! the logs). If the test process is killed, the script's watchdog stops them.

// A helper API: no single test uses all of it.
#![allow(dead_code)]

use std::collections::BTreeMap;
use std::ffi::OsString;
use std::fmt::Write as _;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::thread;
use std::time::{Duration, Instant};

/// How long `place_records` and `wait_serial` wait for the servers by default.
const PROPAGATION_TIMEOUT: Duration = Duration::from_secs(120);

/// The SOA and NS records every signing zone written by this helper starts with; the same
/// content `sandbox.sh` starts the zone with.
const SIGNING_ZONE_HEAD: &str = "$TTL 60
@\tIN\tSOA\tns1.acme.test. hostmaster.acme.test. {serial} 3600 600 864000 60
@\tIN\tNS\tns1.acme.test.
@\tIN\tNS\tns2.acme.test.
ns1\tIN\tA\t127.0.0.1
ns2\tIN\tA\t127.0.0.1
";

/// The path of `tests/sandbox/sandbox.sh`.
pub(crate) fn script() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/sandbox/sandbox.sh")
}

/// A directory run by one of the scripts in `tests/sandbox/` (`sandbox.sh`, `services.sh`):
/// `SCRIPT start DIR ARGS... --parent PID` in a fresh temporary directory, so the script's
/// watchdog stops its servers if this process dies; `SCRIPT stop DIR` on drop. When the test
/// panics the directory is kept, and its path printed, for the logs.
pub(crate) struct ScriptDir {
    script: PathBuf,
    /// `None` once the directory has been handed over (kept for debugging).
    tempdir: Option<tempfile::TempDir>,
    dir: PathBuf,
    /// The `KEY=VALUE` file the script writes once everything answers.
    env_file: &'static str,
    env: BTreeMap<String, String>,
}

impl ScriptDir {
    /// Runs `script start DIR args... --parent PID` and reads `DIR/env_file`; panics with
    /// the script's output (and keeps the directory) when it fails.
    pub(crate) fn start(
        script: PathBuf,
        prefix: &str,
        env_file: &'static str,
        args: &[OsString],
    ) -> Self {
        let tempdir = tempfile::Builder::new()
            .prefix(prefix)
            .tempdir()
            .expect("create a temporary directory");
        let dir = tempdir.path().to_path_buf();
        let out = run(Command::new(&script)
            .arg("start")
            .arg(&dir)
            .args(args)
            .arg("--parent")
            .arg(std::process::id().to_string()));
        if !out.status.success() {
            // Keep the directory: its logs/ tell why.
            let kept = tempdir.keep();
            panic!(
                "{} start did not succeed (directory kept: {}):\n{}{}",
                script.display(),
                kept.display(),
                String::from_utf8_lossy(&out.stdout),
                String::from_utf8_lossy(&out.stderr)
            );
        }
        let env = read_env_file(&dir.join(env_file));
        Self {
            script,
            tempdir: Some(tempdir),
            dir,
            env_file,
            env,
        }
    }

    pub(crate) fn path(&self) -> &Path {
        &self.dir
    }

    /// A value from the env file; panics on an unknown key, listing the known ones.
    pub(crate) fn var(&self, key: &str) -> &str {
        self.env.get(key).map_or_else(
            || {
                panic!(
                    "{} has no {key}; it has: {}",
                    self.env_file,
                    self.env.keys().cloned().collect::<Vec<_>>().join(", ")
                )
            },
            String::as_str,
        )
    }

    /// `script SUB DIR rest...`, as it ran.
    pub(crate) fn run(&self, sub: &str, rest: &[&str]) -> Output {
        run(Command::new(&self.script)
            .arg(sub)
            .arg(&self.dir)
            .args(rest))
    }

    /// [`run`](Self::run), panicking with the script's output unless it succeeds.
    pub(crate) fn run_ok(&self, sub: &str, rest: &[&str]) {
        let out = self.run(sub, rest);
        assert!(
            out.status.success(),
            "{} {sub} {} {} failed:\n{}{}",
            self.script.display(),
            self.dir.display(),
            rest.join(" "),
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
    }
}

impl Drop for ScriptDir {
    fn drop(&mut self) {
        let out = self.run("stop", &[]);
        if !out.status.success() {
            eprintln!(
                "{} stop {} failed: {}",
                self.script.display(),
                self.dir.display(),
                String::from_utf8_lossy(&out.stderr)
            );
        }
        if thread::panicking()
            && let Some(tempdir) = self.tempdir.take()
        {
            eprintln!("kept for inspection: {}", tempdir.keep().display());
        }
    }
}

/// One running sandbox. Dropping it stops every server it started.
pub(crate) struct Sandbox {
    dir: ScriptDir,
}

/// Options for [`Sandbox::builder`].
#[derive(Default)]
pub(crate) struct SandboxBuilder {
    pebble_env: Vec<(String, String)>,
    pebble_eab: Vec<(String, String)>,
    tsig: Vec<String>,
    /// `--fallback-ca KID=HMAC`: a second Pebble that requires external account binding.
    fallback_ca: Option<(String, String)>,
    dnssec: Option<Validation>,
}

/// What Unbound does with the signatures of a signed sandbox ([`SandboxBuilder::dnssec`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Validation {
    /// It validates, with the signing zone's key as its trust anchor (as a CA's resolver).
    Validating,
    /// It passes signatures on without checking them (a resolver that does not validate).
    NotValidating,
}

impl SandboxBuilder {
    /// An environment variable for Pebble, e.g. `PEBBLE_WFE_NONCEREJECT=50`,
    /// `PEBBLE_VA_ALWAYS_VALID=1`, `PEBBLE_AUTHZREUSE=0` (`PEBBLE_VA_NOSLEEP=1` is always set).
    pub(crate) fn pebble_env(mut self, key: &str, value: &str) -> Self {
        self.pebble_env.push((key.to_owned(), value.to_owned()));
        self
    }

    /// Make Pebble require external account binding and accept this key id with this
    /// base64url HMAC key.
    pub(crate) fn pebble_eab(mut self, kid: &str, hmac_key: &str) -> Self {
        self.pebble_eab.push((kid.to_owned(), hmac_key.to_owned()));
        self
    }

    /// A TSIG key on the primary, which makes the signing zone dynamic (`sandbox.sh --tsig`):
    /// `ALGORITHM:NAME=SECRET` may change any TXT record of the zone, `...=SECRET@R1,R2`
    /// only the TXT records at those names, `...=SECRET@` nothing.
    pub(crate) fn tsig(mut self, spec: &str) -> Self {
        self.tsig.push(spec.to_owned());
        self
    }

    /// A second Pebble (`fallback`), with its own ports, database and roots, that registers
    /// accounts only with external account binding by this key id and base64url HMAC key.
    pub(crate) fn fallback_ca(mut self, kid: &str, hmac_key: &str) -> Self {
        self.fallback_ca = Some((kid.to_owned(), hmac_key.to_owned()));
        self
    }

    /// Sign the signing zone on the primary (`sandbox.sh --dnssec`): inline signing, or BIND's
    /// own signing of the dynamic zone when a [`tsig`](Self::tsig) key makes it dynamic.
    /// The secondary transfers it signed; Unbound (and so Pebble) validates or not as said.
    pub(crate) fn dnssec(mut self, validation: Validation) -> Self {
        self.dnssec = Some(validation);
        self
    }

    /// Starts the sandbox; panics with the script's message when a server does not come up.
    pub(crate) fn start(self) -> Sandbox {
        let mut args: Vec<OsString> = Vec::new();
        for (key, value) in &self.pebble_env {
            args.extend(["--pebble-env".into(), format!("{key}={value}").into()]);
        }
        for (kid, key) in &self.pebble_eab {
            args.extend(["--pebble-eab".into(), format!("{kid}={key}").into()]);
        }
        for spec in &self.tsig {
            args.extend(["--tsig".into(), spec.into()]);
        }
        if let Some((kid, key)) = &self.fallback_ca {
            args.extend(["--fallback-ca".into(), format!("{kid}={key}").into()]);
        }
        match self.dnssec {
            None => {}
            Some(Validation::Validating) => args.push("--dnssec".into()),
            Some(Validation::NotValidating) => {
                args.extend(["--dnssec".into(), "--no-validation".into()]);
            }
        }
        Sandbox {
            dir: ScriptDir::start(script(), "fleetcert-sandbox-", "sandbox.env", &args),
        }
    }
}

impl Sandbox {
    /// Starts a sandbox with the default Pebble settings.
    pub(crate) fn start() -> Self {
        Self::builder().start()
    }

    pub(crate) fn builder() -> SandboxBuilder {
        SandboxBuilder::default()
    }

    /// The sandbox directory (configs, zone files, logs/).
    pub(crate) fn dir(&self) -> &Path {
        self.dir.path()
    }

    /// A value from `sandbox.env`; panics on an unknown key, listing the known ones.
    pub(crate) fn var(&self, key: &str) -> &str {
        self.dir.var(key)
    }

    /// `https://127.0.0.1:PORT/dir`
    pub(crate) fn acme_directory(&self) -> &str {
        self.var("ACME_DIRECTORY")
    }

    /// The CA of Pebble's HTTPS certificate (one self-signed certificate): `acme.ca_bundle`.
    pub(crate) fn ca_bundle(&self) -> PathBuf {
        PathBuf::from(self.var("CA_BUNDLE"))
    }

    /// Pebble's issuing root, new on every start of Pebble (re-fetched by `start_server`).
    pub(crate) fn pebble_root(&self) -> PathBuf {
        PathBuf::from(self.var("PEBBLE_ROOT"))
    }

    pub(crate) fn pebble_intermediate(&self) -> PathBuf {
        PathBuf::from(self.var("PEBBLE_INTERMEDIATE"))
    }

    /// The second Pebble's directory (`SandboxBuilder::fallback_ca`).
    pub(crate) fn fallback_directory(&self) -> &str {
        self.var("FALLBACK_DIRECTORY")
    }

    /// The second Pebble's issuing root: not the first one's.
    pub(crate) fn fallback_root(&self) -> PathBuf {
        PathBuf::from(self.var("FALLBACK_ROOT"))
    }

    /// Unbound, `127.0.0.1:PORT`: the recursive resolver Pebble uses.
    pub(crate) fn resolver(&self) -> &str {
        self.var("RESOLVER")
    }

    /// The BIND primary, `127.0.0.1:PORT`.
    pub(crate) fn primary(&self) -> &str {
        self.var("PRIMARY")
    }

    /// The BIND secondary, `127.0.0.1:PORT`.
    pub(crate) fn secondary(&self) -> &str {
        self.var("SECONDARY")
    }

    /// The primary's zone file of `acme.test`, which `publish` replaces.
    pub(crate) fn signing_zone_file(&self) -> PathBuf {
        PathBuf::from(self.var("SIGNING_ZONE_FILE"))
    }

    pub(crate) fn production_zone_file(&self) -> PathBuf {
        PathBuf::from(self.var("PRODUCTION_ZONE_FILE"))
    }

    /// An executable `rndc` for the primary: `reload: [<this>, reload, acme.test]`.
    pub(crate) fn rndc(&self) -> PathBuf {
        PathBuf::from(self.var("RNDC"))
    }

    /// Gives Unbound the signing zone's real key as trust anchor (`true`), or a key that
    /// never signed it (`false`: the chain is bogus), and restarts it.
    pub(crate) fn trust_anchor(&self, right: bool) {
        self.dir
            .run_ok("trust-anchor", &[if right { "right" } else { "wrong" }]);
    }

    /// Stops one of `primary`, `secondary`, `unbound`, `pebble`, `fallback`.
    pub(crate) fn stop_server(&self, name: &str) {
        self.dir.run_ok("stop-server", &[name]);
    }

    /// Starts it again on the same port and waits until it answers (a secondary: until it
    /// has the primary's serials again; Pebble: with a new root, see `pebble_root`).
    pub(crate) fn start_server(&self, name: &str) {
        self.dir.run_ok("start-server", &[name]);
    }

    /// `dig +short` through `server` (`ip:port`): one entry per answer line, TXT strings
    /// unquoted (a multi-string TXT joined, as the CA sees it). Through the resolver a CNAME
    /// comes first, then the records at its target.
    pub(crate) fn dig(&self, server: &str, name: &str, rtype: &str) -> Vec<String> {
        dig_short(server, name, rtype, 2).unwrap_or_else(|err| panic!("{err}"))
    }

    /// `dig +norec` of `name` `rtype` at an authoritative `server`: the answer lines' data
    /// (TXT unquoted, as [`dig`](Self::dig) gives them) when the answer has the AA flag;
    /// `Err` with dig's whole output when it does not, or when no answer came back.
    pub(crate) fn dig_authoritative(
        &self,
        server: &str,
        name: &str,
        rtype: &str,
    ) -> Result<Vec<String>, String> {
        let (ip, port) = split_server(server);
        let out = run(Command::new("dig")
            .args([
                "+norec",
                "+noall",
                "+comments",
                "+answer",
                "+time=2",
                "-p",
                port,
            ])
            .arg(format!("@{ip}"))
            .args([name, rtype]));
        let text = String::from_utf8_lossy(&out.stdout).into_owned();
        // `;; flags: qr aa; QUERY: ...`: AA set by a server answering from its own zone.
        let authoritative = text
            .lines()
            .filter_map(|line| line.strip_prefix(";; flags:"))
            .any(|flags| {
                flags
                    .split(';')
                    .next()
                    .unwrap_or("")
                    .split_whitespace()
                    .any(|f| f == "aa")
            });
        if !out.status.success() || !authoritative {
            return Err(format!(
                "{server} gave no authoritative answer for {name} {rtype}:\n{text}"
            ));
        }
        Ok(text
            .lines()
            .filter(|line| !line.trim().is_empty() && !line.starts_with(';'))
            .filter_map(|line| {
                // owner TTL class type data...: keep the data, as `dig +short` prints it.
                let data: Vec<&str> = line.split_whitespace().skip(4).collect();
                (!data.is_empty()).then(|| unquote_txt(&data.join(" ")))
            })
            .collect())
    }

    /// The SOA serial of `acme.test` at `server`; panics when it does not answer.
    pub(crate) fn serial(&self, server: &str) -> u32 {
        self.try_serial(server)
            .unwrap_or_else(|| panic!("{server} gives no SOA for acme.test"))
    }

    /// The SOA serial of `acme.test` at `server`, `None` when it does not answer.
    pub(crate) fn try_serial(&self, server: &str) -> Option<u32> {
        dig_short(server, self.var("SIGNING_ZONE"), "SOA", 1)
            .ok()?
            .iter()
            .find_map(|line| line.split_whitespace().nth(2)?.parse().ok())
    }

    /// Waits until `server` serves `acme.test` with at least `serial`; panics after `timeout`.
    pub(crate) fn wait_serial(&self, server: &str, serial: u32, timeout: Duration) {
        let deadline = Instant::now() + timeout;
        loop {
            let now = self.try_serial(server);
            if now.is_some_and(|s| s >= serial) {
                return;
            }
            assert!(
                Instant::now() < deadline,
                "{server} still serves acme.test serial {now:?} after {timeout:?}, wanted {serial}"
            );
            thread::sleep(Duration::from_millis(20));
        }
    }

    /// Test-only stand-in for `fleetcert publish`: rewrites the signing zone with exactly
    /// these TXT records (owner name, value), with the next serial, reloads the primary and
    /// waits until BOTH servers serve it. Returns the new serial.
    pub(crate) fn place_records(&self, records: &[(&str, &str)]) -> u32 {
        let serial = self.write_signing_zone(records);
        for server in [self.primary(), self.secondary()] {
            self.wait_serial(server, serial, PROPAGATION_TIMEOUT);
        }
        serial
    }

    /// [`place_records`](Self::place_records) with exactly a token document's records.
    pub(crate) fn place_document(&self, document: &serde_json::Value) -> u32 {
        let records = document_records(document);
        let borrowed: Vec<(&str, &str)> = records
            .iter()
            .map(|(name, value)| (name.as_str(), value.as_str()))
            .collect();
        self.place_records(&borrowed)
    }

    /// The first half of [`place_records`](Self::place_records): write the zone (serial + 1
    /// of what the primary serves) and reload the primary, without waiting for anything.
    /// For tests that stop the secondary first.
    pub(crate) fn write_signing_zone(&self, records: &[(&str, &str)]) -> u32 {
        let serial = self.serial(self.primary()) + 1;
        let mut zone = SIGNING_ZONE_HEAD.replace("{serial}", &serial.to_string());
        for (name, value) in records {
            let dot = if name.ends_with('.') { "" } else { "." };
            let _ = writeln!(zone, "{name}{dot}\t60\tIN\tTXT\t\"{value}\"");
        }
        // Same directory + rename: named never reads a half-written file.
        let file = self.signing_zone_file();
        let tmp = file.with_extension("db.tmp");
        std::fs::write(&tmp, zone).expect("write the signing zone");
        std::fs::rename(&tmp, &file).expect("replace the signing zone");
        let out = run(Command::new(self.rndc()).args(["reload", self.var("SIGNING_ZONE")]));
        assert!(
            out.status.success(),
            "rndc reload failed: {}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        serial
    }

    /// `openssl verify` of the leaf (first certificate of `fullchain`) against Pebble's
    /// root, with the rest of the file as untrusted intermediates. `Err` has openssl's output.
    pub(crate) fn verify_chain(&self, fullchain: &Path) -> Result<(), String> {
        super::util::verify_against(&self.pebble_root(), fullchain)
    }
}

impl Sandbox {
    /// Every record of `acme.test` on `server` by AXFR, one `name TTL class type data` line
    /// each (dig's form), sorted; the SOA left out when `without_soa`.
    pub(crate) fn axfr(&self, server: &str, without_soa: bool) -> Vec<String> {
        let (ip, port) = split_server(server);
        let out = run(Command::new("dig")
            .args(["+noall", "+answer", "+time=3", "-p", port])
            .arg(format!("@{ip}"))
            .args([self.var("SIGNING_ZONE"), "AXFR"]));
        assert!(out.status.success(), "dig axfr failed");
        let text = String::from_utf8_lossy(&out.stdout);
        let mut lines: Vec<String> = text
            .lines()
            .filter(|line| !line.trim().is_empty() && !line.starts_with(';'))
            .filter(|line| !(without_soa && line.split_whitespace().nth(3) == Some("SOA")))
            .map(|line| line.split_whitespace().collect::<Vec<_>>().join(" "))
            .collect();
        lines.sort();
        lines.dedup();
        lines
    }

    /// Adds `records` (zone-file lines with absolute names) to the primary's zone file of the
    /// dynamic signing zone by hand, the way BIND wants it: `rndc freeze` (the journal goes
    /// into the file), append, a serial one higher, `rndc thaw` (reloaded). Waits until both
    /// servers serve the new serial.
    pub(crate) fn add_by_hand(&self, records: &[&str]) {
        let zone = self.var("SIGNING_ZONE");
        let rndc = |verb: &str| {
            let out = run(Command::new(self.rndc()).args([verb, zone]));
            assert!(
                out.status.success(),
                "rndc {verb} failed: {}",
                String::from_utf8_lossy(&out.stderr)
            );
        };
        let serial = self.serial(self.primary()) + 1;
        rndc("freeze");
        let file = self.signing_zone_file();
        let text = std::fs::read_to_string(&file).expect("read the zone file");
        // BIND dumps the SOA over several lines, the serial on its own with `; serial`.
        let old = format!("{} ", serial - 1);
        let mut replaced = false;
        let mut out = String::new();
        for line in text.lines() {
            if !replaced && line.contains("; serial") && line.trim_start().starts_with(&old) {
                out.push_str(&line.replacen(&old, &format!("{serial} "), 1));
                replaced = true;
            } else if let Some(one_line) = (!replaced)
                .then(|| soa_with_serial(line, serial - 1, serial))
                .flatten()
            {
                // The file as the sandbox wrote it: the whole SOA on one line.
                out.push_str(&one_line);
                replaced = true;
            } else {
                out.push_str(line);
            }
            out.push('\n');
        }
        assert!(
            replaced,
            "no serial {} in the frozen zone file:\n{text}",
            serial - 1
        );
        out.push_str(&format!("$ORIGIN {zone}.\n"));
        for record in records {
            out.push_str(record);
            out.push('\n');
        }
        std::fs::write(&file, out).expect("write the zone file");
        rndc("thaw");
        for server in [self.primary(), self.secondary()] {
            self.wait_serial(server, serial, PROPAGATION_TIMEOUT);
        }
    }

    /// `nsupdate -y` to the primary with `commands` (without `send`), signed by `key`
    /// (`ALGORITHM:NAME:SECRET`); `Err` with nsupdate's output when it fails.
    pub(crate) fn nsupdate(&self, key: &str, commands: &str) -> Result<(), String> {
        let (ip, port) = split_server(self.primary());
        let script = format!(
            "server {ip} {port}\nzone {}\n{commands}\nsend\n",
            self.var("SIGNING_ZONE")
        );
        let mut child = Command::new("nsupdate")
            .args(["-v", "-y", key])
            .stdin(std::process::Stdio::piped())
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::piped())
            .spawn()
            .expect("start nsupdate");
        std::io::Write::write_all(child.stdin.as_mut().expect("stdin"), script.as_bytes())
            .expect("write nsupdate script");
        drop(child.stdin.take());
        let out = child.wait_with_output().expect("wait for nsupdate");
        if out.status.success() {
            Ok(())
        } else {
            Err(format!(
                "{}{}",
                String::from_utf8_lossy(&out.stdout),
                String::from_utf8_lossy(&out.stderr)
            ))
        }
    }

    /// Lines of the primary's log that BIND writes for each UPDATE request it handles
    /// (`updating zone 'acme.test/IN': ...`), taken or refused.
    pub(crate) fn update_log_lines(&self) -> Vec<String> {
        let log = std::fs::read_to_string(self.dir().join("logs/primary.log")).unwrap_or_default();
        log.lines()
            .filter(|line| line.contains("updating zone"))
            .map(str::to_owned)
            .collect()
    }
}

/// `line` with its SOA serial `old` replaced by `new`, when it is a one-line SOA record.
fn soa_with_serial(line: &str, old: u32, new: u32) -> Option<String> {
    let mut fields: Vec<String> = line.split_whitespace().map(str::to_owned).collect();
    let at = fields.iter().position(|field| field == "SOA")? + 3;
    if fields.get(at)? != &old.to_string() {
        return None;
    }
    fields[at] = new.to_string();
    Some(fields.join("\t"))
}

/// The (name, value) pairs of a token document's records, sorted.
pub(crate) fn document_records(document: &serde_json::Value) -> Vec<(String, String)> {
    let mut records: Vec<(String, String)> = document["records"]
        .as_array()
        .expect("records is a list")
        .iter()
        .map(|record| {
            (
                record["name"].as_str().expect("name").to_owned(),
                record["value"].as_str().expect("value").to_owned(),
            )
        })
        .collect();
    records.sort();
    records
}

pub(crate) fn run(cmd: &mut Command) -> Output {
    cmd.output()
        .unwrap_or_else(|err| panic!("cannot run {:?}: {err}", cmd.get_program()))
}

/// `KEY=VALUE` lines, no quoting (the script refuses paths that would need it).
fn read_env_file(path: &Path) -> BTreeMap<String, String> {
    let text = std::fs::read_to_string(path)
        .unwrap_or_else(|err| panic!("cannot read {}: {err}", path.display()));
    text.lines()
        .filter_map(|line| line.split_once('='))
        .map(|(key, value)| (key.to_owned(), value.to_owned()))
        .collect()
}

/// `dig +short`, one try of `seconds`s per attempt; `Err` when no answer came back.
fn dig_short(server: &str, name: &str, rtype: &str, seconds: u32) -> Result<Vec<String>, String> {
    let (ip, port) = split_server(server);
    let out = run(Command::new("dig")
        .args([
            "+short",
            &format!("+time={seconds}"),
            "+tries=2",
            "-p",
            port,
        ])
        .arg(format!("@{ip}"))
        .args([name, rtype]));
    let stdout = String::from_utf8_lossy(&out.stdout);
    if !out.status.success() {
        return Err(format!(
            "dig @{server} {name} {rtype} failed: {stdout}{}",
            String::from_utf8_lossy(&out.stderr)
        ));
    }
    Ok(stdout
        .lines()
        .filter(|line| !line.trim().is_empty() && !line.starts_with(";;"))
        .map(unquote_txt)
        .collect())
}

fn split_server(server: &str) -> (&str, &str) {
    server
        .rsplit_once(':')
        .unwrap_or_else(|| panic!("server {server:?} is not ip:port"))
}

/// `"abc"` → `abc`; `"ab" "c"` → `abc`; anything else unchanged.
fn unquote_txt(line: &str) -> String {
    let line = line.trim();
    if line.len() >= 2 && line.starts_with('"') && line.ends_with('"') {
        line[1..line.len() - 1].split("\" \"").collect()
    } else {
        line.to_owned()
    }
}

/// The PEM blocks of every certificate in `pem`, each with its END line and a newline.
pub(crate) fn pem_certificates(pem: &str) -> Vec<String> {
    const END: &str = "-----END CERTIFICATE-----";
    let mut blocks = Vec::new();
    let mut rest = pem;
    while let Some(start) = rest.find("-----BEGIN CERTIFICATE-----") {
        let Some(end) = rest[start..].find(END) else {
            break;
        };
        let stop = start + end + END.len();
        blocks.push(format!("{}\n", &rest[start..stop]));
        rest = &rest[stop..];
    }
    blocks
}

// --- smoke tests of the sandbox itself --------------------------------------------------

#[test]
fn sandbox_serves_placed_record_through_resolver_cname() {
    let sb = Sandbox::start();
    let per_name = "host1.example.test.acme.test.";
    let value = "a".repeat(43);
    let apex = "acme.test.";
    let serial = sb.place_records(&[(per_name, &value), (apex, "shared-value")]);

    // Both authoritative servers have it, authoritatively (AA) ...
    for server in [sb.primary(), sb.secondary()] {
        assert_eq!(sb.serial(server), serial, "serial at {server}");
        assert_eq!(
            sb.dig(server, per_name, "TXT"),
            vec![value.clone()],
            "TXT at {server}"
        );
        let (ip, port) = split_server(server);
        let full = run(Command::new("dig")
            .args(["+norec", "-p", port])
            .arg(format!("@{ip}"))
            .args([per_name, "TXT"]));
        let text = String::from_utf8_lossy(&full.stdout);
        assert!(
            text.contains("flags: qr aa"),
            "{server} is not authoritative:\n{text}"
        );
    }
    // ... and the resolver follows the production zone's CNAMEs into them.
    assert_eq!(
        sb.dig(sb.resolver(), "_acme-challenge.host1.example.test", "TXT"),
        vec![per_name.to_owned(), value.clone()]
    );
    assert_eq!(
        sb.dig(sb.resolver(), "_acme-challenge.shared7.example.test", "TXT"),
        vec![apex.to_owned(), "shared-value".to_owned()]
    );

    // No caching in the resolver: a changed record is seen at once.
    sb.place_records(&[(per_name, "changed")]);
    assert_eq!(
        sb.dig(sb.resolver(), "_acme-challenge.host1.example.test", "TXT"),
        vec![per_name.to_owned(), "changed".to_owned()]
    );
    // And the negative cases of the production zone are there.
    assert!(
        sb.dig(
            sb.resolver(),
            "_acme-challenge.nocname.example.test",
            "CNAME"
        )
        .is_empty()
    );
    assert_eq!(
        sb.dig(sb.resolver(), "_acme-challenge.wrong.example.test", "CNAME"),
        vec!["elsewhere.invalid.".to_owned()]
    );
}

#[test]
fn sandbox_secondary_comes_back_on_its_port_and_catches_up() {
    let sb = Sandbox::start();
    let secondary = sb.secondary().to_owned();
    sb.stop_server("secondary");
    assert_eq!(
        sb.try_serial(&secondary),
        None,
        "stopped secondary still answers"
    );

    let serial = sb.write_signing_zone(&[("www3.example.test.acme.test.", "while-down")]);
    sb.wait_serial(sb.primary(), serial, PROPAGATION_TIMEOUT);
    sb.start_server("secondary");
    assert_eq!(sb.secondary(), secondary);
    assert_eq!(sb.serial(&secondary), serial);
    assert_eq!(
        sb.dig(&secondary, "www3.example.test.acme.test.", "TXT"),
        vec!["while-down"]
    );
}

#[test]
fn sandbox_pebble_answers_over_https_and_chain_check_works() {
    let sb = Sandbox::builder()
        .pebble_env("PEBBLE_WFE_NONCEREJECT", "0")
        .start();
    let out = run(Command::new("curl")
        .args(["-sf", "--cacert"])
        .arg(sb.ca_bundle())
        .arg(sb.acme_directory()));
    let body = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success() && body.contains("newOrder"),
        "directory: {body}"
    );
    let log = std::fs::read_to_string(sb.dir().join("logs/pebble.log")).expect("pebble log");
    assert!(
        log.contains("reject 0% of good nonces"),
        "--pebble-env not applied:\n{log}"
    );

    // The intermediate verifies against the root; the harness CA's certificate does not.
    let chain = sb.dir().join("chain-check.pem");
    std::fs::write(
        &chain,
        std::fs::read(sb.pebble_intermediate()).expect("intermediate"),
    )
    .expect("write");
    assert_eq!(sb.verify_chain(&chain), Ok(()));
    let err = sb
        .verify_chain(&sb.ca_bundle())
        .expect_err("harness CA is not Pebble's");
    assert!(err.contains("error"), "openssl output: {err}");
}
