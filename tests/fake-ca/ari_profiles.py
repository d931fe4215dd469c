#!/usr/bin/env python3
"""A small HTTPS front of Debian's Pebble 2.4 that adds what Pebble lacks: ARI and profiles.

Every request is passed to the real Pebble with the front's own Host header, so Pebble
writes the front's address into every URL it hands out (directory, orders, authorizations,
challenges, certificates): the client talks only to the front, and accounts, orders,
validation and issuance stay Pebble's. On the way through, the front

  * adds `renewalInfo` and `meta.profiles` to the directory, and answers
    `GET <renewalInfo>/<certificate id>` (RFC 9773) with the window the test set;
  * reads each newOrder's payload (the JWS is passed on untouched: Pebble checks it) and
    logs it; echoes its `replaces` in the order, as RFC 9773 section 5 says a CA must;
  * answers newOrder itself with a `rateLimited` problem when the test asks for one;
  * reports the authorizations of orders the test names as expired.

The test steers it with files in DIR, read on every request:

    DIR/windows.json  {"<certificate id>" | "*": {"start": RFC 3339, "end": RFC 3339}}
                      a certificate without an entry gets 404 (the CA does not know it)
    DIR/rate-limit    {"detail": "...", "retry_after": "<Retry-After value>" | null}:
                      every newOrder gets 429 rateLimited, with that header when not null
    DIR/already-replaced  (any content) a newOrder whose `replaces` an earlier order
                      already carried gets 409 alreadyReplaced, as RFC 9773 section 5 has a
                      CA answer while that order is not invalid (the front does not track
                      which turned invalid: every earlier one counts)
    DIR/fault.json    {"names": [...], "status": 503 | 429}: a newOrder for any of these
                      names gets 503 `serverInternal` or 429 `rateLimited` (the CA cannot
                      issue that certificate); others pass
    DIR/expired.json  {"<order URL>": "past" | "expired"}: that order's pending
                      authorizations are shown with `expires` an hour ago, still pending
                      (as Pebble shows an authorization it let expire), or as `expired`

and reads what happened from

    DIR/requests      one line per request: "METHOD PATH"
    DIR/orders.jsonl  one JSON line per newOrder: {"identifiers", "replaces", "profile",
                      "answer": "created" | "rateLimited" | "alreadyReplaced" | "fault"
                                | "<status> <Pebble's problem type>"}

Usage: ari_profiles.py --upstream URL --cafile CA --cert PEM --key PEM --dir DIR
                       [--profiles classic,shortlived]
Prints the port it listens on (127.0.0.1, chosen by the kernel) as its first stdout line.
"""

import argparse
import base64
import datetime
import http.client
import http.server
import json
import pathlib
import ssl
import sys
import threading
import urllib.parse

# Pebble 2.4's newOrder path (wfe.go: newOrderPath); its directory names it, but the front
# must know it before the directory was ever fetched.
NEW_ORDER = "/order-plz"
RATE_LIMITED = "urn:ietf:params:acme:error:rateLimited"
SERVER_INTERNAL = "urn:ietf:params:acme:error:serverInternal"
ALREADY_REPLACED = "urn:ietf:params:acme:error:alreadyReplaced"
# Headers that belong to one hop, never passed on (Host is set anew, exactly once).
HOP_HEADERS = {"connection", "keep-alive", "transfer-encoding", "content-length", "host"}


def stamp(moment: datetime.datetime) -> str:
    return moment.replace(microsecond=0).isoformat().replace("+00:00", "Z")


def now() -> datetime.datetime:
    return datetime.datetime.now(datetime.timezone.utc)


def read_json(path: pathlib.Path):
    try:
        return json.loads(path.read_text())
    except FileNotFoundError:
        return None


def jws_payload(body: bytes) -> dict:
    """The payload of a flattened JWS, unverified (Pebble verifies it)."""
    payload = json.loads(body)["payload"]
    payload += "=" * (-len(payload) % 4)
    return json.loads(base64.urlsafe_b64decode(payload) or b"{}")


class State:
    """What the front learned from Pebble's answers: which order replaces what, and which
    authorizations belong to which order (by URL path)."""

    def __init__(self, state_dir: pathlib.Path):
        self.dir = state_dir
        self.lock = threading.Lock()
        self.replaces = {}  # order path -> certificate id
        self.order_of = {}  # authorization path -> order path

    def log(self, name: str, line: str):
        with self.lock, open(self.dir / name, "a") as log:
            log.write(line + "\n")

    def learn_order(self, order_path: str, order: dict):
        with self.lock:
            for url in order.get("authorizations", []):
                self.order_of[urllib.parse.urlsplit(url).path] = order_path

    def expiry_mode(self, authz_path: str):
        marked = read_json(self.dir / "expired.json") or {}
        with self.lock:
            order_path = self.order_of.get(authz_path)
        for url, mode in marked.items():
            if urllib.parse.urlsplit(url).path == order_path:
                return mode
        return None


def make_handler(args, upstream_ctx: ssl.SSLContext, state: State):
    upstream = urllib.parse.urlsplit(args.upstream)
    profiles = [p for p in args.profiles.split(",") if p]

    class Handler(http.server.BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def log_message(self, fmt, *a):  # keep the test's stderr clean
            pass

        def do_GET(self):
            self.serve()

        def do_HEAD(self):
            self.serve()

        def do_POST(self):
            self.serve()

        def serve(self):
            length = int(self.headers.get("Content-Length") or 0)
            body = self.rfile.read(length) if length else b""
            state.log("requests", f"{self.command} {self.path}")
            path = urllib.parse.urlsplit(self.path).path
            if self.command == "GET" and path.startswith("/renewal-info/"):
                self.renewal_info(path.removeprefix("/renewal-info/"))
            elif self.command == "POST" and path == NEW_ORDER:
                self.new_order(body)
            else:
                status, headers, data = self.forward(body)
                data = self.rewrite(path, status, data)
                self.reply(status, headers, data)

        def forward(self, body: bytes):
            """Passes the request to Pebble as if Pebble were at the front's address."""
            conn = http.client.HTTPSConnection(
                upstream.hostname, upstream.port, context=upstream_ctx, timeout=30
            )
            headers = {
                key: value
                for key, value in self.headers.items()
                if key.lower() not in HOP_HEADERS
            }
            headers["Host"] = self.headers["Host"]
            try:
                conn.request(self.command, self.path, body=body or None, headers=headers)
                rsp = conn.getresponse()
                data = rsp.read()
                kept = [(k, v) for k, v in rsp.getheaders() if k.lower() not in HOP_HEADERS]
                return rsp.status, kept, data
            finally:
                conn.close()

        def rewrite(self, path: str, status: int, data: bytes) -> bytes:
            if status >= 300 or not data:
                return data
            if path == "/dir":
                directory = json.loads(data)
                directory["renewalInfo"] = f"https://{self.headers['Host']}/renewal-info"
                if profiles:
                    meta = directory.setdefault("meta", {})
                    meta["profiles"] = {p: f"the {p} profile" for p in profiles}
                return json.dumps(directory).encode()
            if path.startswith("/my-order/"):
                order = json.loads(data)
                state.learn_order(path, order)
                with state.lock:
                    replaces = state.replaces.get(path)
                if replaces:
                    order["replaces"] = replaces
                return json.dumps(order).encode()
            if path.startswith("/authZ/"):
                mode = state.expiry_mode(path)
                authz = json.loads(data)
                if mode and authz.get("status") == "pending":
                    authz["expires"] = stamp(now() - datetime.timedelta(hours=1))
                    if mode == "expired":
                        authz["status"] = "expired"
                    return json.dumps(authz).encode()
            return data

        def new_order(self, body: bytes):
            payload = jws_payload(body)
            entry = {
                "identifiers": [i.get("value") for i in payload.get("identifiers", [])],
                "replaces": payload.get("replaces"),
                "profile": payload.get("profile"),
            }
            fault = read_json(state.dir / "fault.json")
            if fault is not None and set(entry["identifiers"]) & set(fault["names"]):
                entry["answer"] = "fault"
                state.log("orders.jsonl", json.dumps(entry))
                status = int(fault["status"])
                kind = RATE_LIMITED if status == 429 else SERVER_INTERNAL
                problem = {"type": kind, "detail": "fault injected by the test", "status": status}
                extra = [("Replay-Nonce", self.fresh_nonce())]
                if status == 429:
                    extra.append(("Retry-After", "3600"))
                self.reply(status, extra, json.dumps(problem).encode(), "application/problem+json")
                return
            limit = read_json(state.dir / "rate-limit")
            if limit is not None:
                entry["answer"] = "rateLimited"
                state.log("orders.jsonl", json.dumps(entry))
                extra = [("Replay-Nonce", self.fresh_nonce())]
                if limit.get("retry_after") is not None:
                    extra.append(("Retry-After", str(limit["retry_after"])))
                problem = {"type": RATE_LIMITED, "detail": limit["detail"], "status": 429}
                self.reply(429, extra, json.dumps(problem).encode(), "application/problem+json")
                return
            if entry["replaces"] and (state.dir / "already-replaced").exists():
                with state.lock:
                    claimed = entry["replaces"] in state.replaces.values()
                if claimed:
                    entry["answer"] = "alreadyReplaced"
                    state.log("orders.jsonl", json.dumps(entry))
                    detail = f"certificate {entry['replaces']} already has a replacement order"
                    problem = {"type": ALREADY_REPLACED, "detail": detail, "status": 409}
                    self.reply(409, [("Replay-Nonce", self.fresh_nonce())],
                               json.dumps(problem).encode(), "application/problem+json")
                    return
            status, headers, data = self.forward(body)
            if status == 201:
                order = json.loads(data)
                location = dict((k.lower(), v) for k, v in headers).get("location", "")
                order_path = urllib.parse.urlsplit(location).path
                state.learn_order(order_path, order)
                if entry["replaces"]:
                    with state.lock:
                        state.replaces[order_path] = entry["replaces"]
                    order["replaces"] = entry["replaces"]
                data = json.dumps(order).encode()
                entry["answer"] = "created"
            else:
                try:
                    problem = json.loads(data).get("type")
                except ValueError:
                    problem = None
                entry["answer"] = f"{status} {problem}"
            state.log("orders.jsonl", json.dumps(entry))
            self.reply(status, headers, data)

        def fresh_nonce(self) -> str:
            conn = http.client.HTTPSConnection(
                upstream.hostname, upstream.port, context=upstream_ctx, timeout=30
            )
            try:
                conn.request("HEAD", "/nonce-plz", headers={"Host": self.headers["Host"]})
                return conn.getresponse().getheader("Replay-Nonce", "")
            finally:
                conn.close()

        def renewal_info(self, cert_id: str):
            windows = read_json(state.dir / "windows.json") or {}
            window = windows.get(cert_id) or windows.get("*")
            if window is None:
                problem = {"type": "urn:ietf:params:acme:error:malformed",
                           "detail": "no such certificate", "status": 404}
                self.reply(404, [("Retry-After", "21600")], json.dumps(problem).encode(),
                           "application/problem+json")
                return
            body = {"suggestedWindow": {"start": window["start"], "end": window["end"]}}
            self.reply(200, [("Retry-After", "21600")], json.dumps(body).encode())

        def reply(self, code: int, headers, data: bytes, content_type=None):
            self.send_response(code)
            for key, value in headers:
                self.send_header(key, value)
            if content_type:
                self.send_header("Content-Type", content_type)
            elif not any(k.lower() == "content-type" for k, _ in headers):
                self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            if self.command != "HEAD":
                self.wfile.write(data)

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
    state = State(pathlib.Path(args.dir))
    server = http.server.ThreadingHTTPServer(
        ("127.0.0.1", 0), make_handler(args, upstream_ctx, state)
    )
    server.daemon_threads = True
    tls = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    tls.load_cert_chain(args.cert, args.key)
    server.socket = tls.wrap_socket(server.socket, server_side=True)
    print(server.server_address[1], flush=True)
    server.serve_forever()
    return 0


if __name__ == "__main__":
    sys.exit(main())
