//! The rewriter: fixed cases, then properties against serde_json. Documents are generated
//! with a small seeded PRNG (no dependency, the same cases on every run).

use expect_test::{Expect, expect};
use filter_json_guard::rewrite::{MAX_DEPTH, Rules, rewrite};
use serde_json::Value;

fn rules(redact: &[&str], remove: &[&str]) -> Rules {
    let paths = |list: &[&str]| {
        list.iter()
            .map(|path| path.split('.').map(String::from).collect())
            .collect()
    };
    Rules {
        redact: paths(redact),
        remove: paths(remove),
        replacement: "[redacted]".into(),
    }
}

fn check(input: &str, expect: Expect) {
    let rules = rules(
        &["password", "user.token", "items.card"],
        &["debug", "user.ssn"],
    );
    let shown = match rewrite(input.as_bytes(), &rules) {
        Ok(None) => "unchanged".to_string(),
        Ok(Some(output)) => String::from_utf8(output).unwrap(),
        Err(invalid) => format!("invalid: {} at byte {}", invalid.reason, invalid.at),
    };
    expect.assert_eq(&shown);
}

#[test]
fn redacts_and_removes_configured_fields() {
    check(
        r#"{ "user": {"name": "ann", "token": {"a": [1]}, "ssn": "123"}, "password": "p\"w",
            "debug": true, "items": [{"card": 4111}, {"card": null, "n": 1e3}, 5] }"#,
        expect![[
            r#"{"user":{"name":"ann","token":"[redacted]"},"password":"[redacted]","items":[{"card":"[redacted]"},{"card":"[redacted]","n":1e3},5]}"#
        ]],
    );
    check(r#"{"debug":1,"a":2,"debug":3}"#, expect![[r#"{"a":2}"#]]);
    check(r#"{"debug":1}"#, expect![[r#"{}"#]]);
}

#[test]
fn leaves_documents_without_matching_fields_unchanged() {
    check(
        r#"{"name": "password", "nested": {"password": 1}}"#,
        expect!["unchanged"],
    );
    check(
        r#" [1, "two", {"three": [true, false, null]}] "#,
        expect!["unchanged"],
    );
    check(r#""just a string""#, expect!["unchanged"]);
}

#[test]
fn matches_escaped_member_names() {
    check(
        r#"{"pass\u0077ord": "x"}"#,
        expect![[r#"{"pass\u0077ord":"[redacted]"}"#]],
    );
}

#[test]
fn names_what_is_wrong_and_where() {
    check("", expect!["invalid: unexpected end of input at byte 0"]);
    check("{", expect!["invalid: expected string at byte 1"]);
    check(r#"{"a" 1}"#, expect!["invalid: expected `:` at byte 5"]);
    check(r#"{"a":1,}"#, expect!["invalid: expected string at byte 7"]);
    check("[1 2]", expect!["invalid: expected `,` or `]` at byte 3"]);
    check("01", expect!["invalid: trailing characters at byte 1"]);
    check("1.", expect!["invalid: invalid number at byte 2"]);
    check("-", expect!["invalid: invalid number at byte 1"]);
    check(r#""\x""#, expect!["invalid: invalid escape at byte 2"]);
    check(
        "\"a\u{1}\"",
        expect!["invalid: control character in string at byte 2"],
    );
    check("tru", expect!["invalid: expected value at byte 0"]);
    check("{} {}", expect!["invalid: trailing characters at byte 3"]);
    let not_utf8 = rewrite(b"\"\xff\"", &Rules::default()).unwrap_err();
    assert_eq!((not_utf8.reason, not_utf8.at), ("not UTF-8", 1));
}

#[test]
fn refuses_nesting_deeper_than_the_limit() {
    let nested = |depth: usize| format!("{}{}", "[".repeat(depth), "]".repeat(depth));
    assert_eq!(
        rewrite(nested(MAX_DEPTH).as_bytes(), &Rules::default()),
        Ok(None)
    );
    let too_deep = rewrite(nested(MAX_DEPTH + 1).as_bytes(), &Rules::default()).unwrap_err();
    assert_eq!(too_deep.reason, "nested too deeply");
    // Far deeper than any stack: still an error, not a crash.
    let bomb = "[".repeat(1_000_000);
    assert!(rewrite(bomb.as_bytes(), &Rules::default()).is_err());
}

/// xorshift64*: enough randomness for test inputs, reproducible from its seed.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }

    fn below(&mut self, n: usize) -> usize {
        (self.next() % n as u64) as usize
    }
}

const NAMES: &[&str] = &[
    "password", "user", "token", "items", "card", "debug", "ssn", "n", "é",
];

/// A random document with distinct member names per object (serde_json keeps only the last
/// of repeated names, the rewriter all of them).
fn document(rng: &mut Rng, depth: usize) -> String {
    match rng.below(if depth > 4 { 5 } else { 8 }) {
        0 => "null".into(),
        1 => ["true", "false"][rng.below(2)].into(),
        2 => [
            "0",
            "-1",
            "3.25",
            "1e3",
            "-0.5E-2",
            "123456789012345678901234567890",
        ][rng.below(6)]
        .into(),
        3 | 4 => [
            r#""""#,
            r#""a\"b""#,
            r#""\u00e9\n""#,
            r#""ü""#,
            r#""\ud83d\ude00""#,
        ][rng.below(5)]
        .into(),
        5 => {
            let items: Vec<String> = (0..rng.below(4))
                .map(|_| document(rng, depth + 1))
                .collect();
            format!("[{}]", items.join(" , "))
        }
        _ => {
            let mut names: Vec<&str> = NAMES.to_vec();
            let mut members = Vec::new();
            for _ in 0..rng.below(5) {
                let name = names.swap_remove(rng.below(names.len()));
                members.push(format!("\"{name}\" :{}", document(rng, depth + 1)));
            }
            format!("{{ {} }}", members.join(","))
        }
    }
}

/// What the rules mean, applied to serde_json's reading of the document.
fn reference(value: &mut Value, path: &mut Vec<String>, rules: &Rules) {
    match value {
        Value::Array(items) => {
            for item in items {
                reference(item, path, rules);
            }
        }
        Value::Object(members) => {
            let names: Vec<String> = members.keys().cloned().collect();
            for name in names {
                path.push(name.clone());
                if rules.remove.contains(path) {
                    members.remove(&name);
                } else if rules.redact.contains(path) {
                    members.insert(name, Value::String(rules.replacement.clone()));
                } else if let Some(member) = members.get_mut(&name) {
                    reference(member, path, rules);
                }
                path.pop();
            }
        }
        _ => {}
    }
}

#[test]
fn rewrites_generated_documents_as_serde_json_reads_them() {
    let rules = rules(
        &["password", "user.token", "items.card", "é"],
        &["debug", "user.ssn"],
    );
    let mut rng = Rng(0x5eed);
    let mut changed = 0;
    for _ in 0..5000 {
        let input = document(&mut rng, 0);
        let mut expected: Value = serde_json::from_str(&input).unwrap();
        reference(&mut expected, &mut Vec::new(), &rules);
        let output = rewrite(input.as_bytes(), &rules)
            .unwrap_or_else(|invalid| panic!("{input}: {invalid:?}"));
        let output = match output {
            Some(output) => {
                changed += 1;
                String::from_utf8(output).unwrap()
            }
            None => input.clone(),
        };
        let actual: Value = serde_json::from_str(&output)
            .unwrap_or_else(|error| panic!("{input} became {output}: {error}"));
        assert_eq!(actual, expected, "{input} became {output}");
    }
    assert!(changed > 500, "only {changed} documents had a rule apply");
}

/// serde_json's errors for documents the rewriter reads differently on purpose.
fn outside_the_comparison(error: &serde_json::Error) -> bool {
    let message = error.to_string();
    ["out of range", "recursion limit"]
        .iter()
        .any(|known| message.contains(known))
}

#[test]
fn accepts_exactly_what_serde_json_accepts_on_mutated_documents() {
    const ALPHABET: &[u8] = b"{}[]\",:0123456789.-+eE tfnrulas\\\n\x01\xc3\xa9\xff";
    let rules = rules(&["password"], &["debug"]);
    let mut rng = Rng(0xfa22);
    let (mut accepted, mut rejected) = (0, 0);
    for _ in 0..20_000 {
        let mut bytes = document(&mut rng, 0).into_bytes();
        for _ in 0..1 + rng.below(3) {
            let at = rng.below(bytes.len() + 1);
            let byte = ALPHABET[rng.below(ALPHABET.len())];
            match rng.below(3) {
                0 => bytes.insert(at, byte),
                1 if at < bytes.len() => {
                    bytes.remove(at);
                }
                _ if at < bytes.len() => bytes[at] = byte,
                _ => bytes.push(byte),
            }
        }
        let ours = rewrite(&bytes, &rules);
        let theirs = serde_json::from_slice::<Value>(&bytes);
        if let Err(error) = &theirs
            && outside_the_comparison(error)
        {
            continue;
        }
        assert_eq!(
            ours.is_ok(),
            theirs.is_ok(),
            "{:?}: ours {ours:?}, serde_json {theirs:?}",
            String::from_utf8_lossy(&bytes)
        );
        if ours.is_ok() {
            accepted += 1;
        } else {
            rejected += 1;
        }
    }
    assert!(
        accepted > 1000 && rejected > 1000,
        "{accepted} accepted, {rejected} rejected"
    );
}

#[test]
fn never_panics_on_random_bytes() {
    let rules = rules(&["a"], &["b"]);
    let mut rng = Rng(0xb17e5);
    for _ in 0..20_000 {
        let bytes: Vec<u8> = (0..rng.below(40)).map(|_| rng.next() as u8).collect();
        let _ = rewrite(&bytes, &rules);
    }
}
