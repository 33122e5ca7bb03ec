"""`requests` with `SignetAuth`, straight to the real proxy."""

from __future__ import annotations

import io
import json
import time
from collections.abc import Iterator
from pathlib import Path

import requests
from support import SHARED_TOKEN, Proxy, RecordingUpstream

from signet import SignetAuth, parse_proof

TIMEOUT = 10


def assert_forwarded(reply: requests.Response, upstream: RecordingUpstream) -> None:
    """200 from the upstream, which saw the shared token and no proof."""
    assert reply.status_code == 200, reply.text
    seen = upstream.last()
    assert seen.header("Authorization") == f"Bearer {SHARED_TOKEN}"
    assert seen.header("Signet-Proof") is None


def assert_refused(reply: requests.Response, status: int, code: str) -> None:
    assert reply.status_code == status, reply.text
    assert reply.headers["Content-Type"].startswith("application/json")
    assert reply.json()["error"]["code"] == code
    if status == 401:
        assert reply.headers["WWW-Authenticate"] == (f'Signet realm="signet-proxy", error="{code}"')


def test_get_with_query_reaches_github_with_the_shared_token_not_the_clients(
    proxy: Proxy, upstream: RecordingUpstream, master_key_path: Path
) -> None:
    auth = SignetAuth(master_key_path=str(master_key_path), ephemeral_key_ttl=300)
    reply = requests.get(
        f"{proxy.url}/repos/octo-org/hello-world/issues",
        params={"state": "open", "labels": "bug,ui"},
        headers={"Authorization": "token client-own-token"},
        auth=auth,
        timeout=TIMEOUT,
    )
    assert_forwarded(reply, upstream)
    seen = upstream.last()
    assert seen.method == "GET"
    assert seen.target == "/repos/octo-org/hello-world/issues?state=open&labels=bug%2Cui"
    assert seen.body == b""
    assert seen.all("Authorization") == [f"Bearer {SHARED_TOKEN}"]
    assert reply.json() == {"ok": True}


def test_post_json_is_signed_and_forwarded_byte_for_byte(
    proxy: Proxy, upstream: RecordingUpstream, master_key_path: Path
) -> None:
    issue = {"title": "Found a bug", "body": "naïve café ✓", "labels": ["bug"]}
    reply = requests.post(
        f"{proxy.url}/repos/o/r/issues",
        json=issue,
        auth=SignetAuth(master_key_path),
        timeout=TIMEOUT,
    )
    assert_forwarded(reply, upstream)
    seen = upstream.last()
    assert seen.method == "POST"
    assert seen.target == "/repos/o/r/issues"
    assert seen.body == reply.request.body
    assert json.loads(seen.body) == issue
    assert seen.header("Content-Type") == "application/json"


def test_post_bytes_body_is_signed_and_forwarded(
    proxy: Proxy, upstream: RecordingUpstream, master_key_path: Path
) -> None:
    body = bytes(range(256)) * 4
    reply = requests.post(
        f"{proxy.url}/markdown/raw", data=body, auth=SignetAuth(master_key_path), timeout=TIMEOUT
    )
    assert_forwarded(reply, upstream)
    assert upstream.last().body == body


def test_form_body_is_signed_as_its_encoded_bytes(
    proxy: Proxy, upstream: RecordingUpstream, master_key_path: Path
) -> None:
    # requests leaves a form body as text; it is signed and sent as UTF-8.
    reply = requests.post(
        f"{proxy.url}/repos/o/r/forks",
        data={"organization": "octo org", "note": "ü"},
        auth=SignetAuth(master_key_path),
        timeout=TIMEOUT,
    )
    assert_forwarded(reply, upstream)
    seen = upstream.last()
    assert seen.body == b"organization=octo+org&note=%C3%BC"
    assert seen.header("Content-Length") == str(len(seen.body))


def test_generator_body_is_read_once_signed_and_sent(
    proxy: Proxy, upstream: RecordingUpstream, master_key_path: Path
) -> None:
    pulled = []

    def chunks() -> Iterator[bytes]:
        for part in (b"first chunk;", b"second chunk;", b"third"):
            pulled.append(part)
            yield part

    reply = requests.put(
        f"{proxy.url}/repos/o/r/contents/notes.txt",
        data=chunks(),
        auth=SignetAuth(master_key_path),
        timeout=TIMEOUT,
    )
    assert_forwarded(reply, upstream)
    assert pulled == [b"first chunk;", b"second chunk;", b"third"]
    seen = upstream.last()
    assert (seen.method, seen.body) == ("PUT", b"first chunk;second chunk;third")


def test_file_body_is_read_once_signed_and_sent(
    proxy: Proxy, upstream: RecordingUpstream, master_key_path: Path
) -> None:
    reply = requests.post(
        f"{proxy.url}/repos/o/r/releases/1/assets",
        data=io.BytesIO(b"\x00release asset\xff"),
        auth=SignetAuth(master_key_path),
        timeout=TIMEOUT,
    )
    assert_forwarded(reply, upstream)
    assert upstream.last().body == b"\x00release asset\xff"


def test_percent_encoded_path_is_signed_as_sent_on_the_wire(
    proxy: Proxy, upstream: RecordingUpstream, master_key_path: Path
) -> None:
    reply = requests.get(
        f"{proxy.url}/repos/o/r/contents/docs/hello world ü.md?ref=feature/a b",
        auth=SignetAuth(master_key_path),
        timeout=TIMEOUT,
    )
    assert_forwarded(reply, upstream)
    assert upstream.last().target == (
        "/repos/o/r/contents/docs/hello%20world%20%C3%BC.md?ref=feature/a%20b"
    )


def test_lower_case_escapes_are_signed_as_requests_sends_them(
    proxy: Proxy, upstream: RecordingUpstream, master_key_path: Path
) -> None:
    # requests upper-cases percent-escapes before the request line is written.
    reply = requests.get(
        f"{proxy.url}/repos/o/r/git/ref/heads%2fmain",
        auth=SignetAuth(master_key_path),
        timeout=TIMEOUT,
    )
    assert_forwarded(reply, upstream)
    assert upstream.last().target == "/repos/o/r/git/ref/heads%2Fmain"


def test_replayed_proof_is_refused_and_never_forwarded(
    proxy: Proxy, upstream: RecordingUpstream, master_key_path: Path
) -> None:
    url = f"{proxy.url}/repos/o/r"
    first = requests.get(url, auth=SignetAuth(master_key_path), timeout=TIMEOUT)
    assert_forwarded(first, upstream)
    proof = first.request.headers["Signet-Proof"]

    replay = requests.get(url, headers={"Signet-Proof": proof}, timeout=TIMEOUT)
    assert_refused(replay, 401, "REPLAY_DETECTED")
    assert upstream.count() == 1


def test_untrusted_master_key_is_refused_and_never_forwarded(
    proxy: Proxy, upstream: RecordingUpstream, untrusted_key_path: Path
) -> None:
    reply = requests.get(
        f"{proxy.url}/repos/o/r", auth=SignetAuth(untrusted_key_path), timeout=TIMEOUT
    )
    assert_refused(reply, 401, "UNKNOWN_KEY")
    assert upstream.count() == 0


def test_unsigned_request_is_refused(proxy: Proxy, upstream: RecordingUpstream) -> None:
    assert_refused(requests.get(f"{proxy.url}/user", timeout=TIMEOUT), 401, "MISSING_PROOF")
    assert upstream.count() == 0


def test_short_ttl_brings_a_new_binding_before_expiry(
    proxy: Proxy, upstream: RecordingUpstream, master_key_path: Path
) -> None:
    # A 2 s binding is replaced once 1 s or less is left (half its TTL).
    auth = SignetAuth(master_key_path, ephemeral_key_ttl=2)
    first = requests.get(f"{proxy.url}/user", auth=auth, timeout=TIMEOUT)
    assert_forwarded(first, upstream)
    before = parse_proof(first.request.headers["Signet-Proof"])
    assert before.exp == before.ts + 2

    while int(time.time()) < before.ts + 1:
        time.sleep(0.05)
    second = requests.get(f"{proxy.url}/user", auth=auth, timeout=TIMEOUT)
    assert_forwarded(second, upstream)
    after = parse_proof(second.request.headers["Signet-Proof"])
    assert after.ek != before.ek
    assert after.exp == after.ts + 2
    assert upstream.count() == 2
