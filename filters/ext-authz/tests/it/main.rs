//! ext-authz's native tests: the hand-written protobuf, byte by byte. What the filter does to
//! streams is tested in host-sim (`host-sim/tests/it/ext_authz.rs`) and in Envoy
//! (`xtask/tests/it/ext_authz.rs`, where protobuf itself reads these bytes).

mod config_schema;

use expect_test::{Expect, expect};
use filter_ext_authz::{HttpRequest, decode_check_response, encode_check_request};

fn varint(mut value: u64) -> Vec<u8> {
    let mut out = Vec::new();
    while value >= 0x80 {
        out.push(u8::try_from(value & 0x7f).unwrap() | 0x80);
        value >>= 7;
    }
    out.push(u8::try_from(value).unwrap());
    out
}

fn message(field: u64, bytes: &[u8]) -> Vec<u8> {
    [
        varint(field << 3 | 2),
        varint(bytes.len() as u64),
        bytes.to_vec(),
    ]
    .concat()
}

fn number(field: u64, value: u64) -> Vec<u8> {
    [varint(field << 3), varint(value)].concat()
}

/// A `HeaderValueOption` with `key`, `value`, `raw_value` and the extra option fields.
fn header_option(key: &str, value: &str, raw_value: &str, extra: &[u8]) -> Vec<u8> {
    let header = [
        message(1, key.as_bytes()),
        message(2, value.as_bytes()),
        message(3, raw_value.as_bytes()),
    ]
    .concat();
    [message(1, &header), extra.to_vec()].concat()
}

fn check_decode(bytes: &[u8], expect: Expect) {
    expect.assert_eq(&format!("{:#?}", decode_check_response(bytes)));
}

#[test]
fn encodes_the_attributes_policies_read() {
    let headers = [(":path", "/a?b=1"), ("authorization", "Bearer x")];
    let encoded = encode_check_request(&HttpRequest {
        id: "req-1",
        method: "GET",
        headers: &headers,
        path: "/a?b=1",
        host: "shop",
        scheme: "",
        source_address: Some("[::1]:4242"),
    });
    let hex: String = encoded.iter().map(|byte| format!("{byte:02x}")).collect();
    expect!["0a580a0c0a0a0a0812033a3a31189221224812460a057265712d3112034745541a0f0a053a7061746812062f613f623d311a190a0d617574686f72697a6174696f6e1208426561726572207822062f613f623d312a0473686f70"]
        .assert_eq(&hex);
}

#[test]
fn skips_unknown_fields_of_every_wire_type() {
    let ok_response = [
        message(2, &header_option("X-User", "alice", "", &[])),
        // query_parameters_to_set (7), unknown here.
        message(7, &message(1, b"q")),
        message(5, b"X-Remove"),
    ]
    .concat();
    let response = [
        message(1, &[number(1, 0), message(2, b"fine")].concat()),
        // A fixed64 (wire type 1) and a fixed32 (wire type 5) the filter does not know.
        vec![0x79, 1, 2, 3, 4, 5, 6, 7, 8],
        vec![0x7d, 1, 2, 3, 4],
        message(3, &ok_response),
        // dynamic_metadata (4).
        message(4, &message(1, b"ignored")),
    ]
    .concat();
    check_decode(
        &response,
        expect![[r#"
            Ok(
                CheckResponse {
                    code: 0,
                    denied_status: 0,
                    headers: [
                        HeaderOption {
                            name: "x-user",
                            value: "alice",
                            append: false,
                            if_absent: false,
                            if_exists: false,
                        },
                    ],
                    body: [],
                    headers_to_remove: [
                        "x-remove",
                    ],
                    response_headers_to_add: [],
                },
            )"#]],
    );
}

#[test]
fn reads_append_and_append_action_and_raw_values() {
    let ok_response = [
        message(2, &header_option("a", "1", "", &message(2, &number(1, 1)))),
        message(2, &header_option("b", "", "raw", &number(3, 0))),
        message(2, &header_option("c", "3", "", &number(3, 1))),
        message(2, &header_option("d", "4", "", &number(3, 2))),
        message(2, &header_option("e", "5", "", &number(3, 3))),
        // `append: false` wins over an append_action.
        message(
            2,
            &header_option(
                "f",
                "6",
                "",
                &[message(2, &number(1, 0)), number(3, 0)].concat(),
            ),
        ),
    ]
    .concat();
    let decoded = decode_check_response(&message(3, &ok_response)).unwrap();
    let rendered: Vec<String> = decoded
        .headers
        .iter()
        .map(|option| {
            format!(
                "{}={} append={} if_absent={} if_exists={}",
                option.name, option.value, option.append, option.if_absent, option.if_exists
            )
        })
        .collect();
    expect![[r#"
        a=1 append=true if_absent=false if_exists=false
        b=raw append=true if_absent=false if_exists=false
        c=3 append=false if_absent=true if_exists=false
        d=4 append=false if_absent=false if_exists=false
        e=5 append=false if_absent=false if_exists=true
        f=6 append=false if_absent=false if_exists=false"#]]
    .assert_eq(&rendered.join("\n"));
}

#[test]
fn reads_a_denial() {
    let denied = [
        message(1, &number(1, 401)),
        message(2, &header_option("WWW-Authenticate", "Bearer", "", &[])),
        message(3, b"no"),
    ]
    .concat();
    let decoded =
        decode_check_response(&[message(1, &number(1, 7)), message(2, &denied)].concat()).unwrap();
    expect![[r#"7 401 [("www-authenticate", "Bearer")] "no""#]].assert_eq(&format!(
        "{} {} {:?} {:?}",
        decoded.code,
        decoded.denied_status,
        decoded
            .headers
            .iter()
            .map(|option| (option.name.as_str(), option.value.as_str()))
            .collect::<Vec<_>>(),
        String::from_utf8_lossy(&decoded.body)
    ));
}

#[test]
fn refuses_truncated_and_malformed_answers() {
    let cases: [(&str, Vec<u8>); 6] = [
        ("length past the end", vec![0x0a, 0x05, 0x08]),
        ("varint past the end", vec![0x08, 0x80]),
        ("fixed64 past the end", vec![0x79, 1, 2]),
        ("wire type 3 (groups)", vec![0x0b]),
        (
            "varint longer than 64 bits",
            vec![
                0x08, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0x01,
            ],
        ),
        (
            "header name not UTF-8",
            message(3, &message(2, &message(1, &[0x0a, 0x01, 0xff]))),
        ),
    ];
    let rendered: Vec<String> = cases
        .iter()
        .map(|(what, bytes)| format!("{what}: {:?}", decode_check_response(bytes).map(|_| ())))
        .collect();
    expect![[r#"
        length past the end: Err(DecodeError)
        varint past the end: Err(DecodeError)
        fixed64 past the end: Err(DecodeError)
        wire type 3 (groups): Err(DecodeError)
        varint longer than 64 bits: Err(DecodeError)
        header name not UTF-8: Err(DecodeError)"#]]
    .assert_eq(&rendered.join("\n"));
}

/// Arbitrary bytes never panic the decoder (a panic would trap the VM for every stream).
#[test]
fn arbitrary_bytes_never_panic() {
    let mut state: u64 = 0x2545_f491_4f6c_dd1d;
    for length in 0..2000 {
        let bytes: Vec<u8> = (0..length % 64)
            .map(|_| {
                state ^= state << 13;
                state ^= state >> 7;
                state ^= state << 17;
                state.to_le_bytes()[0]
            })
            .collect();
        let _ = decode_check_response(&bytes);
    }
}
