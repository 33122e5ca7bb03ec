//! Absolute URLs in JSON bodies, moved from one base to another while the
//! body streams: GitHub's objects carry their own API URLs (`url`,
//! `issues_url`, `comments_url`, …), and clients that follow them must keep
//! going through whoever rewrote them.
//!
//! What is rewritten: a JSON string whose text *starts* with a configured
//! base, where the base ends at a path boundary (`/`, `?`, `#`, the closing
//! `"`, or a `\` that begins an escape such as `\/`). The base may be written
//! plainly (`https://api.github.com`, as GitHub writes it) or with
//! JSON-escaped slashes (`https:\/\/api.github.com`); the replacement is
//! written the same way. A URL in the middle of a string (an issue's prose)
//! and a longer host (`https://api.github.com.evil.example`) stay as sent.
//!
//! The scanner does not parse JSON: it looks at the bytes after each `"`.
//! Outside strings a `"` opens one, inside it closes one, and a base never
//! follows a closing quote in valid JSON, so looking after every quote finds
//! exactly the strings that start with a base. Bodies are never buffered:
//! at most the length of the longest base (plus two bytes) is held back
//! across a chunk boundary, when a chunk ends in what may be the start of a
//! base.

use std::pin::Pin;
use std::task::{ready, Context, Poll};

use bytes::{Bytes, BytesMut};
use http::header::{CONTENT_ENCODING, CONTENT_TYPE};
use http::HeaderMap;
use http_body::{Body, Frame, SizeHint};

/// One base to replace, as it appears in the JSON text.
#[derive(Debug, Clone)]
struct Rule {
    from: Vec<u8>,
    to: Vec<u8>,
}

/// Rewrites URLs under some bases in a JSON text given chunk by chunk.
///
/// Feed every chunk to [`push`](Self::push) and, at the end of the body,
/// call [`finish`](Self::finish): the concatenated outputs are the rewritten
/// text.
#[derive(Debug, Clone)]
pub struct JsonUrlRewriter {
    rules: Vec<Rule>,
    /// Bytes held back from the previous chunk: a `"` and what may be the
    /// start of a base.
    carry: BytesMut,
}

/// What follows a `"`.
enum Found {
    /// A base (its rule), then a boundary.
    Base(usize),
    /// Not enough bytes yet to tell.
    NeedMore,
    /// No base starts here.
    Nothing,
}

impl JsonUrlRewriter {
    /// Moves URLs under each `from` base to the same path under its `to`
    /// base (trailing `/` ignored on both). Each pair is matched plainly and
    /// with JSON-escaped slashes; where several bases match, the longest wins.
    pub fn new(bases: &[(&str, &str)]) -> Self {
        let mut rules = Vec::with_capacity(bases.len() * 2);
        for (from, to) in bases {
            let (from, to) = (from.trim_end_matches('/'), to.trim_end_matches('/'));
            if from.is_empty() || from == to {
                continue;
            }
            rules.push(Rule {
                from: from.as_bytes().to_vec(),
                to: to.as_bytes().to_vec(),
            });
            if from.contains('/') {
                rules.push(Rule {
                    from: from.replace('/', "\\/").into_bytes(),
                    to: to.replace('/', "\\/").into_bytes(),
                });
            }
        }
        JsonUrlRewriter {
            rules,
            carry: BytesMut::new(),
        }
    }

    /// Whether any base is configured (without one, bodies pass untouched).
    pub fn is_active(&self) -> bool {
        !self.rules.is_empty()
    }

    /// Rewrites the next chunk. The output may be shorter than the input (the
    /// end held back until the next chunk shows whether a base starts there)
    /// or empty.
    pub fn push(&mut self, chunk: Bytes) -> Bytes {
        if self.rules.is_empty() {
            return chunk;
        }
        let input = if self.carry.is_empty() {
            chunk
        } else {
            self.carry.extend_from_slice(&chunk);
            self.carry.split().freeze()
        };
        let mut out: Option<BytesMut> = None;
        // `input[..copied]` is accounted for (in `out`, or unchanged).
        let mut copied = 0;
        let mut from = 0;
        let mut hold = input.len();
        while let Some(offset) = memchr::memchr(b'"', &input[from..]) {
            let quote = from + offset;
            let after = quote + 1;
            match self.find(&input[after..]) {
                Found::Base(rule) => {
                    let rule = &self.rules[rule];
                    let out = out.get_or_insert_with(|| BytesMut::with_capacity(input.len() + 64));
                    out.extend_from_slice(&input[copied..after]);
                    out.extend_from_slice(&rule.to);
                    copied = after + rule.from.len();
                    from = copied;
                }
                Found::NeedMore => {
                    hold = quote;
                    break;
                }
                Found::Nothing => from = after,
            }
        }
        self.carry.extend_from_slice(&input[hold.max(copied)..]);
        match out {
            None => input.slice(..hold),
            Some(mut out) => {
                if copied < hold {
                    out.extend_from_slice(&input[copied..hold]);
                }
                out.freeze()
            }
        }
    }

    /// The end of the body: whatever was held back, as it was.
    pub fn finish(&mut self) -> Bytes {
        self.carry.split().freeze()
    }

    /// Which base, if any, starts `text` and ends at a boundary there.
    fn find(&self, text: &[u8]) -> Found {
        let mut best: Option<usize> = None;
        let mut undecided = 0;
        for (index, rule) in self.rules.iter().enumerate() {
            let n = rule.from.len();
            if text.len() > n {
                if text.starts_with(&rule.from)
                    && is_boundary(text[n])
                    && best.is_none_or(|b| self.rules[b].from.len() < n)
                {
                    best = Some(index);
                }
            } else if rule.from.starts_with(text) {
                undecided = undecided.max(n);
            }
        }
        match best {
            // A longer base may still match once more bytes arrive.
            Some(rule) if self.rules[rule].from.len() >= undecided => Found::Base(rule),
            _ if undecided > 0 => Found::NeedMore,
            Some(rule) => Found::Base(rule),
            None => Found::Nothing,
        }
    }
}

/// Where a base may end: the path goes on, a query or fragment starts, the
/// string ends, or an escape (`\/`) follows.
fn is_boundary(byte: u8) -> bool {
    matches!(byte, b'/' | b'?' | b'#' | b'"' | b'\\')
}

/// Whether a response with these headers has a body the rewriter may touch:
/// JSON (`application/json`, or any `application/…+json` such as GitHub's
/// `application/vnd.github+json`) with no content coding.
pub fn is_rewritable_json(headers: &HeaderMap) -> bool {
    let encoded = headers
        .get(CONTENT_ENCODING)
        .is_some_and(|v| !v.as_bytes().eq_ignore_ascii_case(b"identity"));
    if encoded {
        return false;
    }
    let Some(content_type) = headers.get(CONTENT_TYPE).and_then(|v| v.to_str().ok()) else {
        return false;
    };
    let essence = content_type
        .split(';')
        .next()
        .unwrap_or_default()
        .trim()
        .to_ascii_lowercase();
    essence == "application/json"
        || (essence.starts_with("application/") && essence.ends_with("+json"))
}

/// A body whose data goes through a [`JsonUrlRewriter`] frame by frame.
/// Its length is unknown (a rewrite changes it), so it goes out chunked.
#[derive(Debug)]
pub struct RewrittenBody<B> {
    inner: B,
    rewriter: JsonUrlRewriter,
    /// A trailers frame that arrived while bytes were still held back.
    trailers: Option<Frame<Bytes>>,
    done: bool,
}

impl<B> RewrittenBody<B> {
    /// Rewrites `inner`'s data with `rewriter`.
    pub fn new(inner: B, rewriter: JsonUrlRewriter) -> Self {
        RewrittenBody {
            inner,
            rewriter,
            trailers: None,
            done: false,
        }
    }
}

impl<B> Body for RewrittenBody<B>
where
    B: Body<Data = Bytes> + Unpin,
{
    type Data = Bytes;
    type Error = B::Error;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, Self::Error>>> {
        let this = self.get_mut();
        if let Some(trailers) = this.trailers.take() {
            return Poll::Ready(Some(Ok(trailers)));
        }
        loop {
            if this.done {
                return Poll::Ready(None);
            }
            let frame = match ready!(Pin::new(&mut this.inner).poll_frame(cx)) {
                Some(Ok(frame)) => frame,
                Some(Err(error)) => return Poll::Ready(Some(Err(error))),
                None => {
                    this.done = true;
                    let rest = this.rewriter.finish();
                    if rest.is_empty() {
                        return Poll::Ready(None);
                    }
                    return Poll::Ready(Some(Ok(Frame::data(rest))));
                }
            };
            match frame.into_data() {
                Ok(data) => {
                    let data = this.rewriter.push(data);
                    if !data.is_empty() {
                        return Poll::Ready(Some(Ok(Frame::data(data))));
                    }
                }
                Err(trailers) => {
                    let rest = this.rewriter.finish();
                    if rest.is_empty() {
                        return Poll::Ready(Some(Ok(trailers)));
                    }
                    this.trailers = Some(trailers);
                    return Poll::Ready(Some(Ok(Frame::data(rest))));
                }
            }
        }
    }

    fn is_end_stream(&self) -> bool {
        self.done && self.trailers.is_none()
    }

    fn size_hint(&self) -> SizeHint {
        SizeHint::default()
    }
}

#[cfg(test)]
mod tests {
    use http::HeaderValue;
    use http_body_util::BodyExt as _;
    use proptest::prelude::*;

    use super::*;

    const UPSTREAM: &str = "https://api.github.com";
    const AGENT: &str = "http://127.0.0.1:7180/api/v3";

    fn rewriter() -> JsonUrlRewriter {
        JsonUrlRewriter::new(&[(UPSTREAM, AGENT)])
    }

    /// The rewrite of `text` cut into chunks at `cuts`.
    fn rewrite_in_chunks(rewriter: &mut JsonUrlRewriter, text: &[u8], cuts: &[usize]) -> Vec<u8> {
        let mut out = Vec::new();
        let mut start = 0;
        for &cut in cuts.iter().chain([&text.len()]) {
            let cut = cut.clamp(start, text.len());
            out.extend_from_slice(&rewriter.push(Bytes::copy_from_slice(&text[start..cut])));
            start = cut;
        }
        out.extend_from_slice(&rewriter.finish());
        out
    }

    fn rewrite(text: &str) -> String {
        let out = rewrite_in_chunks(&mut rewriter(), text.as_bytes(), &[]);
        String::from_utf8(out).unwrap_or_default()
    }

    #[test]
    fn urls_under_the_upstream_move_under_the_agent() {
        assert_eq!(
            rewrite(
                r#"{"url":"https://api.github.com/repos/o/r","issues_url":"https://api.github.com/repos/o/r/issues{/number}","html_url":"https://github.com/o/r"}"#
            ),
            r#"{"url":"http://127.0.0.1:7180/api/v3/repos/o/r","issues_url":"http://127.0.0.1:7180/api/v3/repos/o/r/issues{/number}","html_url":"https://github.com/o/r"}"#
        );
        assert_eq!(
            rewrite(r#"["https://api.github.com","https://api.github.com?x=1"]"#),
            r#"["http://127.0.0.1:7180/api/v3","http://127.0.0.1:7180/api/v3?x=1"]"#
        );
    }

    #[test]
    fn escaped_slashes_are_rewritten_in_the_same_style() {
        assert_eq!(
            rewrite(r#"{"url":"https:\/\/api.github.com\/repos\/o\/r"}"#),
            r#"{"url":"http:\/\/127.0.0.1:7180\/api\/v3\/repos\/o\/r"}"#
        );
    }

    #[test]
    fn longer_hosts_other_hosts_and_urls_inside_prose_are_left_alone() {
        for untouched in [
            r#"{"url":"https://api.github.com.evil.example/x"}"#,
            r#"{"url":"https://api.github.com:8443/x"}"#,
            r#"{"url":"https://api.github.community/x"}"#,
            r#"{"url":"http://api.github.com/x"}"#,
            r#"{"body":"see https://api.github.com/repos/o/r"}"#,
            r#"{"https://api.github.comx":1}"#,
            r#"no quotes https://api.github.com/x"#,
        ] {
            assert_eq!(rewrite(untouched), untouched);
        }
    }

    #[test]
    fn a_url_split_across_chunks_is_rewritten_wherever_the_cut_falls() {
        let text = br#"[{"url":"https://api.github.com/a"},{"url":"https:\/\/api.github.com\/b"}]"#;
        let whole = rewrite_in_chunks(&mut rewriter(), text, &[]);
        for cut in 0..=text.len() {
            assert_eq!(
                rewrite_in_chunks(&mut rewriter(), text, &[cut]),
                whole,
                "cut at {cut}"
            );
        }
        // One byte at a time.
        let cuts: Vec<usize> = (1..text.len()).collect();
        assert_eq!(rewrite_in_chunks(&mut rewriter(), text, &cuts), whole);
    }

    #[test]
    fn the_longest_matching_base_wins() {
        let mut rewriter = JsonUrlRewriter::new(&[
            ("https://ghe.example/api", "http://short"),
            ("https://ghe.example/api/v3", "http://long"),
        ]);
        let text = br#"["https://ghe.example/api/v3/x","https://ghe.example/api/x"]"#;
        for cut in 0..=text.len() {
            assert_eq!(
                rewrite_in_chunks(&mut rewriter, text, &[cut]),
                br#"["http://long/x","http://short/x"]"#.as_slice(),
                "cut at {cut}"
            );
        }
    }

    #[test]
    fn a_chunk_without_a_candidate_passes_without_a_copy() {
        let chunk = Bytes::from_static(br#"{"login":"octocat","id":1}"#);
        let out = rewriter().push(chunk.clone());
        assert_eq!(out.as_ptr(), chunk.as_ptr());
        assert_eq!(out, chunk);
    }

    #[test]
    fn only_uncoded_json_is_rewritable() {
        let headers = |pairs: &[(&'static str, &'static str)]| {
            let mut map = HeaderMap::new();
            for (name, value) in pairs {
                map.insert(*name, HeaderValue::from_static(value));
            }
            map
        };
        for yes in [
            headers(&[("content-type", "application/json; charset=utf-8")]),
            headers(&[("content-type", "Application/JSON")]),
            headers(&[("content-type", "application/vnd.github+json")]),
            headers(&[
                ("content-type", "application/json"),
                ("content-encoding", "identity"),
            ]),
        ] {
            assert!(is_rewritable_json(&yes), "{yes:?}");
        }
        for no in [
            headers(&[]),
            headers(&[("content-type", "text/html")]),
            headers(&[("content-type", "application/octet-stream")]),
            headers(&[("content-type", "text/json+x")]),
            headers(&[
                ("content-type", "application/json"),
                ("content-encoding", "gzip"),
            ]),
        ] {
            assert!(!is_rewritable_json(&no), "{no:?}");
        }
    }

    #[tokio::test]
    async fn the_body_wrapper_rewrites_across_frames_and_keeps_trailers_last() {
        let mut trailers = HeaderMap::new();
        trailers.insert("x-t", HeaderValue::from_static("1"));
        let frames: Vec<Result<Frame<Bytes>, std::convert::Infallible>> = vec![
            Ok(Frame::data(Bytes::from_static(
                br#"{"url":"https://api.git"#,
            ))),
            Ok(Frame::data(Bytes::from_static(
                br#"hub.com/x","y":"https://api"#,
            ))),
            Ok(Frame::trailers(trailers)),
        ];
        let body = RewrittenBody::new(Frames(frames.into()), rewriter());
        let collected = body.collect().await.unwrap_or_else(|e| match e {});
        assert!(collected.trailers().is_some());
        assert_eq!(
            &collected.to_bytes()[..],
            br#"{"url":"http://127.0.0.1:7180/api/v3/x","y":"https://api"#
        );
    }

    /// A body of ready frames.
    struct Frames(std::collections::VecDeque<Result<Frame<Bytes>, std::convert::Infallible>>);

    impl Body for Frames {
        type Data = Bytes;
        type Error = std::convert::Infallible;
        fn poll_frame(
            self: Pin<&mut Self>,
            _: &mut Context<'_>,
        ) -> Poll<Option<Result<Frame<Bytes>, Self::Error>>> {
            Poll::Ready(self.get_mut().0.pop_front())
        }
    }

    /// A JSON-ish text: strings holding upstream URLs (plain or escaped),
    /// near misses, and other bytes.
    fn jsonish() -> impl Strategy<Value = String> {
        prop::collection::vec(
            prop_oneof![
                Just("\"https://api.github.com/x\"".to_owned()),
                Just("\"https:\\/\\/api.github.com\\/y\"".to_owned()),
                Just("\"https://api.github.com\"".to_owned()),
                Just("\"https://api.github.com.evil/z\"".to_owned()),
                Just("\"https://api.git".to_owned()),
                Just("\"".to_owned()),
                "[ -~]{0,12}",
            ],
            0..12,
        )
        .prop_map(|parts| parts.concat())
    }

    proptest! {
        #[test]
        fn chunking_never_changes_the_result(
            text in jsonish(),
            cuts in prop::collection::vec(0usize..200, 0..6),
        ) {
            let mut cuts = cuts;
            cuts.sort_unstable();
            let whole = rewrite_in_chunks(&mut rewriter(), text.as_bytes(), &[]);
            let chunked = rewrite_in_chunks(&mut rewriter(), text.as_bytes(), &cuts);
            prop_assert_eq!(chunked, whole);
        }

        #[test]
        fn the_rewriter_never_panics_and_text_without_the_base_is_untouched(
            text in any::<Vec<u8>>(),
            cut in 0usize..64,
        ) {
            let out = rewrite_in_chunks(&mut rewriter(), &text, &[cut]);
            if !text.windows(b"api.github.com".len()).any(|w| w == b"api.github.com") {
                prop_assert_eq!(out, text);
            }
        }

        #[test]
        fn rewriting_back_restores_the_text(text in jsonish()) {
            let mut there = JsonUrlRewriter::new(&[(UPSTREAM, "http://127.0.0.1:1")]);
            let mut back = JsonUrlRewriter::new(&[("http://127.0.0.1:1", UPSTREAM)]);
            let moved = rewrite_in_chunks(&mut there, text.as_bytes(), &[]);
            prop_assume!(!text.contains("127.0.0.1:1"));
            let restored = rewrite_in_chunks(&mut back, &moved, &[]);
            prop_assert_eq!(restored, text.into_bytes());
        }
    }
}
