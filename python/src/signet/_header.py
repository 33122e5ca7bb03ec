"""The strict `Signet-Proof` parser (docs/PROTOCOL.md §4).

The proxy is the verifier; this parser lets Python code (and the tests) read a
proof back with the proxy's rules, so that one proof has exactly one spelling.
It checks syntax only: no signature is verified here.
"""

from __future__ import annotations

import base64
import binascii
import re
from dataclasses import dataclass, field

from ._canonical import MAX_PURPOSE_LEN, Proof, b64url

MAX_HEADER_LEN = 4096
TOKEN_STORE_MESSAGE = (
    "Signet-Proof token-store form is not supported; send a self-contained v1 proof."
)

_FIELDS = ("mk", "ek", "exp", "pur", "b", "ts", "n", "s")
_LEGACY_KEYS = frozenset(("m", "jti", "t"))
_KEY = re.compile(r"[a-z0-9_-]{1,32}")
_B64URL = re.compile(r"[A-Za-z0-9_-]*")
_INTEGER = re.compile(r"0|[1-9][0-9]{0,18}")
_PURPOSE = re.compile(rf"[A-Za-z0-9._:/-]{{0,{MAX_PURPOSE_LEN}}}")
_LENGTHS = {"mk": 32, "ek": 32, "b": 64, "n": 16, "s": 64}


class InvalidProofError(ValueError):
    """A header value the proxy refuses with 400 `INVALID_PROOF`."""


@dataclass(frozen=True)
class ParsedProof(Proof):
    """A syntactically valid proof; `extra` holds the ignored unknown keys."""

    extra: dict[str, str] = field(default_factory=dict)


def parse_proof(value: str | bytes) -> ParsedProof:
    """Parses a `Signet-Proof` header value with the proxy's §4 rules.

    Raises `InvalidProofError` for any value the proxy would refuse as
    `INVALID_PROOF`; its message never echoes the value.
    """
    raw = value.encode("utf-8") if isinstance(value, str) else bytes(value)
    if not raw:
        raise InvalidProofError("empty Signet-Proof header")
    if len(raw) > MAX_HEADER_LEN:
        raise InvalidProofError(f"Signet-Proof header is {len(raw)} bytes, over {MAX_HEADER_LEN}")
    for offset, byte in enumerate(raw):
        if not 0x21 <= byte <= 0x7E:
            raise InvalidProofError(f"byte 0x{byte:02x} at offset {offset} is not visible ASCII")

    version, *elements = raw.decode("ascii").split(";")
    if version != "v1":
        raise InvalidProofError("the first element must be exactly v1")
    known: dict[str, str] = {}
    extra: dict[str, str] = {}
    for element in elements:
        if not element:
            raise InvalidProofError("empty element")
        key, equals, val = element.partition("=")
        if not equals:
            raise InvalidProofError("element without '='")
        if not _KEY.fullmatch(key):
            raise InvalidProofError("invalid key: use 1-32 of a-z 0-9 _ -")
        target = known if key in _FIELDS else extra
        if key in target:
            raise InvalidProofError(f"key {key!r} given twice")
        target[key] = val
    if ("mk" not in known or "ek" not in known) and _LEGACY_KEYS.intersection(extra):
        raise InvalidProofError(TOKEN_STORE_MESSAGE)
    for name in _FIELDS:
        if name not in known:
            raise InvalidProofError(f"missing field {name}")
    pur = known["pur"]
    if not _PURPOSE.fullmatch(pur):
        raise InvalidProofError("invalid pur")
    return ParsedProof(
        mk=_b64_field(known, "mk"),
        ek=_b64_field(known, "ek"),
        exp=_int_field(known, "exp"),
        pur=pur,
        b=_b64_field(known, "b"),
        ts=_int_field(known, "ts"),
        n=_b64_field(known, "n"),
        s=_b64_field(known, "s"),
        extra=extra,
    )


def _b64_field(known: dict[str, str], name: str) -> bytes:
    text = known[name]
    decoded = _b64url_decode(text)
    if decoded is None or len(decoded) != _LENGTHS[name]:
        raise InvalidProofError(f"invalid {name}: expected base64url of {_LENGTHS[name]} bytes")
    return decoded


def _b64url_decode(text: str) -> bytes | None:
    """Strict RFC 4648 §5: no padding, no `+` or `/`, zero trailing bits."""
    if not _B64URL.fullmatch(text) or len(text) % 4 == 1:
        return None
    try:
        decoded = base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))
    except (binascii.Error, ValueError):
        return None
    # Re-encoding gives back the text only when the unused trailing bits are zero.
    return decoded if b64url(decoded) == text else None


def _int_field(known: dict[str, str], name: str) -> int:
    text = known[name]
    if not _INTEGER.fullmatch(text):
        raise InvalidProofError(f"invalid {name}: expected 1-19 digits without a leading zero")
    return int(text)
