//! A filter's configuration schema: `filters/<name>/config.schema.json`, a JSON Schema derived
//! from the filter's Rust config type by `schemars` in a native test of the filter (which also
//! checks the file still matches the type). `manifests` and `publish` check `--parameters`
//! against it before anything is built; `package` embeds it in the OCI config blob. A filter
//! without the file is not checked here (host-sim's configuration canary still runs).

use std::path::PathBuf;

use anyhow::{Context, Result, bail};
use serde_json::Value;

use crate::util;

/// filters/<filter>/config.schema.json.
pub fn path(filter: &str) -> PathBuf {
    util::project_root()
        .join("filters")
        .join(filter)
        .join("config.schema.json")
}

/// The filter's schema, if it has one.
pub fn load(filter: &str) -> Result<Option<Value>> {
    let path = path(filter);
    let text = match std::fs::read_to_string(&path) {
        Ok(text) => text,
        Err(error) if error.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(error) => return Err(error).with_context(|| format!("reading {}", path.display())),
    };
    let schema = serde_json::from_str(&text)
        .with_context(|| format!("{} is not JSON", util::relative(&path)))?;
    Ok(Some(schema))
}

/// One line per way `value` breaks `schema`, each naming the field (a JSON pointer).
pub fn problems(schema: &Value, value: &Value) -> Result<Vec<String>> {
    let validator = jsonschema::validator_for(schema)
        .map_err(|error| anyhow::anyhow!("{error}"))
        .context("the schema does not compile")?;
    Ok(validator
        .iter_errors(value)
        .map(|error| {
            let field = error.instance_path().to_string();
            let field = if field.is_empty() {
                "the top level".to_string()
            } else {
                format!("field {field}")
            };
            format!("{field}: {error}")
        })
        .collect())
}

/// Rejects parameters that do not match the filter's schema, naming the field.
pub fn check_parameters(filter: &str, parameters: &Value) -> Result<()> {
    let Some(schema) = load(filter)? else {
        return Ok(());
    };
    let path = util::relative(&path(filter));
    let problems = problems(&schema, parameters).with_context(|| format!("in {path}"))?;
    if !problems.is_empty() {
        bail!(
            "--parameters do not match {filter}'s configuration schema ({path}):\n  {}",
            problems.join("\n  ")
        );
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use expect_test::{Expect, expect};
    use serde_json::json;

    fn check(parameters: serde_json::Value, expect: Expect) {
        let actual = match super::check_parameters("add-header", &parameters) {
            Ok(()) => "ok".to_string(),
            Err(error) => format!("{error:#}"),
        };
        expect.assert_eq(&actual);
    }

    #[test]
    fn add_header_parameters_are_checked_against_its_schema() {
        check(
            json!({"name": "hello", "value": "hello details"}),
            expect!["ok"],
        );
        check(
            json!({"name": "hello", "valeu": "x"}),
            expect![[r#"
                --parameters do not match add-header's configuration schema (filters/add-header/config.schema.json):
                  the top level: "value" is a required property
                  the top level: Additional properties are not allowed ('valeu' was unexpected)"#]],
        );
        check(
            json!({"name": 5, "value": "x"}),
            expect![[r#"
                --parameters do not match add-header's configuration schema (filters/add-header/config.schema.json):
                  field /name: 5 is not of type "string""#]],
        );
        check(
            json!({"name": "bad name", "value": "x"}),
            expect![[r#"
                --parameters do not match add-header's configuration schema (filters/add-header/config.schema.json):
                  field /name: "bad name" does not match "^[!#$%&'*+.^_`|~0-9A-Za-z-]+$""#]],
        );
        check(
            json!(["hello"]),
            expect![[r#"
                --parameters do not match add-header's configuration schema (filters/add-header/config.schema.json):
                  the top level: ["hello"] is not of type "object""#]],
        );
    }

    #[test]
    fn a_filter_without_a_schema_is_not_checked() {
        assert!(super::load("no-such-filter").unwrap().is_none());
        super::check_parameters("no-such-filter", &json!({"anything": 1})).unwrap();
    }
}
