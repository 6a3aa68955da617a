"""A fault-injecting HTTP proxy on the loopback, in front of an OpenAI-compatible server (issue #43's chaos test).

    python benchmarks/fault_proxy.py --upstream http://127.0.0.1:8000 --port 0 --share 0.3 --seed 0 \
        --stall 8 --stats stats.json [--max-requests 5000] [--max-seconds 1800]

A fixed share of the distinct POST requests (chosen by a seeded hash of the request body, so a clean run and a
faulted run fault the same requests) get one fault on their first attempt, in turn: the connection dropped without
an answer, HTTP 429, 500 or 503, a stall past the client's timeout (`--stall` seconds, then dropped), or the upstream
answer cut in half (full Content-Length, half the body, then closed). Retries of a faulted request pass through, so a
client that retries scores every sample; GET (the model list) always passes. The counts go to `--stats` (JSON) on
every request and at exit. Bounded: it exits after `--max-requests` requests or `--max-seconds`; it binds 127.0.0.1
and forwards only to a loopback upstream. Prints "port N" on its first line when ready.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import socket
import sys
import threading
import time
import urllib.error
import urllib.parse
import urllib.request
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

FAULTS = ("drop", "429", "500", "503", "stall", "cut")


class State:
    def __init__(self, args: argparse.Namespace):
        self.args, self.lock = args, threading.Lock()
        self.seen: dict[str, int] = {}  # request digest -> attempts
        self.stats = {"requests": 0, "faulted": 0, "passed": 0, **{f: 0 for f in FAULTS}}

    def fault_for(self, body: bytes) -> str | None:
        """The fault this attempt gets: the first attempt of a chosen request, its kind by the same hash."""
        digest = hashlib.sha256(f"{self.args.seed}:".encode() + body).digest()
        key = digest.hex()
        with self.lock:
            attempt = self.seen.get(key, 0)
            self.seen[key] = attempt + 1
            self.stats["requests"] += 1
            chosen = int.from_bytes(digest[:8], "big") / 2**64 < self.args.share
            kind = FAULTS[digest[8] % len(FAULTS)] if chosen and attempt == 0 else None
            self.stats["faulted" if kind else "passed"] += 1
            if kind:
                self.stats[kind] += 1
        return kind

    def save(self) -> None:
        if self.args.stats:
            with self.lock:
                text = json.dumps(self.stats, indent=2)
            tmp = self.args.stats + ".tmp"
            with open(tmp, "w") as f:
                f.write(text)
            os.replace(tmp, self.args.stats)


def make_handler(state: State) -> type[BaseHTTPRequestHandler]:
    upstream = state.args.upstream.rstrip("/")

    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def log_message(self, *args: object) -> None:  # quiet: the stats file is the record
            pass

        def _forward(self, body: bytes | None) -> tuple[int, bytes, str]:
            req = urllib.request.Request(upstream + self.path, data=body, method=self.command,
                                         headers={k: v for k, v in self.headers.items()
                                                  if k.lower() in ("content-type", "authorization")})
            try:
                with urllib.request.urlopen(req, timeout=600) as res:
                    return res.status, res.read(), res.headers.get("Content-Type", "application/json")
            except urllib.error.HTTPError as err:
                return err.code, err.read(), err.headers.get("Content-Type", "application/json")

        def _send(self, status: int, data: bytes, ctype: str, cut: bool = False) -> None:
            self.send_response(status)
            self.send_header("Content-Type", ctype)
            self.send_header("Content-Length", str(len(data)))
            if cut:
                self.send_header("Connection", "close")
            self.end_headers()
            self.wfile.write(data[: len(data) // 2] if cut else data)
            self.wfile.flush()
            if cut:
                self.close_connection = True

        def _drop(self) -> None:
            self.close_connection = True
            try:
                self.connection.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass

        def do_GET(self) -> None:  # noqa: N802 (http.server's naming)
            self._send(*self._forward(None))

        def do_POST(self) -> None:  # noqa: N802
            body = self.rfile.read(int(self.headers.get("Content-Length", 0)))
            kind = state.fault_for(body)
            try:
                if kind == "drop":
                    self._drop()
                elif kind in ("429", "500", "503"):
                    self._send(int(kind), json.dumps({"error": f"injected {kind}"}).encode(), "application/json")
                elif kind == "stall":
                    time.sleep(state.args.stall)
                    self._drop()
                else:
                    self._send(*self._forward(body), cut=kind == "cut")
            finally:
                state.save()

    return Handler


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--upstream", required=True, help="the server's base URL (loopback only), e.g. http://127.0.0.1:8000")
    p.add_argument("--port", type=int, default=0, help="port on 127.0.0.1 (0: a free one, printed)")
    p.add_argument("--share", type=float, default=0.3, help="share of distinct requests that get one fault")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--stall", type=float, default=8.0, help="seconds a stalled request hangs before it is dropped")
    p.add_argument("--stats", default=None, help="where the counts go (JSON)")
    p.add_argument("--max-requests", type=int, default=5000)
    p.add_argument("--max-seconds", type=float, default=1800.0)
    args = p.parse_args(argv)
    host = urllib.parse.urlparse(args.upstream).hostname
    if host not in ("127.0.0.1", "localhost", "::1"):
        print(f"fault_proxy: --upstream must be on the loopback, got {host!r}", file=sys.stderr)
        return 2
    state = State(args)
    server = ThreadingHTTPServer(("127.0.0.1", args.port), make_handler(state))
    server.daemon_threads = True
    state.save()
    print(f"port {server.server_address[1]}", flush=True)
    t0 = time.monotonic()
    server.timeout = 0.5
    while state.stats["requests"] < args.max_requests and time.monotonic() - t0 < args.max_seconds:
        server.handle_request()
    state.save()
    return 0


if __name__ == "__main__":
    sys.exit(main())
