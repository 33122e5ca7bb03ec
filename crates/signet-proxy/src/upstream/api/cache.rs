//! The conditional-request cache (`--cache-size`, default 64 MiB; 0 turns it
//! off).
//!
//! A `200` to a `GET` that carries an `ETag` or `Last-Modified` is kept with
//! its body. The next request for the same resource is answered:
//!
//! * `HIT` — from the cache alone, while the response is fresh by its own
//!   `Cache-Control: max-age` (GitHub sends 60 s), it was fetched with the
//!   token in force, and no write went through the proxy since;
//! * `REVALIDATED` — GitHub was asked with `If-None-Match` /
//!   `If-Modified-Since` and answered `304 Not Modified`, which costs no
//!   primary quota, and the client gets the full `200` from the cache;
//! * `MISS` — fetched from GitHub (and kept, if it can be).
//!
//! The key is the full request-target, the headers GitHub varies on
//! (`Accept`, `X-GitHub-Api-Version`, `Accept-Encoding`, and whatever the
//! response's `Vary` names), the client's `Host` when links are rewritten to
//! it, and the credential's scope: a scoped client is never served a
//! response fetched with a broader token. A response fetched with an earlier
//! token (before a rotation) is revalidated, never served blind. A client's
//! own conditional headers (`If-None-Match`, …) or `Range` bypass the cache,
//! so its `304`s work as it expects; `no-store` on either side is honoured,
//! and `no-cache` / `max-age=0` from the client forces a revalidation.
//!
//! Identical concurrent `GET`s are coalesced: one goes to GitHub, the others
//! wait (up to the upstream timeout) for its response to be stored and are
//! then answered from it; if it cannot be stored they go to GitHub
//! themselves.
//!
//! The cache is bounded by bytes (bodies plus headers) and per process.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use bytes::{Bytes, BytesMut};
use http::header::{
    CACHE_CONTROL, CONTENT_LENGTH, ETAG, HOST, IF_MATCH, IF_MODIFIED_SINCE, IF_NONE_MATCH,
    IF_RANGE, IF_UNMODIFIED_SINCE, LAST_MODIFIED, PRAGMA, RANGE, SET_COOKIE, VARY,
};
use http::{HeaderMap, HeaderName, HeaderValue, Method, Response, StatusCode};
use tokio::sync::watch;

use crate::body::ProxyBody;
use crate::observe::metrics::Metrics;
use crate::upstream::credentials::Current;
use crate::upstream::scope::GitHubScope;

/// The response header that says how the cache answered.
pub const X_SIGNET_CACHE: HeaderName = HeaderName::from_static("x-signet-cache");

const API_VERSION: HeaderName = HeaderName::from_static("x-github-api-version");

/// How a request was answered, as `X-Signet-Cache` says.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Outcome {
    /// From the cache, without asking GitHub.
    Hit,
    /// GitHub answered 304; the body came from the cache.
    Revalidated,
    /// From GitHub.
    Miss,
}

impl Outcome {
    /// The header value and metric label.
    pub const fn as_str(self) -> &'static str {
        match self {
            Outcome::Hit => "HIT",
            Outcome::Revalidated => "REVALIDATED",
            Outcome::Miss => "MISS",
        }
    }
}

/// What identifies a stored response, besides its `Vary` headers (shared:
/// the key is held by the entry, a flight and a recorder).
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Key(Arc<KeyParts>);

#[derive(Debug, PartialEq, Eq, Hash)]
struct KeyParts {
    scope: Option<GitHubScope>,
    target: Box<str>,
    host: Option<HeaderValue>,
    accept: Option<HeaderValue>,
    api_version: Option<HeaderValue>,
    accept_encoding: Option<HeaderValue>,
}

/// One stored `200`.
#[derive(Debug)]
pub struct Entry {
    /// The headers as the client got them (hop-by-hop removed, links
    /// rewritten), without `X-Signet-Cache`.
    headers: HeaderMap,
    body: Bytes,
    etag: Option<HeaderValue>,
    last_modified: Option<HeaderValue>,
    /// The request's values of the headers the response's `Vary` names.
    vary: Vec<(HeaderName, Option<HeaderValue>)>,
    fresh_until: Instant,
    /// The token it was fetched (or last revalidated) with.
    generation: u64,
    /// The write epoch it was stored in.
    epoch: u64,
}

impl Entry {
    /// The cached `200`, for the client (headers only for `HEAD`).
    pub fn response(&self, outcome: Outcome, head: bool) -> Response<ProxyBody> {
        let body = if head {
            ProxyBody::full(Bytes::new())
        } else {
            ProxyBody::full(self.body.clone())
        };
        let mut response = Response::new(body);
        *response.headers_mut() = self.headers.clone();
        response
            .headers_mut()
            .insert(CONTENT_LENGTH, HeaderValue::from(self.body.len()));
        response
            .headers_mut()
            .insert(X_SIGNET_CACHE, HeaderValue::from_static(outcome.as_str()));
        response
    }

    fn weight(&self) -> u64 {
        let headers: usize = self
            .headers
            .iter()
            .map(|(name, value)| name.as_str().len() + value.len() + 32)
            .sum();
        (self.body.len() + headers + 256) as u64
    }

    fn matches_vary(&self, request: &HeaderMap) -> bool {
        self.vary
            .iter()
            .all(|(name, value)| request.get(name) == value.as_ref())
    }
}

/// What the cache can do for one request.
#[derive(Debug)]
pub enum Lookup {
    /// Not cacheable (a write, a client conditional, `no-store`, cache off):
    /// forwarded as it is.
    Bypass,
    /// Nothing stored: forwarded, and a cacheable answer is kept.
    Miss(Key),
    /// Stored but not fresh: revalidated with its validators.
    Stale(Key, Arc<Entry>),
    /// Fresh: answered from the cache.
    Fresh(Arc<Entry>),
}

impl Lookup {
    /// Whether the answer comes from the cache without asking GitHub.
    pub fn is_fresh(&self) -> bool {
        matches!(self, Lookup::Fresh(_))
    }

    /// Whether the request's headers are needed to store the answer.
    pub fn may_store(&self) -> bool {
        matches!(self, Lookup::Miss(_) | Lookup::Stale(..))
    }

    /// Adds the stored validators to the request going upstream.
    pub fn add_validators(&self, headers: &mut HeaderMap) {
        if let Lookup::Stale(_, entry) = self {
            if let Some(etag) = &entry.etag {
                headers.insert(IF_NONE_MATCH, etag.clone());
            }
            if let Some(modified) = &entry.last_modified {
                headers.insert(IF_MODIFIED_SINCE, modified.clone());
            }
        }
    }
}

/// What to do after the replay record: answer, or forward (perhaps leading
/// identical requests).
#[derive(Debug)]
pub enum Plan {
    /// Answer from the cache.
    Answer(Arc<Entry>, Outcome),
    /// Forward; `leader` is set when identical requests wait on this one.
    Forward(Lookup, Option<Leader>),
}

type Entries = quick_cache::sync::Cache<
    Key,
    Arc<Entry>,
    ByBytes,
    quick_cache::DefaultHashBuilder,
    quick_cache::sync::DefaultLifecycle<Key, Arc<Entry>>,
>;

#[derive(Debug, Clone)]
struct ByBytes;

impl quick_cache::Weighter<Key, Arc<Entry>> for ByBytes {
    fn weight(&self, _key: &Key, entry: &Arc<Entry>) -> u64 {
        entry.weight()
    }
}

/// The state of a request being fetched for others: `None` while pending,
/// then the stored entry, or `Some(None)` if nothing could be stored.
type Flight = Option<Option<Arc<Entry>>>;

struct Inner {
    entries: Entries,
    /// Largest single entry.
    max_entry: u64,
    /// Bumped by every successful write through the proxy.
    epoch: AtomicU64,
    inflight: Mutex<HashMap<Key, watch::Receiver<Flight>>>,
    metrics: Arc<Metrics>,
}

/// The cache, shared by every connection.
#[derive(Clone)]
pub struct Cache {
    inner: Option<Arc<Inner>>,
    /// Whether `Link`/`Location` are rewritten to the client's `Host` (no
    /// `--public-url`), so the stored headers depend on it.
    key_host: bool,
}

impl std::fmt::Debug for Cache {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Cache")
            .field("enabled", &self.inner.is_some())
            .finish_non_exhaustive()
    }
}

impl Cache {
    /// A cache of `size` bytes (0: off).
    pub fn new(size: u64, key_host: bool, metrics: Arc<Metrics>) -> Self {
        if size == 0 {
            return Cache {
                inner: None,
                key_host,
            };
        }
        // Few shards, so one shard (a fraction of the size) still holds a
        // large entry.
        let options = quick_cache::OptionsBuilder::new()
            .estimated_items_capacity(usize::try_from(size / 4096).unwrap_or(usize::MAX).max(64))
            .weight_capacity(size)
            .shards(4)
            .build();
        let Ok(options) = options else {
            return Cache {
                inner: None,
                key_host,
            };
        };
        let entries = Entries::with_options(
            options,
            ByBytes,
            quick_cache::DefaultHashBuilder::default(),
            quick_cache::sync::DefaultLifecycle::default(),
        );
        Cache {
            inner: Some(Arc::new(Inner {
                entries,
                max_entry: (size / 8).min(16 * 1024 * 1024),
                epoch: AtomicU64::new(0),
                inflight: Mutex::new(HashMap::new()),
                metrics,
            })),
            key_host,
        }
    }

    /// What the cache holds for this request.
    pub fn lookup(
        &self,
        method: &Method,
        target: &str,
        headers: &HeaderMap,
        credential: &Current,
        now: Instant,
    ) -> Lookup {
        let Some(inner) = &self.inner else {
            return Lookup::Bypass;
        };
        if *method != Method::GET && *method != Method::HEAD {
            return Lookup::Bypass;
        }
        let client_conditional = [
            IF_NONE_MATCH,
            IF_MODIFIED_SINCE,
            IF_MATCH,
            IF_UNMODIFIED_SINCE,
            IF_RANGE,
            RANGE,
        ]
        .iter()
        .any(|name| headers.contains_key(name));
        let request_control = Directives::of(headers);
        if client_conditional || request_control.no_store {
            return Lookup::Bypass;
        }
        let key = Key(Arc::new(KeyParts {
            scope: credential.scope.clone(),
            target: target.into(),
            host: if self.key_host {
                headers.get(HOST).cloned()
            } else {
                None
            },
            accept: headers.get(http::header::ACCEPT).cloned(),
            api_version: headers.get(API_VERSION).cloned(),
            accept_encoding: headers.get(http::header::ACCEPT_ENCODING).cloned(),
        }));
        match inner.entries.get(&key) {
            Some(entry) if entry.matches_vary(headers) => {
                let fresh = now < entry.fresh_until
                    && entry.generation == credential.generation
                    && entry.epoch == inner.epoch.load(Ordering::Acquire)
                    && !request_control.no_cache;
                if fresh {
                    Lookup::Fresh(entry)
                } else {
                    Lookup::Stale(key, entry)
                }
            }
            // A HEAD cannot fill the cache (it has no body).
            _ if *method == Method::HEAD => Lookup::Bypass,
            _ => Lookup::Miss(key),
        }
    }

    /// After the replay record: answer a fresh entry, or wait for an
    /// identical request already in flight, or lead one.
    pub async fn plan(&self, lookup: Lookup, method: &Method, wait: Duration) -> Plan {
        let key = match &lookup {
            Lookup::Fresh(entry) => return Plan::Answer(Arc::clone(entry), Outcome::Hit),
            Lookup::Miss(key) | Lookup::Stale(key, _) if *method == Method::GET => key.clone(),
            _ => return Plan::Forward(lookup, None),
        };
        let Some(inner) = &self.inner else {
            return Plan::Forward(lookup, None);
        };
        let waiting = {
            let Ok(mut inflight) = inner.inflight.lock() else {
                return Plan::Forward(lookup, None);
            };
            match inflight.get(&key) {
                Some(receiver) => Some(receiver.clone()),
                None => {
                    let (sender, receiver) = watch::channel(None);
                    inflight.insert(key.clone(), receiver);
                    drop(inflight);
                    return Plan::Forward(
                        lookup,
                        Some(Leader {
                            key,
                            sender,
                            inner: Arc::clone(inner),
                        }),
                    );
                }
            }
        };
        if let Some(mut receiver) = waiting {
            let done = tokio::time::timeout(wait, receiver.wait_for(Option::is_some)).await;
            if let Ok(Ok(flight)) = done {
                if let Some(Some(entry)) = flight.clone() {
                    return Plan::Answer(entry, Outcome::Hit);
                }
            }
        }
        // The leader's answer could not be stored (or took too long): ask
        // GitHub ourselves.
        Plan::Forward(lookup, None)
    }

    /// Turns GitHub's answer into the client's: a `304` to our revalidation
    /// becomes the stored `200`; a cacheable `200` is kept as it streams.
    /// `request` holds the request's headers when the answer may be stored.
    #[allow(clippy::too_many_arguments)]
    pub fn complete(
        &self,
        lookup: Lookup,
        leader: Option<Leader>,
        method: &Method,
        request: Option<HeaderMap>,
        credential: &Current,
        response: Response<ProxyBody>,
        head: bool,
        now: Instant,
    ) -> Response<ProxyBody> {
        let Some(inner) = &self.inner else {
            return response;
        };
        let status = response.status();
        if *method != Method::GET && *method != Method::HEAD {
            if status.is_success() || status.is_redirection() {
                // A write may change what any GET returns: nothing stored
                // before it is served without asking GitHub.
                inner.epoch.fetch_add(1, Ordering::AcqRel);
            }
            return response;
        }
        let epoch = inner.epoch.load(Ordering::Acquire);
        let (key, stale) = match lookup {
            Lookup::Bypass | Lookup::Fresh(_) => return self.mark(response, Outcome::Miss),
            Lookup::Miss(key) => (key, None),
            Lookup::Stale(key, entry) => (key, Some(entry)),
        };
        if let (Some(stale), StatusCode::NOT_MODIFIED) = (&stale, status) {
            let entry = Arc::new(Entry {
                headers: updated_headers(&stale.headers, response.headers()),
                body: stale.body.clone(),
                etag: response
                    .headers()
                    .get(ETAG)
                    .cloned()
                    .or_else(|| stale.etag.clone()),
                last_modified: response
                    .headers()
                    .get(LAST_MODIFIED)
                    .cloned()
                    .or_else(|| stale.last_modified.clone()),
                vary: stale.vary.clone(),
                fresh_until: now + Directives::of(response.headers()).fresh_for(),
                generation: credential.generation,
                epoch,
            });
            inner.entries.insert(key, Arc::clone(&entry));
            if let Some(leader) = leader {
                leader.publish(Some(Arc::clone(&entry)));
            }
            return self.answer(&entry, Outcome::Revalidated, head);
        }
        let (Some(request), true) = (request, *method == Method::GET) else {
            return self.mark(response, Outcome::Miss);
        };
        let Some(template) = storable(response.headers(), status, inner.max_entry) else {
            // Nothing will be stored; waiting requests go to GitHub.
            return self.mark(response, Outcome::Miss);
        };
        let vary = vary_values(response.headers(), &request);
        let recorder = Recorder {
            inner: Arc::clone(inner),
            key,
            template: Some(template),
            vary,
            generation: credential.generation,
            epoch,
            body: BytesMut::new(),
            leader,
        };
        let response = response.map(|body| body.recorded(recorder));
        self.mark(response, Outcome::Miss)
    }

    /// A stored entry as the client's answer, counted.
    pub fn answer(&self, entry: &Entry, outcome: Outcome, head: bool) -> Response<ProxyBody> {
        if let Some(inner) = &self.inner {
            inner.metrics.cache_answered(outcome);
        }
        entry.response(outcome, head)
    }

    fn mark(&self, mut response: Response<ProxyBody>, outcome: Outcome) -> Response<ProxyBody> {
        if let Some(inner) = &self.inner {
            inner.metrics.cache_answered(outcome);
        }
        response
            .headers_mut()
            .insert(X_SIGNET_CACHE, HeaderValue::from_static(outcome.as_str()));
        response
    }
}

/// The headers of a `200` worth keeping, with its freshness, or `None`.
struct Template {
    headers: HeaderMap,
    etag: Option<HeaderValue>,
    last_modified: Option<HeaderValue>,
    fresh_for: Duration,
}

fn storable(headers: &HeaderMap, status: StatusCode, max_entry: u64) -> Option<Template> {
    if status != StatusCode::OK || headers.contains_key(SET_COOKIE) {
        return None;
    }
    let etag = headers.get(ETAG).cloned();
    let last_modified = headers.get(LAST_MODIFIED).cloned();
    if etag.is_none() && last_modified.is_none() {
        return None;
    }
    let control = Directives::of(headers);
    if control.no_store {
        return None;
    }
    let vary_all = headers
        .get_all(VARY)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .any(|v| v.split(',').any(|name| name.trim() == "*"));
    if vary_all {
        return None;
    }
    let length = headers
        .get(CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<u64>().ok());
    if length.is_some_and(|length| length > max_entry) {
        return None;
    }
    let mut headers = headers.clone();
    headers.remove(X_SIGNET_CACHE);
    Some(Template {
        headers,
        etag,
        last_modified,
        fresh_for: control.fresh_for(),
    })
}

/// The request's values of the headers `Vary` names. `Authorization` is the
/// proxy's own token, which the key's scope and generation already cover.
fn vary_values(
    response: &HeaderMap,
    request: &HeaderMap,
) -> Vec<(HeaderName, Option<HeaderValue>)> {
    response
        .get_all(VARY)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .filter_map(|name| HeaderName::from_bytes(name.trim().as_bytes()).ok())
        .filter(|name| *name != http::header::AUTHORIZATION)
        .map(|name| {
            let value = request.get(&name).cloned();
            (name, value)
        })
        .collect()
}

/// RFC 9111 §4.3.4: a `304`'s headers replace the stored ones (its rate-limit
/// headers, `Date`, `ETag`, …), except the body's framing.
fn updated_headers(stored: &HeaderMap, not_modified: &HeaderMap) -> HeaderMap {
    let mut headers = stored.clone();
    for name in not_modified.keys() {
        if *name == CONTENT_LENGTH || *name == X_SIGNET_CACHE {
            continue;
        }
        headers.remove(name);
        for value in not_modified.get_all(name) {
            headers.append(name.clone(), value.clone());
        }
    }
    headers
}

/// The `Cache-Control` (and `Pragma`) directives the cache obeys.
#[derive(Debug, Default)]
struct Directives {
    no_store: bool,
    no_cache: bool,
    max_age: Option<u64>,
}

impl Directives {
    fn of(headers: &HeaderMap) -> Self {
        let mut directives = Directives::default();
        let values = headers
            .get_all(CACHE_CONTROL)
            .iter()
            .chain(headers.get_all(PRAGMA).iter())
            .filter_map(|v| v.to_str().ok())
            .flat_map(|v| v.split(','));
        for directive in values {
            let (name, value) = match directive.split_once('=') {
                Some((name, value)) => (name.trim(), Some(value.trim().trim_matches('"'))),
                None => (directive.trim(), None),
            };
            match name.to_ascii_lowercase().as_str() {
                "no-store" => directives.no_store = true,
                "no-cache" => directives.no_cache = true,
                "max-age" => match value.and_then(|v| v.parse::<u64>().ok()) {
                    Some(0) => directives.no_cache = true,
                    Some(age) => directives.max_age = Some(age),
                    // An unparsable max-age is treated as stale.
                    None => directives.no_cache = true,
                },
                _ => {}
            }
        }
        directives
    }

    /// How long a response stays fresh: its `max-age`, at most a day; none
    /// with `no-cache` or without `max-age`.
    fn fresh_for(&self) -> Duration {
        match (self.no_cache, self.max_age) {
            (false, Some(age)) => Duration::from_secs(age.min(86_400)),
            _ => Duration::ZERO,
        }
    }
}

/// The request fetching a response that identical requests wait for.
#[derive(Debug)]
pub struct Leader {
    key: Key,
    sender: watch::Sender<Flight>,
    inner: Arc<Inner>,
}

impl std::fmt::Debug for Inner {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("cache")
    }
}

impl Leader {
    /// Tells the waiting requests what was stored (`None`: nothing).
    fn publish(self, entry: Option<Arc<Entry>>) {
        // Dropping `self` afterwards removes the flight.
        self.sender.send_replace(Some(entry));
    }
}

impl Drop for Leader {
    fn drop(&mut self) {
        // Whatever happened (an error, a refusal, a body cut off), waiting
        // requests stop waiting.
        self.sender.send_if_modified(|flight| {
            if flight.is_none() {
                *flight = Some(None);
                true
            } else {
                false
            }
        });
        if let Ok(mut inflight) = self.inner.inflight.lock() {
            inflight.remove(&self.key);
        }
    }
}

/// Collects a cacheable response's body as it streams to the client and
/// stores it when it ends whole.
pub struct Recorder {
    inner: Arc<Inner>,
    key: Key,
    template: Option<Template>,
    vary: Vec<(HeaderName, Option<HeaderValue>)>,
    generation: u64,
    epoch: u64,
    body: BytesMut,
    leader: Option<Leader>,
}

impl std::fmt::Debug for Recorder {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Recorder")
            .field("bytes", &self.body.len())
            .finish_non_exhaustive()
    }
}

impl Recorder {
    /// A chunk went to the client.
    pub fn push(&mut self, chunk: &[u8]) {
        if self.template.is_none() {
            return;
        }
        if (self.body.len() + chunk.len()) as u64 > self.inner.max_entry {
            // Too large to keep: stop collecting, keep streaming.
            self.template = None;
            self.body = BytesMut::new();
            return;
        }
        self.body.extend_from_slice(chunk);
    }

    /// The body ended whole: store it and tell the waiting requests.
    pub fn finish(&mut self) {
        let Some(template) = self.template.take() else {
            return;
        };
        let entry = Arc::new(Entry {
            headers: template.headers,
            body: std::mem::take(&mut self.body).freeze(),
            etag: template.etag,
            last_modified: template.last_modified,
            vary: std::mem::take(&mut self.vary),
            fresh_until: Instant::now() + template.fresh_for,
            generation: self.generation,
            epoch: self.epoch,
        });
        self.inner
            .entries
            .insert(self.key.clone(), Arc::clone(&entry));
        self.inner
            .metrics
            .cache_stored(self.inner.entries.len(), self.inner.entries.weight());
        if let Some(leader) = self.leader.take() {
            leader.publish(Some(entry));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn headers(pairs: &[(&'static str, &'static str)]) -> HeaderMap {
        let mut map = HeaderMap::new();
        for (name, value) in pairs {
            map.append(
                HeaderName::from_static(name),
                HeaderValue::from_static(value),
            );
        }
        map
    }

    #[test]
    fn github_cache_control_keeps_a_response_fresh_for_its_max_age() {
        let control = Directives::of(&headers(&[(
            "cache-control",
            "private, max-age=60, s-maxage=60",
        )]));
        assert_eq!(control.fresh_for(), Duration::from_secs(60));
        assert!(!control.no_store);
        for (value, fresh) in [
            ("no-cache", Duration::ZERO),
            ("max-age=0", Duration::ZERO),
            ("max-age=abc", Duration::ZERO),
            ("", Duration::ZERO),
            ("max-age=999999999", Duration::from_secs(86_400)),
        ] {
            let control = Directives::of(&headers(&[("cache-control", value)]));
            assert_eq!(control.fresh_for(), fresh, "{value}");
        }
        assert!(Directives::of(&headers(&[("cache-control", "No-Store")])).no_store);
        assert!(Directives::of(&headers(&[("pragma", "no-cache")])).no_cache);
    }

    #[test]
    fn only_a_validated_200_without_cookies_or_vary_star_is_kept() {
        let ok = headers(&[("etag", "\"a\""), ("cache-control", "max-age=60")]);
        assert!(storable(&ok, StatusCode::OK, 1024).is_some());
        assert!(storable(&ok, StatusCode::CREATED, 1024).is_none());
        let modified = headers(&[("last-modified", "Tue, 01 Dec 2026 10:00:00 GMT")]);
        assert!(storable(&modified, StatusCode::OK, 1024).is_some());
        for refused in [
            headers(&[]),
            headers(&[("etag", "\"a\""), ("cache-control", "no-store")]),
            headers(&[("etag", "\"a\""), ("vary", "Accept, *")]),
            headers(&[("etag", "\"a\""), ("set-cookie", "a=b")]),
            headers(&[("etag", "\"a\""), ("content-length", "2048")]),
        ] {
            assert!(
                storable(&refused, StatusCode::OK, 1024).is_none(),
                "{refused:?}"
            );
        }
    }

    #[test]
    fn a_304_refreshes_the_stored_headers_but_not_the_framing() {
        let stored = headers(&[
            ("etag", "\"a\""),
            ("content-length", "10"),
            ("x-ratelimit-remaining", "10"),
        ]);
        let not_modified = headers(&[
            ("etag", "\"a\""),
            ("content-length", "0"),
            ("x-ratelimit-remaining", "9"),
        ]);
        let merged = updated_headers(&stored, &not_modified);
        assert_eq!(merged["x-ratelimit-remaining"], "9");
        assert_eq!(merged["content-length"], "10");
    }

    #[test]
    fn vary_records_the_request_values_except_our_own_authorization() {
        let response = headers(&[("vary", "Accept, Authorization, Cookie, X-GitHub-OTP")]);
        let request = headers(&[
            ("accept", "application/json"),
            ("authorization", "Bearer x"),
        ]);
        let vary = vary_values(&response, &request);
        let names: Vec<&str> = vary.iter().map(|(n, _)| n.as_str()).collect();
        assert_eq!(names, ["accept", "cookie", "x-github-otp"]);
        assert_eq!(
            vary[0].1.as_ref().map(HeaderValue::as_bytes),
            Some(&b"application/json"[..])
        );
    }
}
