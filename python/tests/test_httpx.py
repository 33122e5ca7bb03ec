"""`httpx` (sync and async) with `SignetAuth`, straight to the real proxy."""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import httpx
from support import SHARED_TOKEN, Proxy, RecordingUpstream

from signet import SignetAuth

TIMEOUT = 10


def assert_forwarded(reply: httpx.Response, upstream: RecordingUpstream) -> None:
    """200 from the upstream, which saw the shared token and no proof."""
    assert reply.status_code == 200, reply.text
    seen = upstream.last()
    assert seen.all("Authorization") == [f"Bearer {SHARED_TOKEN}"]
    assert seen.header("Signet-Proof") is None


def test_sync_client_signs_query_json_bytes_and_generator_bodies(
    proxy: Proxy, upstream: RecordingUpstream, master_key_path: Path
) -> None:
    auth = SignetAuth(master_key_path=master_key_path, ephemeral_key_ttl=300)
    with httpx.Client(base_url=proxy.url, auth=auth, timeout=TIMEOUT) as client:
        reply = client.get(
            "/repos/o/r/pulls",
            params={"state": "all", "head": "octo:fix,ui"},
            headers={"Authorization": "Bearer client-own-token"},
        )
        assert_forwarded(reply, upstream)
        assert (upstream.last().method, upstream.last().target) == (
            "GET",
            "/repos/o/r/pulls?state=all&head=octo%3Afix%2Cui",
        )

        reply = client.post("/repos/o/r/issues", json={"title": "ünïcode ✓"})
        assert_forwarded(reply, upstream)
        assert json.loads(upstream.last().body) == {"title": "ünïcode ✓"}
        assert upstream.last().body == reply.request.content

        reply = client.patch("/repos/o/r", content=b"\x00\x01binary\xfe\xff")
        assert_forwarded(reply, upstream)
        assert (upstream.last().method, upstream.last().body) == (
            "PATCH",
            b"\x00\x01binary\xfe\xff",
        )

        pulled: list[bytes] = []

        def chunks() -> Iterator[bytes]:
            for part in (b"streamed ", b"in ", b"parts"):
                pulled.append(part)
                yield part

        reply = client.put("/repos/o/r/contents/a.txt", content=chunks())
        assert_forwarded(reply, upstream)
        assert pulled == [b"streamed ", b"in ", b"parts"]
        assert upstream.last().body == b"streamed in parts"


def test_multipart_upload_is_signed_and_sent(
    proxy: Proxy, upstream: RecordingUpstream, master_key_path: Path
) -> None:
    with httpx.Client(auth=SignetAuth(master_key_path), timeout=TIMEOUT) as client:
        reply = client.post(
            f"{proxy.url}/repos/o/r/releases/1/assets",
            files={"asset": ("notes.txt", b"release notes\n", "text/plain")},
        )
    assert_forwarded(reply, upstream)
    assert upstream.last().body == reply.request.content
    assert b"release notes\n" in upstream.last().body


def test_sync_client_signs_the_raw_percent_encoded_path(
    proxy: Proxy, upstream: RecordingUpstream, master_key_path: Path
) -> None:
    with httpx.Client(auth=SignetAuth(master_key_path), timeout=TIMEOUT) as client:
        # httpx keeps escapes as given (lower-case %2f stays) and encodes the rest.
        reply = client.get(f"{proxy.url}/repos/o/r/contents/dir%2fname/hello world ü.md?ref=a b")
    assert_forwarded(reply, upstream)
    assert upstream.last().target == (
        "/repos/o/r/contents/dir%2fname/hello%20world%20%C3%BC.md?ref=a%20b"
    )


def test_async_client_signs_get_json_and_async_generator_bodies(
    proxy: Proxy, upstream: RecordingUpstream, master_key_path: Path
) -> None:
    auth = SignetAuth(master_key_path, purpose="ci:deploy")

    async def body() -> AsyncIterator[bytes]:
        for part in (b'{"name":', b'"async"}'):
            yield part

    async def run() -> None:
        async with httpx.AsyncClient(base_url=proxy.url, auth=auth, timeout=TIMEOUT) as client:
            get = await client.get("/repos/o/r/issues", params={"page": 2})
            assert_forwarded(get, upstream)
            post = await client.post("/repos/o/r/labels", json={"name": "bug"})
            assert_forwarded(post, upstream)
            streamed = await client.post("/repos/o/r/labels", content=body())
            assert_forwarded(streamed, upstream)

    asyncio.run(run())
    first, second, third = upstream.received
    assert (first.method, first.target, first.body) == ("GET", "/repos/o/r/issues?page=2", b"")
    assert (second.method, json.loads(second.body)) == ("POST", {"name": "bug"})
    assert third.body == b'{"name":"async"}'


def test_async_replay_and_untrusted_key_are_refused(
    proxy: Proxy, upstream: RecordingUpstream, master_key_path: Path, untrusted_key_path: Path
) -> None:
    async def run() -> None:
        async with httpx.AsyncClient(base_url=proxy.url, timeout=TIMEOUT) as client:
            first = await client.get("/user", auth=SignetAuth(master_key_path))
            assert_forwarded(first, upstream)
            replay = await client.get(
                "/user", headers={"Signet-Proof": first.request.headers["Signet-Proof"]}
            )
            assert replay.status_code == 401
            assert replay.json()["error"]["code"] == "REPLAY_DETECTED"
            assert replay.headers["WWW-Authenticate"] == (
                'Signet realm="signet-proxy", error="REPLAY_DETECTED"'
            )

            stranger = await client.get("/user", auth=SignetAuth(untrusted_key_path))
            assert stranger.status_code == 401
            assert stranger.json()["error"]["code"] == "UNKNOWN_KEY"

    asyncio.run(run())
    assert upstream.count() == 1
