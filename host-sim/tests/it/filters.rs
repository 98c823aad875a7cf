//! Every filter under filters/ has host-sim tests here: a new filter without them fails.

use std::path::Path;

/// The filters with a module of their own in this test binary.
const TESTED_FILTERS: &[&str] = &["add-header", "ext-authz", "json-guard", "local-rate-limit"];

#[test]
fn every_filter_has_host_sim_tests() {
    let filters_dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("../filters");
    let mut filters: Vec<String> = std::fs::read_dir(&filters_dir)
        .unwrap_or_else(|error| panic!("reading {}: {error}", filters_dir.display()))
        .filter_map(Result::ok)
        .filter(|entry| entry.path().join("Cargo.toml").is_file())
        .map(|entry| entry.file_name().to_string_lossy().into_owned())
        .collect();
    filters.sort();
    assert_eq!(
        filters, TESTED_FILTERS,
        "a new filter needs host-sim tests in host-sim/tests/it/ and a line in TESTED_FILTERS"
    );
}
