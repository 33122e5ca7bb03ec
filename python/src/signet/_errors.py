"""The exceptions the SDK raises of its own."""

from __future__ import annotations

import os


class SignetError(Exception):
    """Base class of the SDK's own errors."""


class KeyFileError(SignetError):
    """The master key file is missing, unreadable, or not an Ed25519 PKCS#8 PEM.

    The message names the file and the reason, never the file's contents.
    """

    def __init__(self, path: str | os.PathLike[str], reason: str) -> None:
        self.path = os.fspath(path)
        self.reason = reason
        super().__init__(f"master key file {self.path}: {reason}")
