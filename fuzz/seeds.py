#!/usr/bin/env python3
"""Writes the seed corpus of every fuzz target into seeds/<target>/.

Seeds come from the spec vectors (crates/signet-core/tests/vectors/) and
from inputs of the unit and integration tests. `cargo fuzz cmin` (see
README.md) then merges them with what the fuzzer found into corpus/.
"""
import hashlib
import json
import os
import struct

HERE = os.path.dirname(os.path.abspath(__file__))
VECTORS = os.path.join(HERE, "..", "crates", "signet-core", "tests", "vectors")


def vectors(name):
    with open(os.path.join(VECTORS, name)) as f:
        return json.load(f)["cases"]


def write(target, items):
    out = os.path.join(HERE, "seeds", target)
    os.makedirs(out, exist_ok=True)
    for data in items:
        if isinstance(data, str):
            data = data.encode()
        name = hashlib.sha1(data).hexdigest()
        with open(os.path.join(out, name), "wb") as f:
            f.write(data)


def lp(data):
    data = data.encode() if isinstance(data, str) else data
    return bytes([len(data)]) + data[:255]


def digest_sections(name):
    with open(os.path.join(VECTORS, name)) as f:
        file = json.load(f)
    return file["declared"] + file["invalid"] + file["absent"], file["bodies"]


positive = vectors("positive.json")
negative = vectors("parse_negative.json")
edge = vectors("parse_positive_edge.json")

write("proof_header", [c["header"] for c in positive + negative + edge])

write(
    "canonical_request",
    [
        struct.pack("<Q", c["ts"]) + bytes.fromhex(c["n_hex"]) + lp(c["method"]) + lp(c["target"])
        + bytes.fromhex(c["body_hex"])
        for c in positive
    ],
)

CHARSET = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789._:/-"


def verify_seed(now, exp_off, ts_off, pur, method, target, body, mutations=b""):
    pur_bytes = bytes(CHARSET.index(c) for c in pur.encode())
    return (
        bytes([1, 2]) + struct.pack("<H", now) + struct.pack("<h", exp_off) + struct.pack("<b", ts_off)
        + lp(pur_bytes) + bytes(range(16)) + lp(method) + lp(target) + lp(body) + mutations
    )


def mutation(what, at, value):
    return bytes([what]) + struct.pack("<H", at) + bytes([value])


write(
    "verify",
    [
        verify_seed(100, 300, 0, "ci:deploy", "GET", "/repos/o/r/issues?state=open", b""),
        verify_seed(100, 900, -30, "", "POST", "/repos/o/r/issues", b'{"title":"hi"}'),
        verify_seed(100, 901, 0, "", "GET", "/user", b""),
        verify_seed(100, -1, 0, "", "GET", "/user", b""),
        verify_seed(100, 300, 31, "", "GET", "/user", b""),
        verify_seed(100, 300, 0, "ci", "GET", "/user", b"", mutation(0, 40, 1)),
        verify_seed(100, 300, 0, "ci", "GET", "/user", b"", mutation(5, 7, ord(";"))),
        verify_seed(100, 300, 0, "ci", "GET", "/user", b"", mutation(1, 0, 0x20)),
        verify_seed(100, 300, 0, "ci", "GET", "/user", b"", mutation(7, 5, ord("x"))),
        verify_seed(100, 300, 0, "ci", "PUT", "/user", b"body", mutation(3, 1, 1)),
        verify_seed(100, 300, 0, "ci", "GET", "/user", b"", mutation(4, 0, 200)),
        verify_seed(100, 300, 0, "ci", "GET", "/user", b"", mutation(10, 300, ord("="))),
    ],
)

# The 0xff mode of `verify`: the vectors' own proofs, as sent.
write(
    "verify",
    [
        b"\xff" + struct.pack("<H", c["verify_at"] - 1_700_000_000) + c["header"].encode() + b"\n"
        + c["method"].encode() + b"\n" + c["target"].encode() + b"\n" + bytes.fromhex(c["body_hex"])
        for c in positive
    ],
)

# `Content-Digest` field lines, one per input line (content_digest.json).
digest_cases, digest_bodies = digest_sections("content_digest.json")
write(
    "content_digest",
    ["\n".join(c["field_lines"]) for c in digest_cases]
    + [b["content_digest"] for b in digest_bodies]
    + [
        'a=1, b=-1.5, c="x\\"y", d=tok/en:x, e=?0, f=(1 "two" :AA==:);p, g;x;y=?1',
        "sha-256=:X48E9qOokqqrvdts8nOJRJN3OWDUoyWxBf7kbu9DBPE=:;x=(1)",
        "a=:YQ=:, sha-256=:X48E9qOokqqrvdts8nOJRJN3OWDUoyWxBf7kbu9DBPE=:",
        "a=@1659578233, sha-256=:X48E9qOokqqrvdts8nOJRJN3OWDUoyWxBf7kbu9DBPE=:",
    ],
)

write(
    "links",
    [
        b"\x00" + b'<https://api.github.com/repositories/1/issues?page=2>; rel="next", <https://api.github.com/repositories/1/issues?page=9>; rel="last"',
        b"\x00" + b'<https://api.github.com.evil.example/x>; rel="next", <https://api.github.com:8443/x>; rel="last"',
        b"\x00" + b'<https://other.example/x>; title="<https://api.github.com/y>", <https://api.github.com>; rel="next"',
        b"\x01" + b'<https://ghe.example/api/v3/repos?page=2>; rel="next"\n<https://ghe.example/api/v30/x>; rel="last"',
        b"\x01" + b"Lhttps://ghe.example/api/v3/repos/o/r/releases/assets/1",
        b"\x00" + b"Lhttps://api.github.com\nLhttps://api.github.com?x#y\nLhttp://api.github.com/x",
        b"\x02" + b'<http://127.0.0.1:9/a>; rel="next"; title*=UTF-8\'\'x, <http://127.0.0.1:9',
        b"\x03" + b'<https://api.github.com/>; rel="a\\"<https://api.github.com/x>", <https://api.github.com/b>',
    ],
)

write(
    "json_urls",
    [
        b"\x00\x00" + b'{"url":"https://api.github.com/repos/o/r","html_url":"https://github.com/o/r"}',
        b"\x00\x03\x05\x00\x10\x00\x20\x00" + b'[{"url":"https:\\/\\/api.github.com\\/repos\\/o\\/r","issues_url":"https://api.github.com/repos/o/r/issues{/number}"}]',
        b"\x01\x02\x03\x00\x09\x00" + b'{"a":"https://proxy.internal/gh/x","b":"http://proxy.internal","c":"https://api.github.com?x"}',
        b"\x02\x01\x0c\x00" + b'{"x":"https://ghe.example/api/v3/repos","y":"https://ghe.example/api/v30","z":"https://ghe.example"}',
        b"\x03\x00" + b'{"body":"see https://api.github.com/x","url":"https://api.github.com.evil.example/x"}',
        b"\x00\x01\x01\x00" + b'"https://api.github.com"https://api.github.com/"',
    ],
)

KEY_A = "d75a980182b10ab7d54bfed3c964073a0ee172f3daa62325af021a68f707511a"
KEY_B = "3d4017c3e843895a92b70aa74d1b7ebc9c982ccf2ec4968cc0cd55f12af4660c"
write(
    "keys_file",
    [
        f'[[client]]\nname = "release-bot"\nkey = "{KEY_A}"\npurposes = ["github-api"]\nallow = ["GET /repos/acme/**", "POST /repos/acme/*/issues"]\nrate = "600/min"\n\n[[client]]\nname = "ci"\nkey = "{KEY_B}"\n',
        f'[[client]]\nname = "a"\nkey = "{KEY_A}"\ngithub = {{ repositories = ["acme/app"], permissions = {{ issues = "write", contents = "read" }} }}\n',
        f'[[client]]\nname = "a"\nkey = "{KEY_A}"\nallows = ["GET /x"]',
        f'[[client]]\nname = "a"\nkey = "{KEY_A}"\n[[client]]\nname = "b"\nkey = "{KEY_A}"',
        f'[[client]]\nname = "a"\nkey = "{KEY_A}"\nallow = ["GET /a*"]',
        f'[[client]]\nname = "a"\nkey = "{KEY_A}"\ngithub = {{ permissions = {{ contents = "all" }} }}',
        f'[[client]]\nname = "bot"\nkey = "{KEY_A}"\nrate = "3/min"\nallow = ["* /**", " GET  /x/ "]\n',
        "[[client]\n",
        "",
    ],
)

write(
    "agent_route",
    [
        b"\x40/repos/o/r?page=2\n127.0.0.1:7180",
        b"\x40/api/v3/repos/o/r\nlocalhost:7180",
        b"\x48/api/v3?x\n[::1]:7180",
        b"\x01/api/graphql\n",
        b"\x00http://api.github.localhost/user",
        b"\x00http://API.github.localhost:80/user",
        b"\x00http://localhost:7180/api/v3/user",
        b"\x00http://evil.example/user",
        b"\x02api.github.com:443",
        b"\x60/user\nagent.internal:7180",
        b"\x40/user\nuser@127.0.0.1",
        b"\x13*",
        b"\x10/api/v30/x?\n",
    ],
)

write(
    "request_target",
    [
        bytes([len(m)]) + m.encode() + t.encode()
        for m, t in [
            ("GET", "/repos/o/r?page=2"),
            ("get", "/repos/o/r/../../x"),
            ("TRACE", "/a/%2e%2E/b"),
            ("CONNECT", "api.github.com:443"),
            ("OPTIONS", "*"),
            ("POST", "http://evil.example/x"),
            ("PATCH", "//evil.example/x"),
            ("DELETE", "/a/.../b/.x/x./%2e"),
            ("PUT", "/x?/../.."),
            ("HEAD", "/a/./b"),
            ("GET", "/%2E"),
            ("GET", "/a%2fb/%2e%2fc"),
        ]
    ],
)


def pkt(payload):
    payload = payload.encode() if isinstance(payload, str) else payload
    return b"%04x" % (len(payload) + 4) + payload


Z40, A40, B40 = "0" * 40, "a" * 40, "b" * 40
Z64, A64, B64 = "0" * 64, "a" * 64, "b" * 64
GIT_CAPS = " report-status-v2 side-band-64k quiet object-format=sha1 agent=git/2.47.3"
PACK = b"PACK\x00\x00\x00\x02\x00\x00\x00\x00" + bytes(range(20))

# The first byte picks the limits (high bit: the small ones) and the chunk
# sizes; the rest is a receive-pack body as git writes it, or broken.
git_bodies = [
    pkt(f"{Z40} {A40} refs/heads/main\0{GIT_CAPS}") + b"0000" + PACK,
    pkt(f"{A40} {B40} refs/heads/bot/x\0{GIT_CAPS}") + pkt(f"{A40} {B40} refs/heads/main")
    + pkt(f"{Z40} {B40} refs/tags/v1") + pkt(f"{Z40} {Z40} refs/heads/gone") + b"0000" + PACK,
    pkt(f"{A40} {Z40} refs/heads/old\0 report-status side-band-64k") + b"0000",
    pkt(f"shallow {A40}\n") + pkt(f"{A40} {B40} refs/heads/main\0{GIT_CAPS}") + b"0000" + PACK,
    pkt(f"shallow {A64}\n") + pkt(f"{Z64} {B64} refs/heads/main\0 report-status object-format=sha256")
    + b"0000" + PACK,
    pkt(f"{A40} {B40} refs/heads/main\0 report-status push-options") + b"0000" + pkt("ci.skip\n")
    + pkt("") + b"0000" + PACK,
    pkt(f"{A40} {B40} refs/heads/main") + b"0000",
    b"0000",
    b"00000000",
    b"",
    pkt("push-cert\0 report-status") + pkt("certificate version 0.1\n"),
    pkt(f"{A40} {B40} refs/heads/main\0 push-cert=1") + b"0000",
    pkt(f"{A64} {B64} refs/heads/main") + b"0000",
    pkt(f"{A40.upper()} {B40} refs/heads/main") + b"0000",
    pkt(f"{A40} {B40} refs/heads/a..b") + b"0000",
    pkt(f"{A40} {B40} refs/heads/x.lock") + b"0000",
    pkt(f"{A40} {B40} refs/heads/a@{{1}}") + b"0000",
    pkt(f"{A40} {B40} refs/heads/a\0 quiet") + pkt(f"{A40} {B40} refs/heads/b\0 quiet") + b"0000",
    pkt(f"{A40} {B40} refs/heads/a") + b"0001" + b"0000",
    b"0003",
    b"fff1",
    b"00A0" + b"x" * 156,
    b"".join(pkt(f"{A40} {B40} refs/heads/b{i}") for i in range(5)) + b"0000",
    b"".join(pkt(f"shallow {A40}") for i in range(10)) + b"0000",
]
write("git_receive_pack", [bytes([seed]) + body for body in git_bodies for seed in (0x05, 0x87)])
