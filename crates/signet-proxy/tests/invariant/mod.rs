//! The invariant, checked on the wire (issue 10): generated traffic — valid
//! proofs, a mutation of every field, replays, reorderings, concurrent
//! duplicates, bodies split at random points, pipelining, slow bodies — is
//! driven over real sockets into the real server in front of the recording
//! stand-in. After each run:
//!
//! * every request the upstream received is exactly one valid, fresh, unique
//!   proof's method, target and body, and each such proof reached it once;
//! * every other request was refused with the status and code the spec's
//!   order of checks (§5) gives for it;
//! * the shared token appears in no response and no log line, and no proof
//!   signature appears in any log line.
//!
//! The model is the spec itself: a proof is judged from its claims and its
//! mutation against a fixed clock ([`NOW`]), and `(ek, n)` pairs that reached
//! the replay step are remembered. Logs are captured by a subscriber that is
//! the default only on the test's own thread, with a current-thread runtime
//! so every proxy task logs there.
//!
//! `PROPTEST_CASES=2000 cargo test -p signet-proxy --test proxy invariant`
//! runs longer (the default is a few dozen cases, seconds in all).

use std::collections::{HashMap, HashSet};
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use proptest::prelude::*;
use proptest::sample::Index;
use signet_core::{Binding, BodyDigest, ErrorCode, Purpose, RequestParts, SigningKey};
use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
use tokio::net::TcpStream;

use crate::support::{
    assert_no_token, assert_refused, random_bytes, random_key, take_reply, Env, Reply, Request,
    NOW, TOKEN,
};

/// `--max-body-size` in these runs, small so 413 is reached often.
const MAX_BODY: usize = 2048;
const METHODS: [&str; 5] = ["GET", "POST", "PUT", "PATCH", "DELETE"];
/// `--allowed-purposes`; the generator also signs [`DISALLOWED`].
const ALLOWED: [&str; 2] = ["ci", "test"];
const DISALLOWED: &str = "elsewhere";
const SKEW: i64 = 30;
const MAX_TTL: i64 = 900;

/// Cases per run: `PROPTEST_CASES`, else a few dozen.
fn cases() -> u32 {
    std::env::var("PROPTEST_CASES")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(32)
}

// ---------------------------------------------------------------------------
// What is generated
// ---------------------------------------------------------------------------

/// One signed request: what the client signs.
#[derive(Debug, Clone)]
struct Spec {
    method: usize,
    body: Vec<u8>,
    query: String,
    /// `ts − NOW`.
    ts: i64,
    /// `exp − NOW`.
    exp: i64,
    purpose: &'static str,
    /// Signed with the ephemeral key of an earlier spec, and also its
    /// nonce when `true` (the same `(ek, n)` over another request).
    reuse: Option<(Index, bool)>,
}

/// What is done to a proof (or its request) after signing.
#[derive(Debug, Clone)]
enum Mutation {
    None,
    NoProof,
    TwoProofs,
    Syntax(u8),
    UnknownMaster,
    Ek(Index, u8),
    Exp(i64),
    Purpose,
    B(Index, u8),
    Ts(i64),
    Nonce(Index, u8),
    S(Index, u8),
    Method,
    Target,
    Body(Index, u8),
}

/// One request sent: a spec, a mutation, and its body's framing (chunk
/// boundaries when chunked).
#[derive(Debug, Clone)]
struct Send {
    spec: Index,
    mutation: Mutation,
    chunked: Option<Vec<Index>>,
}

/// How a step's bytes go out: cut at these points, with a pause between
/// the pieces (slow bodies, heads split across reads).
#[derive(Debug, Clone)]
struct Transport {
    cuts: Vec<Index>,
    pause_ms: u64,
}

#[derive(Debug, Clone)]
enum Step {
    /// One request on its own connection.
    One(Send, Transport),
    /// Several requests written back to back on one connection.
    Pipelined(Vec<Send>, Transport),
    /// Requests on connections of their own, all at once; each repeated
    /// `copies` times (concurrent duplicates).
    Concurrent(Vec<(Send, usize)>, Transport),
}

#[derive(Debug, Clone)]
struct Run {
    specs: Vec<Spec>,
    steps: Vec<Step>,
}

fn spec() -> impl Strategy<Value = Spec> {
    (
        0..METHODS.len(),
        prop_oneof![
            4 => proptest::collection::vec(any::<u8>(), 0..48),
            1 => proptest::collection::vec(any::<u8>(), 0..MAX_BODY + 400),
            1 => proptest::collection::vec(any::<u8>(), MAX_BODY - 2..=MAX_BODY + 2),
        ],
        "[a-z0-9=&%/:@!$'()*+,;-]{0,12}",
        prop_oneof![8 => Just(0i64), 2 => -SKEW..=SKEW, 1 => -45i64..=45],
        prop_oneof![8 => 1i64..=300, 1 => -3i64..=3, 1 => MAX_TTL - 3..=MAX_TTL + 3],
        prop_oneof![
            3 => Just(ALLOWED[0]),
            3 => Just(ALLOWED[1]),
            1 => Just(DISALLOWED)
        ],
        proptest::option::weighted(0.25, (any::<Index>(), any::<bool>())),
    )
        .prop_map(|(method, body, query, ts, exp, purpose, reuse)| Spec {
            method,
            body,
            query,
            ts,
            exp,
            purpose,
            reuse,
        })
}

fn flip() -> impl Strategy<Value = (Index, u8)> {
    (any::<Index>(), 1u8..=255)
}

fn mutation() -> impl Strategy<Value = Mutation> {
    prop_oneof![
        20 => Just(Mutation::None),
        1 => Just(Mutation::NoProof),
        1 => Just(Mutation::TwoProofs),
        1 => (0u8..6).prop_map(Mutation::Syntax),
        1 => Just(Mutation::UnknownMaster),
        1 => flip().prop_map(|(i, x)| Mutation::Ek(i, x)),
        1 => (-1000i64..1000).prop_filter("changes exp", |d| *d != 0).prop_map(Mutation::Exp),
        1 => Just(Mutation::Purpose),
        1 => flip().prop_map(|(i, x)| Mutation::B(i, x)),
        1 => (-60i64..60).prop_filter("changes ts", |d| *d != 0).prop_map(Mutation::Ts),
        1 => flip().prop_map(|(i, x)| Mutation::Nonce(i, x)),
        1 => flip().prop_map(|(i, x)| Mutation::S(i, x)),
        1 => Just(Mutation::Method),
        1 => Just(Mutation::Target),
        1 => flip().prop_map(|(i, x)| Mutation::Body(i, x)),
    ]
}

fn send() -> impl Strategy<Value = Send> {
    (
        any::<Index>(),
        mutation(),
        proptest::option::weighted(0.3, proptest::collection::vec(any::<Index>(), 0..5)),
    )
        .prop_map(|(spec, mutation, chunked)| Send {
            spec,
            mutation,
            chunked,
        })
}

fn transport() -> impl Strategy<Value = Transport> {
    prop_oneof![
        2 => Just(Transport { cuts: Vec::new(), pause_ms: 0 }),
        1 => (proptest::collection::vec(any::<Index>(), 1..6), 0u64..25)
            .prop_map(|(cuts, pause_ms)| Transport { cuts, pause_ms }),
    ]
}

fn step() -> impl Strategy<Value = Step> {
    prop_oneof![
        4 => (send(), transport()).prop_map(|(s, t)| Step::One(s, t)),
        2 => (proptest::collection::vec(send(), 2..6), transport())
            .prop_map(|(s, t)| Step::Pipelined(s, t)),
        2 => (proptest::collection::vec((send(), 1usize..4), 1..4), transport())
            .prop_map(|(s, t)| Step::Concurrent(s, t)),
    ]
}

fn run() -> impl Strategy<Value = Run> {
    (
        proptest::collection::vec(spec(), 1..7),
        proptest::collection::vec(step(), 1..12),
    )
        .prop_map(|(specs, steps)| Run { specs, steps })
}

// ---------------------------------------------------------------------------
// The model: what the spec says each request gets
// ---------------------------------------------------------------------------

/// A spec signed: the key material and the proof's claims.
struct Signed {
    method: &'static str,
    target: String,
    body: Vec<u8>,
    ephemeral: SigningKey,
    nonce: [u8; 16],
    ts: u64,
    exp: u64,
    purpose: &'static str,
}

/// One request ready to go: its bytes and what the spec says it gets.
#[derive(Clone)]
struct Built {
    bytes: Vec<u8>,
    method: &'static str,
    target: String,
    body: Vec<u8>,
    expect: Expect,
    /// The proof's request signature as sent (must never be logged).
    signature: Option<String>,
    /// Whether a body was framed (`Content-Length` or chunked).
    framed_body: bool,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Expect {
    /// Refused before the replay step, whatever came before.
    Refused(ErrorCode),
    /// Reaches the replay step with this `(ek, n)`: forwarded the first
    /// time, `REPLAY_DETECTED` after that.
    Fresh([u8; 48]),
}

fn sign_all(specs: &[Spec]) -> Vec<Signed> {
    let mut signed: Vec<Signed> = Vec::with_capacity(specs.len());
    for (i, spec) in specs.iter().enumerate() {
        let (ephemeral, nonce) = match (&spec.reuse, i) {
            (Some((from, same_nonce)), 1..) => {
                let earlier = &signed[from.index(i)];
                let nonce = if *same_nonce {
                    earlier.nonce
                } else {
                    random_bytes()
                };
                (earlier.ephemeral.clone(), nonce)
            }
            _ => (random_key(), random_bytes()),
        };
        let query = if spec.query.is_empty() {
            String::new()
        } else {
            format!("&{}", spec.query)
        };
        signed.push(Signed {
            method: METHODS[spec.method],
            target: format!("/echo?spec={i}{query}"),
            body: spec.body.clone(),
            ephemeral,
            nonce,
            ts: NOW.saturating_add_signed(spec.ts),
            exp: NOW.saturating_add_signed(spec.exp),
            purpose: spec.purpose,
        });
    }
    signed
}

fn flip_at<const N: usize>(bytes: &mut [u8; N], (at, by): &(Index, u8)) {
    bytes[at.index(N)] ^= by;
}

/// Signs, mutates and frames one request, and judges it as §5 does.
fn build(signed: &Signed, master: &SigningKey, send: &Send, host: &str) -> Built {
    let purpose = Purpose::new(signed.purpose).expect("generated purposes are valid");
    let binding = Binding::sign(
        master,
        &signed.ephemeral.verifying_key(),
        signed.exp,
        purpose,
    );
    let mut proof = binding.sign_request(
        &signed.ephemeral,
        &RequestParts {
            method: signed.method,
            target: &signed.target,
            body_digest: BodyDigest::of(&signed.body),
        },
        signed.ts,
        signed.nonce,
    );
    let mut method = signed.method;
    let mut target = signed.target.clone();
    let mut body = signed.body.clone();
    // Whether the mutation breaks a signature (the binding or the request's).
    let mut forged = true;
    match &send.mutation {
        Mutation::None
        | Mutation::NoProof
        | Mutation::TwoProofs
        | Mutation::Syntax(_)
        | Mutation::UnknownMaster => forged = false,
        Mutation::Ek(at, by) => flip_at(&mut proof.ek, &(*at, *by)),
        Mutation::Exp(delta) => proof.exp = proof.exp.saturating_add_signed(*delta),
        Mutation::Purpose => {
            let other = ALLOWED
                .into_iter()
                .find(|p| *p != signed.purpose)
                .unwrap_or(ALLOWED[0]);
            proof.pur = Purpose::new(other).expect("valid purpose");
        }
        Mutation::B(at, by) => flip_at(&mut proof.b, &(*at, *by)),
        Mutation::Ts(delta) => proof.ts = proof.ts.saturating_add_signed(*delta),
        Mutation::Nonce(at, by) => flip_at(&mut proof.n, &(*at, *by)),
        Mutation::S(at, by) => flip_at(&mut proof.s, &(*at, *by)),
        Mutation::Method => {
            let i = METHODS.iter().position(|m| *m == method).unwrap_or(0);
            method = METHODS[(i + 1) % METHODS.len()];
        }
        Mutation::Target => target.push_str("&changed"),
        Mutation::Body(at, by) => {
            if body.is_empty() {
                body.push(*by);
            } else {
                let i = at.index(body.len());
                body[i] ^= by;
            }
        }
    }
    if let Mutation::UnknownMaster = send.mutation {
        proof.mk = random_key().verifying_key().to_bytes();
    }
    let header = proof.to_string();
    let mut request = Request::new(method, &target);
    match &send.mutation {
        Mutation::NoProof => {}
        Mutation::TwoProofs => request = request.proof(&header).proof(&header),
        Mutation::Syntax(kind) => request = request.proof(garble(&header, *kind)),
        _ => request = request.proof(&header),
    }
    let framed_body = send.chunked.is_some() || !body.is_empty();
    request = match &send.chunked {
        Some(cuts) => request.chunked(split(&body, cuts)),
        None if body.is_empty() && matches!(method, "GET" | "DELETE") => request,
        None => request.body(body.clone()),
    };

    let now = NOW as i128;
    let expect = match &send.mutation {
        Mutation::NoProof => Expect::Refused(ErrorCode::MissingProof),
        Mutation::TwoProofs | Mutation::Syntax(_) => Expect::Refused(ErrorCode::InvalidProof),
        Mutation::UnknownMaster => Expect::Refused(ErrorCode::UnknownKey),
        _ if now > proof.exp as i128 => Expect::Refused(ErrorCode::BindingExpired),
        _ if proof.exp as i128 - now > MAX_TTL as i128 => {
            Expect::Refused(ErrorCode::BindingTtlTooLong)
        }
        _ if (proof.ts as i128 - now).abs() > SKEW as i128 => Expect::Refused(ErrorCode::ClockSkew),
        _ if body.len() > MAX_BODY => Expect::Refused(ErrorCode::RequestTooLarge),
        _ if forged => Expect::Refused(ErrorCode::InvalidSignature),
        _ if signed.purpose == DISALLOWED => Expect::Refused(ErrorCode::PurposeMismatch),
        _ => {
            let mut key = [0u8; 48];
            key[..32].copy_from_slice(&proof.ek);
            key[32..].copy_from_slice(&proof.n);
            Expect::Fresh(key)
        }
    };
    Built {
        bytes: request.to_bytes(host),
        method,
        target,
        body,
        expect,
        signature: (!matches!(send.mutation, Mutation::NoProof))
            .then(|| header.rsplit("s=").next().unwrap_or_default().to_owned()),
        framed_body,
    }
}

/// A header the §4 grammar refuses, in one of several ways.
fn garble(header: &str, kind: u8) -> String {
    match kind {
        0 => header.replacen("v1;", "v1; ", 1),
        1 => header
            .rsplit_once(";s=")
            .map_or_else(String::new, |(head, _)| head.to_owned()),
        2 => format!("{header};ts=1"),
        3 => format!("{header};"),
        4 => header.replacen("v1;", "V1;", 1),
        _ => header.replacen(";n=", ";n==", 1),
    }
}

/// `bytes` cut at the given points (sorted, empty pieces dropped).
fn split(bytes: &[u8], cuts: &[Index]) -> Vec<Vec<u8>> {
    let mut at: Vec<usize> = cuts.iter().map(|c| c.index(bytes.len() + 1)).collect();
    at.push(0);
    at.push(bytes.len());
    at.sort_unstable();
    at.dedup();
    at.windows(2)
        .map(|w| bytes[w[0]..w[1]].to_vec())
        .filter(|piece| !piece.is_empty())
        .collect()
}

// ---------------------------------------------------------------------------
// The wire
// ---------------------------------------------------------------------------

/// Writes `bytes` in pieces (pausing between them) on a new connection
/// while reading; returns the responses received, in order, until
/// `expected` of them arrived or the proxy closed the connection.
async fn exchange(
    addr: SocketAddr,
    bytes: Vec<u8>,
    transport: &Transport,
    expected: usize,
) -> Vec<Reply> {
    let stream = TcpStream::connect(addr).await.expect("connect to proxy");
    stream.set_nodelay(true).expect("nodelay");
    let (mut reader, mut writer) = stream.into_split();
    let pieces = split(&bytes, &transport.cuts);
    let pause = Duration::from_millis(transport.pause_ms);
    // The write half stays open until every answer is read: a client that
    // half-closes may lose the answers to pipelined requests.
    let writing = tokio::spawn(async move {
        for (i, piece) in pieces.iter().enumerate() {
            if i > 0 && !pause.is_zero() {
                tokio::time::sleep(pause).await;
            }
            if writer.write_all(piece).await.is_err() {
                break;
            }
        }
        writer
    });
    let mut replies = Vec::new();
    let mut buf = Vec::new();
    let mut chunk = vec![0u8; 64 * 1024];
    let reading = tokio::time::timeout(Duration::from_secs(20), async {
        while replies.len() < expected {
            if let Some(reply) = take_reply(&mut buf, false) {
                replies.push(reply);
                continue;
            }
            match reader.read(&mut chunk).await {
                Ok(0) | Err(_) => break,
                Ok(n) => buf.extend_from_slice(&chunk[..n]),
            }
        }
    })
    .await;
    reading.expect("the proxy answers in time");
    drop(writing.await);
    replies
}

/// What one run observed, checked as it goes.
struct Observer {
    used: HashSet<[u8; 48]>,
    /// `(method, target, body)` of each request that was forwarded.
    forwarded: Vec<(String, String, Vec<u8>)>,
    signatures: Vec<String>,
}

impl Observer {
    fn check_reply(&mut self, built: &Built, reply: &Reply) {
        assert_no_token(&reply.raw);
        match built.expect {
            Expect::Refused(code) => assert_refused(reply, code),
            Expect::Fresh(key) if self.used.contains(&key) => {
                assert_refused(reply, ErrorCode::ReplayDetected);
            }
            Expect::Fresh(key) => {
                assert_eq!(
                    reply.status,
                    200,
                    "a valid, fresh, unique proof is forwarded: {}",
                    reply.text()
                );
                assert_eq!(reply.body, built.body, "the echo is the body as signed");
                self.used.insert(key);
                self.forward(built);
            }
        }
    }

    fn forward(&mut self, built: &Built) {
        self.forwarded.push((
            built.method.to_owned(),
            built.target.clone(),
            built.body.clone(),
        ));
    }

    /// Concurrent requests: those refused before the replay step get their
    /// refusal; of those sharing an `(ek, n)` not used before, exactly one
    /// is forwarded and the rest are replays.
    fn check_concurrent(&mut self, sent: &[(Built, Reply)]) {
        let mut winners: HashMap<[u8; 48], usize> = HashMap::new();
        for (built, reply) in sent {
            assert_no_token(&reply.raw);
            match built.expect {
                Expect::Refused(code) => assert_refused(reply, code),
                Expect::Fresh(key) if self.used.contains(&key) || reply.status != 200 => {
                    assert_refused(reply, ErrorCode::ReplayDetected);
                }
                Expect::Fresh(key) => {
                    assert_eq!(reply.body, built.body, "the echo is the body as signed");
                    *winners.entry(key).or_default() += 1;
                    self.forward(built);
                }
            }
        }
        let contested: HashSet<[u8; 48]> = sent
            .iter()
            .filter_map(|(built, _)| match built.expect {
                Expect::Fresh(key) if !self.used.contains(&key) => Some(key),
                _ => None,
            })
            .collect();
        for key in contested {
            assert_eq!(
                winners.get(&key).copied().unwrap_or(0),
                1,
                "exactly one of the requests carrying one (ek, n) is forwarded"
            );
            self.used.insert(key);
        }
    }
}

/// Runs one generated script against a fresh proxy and checks everything.
async fn drive(run: Run) -> Vec<u8> {
    let env = Env::start_with(|c| {
        c.max_body_size = MAX_BODY as u64;
        c.allowed_purposes = ALLOWED
            .iter()
            .map(|p| Purpose::new(p).expect("valid purpose"))
            .collect();
    })
    .await;
    let addr = env.proxy.addr;
    let host = addr.to_string();
    let master = env.signer.master().clone();
    let signed = sign_all(&run.specs);
    let build_send = |send: &Send| {
        let spec = &signed[send.spec.index(signed.len())];
        build(spec, &master, send, &host)
    };
    let mut observer = Observer {
        used: HashSet::new(),
        forwarded: Vec::new(),
        signatures: Vec::new(),
    };

    for step in &run.steps {
        match step {
            Step::One(send, transport) => {
                let built = build_send(send);
                let replies = exchange(addr, built.bytes.clone(), transport, 1).await;
                let reply = replies.first().expect("one answer per request");
                observer.check_reply(&built, reply);
                observer.signatures.extend(built.signature);
            }
            Step::Pipelined(sends, transport) => {
                let built: Vec<Built> = sends.iter().map(build_send).collect();
                let bytes: Vec<u8> = built.iter().flat_map(|b| b.bytes.clone()).collect();
                let replies = exchange(addr, bytes, transport, built.len()).await;
                for (built, reply) in built.iter().zip(&replies) {
                    observer.check_reply(built, reply);
                }
                // The proxy may close the connection after refusing a
                // request whose body it did not read; whatever was pipelined
                // behind it is then never read (nor forwarded: checked below).
                if replies.len() < built.len() {
                    let last = replies
                        .len()
                        .checked_sub(1)
                        .map(|i| (&built[i], &replies[i]));
                    assert!(
                        last.is_some_and(|(b, r)| r.status != 200 && b.framed_body),
                        "pipelined requests go unanswered only behind a refused body: {:?}",
                        last.map(|(_, r)| r.text())
                    );
                }
                observer
                    .signatures
                    .extend(built.into_iter().filter_map(|b| b.signature));
            }
            Step::Concurrent(sends, transport) => {
                let built: Vec<Built> = sends
                    .iter()
                    .flat_map(|(send, copies)| {
                        let one = build_send(send);
                        std::iter::repeat_n(one, *copies)
                    })
                    .collect();
                let tasks: Vec<_> = built
                    .iter()
                    .map(|b| {
                        let bytes = b.bytes.clone();
                        let transport = transport.clone();
                        tokio::spawn(async move { exchange(addr, bytes, &transport, 1).await })
                    })
                    .collect();
                let mut sent = Vec::new();
                for (built, task) in built.into_iter().zip(tasks) {
                    let reply = task
                        .await
                        .expect("exchange task")
                        .into_iter()
                        .next()
                        .expect("one answer per request");
                    sent.push((built, reply));
                }
                observer.check_concurrent(&sent);
                observer
                    .signatures
                    .extend(sent.into_iter().filter_map(|(b, _)| b.signature));
            }
        }
    }

    // Exactly the forwarded requests, each once, reached the upstream, with
    // only the shared token and no proof.
    let mut received: Vec<(String, String, Vec<u8>)> = env
        .upstream
        .requests()
        .into_iter()
        .map(|r| {
            assert_eq!(
                r.headers.get("authorization").map(|v| v.as_bytes()),
                Some(format!("Bearer {TOKEN}").as_bytes())
            );
            assert!(
                r.headers.get("signet-proof").is_none(),
                "the proof is stripped"
            );
            (r.method, r.target, r.body.to_vec())
        })
        .collect();
    let mut forwarded = observer.forwarded;
    received.sort();
    forwarded.sort();
    assert_eq!(
        received, forwarded,
        "the upstream got exactly the valid, fresh, unique proofs' requests"
    );
    drop(env);
    let mut signatures = observer.signatures;
    signatures.retain(|s| s.len() > 40);
    signatures
        .into_iter()
        .flat_map(|s| s.into_bytes().into_iter().chain(std::iter::once(b'\n')))
        .collect()
}

/// A log sink shared with the test.
#[derive(Clone, Default)]
struct Captured(Arc<Mutex<Vec<u8>>>);

impl std::io::Write for Captured {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0.lock().expect("log lock").extend_from_slice(buf);
        Ok(buf.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

proptest! {
    #![proptest_config(ProptestConfig {
        cases: cases(),
        max_shrink_iters: 256,
        ..ProptestConfig::default()
    })]

    #[test]
    fn the_upstream_sees_exactly_the_valid_fresh_unique_proofs(run in run()) {
        let captured = Captured::default();
        let sink = captured.clone();
        let subscriber = tracing_subscriber::fmt()
            .json()
            .with_max_level(tracing::Level::TRACE)
            .with_writer(move || sink.clone())
            .finish();
        let signatures = {
            let _default = tracing::subscriber::set_default(subscriber);
            let runtime = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .expect("runtime");
            runtime.block_on(drive(run))
        };
        let log = captured.0.lock().expect("log lock").clone();
        // Not asserted per case: a run of one request can end (and the
        // proxy stop) before its record is written, which made CI flaky.
        // The soak checks one record per request on the real binary.
        assert_no_token(&log);
        let text = String::from_utf8_lossy(&log);
        for signature in String::from_utf8_lossy(&signatures).lines() {
            prop_assert!(!text.contains(signature), "a proof signature was logged");
        }
    }
}
