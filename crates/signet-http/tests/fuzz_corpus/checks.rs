//! The properties the `fuzz/` targets of signet-http assert, one function
//! per target. The fuzz crate includes this file (`#[path]`), and
//! `tests/fuzz_corpus.rs` replays each target's committed corpus through
//! the same function, so `cargo test` on stable checks every corpus input.
//!
//! Both rewriters are fed by the upstream, so any input is possible: each
//! check panics (the fuzzer's "crash") exactly when a property fails.

use std::collections::HashSet;

use bytes::Bytes;
use http::header::{LINK, LOCATION};
use http::{HeaderMap, HeaderValue};
use signet_http::json_urls::JsonUrlRewriter;
use signet_http::links::LinkRewriter;

/// `(upstream, public)` pairs the `links` target picks from (first byte):
/// plain hosts, ports, GitHub Enterprise prefixes, and a public URL under a
/// path. No base is a prefix of another within a pair.
const LINK_BASES: [(&str, &str); 4] = [
    ("https://api.github.com", "https://signet.internal:8443"),
    ("https://ghe.example/api/v3", "http://127.0.0.1:7180/gh"),
    ("http://127.0.0.1:9", "https://proxy.example/prefix/"),
    ("https://api.github.com/", "http://[::1]:8080"),
];

/// Target `links`: the first byte picks a [`LINK_BASES`] pair, the rest is
/// header values, one per line; a line starting with `L` is a `Location`,
/// any other a `Link`.
///
/// Never panics; keeps every value, in order; and each value comes back
/// either unchanged or changed only by upstream bases at the start of a
/// URL (a `Location`'s start, right after a `<` in a `Link`) that became
/// the public base.
pub fn links(data: &[u8]) {
    let Some((&choice, rest)) = data.split_first() else {
        return;
    };
    let (upstream, public) = LINK_BASES[usize::from(choice) % LINK_BASES.len()];
    let mut headers = HeaderMap::new();
    for line in rest.split(|&c| c == b'\n') {
        let (name, value) = match line.split_first() {
            Some((b'L', value)) => (LOCATION, value),
            _ => (LINK, line),
        };
        if let Ok(value) = HeaderValue::from_bytes(value) {
            headers.append(name, value);
        }
    }
    let before = headers.clone();
    LinkRewriter::new(upstream, public).rewrite(&mut headers);

    let rules = [(
        upstream.trim_end_matches('/').as_bytes(),
        public.trim_end_matches('/').as_bytes(),
    )];
    for name in [LOCATION, LINK] {
        let old: Vec<&[u8]> = before.get_all(&name).iter().map(|v| v.as_bytes()).collect();
        let new: Vec<&[u8]> = headers
            .get_all(&name)
            .iter()
            .map(|v| v.as_bytes())
            .collect();
        assert_eq!(old.len(), new.len(), "{name}: values lost or added");
        for (old, new) in old.iter().zip(&new) {
            let url_start = |text: &[u8], at: usize| {
                if name == LOCATION {
                    at == 0
                } else {
                    at > 0 && text[at - 1] == b'<'
                }
            };
            assert!(
                differs_only_by_rewrites(old, new, &rules, url_start, b"/?#>"),
                "{name}: {:?} became {:?}",
                String::from_utf8_lossy(old),
                String::from_utf8_lossy(new)
            );
        }
    }
}

/// `(from, to)` base sets the `json_urls` target picks from (first byte),
/// shaped like the agent's (several bases onto one client base) and the
/// proxy's (one upstream onto its public URL), with nested bases.
const JSON_BASES: [&[(&str, &str)]; 4] = [
    &[("https://api.github.com", "http://127.0.0.1:7180")],
    &[
        ("https://api.github.com", "http://127.0.0.1:7180/api/v3"),
        ("https://proxy.internal/gh", "http://127.0.0.1:7180/api/v3"),
        ("http://proxy.internal", "http://127.0.0.1:7180/api/v3"),
    ],
    &[
        ("https://ghe.example", "http://a.localhost"),
        ("https://ghe.example/api/v3", "http://b.localhost/x"),
    ],
    &[("https://api.github.com/", "https://api.github.com.evil/")],
];

/// Target `json_urls`: byte 0 picks a [`JSON_BASES`] set, byte 1 how many
/// split points follow (two bytes each), the rest is the body.
///
/// Never panics; the output is the same for the whole body in one chunk,
/// for the fuzz-chosen chunks and for one byte at a time (chunking
/// independence); and it differs from the input only where a base that
/// starts a JSON string (right after a `"`) became its replacement, plainly
/// or with escaped slashes.
pub fn json_urls(data: &[u8]) {
    let [choice, splits, ..] = *data else {
        return;
    };
    let bases = JSON_BASES[usize::from(choice) % JSON_BASES.len()];
    let splits = usize::from(splits % 16);
    let (points, body) = data[2..].split_at((splits * 2).min(data.len() - 2));
    let body = Bytes::copy_from_slice(body);

    let whole = rewrite(bases, [body.clone()]);

    let mut cuts: Vec<usize> = points
        .chunks(2)
        .map(|p| usize::from(u16::from_le_bytes([p[0], *p.get(1).unwrap_or(&0)])))
        .map(|p| p % (body.len() + 1))
        .collect();
    cuts.sort_unstable();
    let mut chunks = Vec::new();
    let mut start = 0;
    for cut in cuts.into_iter().chain([body.len()]) {
        chunks.push(body.slice(start..cut));
        start = cut;
    }
    assert_eq!(rewrite(bases, chunks), whole, "fuzz-chosen chunks differ");
    let bytewise = (0..body.len()).map(|i| body.slice(i..=i));
    assert_eq!(rewrite(bases, bytewise), whole, "byte-by-byte differs");

    let mut rules: Vec<(Vec<u8>, Vec<u8>)> = Vec::new();
    for (from, to) in bases {
        let (from, to) = (from.trim_end_matches('/'), to.trim_end_matches('/'));
        rules.push((from.as_bytes().to_vec(), to.as_bytes().to_vec()));
        rules.push((
            from.replace('/', "\\/").into_bytes(),
            to.replace('/', "\\/").into_bytes(),
        ));
    }
    let rules: Vec<(&[u8], &[u8])> = rules
        .iter()
        .map(|(f, t)| (f.as_slice(), t.as_slice()))
        .collect();
    let after_quote = |text: &[u8], at: usize| at > 0 && text[at - 1] == b'"';
    assert!(
        differs_only_by_rewrites(&body, &whole, &rules, after_quote, b"/?#\"\\"),
        "{:?} became {:?}",
        String::from_utf8_lossy(&body),
        String::from_utf8_lossy(&whole)
    );
}

/// Feeds `chunks` through a new rewriter and concatenates what comes out.
fn rewrite(bases: &[(&str, &str)], chunks: impl IntoIterator<Item = Bytes>) -> Vec<u8> {
    let mut rewriter = JsonUrlRewriter::new(bases);
    let mut out = Vec::new();
    for chunk in chunks {
        out.extend_from_slice(&rewriter.push(chunk));
    }
    out.extend_from_slice(&rewriter.finish());
    out
}

/// Whether `new` is `old` with some occurrences of a rule's `from` replaced
/// by its `to`, each at a position where `url_start` holds and followed by
/// one of `boundary` (or the end of `old`). A search over (position in
/// `old`, position in `new`) pairs, so overlapping choices are all tried.
fn differs_only_by_rewrites(
    old: &[u8],
    new: &[u8],
    rules: &[(&[u8], &[u8])],
    url_start: impl Fn(&[u8], usize) -> bool,
    boundary: &[u8],
) -> bool {
    let mut seen = HashSet::new();
    let mut todo = vec![(0usize, 0usize)];
    while let Some((i, j)) = todo.pop() {
        if !seen.insert((i, j)) {
            continue;
        }
        if i == old.len() && j == new.len() {
            return true;
        }
        if i < old.len() && j < new.len() && old[i] == new[j] {
            todo.push((i + 1, j + 1));
        }
        if i < old.len() && url_start(old, i) {
            for (from, to) in rules {
                let end = i + from.len();
                let bounded = old.get(end).is_none_or(|c| boundary.contains(c));
                if old[i..].starts_with(from) && bounded && new[j..].starts_with(to) {
                    todo.push((end, j + to.len()));
                }
            }
        }
    }
    false
}
