"""`Signer` and `SignetAuth` on their own: rotation, limits, errors."""

from __future__ import annotations

import subprocess
import sys
import textwrap
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest
import requests
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from support import verify

from signet import KeyFileError, Signer, SignetAuth, SignetError, parse_proof
from signet._signer import rotation_margin

NOW = 1_700_000_000


@pytest.fixture
def signer() -> Signer:
    return Signer.from_key(Ed25519PrivateKey.from_private_bytes(bytes([9]) * 32))


def ek_at(signer: Signer, now: int) -> bytes:
    return parse_proof(signer.sign_at("GET", "/", b"", now)).ek


def test_signed_request_verifies_under_the_master_key(signer: Signer) -> None:
    signer = Signer.from_key(signer._master, purpose="ci:deploy")
    header = signer.sign_at("POST", "/repos/o/r/issues?x=1", b'{"title":"t"}', NOW)
    verify(header, "POST", "/repos/o/r/issues?x=1", b'{"title":"t"}', signer.master_public_key_hex)
    proof = parse_proof(header)
    assert (proof.pur, proof.ts, proof.exp) == ("ci:deploy", NOW, NOW + 300)


def test_sign_uses_the_system_clock(signer: Signer) -> None:
    import time

    proof = parse_proof(signer.sign("GET", "/user"))
    assert abs(proof.ts - time.time()) <= 2


def test_every_request_gets_a_fresh_nonce(signer: Signer) -> None:
    first = parse_proof(signer.sign_at("GET", "/", b"", NOW))
    second = parse_proof(signer.sign_at("GET", "/", b"", NOW))
    assert first.n != second.n
    assert first.ek == second.ek


def test_binding_is_reused_until_the_rotation_margin(signer: Signer) -> None:
    # ttl 300 s, margin 60 s: as the Rust signer.
    first = ek_at(signer, NOW)
    assert ek_at(signer, NOW + 1) == first
    assert ek_at(signer, NOW + 239) == first, "61 s left: still used"
    second = ek_at(signer, NOW + 240)
    assert second != first, "60 s left: replaced"
    assert ek_at(signer, NOW + 241) == second


def test_binding_is_replaced_when_the_clock_goes_back(signer: Signer) -> None:
    first = ek_at(signer, NOW)
    header = signer.sign_at("GET", "/", b"", NOW - 10)
    assert parse_proof(header).ek != first
    assert parse_proof(header).exp == NOW - 10 + 300


def test_rotation_margin_is_a_fifth_of_the_ttl_within_bounds() -> None:
    assert [rotation_margin(t) for t in (300, 900, 120, 40, 2, 1)] == [60, 180, 30, 20, 1, 0]


def test_concurrent_requests_share_one_binding(signer: Signer) -> None:
    eks: list[bytes] = []
    threads = [threading.Thread(target=lambda: eks.append(ek_at(signer, NOW))) for _ in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert len(set(eks)) == 1


@pytest.mark.parametrize("ttl", [0, -1, 901, 3600])
def test_ttl_outside_one_second_to_fifteen_minutes_is_a_value_error(
    signer: Signer, ttl: int
) -> None:
    with pytest.raises(ValueError, match="between 1 and 900 seconds"):
        Signer.from_key(signer._master, ephemeral_key_ttl=ttl)


def test_ttl_must_be_whole_seconds(signer: Signer) -> None:
    for ttl in (1.5, "300", True):
        with pytest.raises(TypeError):
            Signer.from_key(signer._master, ephemeral_key_ttl=ttl)  # type: ignore[arg-type]


def test_the_longest_ttl_is_fifteen_minutes(signer: Signer) -> None:
    longest = Signer.from_key(signer._master, ephemeral_key_ttl=900)
    assert parse_proof(longest.sign_at("GET", "/", b"", NOW)).exp == NOW + 900


@pytest.mark.parametrize("purpose", ["has space", "a@b", "é", "p" * 65])
def test_invalid_purpose_is_a_value_error(signer: Signer, purpose: str) -> None:
    with pytest.raises(ValueError, match="invalid purpose"):
        Signer.from_key(signer._master, purpose=purpose)


def test_purpose_may_use_its_whole_alphabet(signer: Signer) -> None:
    purpose = "AZaz09._:/-" + "p" * 53
    header = Signer.from_key(signer._master, purpose=purpose).sign_at("GET", "/", b"", NOW)
    assert parse_proof(header).pur == purpose


def test_methods_must_be_http_tokens(signer: Signer) -> None:
    for good in ("GET", "PATCH", "M-SEARCH"):
        signer.sign_at(good, "/", b"", NOW)
    for bad in ("", "GE T", "GET\n", "GÉT", "GET/"):
        with pytest.raises(ValueError, match="invalid HTTP method"):
            signer.sign_at(bad, "/", b"", NOW)


def test_targets_must_be_origin_form(signer: Signer) -> None:
    for good in ("/", "//x", "/a?", "/a?b=c&d", "/a/../b", "/%7e"):
        signer.sign_at("GET", good, b"", NOW)
    for bad in ("", "*", "user", "http://example.com/", "example.com:443", "/a b", "/a#f", "/é"):
        with pytest.raises(ValueError, match="invalid request target"):
            signer.sign_at("GET", bad, b"", NOW)


def test_now_must_be_whole_unix_seconds(signer: Signer) -> None:
    for now in (-1, 1.5, True):
        with pytest.raises(ValueError, match="whole unix seconds"):
            signer.sign_at("GET", "/", b"", now)  # type: ignore[arg-type]


def test_text_bodies_must_be_encoded_first(signer: Signer) -> None:
    with pytest.raises(TypeError, match="encode text first"):
        signer.sign_at("POST", "/", "text", NOW)  # type: ignore[arg-type]


def test_missing_key_file_is_a_key_file_error_naming_it(tmp_path: Path) -> None:
    path = tmp_path / "nope.pem"
    with pytest.raises(KeyFileError) as err:
        SignetAuth(master_key_path=path)
    assert err.value.path == str(path)
    assert "nope.pem" in str(err.value) and "cannot read" in str(err.value)
    assert isinstance(err.value, SignetError)


@pytest.mark.parametrize(
    "content",
    [
        b"not a key",
        b"-----BEGIN PRIVATE KEY-----\nc2VjcmV0c2VjcmV0\n-----END PRIVATE KEY-----\n",
        b"",
    ],
)
def test_invalid_key_file_is_refused_without_echoing_it(tmp_path: Path, content: bytes) -> None:
    path = tmp_path / "k.pem"
    path.write_bytes(content)
    with pytest.raises(KeyFileError) as err:
        Signer(path)
    assert "k.pem" in str(err.value)
    assert "c2VjcmV0" not in str(err.value)
    # No chained parser exception (whose text might describe the key's bytes).
    assert err.value.__cause__ is None
    assert err.value.__context__ is None or err.value.__suppress_context__


def test_a_non_ed25519_or_encrypted_key_is_refused(tmp_path: Path) -> None:
    rsa_pem = rsa.generate_private_key(public_exponent=65537, key_size=2048).private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    )
    (tmp_path / "rsa.pem").write_bytes(rsa_pem)
    with pytest.raises(KeyFileError, match="not an Ed25519 key"):
        Signer(tmp_path / "rsa.pem")

    encrypted = Ed25519PrivateKey.generate().private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.BestAvailableEncryption(b"pw"),
    )
    (tmp_path / "enc.pem").write_bytes(encrypted)
    with pytest.raises(KeyFileError, match="enc.pem"):
        Signer(tmp_path / "enc.pem")


def test_repr_shows_the_public_key_never_the_private_one(signer: Signer) -> None:
    seed = signer._master.private_bytes(
        serialization.Encoding.Raw, serialization.PrivateFormat.Raw, serialization.NoEncryption()
    )
    for text in (repr(signer), repr(SignetAuth.from_signer(signer))):
        assert signer.master_public_key_hex in text
        assert seed.hex() not in text


def test_requests_generator_body_becomes_the_signed_bytes_with_a_length(signer: Signer) -> None:
    def chunks() -> Iterator[bytes]:
        yield b"a"
        yield b"bc"

    prepared = requests.Request("POST", "http://proxy/a b/%7e?q=1", data=chunks()).prepare()
    assert prepared.headers["Transfer-Encoding"] == "chunked"
    prepared = SignetAuth.from_signer(signer)(prepared)
    assert prepared.body == b"abc"
    assert prepared.headers["Content-Length"] == "3"
    assert "Transfer-Encoding" not in prepared.headers
    verify(
        str(prepared.headers["Signet-Proof"]),
        "POST",
        prepared.path_url,
        b"abc",
        signer.master_public_key_hex,
    )
    assert prepared.path_url == "/a%20b/~?q=1"


def test_signet_auth_works_for_requests_without_httpx_installed(master_key_path: Path) -> None:
    # A fresh interpreter in which `import httpx` fails, as when it is not installed.
    script = textwrap.dedent(
        f"""
        import sys
        sys.modules["httpx"] = None
        import requests
        from signet import SignetAuth, parse_proof
        assert SignetAuth.__mro__[1] is object
        auth = SignetAuth({str(master_key_path)!r})
        prepared = auth(requests.Request("GET", "http://proxy/user").prepare())
        parse_proof(prepared.headers["Signet-Proof"])
        """
    )
    subprocess.run([sys.executable, "-c", script], check=True, timeout=30)
