//! Envoy's lifecycle: VM start, canary, plugins, streams, pauses, local replies, time.

use expect_test::{Expect, expect};
use filterkit_host_sim::{Outcome, Sim};

use crate::guest::{Guest, data};

/// Adds `x-added: yes` to the response headers.
fn add_header_guest() -> Guest {
    Guest {
        fields: data(100, "x-added") + &data(200, "yes"),
        response_headers: Some(
            "(drop (call $proxy_add_header_map_value (i32.const 2) (i32.const 100) (i32.const 7) (i32.const 200) (i32.const 3))) i32.const 0".into(),
        ),
        ..Guest::default()
    }
}

fn check_trace(sim: &Sim, expect: Expect) {
    expect.assert_eq(&sim.render_trace());
}

#[test]
fn adds_a_response_header_and_traces_the_stream() {
    let module = add_header_guest().module();
    let mut sim = Sim::builder(&module).plugin("root", "").build().unwrap();
    sim.clear_trace();
    let mut stream = sim.stream("root").unwrap();
    assert_eq!(stream.send_request_headers(&[(":method", "GET"), (":path", "/")], true), Outcome::Continue);
    assert_eq!(stream.send_response_headers(&[(":status", "200")], true), Outcome::Continue);
    assert_eq!(stream.response_headers().get_str("x-added"), Some("yes"));
    assert_eq!(stream.complete(), Outcome::Continue);
    check_trace(&sim, expect![[r#"
        proxy_on_context_create(ctx=2, 1)
          => ()
        proxy_on_request_headers(ctx=2, 2, 1)
          => 0
        proxy_on_response_headers(ctx=2, 1, 1)
          proxy_add_header_map_value(response_headers, "x-added", "yes") -> OK
          => 0
        proxy_on_log(ctx=2)
          => ()
        proxy_on_done(ctx=2)
          => 1
    "#]]);
}
