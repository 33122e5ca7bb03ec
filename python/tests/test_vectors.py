"""Every case of crates/signet-core/tests/vectors/, byte for byte."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import (
    Ed25519PrivateKey,
    Ed25519PublicKey,
)

from signet import InvalidProofError, Signer, parse_proof
from signet._canonical import b64url, binding_message, body_digest, canonical_request
from signet._keys import public_bytes
from signet._signer import Ephemeral

VECTORS = Path(__file__).resolve().parents[2] / "crates" / "signet-core" / "tests" / "vectors"


def load(name: str) -> dict[str, Any]:
    with open(VECTORS / name, encoding="utf-8") as file:
        data: dict[str, Any] = json.load(file)
    return data


POSITIVE = load("positive.json")
NEGATIVE = load("parse_negative.json")
EDGE = load("parse_positive_edge.json")


def cases(data: dict[str, Any]) -> list[Any]:
    return [pytest.param(case, id=case["id"]) for case in data["cases"]]


def key(seed_hex: str) -> Ed25519PrivateKey:
    return Ed25519PrivateKey.from_private_bytes(bytes.fromhex(seed_hex))


def test_the_vector_files_hold_every_documented_case() -> None:
    assert len(POSITIVE["cases"]) == 10
    assert len(NEGATIVE["cases"]) == 117
    assert len(EDGE["cases"]) == 25


@pytest.mark.parametrize("case", cases(POSITIVE))
def test_positive_case_is_reproduced_layer_by_layer(case: dict[str, Any]) -> None:
    master, ephemeral_key = key(case["master_seed_hex"]), key(case["ephemeral_seed_hex"])
    assert public_bytes(master).hex() == case["master_public_hex"]
    assert b64url(public_bytes(master)) == case["mk"]
    assert public_bytes(ephemeral_key).hex() == case["ephemeral_public_hex"]
    assert b64url(public_bytes(ephemeral_key)) == case["ek"]

    ek = public_bytes(ephemeral_key)
    assert binding_message(ek, case["exp"], case["pur"]).hex() == case["binding_msg_hex"]
    ephemeral = Ephemeral.bind(master, ephemeral_key, case["exp"], case["pur"])
    assert ephemeral.b.hex() == case["b_hex"]
    assert b64url(ephemeral.b) == case["b"]

    body = bytes.fromhex(case["body_hex"])
    if case["body"] is not None:
        assert body == case["body"].encode("utf-8")
    assert body_digest(body) == case["body_digest"]
    nonce = bytes.fromhex(case["n_hex"])
    assert b64url(nonce) == case["n"]
    canonical = canonical_request(
        case["method"], case["target"], case["ts"], case["n"], case["body_digest"]
    )
    assert canonical == case["canonical"].encode("utf-8")

    proof = ephemeral.sign_request(case["method"], case["target"], body, case["ts"], nonce)
    assert proof.s.hex() == case["s_hex"]
    assert b64url(proof.s) == case["s"]
    assert proof.header_value() == case["header"]


@pytest.mark.parametrize("case", cases(POSITIVE))
def test_positive_header_parses_back_to_its_fields(case: dict[str, Any]) -> None:
    proof = parse_proof(case["header"])
    assert proof.mk.hex() == case["master_public_hex"]
    assert proof.ek.hex() == case["ephemeral_public_hex"]
    assert (proof.exp, proof.pur, proof.ts) == (case["exp"], case["pur"], case["ts"])
    assert (proof.b.hex(), proof.n.hex(), proof.s.hex()) == (
        case["b_hex"],
        case["n_hex"],
        case["s_hex"],
    )
    assert proof.extra == {}


def test_vector_master_pem_loads_as_the_vector_master_key(tmp_path: Path) -> None:
    keys = POSITIVE["keys"]
    assert (
        Signer.from_pem(keys["master_private_pem"]).master_public_key_hex
        == (keys["master_public_hex"])
    )
    path = tmp_path / "master-key.pem"
    path.write_text(keys["master_private_pem"])
    assert Signer(path).master_public_key_hex == keys["master_public_hex"]


@pytest.mark.parametrize("case", cases(NEGATIVE))
def test_negative_header_is_refused(case: dict[str, Any]) -> None:
    assert (case["status"], case["code"]) == (400, "INVALID_PROOF")
    with pytest.raises(InvalidProofError) as refused:
        parse_proof(case["header"])
    if "message" in case:
        assert str(refused.value) == case["message"]


@pytest.mark.parametrize("case", cases(EDGE))
def test_edge_header_parses_to_the_expected_fields(case: dict[str, Any]) -> None:
    assert len(case["header"].encode("utf-8")) == case["length_bytes"]
    proof = parse_proof(case["header"])
    expect = case["expect"]
    assert proof.mk.hex() == expect["mk_hex"]
    assert proof.ek.hex() == expect["ek_hex"]
    assert proof.exp == int(expect["exp"])
    assert proof.pur == expect["pur"]
    assert proof.b.hex() == expect["b_hex"]
    assert proof.ts == int(expect["ts"])
    assert proof.n.hex() == expect["n_hex"]
    assert proof.s.hex() == expect["s_hex"]
    assert proof.extra == expect["extra"]


@pytest.mark.parametrize("case", cases(EDGE))
def test_edge_header_signatures_cover_its_binding_and_request(case: dict[str, Any]) -> None:
    """The parsed fields rebuild the exact signed bytes (§2, §3)."""
    proof = parse_proof(case["header"])
    request = case["request"]
    Ed25519PublicKey.from_public_bytes(proof.mk).verify(
        proof.b, binding_message(proof.ek, proof.exp, proof.pur)
    )
    canonical = canonical_request(
        request["method"],
        request["target"],
        proof.ts,
        b64url(proof.n),
        body_digest(bytes.fromhex(request["body_hex"])),
    )
    Ed25519PublicKey.from_public_bytes(proof.ek).verify(proof.s, canonical)
