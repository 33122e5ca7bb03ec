//! The conditional-request cache (`--cache-size`, default 64 MiB; 0 turns it
//! off).
//!
//! A `200` to a `GET` that carries an `ETag` or `Last-Modified` is kept with
//! its body. The next request for the same resource is answered:
//!
//! * `HIT` — from the cache alone, while the response is fresh by its own
//!   `Cache-Control: max-age` (GitHub sends 60 s), it was fetched with the
//!   token in force, and no write went through the proxy since it was sent;
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
//! One client must not be able to choose what another is served, nor make
//! the cache hold more than its size:
//!
//! * the key and the stored `Vary` values are taken from the request's
//!   headers as they go upstream (through the forwarder's own
//!   `forward::remove_unforwarded`), so a header `Connection` strips is not
//!   keyed on; a request that repeats a keyed header, whose every value
//!   GitHub reads, bypasses the cache;
//! * a target over [`MAX_TARGET`] or a keyed value over [`MAX_KEYED_VALUE`]
//!   bypasses the cache; an entry weighs everything it holds (key, `Vary`
//!   values, headers, body, and [`ENTRY_OVERHEAD`]), every stored value is
//!   copied out of the buffer its message was read into, and the total is
//!   bounded by `--cache-size`;
//! * the write epoch a `GET` is stored under is read before it is sent, and
//!   every write that may have been sent ends the epoch, whatever its
//!   answer (a 502, a 504, a client gone).
//!
//! Identical concurrent `GET`s are coalesced: one goes to GitHub, the others
//! wait (up to the upstream timeout) for its response to be stored and are
//! answered from it when it matches their own `Vary` values and no write
//! ended since it was sent (else they revalidate it or go to GitHub). The
//! body is read from GitHub ahead of the first client, up to the entry
//! limit and within a read-ahead budget (a quarter of the size), so a client
//! that reads slowly holds back nobody else; once the answer cannot be
//! stored, the others are released at once. A request leads only once it
//! holds its upstream slot ([`Cache::lead`]), and what was read ahead keeps
//! that slot until its client has taken it.
//!
//! The cache and its write epoch are per process (per replica).

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use bytes::{Bytes, BytesMut};
use http::header::{
    ACCEPT, ACCEPT_ENCODING, AUTHORIZATION, CACHE_CONTROL, CONTENT_LENGTH, ETAG, HOST, IF_MATCH,
    IF_MODIFIED_SINCE, IF_NONE_MATCH, IF_RANGE, IF_UNMODIFIED_SINCE, LAST_MODIFIED, PRAGMA, RANGE,
    SET_COOKIE, VARY,
};
use http::{HeaderMap, HeaderName, HeaderValue, Method, Response, StatusCode};
use tokio::sync::watch;

use crate::body::{ProxyBody, ReadAheadBudget, Reservation};
use crate::grants::GitHubScope;
use crate::observe::metrics::Metrics;
use crate::upstream::credentials::Current;

/// The response header that says how the cache answered.
pub const X_SIGNET_CACHE: HeaderName = HeaderName::from_static("x-signet-cache");

const API_VERSION: HeaderName = HeaderName::from_static("x-github-api-version");

/// The longest request-target the cache keys on; a longer one bypasses it
/// (forwarded, never stored). GitHub's API targets, queries included, are
/// far shorter; without a limit one client could fill the cache with keys
/// up to the 64 KiB header section, evicting everyone's entries.
pub const MAX_TARGET: usize = 2 * 1024;

/// The longest value of a keyed header (`Accept`, `X-GitHub-Api-Version`,
/// `Accept-Encoding`, `Host`, and whatever a stored `Vary` names, such as
/// `Cookie`) the cache keys on; a request with a longer one bypasses it.
/// GitHub's media types and versions take well under 100 bytes; an API
/// client with a long cookie is still served, uncached.
pub const MAX_KEYED_VALUE: usize = 1024;

/// What an entry costs beyond the bytes it holds: its allocations (the
/// entry, its key, their maps) and its slot in the table.
pub const ENTRY_OVERHEAD: u64 = 1024;

/// What each header, `Vary` value or key field costs beyond its bytes (its
/// slot in a map, its allocations).
const FIELD_OVERHEAD: u64 = 128;

pub use crate::observe::CacheOutcome as Outcome;

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

impl Key {
    fn weight(&self) -> u64 {
        let parts = &self.0;
        let values: usize = [
            &parts.host,
            &parts.accept,
            &parts.api_version,
            &parts.accept_encoding,
        ]
        .into_iter()
        .flatten()
        .map(HeaderValue::len)
        .sum();
        (parts.target.len() + values) as u64 + 5 * FIELD_OVERHEAD
    }
}

/// A request header the cache cannot key on: repeated (GitHub reads every
/// value; a key can hold one) or longer than [`MAX_KEYED_VALUE`].
#[derive(Debug)]
struct Unkeyable;

/// The one value of `name` in `headers`, copied, or `Unkeyable`.
fn keyed_value(headers: &HeaderMap, name: &HeaderName) -> Result<Option<HeaderValue>, Unkeyable> {
    let mut values = headers.get_all(name).iter();
    let Some(value) = values.next() else {
        return Ok(None);
    };
    if values.next().is_some() || value.len() > MAX_KEYED_VALUE {
        return Err(Unkeyable);
    }
    Ok(Some(owned(value)))
}

/// A copy in an allocation of its own. hyper parses a header value as a
/// slice of the buffer the whole message head was read into: a stored slice
/// would keep that buffer (up to the 64 KiB header section, or more) alive
/// for as long as the entry lives, unweighed.
fn owned(value: &HeaderValue) -> HeaderValue {
    let mut copy = HeaderValue::from_bytes(value.as_bytes()).unwrap_or_else(|_| value.clone());
    copy.set_sensitive(value.is_sensitive());
    copy
}

/// `headers` with every value [`owned`].
fn owned_headers(headers: &HeaderMap) -> HeaderMap {
    let mut copy = HeaderMap::with_capacity(headers.len());
    for (name, value) in headers {
        copy.append(name.clone(), owned(value));
    }
    copy
}

fn fields_weight<'a>(
    fields: impl Iterator<Item = (&'a HeaderName, Option<&'a HeaderValue>)>,
) -> u64 {
    fields
        .map(|(name, value)| {
            (name.as_str().len() + value.map_or(0, HeaderValue::len)) as u64 + FIELD_OVERHEAD
        })
        .sum()
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
    /// The write epoch its request was sent in.
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

    /// Everything an entry holds but its body, with the fixed overhead.
    fn weight_without_body(
        headers: &HeaderMap,
        validators: [Option<&HeaderValue>; 2],
        vary: &[(HeaderName, Option<HeaderValue>)],
    ) -> u64 {
        let validators: usize = validators.into_iter().flatten().map(HeaderValue::len).sum();
        fields_weight(headers.iter().map(|(name, value)| (name, Some(value))))
            + fields_weight(vary.iter().map(|(name, value)| (name, value.as_ref())))
            + validators as u64
            + ENTRY_OVERHEAD
    }

    fn weight(&self) -> u64 {
        self.body.len() as u64
            + Self::weight_without_body(
                &self.headers,
                [self.etag.as_ref(), self.last_modified.as_ref()],
                &self.vary,
            )
    }

    /// Whether `forwarded` (a request's headers as they go upstream) has
    /// the values this response was stored for. A repeated or over-long
    /// value never matches.
    fn matches_vary(&self, forwarded: &HeaderMap) -> bool {
        self.vary.iter().all(|(name, stored)| {
            let mut values = forwarded.get_all(name).iter();
            let value = values.next();
            values.next().is_none()
                && value.is_none_or(|v| v.len() <= MAX_KEYED_VALUE)
                && value == stored.as_ref()
        })
    }

    /// Whether `forwarded` repeats, or has an over-long value of, a header
    /// this response varies on.
    fn unkeyable_vary(&self, forwarded: &HeaderMap) -> bool {
        self.vary
            .iter()
            .any(|(name, _)| keyed_value(forwarded, name).is_err())
    }
}

/// What the cache can do for one request.
#[derive(Debug)]
pub enum Lookup {
    /// Not cacheable (a write, a client conditional, `no-store`, an
    /// unkeyable header, cache off): forwarded as it is.
    Bypass,
    /// Nothing stored: forwarded, and a cacheable answer is kept.
    Miss(Pending),
    /// Stored but not fresh: revalidated with its validators.
    Stale(Pending, Arc<Entry>),
    /// Fresh: answered from the cache.
    Fresh(Arc<Entry>),
}

/// A request whose answer the cache may keep.
#[derive(Debug)]
pub struct Pending {
    key: Key,
    /// The request's headers as they go upstream: the stored `Vary` values
    /// come from these, never from what the client sent.
    forwarded: HeaderMap,
    /// The token it goes out with.
    generation: u64,
    /// The write epoch before it was sent: a write done after this makes
    /// what it fetches stale.
    epoch: u64,
}

impl Lookup {
    /// Whether the answer comes from the cache without asking GitHub.
    pub fn is_fresh(&self) -> bool {
        matches!(self, Lookup::Fresh(_))
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
    /// Forward, and give GitHub's answer to [`Cache::complete`].
    Forward(Forwarding),
}

/// A request on its way to GitHub, as the cache follows it: what it looked
/// up, whether identical requests wait on it, and its method.
#[derive(Debug)]
pub struct Forwarding {
    lookup: Lookup,
    /// Set when identical requests wait on this one.
    leader: Option<Leader>,
    method: Method,
}

impl Forwarding {
    /// Adds the stored validators to the request going upstream.
    pub fn add_validators(&self, headers: &mut HeaderMap) {
        self.lookup.add_validators(headers);
    }
}

/// [`Plan`], before the request's method is attached.
#[derive(Debug)]
enum Planned {
    Answer(Arc<Entry>, Outcome),
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
    fn weight(&self, key: &Key, entry: &Arc<Entry>) -> u64 {
        key.weight() + entry.weight()
    }
}

/// The state of a request being fetched for others: `None` while pending,
/// then the stored entry, or `Some(None)` if nothing could be stored.
type Flight = Option<Option<Arc<Entry>>>;

struct Inner {
    entries: Entries,
    /// Largest single entry, everything it holds weighed.
    max_entry: u64,
    /// Ended by every write that may have reached GitHub.
    epoch: AtomicU64,
    inflight: Mutex<HashMap<Key, watch::Receiver<Flight>>>,
    metrics: Arc<Metrics>,
    /// What recordings may hold before their answers are stored.
    read_ahead: ReadAheadBudget,
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
                // Two largest entries at once at the least: a quarter of
                // the cache, so the process holds at most 1.25 times
                // `--cache-size` of answers, stored or on their way.
                read_ahead: ReadAheadBudget::new(size / 4),
                metrics,
            })),
            key_host,
        }
    }

    /// What the cache holds for this request. `headers` are the client's;
    /// the key is taken from them as they will go upstream.
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
        // Read before the request is sent (it can only be sent later): a
        // write done while it is out makes its answer stale.
        let epoch = inner.epoch.load(Ordering::Acquire);
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
        if client_conditional || request_control.no_store || target.len() > MAX_TARGET {
            return Lookup::Bypass;
        }
        let mut forwarded = headers.clone();
        crate::upstream::forward::remove_unforwarded(&mut forwarded);
        let Ok(key) = self.key(credential, target, headers, &forwarded) else {
            return Lookup::Bypass;
        };
        let pending = Pending {
            key,
            forwarded,
            generation: credential.generation,
            epoch,
        };
        match inner.entries.get(&pending.key) {
            // Neither served nor stored: which of the values GitHub used
            // is unknowable.
            Some(entry) if entry.unkeyable_vary(&pending.forwarded) => Lookup::Bypass,
            Some(entry) if entry.matches_vary(&pending.forwarded) => {
                let fresh = now < entry.fresh_until
                    && entry.generation == credential.generation
                    && entry.epoch == epoch
                    && !request_control.no_cache;
                if fresh {
                    Lookup::Fresh(entry)
                } else {
                    Lookup::Stale(pending, entry)
                }
            }
            // A HEAD cannot fill the cache (it has no body).
            _ if *method == Method::HEAD => Lookup::Bypass,
            _ => Lookup::Miss(pending),
        }
    }

    /// The key: the keyed headers from `forwarded` (what goes upstream), the
    /// `Host` from the client's `headers` (what links are rewritten to).
    fn key(
        &self,
        credential: &Current,
        target: &str,
        headers: &HeaderMap,
        forwarded: &HeaderMap,
    ) -> Result<Key, Unkeyable> {
        Ok(Key(Arc::new(KeyParts {
            scope: credential.scope.clone(),
            target: target.into(),
            host: if self.key_host {
                keyed_value(headers, &HOST)?
            } else {
                None
            },
            accept: keyed_value(forwarded, &ACCEPT)?,
            api_version: keyed_value(forwarded, &API_VERSION)?,
            accept_encoding: keyed_value(forwarded, &ACCEPT_ENCODING)?,
        })))
    }

    /// After the replay record: answer a fresh entry, or wait for an
    /// identical request already in flight. It never makes this request a
    /// leader: that is [`Cache::lead`], once the request holds its upstream
    /// slot. A request that led while still waiting for its client's share
    /// would hold every other client's identical `GET` back for as long as
    /// its own client kept its share busy (up to `--upstream-timeout`).
    pub async fn plan(&self, lookup: Lookup, method: &Method, wait: Duration) -> Plan {
        match self.planned(lookup, method, wait).await {
            Planned::Answer(entry, outcome) => Plan::Answer(entry, outcome),
            Planned::Forward(lookup, leader) => Plan::Forward(Forwarding {
                lookup,
                leader,
                method: method.clone(),
            }),
        }
    }

    async fn planned(&self, lookup: Lookup, method: &Method, wait: Duration) -> Planned {
        let key = match &lookup {
            Lookup::Fresh(entry) => return Planned::Answer(Arc::clone(entry), Outcome::Hit),
            Lookup::Miss(pending) | Lookup::Stale(pending, _) if *method == Method::GET => {
                pending.key.clone()
            }
            _ => return Planned::Forward(lookup, None),
        };
        let Some(inner) = &self.inner else {
            return Planned::Forward(lookup, None);
        };
        let waiting = match inner.inflight.lock() {
            Ok(inflight) => inflight.get(&key).cloned(),
            Err(_) => None,
        };
        if let Some(mut receiver) = waiting {
            let done = tokio::time::timeout(wait, receiver.wait_for(Option::is_some)).await;
            let stored = match done {
                Ok(Ok(flight)) => flight.clone().flatten(),
                _ => None,
            };
            if let Some(entry) = stored {
                return inner.after_flight(lookup, entry);
            }
        }
        // Nothing in flight, or the flight's answer could not be stored (or
        // took too long): ask GitHub ourselves.
        Planned::Forward(lookup, None)
    }

    /// Makes a request about to be sent (its upstream slot in hand) the
    /// leader of identical `GET`s, unless one is already in flight (one
    /// that started while this one waited for its slot: both are sent).
    pub fn lead(&self, forwarding: &mut Forwarding) {
        let key = match &forwarding.lookup {
            Lookup::Miss(pending) | Lookup::Stale(pending, _)
                if forwarding.method == Method::GET =>
            {
                pending.key.clone()
            }
            _ => return,
        };
        let Some(inner) = self.inner.as_ref() else {
            return;
        };
        let Ok(mut inflight) = inner.inflight.lock() else {
            return;
        };
        if inflight.contains_key(&key) {
            return;
        }
        let (sender, receiver) = watch::channel(None);
        inflight.insert(key.clone(), receiver);
        drop(inflight);
        forwarding.leader = Some(Leader {
            key,
            sender,
            inner: Arc::clone(inner),
        });
    }

    /// Turns GitHub's answer into the client's, with how the cache answered
    /// (`None`: the cache had no part in it): a `304` to our revalidation
    /// becomes the stored `200`; a cacheable `200` is kept as it streams.
    pub fn complete(
        &self,
        forwarding: Forwarding,
        response: Response<ProxyBody>,
        now: Instant,
    ) -> (Response<ProxyBody>, Option<Outcome>) {
        let Forwarding {
            lookup,
            leader,
            ref method,
        } = forwarding;
        let head = *method == Method::HEAD;
        let Some(inner) = &self.inner else {
            return (response, None);
        };
        if *method != Method::GET && *method != Method::HEAD {
            // A write: its epoch is ended by the [`Write`] guard.
            return (response, None);
        }
        let status = response.status();
        let (pending, stale) = match lookup {
            Lookup::Bypass | Lookup::Fresh(_) => return self.mark(response, Outcome::Miss),
            Lookup::Miss(pending) => (pending, None),
            Lookup::Stale(pending, entry) => (pending, Some(entry)),
        };
        if let (Some(stale), StatusCode::NOT_MODIFIED) = (&stale, status) {
            let entry = Arc::new(Entry {
                headers: updated_headers(&stale.headers, response.headers()),
                body: stale.body.clone(),
                etag: response
                    .headers()
                    .get(ETAG)
                    .map(owned)
                    .or_else(|| stale.etag.clone()),
                last_modified: response
                    .headers()
                    .get(LAST_MODIFIED)
                    .map(owned)
                    .or_else(|| stale.last_modified.clone()),
                vary: stale.vary.clone(),
                fresh_until: now + Directives::of(response.headers()).fresh_for(),
                generation: pending.generation,
                epoch: pending.epoch,
            });
            inner.store(pending.key, Arc::clone(&entry));
            if let Some(leader) = leader {
                leader.publish(Some(Arc::clone(&entry)));
            }
            return (
                self.answer(&entry, Outcome::Revalidated, head),
                Some(Outcome::Revalidated),
            );
        }
        if *method != Method::GET {
            return self.mark(response, Outcome::Miss);
        }
        let Some(template) = storable(response.headers(), status, inner.max_entry) else {
            // Nothing will be stored; waiting requests go to GitHub.
            return self.mark(response, Outcome::Miss);
        };
        let vary = vary_values(response.headers(), &pending.forwarded);
        if vary
            .iter()
            .any(|(name, _)| keyed_value(&pending.forwarded, name).is_err())
        {
            // The request repeats (or overfills) a header GitHub varies
            // on: which value it used is unknowable.
            return self.mark(response, Outcome::Miss);
        }
        let recorder = Recorder {
            fixed: pending.key.weight()
                + Entry::weight_without_body(
                    &template.headers,
                    [template.etag.as_ref(), template.last_modified.as_ref()],
                    &vary,
                ),
            held: inner.read_ahead.reservation(),
            inner: Arc::clone(inner),
            key: pending.key,
            template: Some(template),
            vary,
            generation: pending.generation,
            epoch: pending.epoch,
            chunks: Vec::new(),
            len: 0,
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

    /// Ends the write epoch when the returned guard is dropped, if `method`
    /// writes: hold it while the request is forwarded.
    pub fn write(&self, method: &Method) -> Write {
        let writes = *method != Method::GET && *method != Method::HEAD;
        Write(self.inner.as_ref().filter(|_| writes).map(Arc::clone))
    }

    fn mark(
        &self,
        mut response: Response<ProxyBody>,
        outcome: Outcome,
    ) -> (Response<ProxyBody>, Option<Outcome>) {
        if let Some(inner) = &self.inner {
            inner.metrics.cache_answered(outcome);
        }
        response
            .headers_mut()
            .insert(X_SIGNET_CACHE, HeaderValue::from_static(outcome.as_str()));
        (response, Some(outcome))
    }
}

impl Inner {
    fn store(&self, key: Key, entry: Arc<Entry>) {
        self.entries.insert(key, entry);
        self.metrics
            .cache_stored(self.entries.len(), self.entries.weight());
    }

    /// What a waiter does with the entry its flight stored: answer from it
    /// only when it is what this request would be served (its own `Vary`
    /// values) and no write ended since the flight was sent; revalidate it
    /// when only a write came between; else ask GitHub.
    fn after_flight(&self, lookup: Lookup, entry: Arc<Entry>) -> Planned {
        let (pending, stored) = match lookup {
            Lookup::Miss(pending) => (pending, None),
            Lookup::Stale(pending, stored) => (pending, Some(stored)),
            other => return Planned::Forward(other, None),
        };
        if !entry.matches_vary(&pending.forwarded) {
            let lookup = match stored {
                Some(stored) => Lookup::Stale(pending, stored),
                None => Lookup::Miss(pending),
            };
            return Planned::Forward(lookup, None);
        }
        if entry.epoch == self.epoch.load(Ordering::Acquire) {
            return Planned::Answer(entry, Outcome::Hit);
        }
        Planned::Forward(Lookup::Stale(pending, entry), None)
    }
}

/// Held while a write is forwarded: dropped — answered, failed, timed out,
/// or abandoned by its client — it ends the write epoch, so nothing fetched
/// before it is served without asking GitHub. A write whose answer was lost
/// may still have been applied.
#[derive(Debug)]
#[must_use = "the epoch ends when the guard is dropped"]
pub struct Write(Option<Arc<Inner>>);

impl Drop for Write {
    fn drop(&mut self) {
        if let Some(inner) = &self.0 {
            inner.epoch.fetch_add(1, Ordering::AcqRel);
        }
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
    let etag = headers.get(ETAG).map(owned);
    let last_modified = headers.get(LAST_MODIFIED).map(owned);
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
    let mut headers = owned_headers(headers);
    headers.remove(X_SIGNET_CACHE);
    Some(Template {
        headers,
        etag,
        last_modified,
        fresh_for: control.fresh_for(),
    })
}

/// The request's values of the headers `Vary` names (the first of each,
/// copied). `Authorization` is the proxy's own token, which the key's scope
/// and generation already cover.
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
        .filter(|name| *name != AUTHORIZATION)
        .map(|name| {
            let value = request.get(&name).map(owned);
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
            headers.append(name.clone(), owned(value));
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

/// Keeps a cacheable response's body as it is read from GitHub (ahead of
/// the client, see [`ProxyBody::recorded`]) and stores it when it ends
/// whole.
pub struct Recorder {
    inner: Arc<Inner>,
    key: Key,
    template: Option<Template>,
    vary: Vec<(HeaderName, Option<HeaderValue>)>,
    generation: u64,
    epoch: u64,
    /// The body so far: the chunks the client is sent too (shared, not
    /// copied).
    chunks: Vec<Bytes>,
    len: u64,
    /// The weight of everything the entry holds but its body.
    fixed: u64,
    leader: Option<Leader>,
    /// The read-ahead budget for `chunks` (and the client's queue of them).
    held: Reservation,
}

impl std::fmt::Debug for Recorder {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Recorder")
            .field("bytes", &self.len)
            .finish_non_exhaustive()
    }
}

impl crate::body::Tap for Recorder {
    fn push(&mut self, chunk: &Bytes) -> bool {
        Recorder::push(self, chunk)
    }

    fn finish(&mut self) {
        Recorder::finish(self)
    }

    /// Its share of the read-ahead budget, to be held until the client has
    /// taken what was read ahead.
    fn release(&mut self) -> Reservation {
        self.held.take()
    }
}

impl Recorder {
    /// A chunk arrived from GitHub. `false` once the answer is too large to
    /// keep, or the read-ahead budget has no room for it: nothing more is
    /// collected, and the requests waiting for it are released at once, to
    /// ask GitHub themselves.
    pub fn push(&mut self, chunk: &Bytes) -> bool {
        if self.template.is_none() {
            return false;
        }
        let len = self.len + chunk.len() as u64;
        if self.fixed + len > self.inner.max_entry || !self.held.cover(len) {
            self.template = None;
            self.chunks = Vec::new();
            self.leader = None;
            return false;
        }
        self.len = len;
        self.chunks.push(chunk.clone());
        true
    }

    /// The body ended whole: store it and tell the waiting requests.
    pub fn finish(&mut self) {
        let Some(template) = self.template.take() else {
            return;
        };
        // One allocation of exactly its size: the chunks are slices of
        // hyper's read buffers, larger than what they hold.
        let mut body = BytesMut::with_capacity(usize::try_from(self.len).unwrap_or(0));
        for chunk in std::mem::take(&mut self.chunks) {
            body.extend_from_slice(&chunk);
        }
        let entry = Arc::new(Entry {
            headers: template.headers,
            body: body.freeze(),
            etag: template.etag,
            last_modified: template.last_modified,
            vary: std::mem::take(&mut self.vary),
            fresh_until: Instant::now() + template.fresh_for,
            generation: self.generation,
            epoch: self.epoch,
        });
        self.inner.store(self.key.clone(), Arc::clone(&entry));
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
    fn a_keyed_header_is_copied_and_refused_when_repeated_or_too_long() {
        let request = headers(&[("accept", "application/json")]);
        let copied = keyed_value(&request, &ACCEPT).ok().flatten();
        assert_eq!(
            copied.as_ref().map(HeaderValue::as_bytes),
            Some(&b"application/json"[..])
        );
        assert_ne!(
            copied.map(|v| v.as_bytes().as_ptr()),
            request.get(ACCEPT).map(|v| v.as_bytes().as_ptr()),
            "a stored value must not share the request's buffer"
        );
        assert!(matches!(keyed_value(&request, &API_VERSION), Ok(None)));
        let twice = headers(&[("accept", "a"), ("accept", "b")]);
        assert!(keyed_value(&twice, &ACCEPT).is_err());
        let mut long = HeaderMap::new();
        let value = "a".repeat(MAX_KEYED_VALUE + 1);
        long.insert(
            ACCEPT,
            HeaderValue::from_str(&value).unwrap_or(HeaderValue::from_static("")),
        );
        assert!(keyed_value(&long, &ACCEPT).is_err());
        long.insert(
            ACCEPT,
            HeaderValue::from_str(&value[1..]).unwrap_or(HeaderValue::from_static("")),
        );
        assert!(keyed_value(&long, &ACCEPT).is_ok());
    }

    #[test]
    fn a_repeated_vary_value_matches_no_stored_entry() {
        let entry = Entry {
            headers: HeaderMap::new(),
            body: Bytes::new(),
            etag: None,
            last_modified: None,
            vary: vec![(http::header::COOKIE, Some(HeaderValue::from_static("a=b")))],
            fresh_until: Instant::now(),
            generation: 0,
            epoch: 0,
        };
        assert!(entry.matches_vary(&headers(&[("cookie", "a=b")])));
        assert!(!entry.matches_vary(&headers(&[("cookie", "c=d")])));
        assert!(!entry.matches_vary(&headers(&[])));
        let twice = headers(&[("cookie", "a=b"), ("cookie", "a=b")]);
        assert!(!entry.matches_vary(&twice));
        assert!(entry.unkeyable_vary(&twice));
        assert!(!entry.unkeyable_vary(&headers(&[("cookie", "c=d")])));
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
