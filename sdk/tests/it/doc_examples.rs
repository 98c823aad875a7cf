//! Every public item of filterkit has a doc example that compiles and runs.
//!
//! rustdoc's `--show-coverage` needs nightly, so this scans `sdk/src` instead. A public item
//! is a `pub` fn, struct, enum, trait, type, const, static or `#[macro_export]` `macro_rules!`, a method or
//! associated const of a `pub trait`, or a public module (its `//!` header). Its doc comment
//! must hold a plain ```` ``` ```` (or ```` ```rust ````) fence; `ignore`, `no_run`,
//! `compile_fail` and `should_panic` fences count as missing anywhere in the crate.
//!
//! Not scanned: the private modules `abi/`, `logger.rs`, `pairs.rs` and `dispatch.rs` (whose
//! `pub` items are reachable only through the `#[doc(hidden)]` `__private` module that
//! `export_filter!` expands to; they are not API), and `#[cfg(test)]` modules.

use std::path::{Path, PathBuf};

const PRIVATE: &[&str] = &["abi", "logger.rs", "pairs.rs", "dispatch.rs"];
const ITEM_KINDS: &[&str] = &[
    "fn ", "struct ", "enum ", "trait ", "type ", "const ", "static ", "mod ",
];

fn sources(dir: &Path, files: &mut Vec<PathBuf>) {
    for entry in std::fs::read_dir(dir).unwrap() {
        let path = entry.unwrap().path();
        let name = path.file_name().unwrap().to_str().unwrap();
        if PRIVATE.contains(&name) {
            continue;
        }
        if path.is_dir() {
            sources(&path, files);
        } else if name.ends_with(".rs") {
            files.push(path);
        }
    }
}

/// Whether a doc comment (its lines without `///` or `//!`) opens a runnable code block: a
/// fence with no info string or `rust`. Closing fences are told apart from opening ones.
fn has_runnable_example(doc: &[&str]) -> bool {
    let mut in_code = false;
    for line in doc {
        if let Some(info) = line.trim().strip_prefix("```") {
            if !in_code && matches!(info.trim(), "" | "rust") {
                return true;
            }
            in_code = !in_code;
        }
    }
    false
}

/// Whether `line` (trimmed) declares an item this scan covers.
fn declares_item(line: &str, in_pub_trait: bool, exported: bool) -> bool {
    if line.starts_with("macro_rules!") {
        // A macro without `#[macro_export]` is private to the crate.
        return exported;
    }
    if let Some(rest) = line.strip_prefix("pub ") {
        let rest = rest.strip_prefix("const fn ").map_or(rest, |_| "fn ");
        // `pub use` re-exports are checked where the item is defined; `pub mod x;` by its file.
        return ITEM_KINDS.iter().any(|kind| rest.starts_with(kind)) && !rest.starts_with("mod ");
    }
    in_pub_trait && (line.starts_with("fn ") || line.starts_with("const "))
}

/// The public items of one file without a runnable example, as `file:line: declaration`.
fn missing_examples(path: &Path, text: &str, needs_module_doc: bool) -> Vec<String> {
    scan(path, text, needs_module_doc).0
}

/// The items without a runnable example, and how many items were checked.
fn scan(path: &Path, text: &str, needs_module_doc: bool) -> (Vec<String>, usize) {
    let mut missing = Vec::new();
    let mut checked = usize::from(needs_module_doc);
    let module_doc: Vec<&str> = text
        .lines()
        .take_while(|line| line.starts_with("//!") || line.trim().is_empty())
        .filter_map(|line| line.strip_prefix("//!"))
        .collect();
    if needs_module_doc && !has_runnable_example(&module_doc) {
        missing.push(format!("{}:1: module header", path.display()));
    }
    let mut doc: Vec<&str> = Vec::new();
    let mut in_pub_trait = false;
    let mut hidden = false;
    let mut exported = false;
    for (idx, raw) in text.lines().enumerate() {
        if raw.starts_with("#[cfg(test)]") {
            break;
        }
        let line = raw.trim();
        if raw.starts_with("pub trait ") {
            in_pub_trait = true;
        } else if raw.starts_with('}') {
            in_pub_trait = false;
        }
        if let Some(doc_line) = line.strip_prefix("///") {
            doc.push(doc_line);
            continue;
        }
        if line.starts_with("#[") || line.starts_with("#!") {
            hidden |= line.starts_with("#[doc(hidden)]");
            exported |= line.starts_with("#[macro_export]");
            continue;
        }
        let trait_item = in_pub_trait && raw.starts_with("    ") && !raw.starts_with("     ");
        if declares_item(line, trait_item, exported) && !hidden {
            checked += 1;
            if !has_runnable_example(&doc) {
                missing.push(format!("{}:{}: {}", path.display(), idx + 1, line));
            }
        }
        doc.clear();
        hidden = false;
        exported = false;
    }
    (missing, checked)
}

#[test]
fn every_public_item_has_a_runnable_doc_example() {
    let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
    let mut files = Vec::new();
    sources(&src, &mut files);
    files.sort();
    let lib = std::fs::read_to_string(src.join("lib.rs")).unwrap();
    let public_modules: Vec<String> = lib
        .lines()
        .filter_map(|line| line.strip_prefix("pub mod ")?.strip_suffix(';'))
        .map(String::from)
        .collect();
    let mut problems = Vec::new();
    let mut items = 0;
    for path in &files {
        let text = std::fs::read_to_string(path).unwrap();
        let relative = path.strip_prefix(env!("CARGO_MANIFEST_DIR")).unwrap();
        // A module's `//!` header is public only for `lib.rs` and the `pub mod`s.
        let module = path.file_stem().unwrap().to_str().unwrap();
        let public_module = module == "lib" || public_modules.contains(&module.to_string());
        let (missing, checked) = scan(relative, &text, public_module);
        problems.extend(missing);
        items += checked;
    }
    assert!(files.len() >= 12, "scanned only {files:?}");
    // A scan that silently matches nothing would pass; the crate has well over 150 items.
    assert!(items >= 150, "checked only {items} items");
    assert_eq!(
        problems,
        Vec::<String>::new(),
        "public items without a runnable example"
    );
}

#[test]
fn no_example_is_ignored_or_expected_to_fail() {
    let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
    let mut files = Vec::new();
    // The private modules too: an `ignore` there would be just as unchecked.
    fn all(dir: &Path, files: &mut Vec<PathBuf>) {
        for entry in std::fs::read_dir(dir).unwrap() {
            let path = entry.unwrap().path();
            if path.is_dir() {
                all(&path, files);
            } else {
                files.push(path);
            }
        }
    }
    all(&src, &mut files);
    let mut problems = Vec::new();
    for path in &files {
        let text = std::fs::read_to_string(path).unwrap();
        for (idx, line) in text.lines().enumerate() {
            let line = line.trim_start();
            let doc = line
                .strip_prefix("///")
                .or_else(|| line.strip_prefix("//!"));
            if let Some(fence) = doc.and_then(|doc| doc.trim().strip_prefix("```"))
                && ["ignore", "no_run", "compile_fail", "should_panic"]
                    .iter()
                    .any(|bad| fence.contains(bad))
            {
                problems.push(format!("{}:{}: {}", path.display(), idx + 1, line));
            }
        }
    }
    assert_eq!(problems, Vec::<String>::new());
}

/// The scan itself: a checker that finds nothing proves nothing.
#[test]
fn scan_finds_items_without_examples() {
    let text = "//! A module.\n//!\n//! ```\n//! ```\n\n/// Documented.\n///\n/// ```\n/// f();\n/// ```\npub fn f() {}\n\n/// No example.\npub struct S;\n\n/// Ignored.\n/// ```ignore\n/// ```\npub fn g() {}\n\npub trait T {\n    /// No example.\n    fn m(&self) {}\n    /// ```\n    /// ```\n    const C: u8 = 0;\n}\n\n#[doc(hidden)]\npub mod hidden {}\n\nimpl S {\n    pub(crate) fn internal() {}\n    pub const fn k() {}\n}\n";
    let missing = missing_examples(Path::new("x.rs"), text, true);
    assert_eq!(
        missing,
        [
            "x.rs:14: pub struct S;",
            "x.rs:19: pub fn g() {}",
            "x.rs:21: pub trait T {",
            "x.rs:23: fn m(&self) {}",
            "x.rs:34: pub const fn k() {}",
        ]
    );
    assert_eq!(
        missing_examples(Path::new("y.rs"), "//! No example.\n", true),
        ["y.rs:1: module header"]
    );
    assert!(missing_examples(Path::new("z.rs"), "//! Private.\n", false).is_empty());
}
