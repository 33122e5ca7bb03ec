"""The bytes Signet-Proof v1 signs and sends (docs/PROTOCOL.md §2–§4).

Pure functions of their arguments: no clock, no randomness, no I/O, so the
test vectors pin every one of them down byte for byte.
"""

from __future__ import annotations

import base64
import hashlib
import re
from dataclasses import dataclass

BINDING_CONTEXT = b"signet-ephemeral-binding-v1:"
REQUEST_CONTEXT = "signet-request-v1"

MAX_PURPOSE_LEN = 64
_PURPOSE = re.compile(r"[A-Za-z0-9._:/-]*")
# RFC 9110 §5.6.2 token.
_METHOD = re.compile(r"[!#$%&'*+.^_`|~0-9A-Za-z-]+")
# Origin-form in visible ASCII. A `#` never reaches the request line (clients
# drop the fragment), so a target holding one cannot match what the proxy sees.
_TARGET = re.compile(r"/[\x21-\x22\x24-\x7e]*")


def b64url(data: bytes) -> str:
    """RFC 4648 §5 base64url without padding."""
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode("ascii")


def body_digest(body: bytes) -> str:
    """`base64url(SHA-256(body))`: 43 characters."""
    return b64url(hashlib.sha256(body).digest())


def check_purpose(purpose: str) -> str:
    """The purpose, if it is 0–64 of `A-Z a-z 0-9 . _ : / -`."""
    if (
        not isinstance(purpose, str)
        or len(purpose) > MAX_PURPOSE_LEN
        or not _PURPOSE.fullmatch(purpose)
    ):
        raise ValueError(
            f"invalid purpose {purpose!r}: use at most 64 characters from A-Z a-z 0-9 . _ : / -"
        )
    return purpose


def check_method(method: str) -> str:
    """The method, if it is an HTTP token (sent as given: `get` is not `GET`)."""
    if not isinstance(method, str) or not _METHOD.fullmatch(method):
        raise ValueError(f"invalid HTTP method {method!r}")
    return method


def check_target(target: str) -> str:
    """The request-target, if it is origin-form (`/path?query`) in visible ASCII."""
    if not isinstance(target, str) or not _TARGET.fullmatch(target):
        raise ValueError(
            f"invalid request target {target!r}: expected origin-form /path?query "
            "in visible ASCII (percent-encoded as sent on the wire), without a #fragment"
        )
    return target


def binding_message(ephemeral_public: bytes, exp: int, purpose: str) -> bytes:
    """§2: what the master key signs to bind an ephemeral key until `exp`."""
    pur = purpose.encode("ascii")
    return (
        BINDING_CONTEXT
        + ephemeral_public
        + exp.to_bytes(8, "big")
        + len(pur).to_bytes(4, "big")
        + pur
    )


def canonical_request(method: str, target: str, ts: int, nonce: str, digest: str) -> bytes:
    """§3: what the ephemeral key signs for one request (no trailing newline)."""
    return "\n".join((REQUEST_CONTEXT, method, target, str(ts), nonce, digest)).encode("ascii")


@dataclass(frozen=True)
class Proof:
    """The eight fields of a `Signet-Proof` header, as raw values."""

    mk: bytes
    ek: bytes
    exp: int
    pur: str
    b: bytes
    ts: int
    n: bytes
    s: bytes

    def header_value(self) -> str:
        """§4: the header value, fields in the spec's order."""
        return (
            f"v1;mk={b64url(self.mk)};ek={b64url(self.ek)};exp={self.exp};pur={self.pur}"
            f";b={b64url(self.b)};ts={self.ts};n={b64url(self.n)};s={b64url(self.s)}"
        )
