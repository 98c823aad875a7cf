//! `config.schema.json` is the JSON Schema schemars derives from `Config` (the `schema`
//! feature, on here through the dev-dependency on this crate): xtask checks `--parameters`
//! against it and packages it. `UPDATE_EXPECT=1 cargo test -p filter-local-rate-limit` rewrites it.

#[test]
fn config_schema_json_matches_the_config_type() {
    let schema = schemars::schema_for!(filter_local_rate_limit::Config);
    let text = serde_json::to_string_pretty(&schema).expect("a schema serializes") + "\n";
    expect_test::expect_file!["../../config.schema.json"].assert_eq(&text);
}
