//! Pending callouts by token, and the context the guest is running as: the layer between the
//! ABI and the API modules.
//!
//! [`crate::http::call`] and [`crate::grpc`] register a continuation here, keyed by the call's
//! token, together with the context that made the call: the context whose callback is running,
//! or the one the guest made effective with [`crate::host::set_effective_context`]. Envoy
//! delivers every callout answer to the caller's *root* context (its `http_call` and
//! `grpc_call` run on `root_context()`), so the dispatcher routes an answer by the context
//! recorded here, not by the id the host passes.
//!
//! This module knows tokens, context ids and raw sizes; it imports only the ABI layer.

use alloc::boxed::Box;
use alloc::vec::Vec;
use core::any::Any;

use crate::abi::{self, GuestCell};

/// Values by context id or token, in two sorted `Vec`s: ids mostly grow, so inserts append,
/// and the id search is one non-generic function instead of `BTreeMap`'s monomorphized nodes.
pub(crate) struct Slots<T> {
    ids: Vec<u32>,
    values: Vec<T>,
}

fn position(ids: &[u32], id: u32) -> Result<usize, usize> {
    ids.binary_search(&id)
}

impl<T> Slots<T> {
    pub(crate) const fn new() -> Slots<T> {
        Slots {
            ids: Vec::new(),
            values: Vec::new(),
        }
    }

    pub(crate) fn insert(&mut self, id: u32, value: T) {
        match position(&self.ids, id) {
            Ok(idx) => {
                if let Some(slot) = self.values.get_mut(idx) {
                    *slot = value;
                }
            }
            Err(idx) => {
                self.ids.insert(idx, id);
                self.values.insert(idx, value);
            }
        }
    }

    pub(crate) fn remove(&mut self, id: u32) -> Option<T> {
        let idx = position(&self.ids, id).ok()?;
        self.ids.remove(idx);
        Some(self.values.remove(idx))
    }

    pub(crate) fn contains(&self, id: u32) -> bool {
        position(&self.ids, id).is_ok()
    }

    /// Keeps the values `keep` accepts; returns how many it removed.
    pub(crate) fn retain(&mut self, mut keep: impl FnMut(&T) -> bool) -> usize {
        let mut idx = 0;
        let mut n_removed = 0;
        while let Some(value) = self.values.get(idx) {
            if keep(value) {
                idx += 1;
            } else {
                self.ids.remove(idx);
                self.values.remove(idx);
                n_removed += 1;
            }
        }
        n_removed
    }
}

/// What `proxy_on_http_call_response` said, before anything is read.
#[derive(Clone, Copy)]
pub(crate) struct HttpAnswer {
    pub(crate) token: u32,
    pub(crate) n_headers: usize,
    pub(crate) body_size: usize,
    pub(crate) n_trailers: usize,
}

/// Which context an answer is for: the host called back `callback_context_id` (Envoy: the
/// caller's root context); the call was made by `owner`.
#[derive(Clone, Copy)]
pub(crate) struct Route {
    pub(crate) callback_context_id: u32,
    pub(crate) owner: u32,
}

impl Route {
    /// Runs `f` with the owner made effective for the host, so a continuation's
    /// `resume_request` or local reply acts on the context that made the call. Only the
    /// continuations in `http.rs` and `grpc.rs` call this, so a filter that makes no callouts
    /// does not import `proxy_set_effective_context`.
    pub(crate) fn as_owner<T>(self, f: impl FnOnce() -> T) -> T {
        let switch = self.owner != self.callback_context_id;
        if switch {
            let _ = abi::set_effective_context(self.owner);
        }
        let result = f();
        if switch {
            let _ = abi::set_effective_context(self.callback_context_id);
        }
        result
    }
}

/// Whether a continuation or handler could run with the context it was given.
#[derive(Clone, Copy, PartialEq, Eq)]
pub(crate) enum Fit {
    /// It ran.
    Ran,
    /// The context is not of the type the continuation was written for: a bug in the filter.
    WrongContext,
}

/// A continuation waiting for an http callout's response; it downcasts the context itself.
pub(crate) type Continuation = Box<dyn FnOnce(&mut dyn Any, HttpAnswer, Route) -> Fit>;

/// What the host told a gRPC handler, before anything is read: the handler (in `grpc.rs`)
/// reads the message or metadata itself, so a filter that never opens a gRPC stream does not
/// link the metadata decoding.
#[derive(Clone, Copy)]
pub(crate) enum GrpcSignal {
    InitialMetadata { n_elements: usize },
    Message { size: usize },
    TrailingMetadata { n_elements: usize },
    Close { status_code: u32 },
}

/// What a gRPC handler made of a signal.
#[derive(Clone, Copy, PartialEq, Eq)]
pub(crate) enum GrpcStep {
    /// More events may follow: keep the handler.
    Continue,
    /// The call or stream is over: free the handler.
    Finished,
    /// The context is not of the type the handler was written for: a bug in the filter.
    WrongContext,
}

/// A gRPC call's or stream's event handler; it downcasts the context itself.
pub(crate) type GrpcHandler = Box<dyn FnMut(&mut dyn Any, GrpcSignal, Route) -> GrpcStep>;

/// A pending callout: the context that made it and what to run with the answer.
pub(crate) struct Pending<T> {
    /// The context that made the call (0 if it was made outside any callback).
    pub(crate) context_id: u32,
    pub(crate) run: T,
}

pub(crate) struct Globals {
    pub(crate) callouts: Slots<Pending<Continuation>>,
    pub(crate) grpc: Slots<Pending<GrpcHandler>>,
    /// The token of the last cancelled gRPC call or stream, so a handler that cancels its own
    /// stream is not put back after it returns.
    pub(crate) cancelled_grpc_token: u32,
    /// The context the guest runs as: the one whose callback is running, or the one it made
    /// effective since; 0 outside callbacks.
    pub(crate) context_id: u32,
    /// Set when the filter's root has [`crate::RootContext::CALLOUTS`] `false`: the
    /// dispatcher would drop the answers, so callouts are refused up front.
    pub(crate) callouts_disabled: bool,
}

impl Globals {
    const fn new() -> Globals {
        Globals {
            callouts: Slots::new(),
            grpc: Slots::new(),
            cancelled_grpc_token: 0,
            context_id: 0,
            callouts_disabled: false,
        }
    }
}

#[cfg(target_arch = "wasm32")]
static GLOBALS: GuestCell<Globals> = GuestCell::new(Globals::new());

#[cfg(not(target_arch = "wasm32"))]
std::thread_local! {
    static GLOBALS: GuestCell<Globals> = const { GuestCell::new(Globals::new()) };
}

/// Runs `f` on the VM's callout state; `None` on a nested call (never in practice).
pub(crate) fn with_globals<T>(f: impl FnOnce(&mut Globals) -> T) -> Option<T> {
    #[cfg(target_arch = "wasm32")]
    {
        GLOBALS.with(f)
    }
    #[cfg(not(target_arch = "wasm32"))]
    {
        GLOBALS.with(|globals| globals.with(f))
    }
}

/// Forgets every callout (the fake host's "new VM").
#[cfg(not(target_arch = "wasm32"))]
pub(crate) fn reset() {
    with_globals(|globals| *globals = Globals::new());
}

/// Marks `context_id` as the context the guest runs as; returns the previous one for
/// [`leave`].
pub(crate) fn enter(context_id: u32) -> u32 {
    with_globals(|globals| core::mem::replace(&mut globals.context_id, context_id)).unwrap_or(0)
}

/// Restores the context [`enter`] returned.
pub(crate) fn leave(previous_context_id: u32) {
    with_globals(|globals| globals.context_id = previous_context_id);
}

/// Refuses callouts from now on (a root with [`crate::RootContext::CALLOUTS`] `false`).
pub(crate) fn disable_callouts() {
    with_globals(|globals| globals.callouts_disabled = true);
}

/// `Err` when callouts are disabled: checked before asking the host for one.
pub(crate) fn check_callouts() -> Result<(), crate::Error> {
    if with_globals(|globals| globals.callouts_disabled) == Some(true) {
        return Err(crate::Error::CalloutsDisabled);
    }
    Ok(())
}

/// Registers an http callout's continuation under its token, for the running context.
pub(crate) fn register_http(token: u32, continuation: Continuation) {
    with_globals(|globals| {
        let pending = Pending {
            context_id: globals.context_id,
            run: continuation,
        };
        globals.callouts.insert(token, pending);
    });
}

/// Registers a gRPC call's or stream's handler under its token, for the running context.
pub(crate) fn register_grpc(token: u32, handler: GrpcHandler) {
    with_globals(|globals| {
        let pending = Pending {
            context_id: globals.context_id,
            run: handler,
        };
        globals.grpc.insert(token, pending);
    });
}

/// Forgets the gRPC handler of `token`, also when called from inside that handler.
pub(crate) fn forget_grpc(token: u32) {
    with_globals(|globals| {
        globals.grpc.remove(token);
        // From inside its own handler the handler is out of the table; this keeps the
        // dispatcher from putting it back.
        globals.cancelled_grpc_token = token;
    });
}
