//! local-rate-limit: a token bucket per client key, shared by every worker, on filterkit.
//!
//! The key is a configured request header (`key_header`), or the client's address
//! (`source.address` without its port) when no header is configured or the request lacks
//! it. Each key's bucket lives in shared data (one VM per worker in Envoy, one shared-data
//! store per `vm_id`), updated with compare-and-swap and retried on `CAS_MISMATCH`, so
//! concurrent workers never hand out the same token twice. The bucket refills from the time
//! elapsed since the refill time it stores; ticks are not used (they fire once per worker).
//! At most `max_keys` buckets exist: a key hashes to two slots and takes over the one
//! refilled longest ago when neither is its own (the evicted key starts again full).
//!
//! A request with no token left is answered `429` with `retry-after` and
//! `x-ratelimit-limit` / `-remaining` / `-reset`; an allowed response carries the
//! `x-ratelimit-*` headers too. Counters `local_rate_limit.<root_id>.allowed` and
//! `.limited` (Envoy: `wasmcustom.local_rate_limit.<root_id>.allowed`) count the verdicts.
//! A host error on shared data lets the request through (fails open) and logs a warning.
#![no_std]
#![deny(unsafe_code)]

extern crate alloc;

pub mod bucket;

use alloc::format;
use alloc::rc::Rc;
use alloc::string::String;
use alloc::vec::Vec;

use filterkit::metrics::Counter;
use filterkit::{Action, Error, HttpContext, RootContext, Status, http, join, quote, shared};
use serde::Deserialize;

use bucket::{Bucket, Rate, Verdict};

/// The plugin configuration.
#[derive(Debug, Deserialize, PartialEq, Eq)]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
#[serde(deny_unknown_fields)]
pub struct Config {
    /// The bucket's size: the burst a key may send at once (1 to 1 000 000).
    pub max_tokens: u64,
    /// Tokens added every `fill_interval_ms` (1 to 1 000 000); default `max_tokens`.
    #[serde(default)]
    pub tokens_per_fill: Option<u64>,
    /// The fill interval in milliseconds (1 to 86 400 000, one day); default 1000.
    #[serde(default = "default_fill_interval_ms")]
    pub fill_interval_ms: u64,
    /// The request header whose value is the key; absent: the client's address.
    #[serde(default)]
    pub key_header: Option<String>,
    /// How many keys have a bucket at once (1 to 1 000 000); default 10 000.
    #[serde(default = "default_max_keys")]
    pub max_keys: u32,
}

fn default_fill_interval_ms() -> u64 {
    1000
}

fn default_max_keys() -> u32 {
    10_000
}

impl Config {
    /// The bucket's parameters.
    pub fn rate(&self) -> Rate {
        Rate {
            max_tokens: self.max_tokens,
            tokens_per_fill: self.tokens_per_fill.unwrap_or(self.max_tokens),
            fill_interval_ns: self.fill_interval_ms.saturating_mul(1_000_000),
        }
    }
}

/// RFC 9110 `tchar`.
fn is_token_char(byte: u8) -> bool {
    matches!(byte,
        b'0'..=b'9' | b'a'..=b'z' | b'A'..=b'Z'
        | b'!' | b'#' | b'$' | b'%' | b'&' | b'\'' | b'*' | b'+' | b'-' | b'.' | b'^' | b'_' | b'`' | b'|' | b'~')
}

fn check_range(name: &str, value: u64, max: u64) -> Result<(), String> {
    if (1..=max).contains(&value) {
        Ok(())
    } else {
        Err(join(&[
            name,
            " is ",
            &format!("{value}"),
            ", not between 1 and ",
            &format!("{max}"),
        ]))
    }
}

impl filterkit::Config for Config {
    fn validate(&self) -> Result<(), String> {
        check_range("max_tokens", self.max_tokens, 1_000_000)?;
        if let Some(tokens_per_fill) = self.tokens_per_fill {
            check_range("tokens_per_fill", tokens_per_fill, 1_000_000)?;
        }
        check_range("fill_interval_ms", self.fill_interval_ms, 86_400_000)?;
        check_range("max_keys", u64::from(self.max_keys), 1_000_000)?;
        if let Some(name) = &self.key_header
            && (name.is_empty() || !name.bytes().all(is_token_char))
        {
            return Err(join(&[
                "key_header ",
                &quote(name),
                " is not a valid HTTP token",
            ]));
        }
        Ok(())
    }
}

/// How often a request retries its compare-and-swap before letting the request through.
const MAX_ATTEMPTS: u32 = 32;

/// One per root_id: the counters, and the prefix of its shared-data keys.
#[derive(Default)]
pub struct RateLimitRoot {
    plugin: Option<Rc<Plugin>>,
}

/// What every stream of one root_id shares.
pub struct Plugin {
    slot_prefix: String,
    allowed: Option<Counter>,
    limited: Option<Counter>,
}

impl RootContext for RateLimitRoot {
    type Config = Config;
    type Http = RateLimit;
    // Makes no callouts: their dispatch is compiled away.
    const CALLOUTS: bool = false;

    fn on_configure(&mut self, _config: &Rc<Config>) -> bool {
        let root_id = match filterkit::properties::plugin_root_id() {
            Ok(root_id) => root_id.unwrap_or_default(),
            Err(error) => {
                log::warn!("cannot read plugin_root_id: {error}");
                String::new()
            }
        };
        let counter = |verdict: &str| {
            let name = join(&["local_rate_limit.", &root_id, ".", verdict]);
            Counter::define(&name)
                .map_err(|error| log::warn!("cannot define counter {name}: {error}"))
                .ok()
        };
        self.plugin = Some(Rc::new(Plugin {
            // Buckets are per root_id: two plugins in one VM count separately.
            slot_prefix: join(&["local-rate-limit/", &root_id, "/"]),
            allowed: counter("allowed"),
            limited: counter("limited"),
        }));
        true
    }

    fn create_http_context(&mut self, _context_id: u32, config: Rc<Config>) -> RateLimit {
        RateLimit {
            config,
            plugin: self.plugin.clone(),
            verdict: None,
        }
    }
}

/// One per HTTP stream: the verdict, kept for the response's headers.
pub struct RateLimit {
    config: Rc<Config>,
    plugin: Option<Rc<Plugin>>,
    verdict: Option<Verdict>,
}

impl RateLimit {
    /// The configured header's value, else the client address without its port.
    // Each step of `on_http_request_headers` is its own function: V8 needs memory superlinear in
    // a function's size to compile it (docs/benchmarks.md, "The floor").
    #[inline(never)]
    fn client_key(&self) -> Vec<u8> {
        if let Some(name) = &self.config.key_header
            && let Ok(Some(value)) = http::request_headers().get(name)
        {
            return [b"h:", value.as_slice()].concat();
        }
        let address = filterkit::properties::get(&["source", "address"])
            .ok()
            .flatten()
            .unwrap_or_default();
        [b"a:", strip_port(&address)].concat()
    }
}

/// `1.2.3.4:5` → `1.2.3.4`, `[::1]:5` → `[::1]`; anything else as is.
fn strip_port(address: &[u8]) -> &[u8] {
    match address.iter().rposition(|byte| *byte == b':') {
        Some(colon)
            if address[colon + 1..].iter().all(u8::is_ascii_digit)
                && (address.starts_with(b"[") || !address[..colon].contains(&b':')) =>
        {
            &address[..colon]
        }
        _ => address,
    }
}

fn now_ns() -> Result<u64, Error> {
    let now = filterkit::time::now()?;
    Ok(u64::try_from(now.as_nanos()).unwrap_or(u64::MAX))
}

/// The shared-data keys of the two slots a key may live in.
#[inline(never)]
fn slot_keys(prefix: &str, key_hash: u64, max_keys: u32) -> [String; 2] {
    bucket::slots(key_hash, max_keys).map(|slot| join(&[prefix, &format!("{slot}")]))
}

/// A slot's shared-data entry, and the bucket it holds if it decodes.
type Slot = (Option<shared::Entry>, Option<Bucket>);

/// Each slot's entry and bucket.
#[inline(never)]
fn read_slots(slot_keys: &[String; 2]) -> Result<Vec<Slot>, Error> {
    let mut slots = Vec::with_capacity(2);
    for slot_key in slot_keys {
        let entry = shared::get(slot_key.as_bytes())?;
        let stored = entry
            .as_ref()
            .and_then(|entry| Bucket::decode(&entry.value));
        slots.push((entry, stored));
    }
    Ok(slots)
}

/// Takes a token from `key`'s bucket: reads its two candidate slots, picks the key's own (or
/// a free one, or evicts the one refilled longest ago), and writes it back with
/// compare-and-swap, starting over when another worker wrote first.
#[inline(never)]
fn take_token(plugin: &Plugin, rate: &Rate, max_keys: u32, key: &[u8]) -> Result<Verdict, Error> {
    let key_hash = bucket::hash(key);
    let slot_keys = slot_keys(&plugin.slot_prefix, key_hash, max_keys);
    for _ in 0..MAX_ATTEMPTS {
        let now = now_ns()?;
        let mut slots = read_slots(&slot_keys)?;
        // The key's own slot, else a free one, else the one refilled longest ago.
        let rank = |stored: &Option<Bucket>| match stored {
            Some(bucket) if bucket.key_hash == key_hash => (0, 0),
            None => (1, 0),
            Some(bucket) => (2, bucket.refilled_at_ns),
        };
        let idx = usize::from(rank(&slots[1].1) < rank(&slots[0].1));
        let (entry, stored) = slots.swap_remove(idx);
        let current = match stored {
            Some(bucket) if bucket.key_hash == key_hash => bucket,
            _ => Bucket::full(key_hash, now, rate),
        };
        let (updated, verdict) = current.take(now, rate);
        // A slot never written has no version to compare with (the host treats 0 as "no
        // check"): two workers creating the same bucket at once may both win, once.
        let cas = entry.map(|entry| entry.cas);
        match shared::set(slot_keys[idx].as_bytes(), &updated.encode(), cas) {
            Ok(()) => return Ok(verdict),
            Err(Error::Host {
                status: Status::CasMismatch,
                ..
            }) => continue,
            Err(error) => return Err(error),
        }
    }
    Err(Error::CasRetriesExhausted {
        attempts: MAX_ATTEMPTS,
    })
}

fn decimal(value: u64) -> String {
    format!("{value}")
}

impl HttpContext for RateLimit {
    fn on_http_request_headers(&mut self, _n_headers: usize, _end_of_stream: bool) -> Action {
        let Some(plugin) = self.plugin.clone() else {
            return Action::Continue;
        };
        let key = self.client_key();
        let verdict = match take_token(&plugin, &self.config.rate(), self.config.max_keys, &key) {
            Ok(verdict) => verdict,
            Err(error) => {
                log::warn!("rate limit not applied, letting the request through: {error}");
                return Action::Continue;
            }
        };
        let counter = if verdict.allowed {
            plugin.allowed
        } else {
            plugin.limited
        };
        if let Some(counter) = counter
            && let Err(error) = counter.increment(1)
        {
            log::warn!("cannot count the verdict: {error}");
        }
        if verdict.allowed {
            self.verdict = Some(verdict);
            return Action::Continue;
        }
        reply_limited(&verdict);
        Action::Pause
    }

    fn on_http_response_headers(&mut self, _n_headers: usize, _end_of_stream: bool) -> Action {
        if let Some(verdict) = self.verdict {
            let headers = http::response_headers();
            for (name, value) in [
                ("x-ratelimit-limit", verdict.limit),
                ("x-ratelimit-remaining", verdict.remaining),
                ("x-ratelimit-reset", verdict.reset_seconds),
            ] {
                if let Err(error) = headers.set(name, decimal(value)) {
                    log::warn!("cannot add {name}: {error}");
                }
            }
        }
        Action::Continue
    }
}

/// Answers 429 with `retry-after` and the `x-ratelimit-*` headers.
#[inline(never)]
fn reply_limited(verdict: &Verdict) {
    let (limit, remaining, reset, retry_after) = (
        decimal(verdict.limit),
        decimal(verdict.remaining),
        decimal(verdict.reset_seconds),
        decimal(verdict.retry_after_seconds),
    );
    let sent = http::LocalReply::new(429)
        .header("retry-after", &retry_after)
        .header("x-ratelimit-limit", &limit)
        .header("x-ratelimit-remaining", &remaining)
        .header("x-ratelimit-reset", &reset)
        .body(b"rate limited\n")
        .details("local_rate_limited")
        .send();
    if let Err(error) = sent {
        log::warn!("cannot send the 429: {error}");
    }
}

filterkit::export_filter!(RateLimitRoot);
