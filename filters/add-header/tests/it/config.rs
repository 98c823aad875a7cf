//! The plugin configuration contract: what is accepted, and the one error line for the rest.

use expect_test::expect;

use crate::check;

#[test]
fn accepts_name_and_value() {
    check(
        r#"{"name":"hello","value":"hello details"}"#,
        expect![[r#"
            accepted
            request: Continue [":method: GET", ":path: /"]
            response: Continue [":status: 200", "resp-header-demo: added by our filter", "hello: hello details"]
        "#]],
    );
}

#[test]
fn lowercases_the_name() {
    check(
        r#"{"name":"X-Hello","value":"v"}"#,
        expect![[r#"
            accepted
            request: Continue [":method: GET", ":path: /"]
            response: Continue [":status: 200", "resp-header-demo: added by our filter", "x-hello: v"]
        "#]],
    );
}

#[test]
fn accepts_empty_configuration_with_only_the_demo_header() {
    check(
        "",
        expect![[r#"
            accepted
            request: Continue [":method: GET", ":path: /"]
            response: Continue [":status: 200", "resp-header-demo: added by our filter"]
        "#]],
    );
}

#[test]
fn accepts_value_with_tab_and_unicode_and_empty_value() {
    check(
        r#"{"name":"x","value":"a\tb é"}"#,
        expect![[r#"
            accepted
            request: Continue [":method: GET", ":path: /"]
            response: Continue [":status: 200", "resp-header-demo: added by our filter", "x: a\tb é"]
        "#]],
    );
    check(
        r#"{"value":"","name":"!#$%&'*+-.^_`|~09az"}"#,
        expect![[r#"
            accepted
            request: Continue [":method: GET", ":path: /"]
            response: Continue [":status: 200", "resp-header-demo: added by our filter", "!#$%&'*+-.^_`|~09az: "]
        "#]],
    );
}

#[test]
fn rejects_invalid_json() {
    check(
        "{name:1}",
        expect![[r#"
            rejected
            error: invalid plugin configuration for root_id=my_root_id: not valid JSON: expected string key at byte 1
        "#]],
    );
    check(
        r#"{"name":"a","value":"b"} trailing"#,
        expect![[r#"
            rejected
            error: invalid plugin configuration for root_id=my_root_id: not valid JSON: trailing characters at byte 25
        "#]],
    );
}

#[test]
fn rejects_wrong_types() {
    check(
        r#"{"name":1,"value":"b"}"#,
        expect![[r#"
            rejected
            error: invalid plugin configuration for root_id=my_root_id: invalid type: integer `1`, expected a string
        "#]],
    );
    check(
        r#"["hello","details"]"#,
        expect![[r#"
            rejected
            error: invalid plugin configuration for root_id=my_root_id: invalid type: sequence, expected struct Header
        "#]],
    );
    check(
        r#""hello""#,
        expect![[r#"
            rejected
            error: invalid plugin configuration for root_id=my_root_id: invalid type: string "hello", expected struct Header
        "#]],
    );
    check(
        "nonsense",
        expect![[r#"
            rejected
            error: invalid plugin configuration for root_id=my_root_id: not valid JSON: expected value at byte 0
        "#]],
    );
    check(
        "null",
        expect![[r#"
            rejected
            error: invalid plugin configuration for root_id=my_root_id: invalid type: null, expected struct Header
        "#]],
    );
    check(
        r#"{"name":"a","value":1.5}"#,
        expect![[r#"
            rejected
            error: invalid plugin configuration for root_id=my_root_id: invalid type: floating point number, expected a string
        "#]],
    );
}

#[test]
fn rejects_missing_and_unknown_fields() {
    check(
        r#"{"name":"hello"}"#,
        expect![[r#"
            rejected
            error: invalid plugin configuration for root_id=my_root_id: missing field `value`
        "#]],
    );
    check(
        r#"{"name":"hello","value":"v","extra":true}"#,
        expect![[r#"
            rejected
            error: invalid plugin configuration for root_id=my_root_id: unknown field `extra`, expected `name` or `value`
        "#]],
    );
    check(
        "{}",
        expect![[r#"
            rejected
            error: invalid plugin configuration for root_id=my_root_id: missing field `name`
        "#]],
    );
}

#[test]
fn rejects_names_that_are_not_tokens() {
    check(
        r#"{"name":"bad name","value":"v"}"#,
        expect![[r#"
            rejected
            error: invalid plugin configuration for root_id=my_root_id: header name "bad name" is not a valid HTTP token
        "#]],
    );
    check(
        r#"{"name":"","value":"v"}"#,
        expect![[r#"
            rejected
            error: invalid plugin configuration for root_id=my_root_id: header name "" is not a valid HTTP token
        "#]],
    );
    check(
        r#"{"name":"a:b","value":"v"}"#,
        expect![[r#"
            rejected
            error: invalid plugin configuration for root_id=my_root_id: header name "a:b" is not a valid HTTP token
        "#]],
    );
    check(
        r#"{"name":"caf\u00e9","value":"v"}"#,
        expect![[r#"
            rejected
            error: invalid plugin configuration for root_id=my_root_id: header name "caf\u{e9}" is not a valid HTTP token
        "#]],
    );
}

#[test]
fn rejects_values_with_control_characters() {
    check(
        r#"{"name":"x","value":"a\r\nset-cookie: evil"}"#,
        expect![[r#"
            rejected
            error: invalid plugin configuration for root_id=my_root_id: header value "a\r\nset-cookie: evil" contains a control character
        "#]],
    );
    check(
        r#"{"name":"x","value":"nul\u0000"}"#,
        expect![[r#"
            rejected
            error: invalid plugin configuration for root_id=my_root_id: header value "nul\u{0}" contains a control character
        "#]],
    );
    check(
        r#"{"name":"x","value":"del\u007f"}"#,
        expect![[r#"
            rejected
            error: invalid plugin configuration for root_id=my_root_id: header value "del\u{7f}" contains a control character
        "#]],
    );
    check(
        r#"{"name":"x","value":"c1\u0085"}"#,
        expect![[r#"
            rejected
            error: invalid plugin configuration for root_id=my_root_id: header value "c1\u{85}" contains a control character
        "#]],
    );
}
