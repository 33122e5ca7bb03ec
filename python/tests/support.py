"""Real things for the tests: a recording upstream on 127.0.0.1:0 and the
real signet-proxy binary in front of it."""

from __future__ import annotations

import json
import os
import subprocess
import threading
import time
import urllib.error
import urllib.request
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import IO

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey

from signet import parse_proof
from signet._canonical import b64url, binding_message, body_digest, canonical_request

REPO = Path(__file__).resolve().parents[2]
PROXY_BIN = Path(os.environ.get("SIGNET_PROXY_BIN", REPO / "target" / "debug" / "signet-proxy"))
SHARED_TOKEN = "ghs_shared_token_held_only_by_the_proxy"


@dataclass(frozen=True)
class Recorded:
    """One request as the upstream received it."""

    method: str
    target: str
    headers: list[tuple[str, str]]
    body: bytes

    def header(self, name: str) -> str | None:
        values = self.all(name)
        assert len(values) <= 1, f"{name} given {len(values)} times"
        return values[0] if values else None

    def all(self, name: str) -> list[str]:
        return [v for k, v in self.headers if k.lower() == name.lower()]


class RecordingUpstream:
    """A GitHub API stand-in that records every request and answers 200."""

    def __init__(self) -> None:
        self.received: list[Recorded] = []
        self._lock = threading.Lock()
        self._server = ThreadingHTTPServer(("127.0.0.1", 0), self._handler())
        self._server.daemon_threads = True
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True)
        self._thread.start()

    @property
    def url(self) -> str:
        host, port = self._server.server_address[:2]
        return f"http://{host!s}:{port}"

    def clear(self) -> None:
        with self._lock:
            self.received.clear()

    def last(self) -> Recorded:
        with self._lock:
            assert self.received, "the upstream received nothing"
            return self.received[-1]

    def count(self) -> int:
        with self._lock:
            return len(self.received)

    def close(self) -> None:
        self._server.shutdown()
        self._server.server_close()

    def _record(self, request: Recorded) -> None:
        with self._lock:
            self.received.append(request)

    def _handler(self) -> type:
        upstream = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def handle_one_request(self) -> None:
                # Every method takes the same path: record, then answer 200.
                self.raw_requestline = self.rfile.readline(65537)
                if not self.raw_requestline or not self.parse_request():
                    self.close_connection = True
                    return
                upstream._record(
                    Recorded(self.command, self.path, list(self.headers.items()), self._body())
                )
                reply = json.dumps({"ok": True}).encode()
                self.send_response(200)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(reply)))
                self.end_headers()
                if self.command != "HEAD":
                    self.wfile.write(reply)
                self.wfile.flush()

            def _body(self) -> bytes:
                if "chunked" in self.headers.get("Transfer-Encoding", "").lower():
                    chunks: list[bytes] = []
                    while True:
                        size = int(self.rfile.readline().split(b";")[0], 16)
                        chunk = self.rfile.read(size + 2)[:size]
                        if size == 0:
                            self.rfile.readline()
                            return b"".join(chunks)
                        chunks.append(chunk)
                return self.rfile.read(int(self.headers.get("Content-Length", "0")))

            def log_message(self, format: str, *args: object) -> None:
                pass

        return Handler


class Proxy:
    """The real signet-proxy binary on a free loopback port, trusting one
    master key and holding one shared token; stopped by `stop`."""

    def __init__(self, master_hex: str, upstream_url: str, token: str) -> None:
        if not PROXY_BIN.is_file():
            raise RuntimeError(
                f"{PROXY_BIN} not found: run `cargo build --bin signet-proxy` "
                "or set SIGNET_PROXY_BIN"
            )
        env = {k: v for k, v in os.environ.items() if not k.startswith(("SIGNET_", "GITHUB_"))}
        env["GITHUB_TOKEN"] = token
        self.log: list[str] = []
        self._addr: str | None = None
        self._listening = threading.Event()
        self._process = subprocess.Popen(
            [
                str(PROXY_BIN),
                "--listen",
                "127.0.0.1",
                "--port",
                "0",
                "--github-api",
                upstream_url,
                "--master-key",
                master_hex,
            ],
            env=env,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
        )
        assert self._process.stdout is not None
        # Drain the log for the proxy's whole life: a full pipe would stall it.
        threading.Thread(target=self._read_log, args=(self._process.stdout,), daemon=True).start()
        try:
            self.url = f"http://{self._wait_for_address()}"
            self._wait_until_healthy()
        except BaseException:
            self.stop()
            raise

    def _read_log(self, stream: IO[bytes]) -> None:
        for raw in stream:
            line = raw.decode("utf-8", "replace").rstrip("\n")
            self.log.append(line)
            try:
                record = json.loads(line)
            except ValueError:
                continue
            if record.get("message") == "signet-proxy listening":
                self._addr = record["addr"]
                self._listening.set()
        self._listening.set()

    def _wait_for_address(self) -> str:
        self._listening.wait(timeout=20)
        if self._addr is None:
            raise RuntimeError("signet-proxy did not start:\n" + "\n".join(self.log))
        return self._addr

    def _wait_until_healthy(self) -> None:
        deadline = time.monotonic() + 20
        while True:
            try:
                with urllib.request.urlopen(self.url + "/healthz", timeout=2) as reply:
                    if reply.status == 200:
                        return
            except (urllib.error.URLError, ConnectionError):
                pass
            if time.monotonic() > deadline or self._process.poll() is not None:
                raise RuntimeError("signet-proxy never became healthy:\n" + "\n".join(self.log))
            time.sleep(0.05)

    def stop(self) -> None:
        self._process.terminate()
        try:
            self._process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            self._process.kill()
            self._process.wait()


def verify(header: str, method: str, target: str, body: bytes, master_hex: str) -> None:
    """Checks both signatures of a proof (non-strict Ed25519: the proxy's own
    strict check is exercised by the tests that go through it)."""
    proof = parse_proof(header)
    assert proof.mk.hex() == master_hex
    Ed25519PublicKey.from_public_bytes(proof.mk).verify(
        proof.b, binding_message(proof.ek, proof.exp, proof.pur)
    )
    canonical = canonical_request(method, target, proof.ts, b64url(proof.n), body_digest(body))
    Ed25519PublicKey.from_public_bytes(proof.ek).verify(proof.s, canonical)
