//! `content_digest.json` (spec §3.1, amendment 2) byte for byte, and
//! property tests of the `Content-Digest` parser.

use base64::alphabet::STANDARD as STANDARD_ALPHABET;
use base64::engine::general_purpose::STANDARD;
use base64::engine::{DecodePaddingMode, GeneralPurpose, GeneralPurposeConfig};
use base64::Engine as _;
use proptest::prelude::*;
use serde::Deserialize;
use sha2::{Digest as _, Sha256};
use signet_core::{
    parse_public_key_hex, BodyDigest, ContentDigest, ContentDigestError, ErrorCode, Limits,
    ProofHeader, RequestParts, Verifier, MAX_CONTENT_DIGEST_LEN,
};

const CONTENT_DIGEST_JSON: &str = include_str!(concat!(
    env!("CARGO_MANIFEST_DIR"),
    "/tests/vectors/content_digest.json"
));

#[derive(Debug, Deserialize)]
struct DigestFile {
    spec: String,
    base_request: BaseRequest,
    bodies: Vec<Body>,
    declared: Vec<Declared>,
    invalid: Vec<Invalid>,
    absent: Vec<Absent>,
}

#[derive(Debug, Deserialize)]
struct BaseRequest {
    mk: String,
    method: String,
    target: String,
    body_hex: String,
    body_digest: String,
    header: String,
    verify_at: u64,
    content_digest: String,
}

#[derive(Debug, Deserialize)]
struct Body {
    id: String,
    length: usize,
    body_hex: Option<String>,
    body_formula: Option<String>,
    sha256_hex: String,
    content_digest: String,
    body_digest: String,
}

#[derive(Debug, Deserialize)]
struct Declared {
    id: String,
    field_lines: Vec<String>,
    declared_sha256_hex: String,
    body_digest: String,
    matches_body: String,
}

#[derive(Debug, Deserialize)]
struct Invalid {
    id: String,
    field_lines: Vec<String>,
    status: u16,
    code: String,
}

#[derive(Debug, Deserialize)]
struct Absent {
    id: String,
    field_lines: Vec<String>,
}

fn file() -> DigestFile {
    let file: DigestFile = serde_json::from_str(CONTENT_DIGEST_JSON).expect("content_digest.json");
    assert_eq!(file.spec, "signet-proof-v1.md");
    assert!(
        !file.bodies.is_empty()
            && !file.declared.is_empty()
            && !file.invalid.is_empty()
            && !file.absent.is_empty()
    );
    file
}

fn parse(lines: &[String]) -> Result<ContentDigest, ContentDigestError> {
    ContentDigest::parse(lines.iter().map(String::as_bytes))
}

fn body_of(body: &Body) -> Vec<u8> {
    match (&body.body_hex, &body.body_formula) {
        (Some(hex_text), _) => hex::decode(hex_text).expect("body_hex"),
        (None, Some(formula)) => {
            assert_eq!(formula, "byte i (0-based) is i mod 251", "{}", body.id);
            (0..body.length).map(|i| (i % 251) as u8).collect()
        }
        (None, None) => panic!("{}: no body", body.id),
    }
}

fn digest_hex(hex_text: &str) -> BodyDigest {
    BodyDigest(
        hex::decode(hex_text)
            .ok()
            .and_then(|bytes| bytes.try_into().ok())
            .unwrap_or_else(|| panic!("32 bytes of hex: {hex_text}")),
    )
}

fn assert_no_failures(what: &str, failures: &[String]) {
    assert!(
        failures.is_empty(),
        "{} {what} failed:\n  {}",
        failures.len(),
        failures.join("\n  ")
    );
}

#[test]
fn every_body_s_content_digest_and_body_digest_are_its_sha256() {
    let file = file();
    for case in &file.bodies {
        let id = &case.id;
        let body = body_of(case);
        assert_eq!(body.len(), case.length, "{id}: length");
        let digest = BodyDigest::of(&body);
        assert_eq!(hex::encode(digest.0), case.sha256_hex, "{id}: sha256_hex");
        assert_eq!(
            hex::encode(Sha256::digest(&body)),
            case.sha256_hex,
            "{id}: sha256_hex (independent)"
        );
        assert_eq!(
            digest.to_content_digest(),
            case.content_digest,
            "{id}: content_digest"
        );
        assert_eq!(digest.to_base64url(), case.body_digest, "{id}: body_digest");
        assert_eq!(
            ContentDigest::parse([case.content_digest.as_bytes()]),
            Ok(ContentDigest::Declared(digest)),
            "{id}: parses back"
        );
    }
}

#[test]
fn every_declared_value_declares_its_digest() {
    let file = file();
    let mut failures = Vec::new();
    for case in &file.declared {
        let id = &case.id;
        let expected = digest_hex(&case.declared_sha256_hex);
        if expected.to_base64url() != case.body_digest {
            failures.push(format!("{id}: body_digest"));
        }
        match file.bodies.iter().find(|b| b.id == case.matches_body) {
            Some(body) if body.sha256_hex == case.declared_sha256_hex => {}
            _ => failures.push(format!("{id}: matches_body {}", case.matches_body)),
        }
        let got = parse(&case.field_lines);
        if got != Ok(ContentDigest::Declared(expected)) {
            failures.push(format!("{id}: {got:?}"));
        }
    }
    assert_no_failures("declared values", &failures);
}

#[test]
fn every_invalid_value_is_refused_as_invalid_content_digest() {
    let file = file();
    let mut failures = Vec::new();
    for case in &file.invalid {
        let id = &case.id;
        if (case.status, case.code.as_str())
            != (
                ErrorCode::InvalidContentDigest.status(),
                ErrorCode::InvalidContentDigest.as_str(),
            )
        {
            failures.push(format!("{id}: expects {} {}", case.status, case.code));
        }
        match parse(&case.field_lines) {
            Err(error) if error.code() == ErrorCode::InvalidContentDigest => {}
            other => failures.push(format!("{id}: {other:?}")),
        }
    }
    assert_no_failures("invalid values", &failures);
}

#[test]
fn every_absent_value_declares_nothing() {
    let file = file();
    let mut failures = Vec::new();
    for case in &file.absent {
        let got = parse(&case.field_lines);
        if got != Ok(ContentDigest::Absent) {
            failures.push(format!("{}: {got:?}", case.id));
        }
    }
    assert_no_failures("absent values", &failures);
}

#[test]
fn the_base_request_verifies_with_the_declared_digest_before_its_body_is_read() {
    let base = file().base_request;
    let Ok(ContentDigest::Declared(declared)) =
        ContentDigest::parse([base.content_digest.as_bytes()])
    else {
        panic!("the base request declares its digest");
    };
    assert_eq!(declared.to_base64url(), base.body_digest);
    let body = hex::decode(&base.body_hex).expect("body_hex");
    assert_eq!(declared, BodyDigest::of(&body));
    let master =
        parse_public_key_hex("d75a980182b10ab7d54bfed3c964073a0ee172f3daa62325af021a68f707511a")
            .expect("the vectors' master key");
    assert_eq!(
        signet_core::base64url::encode(master.as_bytes()),
        base.mk,
        "the vectors' master key"
    );
    let verifier = Verifier::new([master], Limits::default());
    let proof = ProofHeader::parse(base.header.as_bytes()).expect("header");
    // The canonical request takes body_digest from the declared value.
    let request = RequestParts {
        method: &base.method,
        target: &base.target,
        body_digest: declared,
    };
    assert!(verifier
        .check(&proof, base.verify_at)
        .and_then(|checked| checked.verify(&request))
        .is_ok());
}

// ---------------------------------------------------------------------------
// Properties
// ---------------------------------------------------------------------------

/// RFC 8941's own leniency for Byte Sequences (§4.2.7: padding synthesized
/// where missing, non-zero pad bits accepted), as the `base64` crate
/// implements it (and the `sfv` crate uses it).
const LENIENT: GeneralPurpose = GeneralPurpose::new(
    &STANDARD_ALPHABET,
    GeneralPurposeConfig::new()
        .with_decode_allow_trailing_bits(true)
        .with_decode_padding_mode(DecodePaddingMode::Indifferent),
);

fn arb_key() -> impl Strategy<Value = String> {
    prop_oneof![
        3 => prop::sample::select(vec!["sha-512", "md5", "sha256", "unixsum", "id-sha-256"])
            .prop_map(str::to_owned),
        1 => "[a-z*][a-z0-9_.*-]{0,8}".prop_filter("not sha-256", |k| k != "sha-256"),
    ]
}

/// A valid RFC 8941 bare item of any type.
fn arb_bare_item() -> impl Strategy<Value = String> {
    prop_oneof![
        (-999_999_999_999_999i64..=999_999_999_999_999).prop_map(|i| i.to_string()),
        ("-?[0-9]{1,12}", "[0-9]{1,3}").prop_map(|(i, f)| format!("{i}.{f}")),
        "[ !#-\\[\\]-~]{0,10}".prop_map(|s| format!("\"{s}\"")),
        "\"(\\\\\"|\\\\\\\\|[a-z ]){0,6}\"",
        "[A-Za-z*][!#$%&'*+.^_`|~0-9A-Za-z:/-]{0,10}",
        prop::collection::vec(any::<u8>(), 0..70).prop_map(|b| format!(":{}:", STANDARD.encode(b))),
        prop::sample::select(vec!["?0", "?1"]).prop_map(str::to_owned),
    ]
}

fn arb_parameters() -> impl Strategy<Value = String> {
    prop::collection::vec((arb_key(), prop::option::of(arb_bare_item())), 0..3).prop_map(|params| {
        params
            .into_iter()
            .map(|(key, value)| match value {
                Some(value) => format!(";{key}={value}"),
                None => format!(";{key}"),
            })
            .collect()
    })
}

/// One member that is valid RFC 8941 and not `sha-256`.
fn arb_member() -> impl Strategy<Value = String> {
    let item = (arb_bare_item(), arb_parameters()).prop_map(|(i, p)| format!("{i}{p}"));
    let inner = (
        prop::collection::vec((arb_bare_item(), arb_parameters()), 0..4),
        arb_parameters(),
    )
        .prop_map(|(items, p)| {
            let items: Vec<String> = items
                .into_iter()
                .map(|(i, ip)| format!("{i}{ip}"))
                .collect();
            format!("({}){p}", items.join(" "))
        });
    (
        arb_key(),
        prop_oneof![
            3 => item.prop_map(|v| format!("={v}")),
            1 => inner.prop_map(|v| format!("={v}")),
            1 => arb_parameters(),
        ],
    )
        .prop_map(|(k, v)| format!("{k}{v}"))
}

fn arb_separator() -> impl Strategy<Value = &'static str> {
    prop::sample::select(vec![",", ", ", " ,", "\t,\t", " , "])
}

/// Valid members around a `sha-256` member with `digest`, joined by valid
/// separators; and the same members without it.
fn arb_dictionary() -> impl Strategy<Value = (String, String, [u8; 32])> {
    (
        prop::collection::vec((arb_member(), arb_separator()), 0..5),
        any::<prop::sample::Index>(),
        any::<[u8; 32]>(),
        arb_parameters(),
    )
        .prop_map(|(members, at, digest, params)| {
            let join = |members: &[(String, &str)]| {
                let mut out = String::new();
                for (i, (member, separator)) in members.iter().enumerate() {
                    if i > 0 {
                        out.push_str(separator);
                    }
                    out.push_str(member);
                }
                out
            };
            let without = join(&members);
            let mut with = members;
            let sha256 = format!("{}{params}", BodyDigest(digest).to_content_digest());
            let position = at.index(with.len() + 1);
            with.insert(position, (sha256, ", "));
            (join(&with), without, digest)
        })
}

proptest! {
    #[test]
    fn parsing_arbitrary_bytes_never_panics(
        lines in prop::collection::vec(prop::collection::vec(any::<u8>(), 0..300), 0..3)
    ) {
        let _ = ContentDigest::parse(lines.iter().map(Vec::as_slice));
    }

    #[test]
    fn parsing_near_valid_text_never_panics(text in "[a-z0-9=:;,\"?()*+/ .\\\\-]{0,120}") {
        let _ = ContentDigest::parse([text.as_bytes()]);
    }

    #[test]
    fn any_digest_formats_to_a_value_that_declares_it(digest in any::<[u8; 32]>()) {
        let value = BodyDigest(digest).to_content_digest();
        prop_assert_eq!(value.len(), 54);
        prop_assert_eq!(
            ContentDigest::parse([value.as_bytes()]),
            Ok(ContentDigest::Declared(BodyDigest(digest)))
        );
    }

    /// Any valid Dictionary: with one `sha-256` member it declares that
    /// digest, without one it is absent, with two it is invalid.
    #[test]
    fn valid_dictionaries_declare_exactly_their_one_sha256_member(
        (with, without, digest) in arb_dictionary()
    ) {
        prop_assert_eq!(
            ContentDigest::parse([with.as_bytes()]),
            Ok(ContentDigest::Declared(BodyDigest(digest))),
            "{}", with
        );
        prop_assert_eq!(ContentDigest::parse([without.as_bytes()]), Ok(ContentDigest::Absent), "{}", without);
        let twice = format!("{with}, {}", BodyDigest(digest).to_content_digest());
        prop_assert_eq!(
            ContentDigest::parse([twice.as_bytes()]),
            Err(ContentDigestError::DuplicateSha256)
        );
        prop_assert_eq!(
            ContentDigest::parse([with.as_bytes(), with.as_bytes()]),
            Err(ContentDigestError::SeveralFieldLines)
        );
    }

    /// An ignored member's Byte Sequence is RFC 8941 base64 exactly when
    /// the `base64` crate's lenient decoder (what RFC 8941 asks parsers to
    /// accept) decodes it.
    #[test]
    fn an_ignored_byte_sequence_parses_exactly_when_it_is_base64(
        text in prop_oneof![
            "[A-Za-z0-9+/=]{0,12}",
            "[A-Za-z0-9+/]{0,12}={0,4}",
        ],
    ) {
        let value = format!("sha-512=:{text}:");
        let ours = ContentDigest::parse([value.as_bytes()]);
        let decodes = LENIENT.decode(&text).is_ok();
        prop_assert_eq!(ours.is_ok(), decodes, "{:?}: {:?}", text, ours);
        if decodes {
            prop_assert_eq!(ours, Ok(ContentDigest::Absent));
        }
    }

    /// The `sha-256` member is declared exactly when its text is the
    /// canonical encoding of 32 bytes.
    #[test]
    fn a_sha256_member_declares_only_its_canonical_32_byte_form(
        digest in any::<[u8; 32]>(),
        edit in prop_oneof![
            Just(None),
            (0usize..44, "[A-Za-z0-9+/=]").prop_map(Some),
        ],
    ) {
        let mut text = STANDARD.encode(digest).into_bytes();
        if let Some((at, replacement)) = &edit {
            text[*at] = replacement.as_bytes()[0];
        }
        let text = String::from_utf8(text).unwrap_or_default();
        let value = format!("sha-256=:{text}:");
        let ours = ContentDigest::parse([value.as_bytes()]);
        let canonical = STANDARD
            .decode(&text)
            .ok()
            .filter(|bytes| bytes.len() == 32 && STANDARD.encode(bytes) == text);
        match canonical {
            Some(bytes) => prop_assert_eq!(
                ours,
                Ok(ContentDigest::Declared(BodyDigest(bytes.try_into().unwrap_or_default())))
            ),
            None => prop_assert!(ours.is_err(), "{}: {:?}", text, ours),
        }
    }
}

#[test]
fn the_length_limit_is_the_documented_one() {
    let value = format!(
        "{}sha-256=:{}:",
        "a=1, ".repeat(MAX_CONTENT_DIGEST_LEN / 5),
        STANDARD.encode([0u8; 32])
    );
    assert!(value.len() > MAX_CONTENT_DIGEST_LEN);
    assert_eq!(
        ContentDigest::parse([value.as_bytes()]),
        Err(ContentDigestError::TooLong(value.len()))
    );
}
