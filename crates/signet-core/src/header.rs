//! The `Signet-Proof` header (spec §4): strict parsing and canonical formatting.
//!
//! [`ProofHeader`] is syntax only: every field has the right shape, nothing is
//! verified yet. Parsing allocates nothing unless the header carries unknown
//! keys (their duplicates must still be detected).

use std::fmt;

use crate::b64;
use crate::error::ParseError;

/// The largest field value the spec allows, in bytes.
pub const MAX_HEADER_LEN: usize = 4096;

/// The largest purpose the spec allows, in characters (all ASCII).
pub const MAX_PURPOSE_LEN: usize = 64;

/// The name of the header that carries the proof.
pub const HEADER_NAME: &str = "signet-proof";

/// A binding purpose: 0–64 characters from `A-Z a-z 0-9 . _ : / -`.
///
/// Stored inline, so a parsed proof needs no heap allocation.
#[derive(Clone, Copy, PartialEq, Eq, Hash)]
pub struct Purpose {
    bytes: [u8; MAX_PURPOSE_LEN],
    len: u8,
}

impl Purpose {
    /// The empty purpose (written `pur=`).
    pub const EMPTY: Purpose = Purpose {
        bytes: [0; MAX_PURPOSE_LEN],
        len: 0,
    };

    /// Checks a purpose against §4 and stores it.
    ///
    /// ```
    /// use signet_core::Purpose;
    /// assert_eq!(Purpose::new("ci:deploy").unwrap().as_str(), "ci:deploy");
    /// assert!(Purpose::new("has space").is_err());
    /// ```
    pub fn new(purpose: &str) -> Result<Self, ParseError> {
        Self::from_bytes(purpose.as_bytes()).ok_or(ParseError::InvalidValue("pur"))
    }

    fn from_bytes(raw: &[u8]) -> Option<Self> {
        if raw.len() > MAX_PURPOSE_LEN || !raw.iter().copied().all(is_purpose_char) {
            return None;
        }
        let mut bytes = [0; MAX_PURPOSE_LEN];
        bytes[..raw.len()].copy_from_slice(raw);
        Some(Purpose {
            bytes,
            len: raw.len() as u8,
        })
    }

    /// The purpose as text.
    pub fn as_str(&self) -> &str {
        // Only ASCII bytes are ever stored, so this cannot fail.
        std::str::from_utf8(self.as_bytes()).unwrap_or_default()
    }

    /// The purpose's bytes, as signed in the binding.
    pub fn as_bytes(&self) -> &[u8] {
        &self.bytes[..usize::from(self.len)]
    }
}

impl fmt::Debug for Purpose {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Debug::fmt(self.as_str(), f)
    }
}

impl fmt::Display for Purpose {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

fn is_purpose_char(c: u8) -> bool {
    c.is_ascii_alphanumeric() || matches!(c, b'.' | b'_' | b':' | b'/' | b'-')
}

/// A syntactically valid `Signet-Proof` header: the eight v1 fields, decoded.
///
/// Parsed is not verified: see [`crate::Verifier`] for the steps that turn
/// this into a [`crate::VerifiedProof`].
#[derive(Clone, PartialEq, Eq)]
pub struct ProofHeader {
    /// Master public key.
    pub mk: [u8; 32],
    /// Ephemeral public key.
    pub ek: [u8; 32],
    /// Binding expiry, unix seconds.
    pub exp: u64,
    /// Binding purpose.
    pub pur: Purpose,
    /// Master signature over the binding message.
    pub b: [u8; 64],
    /// Request time, unix seconds.
    pub ts: u64,
    /// Request nonce.
    pub n: [u8; 16],
    /// Ephemeral signature over the canonical request.
    pub s: [u8; 64],
}

impl fmt::Debug for ProofHeader {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ProofHeader")
            .field("mk", &b64::encode(&self.mk))
            .field("ek", &b64::encode(&self.ek))
            .field("exp", &self.exp)
            .field("pur", &self.pur)
            .field("ts", &self.ts)
            .field("n", &b64::encode(&self.n))
            .finish_non_exhaustive()
    }
}

/// Formats the header value with the fields in the spec's order.
impl fmt::Display for ProofHeader {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "v1;mk={};ek={};exp={};pur={};b={};ts={};n={};s={}",
            b64::encode(&self.mk),
            b64::encode(&self.ek),
            self.exp,
            self.pur,
            b64::encode(&self.b),
            self.ts,
            b64::encode(&self.n),
            b64::encode(&self.s),
        )
    }
}

/// The eight required fields, in the spec's order; the index is the bit in `seen`.
const FIELDS: [&str; 8] = ["mk", "ek", "exp", "pur", "b", "ts", "n", "s"];

/// The original token-store keys (§4).
const LEGACY_KEYS: [&str; 3] = ["m", "jti", "t"];

impl ProofHeader {
    /// Parses a `Signet-Proof` field value (after HTTP removed surrounding
    /// whitespace), ignoring unknown keys.
    ///
    /// ```
    /// use signet_core::{ProofHeader, ParseError};
    /// assert_eq!(ProofHeader::parse(b""), Err(ParseError::Empty));
    /// assert_eq!(ProofHeader::parse(b"v1;m=compact"), Err(ParseError::TokenStoreForm));
    /// ```
    pub fn parse(value: &[u8]) -> Result<Self, ParseError> {
        Self::parse_with(value, |_, _| {})
    }

    /// Parses like [`ProofHeader::parse`] and hands every unknown element
    /// (key, value) to `on_unknown`, in order, once the whole header is valid.
    pub fn parse_with(
        value: &[u8],
        mut on_unknown: impl FnMut(&str, &str),
    ) -> Result<Self, ParseError> {
        if value.is_empty() {
            return Err(ParseError::Empty);
        }
        if value.len() > MAX_HEADER_LEN {
            return Err(ParseError::TooLong(value.len()));
        }
        if let Some(offset) = value.iter().position(|&c| !(0x21..=0x7e).contains(&c)) {
            return Err(ParseError::InvalidByte {
                byte: value[offset],
                offset,
            });
        }
        // Every byte is visible ASCII from here on, so the value is valid UTF-8.
        let value = std::str::from_utf8(value).map_err(|_| ParseError::InvalidValue("header"))?;

        let mut elements = value.split(';');
        if elements.next() != Some("v1") {
            return Err(ParseError::BadVersion);
        }

        let mut known: [Option<&str>; 8] = [None; 8];
        let mut legacy = false;
        let mut unknown: Vec<(&str, &str)> = Vec::new();
        for element in elements {
            if element.is_empty() {
                return Err(ParseError::EmptyElement);
            }
            let (key, val) = element.split_once('=').ok_or(ParseError::MissingEquals)?;
            if !is_valid_key(key) {
                return Err(ParseError::InvalidKey);
            }
            if let Some(i) = FIELDS.iter().position(|&f| f == key) {
                if known[i].replace(val).is_some() {
                    return Err(ParseError::DuplicateKey);
                }
            } else {
                legacy |= LEGACY_KEYS.contains(&key);
                unknown.push((key, val));
            }
        }
        if unknown.len() > 1 {
            let mut keys: Vec<&str> = unknown.iter().map(|&(k, _)| k).collect();
            keys.sort_unstable();
            if keys.windows(2).any(|w| w[0] == w[1]) {
                return Err(ParseError::DuplicateKey);
            }
        }
        let [mk, ek, exp, pur, b, ts, n, s] = known;
        if legacy && (mk.is_none() || ek.is_none()) {
            return Err(ParseError::TokenStoreForm);
        }
        let header = ProofHeader {
            mk: b64_field(mk, "mk")?,
            ek: b64_field(ek, "ek")?,
            exp: int_field(exp, "exp")?,
            pur: Purpose::from_bytes(required(pur, "pur")?.as_bytes())
                .ok_or(ParseError::InvalidValue("pur"))?,
            b: b64_field(b, "b")?,
            ts: int_field(ts, "ts")?,
            n: b64_field(n, "n")?,
            s: b64_field(s, "s")?,
        };
        for (key, val) in unknown {
            on_unknown(key, val);
        }
        Ok(header)
    }
}

fn required<'a>(value: Option<&'a str>, name: &'static str) -> Result<&'a str, ParseError> {
    value.ok_or(ParseError::MissingField(name))
}

fn b64_field<const N: usize>(
    value: Option<&str>,
    name: &'static str,
) -> Result<[u8; N], ParseError> {
    b64::decode_array(required(value, name)?).ok_or(ParseError::InvalidValue(name))
}

fn int_field(value: Option<&str>, name: &'static str) -> Result<u64, ParseError> {
    parse_u64(required(value, name)?).ok_or(ParseError::InvalidValue(name))
}

/// `key = 1*32( %x61-7A / DIGIT / "_" / "-" )`
fn is_valid_key(key: &str) -> bool {
    (1..=32).contains(&key.len())
        && key
            .bytes()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == b'_' || c == b'-')
}

/// 1–19 ASCII digits, no sign, no leading zero except `0` itself.
fn parse_u64(text: &str) -> Option<u64> {
    let bytes = text.as_bytes();
    let valid = (1..=19).contains(&bytes.len())
        && bytes.iter().all(u8::is_ascii_digit)
        && (bytes[0] != b'0' || bytes.len() == 1);
    if valid {
        // 19 digits always fit in a u64.
        text.parse().ok()
    } else {
        None
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn integers_follow_the_spec() {
        assert_eq!(parse_u64("0"), Some(0));
        assert_eq!(
            parse_u64("9999999999999999999"),
            Some(9_999_999_999_999_999_999)
        );
        assert_eq!(parse_u64("00"), None);
        assert_eq!(parse_u64("01"), None);
        assert_eq!(parse_u64("+1"), None);
        assert_eq!(parse_u64(""), None);
        assert_eq!(parse_u64("10000000000000000000"), None);
    }

    #[test]
    fn keys_follow_the_grammar() {
        assert!(is_valid_key("x-future_1"));
        assert!(is_valid_key(&"a".repeat(32)));
        assert!(!is_valid_key(&"a".repeat(33)));
        assert!(!is_valid_key(""));
        assert!(!is_valid_key("MK"));
        assert!(!is_valid_key("a.b"));
    }

    #[test]
    fn purpose_accepts_exactly_its_charset() {
        assert!(Purpose::new("").is_ok());
        assert!(Purpose::new("AZaz09._:/-").is_ok());
        assert!(Purpose::new(&"p".repeat(64)).is_ok());
        assert!(Purpose::new(&"p".repeat(65)).is_err());
        for bad in ["a b", "a+b", "a@b", "a%b", "a=b", "a,b", "a~b", "a\"b", "é"] {
            assert!(Purpose::new(bad).is_err(), "{bad}");
        }
    }
}
