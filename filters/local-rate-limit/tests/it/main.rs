//! local-rate-limit's native tests: the bucket arithmetic, and the filter against
//! filterkit's fake host (one VM; several workers are host-sim's part).

mod config_schema;

use std::time::Duration;

use expect_test::{Expect, expect};
use filter_local_rate_limit::RateLimitRoot;
use filter_local_rate_limit::bucket::{Bucket, Rate, hash, slots};
use filterkit::testing::Vm;

const RATE: Rate = Rate {
    max_tokens: 3,
    tokens_per_fill: 2,
    fill_interval_ns: 1_000_000_000,
};

/// Takes a token at each time (in ms) from a bucket full at 0, and renders each verdict.
fn check_bucket(times_ms: &[u64], expect: Expect) {
    let mut bucket = Bucket::full(7, 0, &RATE);
    let mut out = String::new();
    for ms in times_ms {
        let (next, verdict) = bucket.take(ms * 1_000_000, &RATE);
        bucket = next;
        out.push_str(&format!(
            "{ms}ms: allowed={} remaining={} reset={} retry_after={}\n",
            verdict.allowed, verdict.remaining, verdict.reset_seconds, verdict.retry_after_seconds
        ));
    }
    expect.assert_eq(&out);
}

#[test]
fn the_bucket_refills_continuously_from_the_elapsed_time() {
    check_bucket(
        &[0, 0, 0, 0, 250, 499, 500, 500, 5000, 4000],
        expect![[r#"
            0ms: allowed=true remaining=2 reset=1 retry_after=1
            0ms: allowed=true remaining=1 reset=1 retry_after=1
            0ms: allowed=true remaining=0 reset=2 retry_after=1
            0ms: allowed=false remaining=0 reset=2 retry_after=1
            250ms: allowed=false remaining=0 reset=2 retry_after=1
            499ms: allowed=false remaining=0 reset=2 retry_after=1
            500ms: allowed=true remaining=0 reset=2 retry_after=1
            500ms: allowed=false remaining=0 reset=2 retry_after=1
            5000ms: allowed=true remaining=2 reset=1 retry_after=1
            4000ms: allowed=true remaining=1 reset=1 retry_after=1
        "#]],
    );
}

#[test]
fn buckets_round_trip_and_garbage_is_no_bucket() {
    let bucket = Bucket {
        key_hash: u64::MAX,
        refilled_at_ns: 1,
        units: u128::MAX,
    };
    assert_eq!(Bucket::decode(&bucket.encode()), Some(bucket));
    assert_eq!(Bucket::decode(b"short"), None);
    assert_eq!(Bucket::decode(&[0; 33]), None);
}

#[test]
fn extreme_rates_and_times_do_not_overflow() {
    let rate = Rate {
        max_tokens: 1_000_000,
        tokens_per_fill: 1_000_000,
        fill_interval_ns: 86_400_000_000_000,
    };
    let (bucket, verdict) = Bucket::full(1, u64::MAX, &rate).take(0, &rate);
    assert!(verdict.allowed);
    let (_, verdict) = bucket.take(u64::MAX, &rate);
    assert_eq!(verdict.remaining, 999_998);
}

#[test]
fn slots_stay_below_max_keys() {
    for key in 0..1000u32 {
        for max_keys in [1, 2, 7, 10_000] {
            let [first, second] = slots(hash(&key.to_le_bytes()), max_keys);
            assert!(first < max_keys && second < max_keys);
        }
    }
}

#[test]
fn limits_in_the_fake_host_and_counts() {
    let vm = Vm::<RateLimitRoot>::new();
    assert!(vm.configure("rl", br#"{"max_tokens":1,"fill_interval_ms":1000}"#));
    vm.set_now(Duration::from_secs(1_700_000_000));
    vm.set_property(&["source", "address"], b"10.0.0.1:5555");
    let mut out = Vec::new();
    for _ in 0..2 {
        let stream = vm.create_stream();
        let action = vm.request_headers(stream, &[(":path", "/")]);
        out.push(format!("{action:?} {:?}", vm.local_responses().last()));
        vm.end_stream(stream);
    }
    expect![[r#"
        [
            "Continue None",
            "Pause Some(LocalResponse { status_code: 429, details: \"local_rate_limited\", headers: [(\"retry-after\", \"1\"), (\"x-ratelimit-limit\", \"1\"), (\"x-ratelimit-remaining\", \"0\"), (\"x-ratelimit-reset\", \"1\")], body: [114, 97, 116, 101, 32, 108, 105, 109, 105, 116, 101, 100, 10], grpc_status: -1 })",
        ]
    "#]]
    .assert_debug_eq(&out);
    assert_eq!(vm.local_responses().len(), 1);
    assert!(vm.logs().is_empty(), "{:?}", vm.logs());
}

#[test]
fn a_zero_rate_never_divides_by_zero() {
    let rate = Rate {
        max_tokens: 0,
        tokens_per_fill: 0,
        fill_interval_ns: 0,
    };
    let (_, verdict) = Bucket::full(1, 5, &rate).take(10, &rate);
    assert_eq!((verdict.allowed, verdict.remaining), (true, 0));
}
