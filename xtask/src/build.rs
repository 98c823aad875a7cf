//! `cargo xtask build [FILTER...]`: compile filters to wasm32-wasip1, optimize, validate.
//!
//! The shipped file is `target/filters/<name>.wasm`. `--guests` builds the test guests under
//! `host-sim/tests/guests/` (and the SDK's, under `sdk/tests/guests/`, as `sdk-<name>`) instead,
//! to `target/guests/<name>.wasm`: the same target, profile
//! and reproducibility flags, no wasm-opt (nothing ships them), the same load check. Validation answers "will Envoy load this?"
//! without running it: the module must validate, export an ABI version marker and an allocator,
//! and import only functions that Envoy (proxy-wasm-cpp-host's `WasmBase::registerCallbacks`)
//! registers for that ABI version.

use std::path::{Path, PathBuf};

use anyhow::{Context, Result, bail};
use serde::Serialize;

use crate::util;

#[derive(clap::Args)]
pub struct Args {
    /// Filters to build (directory names under filters/); none = every filter.
    pub filters: Vec<String>,
    /// Ship cargo's output as is, without trying `wasm-opt -Oz`.
    #[arg(long)]
    pub no_wasm_opt: bool,
    /// Print one JSON object on stdout instead of one line per filter.
    #[arg(long)]
    pub json: bool,
    /// Build the test guests (directories under host-sim/tests/guests/) instead of filters;
    /// the names given are guests then.
    #[arg(long)]
    pub guests: bool,
}

/// A filter that was built, optimized and validated.
#[derive(Serialize)]
pub struct Built {
    /// Filter name, the directory under filters/.
    pub name: String,
    /// Absolute path of the shipped module, target/filters/<name>.wasm.
    pub wasm: PathBuf,
    /// Size in bytes.
    pub size: u64,
    /// `sha256:<hex>` of the module.
    pub sha256: String,
    /// The ABI version the module declares, as OCI runtime configs spell it (`v0.2.1`).
    pub abi_version: String,
    /// Whether wasm-opt's output was shipped (it is only when smaller).
    pub wasm_opt: bool,
    /// The shape of its code (in the JSON output as fields of their own).
    #[serde(flatten)]
    pub shape: Shape,
}

pub fn run(args: Args) -> Result<()> {
    let built = if args.guests {
        build_guests(&args.filters)?
    } else {
        build(&args.filters, !args.no_wasm_opt)?
    };
    if args.json {
        let key = if args.guests { "guests" } else { "filters" };
        let json = serde_json::json!({ key: built });
        println!("{json}");
    } else {
        for filter in &built {
            println!(
                "{}\t{}\t{} bytes\t{}",
                filter.name,
                filter.wasm.display(),
                filter.size,
                filter.sha256
            );
        }
    }
    Ok(())
}

/// Builds, optimizes and validates filters (all of them when `filters` is empty).
pub fn build(filters: &[String], use_wasm_opt: bool) -> Result<Vec<Built>> {
    let all = util::filter_names()?;
    let names: Vec<String> = if filters.is_empty() {
        all.clone()
    } else {
        filters.to_vec()
    };
    if names.is_empty() {
        bail!(
            "no filters under {}",
            util::project_root().join("filters").display()
        );
    }
    for name in &names {
        if !all.contains(name) {
            bail!(
                "unknown filter {name:?}: the filters are {} (directories under filters/)",
                all.join(", ")
            );
        }
    }

    crate::setup::install_rust_target()?;
    let timer = util::Timer::start();
    eprintln!(
        "building {} for {} ({} profile)",
        names.join(", "),
        util::WASM_TARGET,
        util::WASM_PROFILE
    );
    // One cargo invocation per filter: building several packages at once unifies their
    // dependencies' features, so a filter's bytes would depend on which others were built with it.
    for name in &names {
        let mut cargo = util::cargo_wasm();
        cargo.current_dir(util::project_root()).args([
            "build",
            "--target",
            util::WASM_TARGET,
            "--profile",
            util::WASM_PROFILE,
            "-p",
            &format!("filter-{name}"),
        ]);
        util::run(&mut cargo).with_context(|| {
            format!("building filter-{name} for wasm32-wasip1: fix the compile errors above")
        })?;
    }
    eprintln!("cargo build took {}", timer.elapsed());

    let wasm_opt = if use_wasm_opt {
        Some(
            util::tool("wasm-opt")
                .context("wasm-opt (binaryen) is needed to ship filters; or pass --no-wasm-opt")?,
        )
    } else {
        None
    };
    names
        .iter()
        .map(|name| ship(name, wasm_opt.as_deref()))
        .collect()
}

/// Builds and validates test guests (all of them when `guests` is empty) into
/// `target/guests/<name>.wasm`. A guest is the crate `guest-<name>`, or `sdk-guest-<name>` for
/// `sdk-<name>`; it is not a filter, so
/// it is not optimized, size-budgeted or packaged, but Envoy must still load it.
pub fn build_guests(guests: &[String]) -> Result<Vec<Built>> {
    let mut all = util::guest_names()?;
    all.extend(
        util::sdk_guest_names()?
            .into_iter()
            .map(|name| format!("sdk-{name}")),
    );
    let names: Vec<String> = if guests.is_empty() {
        all.clone()
    } else {
        guests.to_vec()
    };
    for name in &names {
        if !all.contains(name) {
            bail!(
                "unknown test guest {name:?}: the guests are {} (directories under host-sim/tests/guests/, and sdk/tests/guests/ as sdk-<name>)",
                all.join(", ")
            );
        }
    }
    let timer = util::Timer::start();
    eprintln!(
        "building test guests {} for {} ({} profile)",
        names.join(", "),
        util::WASM_TARGET,
        util::WASM_PROFILE
    );
    let mut built = Vec::new();
    for name in &names {
        let package = match name.strip_prefix("sdk-") {
            Some(sdk_guest) => format!("sdk-guest-{sdk_guest}"),
            None => format!("guest-{name}"),
        };
        let mut cargo = util::cargo_wasm();
        cargo.current_dir(util::project_root()).args([
            "build",
            "--target",
            util::WASM_TARGET,
            "--profile",
            util::WASM_PROFILE,
            "-p",
            &package,
        ]);
        util::run(&mut cargo).with_context(|| {
            format!("building {package} for wasm32-wasip1: fix the compile errors above")
        })?;
        let compiled = cargo_output(&package, util::WASM_PROFILE);
        let bytes = std::fs::read(&compiled)
            .with_context(|| format!("reading {}: is {package} a cdylib?", compiled.display()))?;
        let shipped = util::guest_wasm(name);
        let module = validate(&bytes).with_context(|| {
            format!(
                "host-sim/tests/guests/{name} would not load in Envoy, so {} was not written",
                util::relative(&shipped)
            )
        })?;
        util::write_atomic(&shipped, &bytes)?;
        built.push(Built {
            name: name.clone(),
            wasm: shipped,
            size: bytes.len() as u64,
            sha256: util::sha256_digest(&bytes),
            abi_version: module.abi.oci_name().to_string(),
            wasm_opt: false,
            shape: module.shape,
        });
    }
    eprintln!("building test guests took {}", timer.elapsed());
    Ok(built)
}

/// The cargo output of a filter crate.
pub fn cargo_output(package: &str, profile: &str) -> PathBuf {
    util::target_dir()
        .join(util::WASM_TARGET)
        .join(profile)
        .join(format!("{}.wasm", package.replace('-', "_")))
}

fn ship(name: &str, wasm_opt: Option<&Path>) -> Result<Built> {
    let compiled = cargo_output(&format!("filter-{name}"), util::WASM_PROFILE);
    let mut bytes = std::fs::read(&compiled)
        .with_context(|| format!("reading {}: is filter-{name} a cdylib?", compiled.display()))?;
    let mut optimized = false;
    if let Some(wasm_opt) = wasm_opt {
        let candidate = optimize(wasm_opt, &compiled)?;
        if candidate.len() < bytes.len() {
            eprintln!(
                "{name}: wasm-opt -Oz {} -> {} bytes",
                bytes.len(),
                candidate.len()
            );
            bytes = candidate;
            optimized = true;
        } else {
            eprintln!(
                "{name}: wasm-opt -Oz did not shrink {} bytes, shipping cargo's output",
                bytes.len()
            );
        }
    }
    let shipped = util::filter_wasm(name);
    let module = validate(&bytes).with_context(|| {
        format!(
            "filters/{name} ({}) would not load in Envoy, so {} was not written",
            compiled.display(),
            util::relative(&shipped)
        )
    })?;
    util::write_atomic(&shipped, &bytes)?;
    eprintln!(
        "{name}: {} functions, the largest {} bytes, at most {} loops in one (V8 needs memory \
         superlinear in a function's size and loops to compile it: docs/benchmarks.md)",
        module.shape.functions, module.shape.largest_function, module.shape.most_loops
    );
    Ok(Built {
        name: name.to_string(),
        wasm: shipped,
        size: bytes.len() as u64,
        sha256: util::sha256_digest(&bytes),
        abi_version: module.abi.oci_name().to_string(),
        wasm_opt: optimized,
        shape: module.shape,
    })
}

/// Feature flags Debian's binaryen 108 needs to read Rust's output. Not `--all-features`:
/// with it wasm-opt writes modules Envoy 1.40 refuses ("Failed to load Wasm bytecode").
const WASM_OPT_FEATURES: &[&str] = &[
    "--enable-bulk-memory",
    "--enable-sign-ext",
    "--enable-mutable-globals",
    "--enable-nontrapping-float-to-int",
    "--enable-multivalue",
    "--enable-reference-types",
];

pub fn optimize(wasm_opt: &Path, input: &Path) -> Result<Vec<u8>> {
    let output = util::target_dir()
        .join("filters")
        .join(format!(".wasm-opt-{}.wasm", std::process::id()));
    std::fs::create_dir_all(output.parent().expect("has a parent"))
        .context("creating target/filters")?;
    let mut command = std::process::Command::new(wasm_opt);
    command
        .arg("-Oz")
        // -Oz alone inlines every function into its only caller, which made add-header's
        // configure path one 5.3 KB function; V8 (Envoy runs TurboFan only, no Liftoff) needs
        // memory superlinear in a function's size to optimise it, and Envoy's allocator keeps
        // it: +1.0 MiB of RSS for 1.6 KB fewer bytes (docs/benchmarks.md, "Cutting it"). Inlining
        // every function of up to 15 bytes everywhere (default 2) removes about 45 small
        // functions, each of which V8 compiles on its own: about −0.6 MiB for +0.2 KB.
        .args(["--one-caller-inline-max-function-size", "0"])
        .args(["--always-inline-max-function-size", "15"])
        .args(WASM_OPT_FEATURES)
        .arg(input)
        .arg("-o")
        .arg(&output);
    util::run(&mut command)
        .context("optimizing with wasm-opt; pass --no-wasm-opt to ship cargo's output")?;
    let bytes = std::fs::read(&output).with_context(|| format!("reading {}", output.display()))?;
    std::fs::remove_file(&output).with_context(|| format!("removing {}", output.display()))?;
    Ok(bytes)
}

/// The Proxy-Wasm ABI versions Envoy knows, by their marker export.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum AbiVersion {
    V0_1_0,
    V0_2_0,
    V0_2_1,
}

impl AbiVersion {
    fn from_marker(export: &str) -> Option<AbiVersion> {
        match export {
            "proxy_abi_version_0_1_0" => Some(AbiVersion::V0_1_0),
            "proxy_abi_version_0_2_0" => Some(AbiVersion::V0_2_0),
            "proxy_abi_version_0_2_1" => Some(AbiVersion::V0_2_1),
            _ => None,
        }
    }

    /// The spelling of Wasm OCI runtime configs' `abiVersions`.
    pub fn oci_name(self) -> &'static str {
        match self {
            AbiVersion::V0_1_0 => "v0.1.0",
            AbiVersion::V0_2_0 => "v0.2.0",
            AbiVersion::V0_2_1 => "v0.2.1",
        }
    }

    /// The `env.proxy_*` functions registered only for some versions (`FOR_ALL_HOST_FUNCTIONS_ABI_SPECIFIC`).
    fn specific_host_functions(self) -> &'static [&'static str] {
        match self {
            AbiVersion::V0_1_0 => &[
                "get_configuration",
                "continue_request",
                "continue_response",
                "clear_route_cache",
            ],
            AbiVersion::V0_2_0 => &["continue_stream", "close_stream"],
            AbiVersion::V0_2_1 => &["continue_stream", "close_stream", "get_log_level"],
        }
    }
}

/// What validation learned about a module.
#[derive(Debug)]
pub struct Module {
    pub abi: AbiVersion,
    pub shape: Shape,
}

/// What V8's compile of a module costs follows the shape of its functions, not only its bytes:
/// V8 compiles each function on its own, with memory that grows faster than the function's size
/// and its loops, and Envoy keeps it (docs/benchmarks.md).
#[derive(Clone, Copy, Debug, Default, Serialize)]
pub struct Shape {
    /// Functions the module defines (not imports).
    pub functions: u32,
    /// Size in bytes of the largest function body.
    pub largest_function: u32,
    /// The most `loop` instructions in one function body.
    pub most_loops: u32,
}

/// `env.proxy_*` functions Envoy registers for every ABI version (`FOR_ALL_HOST_FUNCTIONS` in
/// proxy-wasm-cpp-host include/proxy-wasm/exports.h).
const HOST_FUNCTIONS: &[&str] = &[
    "log",
    "get_status",
    "set_property",
    "get_property",
    "send_local_response",
    "get_shared_data",
    "set_shared_data",
    "register_shared_queue",
    "resolve_shared_queue",
    "dequeue_shared_queue",
    "enqueue_shared_queue",
    "get_header_map_value",
    "add_header_map_value",
    "replace_header_map_value",
    "remove_header_map_value",
    "get_header_map_pairs",
    "set_header_map_pairs",
    "get_header_map_size",
    "get_buffer_status",
    "get_buffer_bytes",
    "set_buffer_bytes",
    "http_call",
    "grpc_call",
    "grpc_stream",
    "grpc_close",
    "grpc_cancel",
    "grpc_send",
    "set_tick_period_milliseconds",
    "get_current_time_nanoseconds",
    "define_metric",
    "increment_metric",
    "record_metric",
    "get_metric",
    "set_effective_context",
    "done",
    "call_foreign_function",
];

/// Every ABI-specific function of any version, to explain a version mismatch.
const ABI_SPECIFIC_ANY: &[&str] = &[
    "get_configuration",
    "continue_request",
    "continue_response",
    "clear_route_cache",
    "continue_stream",
    "close_stream",
    "get_log_level",
];

/// WASI functions Envoy registers under both `wasi_snapshot_preview1` and `wasi_unstable`
/// (`FOR_ALL_WASI_FUNCTIONS`); most are stubs.
const WASI_FUNCTIONS: &[&str] = &[
    "fd_write",
    "fd_read",
    "fd_seek",
    "fd_close",
    "fd_fdstat_get",
    "fd_fdstat_set_flags",
    "fd_fdstat_set_rights",
    "environ_get",
    "environ_sizes_get",
    "args_get",
    "args_sizes_get",
    "clock_time_get",
    "clock_res_get",
    "fd_advise",
    "fd_allocate",
    "fd_datasync",
    "fd_filestat_set_size",
    "fd_filestat_set_times",
    "fd_pread",
    "fd_pwrite",
    "fd_readdir",
    "fd_renumber",
    "fd_sync",
    "fd_tell",
    "path_create_directory",
    "path_filestat_set_times",
    "path_link",
    "path_readlink",
    "path_remove_directory",
    "path_rename",
    "path_symlink",
    "path_unlink_file",
    "sock_accept",
    "sock_recv",
    "sock_send",
    "sock_shutdown",
    "random_get",
    "sched_yield",
    "poll_oneoff",
    "proc_exit",
    "path_open",
    "fd_prestat_get",
    "fd_prestat_dir_name",
    "path_filestat_get",
    "fd_filestat_get",
];

/// Checks that Envoy would load a module: it validates, exports an ABI marker and an
/// allocator, and imports only functions Envoy registers for that ABI version.
pub fn validate(bytes: &[u8]) -> Result<Module> {
    wasmparser::Validator::new()
        .validate_all(bytes)
        .context("invalid WebAssembly")?;

    let mut imports = Vec::new();
    let mut abi = None;
    let mut has_allocator = false;
    let mut shape = Shape::default();
    for payload in wasmparser::Parser::new(0).parse_all(bytes) {
        match payload.context("parsing WebAssembly")? {
            wasmparser::Payload::ImportSection(reader) => {
                for import in reader.into_imports() {
                    let import = import.context("parsing the import section")?;
                    let is_function = matches!(
                        import.ty,
                        wasmparser::TypeRef::Func(_) | wasmparser::TypeRef::FuncExact(_)
                    );
                    imports.push((
                        import.module.to_string(),
                        import.name.to_string(),
                        is_function,
                    ));
                }
            }
            wasmparser::Payload::ExportSection(reader) => {
                for export in reader {
                    let export = export.context("parsing the export section")?;
                    if export.kind != wasmparser::ExternalKind::Func {
                        continue;
                    }
                    // Envoy takes the first marker in export order (BytecodeUtil::getAbiVersion).
                    if abi.is_none() {
                        abi = AbiVersion::from_marker(export.name);
                    }
                    has_allocator |=
                        export.name == "malloc" || export.name == "proxy_on_memory_allocate";
                }
            }
            wasmparser::Payload::CodeSectionEntry(body) => {
                shape.functions += 1;
                let range = body.range();
                let size = u32::try_from(range.end - range.start).unwrap_or(u32::MAX);
                shape.largest_function = shape.largest_function.max(size);
                shape.most_loops = shape.most_loops.max(count_loops(&body)?);
            }
            _ => {}
        }
    }

    let Some(abi) = abi else {
        bail!(
            "exports no ABI version marker (a function proxy_abi_version_0_2_1, proxy_abi_version_0_2_0 or proxy_abi_version_0_1_0): Envoy rejects it"
        );
    };
    if !has_allocator {
        bail!(
            "exports no allocator (malloc or proxy_on_memory_allocate): Envoy fails with \"Wasm module is missing malloc function\""
        );
    }
    for (module, name, is_function) in &imports {
        check_import(abi, module, name, *is_function)?;
    }
    Ok(Module { abi, shape })
}

/// The `loop` instructions in one function body, nested or not.
fn count_loops(body: &wasmparser::FunctionBody<'_>) -> Result<u32> {
    let mut loops = 0;
    let mut reader = body
        .get_operators_reader()
        .context("parsing a function body")?;
    while !reader.eof() {
        if let wasmparser::Operator::Loop { .. } =
            reader.read().context("parsing a function body")?
        {
            loops += 1;
        }
    }
    Ok(loops)
}

fn check_import(abi: AbiVersion, module: &str, name: &str, is_function: bool) -> Result<()> {
    let known = match module {
        "env" => match name.strip_prefix("proxy_") {
            Some(host_function) => {
                if HOST_FUNCTIONS.contains(&host_function)
                    || abi.specific_host_functions().contains(&host_function)
                {
                    true
                } else if ABI_SPECIFIC_ANY.contains(&host_function) {
                    bail!(
                        "imports {module}.{name}, which Envoy registers only for other ABI versions than the module's marker ({})",
                        abi.oci_name()
                    );
                } else {
                    false
                }
            }
            None => name == "pthread_equal" || name == "emscripten_notify_memory_growth",
        },
        "wasi_snapshot_preview1" | "wasi_unstable" => WASI_FUNCTIONS.contains(&name),
        _ => false,
    };
    if !known {
        bail!(
            "imports {module}.{name}, which Envoy does not provide (not a Proxy-Wasm host function nor one of Envoy's WASI functions)"
        );
    }
    if !is_function {
        bail!("imports {module}.{name} as a non-function; Envoy provides only functions");
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use expect_test::{Expect, expect};

    fn check(wat: &str, expect: Expect) {
        let bytes = wat::parse_str(wat).expect("test modules are valid WAT");
        let actual = match super::validate(&bytes) {
            Ok(module) => format!(
                "ok {}, {} function(s), largest {} bytes, at most {} loop(s) in one",
                module.abi.oci_name(),
                module.shape.functions,
                module.shape.largest_function,
                module.shape.most_loops
            ),
            Err(error) => format!("error: {error:#}"),
        };
        expect.assert_eq(&actual);
    }

    #[test]
    fn reports_the_largest_function_of_the_module_not_the_last() {
        check(
            r#"(module
                (memory (export "memory") 1)
                (func (export "proxy_abi_version_0_2_1"))
                (func (param i32) (result i32)
                    local.get 0 i32.const 1 i32.add i32.const 2 i32.mul i32.const 3 i32.sub)
                (func (export "proxy_on_memory_allocate") (param i32) (result i32) i32.const 0))"#,
            expect!["ok v0.2.1, 3 function(s), largest 13 bytes, at most 0 loop(s) in one"],
        );
    }

    #[test]
    fn counts_nested_loops_and_reports_the_function_with_most() {
        check(
            r#"(module
                (memory (export "memory") 1)
                (func (export "proxy_abi_version_0_2_1"))
                (func (loop (block (loop (br 0))) (br 0)) (loop (br 0)))
                (func (loop (br 0)))
                (func (export "proxy_on_memory_allocate") (param i32) (result i32) i32.const 0))"#,
            expect!["ok v0.2.1, 4 function(s), largest 20 bytes, at most 3 loop(s) in one"],
        );
    }

    #[test]
    fn accepts_minimal_0_2_1_module() {
        check(
            r#"(module
                (import "env" "proxy_log" (func (param i32 i32 i32) (result i32)))
                (import "env" "proxy_get_log_level" (func (param i32) (result i32)))
                (import "wasi_snapshot_preview1" "fd_write" (func (param i32 i32 i32 i32) (result i32)))
                (memory (export "memory") 1)
                (func (export "proxy_abi_version_0_2_1"))
                (func (export "proxy_on_memory_allocate") (param i32) (result i32) i32.const 0))"#,
            expect!["ok v0.2.1, 2 function(s), largest 4 bytes, at most 0 loop(s) in one"],
        );
    }

    #[test]
    fn accepts_malloc_and_wasi_unstable_and_emscripten_helpers() {
        check(
            r#"(module
                (import "wasi_unstable" "random_get" (func (param i32 i32) (result i32)))
                (import "env" "pthread_equal" (func (param i32 i32) (result i32)))
                (import "env" "emscripten_notify_memory_growth" (func (param i32)))
                (func (export "proxy_abi_version_0_2_0"))
                (func (export "malloc") (param i32) (result i32) i32.const 0))"#,
            expect!["ok v0.2.0, 2 function(s), largest 4 bytes, at most 0 loop(s) in one"],
        );
    }

    #[test]
    fn rejects_wasm_bindgen_import() {
        check(
            r#"(module
                (import "__wbindgen_placeholder__" "__wbindgen_describe" (func (param i32)))
                (func (export "proxy_abi_version_0_2_1"))
                (func (export "malloc") (param i32) (result i32) i32.const 0))"#,
            expect![
                "error: imports __wbindgen_placeholder__.__wbindgen_describe, which Envoy does not provide (not a Proxy-Wasm host function nor one of Envoy's WASI functions)"
            ],
        );
    }

    #[test]
    fn rejects_unknown_env_function() {
        check(
            r#"(module
                (import "env" "proxy_frobnicate" (func))
                (func (export "proxy_abi_version_0_2_1"))
                (func (export "malloc") (param i32) (result i32) i32.const 0))"#,
            expect![
                "error: imports env.proxy_frobnicate, which Envoy does not provide (not a Proxy-Wasm host function nor one of Envoy's WASI functions)"
            ],
        );
    }

    #[test]
    fn rejects_function_of_another_abi_version() {
        check(
            r#"(module
                (import "env" "proxy_get_log_level" (func (param i32) (result i32)))
                (func (export "proxy_abi_version_0_2_0"))
                (func (export "malloc") (param i32) (result i32) i32.const 0))"#,
            expect![
                "error: imports env.proxy_get_log_level, which Envoy registers only for other ABI versions than the module's marker (v0.2.0)"
            ],
        );
        check(
            r#"(module
                (import "env" "proxy_continue_request" (func (result i32)))
                (func (export "proxy_abi_version_0_2_1"))
                (func (export "malloc") (param i32) (result i32) i32.const 0))"#,
            expect![
                "error: imports env.proxy_continue_request, which Envoy registers only for other ABI versions than the module's marker (v0.2.1)"
            ],
        );
    }

    #[test]
    fn accepts_0_1_0_specific_function_with_0_1_0_marker() {
        check(
            r#"(module
                (import "env" "proxy_get_configuration" (func (param i32 i32) (result i32)))
                (func (export "proxy_abi_version_0_1_0"))
                (func (export "malloc") (param i32) (result i32) i32.const 0))"#,
            expect!["ok v0.1.0, 2 function(s), largest 4 bytes, at most 0 loop(s) in one"],
        );
    }

    #[test]
    fn rejects_unknown_wasi_function() {
        check(
            r#"(module
                (import "wasi_snapshot_preview1" "sock_open" (func (param i32) (result i32)))
                (func (export "proxy_abi_version_0_2_1"))
                (func (export "malloc") (param i32) (result i32) i32.const 0))"#,
            expect![
                "error: imports wasi_snapshot_preview1.sock_open, which Envoy does not provide (not a Proxy-Wasm host function nor one of Envoy's WASI functions)"
            ],
        );
    }

    #[test]
    fn rejects_imported_memory() {
        check(
            r#"(module
                (import "env" "memory" (memory 1))
                (func (export "proxy_abi_version_0_2_1"))
                (func (export "malloc") (param i32) (result i32) i32.const 0))"#,
            expect![
                "error: imports env.memory, which Envoy does not provide (not a Proxy-Wasm host function nor one of Envoy's WASI functions)"
            ],
        );
    }

    #[test]
    fn rejects_module_without_abi_marker() {
        check(
            r#"(module (func (export "malloc") (param i32) (result i32) i32.const 0))"#,
            expect![
                "error: exports no ABI version marker (a function proxy_abi_version_0_2_1, proxy_abi_version_0_2_0 or proxy_abi_version_0_1_0): Envoy rejects it"
            ],
        );
    }

    #[test]
    fn first_marker_in_export_order_wins() {
        check(
            r#"(module
                (func (export "proxy_abi_version_0_1_0"))
                (func (export "proxy_abi_version_0_2_1"))
                (func (export "malloc") (param i32) (result i32) i32.const 0))"#,
            expect!["ok v0.1.0, 3 function(s), largest 4 bytes, at most 0 loop(s) in one"],
        );
    }

    #[test]
    fn rejects_module_without_allocator() {
        check(
            r#"(module (func (export "proxy_abi_version_0_2_1")))"#,
            expect![
                "error: exports no allocator (malloc or proxy_on_memory_allocate): Envoy fails with \"Wasm module is missing malloc function\""
            ],
        );
    }

    #[test]
    fn rejects_invalid_module() {
        let actual = match super::validate(b"\0asm\x01\0\0\0\x01") {
            Ok(_) => "ok".to_string(),
            Err(error) => format!("error: {error:#}"),
        };
        assert!(
            actual.starts_with("error: invalid WebAssembly: "),
            "{actual}"
        );
    }
}
