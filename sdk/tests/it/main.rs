//! filterkit's dispatcher, driven natively through `filterkit::testing::Vm` like Envoy drives
//! a module: one scenario per test, compared as a trace.

mod dispatch;
mod doc_examples;
mod hostile;
mod json_oracle;
mod layers;
mod logging;

use expect_test::Expect;

/// Compares the lines a scenario produced with the expected snapshot.
pub fn check(lines: &[String], expect: Expect) {
    let mut trace = lines.join("\n");
    trace.push('\n');
    expect.assert_eq(&trace);
}
