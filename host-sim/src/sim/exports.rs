//! The exports host-sim calls, found once per instance.

use super::*;

pub(super) type F<P, Rt> = Option<TypedFunc<P, Rt>>;

#[derive(Default)]
pub(super) struct Exports {
    pub(super) on_context_create: F<(u32, u32), ()>,
    pub(super) on_vm_start: F<(u32, u32), u32>,
    pub(super) on_configure: F<(u32, u32), u32>,
    pub(super) on_tick: F<u32, ()>,
    pub(super) on_queue_ready: F<(u32, u32), ()>,
    pub(super) on_request_headers: F<(u32, u32, u32), u32>,
    pub(super) on_request_headers_01: F<(u32, u32), u32>,
    pub(super) on_request_body: F<(u32, u32, u32), u32>,
    pub(super) on_request_trailers: F<(u32, u32), u32>,
    pub(super) on_response_headers: F<(u32, u32, u32), u32>,
    pub(super) on_response_headers_01: F<(u32, u32), u32>,
    pub(super) on_response_body: F<(u32, u32, u32), u32>,
    pub(super) on_response_trailers: F<(u32, u32), u32>,
    pub(super) on_log: F<u32, ()>,
    pub(super) on_done: F<u32, u32>,
    pub(super) on_delete: F<u32, ()>,
    pub(super) on_http_call_response: F<(u32, u32, u32, u32, u32), ()>,
    pub(super) on_grpc_receive_initial_metadata: F<(u32, u32, u32), ()>,
    pub(super) on_grpc_receive: F<(u32, u32, u32), ()>,
    pub(super) on_grpc_receive_trailing_metadata: F<(u32, u32, u32), ()>,
    pub(super) on_grpc_close: F<(u32, u32, u32), ()>,
    pub(super) on_foreign_function: F<(u32, u32, u32), ()>,
    pub(super) tcp: tcp::TcpExports,
}

pub(super) fn get<P: WasmParams, Rt: WasmResults>(
    instance: &Instance,
    store: &mut Store<HostState>,
    name: &str,
) -> F<P, Rt> {
    instance.get_typed_func::<P, Rt>(&mut *store, name).ok()
}

impl Exports {
    /// The exports of `instance` host-sim may call, by the names of `abi`.
    pub(super) fn find(
        instance: &Instance,
        store: &mut Store<HostState>,
        abi: AbiVersion,
    ) -> Exports {
        Exports {
            on_context_create: get(instance, store, "proxy_on_context_create"),
            on_vm_start: get(instance, store, "proxy_on_vm_start"),
            on_configure: get(instance, store, "proxy_on_configure"),
            on_tick: get(instance, store, "proxy_on_tick"),
            on_queue_ready: get(instance, store, "proxy_on_queue_ready"),
            on_request_headers: if abi == AbiVersion::V0_1_0 {
                None
            } else {
                get(instance, store, "proxy_on_request_headers")
            },
            on_request_headers_01: if abi == AbiVersion::V0_1_0 {
                get(instance, store, "proxy_on_request_headers")
            } else {
                None
            },
            on_request_body: get(instance, store, "proxy_on_request_body"),
            on_request_trailers: get(instance, store, "proxy_on_request_trailers"),
            on_response_headers: if abi == AbiVersion::V0_1_0 {
                None
            } else {
                get(instance, store, "proxy_on_response_headers")
            },
            on_response_headers_01: if abi == AbiVersion::V0_1_0 {
                get(instance, store, "proxy_on_response_headers")
            } else {
                None
            },
            on_response_body: get(instance, store, "proxy_on_response_body"),
            on_response_trailers: get(instance, store, "proxy_on_response_trailers"),
            on_log: get(instance, store, "proxy_on_log"),
            on_done: get(instance, store, "proxy_on_done"),
            on_delete: get(instance, store, "proxy_on_delete"),
            on_http_call_response: get(instance, store, "proxy_on_http_call_response"),
            on_grpc_receive_initial_metadata: get(
                instance,
                store,
                "proxy_on_grpc_receive_initial_metadata",
            ),
            on_grpc_receive: get(instance, store, "proxy_on_grpc_receive"),
            on_grpc_receive_trailing_metadata: get(
                instance,
                store,
                "proxy_on_grpc_receive_trailing_metadata",
            ),
            on_grpc_close: get(instance, store, "proxy_on_grpc_close"),
            on_foreign_function: if abi == AbiVersion::V0_1_0 {
                None
            } else {
                get(instance, store, "proxy_on_foreign_function")
            },
            tcp: tcp::TcpExports::get(instance, store),
        }
    }
}
