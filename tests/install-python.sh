#!/usr/bin/env bash
# Create <repo>/.venv and install the pinned Python tools from tests/requirements.txt
# (ansible-core, ansible-lint, pytest) for the Ansible tests and tests/demo.sh.
#
#   tests/install-python.sh          everything in tests/requirements.txt (tests/run.sh)
#   tests/install-python.sh --demo   only ansible-core, at the same pin (tests/demo.sh)
#
# Idempotent and quiet: when the venv already holds exactly what requirements.txt asks for
# (recorded by a stamp holding the file's checksum), it does nothing and prints nothing.
# PYTHON selects the interpreter (default: python3, which must be 3.11 or newer).
set -euo pipefail

repo=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
venv="$repo/.venv"
requirements="$repo/tests/requirements.txt"
stamp="$venv/.fleetcert-requirements.sha256"
python=${PYTHON:-python3}

die() { printf 'install-python.sh: %s\n' "$*" >&2; exit 1; }

# ansible-test bootstraps pip into the virtual environments of its sanity tests with a
# get-pip.py it downloads from a host outside the package registries, unless one is cached;
# tests/ansible-test/get-pip.py does the same from PyPI (see there).
cache_get_pip() {
    local source=$repo/tests/ansible-test/get-pip.py version cached
    version=$(sed -n "s/.*pip='\([0-9.]*\)'.*/\1/p" \
        "$venv"/lib/python3*/site-packages/ansible_test/_internal/python_requirements.py | head -n 1)
    [[ -n $version ]] || die "cannot find the pip version ansible-test bootstraps"
    cached=$HOME/.ansible/test/cache/get_pip_${version//./_}.py
    cmp -s "$source" "$cached" || install -D -m 0644 "$source" "$cached"
}

want=$(sha256sum "$requirements" | cut -d' ' -f1)
if [[ -x $venv/bin/python && -f $stamp && $(cat "$stamp") == "$want" ]]; then
    cache_get_pip
    exit 0
fi
demo=false scratch=
case ${1:-} in
    --demo) demo=true ;;
    '') ;;
    *) die "unknown argument ${1} (expected nothing or --demo)" ;;
esac
if $demo; then
    # The demo runs ansible-playbook and ansible-galaxy only: ansible-lint and pytest (and
    # their dependencies) are for the tests. Its own stamp, so that the full install later
    # still installs the rest.
    pin=$(grep -E '^ansible-core==' "$requirements") || die "no ansible-core pin in $requirements"
    stamp="$venv/.fleetcert-demo-requirements"
    [[ -x $venv/bin/python && -f $stamp && $(cat "$stamp") == "$pin" ]] && exit 0
    scratch=$(mktemp)
    trap 'rm -f "$scratch"' EXIT
    printf '%s\n' "$pin" >"$scratch"
    requirements=$scratch
    want=$pin
fi

command -v "$python" >/dev/null || die "$python not found: install Python 3.11 or newer (Debian: apt-get install python3 python3-venv)"
"$python" -c 'import sys; sys.exit(sys.version_info < (3, 11))' ||
    die "$python is $("$python" -V 2>&1); ansible-core from tests/requirements.txt needs Python 3.11 or newer"

log=$(mktemp)
trap 'rm -f "$log" ${scratch:+"$scratch"}' EXIT
if [[ ! -x $venv/bin/python ]]; then
    "$python" -m venv "$venv" >"$log" 2>&1 || {
        cat "$log" >&2
        die "cannot create $venv (Debian: apt-get install python3-venv)"
    }
fi
# shellcheck source=tests/progress.sh
source "$repo/tests/progress.sh"
# Seconds pip takes on 2 idle cores: ansible-core alone, or with ansible-lint and pytest.
typical=90
$demo && typical=40
printf '    pip install %s\n' "$(grep -v '^#' "$requirements" | tr '\n' ' ')"
if ! with_progress "pip install" "$typical" 0 '^$' "$log" -- "$venv/bin/python" -m pip install \
    --quiet --disable-pip-version-check --requirement "$requirements"; then
    tail -n 30 "$log" >&2
    die "pip failed installing $requirements into $venv"
fi
printf '%s\n' "$want" >"$stamp"
cache_get_pip
