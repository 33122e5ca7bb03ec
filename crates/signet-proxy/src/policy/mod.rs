//! Policy (spec §5 step 10), checked only after both signatures verified so
//! an unauthenticated caller learns nothing about it: which purposes a
//! proof may carry (`--allowed-purposes` for everyone, `purposes` per
//! client), and which methods and paths a client may call (`allow`).
//!
//! A rule ([`crate::grants::Rule`], parsed from the keys file) is `METHOD /path/pattern`, where `METHOD` is one of the seven the
//! proxy forwards or `*`, and the pattern's segments are literals, `*` (one
//! segment) or `**` (any number of segments, none included). Matching is on
//! the verified path (the query is not part of it), and it fails closed
//! wherever the upstream could read the path differently from the rule:
//!
//! * literal segments compare byte for byte: letter case counts and
//!   percent-encodings are not decoded (`/repos/%61cme` is not
//!   `/repos/acme`, nor is `/repos/ACME`);
//! * a wildcard never matches an empty segment (a doubled or trailing `/`),
//!   nor a segment holding an encoded `/`, `\`, `.` or `%` (`%2F`, `%5C`,
//!   `%2E`, `%25`, any case) or a raw `\`, so no segment a wildcard accepts
//!   can turn into several, or climb, at an upstream that decodes it.
//!
//! Before any of that, and whatever the client's rules, requests that would
//! manage the proxy's own GitHub credential are refused
//! ([`manages_the_credential`]): the token is every client's, so no one
//! client may revoke it or make the proxy mint it again.

pub(crate) mod rate;

use signet_core::{ErrorCode, Purpose, VerifiedProof};

use crate::auth::clients::Client;
use crate::refusal::Refusal;

/// Which verified proofs may use the proxy, for every client.
#[derive(Debug, Clone, Default)]
pub struct Policy {
    allowed_purposes: Vec<Purpose>,
}

impl Policy {
    /// A policy allowing the given purposes; an empty list allows any.
    pub fn new(allowed_purposes: Vec<Purpose>) -> Self {
        Policy { allowed_purposes }
    }

    /// Step 10 for one request: `CREDENTIAL_ENDPOINT_REFUSED` when it would
    /// manage the proxy's own credential (for every client, whatever its
    /// rules), `PURPOSE_MISMATCH` when the proof's purpose is not allowed
    /// here or for this client, `FORBIDDEN_BY_POLICY` when no rule of this
    /// client allows the method and path.
    pub fn check(
        &self,
        client: &Client,
        proof: &VerifiedProof,
        method: &str,
        target: &str,
    ) -> Result<(), Refusal> {
        if manages_the_credential(target) {
            let shown: String = target.chars().take(256).collect();
            return Err(
                Refusal::new(ErrorCode::CredentialEndpointRefused).with_detail(format!(
                    "client {:?}: {method} {shown} manages the shared GitHub credential",
                    client.name
                )),
            );
        }
        let purpose = proof.purpose();
        let allowed_here =
            self.allowed_purposes.is_empty() || self.allowed_purposes.contains(purpose);
        let allowed_for_client = client.purposes.as_ref().is_none_or(|p| p.contains(purpose));
        if !(allowed_here && allowed_for_client) {
            return Err(Refusal::new(ErrorCode::PurposeMismatch)
                .with_detail(format!("purpose {:?} is not allowed", purpose.as_str())));
        }
        let Some(rules) = &client.allow else {
            return Ok(());
        };
        let path = target.split('?').next().unwrap_or_default();
        if rules.iter().any(|rule| rule.matches(method, path)) {
            return Ok(());
        }
        // The client learns its own policy's verdict, nothing about others'.
        let shown: String = path.chars().take(256).collect();
        Err(Refusal::new(ErrorCode::ForbiddenByPolicy)
            .with_owned_message(format!("No rule of this client allows {method} {shown}."))
            .with_detail(format!("client {:?}: no allow rule matches", client.name)))
    }
}

/// Whether a request for `target` (any method) would manage the proxy's own
/// GitHub credential:
///
/// * `/installation/token`, whose `DELETE` revokes the token it is sent
///   with: one client would log every other out. No other method exists
///   there, and a `POST` with `_method=DELETE` is a `DELETE` to servers that
///   honour method overrides, so every method is refused.
/// * `/app` and every path below it: GitHub's App routes take only the App's
///   JWT, so with an installation token they can only fail, and each of
///   their 401s would make the proxy mint a new token.
///
/// `/apps/…`, `/app-manifests/…`, `/application` and every other route are
/// not concerned. The target is relative to `--github-api`, so this holds
/// under a GitHub Enterprise base path too. The path is read as the
/// loosest server in front of GitHub might read it, so that no spelling of
/// these routes slips through: the query is ignored, percent-escapes are
/// decoded until none is left (`/%61pp` and `/%2561pp` are `/app`), `\`
/// separates segments like `/`, empty segments are skipped (`//app`, a
/// trailing `/`), letter case is ignored, and a segment is a route's word
/// when the word is followed by nothing or by a byte that cannot continue a
/// name (`app.json`, `app;v=1`).
///
/// The path is read twice: as it is, and with the `.` and `..` segments
/// left after that decoding resolved (`/x/..%2Fapp`,
/// `/installation/x/%252e%252e/token`, `/installation/x\\..\\token`):
/// `ingress::target` refuses only the dot-segments a strict server would
/// see, and a looser one in front of GitHub may resolve these. Fully
/// decoded, with `\\` as `/`, is the reading with the most dot-segments, so
/// it climbs highest; either reading landing on a credential route is
/// refused. (A dot-segment that climbs elsewhere is left to the client's
/// rules, which never match one.)
pub fn manages_the_credential(target: &str) -> bool {
    let path = target.split('?').next().unwrap_or_default();
    let decoded = if path.contains('%') {
        std::borrow::Cow::Owned(fully_decoded(path.as_bytes()))
    } else {
        std::borrow::Cow::Borrowed(path.as_bytes())
    };
    let segments = || {
        decoded
            .split(|b| matches!(b, b'/' | b'\\'))
            .filter(|segment| !segment.is_empty())
    };
    if is_credential_route(segments()) {
        return true;
    }
    if !segments().any(is_dot_segment) {
        return false;
    }
    let mut resolved: Vec<&[u8]> = Vec::new();
    for segment in segments() {
        if is_dot_segment(segment) {
            if segment.starts_with(b"..") {
                resolved.pop();
            }
        } else {
            resolved.push(segment);
        }
    }
    is_credential_route(resolved.into_iter())
}

/// Whether these non-empty segments spell a credential route.
fn is_credential_route<'a>(mut segments: impl Iterator<Item = &'a [u8]>) -> bool {
    match segments.next() {
        Some(first) if is_word(first, b"app") => true,
        Some(first) if is_word(first, b"installation") => {
            segments.next().is_some_and(|s| is_word(s, b"token")) && segments.next().is_none()
        }
        _ => false,
    }
}

/// `segment` is `.` or `..`, alone or before a `;` (servers that read
/// path parameters, like Tomcat, drop `;…` before resolving dot-segments).
fn is_dot_segment(segment: &[u8]) -> bool {
    let name = segment.split(|b| *b == b';').next().unwrap_or_default();
    matches!(name, b"." | b"..")
}

/// `segment` is `word` (any case), alone or followed by a byte that cannot
/// continue a route name (`.json`, `;x`, a decoded NUL).
fn is_word(segment: &[u8], word: &[u8]) -> bool {
    segment.len() >= word.len()
        && segment[..word.len()].eq_ignore_ascii_case(word)
        && segment
            .get(word.len())
            .is_none_or(|b| !(b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_')))
}

/// `bytes` with percent-escapes decoded until none is left, in one pass: a
/// decoded byte may complete an escape with the bytes before it (`%25` then
/// `61` is `%61`, then `a`). Each decoding shortens the output by two
/// bytes, so the work is linear in the input.
fn fully_decoded(bytes: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(bytes.len());
    for &byte in bytes {
        out.push(byte);
        while let [.., b'%', high, low] = out[..] {
            let (Some(high), Some(low)) = (hex_digit(high), hex_digit(low)) else {
                break;
            };
            out.truncate(out.len() - 3);
            out.push(high << 4 | low);
        }
    }
    out
}

fn hex_digit(byte: u8) -> Option<u8> {
    match byte {
        b'0'..=b'9' => Some(byte - b'0'),
        b'a'..=b'f' => Some(byte - b'a' + 10),
        b'A'..=b'F' => Some(byte - b'A' + 10),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_credentials_own_routes_are_recognised_however_they_are_spelt() {
        for target in [
            "/installation/token",
            "/installation/token/",
            "/installation/token?x=1",
            "//installation//token",
            "/installation\\token",
            "/%69nstallation/%74oken",
            "/installation%2Ftoken",
            "/Installation/TOKEN",
            "/installation/token.json",
            "/app",
            "/app/",
            "/app?x",
            "/app/installations/1/access_tokens",
            "//app/hook/config",
            "/%61pp",
            "/%2561pp/installations",
            "/%252561pp",
            "/%%361pp",
            "/APP",
            "/app%2Finstallations",
            "/app%5Cinstallations",
            "/app.json",
            "/app;v=1",
            "/app%00",
            "/installation/x/..%2Ftoken",
            "/x/..%2Finstallation/token",
            "/installation/x/%252e%252e/token",
            "/installation/x\\..\\token",
            "/x/..%2Fapp/installations",
            "/x/..%5Capp/installations/1/access_tokens",
            "/x/y/..;v=1/..;v=1/app/hook",
            "/installation/./token",
        ] {
            assert!(manages_the_credential(target), "{target}");
        }
        for target in [
            "/",
            "/apps",
            "/apps/acme-bot",
            "/application",
            "/app-manifests/x/conversions",
            "/app_x",
            "/ap",
            "/repos/o/app",
            "/user?next=/app",
            "/installation",
            "/installation/repositories",
            "/installation/token/extra",
            "/installation/tokens",
            "/repos/o/r/installation/token",
            "/%2",
            "/%",
            "/a%pp",
            "/repos/o/r/contents/.github",
            "/repos/o/r/compare/a...b",
            "/repos/o/r/contents/..x",
            "/repos/o/r/..%2Fissues",
            "/repos/acme/app/x%2F..%2F..%2Fother",
        ] {
            assert!(!manages_the_credential(target), "{target}");
        }
    }

    proptest::proptest! {
        #[test]
        fn any_percent_encoding_of_app_is_still_app(
            levels in proptest::collection::vec(0usize..4, 3),
            rest in "(/[a-z0-9_]{0,6}){0,3}",
        ) {
            let mut first = String::new();
            for (byte, level) in b"app".iter().zip(&levels) {
                let mut spelt = (*byte as char).to_string();
                for _ in 0..*level {
                    spelt = spelt.bytes().map(|b| format!("%{b:02X}")).collect();
                }
                first.push_str(&spelt);
            }
            let target = format!("/{first}{rest}");
            proptest::prop_assert!(manages_the_credential(&target), "{}", target);
            let apps = format!("/{first}s{rest}");
            proptest::prop_assert!(!manages_the_credential(&apps), "{}", apps);
        }

        #[test]
        fn reading_any_target_never_panics(target in "[ -~]{0,64}") {
            let _ = manages_the_credential(&target);
        }
    }
}
