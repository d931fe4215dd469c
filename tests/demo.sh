#!/usr/bin/env bash
# The demo: on a fresh Debian 12 machine (as root, with a Rust toolchain), install what the
# demo needs, build fleetcert's Debian package and its Ansible collection, install the
# collection with ansible-galaxy, start the test sandbox (real Pebble, Unbound and a BIND
# primary and secondary on 127.0.0.1), write an inventory for a small local fleet and run the
# daily playbook fleetcert.fleetcert.daily on it from this machine as the bastion, as an
# operator would: the install role puts the package on every host (here: this machine). Then
# it shows every host's certificates.
#
#   tests/demo.sh [--hosts N] [--broken] [--keep]
#
#   --hosts N   N hosts with certificates (default 3), plus a legacy Puppet host whose
#               certificate is exported as hiera, and the DNS primary (tests/fleet/inventory.sh)
#   --broken    one more host whose certificates fail: one for a name without an
#               _acme-challenge CNAME, one whose validation fails; it fails alone, and the end
#               of the run names both and why
#   --keep      leave the sandbox running, the package installed and the fleet's files in
#               place, and say how to run the playbook again (a second run changes nothing)
#               and stop it
#
# What it leaves: the Debian packages it installed (DEMO_PACKAGES in tests/sandbox/install.sh),
# .venv/ with ansible-core, cargo-deb in ~/.cargo/bin, and the release build in target/.
# What it removes at the end (unless --keep): the sandbox's servers, the fleetcert package
# and the fleetcert group (unless they were there before) and the demo's directory. It says
# both at the start and at the end.
#
# Each long step (packages, cargo-deb, the release build) prints a line every 15 s with an
# estimate of what is left; the playbook prints its tasks as they run.
#
# Environment: DEMO_DIR (default: a new directory under $TMPDIR or /tmp).
set -euo pipefail

repo=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
cd "$repo"

hosts=3 broken=() keep=false
while (($#)); do
    case $1 in
        --hosts) hosts=${2:?--hosts wants a number}; shift 2 ;;
        --broken) broken=(--broken); shift ;;
        --keep) keep=true; shift ;;
        -h | --help) sed -n '2,/^# Environment/s/^# \{0,1\}//p' "$0"; exit 0 ;;
        *) printf 'demo.sh: unknown argument %s (see --help)\n' "$1" >&2; exit 2 ;;
    esac
done

step() { printf '\n==> %s\n' "$*"; }
die() { printf 'demo.sh: %s\n' "$*" >&2; exit 1; }
started=$SECONDS

[[ $(id -u) -eq 0 ]] || die "run as root: the install role installs the Debian package with apt"
command -v cargo >/dev/null || die "cargo not found: install a Rust toolchain (https://rustup.rs)"

# shellcheck source=tests/progress.sh
source tests/progress.sh

leaves="the sandbox running, the package installed and the demo's files in place (--keep)"
$keep || leaves="nothing else: at the end it stops the sandbox, purges the package and deletes its files (--keep leaves them)"
cat <<INTRO
fleetcert demo: certificates for a local fleet of $hosts hosts, through the daily playbook.
It installs what is missing (Debian packages for the sandbox, ansible-core in .venv/, cargo-deb)
and leaves those installed; it leaves $leaves.
INTRO

step "installing what is missing (Debian packages, ansible-core in .venv/, cargo-deb)"
tests/sandbox/install.sh --demo
tests/install-python.sh --demo
tests/install-cargo-tools.sh cargo-deb
export PATH=$repo/.venv/bin:$PATH
# ansible-core refuses to run without a UTF-8 locale.
export LC_ALL=C.UTF-8

dir=${DEMO_DIR:-$(mktemp -d "${TMPDIR:-/tmp}/fleetcert-demo.XXXXXX")}
mkdir -p "$dir"
sandbox=$dir/sandbox
fleet=$dir/fleet

step "packaging/build-deb.sh (a release build, man pages, completions, the Debian package)"
# The release build compiles most crates of Cargo.lock, cargo printing one "Compiling" line
# each: their count is the measure of progress. With nothing to compile: a few seconds.
build_log=$dir/build-deb.log
crates=$(grep -c '^name = ' Cargo.lock)
with_progress "release build" 300 "$crates" '^ *Compiling ' "$build_log" -- packaging/build-deb.sh ||
    { tail -n 20 "$build_log" >&2; die "packaging/build-deb.sh failed (above: the end of $build_log)"; }
deb=$(tail -n 1 "$build_log")
[[ $deb == *.deb && -f $deb ]] || die "packaging/build-deb.sh printed no package path (see $build_log)"
echo "    $deb"

step "ansible-galaxy collection build ansible/ and install it into $dir/collections"
export ANSIBLE_COLLECTIONS_PATH=$dir/collections
ansible-galaxy collection build --force --output-path "$dir" ansible >/dev/null
ansible-galaxy collection install --offline --force --collections-path "$dir/collections" \
    "$dir"/fleetcert-fleetcert-*.tar.gz | tail -n 1

# Whatever the demo adds to the machine beyond the package's own files, it removes again.
had_package=false had_group=false
[[ $(dpkg-query -W -f='${Status}' fleetcert 2>/dev/null) == "install ok installed" ]] && had_package=true
getent group fleetcert >/dev/null && had_group=true

stop_sandbox() {
    tests/sandbox/sandbox.sh stop "$sandbox" >/dev/null 2>&1 || true
}
remove_package() {
    $had_package && return
    apt-get purge -y -q fleetcert >/dev/null 2>&1 || true
    # The package's empty directories (the demo's hosts keep theirs in $dir) and the copy.
    rmdir /etc/fleetcert/certs /etc/fleetcert /var/lib/fleetcert 2>/dev/null || true
    rm -rf /var/cache/fleetcert
    $had_group || groupdel fleetcert 2>/dev/null || true
}
finish() {
    local code=$?
    if $keep && ((code == 0)); then
        return
    fi
    stop_sandbox
    remove_package
    if ((code == 0)); then
        rm -rf "$dir"
    else
        printf '\ndemo.sh: failed; the sandbox is stopped, its logs and the fleet are in %s\n' "$dir" >&2
    fi
}
trap finish EXIT

step "starting the sandbox in $sandbox"
# --parent: the sandbox's watchdog stops the servers when this script ends, also when it is
# killed; with --keep they outlive it.
parent=(--parent $$)
if $keep; then
    parent=()
fi
tests/sandbox/sandbox.sh start "$sandbox" "${parent[@]}"

step "writing the inventory of a local fleet in $fleet"
tests/fleet/inventory.sh "$sandbox/sandbox.env" "$fleet" --hosts "$hosts" "${broken[@]}" \
    --package "$deb" >/dev/null
sed -n '/^all:/,$p' "$fleet/inventory/hosts.yaml"

playbook=(
    ansible-playbook -i "$fleet/inventory" -e "@$fleet/extra-vars.yaml" fleetcert.fleetcert.daily
)
export ANSIBLE_CONFIG=$repo/ansible/ansible.cfg

step "ansible-playbook fleetcert.fleetcert.daily (install the package, request, publish, finalize, hiera, cleanup)"
playbook_started=$SECONDS
code=0
"${playbook[@]}" || code=$?
playbook_seconds=$((SECONDS - playbook_started))
# 2 is "some host failed": expected with --broken, where the broken host fails alone.
if ((code != 0)) && ! ((code == 2 && ${#broken[@]})); then
    die "ansible-playbook failed (exit $code)"
fi

step "the fleet's certificates (fleetcert status --format table on each host)"
for vars in "$fleet"/inventory/host_vars/*.yaml; do
    host=$(basename "$vars" .yaml)
    config=$(sed -n 's/^fleetcert_config_path: //p' "$vars")
    [[ -n $config ]] || continue # the DNS primary has no certificates
    printf '\n%s\n' "$host"
    if [[ -f $config ]]; then
        fleetcert status --config "$config" --format table | sed 's/^/  /'
    else
        echo "  (no config: the host failed before fleetcert was installed)"
    fi
done
printf '\nhandlers that ran (a stand-in for reloading services):\n'
sed 's/^/  /' "$fleet/handlers.log" 2>/dev/null || echo "  none"

printf '\nthe playbook took %s; the demo %s\n' "$(progress_duration "$playbook_seconds")" \
    "$(progress_duration $((SECONDS - started)))"
if ! $keep; then
    cat <<DONE

Removing what the demo made: the sandbox's servers, the fleetcert package and group (unless
they were there before), $dir. The Debian packages, .venv/ and cargo-deb stay.

Next, the whole test suite (it first installs what only the tests need: Java, ZooKeeper,
nginx, Prometheus, puppet, lintian, cargo-fuzz, ansible-lint):
  tests/run.sh
or follow the operator's guide against a sandbox of your own: docs/guide.md, "Trying it first".
DONE
fi
if $keep; then
    cat <<EOF

The sandbox keeps running and the package stays installed ($(fleetcert --version); man fleetcert).
Run the playbook again (it changes nothing), or in check mode:
  PATH=$repo/.venv/bin:\$PATH LC_ALL=C.UTF-8 ANSIBLE_CONFIG=$ANSIBLE_CONFIG ANSIBLE_COLLECTIONS_PATH=$ANSIBLE_COLLECTIONS_PATH ${playbook[*]} [--check]
Stop the sandbox, and remove the package and the demo's files:
  tests/sandbox/sandbox.sh stop $sandbox
  apt-get purge fleetcert
  rm -rf $dir

Next, the whole test suite (it first installs what only the tests need):
  tests/run.sh
EOF
fi
