# Copyright: fleetcert maintainers
# Apache License 2.0 (see https://www.apache.org/licenses/LICENSE-2.0)
"""Unit tests of plugins/filter/command.py."""

from __future__ import annotations

from ansible_collections.fleetcert.fleetcert.plugins.filter.command import MAX_LINE, FilterModule, error_line


def test_error_line_is_fleetcerts_last_error_line():
    result = {
        "rc": 4,
        "stderr": "2026-12-01T00:00:00Z  WARN retrying the CA\nfleetcert: error: the CA at https://ca.test/dir "
                  "did not answer: connection refused; check acme.directory\n",
    }
    assert error_line(result, "request") == (
        "fleetcert request exited 4: the CA at https://ca.test/dir did not answer: connection refused; "
        "check acme.directory"
    )


def test_error_line_for_publish_timeout_names_the_laggard():
    result = {"rc": 3, "stdout": "{}", "stderr": "fleetcert: error: zone acme.test serial 7 is published but not "
              "served everywhere after 30s: 127.0.0.1:5301 6; check NOTIFY"}
    assert error_line(result, "publish").startswith("fleetcert publish exited 3: zone acme.test serial 7")
    assert "127.0.0.1:5301 6" in error_line(result, "publish")


def test_error_line_without_the_prefix_takes_the_last_line_and_bounds_it():
    assert error_line({"rc": 101, "stderr": "thread main panicked\nnote: run with RUST_BACKTRACE\n"}, "finalize") == (
        "fleetcert finalize exited 101: note: run with RUST_BACKTRACE"
    )
    assert error_line({"rc": 2, "stderr": ""}, "hiera") == "fleetcert hiera exited 2: nothing on stderr"
    assert error_line({"rc": -1, "msg": "[Errno 2] No such file"}, "request").endswith("[Errno 2] No such file")
    hostile = error_line({"rc": 2, "stderr": "fleetcert: error: \x1b[31m" + "x" * 5000}, "request")
    assert "\x1b" not in hostile
    assert len(hostile) < MAX_LINE + 100


def test_the_filter_module_names_it():
    assert set(FilterModule().filters()) == {"error_line"}
