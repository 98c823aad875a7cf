//! TCP connections through a network filter: Envoy's `envoy.filters.network.wasm` followed by
//! `tcp_proxy`, as Envoy 1.40 drives it (Envoy `Context::onNewConnection`/`onData`/`onWrite`/
//! `onEvent`, cpp-host `ContextBase::onNetworkNewConnection` and friends, Envoy's network
//! `FilterManagerImpl`). The upstream is always connected; the test plays both peers.
//!
//! What the filter's answers do, as seen in Envoy 1.40:
//! - Stop from `proxy_on_new_connection`: no data reaches the filter until
//!   `proxy_continue_stream(DOWNSTREAM)`; then everything read so far arrives in one callback.
//! - Stop from `proxy_on_downstream_data`: the bytes stay in Envoy's read buffer; the next read
//!   calls the filter again with all of them (cumulative size); `proxy_continue_stream` hands
//!   them to tcp_proxy without calling the filter again.
//! - Stop from `proxy_on_upstream_data`: the bytes stay in tcp_proxy's buffer and each read
//!   calls the filter again with all of them (cumulative size); nothing reaches the client
//!   (continuing the upstream direction is UNIMPLEMENTED). When the upstream's end arrives
//!   after the client's end went upstream, the client's connection closes (local).
//! - Upstream end of stream: `proxy_on_upstream_data(…, 1)` then
//!   `proxy_on_upstream_connection_close(ctx, 0)` whatever the answer.
//! - `proxy_close_stream(DOWNSTREAM or UPSTREAM)` closes the downstream connection after the
//!   callback, so the callback's bytes go nowhere.
//! - Both directions ended: the downstream connection closes, as a local close (1) when
//!   Envoy's end came last and a remote one (2) when the client's did.
//! - A trap closes the connection under every policy; the VM is failed for all of them.

use wasmtime::{Instance, Store};

use super::{F, FailurePolicy, Outcome, Pause, Sim, get};
use crate::Error;
use crate::connection::{CloseType, ConnectionData, default_properties};
use crate::host::HostState;
use crate::property::PropertyValue;

/// The network filter's exports.
#[derive(Default)]
pub(super) struct TcpExports {
    on_new_connection: F<u32, u32>,
    on_downstream_data: F<(u32, u32, u32), u32>,
    on_upstream_data: F<(u32, u32, u32), u32>,
    on_downstream_connection_close: F<(u32, u32), ()>,
    on_upstream_connection_close: F<(u32, u32), ()>,
}

impl TcpExports {
    pub(super) fn get(instance: &Instance, store: &mut Store<HostState>) -> TcpExports {
        TcpExports {
            on_new_connection: get(instance, store, "proxy_on_new_connection"),
            on_downstream_data: get(instance, store, "proxy_on_downstream_data"),
            on_upstream_data: get(instance, store, "proxy_on_upstream_data"),
            on_downstream_connection_close: get(
                instance,
                store,
                "proxy_on_downstream_connection_close",
            ),
            on_upstream_connection_close: get(
                instance,
                store,
                "proxy_on_upstream_connection_close",
            ),
        }
    }
}

/// Why a connection closed (what [`Connection::close_reason`] answers).
const CLOSED_BY_CLIENT: &str = "client closed";
const CLOSED_BY_UPSTREAM: &str = "upstream closed";
const BOTH_ENDED: &str = "both directions ended";
const VM_FAILED: &str = "wasm vm failed";

impl Sim {
    /// Opens a TCP connection through the network filter of the plugin with this root_id, on
    /// the active worker, as Envoy does when it accepts one: the context is created (parent:
    /// the root context) and `proxy_on_new_connection` runs at once; [`Connection::opened`]
    /// is its outcome. On a failed VM, FAIL_OPEN adds no filter and the other policies close
    /// the connection at once; FAIL_RELOAD may first replace the VM.
    pub fn connection(&mut self, root_id: &str) -> Result<Connection<'_>, Error> {
        self.connection_chain(&[root_id])
    }

    /// Opens a TCP connection through the network filters of these plugins (one VM), in this
    /// order before `tcp_proxy`, as Envoy's network filter manager runs them: each filter's
    /// `proxy_on_new_connection` in order until one stops; downstream data passes the filters
    /// in order and upstream data in reverse order; a filter that stops holds the data from
    /// the filters after it (for downstream data the next read starts again at the first
    /// filter with everything Envoy holds); close events reach every filter in order.
    pub fn connection_chain(&mut self, root_ids: &[&str]) -> Result<Connection<'_>, Error> {
        self.maybe_reload();
        let mut chain = Vec::new();
        let lead = self.next_context_id;
        for root_id in root_ids {
            let state = self.store.data();
            let plugin = state
                .plugins
                .iter()
                .position(|plugin| plugin.root_id == *root_id)
                .ok_or_else(|| Error::UnknownRootId(root_id.to_string()))?;
            chain.push((plugin, state.plugins[plugin].root_context_id));
        }
        if chain.is_empty() {
            return Err(Error::Scenario("a connection needs a plugin".to_string()));
        }
        let ids: Vec<u32> = (lead..lead + chain.len() as u32).collect();
        self.next_context_id += chain.len() as u32;
        for (&id, &(plugin, root)) in ids.iter().zip(&chain) {
            let data = ConnectionData {
                generation: self.generation,
                plugin,
                root,
                lead,
                chain: if id == lead { ids.clone() } else { Vec::new() },
                properties: default_properties(u64::from(lead)),
                ..ConnectionData::default()
            };
            self.store.data_mut().connections.insert(id, data);
        }
        let opened = self.open_connection(lead);
        let worker = self.active;
        Ok(Connection {
            sim: self,
            id: lead,
            worker,
            opened,
        })
    }

    /// A handle on a connection opened earlier with [`Sim::connection`] (by its id); closed
    /// connections stay inspectable.
    pub fn connection_by_id(&mut self, id: u32) -> Option<Connection<'_>> {
        let worker = (0..self.parked.len())
            .find(|worker| self.state_of(*worker).connections.contains_key(&id))?;
        Some(Connection {
            sim: self,
            id,
            worker,
            opened: Outcome::Continue,
        })
    }

    fn connection_mut(&mut self, ctx: u32) -> &mut ConnectionData {
        self.store
            .data_mut()
            .connections
            .get_mut(&ctx)
            .expect("connection exists while its handle lives")
    }

    /// The lead context of `ctx`'s connection and `ctx`'s index in its chain.
    fn lead_of(&mut self, ctx: u32) -> (u32, usize) {
        let lead = self.connection_mut(ctx).lead;
        let idx = self
            .connection_mut(lead)
            .chain
            .iter()
            .position(|id| *id == ctx)
            .unwrap_or(0);
        (lead, idx)
    }

    fn chain_of(&mut self, lead: u32) -> Vec<u32> {
        self.connection_mut(lead).chain.clone()
    }

    /// Whether the connection's VM has failed (this VM after a trap, or one a reload replaced).
    fn connection_vm_failed(&self, ctx: u32) -> bool {
        let state = self.store.data();
        state.failed
            || state
                .connections
                .get(&ctx)
                .is_some_and(|connection| connection.generation != self.generation)
    }

    fn open_connection(&mut self, lead: u32) -> Outcome {
        if self.connection_vm_failed(lead) {
            if self.failure_policy == FailurePolicy::FailOpen {
                // Envoy's `createFilter` returns no filter: the connection runs without it.
                self.connection_mut(lead).without_filter = true;
                self.store.data_mut().world.trace.note(
                    "connection without the filter",
                    lead,
                    &[],
                    &[],
                );
                return Outcome::Continue;
            }
            return self.fail_connection(lead);
        }
        // Envoy creates every filter's context when it builds the chain.
        for ctx in self.chain_of(lead) {
            let root = self.connection_mut(ctx).root;
            if let Some(func) = self.exports.on_context_create.clone() {
                let result = self
                    .call("proxy_on_context_create", ctx, func, (ctx, root))
                    .map(|()| 0);
                if self.after_connection_call(lead, result).is_none() {
                    return self.connection_outcome(lead);
                }
            }
        }
        self.read_from(lead, 0)
    }

    /// After a connection callback: a trap fails the connection; otherwise Envoy's deferred
    /// actions run (before the filter manager sees the answer, as cpp-host's
    /// `DeferAfterCallActions` does). `None` when the connection is gone.
    fn after_connection_call(&mut self, lead: u32, result: Result<u32, String>) -> Option<u32> {
        match result {
            Err(_) => {
                let _ = self.fail_connection(lead);
                None
            }
            Ok(status) => {
                self.after_top_level();
                if self.connection_mut(lead).closed.is_some() {
                    None
                } else {
                    Some(status)
                }
            }
        }
    }

    /// What a call that ended the connection answers: the trap, or the close.
    fn connection_outcome(&mut self, lead: u32) -> Outcome {
        if self.connection_mut(lead).closed == Some((CloseType::Local, VM_FAILED)) {
            self.trapped()
        } else {
            Outcome::Reset
        }
    }

    /// Envoy's `failStream` for a network filter: the downstream connection is closed; the
    /// failed VM hears nothing of it.
    fn fail_connection(&mut self, lead: u32) -> Outcome {
        if self.connection_mut(lead).closed.is_none() {
            self.close_connection(lead, CloseType::Local, VM_FAILED);
        }
        Outcome::Reset
    }

    /// The downstream connection closes: each filter in order hears
    /// `proxy_on_downstream_connection_close(ctx, peer)`, then `proxy_on_done` and
    /// `proxy_on_delete` (seen in Envoy 1.40 for one filter).
    fn close_connection(&mut self, lead: u32, peer: CloseType, reason: &'static str) -> Outcome {
        let connection = self.connection_mut(lead);
        if connection.closed.is_some() {
            return Outcome::NotDelivered;
        }
        connection.closed = Some((peer, reason));
        let without_filter = connection.without_filter;
        let chain = connection.chain.clone();
        for ctx in &chain {
            let filter = self.connection_mut(*ctx);
            filter.downstream_available = false;
            filter.upstream_available = false;
        }
        self.store.data_mut().world.trace.note(
            "connection closed",
            lead,
            &[peer as u64],
            &[reason.as_bytes()],
        );
        if without_filter || self.connection_vm_failed(lead) {
            return Outcome::Continue;
        }
        for ctx in chain {
            let close = self.exports.tcp.on_downstream_connection_close.clone();
            let done = self.exports.on_done.clone();
            let delete = self.exports.on_delete.clone();
            let result = (|| -> Result<(), String> {
                if let Some(func) = close {
                    self.call(
                        "proxy_on_downstream_connection_close",
                        ctx,
                        func,
                        (ctx, peer as u32),
                    )?;
                }
                if let Some(func) = done {
                    self.call("proxy_on_done", ctx, func, ctx)?;
                }
                if let Some(func) = delete {
                    self.call("proxy_on_delete", ctx, func, ctx)?;
                }
                Ok(())
            })();
            match result {
                Ok(()) => self.after_top_level(),
                Err(_) => return self.trapped(),
            }
        }
        Outcome::Continue
    }

    fn connection_downstream_data(&mut self, lead: u32, bytes: &[u8], end: bool) -> Outcome {
        let connection = self.connection_mut(lead);
        if connection.closed.is_some() || connection.read_end {
            return Outcome::NotDelivered;
        }
        connection.read_buffer.extend_from_slice(bytes);
        connection.read_end = end;
        if connection.without_filter {
            self.pass_upstream(lead);
            return Outcome::Continue;
        }
        if self.connection_vm_failed(lead) {
            return self.fail_connection(lead);
        }
        if self
            .chain_of(lead)
            .into_iter()
            .any(|ctx| self.connection_mut(ctx).new_connection_paused)
        {
            return Outcome::Paused(Pause::Held);
        }
        self.read_from(lead, 0)
    }

    /// Envoy's `onContinueReading` from the filter at `start`: each filter not yet initialized
    /// gets `proxy_on_new_connection`, then the whole read buffer (what it held before and
    /// what just arrived) when there is any or the client's end; a Stop holds it there. Past
    /// the last filter tcp_proxy connects and takes the buffer upstream.
    fn read_from(&mut self, lead: u32, start: usize) -> Outcome {
        let chain = self.chain_of(lead);
        for &ctx in &chain[start.min(chain.len())..] {
            if !self.connection_mut(ctx).initialized {
                self.connection_mut(ctx).initialized = true;
                let result = match self.exports.tcp.on_new_connection.clone() {
                    Some(func) => self.call("proxy_on_new_connection", ctx, func, ctx),
                    None => Ok(0),
                };
                let Some(status) = self.after_connection_call(lead, result) else {
                    return self.connection_outcome(lead);
                };
                if status != 0 {
                    self.connection_mut(ctx).new_connection_paused = true;
                    return Outcome::Paused(Pause::StopIteration);
                }
            }
            if let Some(outcome) = self.deliver_downstream(lead, ctx) {
                return outcome;
            }
        }
        self.connected_upstream(lead);
        self.pass_upstream(lead);
        self.close_if_both_ended(lead, CloseType::Remote);
        Outcome::Continue
    }

    /// tcp_proxy's `onNewConnection` connects upstream (once): from now on every filter's
    /// `upstream.address` answers.
    fn connected_upstream(&mut self, lead: u32) {
        for ctx in self.chain_of(lead) {
            self.connection_mut(ctx).upstream_connected();
        }
    }

    /// `Context::onData` for one filter: it sees the connection's whole read buffer;
    /// `Some(outcome)` when it stopped iteration or the connection ended.
    fn deliver_downstream(&mut self, lead: u32, ctx: u32) -> Option<Outcome> {
        let connection = self.connection_mut(lead);
        let (size, end) = (connection.read_buffer.len() as u32, connection.read_end);
        if size == 0 && !end {
            return None;
        }
        let buffer = std::mem::take(&mut connection.read_buffer);
        let filter = self.connection_mut(ctx);
        filter.read_buffer = buffer;
        filter.downstream_available = true;
        let result = match self.exports.tcp.on_downstream_data.clone() {
            Some(func) => self.call(
                "proxy_on_downstream_data",
                ctx,
                func,
                (ctx, size, u32::from(end)),
            ),
            None => Ok(0),
        };
        let buffer = std::mem::take(&mut self.connection_mut(ctx).read_buffer);
        self.connection_mut(lead).read_buffer = buffer;
        let Some(status) = self.after_connection_call(lead, result) else {
            return Some(self.connection_outcome(lead));
        };
        if status != 0 {
            return Some(Outcome::Paused(Pause::StopIteration));
        }
        self.connection_mut(ctx).downstream_available = false;
        None
    }

    /// tcp_proxy takes the read buffer (and the client's end of stream) upstream.
    fn pass_upstream(&mut self, lead: u32) {
        let connection = self.connection_mut(lead);
        let bytes = std::mem::take(&mut connection.read_buffer);
        connection.upstream_bytes.extend(bytes);
        if connection.read_end {
            connection.upstream_end_sent = true;
        }
    }

    fn pass_downstream(&mut self, lead: u32) {
        let connection = self.connection_mut(lead);
        let bytes = std::mem::take(&mut connection.write_buffer);
        connection.downstream_bytes.extend(bytes);
        if connection.write_end {
            connection.downstream_end_sent = true;
        }
    }

    /// Both directions half-closed: Envoy closes the downstream connection, as a remote close
    /// when the client's end came last and a local one when Envoy's own end did.
    fn close_if_both_ended(&mut self, lead: u32, last: CloseType) {
        let connection = self.connection_mut(lead);
        if connection.upstream_end_sent
            && connection.downstream_end_sent
            && connection.closed.is_none()
        {
            self.close_connection(lead, last, BOTH_ENDED);
        }
    }

    /// Upstream bytes: tcp_proxy writes them to the downstream connection, whose write filters
    /// run in reverse chain order (`Context::onWrite` each).
    fn connection_upstream_data(&mut self, lead: u32, bytes: &[u8], end: bool) -> Outcome {
        let connection = self.connection_mut(lead);
        if connection.closed.is_some() || connection.write_end {
            return Outcome::NotDelivered;
        }
        connection.write_buffer.extend_from_slice(bytes);
        connection.write_end = end;
        if connection.without_filter {
            self.pass_downstream(lead);
            self.close_if_both_ended(lead, CloseType::Local);
            return Outcome::Continue;
        }
        if self.connection_vm_failed(lead) {
            return self.fail_connection(lead);
        }
        // After a Stop the bytes stay in tcp_proxy's buffer: each read calls the filters again
        // with all of them (cumulative size), as the differential scenario
        // `tcp-stop-upstream-data-stalls` shows in Envoy 1.40.
        if self.connection_mut(lead).write_buffer.is_empty() && !end {
            return Outcome::Continue;
        }
        let mut outcome = Outcome::Continue;
        for ctx in self.chain_of(lead).into_iter().rev() {
            let size = self.connection_mut(lead).write_buffer.len() as u32;
            let buffer = std::mem::take(&mut self.connection_mut(lead).write_buffer);
            let filter = self.connection_mut(ctx);
            filter.write_buffer = buffer;
            filter.upstream_available = true;
            let result = match self.exports.tcp.on_upstream_data.clone() {
                Some(func) => self.call(
                    "proxy_on_upstream_data",
                    ctx,
                    func,
                    (ctx, size, u32::from(end)),
                ),
                None => Ok(0),
            };
            let buffer = std::mem::take(&mut self.connection_mut(ctx).write_buffer);
            self.connection_mut(lead).write_buffer = buffer;
            let Some(status) = self.after_connection_call(lead, result) else {
                return self.connection_outcome(lead);
            };
            if status == 0 {
                self.connection_mut(ctx).upstream_available = false;
            } else {
                self.connection_mut(ctx).upstream_paused = true;
                outcome = Outcome::Paused(Pause::StopIteration);
            }
            if end {
                // Envoy's `Context::onWrite` reports the upstream's end as a close of unknown
                // type, whatever the filter answered.
                let result = match self.exports.tcp.on_upstream_connection_close.clone() {
                    Some(func) => self
                        .call(
                            "proxy_on_upstream_connection_close",
                            ctx,
                            func,
                            (ctx, CloseType::Unknown as u32),
                        )
                        .map(|()| 0),
                    None => Ok(0),
                };
                if self.after_connection_call(lead, result).is_none() {
                    return self.connection_outcome(lead);
                }
            }
            if status != 0 {
                break;
            }
        }
        if outcome == Outcome::Continue {
            self.pass_downstream(lead);
        }
        if end {
            // The client's end already reached upstream, so the upstream socket is closed now
            // and tcp_proxy closes the client's connection, even when a filter holds the
            // upstream's last bytes.
            let connection = self.connection_mut(lead);
            if connection.upstream_end_sent && !connection.downstream_end_sent {
                self.close_connection(lead, CloseType::Local, CLOSED_BY_UPSTREAM);
                return self.connection_outcome(lead);
            }
        }
        self.close_if_both_ended(lead, CloseType::Local);
        outcome
    }

    /// `proxy_continue_stream(DOWNSTREAM)`, after the callback (Envoy's `continueReading`).
    pub(super) fn continue_connection(&mut self, ctx: u32) {
        let Some(connection) = self.store.data_mut().connections.get_mut(&ctx) else {
            return;
        };
        let after_new_connection = std::mem::take(&mut connection.new_connection_paused);
        let (lead, idx) = self.lead_of(ctx);
        if self.connection_mut(lead).closed.is_some() {
            return;
        }
        self.store
            .data_mut()
            .world
            .trace
            .note("downstream continued", ctx, &[], &[]);
        self.connection_mut(ctx).downstream_available = false;
        if after_new_connection {
            // What was read meanwhile reaches this filter in one callback, then the next ones
            // (that `upstream.address` answers there is inferred, not measured).
            self.connected_upstream(lead);
            let _ = self.read_from(lead, idx);
        } else {
            let _ = self.read_from(lead, idx + 1);
        }
    }

    /// `proxy_close_stream(DOWNSTREAM or UPSTREAM)`, after the callback: Envoy closes the
    /// downstream connection (FlushWrite) either way.
    pub(super) fn close_connection_by_filter(&mut self, ctx: u32, stream_type: u32) {
        if self.store.data().connections.contains_key(&ctx) {
            let (lead, _) = self.lead_of(ctx);
            let reason = if stream_type == 2 {
                "wasm_downstream_close"
            } else {
                "wasm_upstream_close"
            };
            self.close_connection(lead, CloseType::Local, reason);
        }
    }
}

/// A TCP connection through one or more plugins' network filters. Outcomes: `Continue` (the bytes
/// passed), `Paused(StopIteration)` (the filter holds them), `Paused(Held)` (Envoy did not
/// call the filter and holds them), `Reset` (the connection closed), `Trapped`, `NotDelivered`
/// (closed, or that direction already ended).
pub struct Connection<'a> {
    sim: &'a mut Sim,
    id: u32,
    worker: usize,
    opened: Outcome,
}

impl std::fmt::Debug for Connection<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Connection")
            .field("id", &self.id)
            .finish_non_exhaustive()
    }
}

impl Connection<'_> {
    /// The connection's context id.
    pub fn id(&self) -> u32 {
        self.id
    }

    /// The worker whose VM runs the connection.
    pub fn worker(&self) -> usize {
        self.worker
    }

    /// The simulation, e.g. to advance the clock while the filter holds data.
    pub fn sim(&mut self) -> &mut Sim {
        self.sim
    }

    /// What `proxy_on_new_connection` answered when the connection opened (`Continue` for a
    /// handle from [`Sim::connection_by_id`]).
    pub fn opened(&self) -> &Outcome {
        &self.opened
    }

    fn data(&self) -> &ConnectionData {
        self.sim
            .state_of(self.worker)
            .connections
            .get(&self.id)
            .expect("connection exists while its handle lives")
    }

    fn sim_here(&mut self) -> &mut Sim {
        self.sim.switch_to(self.worker);
        self.sim
    }

    /// Bytes from the client; `end_of_stream` when the client half-closes.
    pub fn send_downstream_data(&mut self, bytes: &[u8], end_of_stream: bool) -> Outcome {
        let id = self.id;
        self.sim_here()
            .connection_downstream_data(id, bytes, end_of_stream)
    }

    /// Bytes from upstream; `end_of_stream` when the upstream half-closes.
    pub fn send_upstream_data(&mut self, bytes: &[u8], end_of_stream: bool) -> Outcome {
        let id = self.id;
        self.sim_here()
            .connection_upstream_data(id, bytes, end_of_stream)
    }

    /// The client closes the connection: a remote close.
    pub fn close_downstream(&mut self) -> Outcome {
        let id = self.id;
        self.sim_here()
            .close_connection(id, CloseType::Remote, CLOSED_BY_CLIENT)
    }

    /// The upstream connection closes: tcp_proxy closes the downstream one (a local close).
    pub fn close_upstream(&mut self) -> Outcome {
        let id = self.id;
        self.sim_here()
            .close_connection(id, CloseType::Local, CLOSED_BY_UPSTREAM)
    }

    /// What passed the filter towards upstream.
    pub fn upstream_bytes(&self) -> &[u8] {
        &self.data().upstream_bytes
    }

    /// What passed the filter towards the client.
    pub fn downstream_bytes(&self) -> &[u8] {
        &self.data().downstream_bytes
    }

    /// Whether the client's end of stream passed upstream.
    pub fn upstream_ended(&self) -> bool {
        self.data().upstream_end_sent
    }

    /// Whether the upstream's end of stream passed to the client.
    pub fn downstream_ended(&self) -> bool {
        self.data().downstream_end_sent
    }

    /// Whether the downstream connection closed.
    pub fn was_closed(&self) -> bool {
        self.data().closed.is_some()
    }

    /// Why it closed: `client closed`, `upstream closed`, `both directions ended`,
    /// `wasm_downstream_close`, `wasm_upstream_close` (the filter's `proxy_close_stream`) or
    /// `wasm vm failed`.
    pub fn close_reason(&self) -> Option<&'static str> {
        self.data().closed.map(|(_, reason)| reason)
    }

    /// Sets a property only this connection's filters see (defaults: `source.address`,
    /// `destination.address`, `connection.id`…, as Envoy answers them).
    pub fn set_property(&mut self, path: &[&str], value: impl Into<PropertyValue>) {
        let key: Vec<Vec<u8>> = path
            .iter()
            .map(|segment| segment.as_bytes().to_vec())
            .collect();
        let value = value.into();
        let id = self.id;
        let sim = self.sim_here();
        for ctx in sim.chain_of(id) {
            sim.connection_mut(ctx)
                .properties
                .insert(key.clone(), value.clone());
        }
    }

    /// Every filter's context id, in the filter chain's order (the first is [`Connection::id`]).
    pub fn context_ids(&self) -> Vec<u32> {
        self.data().chain.clone()
    }
}
