# Copyright: fleetcert maintainers
# Apache License 2.0 (see https://www.apache.org/licenses/LICENSE-2.0)
"""Filters that read what a ``fleetcert`` command left in a registered result.

The roles branch on the exit code alone (docs/exit-codes.md): a report is on stdout exactly
for 0 and 1 (request, finalize) or 0 and 3 (publish). Whatever fails, fleetcert prints one line
on stderr naming the thing and the fix; ``error_line`` is that line, for the task that fails
the host (tests/unit/plugins/filter/test_command.py).
"""

from __future__ import annotations

from ansible.errors import AnsibleFilterError

# Past this a line is not an error message any more but something else's output.
MAX_LINE = 2000
PREFIX = "fleetcert: error: "


def error_line(result, command):
    """``fleetcert COMMAND exited N: <the error line>``, from a registered command result.

    The line is the last one on stderr that starts with ``fleetcert: error:`` (log lines
    come before it), else the last non-empty one; bounded, and printable characters only.
    """
    if not isinstance(result, dict):
        raise AnsibleFilterError(f"error_line's input must be a registered command result, not {type(result).__name__}")
    lines = [line.strip() for line in str(result.get("stderr") or "").splitlines()]
    lines = [line for line in lines if line]
    errors = [line for line in lines if line.startswith(PREFIX)]
    if errors:
        line = errors[-1][len(PREFIX):]
    elif lines:
        line = lines[-1]
    else:
        line = str(result.get("msg") or "nothing on stderr")
    line = "".join(ch if ch.isprintable() else "?" for ch in line)
    if len(line) > MAX_LINE:
        line = line[:MAX_LINE] + "..."
    return f"fleetcert {command} exited {result.get('rc')}: {line}"


class FilterModule:
    """Filters for fleetcert's command results."""

    def filters(self):
        return {
            "error_line": error_line,
        }
