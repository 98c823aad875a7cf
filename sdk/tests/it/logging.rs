//! The logger follows the host's log level as it changes at run time, without a callback.

use expect_test::expect;
use filterkit::testing::{NoFilter, Vm};

use crate::check;

#[test]
fn records_follow_runtime_log_level_changes() {
    let vm = Vm::<NoFilter>::new();
    log::debug!("hidden at info");
    // An operator raises Envoy's `wasm` logger to debug: no callback tells the guest.
    vm.set_log_level(1);
    log::debug!("shown at debug");
    assert!(log::log_enabled!(log::Level::Debug));
    vm.set_log_level(3);
    log::info!("dropped at warn");
    assert!(!log::log_enabled!(log::Level::Info));
    log::warn!("kept at warn {}", 1);
    vm.set_log_level(5);
    log::error!("dropped at critical");
    check(
        &vm.logs(),
        expect![[r#"
            debug: shown at debug
            warn: kept at warn 1
        "#]],
    );
}

#[test]
fn a_failing_log_level_call_logs_everything_the_host_takes() {
    let vm = Vm::<NoFilter>::new();
    vm.set_log_level(0);
    vm.fail_host_calls(Some(10));
    log::trace!("still logged");
    check(
        &vm.logs(),
        expect![[r#"
            trace: still logged
        "#]],
    );
}
