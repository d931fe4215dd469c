#!/usr/bin/python
# Copyright: fleetcert maintainers
# Apache License 2.0 (see https://www.apache.org/licenses/LICENSE-2.0)
"""One fleetcert command on the host, with its config written first, in one module process.

The daily playbook's unit of work (docs/ansible.md, "What a run costs"): instead of a stat, a
template, a command, a set_fact and a debug per phase, this module checks that the install is
still what the controller would install (a fingerprint), writes the config when it changed,
runs ``fleetcert request|finalize|publish`` and returns its report. Secrets stay out of the
result, the log and the diff: the config is a no_log parameter and its diff hides the values
of secret keys.
"""

from __future__ import annotations

DOCUMENTATION = r"""
---
module: run
short_description: Run one fleetcert command with its config, and return its report
description:
  - Checks that fleetcert is installed as the controller would install it (an install
    fingerprint recorded on the host); when it is not, returns RV(install_needed) and runs
    nothing, so that the caller installs it and calls the module again with O(installed).
  - Writes the config (O(config), mode 0600) when its content changed; in check mode it
    writes it to a temporary preview instead, which the command reads and which is removed.
  - Runs C(fleetcert COMMAND --config PATH) (C(--dry-run) in check mode) and returns the JSON
    report it prints. An exit code not in O(ok_codes) fails the task with fleetcert's own
    error line.
  - With O(check), runs the command with C(--check) (never in check mode), so that the same
    process says what C(fleetcert check) says after it, and returns that monitoring status
    and line. The daily run needs no task and no process of its own for it.
version_added: "0.9.0"
author: fleetcert maintainers (@fleetcert)
options:
  command:
    description:
      - The fleetcert subcommand to run; C(none) only writes the config and the install record.
    type: str
    required: true
    choices: [request, finalize, publish, none]
  binary:
    description: The fleetcert binary on the host.
    type: path
    required: true
  config_path:
    description: The config fleetcert reads (C(--config)); required unless O(command=none).
    type: path
  config:
    description:
      - The config's content. Written (mode 0600, owner root) when it differs from the file;
        omitted, the file is read as it is.
      - It may hold secrets (an EAB HMAC key), so it is never logged, and the diff shows the
        keys of secret values with the values hidden.
    type: str
  tokens:
    description:
      - For C(publish), the collected token documents (JSON), written to O(tokens_path)
        (or, in check mode, a temporary file) and passed with C(--tokens).
    type: str
  tokens_path:
    description: Where O(tokens) is kept on the host (mode 0600) for a look or a manual re-run.
    type: path
  files:
    description:
      - Files the config names, copied from the controller (the TSIG secret of dynamic
        update, the local CA's certificate and key), each written (owner root) when its
        content differs. Never logged, never in a diff.
      - In check mode a file that would change goes to the temporary preview, and the config
        read there names the preview instead.
    type: list
    elements: dict
    default: []
    suboptions:
      path:
        description: The file on the host.
        type: path
        required: true
      content:
        description: Its content.
        type: str
        required: true
      mode:
        description: Its mode.
        type: str
        default: '0600'
  group:
    description: A system group to create when it does not exist (the group that may read private keys).
    type: str
  fingerprint:
    description:
      - What the controller would install (the install method, the binary's source and
        checksum, the directories, the group, the CA files), as a string; compared with the
        record at O(record). Omitted, the install is not checked.
    type: str
  record:
    description: The install record on the host (JSON, mode 0600), written with O(installed).
    type: path
  paths:
    description: Directories that must exist for the install to count as done.
    type: list
    elements: path
    default: []
  directories:
    description:
      - Directories to make (with their parents) and whose owner, group and mode to set, before
        anything is written; reported as changes (in check mode, only reported).
      - Without O(installed), only when the install must be re-asserted (RV(install_needed)),
        for the directory the install method puts the binary in, made by the same module run
        that finds the install missing, so the method needs no task of its own for it.
    type: list
    elements: dict
    default: []
    suboptions:
      path:
        description: The directory.
        type: path
        required: true
      mode:
        description: Its mode, e.g. C('0750').
        type: str
        required: true
      owner:
        description: Its owner.
        type: str
        default: root
      group:
        description: Its group.
        type: str
        default: root
  installed:
    description:
      - The caller has just installed fleetcert; record O(fingerprint) and the binary as
        installed (not in check mode), then run the command.
    type: bool
    default: false
  check:
    description:
      - Run C(request) or C(finalize) with C(--check) (not in check mode), for C(fleetcert check)'s
        verdict after it (RV(check)).
    type: bool
    default: false
  ok_codes:
    description: Exit codes that come with a report on stdout (docs/exit-codes.md).
    type: list
    elements: int
    default: [0, 1]
  fail_codes:
    description:
      - Exit codes among O(ok_codes) that still fail the task, with fleetcert's error line and
        the report kept (publish's 3, a server that did not serve the zone in time).
    type: list
    elements: int
    default: []
  fact:
    description: Also set the report as this host fact (e.g. C(fleetcert_request_document)).
    type: str
attributes:
  check_mode:
    description: Can run in check_mode and return changed status prediction without modifying target.
    support: full
    details: The command runs with C(--dry-run) and reads a temporary preview of a config that would change.
  diff_mode:
    description: Will return details on what has changed (or possibly needs changing in check_mode), when in diff mode.
    support: full
    details: The diff of the config hides the values of secret keys.
"""

EXAMPLES = r"""
- name: Request the certificates that are due
  fleetcert.fleetcert.run:
    command: request
    binary: /usr/bin/fleetcert
    config_path: /etc/fleetcert/fleetcert.yaml
    config: "{{ fleetcert_config_vars | fleetcert.fleetcert.host_config }}"
    fingerprint: "{{ fleetcert_install_vars | fleetcert.fleetcert.install_fingerprint }}"
    record: /etc/fleetcert/.installed.json
    check: true
  register: request
"""

RETURN = r"""
install_needed:
  description: The install record does not match O(fingerprint), or the binary or a directory is missing; nothing ran.
  returned: always
  type: bool
ready:
  description: False only in check mode on a host where the binary is not installed yet; nothing ran.
  returned: always
  type: bool
config_changed:
  description: The config differed from O(config) (and was written, or previewed in check mode).
  returned: always
  type: bool
exit_code:
  description: fleetcert's exit code (also as C(rc) when the task fails; not as C(rc) otherwise, since 1 of request and finalize is no failure here).
  returned: when the command ran
  type: int
report:
  description: The JSON report fleetcert printed (the token document of request, finalize's or publish's report).
  returned: when the exit code is in O(ok_codes)
  type: dict
stderr:
  description: What fleetcert wrote on stderr.
  returned: when the command ran
  type: str
check:
  description:
    - C(fleetcert check)'s exit code (0 OK, 1 WARNING, 2 CRITICAL, 3 UNKNOWN) and its line, from the
      C(check) field of the command's report (C(--check)).
  returned: with O(check), outside check mode, when the command ran and printed a report
  type: dict
  sample: {rc: 0, line: "FLEETCERT OK - 1 certificate, 89 days left"}
"""

import grp
import json
import os
import re
import shutil
import tempfile

from ansible.module_utils.basic import AnsibleModule

# Past this a line is not an error message any more but something else's output.
MAX_LINE = 2000
PREFIX = "fleetcert: error: "
# Keys whose values are secrets in a fleetcert config (docs/host-config.md, docs/zone-config.md).
SECRET_KEY = re.compile(r"^(\s*(?:-\s+)?[\"']?(?:hmac_key|secret|password|key_data)[\"']?\s*:\s*)\S.*$")


def error_line(rc, stderr, command):
    """``fleetcert COMMAND exited N: <the error line>``: the last ``fleetcert: error:`` line of
    stderr (log lines come before it), else its last line; bounded, printable characters only.
    The filter fleetcert.fleetcert.error_line says the same for a registered command."""
    lines = [line.strip() for line in (stderr or "").splitlines() if line.strip()]
    errors = [line for line in lines if line.startswith(PREFIX)]
    line = errors[-1][len(PREFIX):] if errors else (lines[-1] if lines else "nothing on stderr")
    line = "".join(ch if ch.isprintable() else "?" for ch in line)
    if len(line) > MAX_LINE:
        line = line[:MAX_LINE] + "..."
    return "fleetcert %s exited %s: %s" % (command, rc, line)


def hidden(text):
    """The config with the values of secret keys replaced, for the diff."""
    return "\n".join(SECRET_KEY.sub(r"\1(hidden)", line) for line in text.splitlines()) + "\n"


def read_text(path):
    try:
        with open(path, "r", encoding="utf-8") as handle:
            return handle.read()
    except (OSError, UnicodeDecodeError):
        return None


def write_atomic(module, path, content, mode=0o600):
    """Writes ``content`` to ``path`` (mode 0600 unless told) by a temporary file in the same directory,
    renamed over it: a reader sees the old file or the new one, never a part."""
    directory = os.path.dirname(path) or "."
    fd, tmp = tempfile.mkstemp(prefix=".fleetcert.", dir=directory)
    try:
        os.fchmod(fd, mode)
        with os.fdopen(fd, "w", encoding="utf-8") as handle:
            handle.write(content)
        os.replace(tmp, path)
    except OSError as err:
        if os.path.exists(tmp):
            os.unlink(tmp)
        module.fail_json(msg="cannot write %s: %s" % (path, err))


def binary_id(path):
    """What identifies the installed binary without reading it: size, mtime, inode."""
    try:
        st = os.stat(path)
    except OSError:
        return None
    if not os.access(path, os.X_OK):
        return None
    return [st.st_size, st.st_mtime_ns, st.st_ino]


def install_needed(params):
    """Why the install must be re-asserted, or None."""
    if binary_id(params["binary"]) is None:
        return "%s is not installed" % params["binary"]
    missing = [p for p in params["paths"] if not os.path.isdir(p)]
    if missing:
        return "%s is missing" % missing[0]
    if params["fingerprint"] is None:
        return None
    try:
        record = json.loads(read_text(params["record"]) or "null")
    except ValueError:
        record = None
    if not isinstance(record, dict):
        return "no install record at %s" % params["record"]
    if record.get("fingerprint") != params["fingerprint"]:
        return "the install's inputs changed"
    if record.get("binary") != binary_id(params["binary"]):
        return "%s changed since it was installed" % params["binary"]
    return None


def make_group(module, name):
    """Creates the system group ``name`` when it does not exist; True when it did not."""
    try:
        grp.getgrnam(name)
        return False
    except KeyError:
        pass
    if not module.check_mode:
        groupadd = module.get_bin_path("groupadd", required=True)
        rc, _out, err = module.run_command([groupadd, "--system", name])
        if rc != 0:
            module.fail_json(msg="groupadd --system %s failed: %s" % (name, err.strip()))
    return True


def make_directory(module, directory):
    """Makes one directory (and its parents) with its owner, group and mode; True when
    something changed (or, in check mode, would)."""
    path = directory["path"]
    changed = False
    if not os.path.isdir(path):
        if module.check_mode:
            return True
        try:
            os.makedirs(path)
        except OSError as err:
            module.fail_json(msg="cannot make the directory %s: %s" % (path, err))
        changed = True
    file_args = module.load_file_common_arguments(
        dict(path=path, mode=directory["mode"], owner=directory["owner"], group=directory["group"])
    )
    return module.set_fs_attributes_if_different(file_args, changed)


def main():
    module = AnsibleModule(
        argument_spec=dict(
            command=dict(type="str", required=True, choices=["request", "finalize", "publish", "none"]),
            binary=dict(type="path", required=True),
            config_path=dict(type="path"),
            config=dict(type="str", no_log=True),
            # Token documents hold public TXT values, no secret.
            tokens=dict(type="str", no_log=False),
            tokens_path=dict(type="path"),
            files=dict(
                type="list",
                elements="dict",
                default=[],
                no_log=True,
                options=dict(
                    path=dict(type="path", required=True),
                    content=dict(type="str", required=True, no_log=True),
                    mode=dict(type="str", default="0600"),
                ),
            ),
            group=dict(type="str"),
            fingerprint=dict(type="str"),
            record=dict(type="path"),
            paths=dict(type="list", elements="path", default=[]),
            directories=dict(
                type="list",
                elements="dict",
                default=[],
                options=dict(
                    path=dict(type="path", required=True),
                    mode=dict(type="str", required=True),
                    owner=dict(type="str", default="root"),
                    group=dict(type="str", default="root"),
                ),
            ),
            installed=dict(type="bool", default=False),
            check=dict(type="bool", default=False),
            ok_codes=dict(type="list", elements="int", default=[0, 1]),
            fail_codes=dict(type="list", elements="int", default=[]),
            fact=dict(type="str"),
        ),
        required_by=dict(fingerprint=["record"], tokens=["tokens_path"]),
        required_if=[("command", c, ["config_path"]) for c in ("request", "finalize", "publish")],
        supports_check_mode=True,
    )
    params = module.params
    command = params["command"]
    result = dict(changed=False, install_needed=False, ready=True, config_changed=False)

    if not params["installed"]:
        why = install_needed(params)
        if why:
            for directory in params["directories"]:
                result["changed"] = make_directory(module, directory) or result["changed"]
            result.update(install_needed=True, msg="install to re-assert: " + why)
            module.exit_json(**result)
    elif binary_id(params["binary"]) is None:
        # Only in check mode: the install tasks said they would install it.
        result.update(
            ready=False,
            msg="fleetcert is not installed yet (%s): a real run would install it first" % params["binary"],
        )
        module.exit_json(**result)

    if params["group"]:
        result["changed"] = make_group(module, params["group"]) or result["changed"]
    for directory in params["directories"] if params["installed"] else []:
        result["changed"] = make_directory(module, directory) or result["changed"]

    scratch = tempfile.mkdtemp(prefix="fleetcert-run.") if module.check_mode else None
    try:
        config_path = params["config_path"]
        config = params["config"]
        previewed = False
        for item in params["files"]:
            if read_text(item["path"]) == item["content"]:
                continue
            result["changed"] = True
            if not module.check_mode:
                write_atomic(module, item["path"], item["content"], int(item["mode"], 8))
            elif config is not None:
                # The config this run would write names the preview; the real one is unchanged.
                preview = os.path.join(scratch, "file%d" % len(os.listdir(scratch)))
                write_atomic(module, preview, item["content"], int(item["mode"], 8))
                config = config.replace(item["path"], preview)
                previewed = True
        if previewed:
            config_path = os.path.join(scratch, "config.yaml")
            write_atomic(module, config_path, config)
        if config is not None and config_path == params["config_path"]:
            before = read_text(config_path)
            if before != config:
                result.update(changed=True, config_changed=True)
                if module._diff:
                    result["diff"] = dict(
                        before_header=config_path,
                        after_header=config_path,
                        before=hidden(before or ""),
                        after=hidden(config),
                    )
                if module.check_mode:
                    config_path = os.path.join(scratch, "config.yaml")
                write_atomic(module, config_path, config)
        if params["installed"] and params["fingerprint"] is not None and not module.check_mode:
            record = dict(fingerprint=params["fingerprint"], binary=binary_id(params["binary"]))
            write_atomic(module, params["record"], json.dumps(record) + "\n")
        if command == "none":
            module.exit_json(**result)

        argv = [params["binary"], command, "--config", config_path]
        if params["tokens"] is not None:
            tokens_path = os.path.join(scratch, "tokens.json") if module.check_mode else params["tokens_path"]
            # Scratch input, not a change of the system: the zone is what publish reports on.
            write_atomic(module, tokens_path, params["tokens"])
            argv += ["--tokens", tokens_path]
        if module.check_mode:
            argv.append("--dry-run")
        elif params["check"] and command in ("request", "finalize"):
            # check's verdict from the same process (docs/reports.md, `check`).
            argv.append("--check")
        rc, out, err = module.run_command(argv)
        # Not `rc`: Ansible fails any result whose rc is not 0, and 1 (request, finalize) or
        # 3 (publish) may still be a success here.
        result.update(exit_code=rc, stderr=err)
        if rc not in params["ok_codes"]:
            module.fail_json(msg=error_line(rc, err, command), rc=rc, **result)
        try:
            report = json.loads(out)
        except ValueError:
            module.fail_json(msg="fleetcert %s exited %s without a JSON report on stdout" % (command, rc), rc=rc, **result)
        result["report"] = report
        result["changed"] = result["changed"] or bool(report.get("changed"))
        if params["fact"]:
            result["ansible_facts"] = {params["fact"]: report}
        if rc in params["fail_codes"]:
            module.fail_json(msg=error_line(rc, err, command), rc=rc, **result)
        verdict = report.get("check")
        if isinstance(verdict, dict):
            result["check"] = dict(rc=verdict.get("code"), line=verdict.get("line"))
    finally:
        if scratch:
            shutil.rmtree(scratch, ignore_errors=True)
    module.exit_json(**result)


if __name__ == "__main__":
    main()
