#!/usr/bin/env python3
"""A small HTTPS fake of the two ACME endpoints Debian's Pebble 2.4 lacks: ARI and profiles.

It serves a directory that is Pebble's own (every other URL still points at the real Pebble,
so accounts, orders and challenges are Pebble's) plus `renewalInfo` and `meta.profiles`,
and it answers `GET <renewalInfo>/<certificate id>` (RFC 9773) with a suggested window that
the test chooses by writing a file:

    DIR/window     "past" (the window opened an hour ago) or "future" (in 30 days);
                   read on every request, so a test can flip it between runs
    DIR/requests   one line per request: "METHOD PATH"; the test reads what was asked

Usage: ari_profiles.py --upstream URL --cafile CA --cert PEM --key PEM --dir DIR
                       [--profiles classic,shortlived]
Prints the port it listens on (127.0.0.1, chosen by the kernel) as its first stdout line.
"""

import argparse
import datetime
import http.server
import json
import pathlib
import ssl
import sys
import urllib.request


def window(state_dir: pathlib.Path) -> dict:
    now = datetime.datetime.now(datetime.timezone.utc).replace(microsecond=0)
    try:
        which = (state_dir / "window").read_text().strip()
    except FileNotFoundError:
        which = "future"
    if which == "past":
        start, end = now - datetime.timedelta(hours=1), now + datetime.timedelta(days=1)
    else:
        start, end = now + datetime.timedelta(days=30), now + datetime.timedelta(days=31)
    stamp = lambda t: t.isoformat().replace("+00:00", "Z")
    return {"suggestedWindow": {"start": stamp(start), "end": stamp(end)}}


def make_handler(args, upstream_ctx: ssl.SSLContext):
    state_dir = pathlib.Path(args.dir)
    profiles = [p for p in args.profiles.split(",") if p]

    class Handler(http.server.BaseHTTPRequestHandler):
        def log_message(self, fmt, *a):  # keep the test's stderr clean
            pass

        def record(self):
            with open(state_dir / "requests", "a") as log:
                log.write(f"{self.command} {self.path}\n")

        def reply(self, code: int, body: dict, extra=()):
            data = json.dumps(body).encode()
            self.send_response(code)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(data)))
            for key, value in extra:
                self.send_header(key, value)
            self.end_headers()
            self.wfile.write(data)

        def do_GET(self):
            self.record()
            port = self.server.server_address[1]
            if self.path == "/dir":
                with urllib.request.urlopen(args.upstream, context=upstream_ctx) as rsp:
                    directory = json.load(rsp)
                directory["renewalInfo"] = f"https://127.0.0.1:{port}/renewal-info"
                meta = directory.setdefault("meta", {})
                if profiles:
                    meta["profiles"] = {p: f"the {p} profile" for p in profiles}
                self.reply(200, directory)
            elif self.path.startswith("/renewal-info/"):
                self.reply(200, window(state_dir), [("Retry-After", "21600")])
            else:
                self.reply(404, {"type": "urn:ietf:params:acme:error:malformed"})

    return Handler


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--upstream", required=True)
    parser.add_argument("--cafile", required=True)
    parser.add_argument("--cert", required=True)
    parser.add_argument("--key", required=True)
    parser.add_argument("--dir", required=True)
    parser.add_argument("--profiles", default="")
    args = parser.parse_args()

    upstream_ctx = ssl.create_default_context(cafile=args.cafile)
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), make_handler(args, upstream_ctx))
    tls = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    tls.load_cert_chain(args.cert, args.key)
    server.socket = tls.wrap_socket(server.socket, server_side=True)
    print(server.server_address[1], flush=True)
    server.serve_forever()
    return 0


if __name__ == "__main__":
    sys.exit(main())
