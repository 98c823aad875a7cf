//! What add-header does to streams: several root_ids in one VM, and host errors.

use filter_add_header::AddHeaderRoot;
use filterkit::http::MapType;
use filterkit::testing::Vm;

#[test]
fn keeps_one_config_per_root_id() {
    let vm = Vm::<AddHeaderRoot>::new();
    assert!(vm.configure("first", br#"{"name":"a","value":"1"}"#));
    assert!(vm.configure("second", br#"{"name":"b","value":"2"}"#));
    assert!(!vm.configure("third", br#"{"name":"c"}"#));

    for (root_id, expected) in [("first", ("a", "1")), ("second", ("b", "2"))] {
        let stream = vm.create_stream_in(vm.root(root_id));
        vm.response_headers(stream, &[]);
        let headers = vm.headers(MapType::ResponseHeaders);
        let expected = [
            "resp-header-demo: added by our filter".to_string(),
            format!("{}: {}", expected.0, expected.1),
        ];
        assert_eq!(headers, expected, "root_id={root_id}");
    }
    assert_eq!(
        vm.logs(),
        ["error: invalid plugin configuration for root_id=third: missing field `value`"]
    );
}

#[test]
fn a_rejected_reconfiguration_keeps_the_previous_config() {
    let vm = Vm::<AddHeaderRoot>::new();
    assert!(vm.configure("r", br#"{"name":"a","value":"1"}"#));
    assert!(!vm.configure("r", br#"{"name":"a b","value":"1"}"#));
    let stream = vm.create_stream();
    vm.response_headers(stream, &[]);
    assert_eq!(vm.headers(MapType::ResponseHeaders).len(), 2);
}

#[test]
fn logs_host_errors_and_continues() {
    let vm = Vm::<AddHeaderRoot>::new();
    assert!(vm.configure("r", br#"{"name":"a","value":"1"}"#));
    let stream = vm.create_stream();
    vm.fail_host_calls(Some(2));
    let action = vm.response_headers(stream, &[]);
    vm.fail_host_calls(None);
    assert_eq!(action, filterkit::Action::Continue);
    assert_eq!(
        vm.logs(),
        [
            "warn: cannot add the demo header: proxy_add_header_map_value returned status 2",
            "warn: cannot add the configured header: proxy_add_header_map_value returned status 2",
        ]
    );
}

#[test]
fn streams_of_an_unconfigured_root_are_left_alone() {
    let vm = Vm::<AddHeaderRoot>::new();
    let root = vm.root("never_configured");
    let stream = vm.create_stream_in(root);
    vm.response_headers(stream, &[(":status", "200")]);
    assert_eq!(vm.headers(MapType::ResponseHeaders).len(), 1);
}
