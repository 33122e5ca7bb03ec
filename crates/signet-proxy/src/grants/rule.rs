//! `allow` rules: `METHOD /path/pattern`, parsed from the keys file and
//! matched against a verified request's method and path (see the policy
//! module for the matching's fail-closed rules).

/// One `allow` rule: a method (or any) and a path pattern.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Rule {
    text: String,
    method: Option<String>,
    segments: Vec<Segment>,
}

impl std::fmt::Display for Rule {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.text)
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
enum Segment {
    Literal(String),
    One,
    Any,
}

/// Why a rule does not parse.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("invalid allow rule {rule:?}: {why}")]
pub struct RuleError {
    rule: String,
    why: &'static str,
}

impl Rule {
    /// Parses `METHOD /pattern` (e.g. `GET /repos/acme/**`).
    pub fn parse(text: &str) -> Result<Self, RuleError> {
        let error = |why| RuleError {
            rule: text.to_owned(),
            why,
        };
        let (method, pattern) = text
            .trim()
            .split_once(' ')
            .ok_or_else(|| error("write METHOD /path, e.g. GET /repos/acme/**"))?;
        let method = match method {
            "*" => None,
            m if crate::method::forwarded(m).is_some() => Some(m.to_owned()),
            _ => {
                return Err(error(
                    "the method must be GET, HEAD, POST, PUT, PATCH, DELETE, OPTIONS or *",
                ))
            }
        };
        let pattern = pattern.trim();
        let rest = pattern
            .strip_prefix('/')
            .ok_or_else(|| error("the path must start with /"))?;
        if pattern.contains(['?', '#', '%', '\\']) {
            return Err(error(
                "the path may not hold ?, #, % or \\ (patterns match the raw path)",
            ));
        }
        let segments = rest
            .split('/')
            .map(|segment| match segment {
                "**" => Ok(Segment::Any),
                "*" => Ok(Segment::One),
                s if s.contains('*') => Err(error("* stands alone as a segment: /a/*/b or /a/**")),
                "." | ".." => Err(error("dot-segments are refused before policy")),
                s => Ok(Segment::Literal(s.to_owned())),
            })
            .collect::<Result<Vec<_>, _>>()?;
        Ok(Rule {
            text: text.trim().to_owned(),
            method,
            segments,
        })
    }

    /// Whether the rule allows `method` on `path` (no query).
    pub fn matches(&self, method: &str, path: &str) -> bool {
        if self.method.as_deref().is_some_and(|m| m != method) {
            return false;
        }
        let Some(rest) = path.strip_prefix('/') else {
            return false;
        };
        let segments: Vec<&str> = rest.split('/').collect();
        matches_from(&self.segments, &segments)
    }
}

fn matches_from(pattern: &[Segment], path: &[&str]) -> bool {
    match pattern.split_first() {
        None => path.is_empty(),
        Some((Segment::Any, rest)) => {
            // `**` takes 0..n wildcard-safe segments.
            for taken in 0..=path.len() {
                if matches_from(rest, &path[taken..]) {
                    return true;
                }
                if path.get(taken).is_none_or(|s| !wildcard_safe(s)) {
                    return false;
                }
            }
            false
        }
        Some((Segment::One, rest)) => path
            .split_first()
            .is_some_and(|(first, tail)| wildcard_safe(first) && matches_from(rest, tail)),
        Some((Segment::Literal(literal), rest)) => path
            .split_first()
            .is_some_and(|(first, tail)| first == literal && matches_from(rest, tail)),
    }
}

/// A segment a wildcard may take: not empty, and nothing an upstream could
/// decode into a separator, a dot or another escape.
fn wildcard_safe(segment: &str) -> bool {
    if segment.is_empty() || segment.contains('\\') {
        return false;
    }
    let bytes = segment.as_bytes();
    !bytes.windows(3).any(|w| {
        w[0] == b'%'
            && matches!(
                (w[1], w[2].to_ascii_uppercase()),
                (b'2', b'F') | (b'5', b'C') | (b'2', b'E') | (b'2', b'5')
            )
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rule(text: &str) -> Rule {
        match Rule::parse(text) {
            Ok(rule) => rule,
            Err(e) => panic!("{e}"),
        }
    }

    #[test]
    fn one_star_is_one_segment_and_two_stars_any_number() {
        let issues = rule("POST /repos/acme/*/issues");
        assert!(issues.matches("POST", "/repos/acme/app/issues"));
        assert!(!issues.matches("GET", "/repos/acme/app/issues"));
        assert!(!issues.matches("POST", "/repos/acme/app/x/issues"));
        assert!(!issues.matches("POST", "/repos/acme/issues"));
        let tree = rule("GET /repos/acme/**");
        assert!(tree.matches("GET", "/repos/acme"));
        assert!(tree.matches("GET", "/repos/acme/app"));
        assert!(tree.matches("GET", "/repos/acme/app/contents/a/b%20c.md"));
        assert!(!tree.matches("GET", "/repos/acmeX/app"));
        assert!(rule("* /user").matches("DELETE", "/user"));
    }

    #[test]
    fn paths_an_upstream_could_read_differently_never_match() {
        let tree = rule("GET /repos/acme/app/**");
        for path in [
            "/repos/acme/app/x%2F..%2F..%2Fother",
            "/repos/acme/app/x%2f..",
            "/repos/acme/app/%2e%2e",
            "/repos/acme/app/a%5C..",
            "/repos/acme/app/a\\b",
            "/repos/acme/app/%252e%252e",
            "/repos/acme/app//x",
            "/repos/ACME/app",
            "/repos/%61cme/app",
            "/repos/acme%2Fapp",
        ] {
            assert!(!tree.matches("GET", path), "{path}");
        }
        let one = rule("GET /repos/acme/*");
        assert!(
            !one.matches("GET", "/repos/acme/"),
            "a trailing / is an empty segment"
        );
        assert!(!one.matches("GET", "/repos/acme/a%2Fb"));
        assert!(one.matches("GET", "/repos/acme/a%20b"));
    }

    #[test]
    fn malformed_rules_are_refused() {
        for text in [
            "GET",
            "get /x",
            "TRACE /x",
            "GET x",
            "GET /a*",
            "GET /a/%2e",
            "GET /a?b",
            "GET /a/../b",
        ] {
            assert!(Rule::parse(text).is_err(), "{text}");
        }
    }
}
