#!/usr/bin/env bash
# Create <repo>/.venv and install the pinned Python tools from tests/requirements.txt
# (ansible-core, ansible-lint, pytest) for the Ansible tests and tests/demo.sh.
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

command -v "$python" >/dev/null || die "$python not found: install Python 3.11 or newer (Debian: apt-get install python3 python3-venv)"
"$python" -c 'import sys; sys.exit(sys.version_info < (3, 11))' ||
    die "$python is $("$python" -V 2>&1); ansible-core from tests/requirements.txt needs Python 3.11 or newer"

log=$(mktemp)
trap 'rm -f "$log"' EXIT
if [[ ! -x $venv/bin/python ]]; then
    "$python" -m venv "$venv" >"$log" 2>&1 || {
        cat "$log" >&2
        die "cannot create $venv (Debian: apt-get install python3-venv)"
    }
fi
if ! "$venv/bin/python" -m pip install --quiet --disable-pip-version-check \
    --requirement "$requirements" >"$log" 2>&1; then
    tail -n 30 "$log" >&2
    die "pip failed installing $requirements into $venv"
fi
printf '%s\n' "$want" >"$stamp"
cache_get_pip
