"""Fixtures: master keys on disk, the recording upstream and the real proxy."""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from support import SHARED_TOKEN, Proxy, RecordingUpstream

from signet import Signer


def write_key(path: Path) -> Path:
    """A fresh master key as `signet keygen` writes it: PKCS#8 PEM, mode 0600."""
    pem = Ed25519PrivateKey.generate().private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    )
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "wb") as file:
        file.write(pem)
    return path


@pytest.fixture(scope="session")
def master_key_path(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The master key the proxy trusts."""
    return write_key(tmp_path_factory.mktemp("keys") / "master-key.pem")


@pytest.fixture(scope="session")
def untrusted_key_path(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A well-formed master key the proxy does not trust."""
    return write_key(tmp_path_factory.mktemp("keys") / "untrusted-key.pem")


@pytest.fixture(scope="session")
def _upstream() -> Iterator[RecordingUpstream]:
    upstream = RecordingUpstream()
    yield upstream
    upstream.close()


@pytest.fixture
def upstream(_upstream: RecordingUpstream) -> RecordingUpstream:
    """The recording upstream, emptied for this test."""
    _upstream.clear()
    return _upstream


@pytest.fixture(scope="session")
def proxy(master_key_path: Path, _upstream: RecordingUpstream) -> Iterator[Proxy]:
    """target/debug/signet-proxy (or $SIGNET_PROXY_BIN) in front of the upstream."""
    master_hex = Signer(master_key_path).master_public_key_hex
    proxy = Proxy(master_hex, _upstream.url, SHARED_TOKEN)
    yield proxy
    proxy.stop()
