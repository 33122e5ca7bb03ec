"""Loading the master key: the PKCS#8 PEM that `signet keygen` writes."""

from __future__ import annotations

import os
from typing import Union

from cryptography.exceptions import UnsupportedAlgorithm
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from ._errors import KeyFileError

PathLike = Union[str, "os.PathLike[str]"]


def load_master_key(path: PathLike) -> Ed25519PrivateKey:
    """Reads an Ed25519 private key from a PKCS#8 PEM file.

    Raises `KeyFileError` (naming the file, never its contents) when the file
    cannot be read or holds anything else.
    """
    try:
        with open(path, "rb") as file:
            pem = file.read()
    except OSError as err:
        raise KeyFileError(path, f"cannot read it ({err.strerror or err})") from None
    return master_key_from_pem(pem, path)


def master_key_from_pem(pem: str | bytes, source: PathLike = "<pem>") -> Ed25519PrivateKey:
    """Parses an Ed25519 private key from PKCS#8 PEM text."""
    data = pem.encode("ascii", "replace") if isinstance(pem, str) else pem
    if b"-----BEGIN PRIVATE KEY-----" not in data:
        raise KeyFileError(
            source, "not a PKCS#8 PEM private key (expected -----BEGIN PRIVATE KEY-----)"
        )
    try:
        key = serialization.load_pem_private_key(data, password=None)
    except (ValueError, TypeError, UnsupportedAlgorithm):
        # `from None`: the parser's own exception may describe the key's bytes.
        raise KeyFileError(source, "not a valid unencrypted PKCS#8 PEM private key") from None
    if not isinstance(key, Ed25519PrivateKey):
        raise KeyFileError(source, f"holds a {type(key).__name__}, not an Ed25519 key")
    return key


def public_bytes(key: Ed25519PrivateKey) -> bytes:
    """The 32-byte raw public key."""
    return key.public_key().public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)
