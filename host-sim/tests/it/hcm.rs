//! Envoy's own answers without Wasm (`hcm`): local replies as the filters and the client see
//! them, each case seen in Envoy 1.40 with curl against a WAT guest that calls
//! `proxy_send_local_response(403, …)` from its request-headers callback.

use expect_test::expect;
use filterkit_host_sim::LocalReply;
use filterkit_host_sim::hcm::{self, Protocol};

fn reply(body: &str, headers: &[(&str, &str)]) -> LocalReply {
    LocalReply {
        status_code: 403,
        details: String::new(),
        body: body.as_bytes().to_vec(),
        headers: headers
            .iter()
            .map(|(k, v)| ((*k).to_string(), (*v).to_string()))
            .collect(),
        grpc_status: None,
    }
}

#[test]
fn local_replies_as_envoy_builds_and_frames_them() {
    let cases: [(&str, LocalReply, bool, bool, Protocol); 7] = [
        (
            "body, GET",
            reply("nope", &[("x-f", "1")]),
            false,
            false,
            Protocol::Http1,
        ),
        (
            "body, HEAD",
            reply("nope", &[("x-f", "1")]),
            false,
            true,
            Protocol::Http1,
        ),
        (
            "empty, GET",
            reply("", &[("x-f", "1")]),
            false,
            false,
            Protocol::Http1,
        ),
        (
            "empty, HEAD",
            reply("", &[("x-f", "1")]),
            false,
            true,
            Protocol::Http1,
        ),
        (
            "empty, HTTP/2",
            reply("", &[("x-f", "1")]),
            false,
            false,
            Protocol::Http2,
        ),
        (
            "gRPC",
            reply("no pe%", &[("x-f", "1")]),
            true,
            false,
            Protocol::Http2,
        ),
        (
            "filter's content-type",
            reply("{}", &[("content-type", "application/json")]),
            false,
            false,
            Protocol::Http1,
        ),
    ];
    let mut out = String::new();
    for (name, reply, grpc, head, protocol) in cases {
        let (headers, body) = hcm::local_reply(&reply, grpc, head);
        let filters: Vec<String> = headers
            .to_vec()
            .iter()
            .map(|(k, v)| format!("{k}={v}"))
            .collect();
        let wire = hcm::client_headers(&headers, body.is_empty(), protocol, head, false, "D");
        let wire: Vec<String> = wire
            .to_vec()
            .iter()
            .map(|(k, v)| format!("{k}={v}"))
            .collect();
        out.push_str(&format!(
            "{name}\n  filters see: {}\n  client gets: {} body={:?}\n",
            filters.join(" "),
            wire.join(" "),
            String::from_utf8_lossy(&body)
        ));
    }
    expect![[r#"
        body, GET
          filters see: :status=403 x-f=1 content-length=4 content-type=text/plain
          client gets: :status=403 x-f=1 content-length=4 content-type=text/plain date=D server=envoy body="nope"
        body, HEAD
          filters see: :status=403 x-f=1 content-length=4 content-type=text/plain
          client gets: :status=403 x-f=1 content-length=4 content-type=text/plain date=D server=envoy body=""
        empty, GET
          filters see: :status=403 x-f=1
          client gets: :status=403 x-f=1 date=D server=envoy content-length=0 body=""
        empty, HEAD
          filters see: :status=403 x-f=1
          client gets: :status=403 x-f=1 date=D server=envoy transfer-encoding=chunked body=""
        empty, HTTP/2
          filters see: :status=403 x-f=1
          client gets: :status=403 x-f=1 date=D server=envoy body=""
        gRPC
          filters see: :status=200 x-f=1 content-type=application/grpc grpc-status=7 grpc-message=no pe%25
          client gets: :status=200 x-f=1 content-type=application/grpc grpc-status=7 grpc-message=no pe%25 date=D server=envoy body=""
        filter's content-type
          filters see: :status=403 content-type=application/json content-length=2
          client gets: :status=403 content-type=application/json content-length=2 date=D server=envoy body="{}"
    "#]].assert_eq(&out);
}
