"""The `Signer`: a master key that binds short-lived ephemeral keys and signs
requests with them (docs/PROTOCOL.md §2–§4).

Same semantics as the Rust client's `Signer` (crates/signet-client/src/signer.rs).
"""

from __future__ import annotations

import os
import threading
import time
from dataclasses import dataclass
from typing import Union

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from ._canonical import (
    Proof,
    b64url,
    binding_message,
    body_digest,
    canonical_request,
    check_method,
    check_purpose,
    check_target,
)
from ._keys import PathLike, load_master_key, master_key_from_pem, public_bytes

DEFAULT_TTL = 300
"""The binding lifetime in seconds unless told otherwise: 5 minutes."""

MAX_TTL = 900
"""The longest binding lifetime accepted: the proxy's default `--max-binding-ttl`."""

# A binding is replaced once its remaining lifetime falls to this many seconds
# or fewer (unless that is more than half the TTL): it covers the proxy's
# default clock skew, so a proxy whose clock runs a little ahead never sees a
# binding that has already expired there.
_MIN_ROTATION_MARGIN = 30

BytesLike = Union[bytes, bytearray, memoryview]


def rotation_margin(ttl: int) -> int:
    """How close to expiry a binding may get before it is replaced: a fifth of
    the TTL, at least 30 s, but never more than half the TTL, so each binding
    serves at least half its life."""
    return min(max(ttl // 5, _MIN_ROTATION_MARGIN), ttl // 2)


@dataclass(frozen=True)
class Ephemeral:
    """An ephemeral key and the master key's binding of it (§2)."""

    master_public: bytes
    key: Ed25519PrivateKey
    public: bytes
    exp: int
    purpose: str
    b: bytes

    @classmethod
    def bind(
        cls, master: Ed25519PrivateKey, key: Ed25519PrivateKey, exp: int, purpose: str
    ) -> Ephemeral:
        """Has `master` sign a binding of `key` until `exp` for `purpose`."""
        public = public_bytes(key)
        b = master.sign(binding_message(public, exp, check_purpose(purpose)))
        return cls(public_bytes(master), key, public, exp, purpose, b)

    def sign_request(self, method: str, target: str, body: bytes, ts: int, nonce: bytes) -> Proof:
        """Signs one request (§3) at `ts` with `nonce` (16 bytes)."""
        n = b64url(nonce)
        canonical = canonical_request(
            check_method(method), check_target(target), ts, n, body_digest(body)
        )
        return Proof(
            mk=self.master_public,
            ek=self.public,
            exp=self.exp,
            pur=self.purpose,
            b=self.b,
            ts=ts,
            n=nonce,
            s=self.key.sign(canonical),
        )


class Signer:
    """Signs requests for a signet-proxy with a master key.

    A `Signer` keeps one ephemeral key bound by the master key at a time and
    replaces it with a new random one once the binding's remaining lifetime
    falls below a margin (a fifth of the TTL, at least 30 s, at most half the
    TTL). Every request gets the current time and a fresh random nonce.

    One `Signer` is safe to share between threads and tasks; sharing it means
    the proxy checks each binding signature only once.

    >>> signer = Signer("master-key.pem", ephemeral_key_ttl=120)  # doctest: +SKIP
    >>> signer.sign("GET", "/repos/o/r/issues?state=open")        # doctest: +SKIP
    'v1;mk=...;ek=...;exp=...;pur=;b=...;ts=...;n=...;s=...'
    """

    def __init__(
        self,
        master_key_path: PathLike,
        ephemeral_key_ttl: int = DEFAULT_TTL,
        purpose: str = "",
    ) -> None:
        """Reads the master key from `master_key_path` (PKCS#8 PEM, as
        `signet keygen` writes it).

        `ephemeral_key_ttl` is each binding's lifetime in whole seconds, from 1
        to 900; `purpose` is 0–64 of `A-Z a-z 0-9 . _ : / -`. Raises
        `KeyFileError` for an unusable key file and `ValueError` for a bad TTL
        or purpose.
        """
        ttl, purpose = _check_ttl(ephemeral_key_ttl), check_purpose(purpose)
        self._setup(load_master_key(master_key_path), ttl, purpose)

    @classmethod
    def from_key(
        cls,
        master_key: Ed25519PrivateKey,
        ephemeral_key_ttl: int = DEFAULT_TTL,
        purpose: str = "",
    ) -> Signer:
        """A signer for a master key already in memory."""
        if not isinstance(master_key, Ed25519PrivateKey):
            raise TypeError("master_key must be an Ed25519PrivateKey")
        signer = cls.__new__(cls)
        signer._setup(master_key, _check_ttl(ephemeral_key_ttl), check_purpose(purpose))
        return signer

    @classmethod
    def from_pem(
        cls,
        pem: str | bytes,
        ephemeral_key_ttl: int = DEFAULT_TTL,
        purpose: str = "",
    ) -> Signer:
        """A signer whose master key is PKCS#8 PEM text."""
        return cls.from_key(master_key_from_pem(pem), ephemeral_key_ttl, purpose)

    def _setup(self, master: Ed25519PrivateKey, ttl: int, purpose: str) -> None:
        self._master = master
        self._ttl = ttl
        self._purpose = purpose
        self._lock = threading.Lock()
        self._current: Ephemeral | None = None

    def __repr__(self) -> str:
        return (
            f"Signer(master_public_key={self.master_public_key_hex!r}, "
            f"ephemeral_key_ttl={self._ttl}, purpose={self._purpose!r})"
        )

    @property
    def master_public_key_hex(self) -> str:
        """The master public key as 64 lowercase hex characters: the value a
        proxy trusts (`--master-key` / `SIGNET_MASTER_PUBLIC_KEY`)."""
        return public_bytes(self._master).hex()

    @property
    def purpose(self) -> str:
        """The purpose written into every binding."""
        return self._purpose

    @property
    def ephemeral_key_ttl(self) -> int:
        """Each binding's lifetime, in seconds."""
        return self._ttl

    def sign(self, method: str, target: str, body: BytesLike = b"") -> str:
        """Signs one request now and returns the `Signet-Proof` header value.

        * `method` exactly as on the request line (`GET`, not `get`);
        * `target` the origin-form request-target byte for byte as it goes on
          the wire: path, plus `?` and the query when present, percent-encoded
          as sent. Nothing is normalised, here or at the proxy;
        * `body` the exact body bytes (empty for none).
        """
        return self.sign_at(method, target, body, int(time.time()))

    def sign_at(self, method: str, target: str, body: BytesLike, now: int) -> str:
        """Like `sign`, at `now` (unix seconds) instead of the system clock."""
        if isinstance(now, bool) or not isinstance(now, int) or now < 0:
            raise ValueError(f"now must be whole unix seconds (a non-negative int), not {now!r}")
        if not isinstance(body, (bytes, bytearray, memoryview)):
            raise TypeError(f"body must be bytes, not {type(body).__name__} (encode text first)")
        ephemeral = self._ephemeral_at(now)
        proof = ephemeral.sign_request(method, target, bytes(body), now, os.urandom(16))
        return proof.header_value()

    def _ephemeral_at(self, now: int) -> Ephemeral:
        """The binding to sign with at `now`: a new one when there is none,
        when it is close to expiry, or (the clock went back) when it outlives
        the TTL."""
        with self._lock:
            current = self._current
            if current is None or not self._is_usable(current, now):
                current = Ephemeral.bind(
                    self._master, Ed25519PrivateKey.generate(), now + self._ttl, self._purpose
                )
                self._current = current
            return current

    def _is_usable(self, ephemeral: Ephemeral, now: int) -> bool:
        remaining = max(ephemeral.exp - now, 0)
        return rotation_margin(self._ttl) < remaining <= self._ttl


def _check_ttl(ttl: int) -> int:
    if isinstance(ttl, bool) or not isinstance(ttl, int):
        raise TypeError(f"ephemeral_key_ttl must be whole seconds (int), not {type(ttl).__name__}")
    if not 1 <= ttl <= MAX_TTL:
        raise ValueError(
            f"invalid ephemeral_key_ttl {ttl}: must be between 1 and {MAX_TTL} seconds (15 minutes)"
        )
    return ttl
