//! Loading: what Envoy refuses, host-sim refuses, naming the import.

use expect_test::{Expect, expect};
use filterkit_host_sim::Module;

fn check(wat: &str, expect: Expect) {
    let wasm = wat::parse_str(wat).unwrap();
    let result = match Module::from_bytes(&wasm) {
        Ok(module) => format!("ok {:?}", module.abi_version()),
        Err(error) => error.to_string(),
    };
    expect.assert_eq(&result);
}

const BASE: &str =
    r#"(memory (export "memory") 1) (func (export "malloc") (param i32) (result i32) i32.const 0)"#;

#[test]
fn loads_a_minimal_module() {
    check(
        &format!(r#"(module {BASE} (func (export "proxy_abi_version_0_2_1")))"#),
        expect!["ok V0_2_1"],
    );
}

#[test]
fn rejects_a_module_without_abi_version() {
    check(
        &format!(r#"(module {BASE})"#),
        expect!["missing or unknown Proxy-Wasm ABI version"],
    );
}

#[test]
fn rejects_an_import_envoy_does_not_provide() {
    check(
        &format!(
            r#"(module (import "env" "proxy_get_secret" (func (param i32) (result i32))) {BASE} (func (export "proxy_abi_version_0_2_1")))"#
        ),
        expect!["failed to load Wasm module due to a missing import: env.proxy_get_secret"],
    );
}

#[test]
fn rejects_an_import_from_another_abi_version() {
    check(
        &format!(
            r#"(module (import "env" "proxy_get_log_level" (func (param i32) (result i32))) {BASE} (func (export "proxy_abi_version_0_2_0")))"#
        ),
        expect!["failed to load Wasm module due to a missing import: env.proxy_get_log_level"],
    );
    check(
        &format!(
            r#"(module (import "env" "proxy_continue_request" (func (result i32))) {BASE} (func (export "proxy_abi_version_0_1_0")))"#
        ),
        expect!["ok V0_1_0"],
    );
}

#[test]
fn rejects_wasis_seven_parameter_path_link_as_envoy_does() {
    check(
        &format!(
            r#"(module (import "wasi_snapshot_preview1" "path_link" (func (param i32 i32 i32 i32 i32 i32 i32) (result i32))) {BASE} (func (export "proxy_abi_version_0_2_1")))"#
        ),
        expect![
            "failed to load Wasm module due to an import type mismatch: wasi_snapshot_preview1.path_link"
        ],
    );
}

#[test]
fn rejects_a_module_without_allocator() {
    check(
        r#"(module (memory (export "memory") 1) (func (export "proxy_abi_version_0_2_1")))"#,
        expect!["wasm module is missing malloc function"],
    );
}
