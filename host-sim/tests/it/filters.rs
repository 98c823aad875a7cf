//! Every filter under filters/ carries its own host-sim scenarios, and this test finds and runs
//! them: `filters/<name>/tests/scenarios/<case>.json` (a `filter-sim run` scenario file) against
//! target/filters/<name>.wasm, compared with the trace in `<case>.trace` beside it
//! (`UPDATE_EXPECT=1` rewrites it). A filter without a scenario fails, naming the file to add,
//! so a new filter needs nothing outside its own directory. Filters' deeper tests keep their own
//! modules here (`add_header.rs`, `ext_authz.rs`, ...).

use std::path::{Path, PathBuf};

use filterkit_host_sim::{Module, Sim, scenario};

fn filters_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../filters")
}

/// The directories under filters/ with a Cargo.toml, sorted.
fn filter_names() -> Vec<String> {
    let dir = filters_dir();
    let mut names: Vec<String> = std::fs::read_dir(&dir)
        .unwrap_or_else(|error| panic!("reading {}: {error}", dir.display()))
        .filter_map(Result::ok)
        .filter(|entry| entry.path().join("Cargo.toml").is_file())
        .map(|entry| entry.file_name().to_string_lossy().into_owned())
        .collect();
    names.sort();
    names
}

/// A filter's scenario files, sorted; empty when it has none.
fn scenarios(filter: &str) -> Vec<PathBuf> {
    let dir = filters_dir().join(filter).join("tests/scenarios");
    let mut files: Vec<PathBuf> = match std::fs::read_dir(&dir) {
        Ok(entries) => entries
            .filter_map(Result::ok)
            .map(|entry| entry.path())
            .filter(|path| path.extension().is_some_and(|ext| ext == "json"))
            .collect(),
        Err(_) => Vec::new(),
    };
    files.sort();
    files
}

#[test]
fn every_filter_has_host_sim_scenarios() {
    let missing: Vec<String> = filter_names()
        .into_iter()
        .filter(|filter| scenarios(filter).is_empty())
        .map(|filter| format!("filters/{filter}/tests/scenarios/<case>.json"))
        .collect();
    assert!(
        missing.is_empty(),
        "a filter needs at least one host-sim scenario (a `filter-sim run` scenario file; its \
         trace goes in <case>.trace beside it, written by UPDATE_EXPECT=1 cargo test -p \
         filterkit-host-sim --test it filters): add {missing:?}"
    );
}

#[test]
fn every_filter_scenario_gives_its_trace() {
    for filter in filter_names() {
        let wasm = filters_dir().join(format!("../target/filters/{filter}.wasm"));
        assert!(
            wasm.is_file(),
            "target/filters/{filter}.wasm not found: run `cargo xtask build`"
        );
        let module = Module::load(&wasm).expect("a built filter loads");
        for path in scenarios(&filter) {
            let text = std::fs::read_to_string(&path)
                .unwrap_or_else(|error| panic!("reading {}: {error}", path.display()));
            let output = scenario::parse(&text)
                .and_then(|parsed| scenario::run(&module, &parsed))
                .unwrap_or_else(|error| format!("error: {error}\n"));
            expect_test::expect_file![path.with_extension("trace")].assert_eq(&output);
        }
    }
}

/// `cargo xtask bench` runs every filter with the configuration its `bench.json` gives, or an
/// empty one: a filter that refuses the empty configuration needs the file.
#[test]
fn every_filter_loads_with_an_empty_configuration_or_has_a_bench_json() {
    let mut missing = Vec::new();
    for filter in filter_names() {
        if filters_dir().join(&filter).join("bench.json").is_file() {
            continue;
        }
        let wasm = filters_dir().join(format!("../target/filters/{filter}.wasm"));
        let module = Module::load(&wasm).expect("a built filter loads");
        if Sim::builder(&module)
            .plugin("my_root_id", "")
            .build()
            .is_err()
        {
            missing.push(format!("filters/{filter}/bench.json"));
        }
    }
    assert!(
        missing.is_empty(),
        "these filters refuse an empty configuration, so `cargo xtask bench` needs theirs in a \
         bench.json (root_id, configuration, expected_headers, expect_ok; see \
         docs/benchmarks.md): add {missing:?}"
    );
}
