"""Sign HTTP requests for signet-proxy (Signet-Proof v1, docs/PROTOCOL.md).

* `SignetAuth` — `auth=` for `requests` and `httpx` (sync and async);
* `Signer` — `sign(method, target, body) -> header value` for any other HTTP library;
* `parse_proof` — read a `Signet-Proof` header back with the proxy's strict rules.

The master key is the PKCS#8 PEM file `signet keygen` writes; it is never
logged, printed or put into an exception message.
"""

from ._errors import KeyFileError, SignetError
from ._header import InvalidProofError, ParsedProof, parse_proof
from ._signer import DEFAULT_TTL, MAX_TTL, Signer
from .auth import PROOF_HEADER, SignetAuth

__all__ = [
    "DEFAULT_TTL",
    "MAX_TTL",
    "PROOF_HEADER",
    "InvalidProofError",
    "KeyFileError",
    "ParsedProof",
    "SignetAuth",
    "SignetError",
    "Signer",
    "parse_proof",
]

__version__ = "0.1.0"
