//! Several worker VMs, as Envoy runs one VM per worker thread: ticks fire on every worker's
//! root context, shared data and queues are shared by the workers, a trap fails only its
//! worker's VM.

use expect_test::{Expect, expect};
use filterkit_host_sim::scenario::render_outcome;
use filterkit_host_sim::{Error, Module, Sim};

use crate::guest::{Guest, data};

/// Configure: a 100 ms tick, a counter `ticks` (id kept at 900) and the shared queue `q`
/// (token kept at 904). Tick: counts. Request headers: `x-set` stores shared data `key`,
/// then every request reads `key` and enqueues `item` on `q`; `x-trap` traps.
fn module() -> Module {
    Guest {
        fields: [
            data(100, "ticks"),
            data(120, "q"),
            data(140, "key"),
            data(160, "value"),
            data(180, "x-set"),
            data(200, "item"),
            data(220, "x-trap"),
        ]
        .concat(),
        configure: Some(
            "(drop (call $proxy_set_tick_period_milliseconds (i32.const 100)))
             (drop (call $proxy_define_metric (i32.const 0) (i32.const 100) (i32.const 5) (i32.const 900)))
             (drop (call $proxy_register_shared_queue (i32.const 120) (i32.const 1) (i32.const 904)))
             i32.const 1"
                .into(),
        ),
        tick: Some(
            "(drop (call $proxy_increment_metric (i32.load (i32.const 900)) (i64.const 1)))".into(),
        ),
        request_headers: Some(
            "(if (i32.eqz (call $proxy_get_header_map_value (i32.const 0) (i32.const 220) (i32.const 6) (i32.const 8) (i32.const 12))) (then unreachable))
             (if (i32.eqz (call $proxy_get_header_map_value (i32.const 0) (i32.const 180) (i32.const 5) (i32.const 8) (i32.const 12)))
               (then (drop (call $proxy_set_shared_data (i32.const 140) (i32.const 3) (i32.const 160) (i32.const 5) (i32.const 0)))))
             (drop (call $proxy_get_shared_data (i32.const 140) (i32.const 3) (i32.const 8) (i32.const 12) (i32.const 16)))
             (drop (call $proxy_enqueue_shared_queue (i32.load (i32.const 904)) (i32.const 200) (i32.const 4)))
             i32.const 0"
                .into(),
        ),
        ..Guest::default()
    }
    .module()
}

/// One step: `Some((worker, headers))` sends a request on that worker; `None` advances the
/// clock by 250 ms.
type Step<'a> = Option<(usize, &'a [(&'a str, &'a str)])>;

/// Runs `steps` on two workers; `expect` gets what they returned, the tick counter, which
/// workers failed, then the trace after both VMs started (checked here, as every test starts
/// the same way).
fn check(steps: &[Step<'_>], expect: Expect) {
    let module = module();
    let mut sim = Sim::builder(&module)
        .plugin("root", "")
        .workers(2)
        .build()
        .unwrap();
    expect![[r#"
        proxy_on_context_create(ctx=1, 0)
          => ()
        proxy_on_vm_start(ctx=1, 0)
          => 1
        proxy_on_configure(ctx=1, 0)
          proxy_set_tick_period_milliseconds(100) -> OK
          proxy_define_metric(0, 4, "ticks") -> OK
          proxy_register_shared_queue(1, "q") -> OK
          => 1
        # worker 1
        proxy_on_context_create(ctx=2, 0)
          => ()
        proxy_on_vm_start(ctx=2, 0)
          => 1
        proxy_on_configure(ctx=2, 0)
          proxy_set_tick_period_milliseconds(100) -> OK
          proxy_define_metric(0, 4, "ticks") -> OK
          proxy_register_shared_queue(1, "q") -> OK
          => 1
    "#]]
    .assert_eq(&sim.render_trace());
    sim.clear_trace();
    let mut out = Vec::new();
    for step in steps {
        match step {
            Some((worker, headers)) => {
                sim.use_worker(*worker).unwrap();
                let mut stream = sim.stream("root").unwrap();
                let outcome = stream.send_request_headers(headers, true);
                out.push(format!(
                    "worker {} stream {}: {}",
                    stream.worker(),
                    stream.id(),
                    render_outcome(&outcome)
                ));
            }
            None => {
                let outcome = sim.advance(std::time::Duration::from_millis(250));
                out.push(format!("advance 250ms: {}", render_outcome(&outcome)));
            }
        }
    }
    out.push(format!(
        "ticks counter: {:?}; worker failed: {:?}",
        sim.metric("ticks").map(|metric| metric.value),
        (0..sim.workers())
            .map(|worker| {
                sim.use_worker(worker).unwrap();
                sim.failed()
            })
            .collect::<Vec<_>>()
    ));
    expect.assert_eq(&format!("{}\n--\n{}", out.join("\n"), sim.render_trace()));
}

#[test]
fn ticks_fire_on_every_workers_root_context() {
    check(
        &[None],
        expect![[r#"
            advance 250ms: Continue
            ticks counter: Some(4); worker failed: [false, false]
            --
            proxy_on_tick(ctx=1)
              proxy_increment_metric(4, 1) -> OK
              => ()
            # worker 1
            proxy_on_tick(ctx=2)
              proxy_increment_metric(4, 1) -> OK
              => ()
            # worker 0
            proxy_on_tick(ctx=1)
              proxy_increment_metric(4, 1) -> OK
              => ()
            # worker 1
            proxy_on_tick(ctx=2)
              proxy_increment_metric(4, 1) -> OK
              => ()
        "#]],
    );
}

#[test]
fn shared_data_and_queues_are_shared_by_the_workers() {
    // Worker 1 registered `q` last, so items enqueued on worker 0 wake worker 1's root
    // context (Envoy's SharedQueue keeps the last registration).
    check(
        &[
            Some((0, &[(":path", "/"), ("x-set", "1")])),
            Some((1, &[(":path", "/")])),
        ],
        expect![[r#"
            worker 0 stream 3: Continue
            worker 1 stream 4: Continue
            ticks counter: Some(0); worker failed: [false, false]
            --
            proxy_on_context_create(ctx=3, 1)
              => ()
            proxy_on_request_headers(ctx=3, 2, 1)
              proxy_get_header_map_value(request_headers, "x-trap") -> NOT_FOUND
              proxy_get_header_map_value(request_headers, "x-set") -> OK "1"
              proxy_set_shared_data(0, "key", "value") -> OK
              proxy_get_shared_data("key") -> OK "value"
              proxy_enqueue_shared_queue(1, "item") -> OK
              => 0
            # worker 1
            proxy_on_queue_ready(ctx=2, 1)
              => ()
            proxy_on_context_create(ctx=4, 2)
              => ()
            proxy_on_request_headers(ctx=4, 1, 1)
              proxy_get_header_map_value(request_headers, "x-trap") -> NOT_FOUND
              proxy_get_header_map_value(request_headers, "x-set") -> NOT_FOUND
              proxy_get_shared_data("key") -> OK "value"
              proxy_enqueue_shared_queue(1, "item") -> OK
              => 0
            proxy_on_queue_ready(ctx=2, 1)
              => ()
        "#]],
    );
}

#[test]
fn a_trap_fails_only_its_workers_vm() {
    check(
        &[
            Some((1, &[(":path", "/"), ("x-trap", "1")])),
            Some((1, &[(":path", "/")])),
            Some((0, &[(":path", "/")])),
            None,
        ],
        expect![[r#"
            worker 1 stream 3: Trapped in proxy_on_request_headers: wasm trap: wasm `unreachable` instruction executed
            worker 1 stream 4: LocalReply(503)
            worker 0 stream 5: Continue
            advance 250ms: Continue
            ticks counter: Some(2); worker failed: [false, true]
            --
            # worker 1
            proxy_on_context_create(ctx=3, 2)
              => ()
            proxy_on_request_headers(ctx=3, 2, 1)
              proxy_get_header_map_value(request_headers, "x-trap") -> OK "1"
              => trap "wasm trap: wasm `unreachable` instruction executed"
            # local reply by envoy ctx=3 503 "wasm_fail_stream"
            # local reply by envoy ctx=4 503 "wasm_fail_stream"
            # worker 0
            proxy_on_context_create(ctx=5, 1)
              => ()
            proxy_on_request_headers(ctx=5, 1, 1)
              proxy_get_header_map_value(request_headers, "x-trap") -> NOT_FOUND
              proxy_get_header_map_value(request_headers, "x-set") -> NOT_FOUND
              proxy_get_shared_data("key") -> NOT_FOUND
              proxy_enqueue_shared_queue(1, "item") -> OK
              => 0
            proxy_on_tick(ctx=1)
              proxy_increment_metric(4, 1) -> OK
              => ()
            proxy_on_tick(ctx=1)
              proxy_increment_metric(4, 1) -> OK
              => ()
        "#]],
    );
}

#[test]
fn unknown_worker_is_an_error() {
    let module = module();
    let mut sim = Sim::builder(&module)
        .plugin("root", "")
        .workers(2)
        .build()
        .unwrap();
    let error = sim.use_worker(2).unwrap_err();
    assert!(matches!(error, Error::UnknownWorker(2)));
    expect!["no worker 2"].assert_eq(&error.to_string());
}
