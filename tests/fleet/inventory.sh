#!/usr/bin/env bash
# Write an Ansible inventory for a small local fleet on the test sandbox: every host is this
# machine (`ansible_connection: local`) with its own binary, config, state and cert
# directories and its own names, and the DNS primary is the sandbox's BIND primary (or, with
# --update, a bastion that publishes by dynamic update). Used by tests/demo.sh and the Ansible
# integration test (tests/integration/ansible.rs).
#
#   tests/fleet/inventory.sh SANDBOX_ENV DIR [--hosts N] [--broken]
#                            [--binary PATH [--url URL] | --package DEB]
#                            [--update [ALGORITHM:]KEY=SECRET_FILE] [--metrics]
#
#   SANDBOX_ENV  the sandbox's sandbox.env (tests/sandbox/sandbox.sh start writes it)
#   DIR          where the fleet lives; created, must not hold an inventory yet
#   --hosts N    hosts host1..hostN.example.test (default 3, at most 199); odd ones have one
#                certificate `main` for hostN and wwwN, even ones two: `main` (hostN) and
#                `www` (wwwN)
#   (always)     a legacy Puppet host, legacy.example.test, with certificate `main` for
#                host200.example.test, issued by the bastion (localhost) and exported as hiera
#                into DIR/hosts/legacy.example.test/hieradata/host_vars/NAME.certs.yaml
#   --broken     one more host, broken.example.test, with two certificates that fail: `main`
#                for nocname.example.test, a name without an _acme-challenge CNAME, so its
#                request is refused before ordering; and `www` for host199.example.test,
#                ordered, but the DNS primary leaves this host out of publish
#                (fleetcert_publish_hosts), so the CA finds no record and validation fails.
#                The host fails alone; every other host gets its certificates
#   --binary P   install method `copy`: the bastion copies the binary P to every host
#                (default: target/release/fleetcert of this repository)
#   --url URL    with --binary: host1 downloads the binary from URL instead (method `url`),
#                checked against the SHA-256 of P; with --broken also badsum.example.test,
#                whose checksum is wrong: it fails at install, alone, and gets no binary
#   --package D  install method `package`: every host installs the Debian package D with apt
#                (as root; on this one machine the hosts share /usr/bin/fleetcert)
#   --update K=F publish by dynamic update (fleetcert_zone_update) instead of the zone file:
#                the publishing host is bastion.example.test, which sends signed UPDATEs to
#                the sandbox's primary with TSIG key K (ALGORITHM: hmac-sha256 by default) and
#                has no zone file, SOA, NS or reload command. F is the key's secret on the
#                controller (base64, as tsig-keygen prints it), which the publish role copies
#                to the bastion (secret_src). The sandbox must know the key and let it change
#                TXT records: tests/sandbox/sandbox.sh start DIR --tsig K=SECRET
#   --metrics    every host (the publishing host and the bastion's legacy host too) gets
#                fleetcert_metrics_textfile_dir: DIR/hosts/NAME/textfiles, which the playbook
#                creates and every fleetcert command writes fleetcert.prom into
#
# It writes:
#   DIR/inventory/hosts.yaml             groups and shared settings
#   DIR/inventory/host_vars/NAME.yaml    each host's paths and certificates (edit freely)
#   DIR/extra-vars.yaml                  pass with -e @DIR/extra-vars.yaml: the handlers file
#   DIR/handlers.yaml                    handlers for the certificate topics `main` and `www`:
#                                        each appends "NAME CERT" to DIR/handlers.log
#   DIR/hosts/NAME/                      the host's files, made by the playbook
# and prints the ansible-playbook command line to run.
set -euo pipefail

repo=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)

die() { printf 'inventory.sh: %s\n' "$*" >&2; exit 2; }
usage() { sed -n '7,50s/^# \{0,1\}//p' "${BASH_SOURCE[0]}" >&2; exit 2; }

(($# >= 2)) || usage
env_file=$1 dir=$2
shift 2
hosts=3 broken=false binary=$repo/target/release/fleetcert url='' package='' update='' metrics=false
while (($#)); do
    case $1 in
        --hosts) [[ ${2:-} =~ ^[1-9][0-9]*$ && $2 -le 199 ]] || die "--hosts wants 1..199"; hosts=$2; shift 2 ;;
        --broken) broken=true; shift ;;
        --binary) [[ -n ${2:-} ]] || die "--binary wants a path"; binary=$2; shift 2 ;;
        --url) [[ ${2:-} =~ ^https?:// ]] || die "--url wants an http(s) URL"; url=$2; shift 2 ;;
        --package) [[ -n ${2:-} ]] || die "--package wants a .deb"; package=$2; shift 2 ;;
        --update)
            [[ ${2:-} =~ ^((hmac-sha(256|384|512)):)?([A-Za-z0-9][A-Za-z0-9.-]*)=(.+)$ ]] ||
                die "--update wants [hmac-sha256|hmac-sha384|hmac-sha512:]KEY=SECRET_FILE"
            update=$2; shift 2 ;;
        --metrics) metrics=true; shift ;;
        *) usage ;;
    esac
done
[[ -z $package || -z $url ]] || die "--url goes with --binary, not with --package"

[[ -r $env_file ]] || die "$env_file: no sandbox.env (start the sandbox first: tests/sandbox/sandbox.sh start DIR)"
if [[ -n $package ]]; then
    [[ -f $package ]] || die "$package: no such package (packaging/build-deb.sh builds it)"
    package=$(readlink -f "$package")
else
    [[ -x $binary ]] || die "$binary: no fleetcert binary (cargo build --release)"
    binary=$(readlink -f "$binary")
fi
[[ ! -e $dir/inventory ]] || die "$dir/inventory exists already: use a new directory"

# sandbox.env: KEY=VALUE lines without quoting.
declare -A sb
while IFS= read -r line; do
    [[ $line == *=* ]] && sb[${line%%=*}]=${line#*=}
done <"$env_file"
for key in ACME_DIRECTORY CA_BUNDLE RESOLVER PRIMARY SECONDARY SIGNING_ZONE SIGNING_ZONE_FILE RNDC; do
    [[ -n ${sb[$key]:-} ]] || die "$env_file has no $key"
done

mkdir -p "$dir/inventory/host_vars" "$dir/hosts"
dir=$(cd "$dir" && pwd)
zone=${sb[SIGNING_ZONE]}
# The modules run under the system's Python, as on a real host; ansible-playbook's own
# (the venv's) where there is none.
if [[ -x /usr/bin/python3 ]]; then
    python=/usr/bin/python3
else
    python='{{ ansible_playbook_python }}'
fi

# The host-specific paths: everything of one host below DIR/hosts/NAME. With the package,
# the binary is the package's, shared by every "host" of this one machine.
host_paths() {
    local home=$dir/hosts/$1
    [[ -n $package ]] || echo "fleetcert_binary: $home/bin/fleetcert"
    ! $metrics || echo "fleetcert_metrics_textfile_dir: $home/textfiles"
    cat <<YAML
fleetcert_config_path: $home/etc/fleetcert.yaml
fleetcert_state_dir: $home/state
fleetcert_cert_dir: $home/certs
YAML
}

names=()
for ((n = 1; n <= hosts; n++)); do
    name=host$n.example.test
    names+=("$name")
    {
        echo "---"
        host_paths "$name"
        if [[ -n $url ]] && ((n == 1)); then
            echo "# Downloads its binary, checked against its SHA-256."
            echo "fleetcert_install_method: url"
            echo "fleetcert_install_url: $url"
            echo "fleetcert_install_sha256: \"$(sha256sum "$binary" | cut -d' ' -f1)\""
        fi
        echo "fleetcert_certs:"
        if ((n % 2)); then
            echo "  main: [host$n.example.test, www$n.example.test]"
        else
            echo "  main: [host$n.example.test]"
            echo "  www: [www$n.example.test]"
        fi
    } >"$dir/inventory/host_vars/$name.yaml"
done
if $broken; then
    names+=(broken.example.test)
    {
        echo "---"
        echo "# main: nocname.example.test has no _acme-challenge CNAME into $zone: refused before"
        echo "# ordering. www: ordered, but ns1 does not publish this host's records (see"
        echo "# fleetcert_publish_hosts there): validation fails."
        host_paths broken.example.test
        echo "fleetcert_certs:"
        echo "  main: [nocname.example.test]"
        echo "  www: [host199.example.test]"
    } >"$dir/inventory/host_vars/broken.example.test.yaml"
fi

if $broken && [[ -n $url ]]; then
    names+=(badsum.example.test)
    {
        echo "---"
        echo "# Its download does not match this checksum: it fails at install and gets no binary."
        host_paths badsum.example.test
        echo "fleetcert_install_method: url"
        echo "fleetcert_install_url: $url"
        echo "fleetcert_install_sha256: \"$(printf '0%.0s' {1..64})\""
        echo "fleetcert_certs:"
        echo "  main: [host198.example.test]"
    } >"$dir/inventory/host_vars/badsum.example.test.yaml"
fi

# The legacy host: everything happens on the bastion (here: localhost), in directories of
# its own there, and only the hiera file reaches the host.
legacy=legacy.example.test
bastion=$dir/hosts/bastion/legacy/$legacy
{
    echo "---"
    echo "# A legacy Puppet host: the bastion requests, finalizes and exports for it."
    echo "fleetcert_delegate_to: localhost"
    [[ -n $package ]] || echo "fleetcert_binary: $dir/hosts/bastion/bin/fleetcert"
    ! $metrics || echo "fleetcert_metrics_textfile_dir: $dir/hosts/bastion/textfiles"
    cat <<YAML
fleetcert_config_path: $bastion/fleetcert.yaml
fleetcert_state_dir: $bastion/state
fleetcert_cert_dir: $bastion/certs
fleetcert_hiera_export_path: $dir/hosts/bastion/hiera/$legacy.certs.yaml
fleetcert_hiera_data_dir: $dir/hosts/$legacy/hieradata
fleetcert_certs:
  main: [host200.example.test]
YAML
} >"$dir/inventory/host_vars/$legacy.yaml"

# The publishing host: the BIND primary with its zone file, or (--update) a bastion that
# changes the zone by dynamic update and never sees the zone file.
publish_hosts() {
    if $broken; then
        echo "# Leaves broken.example.test out: its orders cannot validate."
        echo "fleetcert_publish_hosts: \"{{ groups['all'] | reject('equalto', 'broken.example.test') | list }}\""
    fi
}
if [[ -z $update ]]; then
    primary=ns1.example.test
    {
        echo "---"
        echo "# The signing zone on the sandbox's BIND primary; both servers must serve each publish."
        [[ -n $package ]] || echo "fleetcert_binary: $dir/hosts/$primary/bin/fleetcert"
        ! $metrics || echo "fleetcert_metrics_textfile_dir: $dir/hosts/$primary/textfiles"
        cat <<YAML
fleetcert_zone_config_path: $dir/hosts/$primary/etc/zone.yaml
fleetcert_publish_tokens_path: $dir/hosts/$primary/publish/tokens.json
fleetcert_zone_name: $zone
fleetcert_zone_file: ${sb[SIGNING_ZONE_FILE]}
fleetcert_zone_soa:
  mname: ns1.$zone.
  rname: hostmaster.$zone.
# Outside the signing zone: the shipped template writes no glue.
fleetcert_zone_nameservers: [ns1.example.test., ns2.example.test.]
fleetcert_zone_reload: [${sb[RNDC]}, reload, $zone]
fleetcert_zone_servers: ["${sb[PRIMARY]}", "${sb[SECONDARY]}"]
fleetcert_zone_timeout: 30s
YAML
        publish_hosts
    } >"$dir/inventory/host_vars/$primary.yaml"
else
    primary=bastion.example.test
    key=${update%%=*} secret_src=${update#*=}
    algorithm=hmac-sha256
    if [[ $key == *:* ]]; then algorithm=${key%%:*} key=${key#*:}; fi
    [[ -r $secret_src ]] || die "$secret_src: no secret file to publish with"
    secret_src=$(readlink -f "$secret_src")
    home=$dir/hosts/$primary
    {
        echo "---"
        echo "# Publishes by dynamic update from the bastion: signed UPDATEs to the sandbox's BIND"
        echo "# primary, no zone file here; both servers must serve each publish."
        [[ -n $package ]] || echo "fleetcert_binary: $home/bin/fleetcert"
        ! $metrics || echo "fleetcert_metrics_textfile_dir: $home/textfiles"
        cat <<YAML
fleetcert_zone_config_path: $home/etc/zone.yaml
fleetcert_publish_tokens_path: $home/publish/tokens.json
fleetcert_zone_name: $zone
fleetcert_zone_update:
  server: "${sb[PRIMARY]}"
  key_name: $key
  algorithm: $algorithm
  secret_file: $home/etc/tsig.secret
  # On the controller: the publish role copies it to secret_file (mode 0600).
  secret_src: $secret_src
fleetcert_zone_state_dir: $home/publish
fleetcert_zone_servers: ["${sb[PRIMARY]}", "${sb[SECONDARY]}"]
fleetcert_zone_timeout: 30s
YAML
        publish_hosts
    } >"$dir/inventory/host_vars/$primary.yaml"
fi

{
    cat <<YAML
---
# A local fleet on the fleetcert test sandbox, written by tests/fleet/inventory.sh.
all:
  vars:
    ansible_connection: local
    ansible_python_interpreter: "$python"
    # No group of its own on the machine running the fleet (the DNS primary too: its zone
    # install makes the group it names).
    fleetcert_group: root
YAML
    if [[ -n $package ]]; then
        echo "    fleetcert_install_method: package"
        echo "    fleetcert_install_package_src: $package"
        # The local hosts share this machine's dpkg: one install at a time.
        echo "    fleetcert_install_package_throttle: 1"
    else
        echo "    fleetcert_install_method: copy"
        echo "    fleetcert_install_binary_src: $binary"
    fi
    cat <<YAML
  children:
    fleetcert:
      vars:
        fleetcert_acme_directory: ${sb[ACME_DIRECTORY]}
        fleetcert_acme_email: ops@example.test
        fleetcert_agree_tos: true
        fleetcert_ca_bundle: ${sb[CA_BUNDLE]}
        fleetcert_signing_zone: $zone
        fleetcert_resolver: "${sb[RESOLVER]}"
      hosts:
YAML
    for name in "${names[@]}"; do
        echo "        $name:"
    done
    cat <<YAML
      children:
        fleetcert_legacy:
          hosts:
            $legacy:
YAML
    cat <<YAML
    fleetcert_dns_primary:
      hosts:
        $primary:
YAML
} >"$dir/inventory/hosts.yaml"

# Handlers bound to the certificates: each appends "HOST CERT" to handlers.log (O_APPEND
# writes of one short line do not interleave, so the parallel forks share the file).
{
    echo "---"
    echo "# Handlers of the local fleet: a stand-in for reloading a web server."
    for cert in main www; do
        cat <<YAML
- name: Record the replaced $cert certificate
  ansible.builtin.shell:
    cmd: echo "{{ inventory_hostname }} $cert" >> $dir/handlers.log
  changed_when: true
  listen: fleetcert updated $cert
YAML
    done
} >"$dir/handlers.yaml"

printf -- '---\nfleetcert_handlers_file: %s\n' "$dir/handlers.yaml" >"$dir/extra-vars.yaml"

printf 'ansible-playbook -i %q -e @%q fleetcert.fleetcert.daily\n' "$dir/inventory" "$dir/extra-vars.yaml"
