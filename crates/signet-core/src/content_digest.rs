//! The declared body digest (spec §3.1, amendment 2): the `Content-Digest`
//! header of RFC 9530, read strictly.
//!
//! The value is an RFC 8941 Dictionary. This module parses exactly RFC
//! 8941's grammar (§3.2 and §4.2.2: keys, parameters, inner lists and every
//! bare item type), so a member the proxy ignores must still parse, with
//! the spec's three deliberate overrides, each there so that a declared
//! digest is exactly what one client wrote:
//!
//! * several field lines are invalid (RFC 8941 would join them);
//! * a `sha-256` key that appears twice is invalid (RFC 8941 keeps the last);
//! * the `sha-256` Byte Sequence must be canonical base64, padded and with
//!   zero pad bits (RFC 8941 lets a parser accept either). Other members'
//!   Byte Sequences are held to RFC 8941 only.
//!
//! RFC 8941, not its successor RFC 9651: the Date (`@`) and Display String
//! (`%"`) items are not part of the grammar here.
//!
//! The parser is one pass over at most [`MAX_CONTENT_DIGEST_LEN`] bytes,
//! allocates nothing and keeps nothing of members other than `sha-256`.
//!
//! ```
//! use signet_core::{BodyDigest, ContentDigest};
//!
//! let body = br#"{"hello": "world"}"#;
//! let value = BodyDigest::of(body).to_content_digest();
//! assert_eq!(value, "sha-256=:X48E9qOokqqrvdts8nOJRJN3OWDUoyWxBf7kbu9DBPE=:");
//! assert_eq!(
//!     ContentDigest::parse([value.as_bytes()]),
//!     Ok(ContentDigest::Declared(BodyDigest::of(body)))
//! );
//! assert_eq!(ContentDigest::parse([b"sha-512=:AA==:".as_slice()]), Ok(ContentDigest::Absent));
//! assert!(ContentDigest::parse([b"sha-256=:AA==:".as_slice()]).is_err());
//! ```

use base64::engine::general_purpose::STANDARD;
use base64::Engine as _;

use crate::error::ErrorCode;
use crate::request::BodyDigest;

/// The header's name, as `http` spells header names.
pub const CONTENT_DIGEST: &str = "content-digest";

/// The longest `Content-Digest` field value read, in bytes. A `sha-256`
/// member takes 54 bytes; with a `sha-512` member beside it, about 155. Longer
/// values are refused without being parsed, whatever they hold.
pub const MAX_CONTENT_DIGEST_LEN: usize = 8192;

/// What a request's `Content-Digest` field lines declare (spec §3.1).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ContentDigest {
    /// No field line, an empty value, or a Dictionary without a `sha-256`
    /// member: the request is handled as in v1 (body read, then hashed).
    Absent,
    /// Exactly one field line whose Dictionary has exactly one `sha-256`
    /// member, a canonical 32-byte Byte Sequence: the body's declared digest.
    Declared(BodyDigest),
}

/// Why a `Content-Digest` is invalid (spec §3.1). Every variant maps to
/// [`ErrorCode::InvalidContentDigest`]; the detail is for the log.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum ContentDigestError {
    /// More than one `Content-Digest` field line.
    #[error("several Content-Digest field lines")]
    SeveralFieldLines,
    /// The value is longer than [`MAX_CONTENT_DIGEST_LEN`].
    #[error("the Content-Digest value is {0} bytes; at most {max} are read", max = MAX_CONTENT_DIGEST_LEN)]
    TooLong(usize),
    /// The value is not an RFC 8941 Dictionary.
    #[error("not an RFC 8941 Dictionary: {reason} at offset {offset}")]
    NotADictionary {
        /// Where parsing stopped, in bytes from the start of the value.
        offset: usize,
        /// The rule that failed.
        reason: &'static str,
    },
    /// The `sha-256` key appears more than once.
    #[error("the sha-256 member appears more than once")]
    DuplicateSha256,
    /// The `sha-256` member is not a Byte Sequence (a Boolean, Integer,
    /// String, Token, Inner List, …).
    #[error("the sha-256 member is not a Byte Sequence")]
    NotAByteSequence,
    /// The `sha-256` Byte Sequence does not hold 32 bytes.
    #[error("the sha-256 member holds {0} bytes, not 32")]
    WrongLength(usize),
    /// The `sha-256` Byte Sequence holds 32 bytes, but not in canonical
    /// base64 (missing `=` padding, or non-zero pad bits).
    #[error("the sha-256 member is not canonical base64")]
    NonCanonicalBase64,
}

impl ContentDigestError {
    /// The spec code of every `Content-Digest` failure.
    pub const fn code(&self) -> ErrorCode {
        ErrorCode::InvalidContentDigest
    }
}

impl ContentDigest {
    /// Reads the values of a request's `Content-Digest` field lines, each as
    /// HTTP hands it over (leading and trailing whitespace removed). Only
    /// the header section's lines count: a trailer is never passed here.
    pub fn parse<'a, I>(field_lines: I) -> Result<ContentDigest, ContentDigestError>
    where
        I: IntoIterator<Item = &'a [u8]>,
    {
        let mut lines = field_lines.into_iter();
        let Some(value) = lines.next() else {
            return Ok(ContentDigest::Absent);
        };
        if lines.next().is_some() {
            return Err(ContentDigestError::SeveralFieldLines);
        }
        if value.len() > MAX_CONTENT_DIGEST_LEN {
            return Err(ContentDigestError::TooLong(value.len()));
        }
        let sha256 = Parser::new(value).field_value()?;
        match sha256 {
            Sha256::Missing => Ok(ContentDigest::Absent),
            Sha256::Repeated => Err(ContentDigestError::DuplicateSha256),
            Sha256::Other => Err(ContentDigestError::NotAByteSequence),
            Sha256::Bytes(base64) => decode_digest(base64).map(ContentDigest::Declared),
        }
    }
}

impl BodyDigest {
    /// The `Content-Digest` field value declaring this digest (spec §3.1):
    /// `sha-256=:<standard base64, padded>:`.
    pub fn to_content_digest(&self) -> String {
        format!("sha-256=:{}:", STANDARD.encode(self.0))
    }
}

/// The spec's third override: exactly 32 bytes, in the one canonical form.
/// `base64` is already known to be valid RFC 8941 base64.
fn decode_digest(base64: &[u8]) -> Result<BodyDigest, ContentDigestError> {
    let unpadded = base64.iter().filter(|&&c| c != b'=').count();
    let length = unpadded * 3 / 4;
    if length != 32 {
        return Err(ContentDigestError::WrongLength(length));
    }
    // The standard engine accepts only the padded form with zero pad bits:
    // exactly one text for each 32 bytes.
    let mut digest = [0u8; 33];
    match STANDARD.decode_slice(base64, &mut digest) {
        Ok(32) => {
            let mut out = [0u8; 32];
            out.copy_from_slice(&digest[..32]);
            Ok(BodyDigest(out))
        }
        _ => Err(ContentDigestError::NonCanonicalBase64),
    }
}

/// What the Dictionary holds under the key `sha-256`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Sha256<'a> {
    Missing,
    Repeated,
    /// A member that is not a Byte Sequence.
    Other,
    /// A Byte Sequence: its base64 text, between the colons.
    Bytes(&'a [u8]),
}

/// A bare item, as far as this module needs to know it.
enum BareItem<'a> {
    Bytes(&'a [u8]),
    Other,
}

type Parsed<T> = Result<T, ContentDigestError>;

/// RFC 8941 §4.2, one byte at a time.
struct Parser<'a> {
    input: &'a [u8],
    pos: usize,
}

impl<'a> Parser<'a> {
    fn new(input: &'a [u8]) -> Self {
        Parser { input, pos: 0 }
    }

    fn fail<T>(&self, reason: &'static str) -> Parsed<T> {
        Err(ContentDigestError::NotADictionary {
            offset: self.pos,
            reason,
        })
    }

    fn peek(&self) -> Option<u8> {
        self.input.get(self.pos).copied()
    }

    fn is_empty(&self) -> bool {
        self.pos >= self.input.len()
    }

    fn skip_sp(&mut self) {
        while self.peek() == Some(b' ') {
            self.pos += 1;
        }
    }

    fn skip_ows(&mut self) {
        while matches!(self.peek(), Some(b' ' | b'\t')) {
            self.pos += 1;
        }
    }

    /// §4.2: the whole field value as a Dictionary.
    fn field_value(&mut self) -> Parsed<Sha256<'a>> {
        // Step 1: the value must be ASCII.
        if let Some(offset) = self.input.iter().position(|c| !c.is_ascii()) {
            self.pos = offset;
            return self.fail("a byte outside ASCII");
        }
        self.skip_sp();
        let sha256 = self.dictionary()?;
        self.skip_sp();
        if !self.is_empty() {
            return self.fail("text after the Dictionary");
        }
        Ok(sha256)
    }

    /// §4.2.2: members separated by `,` with optional whitespace; no
    /// trailing comma. Only the `sha-256` member is kept.
    fn dictionary(&mut self) -> Parsed<Sha256<'a>> {
        let mut sha256 = Sha256::Missing;
        while !self.is_empty() {
            let key = self.key()?;
            let value = if self.peek() == Some(b'=') {
                self.pos += 1;
                self.item_or_inner_list()?
            } else {
                // A key alone is the Boolean true, with parameters.
                self.parameters()?;
                BareItem::Other
            };
            if key == b"sha-256" {
                sha256 = match (sha256, value) {
                    (Sha256::Missing, BareItem::Bytes(base64)) => Sha256::Bytes(base64),
                    (Sha256::Missing, BareItem::Other) => Sha256::Other,
                    _ => Sha256::Repeated,
                };
            }
            self.skip_ows();
            if self.is_empty() {
                break;
            }
            if self.peek() != Some(b',') {
                return self.fail("a member not followed by ','");
            }
            self.pos += 1;
            self.skip_ows();
            if self.is_empty() {
                return self.fail("a trailing ','");
            }
        }
        Ok(sha256)
    }

    /// §4.2.3.3: `( lcalpha / "*" ) *( lcalpha / DIGIT / "_" / "-" / "." / "*" )`.
    fn key(&mut self) -> Parsed<&'a [u8]> {
        let start = self.pos;
        if !matches!(self.peek(), Some(b'a'..=b'z' | b'*')) {
            return self.fail("a key must start with a-z or '*'");
        }
        self.pos += 1;
        while matches!(
            self.peek(),
            Some(b'a'..=b'z' | b'0'..=b'9' | b'_' | b'-' | b'.' | b'*')
        ) {
            self.pos += 1;
        }
        Ok(&self.input[start..self.pos])
    }

    /// §4.2.1.1: an Inner List or an Item. An Inner List is never a Byte
    /// Sequence member.
    fn item_or_inner_list(&mut self) -> Parsed<BareItem<'a>> {
        if self.peek() == Some(b'(') {
            self.inner_list()?;
            Ok(BareItem::Other)
        } else {
            self.item()
        }
    }

    /// §4.2.1.2: `(` items separated by spaces `)`, then parameters.
    fn inner_list(&mut self) -> Parsed<()> {
        self.pos += 1;
        loop {
            self.skip_sp();
            match self.peek() {
                None => return self.fail("an unterminated Inner List"),
                Some(b')') => {
                    self.pos += 1;
                    return self.parameters();
                }
                Some(_) => {
                    self.item()?;
                    if !matches!(self.peek(), Some(b' ' | b')')) {
                        return self.fail("an Inner List item not followed by ' ' or ')'");
                    }
                }
            }
        }
    }

    /// §4.2.3: a bare item, then parameters.
    fn item(&mut self) -> Parsed<BareItem<'a>> {
        let item = self.bare_item()?;
        self.parameters()?;
        Ok(item)
    }

    /// §4.2.3.2: `*( ";" *SP key [ "=" bare-item ] )`; values are ignored.
    fn parameters(&mut self) -> Parsed<()> {
        while self.peek() == Some(b';') {
            self.pos += 1;
            self.skip_sp();
            self.key()?;
            if self.peek() == Some(b'=') {
                self.pos += 1;
                self.bare_item()?;
            }
        }
        Ok(())
    }

    /// §4.2.3.1: the type is decided by the first character.
    fn bare_item(&mut self) -> Parsed<BareItem<'a>> {
        match self.peek() {
            Some(b'-' | b'0'..=b'9') => self.number().map(|()| BareItem::Other),
            Some(b'"') => self.string().map(|()| BareItem::Other),
            Some(b'*' | b'A'..=b'Z' | b'a'..=b'z') => self.token().map(|()| BareItem::Other),
            Some(b':') => self.byte_sequence().map(BareItem::Bytes),
            Some(b'?') => self.boolean().map(|()| BareItem::Other),
            _ => self.fail("not the start of a bare item"),
        }
    }

    /// §4.2.4: an Integer (at most 15 digits) or a Decimal (at most 12
    /// integer and 3 fraction digits), with an optional leading `-`.
    fn number(&mut self) -> Parsed<()> {
        if self.peek() == Some(b'-') {
            self.pos += 1;
        }
        if !matches!(self.peek(), Some(b'0'..=b'9')) {
            return self.fail("a number without a digit");
        }
        let start = self.pos;
        let mut dot = None;
        while let Some(c) = self.peek() {
            match c {
                b'0'..=b'9' => {}
                b'.' if dot.is_none() => {
                    if self.pos - start > 12 {
                        return self.fail("a Decimal with more than 12 integer digits");
                    }
                    dot = Some(self.pos);
                }
                _ => break,
            }
            self.pos += 1;
            let length = self.pos - start;
            if dot.is_none() && length > 15 {
                return self.fail("an Integer with more than 15 digits");
            }
            if dot.is_some() && length > 16 {
                return self.fail("a Decimal longer than 16 characters");
            }
        }
        if let Some(dot) = dot {
            let fraction = self.pos - dot - 1;
            if fraction == 0 {
                return self.fail("a Decimal ending in '.'");
            }
            if fraction > 3 {
                return self.fail("a Decimal with more than 3 fraction digits");
            }
        }
        Ok(())
    }

    /// §4.2.5: `"` printable ASCII, with `\"` and `\\` as the only escapes, `"`.
    fn string(&mut self) -> Parsed<()> {
        self.pos += 1;
        loop {
            let Some(c) = self.peek() else {
                return self.fail("an unterminated String");
            };
            self.pos += 1;
            match c {
                b'\\' => match self.peek() {
                    Some(b'"' | b'\\') => self.pos += 1,
                    _ => return self.fail("a String escape other than \\\" or \\\\"),
                },
                b'"' => return Ok(()),
                0x20..=0x7e => {}
                _ => {
                    self.pos -= 1;
                    return self.fail("a control character in a String");
                }
            }
        }
    }

    /// §4.2.6: `( ALPHA / "*" ) *( tchar / ":" / "/" )`.
    fn token(&mut self) -> Parsed<()> {
        self.pos += 1;
        while matches!(
            self.peek(),
            Some(
                b'!'
                | b'#'
                | b'$'
                | b'%'
                | b'&'
                | b'\''
                | b'*'
                | b'+'
                | b'-'
                | b'.'
                | b'^'
                | b'_'
                | b'`'
                | b'|'
                | b'~'
                | b'0'..=b'9'
                | b'A'..=b'Z'
                | b'a'..=b'z'
                | b':'
                | b'/',
            )
        ) {
            self.pos += 1;
        }
        Ok(())
    }

    /// §4.2.8: `?0` or `?1`.
    fn boolean(&mut self) -> Parsed<()> {
        self.pos += 1;
        if !matches!(self.peek(), Some(b'0' | b'1')) {
            return self.fail("a Boolean other than ?0 or ?1");
        }
        self.pos += 1;
        Ok(())
    }

    /// §4.2.7: `:` base64 `:`. The text must be base64 that decodes: only
    /// `A-Z a-z 0-9 + / =`, padding only at the end and never more than the
    /// length needs, no length of the form 4n + 1. As RFC 8941 asks,
    /// missing (or short) padding and non-zero pad bits are accepted here;
    /// the `sha-256` member is held to the canonical form afterwards.
    fn byte_sequence(&mut self) -> Parsed<&'a [u8]> {
        self.pos += 1;
        let start = self.pos;
        let Some(length) = self.input[start..].iter().position(|&c| c == b':') else {
            return self.fail("an unterminated Byte Sequence");
        };
        let text = &self.input[start..start + length];
        if let Some(bad) = text
            .iter()
            .position(|&c| !(c.is_ascii_alphanumeric() || matches!(c, b'+' | b'/' | b'=')))
        {
            self.pos = start + bad;
            return self.fail("a character outside base64 in a Byte Sequence");
        }
        let padding = text.iter().rev().take_while(|&&c| c == b'=').count();
        let data = text.len() - padding;
        // RFC 8941 decodes "synthesizing padding if necessary": the text,
        // with `=` added up to a multiple of 4, must be RFC 4648 base64. So
        // padding may be short (or absent), but never more than the length
        // needs: 2 after 4n + 2 characters, 1 after 4n + 3, none after 4n.
        let needed = (4 - data % 4) % 4;
        let decodes = !text[..data].contains(&b'=') && data % 4 != 1 && padding <= needed;
        if !decodes {
            self.pos = start;
            return self.fail("base64 that does not decode in a Byte Sequence");
        }
        self.pos = start + length + 1;
        Ok(text)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(value: &str) -> Result<ContentDigest, ContentDigestError> {
        ContentDigest::parse([value.as_bytes()])
    }

    const HELLO: &str = "X48E9qOokqqrvdts8nOJRJN3OWDUoyWxBf7kbu9DBPE=";

    fn declared() -> Result<ContentDigest, ContentDigestError> {
        parse(&format!("sha-256=:{HELLO}:"))
    }

    #[test]
    fn ignored_members_of_every_type_still_have_to_parse() {
        assert!(matches!(declared(), Ok(ContentDigest::Declared(_))));
        for good in [
            "a=1, b=-1.5, c=\"x\\\"y\\\\\", d=tok/en:x, e=?0, f=(1 \"two\" :AA==:);p, g;x;y=?1",
            "a=123456789012345, b=123456789012.123, c=-0.1, d=*tok, e=()",
            "a=( 1  2 ), b=:YQ:, c=:iZ==:, d=::, e=:YWI=:, f=:YQ=:, g=:YWJj:",
        ] {
            let value = format!("{good}, sha-256=:{HELLO}:");
            assert_eq!(parse(&value), declared(), "{value}");
        }
        for bad in [
            "a=1234567890123456",
            "a=1234567890123.1",
            "a=1.1234",
            "a=1.",
            "a=-",
            "a=\"x",
            "a=\"\\x\"",
            "a=?2",
            "a=(1",
            "a=(1,2)",
            "a=@1659578233",
            "a=%\"x\"",
            "a=:Y:",
            "a=:YQ=:=",
            "a=:YQ===:",
            "a=:=YQ:",
            "a=:Y=Q=:",
            "a=tok;",
            "a;B=1",
            "a=1;p=(1)",
            "A=1",
            "a=1,,b=2",
            "a=1\t,\tb",
        ] {
            let value = format!("{bad}, sha-256=:{HELLO}:");
            let parsed = parse(&value);
            // OWS around the comma is allowed: the one valid case above.
            if bad == "a=1\t,\tb" {
                assert_eq!(parsed, declared());
                continue;
            }
            assert!(
                matches!(parsed, Err(ContentDigestError::NotADictionary { .. })),
                "{value}: {parsed:?}"
            );
        }
    }

    #[test]
    fn only_the_header_section_s_one_line_counts() {
        assert_eq!(ContentDigest::parse([]), Ok(ContentDigest::Absent));
        let line = format!("sha-256=:{HELLO}:");
        assert_eq!(
            ContentDigest::parse([line.as_bytes(), b""]),
            Err(ContentDigestError::SeveralFieldLines)
        );
        assert_eq!(
            ContentDigest::parse([b"".as_slice(), b""]),
            Err(ContentDigestError::SeveralFieldLines)
        );
    }

    #[test]
    fn values_past_the_limit_are_refused_unread() {
        let padding = "a=1, ".repeat(2000);
        let long = format!("{padding}sha-256=:{HELLO}:");
        assert!(long.len() > MAX_CONTENT_DIGEST_LEN);
        assert_eq!(parse(&long), Err(ContentDigestError::TooLong(long.len())));
        let fits = &long[long.len() - MAX_CONTENT_DIGEST_LEN..];
        let fits = &fits[fits.find(' ').unwrap_or(0) + 1..];
        assert_eq!(parse(fits), declared());
    }

    #[test]
    fn a_sha256_member_is_read_only_in_its_one_canonical_form() {
        assert_eq!(
            parse(&format!("sha-256=:{HELLO}:, sha-256=:{HELLO}:")),
            Err(ContentDigestError::DuplicateSha256)
        );
        assert_eq!(
            parse(&format!("sha-256=?1, sha-256=:{HELLO}:")),
            Err(ContentDigestError::DuplicateSha256)
        );
        assert_eq!(
            parse(&format!("sha-256=:{}:", HELLO.trim_end_matches('='))),
            Err(ContentDigestError::NonCanonicalBase64)
        );
        assert_eq!(parse("sha-256=::"), Err(ContentDigestError::WrongLength(0)));
        assert_eq!(parse("sha-256"), Err(ContentDigestError::NotAByteSequence));
        assert_eq!(
            parse("sha-256;a=1"),
            Err(ContentDigestError::NotAByteSequence)
        );
        // The key is exactly `sha-256`.
        assert_eq!(
            parse(&format!("sha-2560=:{HELLO}:")),
            Ok(ContentDigest::Absent)
        );
        assert_eq!(
            parse(&format!("*sha-256=:{HELLO}:")),
            Ok(ContentDigest::Absent)
        );
    }

    #[test]
    fn spaces_are_allowed_where_rfc_8941_allows_them_and_nowhere_else() {
        assert_eq!(parse(&format!("  sha-256=:{HELLO}:  ")), declared());
        assert!(matches!(
            parse(&format!("sha-256=:{HELLO}: ;a")),
            Err(ContentDigestError::NotADictionary { .. })
        ));
        assert!(parse(&format!("sha-256 =:{HELLO}:")).is_err());
        assert!(parse(&format!("sha-256= :{HELLO}:")).is_err());
        assert!(parse(&format!("\tsha-256=:{HELLO}:")).is_err());
        assert_eq!(parse(&format!("sha-256=:{HELLO}:; a=1")), declared());
    }
}
