//! The token bucket as plain arithmetic on the bytes kept in shared data: no host calls, so it
//! is tested natively and the filter only adds the compare-and-swap around it.
//!
//! Tokens are counted in units of `1 / fill_interval_ns` of a token: `elapsed_ns ×
//! tokens_per_fill` units arrive in `elapsed_ns`, so refilling is exact integer arithmetic
//! whatever the rate, and no fraction of a token is lost between requests.

/// The bucket's parameters, in the units above.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Rate {
    /// The bucket's size in tokens: the burst a client may send at once.
    pub max_tokens: u64,
    /// Tokens added per fill interval.
    pub tokens_per_fill: u64,
    /// The fill interval in nanoseconds.
    pub fill_interval_ns: u64,
}

impl Rate {
    /// Units per token.
    fn token(&self) -> u128 {
        u128::from(self.fill_interval_ns)
    }

    /// A full bucket, in units.
    fn capacity(&self) -> u128 {
        u128::from(self.max_tokens) * self.token()
    }

    /// Nanoseconds until `missing` units have arrived, rounded up.
    fn nanos_for(&self, missing: u128) -> u128 {
        missing.div_ceil(u128::from(self.tokens_per_fill.max(1)))
    }
}

/// What one slot of shared data holds: whose bucket it is, when it was last refilled, and
/// how full it was then.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Bucket {
    /// A 64-bit hash of the client key (the key itself may be long; a collision merely
    /// shares a bucket).
    pub key_hash: u64,
    /// The time of the last refill, in nanoseconds since the Unix epoch.
    pub refilled_at_ns: u64,
    /// Units in the bucket at that time.
    pub units: u128,
}

/// The encoded size of a [`Bucket`].
pub const ENCODED_LEN: usize = 32;

impl Bucket {
    /// A full bucket for `key_hash`, as a key never seen (or evicted) gets.
    pub fn full(key_hash: u64, now_ns: u64, rate: &Rate) -> Bucket {
        Bucket {
            key_hash,
            refilled_at_ns: now_ns,
            units: rate.capacity(),
        }
    }

    /// Little-endian: key hash, refill time, units.
    pub fn encode(&self) -> [u8; ENCODED_LEN] {
        let mut bytes = [0; ENCODED_LEN];
        bytes[0..8].copy_from_slice(&self.key_hash.to_le_bytes());
        bytes[8..16].copy_from_slice(&self.refilled_at_ns.to_le_bytes());
        bytes[16..32].copy_from_slice(&self.units.to_le_bytes());
        bytes
    }

    /// `None` for anything but [`ENCODED_LEN`] bytes (another writer's format, or garbage):
    /// the caller then treats the slot as free.
    pub fn decode(bytes: &[u8]) -> Option<Bucket> {
        let bytes: &[u8; ENCODED_LEN] = bytes.try_into().ok()?;
        let mut key_hash = [0; 8];
        let mut refilled_at_ns = [0; 8];
        let mut units = [0; 16];
        key_hash.copy_from_slice(&bytes[0..8]);
        refilled_at_ns.copy_from_slice(&bytes[8..16]);
        units.copy_from_slice(&bytes[16..32]);
        Some(Bucket {
            key_hash: u64::from_le_bytes(key_hash),
            refilled_at_ns: u64::from_le_bytes(refilled_at_ns),
            units: u128::from_le_bytes(units),
        })
    }

    /// Refills from the time elapsed since the last refill (a clock that went back adds
    /// nothing and does not move the refill time back), then takes one token if there is
    /// one. Returns the new bucket and the verdict.
    pub fn take(self, now_ns: u64, rate: &Rate) -> (Bucket, Verdict) {
        let elapsed = u128::from(now_ns.saturating_sub(self.refilled_at_ns));
        let refilled = self
            .units
            .saturating_add(elapsed.saturating_mul(u128::from(rate.tokens_per_fill)))
            .min(rate.capacity());
        let allowed = refilled >= rate.token();
        let units = if allowed {
            refilled - rate.token()
        } else {
            refilled
        };
        let bucket = Bucket {
            key_hash: self.key_hash,
            refilled_at_ns: self.refilled_at_ns.max(now_ns),
            units,
        };
        let to_nanos = |missing: u128| rate.nanos_for(missing);
        let verdict = Verdict {
            allowed,
            limit: rate.max_tokens,
            remaining: u64::try_from(units.checked_div(rate.token()).unwrap_or(0))
                .unwrap_or(u64::MAX),
            reset_seconds: seconds_ceil(to_nanos(rate.capacity() - units)),
            retry_after_seconds: seconds_ceil(to_nanos(rate.token().saturating_sub(units))).max(1),
        };
        (bucket, verdict)
    }
}

fn seconds_ceil(nanos: u128) -> u64 {
    u64::try_from(nanos.div_ceil(1_000_000_000)).unwrap_or(u64::MAX)
}

/// The answer for one request, and what the `x-ratelimit-*` headers say.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Verdict {
    /// A token was taken.
    pub allowed: bool,
    /// `x-ratelimit-limit`: the bucket's size.
    pub limit: u64,
    /// `x-ratelimit-remaining`: whole tokens left after this request.
    pub remaining: u64,
    /// `x-ratelimit-reset`: seconds until the bucket is full again, rounded up.
    pub reset_seconds: u64,
    /// `retry-after` when limited: seconds until the next token, rounded up, at least 1.
    pub retry_after_seconds: u64,
}

/// FNV-1a, 64 bits: small, and good enough to spread client keys over slots (a key chosen
/// to collide can only share its bucket with another key, never gain tokens).
pub fn hash(bytes: &[u8]) -> u64 {
    let mut hash: u64 = 0xcbf2_9ce4_8422_2325;
    for byte in bytes {
        hash ^= u64::from(*byte);
        hash = hash.wrapping_mul(0x0000_0100_0000_01b3);
    }
    hash
}

/// The two slots (out of `max_keys`) a key may live in: two choices keep a hot key from being
/// evicted by one unlucky neighbour.
pub fn slots(key_hash: u64, max_keys: u32) -> [u32; 2] {
    let n = u64::from(max_keys.max(1));
    let first = key_hash % n;
    let second = (key_hash.rotate_right(32) ^ 0x9e37_79b9_7f4a_7c15) % n;
    // Both values are below `max_keys`, a u32.
    [first as u32, second as u32]
}
