"""`SignetAuth`: one `auth=` object for `requests` and for `httpx` (sync and async).

Each request is signed as it goes on the wire: its method, its request-target
exactly as sent (percent-encoding included) and its body bytes. A streamed or
iterable body is read once, signed, and sent as those same bytes.
"""

from __future__ import annotations

from collections.abc import Generator, Iterable
from typing import TYPE_CHECKING, Any

from ._keys import PathLike
from ._signer import DEFAULT_TTL, Signer

if TYPE_CHECKING:
    import httpx
    import requests

PROOF_HEADER = "Signet-Proof"

# httpx only accepts `httpx.Auth` instances as auth objects that may read the
# request body first, so SignetAuth is one when httpx is installed; requests
# takes any callable. Neither library is required.
if TYPE_CHECKING:
    from httpx import Auth as _HttpxAuth
else:
    try:
        from httpx import Auth as _HttpxAuth
    except ImportError:  # pragma: no cover - exercised only without httpx
        _HttpxAuth = object


class SignetAuth(_HttpxAuth):
    """Signs every request with a `Signet-Proof` header.

    >>> import requests
    >>> from signet import SignetAuth
    >>> auth = SignetAuth(master_key_path="master-key.pem", ephemeral_key_ttl=300)  # doctest: +SKIP
    >>> requests.get("http://signet-proxy:8080/repos/owner/repo", auth=auth)       # doctest: +SKIP

    The same object works as `httpx.Client(auth=auth)`,
    `httpx.AsyncClient(auth=auth)` or `auth=` on a single call. Share one
    instance: its ephemeral key is reused until it is about to expire.
    """

    # httpx: read the body (streams included) before `auth_flow` runs.
    requires_request_body = True

    def __init__(
        self,
        master_key_path: PathLike = "master-key.pem",
        ephemeral_key_ttl: int = DEFAULT_TTL,
        purpose: str = "",
    ) -> None:
        self.signer = Signer(master_key_path, ephemeral_key_ttl, purpose)

    @classmethod
    def from_signer(cls, signer: Signer) -> SignetAuth:
        """An auth object that signs with an existing `Signer`."""
        auth = cls.__new__(cls)
        auth.signer = signer
        return auth

    def __repr__(self) -> str:
        return f"SignetAuth({self.signer!r})"

    # -- requests --------------------------------------------------------

    def __call__(self, request: requests.PreparedRequest) -> requests.PreparedRequest:
        """requests' auth hook: sign the prepared request."""
        body = _requests_body(request)
        method = request.method or "GET"
        request.headers[PROOF_HEADER] = self.signer.sign(method, _requests_target(request), body)
        return request

    # -- httpx -----------------------------------------------------------

    def auth_flow(self, request: httpx.Request) -> Generator[httpx.Request, httpx.Response, None]:
        """httpx's auth hook (sync and async): sign the request, body read."""
        target = request.url.raw_path.decode("ascii")
        request.headers[PROOF_HEADER] = self.signer.sign(request.method, target, request.content)
        yield request


def _requests_target(request: requests.PreparedRequest) -> str:
    """The request-target requests puts on the request line."""
    target = request.path_url
    try:
        # urllib3 percent-encodes what is still invalid in the target before
        # it writes the request line; requests' URLs are normally already
        # encoded so this changes nothing, but then it is what goes out.
        from urllib3.util.url import _encode_target
    except ImportError:  # pragma: no cover - private helper moved
        return target
    return str(_encode_target(target))


def _requests_body(request: requests.PreparedRequest) -> bytes:
    """The body's bytes. A body that is not already bytes (text, a file, a
    generator or other iterable) is read once here and replaced by those
    bytes, so exactly what was signed is sent, with a `Content-Length`."""
    body: Any = request.body
    if body is None:
        return b""
    if isinstance(body, bytes):
        return body
    if isinstance(body, (bytearray, memoryview)):
        data = bytes(body)
    elif isinstance(body, str):
        data = body.encode("utf-8")
    elif hasattr(body, "read"):
        data = _as_bytes(body.read())
    elif isinstance(body, Iterable):
        data = b"".join(_as_bytes(chunk) for chunk in body)
    else:
        raise TypeError(f"cannot sign a request body of type {type(body).__name__}")
    request.body = data
    request.headers.pop("Transfer-Encoding", None)
    request.headers.pop("Content-Length", None)
    request.prepare_content_length(data)
    return data


def _as_bytes(chunk: str | bytes | bytearray | memoryview) -> bytes:
    return chunk.encode("utf-8") if isinstance(chunk, str) else bytes(chunk)
