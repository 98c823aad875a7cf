//! `cargo xtask new <NAME>`: scaffold a new filter under `filters/<NAME>/`.
//!
//! The crate `filter-<NAME>` is rendered from the templates in `src/new/` (plain files with
//! `{{name}}`, `{{crate}}` and `{{Camel}}` placeholders; no template engine) into a temporary
//! directory at the workspace root, then renamed into place, so a failure never leaves a
//! half-written crate that the workspace's `filters/*` glob would pick up. It refuses an
//! existing directory and any name but lowercase letters, digits and single dashes.

use std::path::{Path, PathBuf};

use anyhow::{Context, Result, bail};

use crate::util;

#[derive(clap::Args)]
pub struct Args {
    /// The filter's name: lowercase letters, digits and '-', starting with a letter
    /// (the crate is `filter-<NAME>`, the directory `filters/<NAME>/`).
    pub name: String,
}

/// The templates, as (path inside the crate, text).
const TEMPLATES: &[(&str, &str)] = &[
    ("Cargo.toml", include_str!("new/Cargo.toml.tmpl")),
    ("src/lib.rs", include_str!("new/lib.rs.tmpl")),
    ("tests/it/main.rs", include_str!("new/main.rs.tmpl")),
    (
        "tests/it/config_schema.rs",
        include_str!("new/config_schema.rs.tmpl"),
    ),
    (
        "config.schema.json",
        include_str!("new/config.schema.json.tmpl"),
    ),
    ("README.md", include_str!("new/README.md.tmpl")),
    ("filter.json", include_str!("new/filter.json.tmpl")),
    ("bench.json", include_str!("new/bench.json.tmpl")),
    (
        "tests/scenarios/greets.json",
        include_str!("new/scenario.json.tmpl"),
    ),
    (
        "tests/scenarios/greets.trace",
        include_str!("new/scenario.trace.tmpl"),
    ),
    (
        "tests/envoy/greets.json",
        include_str!("new/envoy.json.tmpl"),
    ),
    (
        "tests/envoy/greets.head",
        include_str!("new/envoy.head.tmpl"),
    ),
];

/// Names longer than this make unwieldy crate, type and header names.
const MAX_NAME_LEN: usize = 48;

pub fn run(args: Args) -> Result<()> {
    let name = args.name.as_str();
    validate_name(name)?;
    let filters_dir = util::project_root().join("filters");
    let dir = filters_dir.join(name);
    if dir.exists() {
        bail!(
            "filters/{name} already exists: pick another name, or remove {} first",
            dir.display()
        );
    }
    let files = render(name);
    write_crate(&dir, &files)?;

    let mut message = format!("created filters/{name}/ (crate filter-{name}):\n");
    for (path, _) in &files {
        message.push_str(&format!("  filters/{name}/{path}\n"));
    }
    message.push_str(&next_steps(name));
    eprint!("{message}");
    Ok(())
}

/// Checks a filter name: it becomes a directory, a crate name (`filter-<name>`), Rust type
/// names (`<Camel>Root`) and a header name (`x-<name>`), so only lowercase ASCII letters,
/// digits and single inner dashes are allowed, starting with a letter.
fn validate_name(name: &str) -> Result<()> {
    let problem = if name.is_empty() {
        "it is empty".to_string()
    } else if name.len() > MAX_NAME_LEN {
        format!("it is longer than {MAX_NAME_LEN} characters")
    } else if let Some(c) = name
        .chars()
        .find(|c| !(c.is_ascii_lowercase() || c.is_ascii_digit() || *c == '-'))
    {
        format!("{c:?} is not allowed")
    } else if !name.starts_with(|c: char| c.is_ascii_lowercase()) {
        "it does not start with a lowercase letter".to_string()
    } else if name.ends_with('-') {
        "it ends with '-'".to_string()
    } else if name.contains("--") {
        "it contains \"--\"".to_string()
    } else {
        return Ok(());
    };
    bail!(
        "invalid filter name {name:?}: {problem} (use lowercase letters, digits and '-', e.g. `rate-limit`)"
    )
}

/// `rate-limit-2` -> `RateLimit2`, for the filter's type names.
fn camel_case(name: &str) -> String {
    name.split('-')
        .map(|word| {
            let mut chars = word.chars();
            match chars.next() {
                Some(first) => first.to_ascii_uppercase().to_string() + chars.as_str(),
                None => String::new(),
            }
        })
        .collect()
}

/// The crate's files for a (valid) name, as (path inside the crate, contents).
fn render(name: &str) -> Vec<(&'static str, String)> {
    let crate_name = format!("filter_{}", name.replace('-', "_"));
    let camel = camel_case(name);
    TEMPLATES
        .iter()
        .map(|(path, template)| {
            let text = template
                .replace("{{name}}", name)
                .replace("{{crate}}", &crate_name)
                .replace("{{Camel}}", &camel);
            (*path, text)
        })
        .collect()
}

/// Writes the files into a temporary directory beside `filters/` (not inside it: cargo's
/// `filters/*` member glob would take a half-written crate for a second `filter-<name>`), then
/// renames it to `dir`.
fn write_crate(dir: &Path, files: &[(&str, String)]) -> Result<()> {
    let name = dir
        .file_name()
        .with_context(|| format!("{} has no file name", dir.display()))?
        .to_string_lossy();
    let temporary =
        TemporaryDir(util::project_root().join(format!(".new-{name}.tmp-{}", std::process::id())));
    for (path, text) in files {
        let path = temporary.0.join(path);
        let parent = path.parent().expect("a template path has a parent");
        std::fs::create_dir_all(parent)
            .with_context(|| format!("creating {}", parent.display()))?;
        std::fs::write(&path, text).with_context(|| format!("writing {}", path.display()))?;
    }
    std::fs::rename(&temporary.0, dir).with_context(|| {
        format!(
            "renaming {} to {}",
            temporary.0.display(),
            util::relative(dir)
        )
    })?;
    Ok(())
}

/// A temporary directory removed when dropped; after a successful rename there is nothing left
/// to remove, and removing fails harmlessly.
struct TemporaryDir(PathBuf);

impl Drop for TemporaryDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// What the workspace's generic tests run from a new filter's directory, and the commands that
/// come next.
fn next_steps(name: &str) -> String {
    format!(
        r#"
The workspace's generic tests find it and run what it carries in filters/{name}/:
  tests/scenarios/*.json (host-sim, against their .trace), tests/envoy/*.json (a real Envoy,
  against their .head), filter.json (its size budget) and bench.json (cargo xtask bench).
  `UPDATE_EXPECT=1` rewrites the .trace and .head files when the filter changes.

When you change Config, `UPDATE_EXPECT=1 cargo test -p filter-{name}` rewrites
filters/{name}/config.schema.json, which publish checks --parameters against.

Next:
  cargo test -p filter-{name}
  cargo xtask build {name}
  cargo xtask publish {name} --parameters '{{"greeting":"hello"}}'
"#
    )
}

#[cfg(test)]
mod tests {
    use expect_test::{Expect, expect};

    fn check_name(name: &str, expect: Expect) {
        let actual = match super::validate_name(name) {
            Ok(()) => "ok".to_string(),
            Err(error) => format!("error: {error:#}"),
        };
        expect.assert_eq(&actual);
    }

    #[test]
    fn accepts_lowercase_letters_digits_and_dashes() {
        check_name("demo-filter", expect!["ok"]);
        check_name("a", expect!["ok"]);
        check_name("rate-limit-2", expect!["ok"]);
        check_name("jwt2-auth", expect!["ok"]);
    }

    #[test]
    fn rejects_empty_and_long_names() {
        check_name(
            "",
            expect![[
                r#"error: invalid filter name "": it is empty (use lowercase letters, digits and '-', e.g. `rate-limit`)"#
            ]],
        );
        check_name(
            &"a".repeat(49),
            expect![[
                r#"error: invalid filter name "aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa": it is longer than 48 characters (use lowercase letters, digits and '-', e.g. `rate-limit`)"#
            ]],
        );
    }

    #[test]
    fn rejects_characters_outside_the_set() {
        check_name(
            "Demo",
            expect![[
                r#"error: invalid filter name "Demo": 'D' is not allowed (use lowercase letters, digits and '-', e.g. `rate-limit`)"#
            ]],
        );
        check_name(
            "demo_filter",
            expect![[
                r#"error: invalid filter name "demo_filter": '_' is not allowed (use lowercase letters, digits and '-', e.g. `rate-limit`)"#
            ]],
        );
        check_name(
            "demo filter",
            expect![[
                r#"error: invalid filter name "demo filter": ' ' is not allowed (use lowercase letters, digits and '-', e.g. `rate-limit`)"#
            ]],
        );
        check_name(
            "../etc",
            expect![[
                r#"error: invalid filter name "../etc": '.' is not allowed (use lowercase letters, digits and '-', e.g. `rate-limit`)"#
            ]],
        );
        check_name(
            "démo",
            expect![[
                r#"error: invalid filter name "démo": 'é' is not allowed (use lowercase letters, digits and '-', e.g. `rate-limit`)"#
            ]],
        );
    }

    #[test]
    fn rejects_misplaced_dashes_and_leading_digits() {
        check_name(
            "2fa",
            expect![[
                r#"error: invalid filter name "2fa": it does not start with a lowercase letter (use lowercase letters, digits and '-', e.g. `rate-limit`)"#
            ]],
        );
        check_name(
            "-demo",
            expect![[
                r#"error: invalid filter name "-demo": it does not start with a lowercase letter (use lowercase letters, digits and '-', e.g. `rate-limit`)"#
            ]],
        );
        check_name(
            "demo-",
            expect![[
                r#"error: invalid filter name "demo-": it ends with '-' (use lowercase letters, digits and '-', e.g. `rate-limit`)"#
            ]],
        );
        check_name(
            "demo--filter",
            expect![[
                r#"error: invalid filter name "demo--filter": it contains "--" (use lowercase letters, digits and '-', e.g. `rate-limit`)"#
            ]],
        );
    }

    #[test]
    fn camel_cases_names_for_type_names() {
        let shown: Vec<String> = ["demo-filter", "a", "rate-limit-2", "self"]
            .iter()
            .map(|name| super::camel_case(name))
            .collect();
        expect![[r#"
            [
                "DemoFilter",
                "A",
                "RateLimit2",
                "Self",
            ]
        "#]]
        .assert_debug_eq(&shown);
    }

    #[test]
    fn says_what_the_generic_tests_run() {
        expect![[r#"

            The workspace's generic tests find it and run what it carries in filters/demo-filter/:
              tests/scenarios/*.json (host-sim, against their .trace), tests/envoy/*.json (a real Envoy,
              against their .head), filter.json (its size budget) and bench.json (cargo xtask bench).
              `UPDATE_EXPECT=1` rewrites the .trace and .head files when the filter changes.

            When you change Config, `UPDATE_EXPECT=1 cargo test -p filter-demo-filter` rewrites
            filters/demo-filter/config.schema.json, which publish checks --parameters against.

            Next:
              cargo test -p filter-demo-filter
              cargo xtask build demo-filter
              cargo xtask publish demo-filter --parameters '{"greeting":"hello"}'
        "#]].assert_eq(&super::next_steps("demo-filter"));
    }

    /// `cargo xtask test` runs `cargo fmt --check`, so a new filter must be formatted as
    /// rustfmt would, whatever the length of its name.
    #[test]
    fn renders_rustfmt_clean_sources_for_short_and_long_names() {
        use std::io::Write;
        for name in ["a", "demo-filter", &"long-name".repeat(6)[..48]] {
            for (path, text) in super::render(name) {
                if !path.ends_with(".rs") {
                    continue;
                }
                let mut rustfmt = std::process::Command::new("rustfmt")
                    .args(["--edition", "2024"])
                    .stdin(std::process::Stdio::piped())
                    .stdout(std::process::Stdio::piped())
                    .spawn()
                    .expect("rustfmt comes with the toolchain");
                rustfmt
                    .stdin
                    .take()
                    .expect("piped stdin")
                    .write_all(text.as_bytes())
                    .expect("writing to rustfmt");
                // `rustfmt --check` exits 0 on stdin even when it shows a diff, so compare the
                // formatted output instead.
                let output = rustfmt.wait_with_output().expect("running rustfmt");
                assert!(
                    output.status.success(),
                    "rustfmt failed on {path} for {name:?}"
                );
                assert_eq!(
                    String::from_utf8_lossy(&output.stdout),
                    text,
                    "{path} for {name:?} is not rustfmt-clean"
                );
            }
        }
    }

    #[test]
    fn renders_the_crate_for_a_name() {
        let files = super::render("demo-filter");
        let paths: Vec<&str> = files.iter().map(|(path, _)| *path).collect();
        expect![[r#"
            [
                "Cargo.toml",
                "src/lib.rs",
                "tests/it/main.rs",
                "tests/it/config_schema.rs",
                "config.schema.json",
                "README.md",
                "filter.json",
                "bench.json",
                "tests/scenarios/greets.json",
                "tests/scenarios/greets.trace",
                "tests/envoy/greets.json",
                "tests/envoy/greets.head",
            ]
        "#]]
        .assert_debug_eq(&paths);
        for (path, text) in &files {
            assert!(!text.contains("{{"), "{path} has an unreplaced placeholder");
        }
        expect![[r#"
            [package]
            name = "filter-demo-filter"
            description = "Adds x-demo-filter with a configured greeting to every response"
            version.workspace = true
            edition.workspace = true
            rust-version.workspace = true
            license.workspace = true
            publish.workspace = true

            [lib]
            crate-type = ["cdylib", "rlib"]

            [dependencies]
            # Exports the headers callbacks only: to implement another (a body, trailers, `on_log`, ticks…),
            # turn on its feature, e.g. `filterkit = { workspace = true, features = ["request-body"] }`
            # (sdk/README.md, "Callbacks a filter exports").
            filterkit.workspace = true
            log.workspace = true
            serde.workspace = true
            schemars = { version = "1", default-features = false, features = ["derive"], optional = true }

            [lints]
            workspace = true

            [dev-dependencies]
            expect-test.workspace = true
            serde_json.workspace = true
            filter-demo-filter = { path = ".", features = ["schema"] }

            [features]
            # config.schema.json derived with schemars: native builds only; the tests turn it on through
            # the dev-dependency on this crate itself.
            schema = ["dep:schemars"]
        "#]]
        .assert_eq(&files[0].1);
        let lib = &files[1].1;
        for wanted in [
            "pub struct DemoFilterRoot;",
            "pub const HEADER_NAME: &str = \"x-demo-filter\";",
            "filterkit::export_filter!(DemoFilterRoot);",
        ] {
            assert!(lib.contains(wanted), "src/lib.rs lacks {wanted:?}");
        }
        assert!(
            files[2]
                .1
                .contains("use filter_demo_filter::DemoFilterRoot;")
        );
    }
}
