//! add-header's tests: its configuration contract and what it does to streams, run natively
//! against filterkit's fake host.

mod config;
mod config_schema;
mod streams;

use expect_test::Expect;
use filter_add_header::AddHeaderRoot;
use filterkit::http::MapType;
use filterkit::testing::Vm;

/// Configures add-header under `my_root_id`; if accepted, runs one stream through it.
/// The trace shows the verdict, the logs, and the headers the stream ends with.
pub fn check(config: &str, expect: Expect) {
    let vm = Vm::<AddHeaderRoot>::new();
    let accepted = vm.configure("my_root_id", config.as_bytes());
    let mut trace = String::from(if accepted { "accepted\n" } else { "rejected\n" });
    if accepted {
        let stream = vm.create_stream();
        let request = vm.request_headers(stream, &[(":method", "GET"), (":path", "/")]);
        let response = vm.response_headers(stream, &[(":status", "200")]);
        vm.end_stream(stream);
        trace.push_str(&format!(
            "request: {request:?} {:?}\n",
            vm.headers(MapType::RequestHeaders)
        ));
        trace.push_str(&format!(
            "response: {response:?} {:?}\n",
            vm.headers(MapType::ResponseHeaders)
        ));
    }
    for line in vm.logs() {
        trace.push_str(&line);
        trace.push('\n');
    }
    expect.assert_eq(&trace);
}
