//! The SDK's modules are layers: each imports only from lower layers, so the graph has no
//! cycles. The ABI layer (bytes and statuses) is at the bottom; the API modules, the
//! traits, the dispatcher and `testing` stand on it in that order.

use std::collections::BTreeMap;
use std::path::Path;

/// Each module's layer; a module may use only modules of a lower layer. `lib.rs` only declares
/// and re-exports, so it is not listed.
const LAYERS: &[(&str, u32)] = &[
    ("text", 0),
    ("pairs", 0),
    ("action", 0),
    ("error", 1),
    ("abi", 2),
    ("registry", 3),
    ("logger", 3),
    ("http", 4),
    ("host", 4),
    ("metrics", 4),
    ("properties", 4),
    ("shared", 4),
    ("time", 4),
    ("json", 4),
    ("grpc", 5),
    ("tcp", 5),
    ("context", 6),
    ("dispatch", 7),
    ("testing", 8),
];

/// Where the crate root's re-exports are defined.
fn defining_module(name: &str) -> &str {
    match name {
        "Action" => "action",
        "Config" | "HttpContext" | "RootContext" => "context",
        "Error" | "Status" => "error",
        "quote" | "join" => "text",
        other => other,
    }
}

/// The modules a source file names through `crate::`, comments left out.
fn used_modules(text: &str) -> Vec<String> {
    let mut used = Vec::new();
    for line in text.lines() {
        let code = line.trim_start();
        if code.starts_with("//") {
            continue;
        }
        let mut rest = code;
        while let Some(idx) = rest.find("crate::") {
            rest = &rest[idx + "crate::".len()..];
            let names: Vec<&str> = if let Some(group) = rest.strip_prefix('{') {
                // The first path segment of each top-level item in the group.
                let mut names = Vec::new();
                let (mut depth, mut start) = (0, 0);
                for (idx, c) in group.char_indices() {
                    match c {
                        '{' => depth += 1,
                        '}' if depth == 0 => {
                            names.push(&group[start..idx]);
                            break;
                        }
                        '}' => depth -= 1,
                        ',' if depth == 0 => {
                            names.push(&group[start..idx]);
                            start = idx + 1;
                        }
                        _ => {}
                    }
                }
                names
                    .into_iter()
                    .map(|part| part.trim().split("::").next().unwrap_or("").trim())
                    .collect()
            } else {
                let end = rest
                    .find(|c: char| !(c.is_alphanumeric() || c == '_'))
                    .unwrap_or(rest.len());
                vec![&rest[..end]]
            };
            for name in names {
                if !name.is_empty() && name != "self" {
                    used.push(defining_module(name).to_string());
                }
            }
        }
    }
    used
}

#[test]
fn modules_import_only_lower_layers() {
    let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
    let layers: BTreeMap<&str, u32> = LAYERS.iter().copied().collect();
    let mut files = vec![];
    for dir in [src.clone(), src.join("abi")] {
        for entry in std::fs::read_dir(dir).unwrap() {
            let path = entry.unwrap().path();
            if path.is_file() {
                files.push(path);
            }
        }
    }
    let mut problems = Vec::new();
    let mut n_checked = 0;
    for path in files {
        let relative = path
            .strip_prefix(&src)
            .unwrap()
            .to_string_lossy()
            .into_owned();
        let module = relative.split(['/', '.']).next().unwrap().to_string();
        if module == "lib" {
            continue;
        }
        let Some(&layer) = layers.get(module.as_str()) else {
            problems.push(format!(
                "{relative}: module {module} has no layer in LAYERS"
            ));
            continue;
        };
        n_checked += 1;
        let text = std::fs::read_to_string(&path).unwrap();
        for used in used_modules(&text) {
            match layers.get(used.as_str()) {
                Some(&used_layer) if used_layer < layer || used == module => {}
                Some(_) => problems.push(format!("{relative}: {module} uses {used}")),
                None => problems.push(format!("{relative}: uses {used}, which has no layer")),
            }
        }
    }
    assert!(n_checked > 15, "found only {n_checked} modules");
    assert_eq!(problems, Vec::<String>::new());
}

#[test]
fn the_scan_sees_grouped_and_plain_uses() {
    let text = "use crate::{Action, abi::{self, GuestCell}};\n// crate::testing in a comment\nlet x = crate::http::Buffer::new();\n";
    assert_eq!(used_modules(text), ["action", "abi", "http"]);
}
