//! json-guard's native tests: the rewriter on fixed cases and against serde_json on
//! generated and mutated documents, and the filter's configuration contract.

mod config;
mod config_schema;
mod rewrite;
