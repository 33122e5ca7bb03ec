//! Per-client rate limits (`rate = "600/min"` in the keys file): GCRA, the
//! token bucket without a refill timer. A limit of N per period allows a
//! burst of N and refills continuously at N per period.
//!
//! With Redis configured the limit is cluster-wide: one Lua script reads
//! and moves the client's theoretical arrival time atomically, on Redis's
//! own clock, so every replica sees the same bucket. Without Redis each
//! process keeps its own buckets. Over the limit is 429 `RATE_LIMITED` with
//! `Retry-After` in whole seconds; a Redis that cannot answer is 503 (fail
//! closed), like the replay store.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use redis::aio::ConnectionManager;
use signet_core::ErrorCode;

use crate::auth::clients::Client;
use crate::grants::Rate;
use crate::refusal::Refusal;

/// The GCRA step, shared by both backends' meaning: with the client's
/// theoretical arrival time `tat` (µs) and `now`, either the new `tat`, or
/// how long to wait.
fn gcra(rate: Rate, tat: u64, now: u64) -> Result<u64, u64> {
    let tat = tat.max(now);
    let ahead = tat - now;
    if ahead > rate.tolerance_us() {
        Err(ahead - rate.tolerance_us())
    } else {
        Ok(tat + rate.interval_us())
    }
}

/// Atomically: `KEYS[1]` holds the TAT (µs, Redis clock); `ARGV` are the
/// interval and tolerance. Returns 0 when allowed, else µs to wait.
const SCRIPT: &str = r"
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000000 + tonumber(t[2])
local interval = tonumber(ARGV[1])
local tolerance = tonumber(ARGV[2])
local tat = tonumber(redis.call('GET', KEYS[1]) or now)
if tat < now then tat = now end
if tat - now > tolerance then return tat - now - tolerance end
local new_tat = tat + interval
redis.call('SET', KEYS[1], string.format('%d', new_tat), 'PX', math.ceil((new_tat - now) / 1000) + 1000)
return 0
";

/// Atomically gives back one interval of `KEYS[1]`'s TAT (the refund of a
/// token [`SCRIPT`] took); `ARGV[1]` is the interval. A bucket that would
/// fall behind now is simply full: its key is dropped.
const REFUND_SCRIPT: &str = r"
local tat = tonumber(redis.call('GET', KEYS[1]))
if not tat then return 0 end
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000000 + tonumber(t[2])
local new_tat = tat - tonumber(ARGV[1])
if new_tat <= now then
  redis.call('DEL', KEYS[1])
else
  redis.call('SET', KEYS[1], string.format('%d', new_tat), 'PX', math.ceil((new_tat - now) / 1000) + 1000)
end
return 0
";

/// Where buckets live.
pub enum RateLimiter {
    /// This process only.
    Local {
        /// TAT by client name, µs since `epoch`: a reload keeps the buckets.
        buckets: Mutex<HashMap<String, u64>>,
        /// The zero of the local clock.
        epoch: Instant,
    },
    /// Shared through Redis.
    Redis {
        /// The connection (shared with nothing else; reconnects by itself).
        connection: ConnectionManager,
        /// The GCRA script.
        script: redis::Script,
        /// The script that gives a token back.
        refund: redis::Script,
        /// Per-command timeout.
        timeout: Duration,
    },
}

impl std::fmt::Debug for RateLimiter {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            RateLimiter::Local { .. } => "RateLimiter::Local",
            RateLimiter::Redis { .. } => "RateLimiter::Redis",
        })
    }
}

impl RateLimiter {
    /// Buckets in this process.
    pub fn local() -> Self {
        RateLimiter::Local {
            buckets: Mutex::new(HashMap::new()),
            epoch: Instant::now(),
        }
    }

    /// Buckets in Redis, cluster-wide.
    pub fn redis(connection: ConnectionManager, timeout: Duration) -> Self {
        RateLimiter::Redis {
            connection,
            script: redis::Script::new(SCRIPT),
            refund: redis::Script::new(REFUND_SCRIPT),
            timeout,
        }
    }

    /// Takes one request from `client`'s bucket, or refuses: 429 over the
    /// limit, 503 when Redis cannot answer. A client without `rate` passes.
    pub async fn check(&self, client: &Client) -> Result<(), Refusal> {
        let Some(rate) = client.rate else {
            return Ok(());
        };
        let wait_us = match self {
            RateLimiter::Local { buckets, epoch } => {
                let now = u64::try_from(epoch.elapsed().as_micros()).unwrap_or(u64::MAX / 2);
                let mut buckets = buckets
                    .lock()
                    .map_err(|_| Refusal::new(ErrorCode::ReplayStoreUnavailable))?;
                let tat = buckets.get(&client.name).copied().unwrap_or(now);
                match gcra(rate, tat, now) {
                    Ok(new_tat) => {
                        buckets.insert(client.name.clone(), new_tat);
                        0
                    }
                    Err(wait) => wait,
                }
            }
            RateLimiter::Redis {
                connection,
                script,
                timeout,
                ..
            } => {
                let mut connection = connection.clone();
                let mut invocation = script.key(format!("signet:rate:{}", client.name));
                invocation.arg(rate.interval_us()).arg(rate.tolerance_us());
                match tokio::time::timeout(
                    *timeout,
                    invocation.invoke_async::<u64>(&mut connection),
                )
                .await
                {
                    Ok(Ok(wait)) => wait,
                    Ok(Err(error)) => {
                        return Err(Refusal::new(ErrorCode::ReplayStoreUnavailable)
                            .with_detail(format!("rate limit in Redis: {error}")))
                    }
                    Err(_) => {
                        return Err(Refusal::new(ErrorCode::ReplayStoreUnavailable)
                            .with_detail("rate limit in Redis: timed out"))
                    }
                }
            }
        };
        if wait_us == 0 {
            return Ok(());
        }
        let seconds = wait_us.div_ceil(1_000_000).max(1);
        Err(Refusal::new(ErrorCode::RateLimited)
            .retry_after(seconds)
            .with_detail(format!("client {:?} over its rate limit", client.name)))
    }

    /// A guard for the token [`RateLimiter::check`] just took from
    /// `client`: dropped, it gives the token back; [`Refund::keep`] keeps
    /// it. In GCRA a token is one interval of the theoretical arrival time,
    /// so the refund moves it back by one; tokens taken since are untouched,
    /// and the bucket never holds more than its burst. Best effort: a refund
    /// Redis cannot take leaves the token taken, so a failure never makes a
    /// bucket larger. The pipeline
    /// keeps it only once the proof's replay record is written, so every
    /// refusal in between — the quota guard, a missing credential, the store
    /// failing or finding a copy, or the client hanging up — gives it back:
    /// copies of a captured proof refused there must not drain the bucket
    /// of the client they were captured from. A guard, not a refund on each
    /// `?`, so that a refusal added there later cannot forget it.
    pub fn refund_unless_kept(&self, client: &std::sync::Arc<Client>) -> Refund<'_> {
        Refund {
            limiter: self,
            client: client.rate.is_some().then(|| std::sync::Arc::clone(client)),
        }
    }
}

/// A taken rate token that goes back to its bucket on drop unless kept;
/// made by [`RateLimiter::refund_unless_kept`].
#[must_use = "dropped at once, the guard gives the token straight back"]
pub struct Refund<'a> {
    limiter: &'a RateLimiter,
    client: Option<std::sync::Arc<Client>>,
}

impl Refund<'_> {
    /// The request went on to spend its proof: the token stays taken.
    pub fn keep(mut self) {
        self.client = None;
    }
}

impl Drop for Refund<'_> {
    fn drop(&mut self) {
        let Some(client) = self.client.take() else {
            return;
        };
        let Some(rate) = client.rate else {
            return;
        };
        match self.limiter {
            // At once, so the client's next request already sees it.
            RateLimiter::Local { buckets, epoch } => {
                refund_local(buckets, *epoch, &client.name, rate);
            }
            // Drop cannot wait on Redis: the refund runs beside, bounded by
            // the command timeout like every other rate command.
            RateLimiter::Redis {
                connection,
                refund,
                timeout,
                ..
            } => {
                if let Ok(runtime) = tokio::runtime::Handle::try_current() {
                    runtime.spawn(refund_redis(
                        connection.clone(),
                        refund.clone(),
                        *timeout,
                        client.name.clone(),
                        rate,
                    ));
                }
            }
        }
    }
}

fn refund_local(buckets: &Mutex<HashMap<String, u64>>, epoch: Instant, name: &str, rate: Rate) {
    let now = u64::try_from(epoch.elapsed().as_micros()).unwrap_or(u64::MAX / 2);
    let Ok(mut buckets) = buckets.lock() else {
        return;
    };
    if let Some(tat) = buckets.get_mut(name) {
        *tat = tat.saturating_sub(rate.interval_us());
        if *tat <= now {
            // As good as a bucket never used: a full burst.
            buckets.remove(name);
        }
    }
}

async fn refund_redis(
    mut connection: ConnectionManager,
    refund: redis::Script,
    timeout: Duration,
    name: String,
    rate: Rate,
) {
    let mut invocation = refund.key(format!("signet:rate:{name}"));
    invocation.arg(rate.interval_us());
    let refunded =
        tokio::time::timeout(timeout, invocation.invoke_async::<u64>(&mut connection)).await;
    if !matches!(refunded, Ok(Ok(_))) {
        tracing::debug!(client = %name, "rate token not refunded: Redis did not take it");
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rate(text: &str) -> Rate {
        match Rate::parse(text) {
            Ok(rate) => rate,
            Err(e) => panic!("{e}"),
        }
    }

    #[tokio::test]
    async fn a_refunded_token_can_be_taken_once_and_refunds_never_exceed_the_burst() {
        let client = std::sync::Arc::new(Client {
            name: "victim".to_owned(),
            key: signet_core::SigningKey::from_bytes(&[7; 32]).verifying_key(),
            key_id: String::new(),
            purposes: None,
            allow: None,
            rate: Some(rate("2/hour")),
            github: None,
        });
        let limiter = RateLimiter::local();
        let mut taken = Vec::new();
        for _ in 0..3 {
            taken.push(limiter.check(&client).await.is_ok());
        }
        assert_eq!(taken, [true, true, false]);
        drop(limiter.refund_unless_kept(&client));
        assert!(limiter.check(&client).await.is_ok(), "the refunded token");
        assert!(limiter.check(&client).await.is_err(), "and only that one");
        for _ in 0..5 {
            drop(limiter.refund_unless_kept(&client));
        }
        let mut taken = Vec::new();
        for _ in 0..3 {
            taken.push(limiter.check(&client).await.is_ok());
        }
        assert_eq!(taken, [true, true, false], "a burst of two, never more");
    }

    #[tokio::test]
    async fn a_token_guard_dropped_unkept_gives_the_token_back_and_a_kept_one_does_not() {
        let client = std::sync::Arc::new(Client {
            name: "victim".to_owned(),
            key: signet_core::SigningKey::from_bytes(&[7; 32]).verifying_key(),
            key_id: String::new(),
            purposes: None,
            allow: None,
            rate: Some(rate("1/hour")),
            github: None,
        });
        let limiter = RateLimiter::local();
        assert!(limiter.check(&client).await.is_ok());
        drop(limiter.refund_unless_kept(&client));
        assert!(limiter.check(&client).await.is_ok(), "given back on drop");
        limiter.refund_unless_kept(&client).keep();
        assert!(
            limiter.check(&client).await.is_err(),
            "kept: the bucket is empty"
        );
    }

    #[test]
    fn a_burst_of_n_passes_then_the_bucket_refills_at_n_per_period() {
        let rate = rate("3/sec");
        let mut tat = 0;
        for _ in 0..3 {
            tat = gcra(rate, tat, 0).unwrap_or_else(|wait| panic!("refused, wait {wait}"));
        }
        let wait = gcra(rate, tat, 0).err();
        assert_eq!(wait, Some(333_333), "one interval until the next token");
        assert!(
            gcra(rate, tat, 333_333).is_ok(),
            "refilled after one interval"
        );
        // Idle for long: a full burst again, not more.
        let later = 10_000_000;
        for _ in 0..3 {
            tat = gcra(rate, tat, later).unwrap_or(u64::MAX);
        }
        assert!(gcra(rate, tat, later).is_err());
    }
}
