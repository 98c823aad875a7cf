//! How a host function runs: [`enter`] traps when Envoy would refuse the call, an injected
//! status short-circuits it, and the body's [`Answer`] is recorded once by [`run`]. The
//! `host!` macro wires the three together for each registration.

use wasmtime::Caller;

use super::memory::read;
use super::{HostState, HostTrap, Restriction};
use crate::abi::{self, Status};
use crate::trace::{FirstArg, HostRecord};

pub(super) type C<'a> = Caller<'a, HostState>;
pub(super) type R = wasmtime::Result<u32>;

/// The import module of every Proxy-Wasm host function.
pub(super) const E: &str = "env";

pub(super) const OK: u32 = Status::Ok as u32;
pub(super) const NOT_FOUND: u32 = Status::NotFound as u32;
pub(super) const BAD_ARGUMENT: u32 = Status::BadArgument as u32;
pub(super) const PARSE_FAILURE: u32 = Status::ParseFailure as u32;
pub(super) const IMA: u32 = Status::InvalidMemoryAccess as u32;
pub(super) const EMPTY: u32 = Status::Empty as u32;
pub(super) const CAS_MISMATCH: u32 = Status::CasMismatch as u32;
pub(super) const UNIMPLEMENTED: u32 = Status::Unimplemented as u32;

/// Traps when the import is called while Envoy would refuse it (VM start, inside malloc).
pub(super) fn enter(c: &C<'_>, module: &str, name: &str) -> wasmtime::Result<()> {
    let allowed = match c.data().restricted {
        Restriction::None => true,
        Restriction::Start => abi::allowed_during_start(module, name),
        Restriction::Malloc => matches!(
            name,
            "proxy_log" | "fd_write" | "clock_time_get" | "poll_oneoff"
        ),
    };
    if !allowed {
        return Err(wasmtime::Error::new(HostTrap("restricted_callback".into())));
    }
    match &c.data().allowed {
        Some(list) if !list.iter().any(|allowed| allowed == name) => {
            Err(wasmtime::Error::new(HostTrap(format!(
                "strict mode: the guest called {module}.{name}, which is not in the allowed host functions"
            ))))
        }
        _ => Ok(()),
    }
}

/// The status a test injected for this host function, recorded in the trace as
/// `# injected <name> <STATUS>`; the call then has no effect and writes nothing.
pub(super) fn injected(c: &mut C<'_>, name: &str) -> Option<u32> {
    let state = c.data_mut();
    let status = *state.injected.get(name)?;
    let ctx = state.context();
    state.world.trace.note(
        "injected",
        ctx,
        &[],
        &[name.as_bytes(), status.name().as_bytes()],
    );
    Some(status as u32)
}

/// What a host call answers the guest and what the trace records with it (besides the
/// function's name): built by the call's body, recorded once by [`run`].
///
/// The recorded byte strings are the call's own buffers, moved in rather than copied, so an
/// answer costs no allocation.
pub(super) struct Answer {
    status: u32,
    n_nums: u8,
    nums: [u64; 4],
    /// `bytes[..n_strs]` are the byte-string arguments, then comes the result if `has_result`
    /// (no call records three arguments and a result); this keeps an answer small enough to
    /// return by value.
    n_strs: u8,
    has_result: bool,
    bytes: [Vec<u8>; 3],
    /// Whether the trace records the call at all (`proxy_log` records a log line instead).
    recorded: bool,
}

/// An answer with `status` and nothing else recorded yet.
pub(super) fn answer(status: u32) -> Answer {
    Answer {
        status,
        n_nums: 0,
        nums: [0; 4],
        n_strs: 0,
        has_result: false,
        bytes: Default::default(),
        recorded: true,
    }
}

impl Answer {
    /// The numeric arguments recorded (the trace keeps the first four).
    pub(super) fn nums<T: Copy + Into<u64>>(mut self, nums: &[T]) -> Answer {
        for (slot, value) in self.nums.iter_mut().zip(nums) {
            *slot = (*value).into();
        }
        self.n_nums = nums.len().min(4) as u8;
        self
    }

    /// The byte-string arguments recorded (the trace keeps the first three).
    pub(super) fn strs<const N: usize>(mut self, strs: [Vec<u8>; N]) -> Answer {
        debug_assert!(!self.has_result, "arguments come before the result");
        self.n_strs = N.min(3) as u8;
        for (slot, value) in self.bytes.iter_mut().zip(strs) {
            *slot = value;
        }
        self
    }

    /// The bytes the call returns, recorded after the status (after [`Answer::strs`]); recorded
    /// also when writing them into guest memory failed, so the trace shows what was lost.
    pub(super) fn result(mut self, bytes: Vec<u8>) -> Answer {
        self.bytes[usize::from(self.n_strs)] = bytes;
        self.has_result = true;
        self
    }

    /// Records nothing (the call's effect shows in the trace otherwise).
    pub(super) fn unrecorded(mut self) -> Answer {
        self.recorded = false;
        self
    }
}

/// How a host call's body ends early: with an answer, or by trapping the guest. Both convert
/// with `?`: `read(c, ptr, size)?.ok_or_else(|| answer(IMA).nums(&[ptr, size]))?`.
pub(super) enum Stop {
    Answer(Answer),
    Trap(wasmtime::Error),
}

impl From<Answer> for Stop {
    fn from(answer: Answer) -> Stop {
        Stop::Answer(answer)
    }
}

impl From<wasmtime::Error> for Stop {
    fn from(error: wasmtime::Error) -> Stop {
        Stop::Trap(error)
    }
}

/// Reads two byte strings from guest memory; when either is out of bounds, the
/// INVALID_MEMORY_ACCESS answer records both pointers and sizes.
pub(super) fn read_pair(
    c: &C<'_>,
    (first_ptr, first_size): (u32, u32),
    (second_ptr, second_size): (u32, u32),
) -> Result<(Vec<u8>, Vec<u8>), Stop> {
    match (
        read(c, first_ptr, first_size)?,
        read(c, second_ptr, second_size)?,
    ) {
        (Some(first), Some(second)) => Ok((first, second)),
        _ => Err(answer(IMA)
            .nums(&[first_ptr, first_size, second_ptr, second_size])
            .into()),
    }
}

/// The answer to a call whose only possible failure was writing to guest memory.
pub(super) fn wrote(written: bool) -> u32 {
    if written { OK } else { IMA }
}

/// Runs a host call's body, records its answer once (unless it traps) and returns the status.
pub(super) fn run<'a>(
    c: &mut C<'a>,
    name: &'static str,
    first: FirstArg,
    body: impl FnOnce(&mut C<'a>) -> Result<Answer, Stop>,
) -> R {
    let answer = match body(c) {
        Ok(answer) | Err(Stop::Answer(answer)) => answer,
        Err(Stop::Trap(error)) => return Err(error),
    };
    let state = c.data_mut();
    if answer.recorded && state.world.trace.enabled() {
        let [one, two, three] = &answer.bytes;
        let bytes: [&[u8]; 3] = [one, two, three];
        let n_strs = usize::from(answer.n_strs);
        let ctx = state.context();
        state.world.trace.host(HostRecord {
            name,
            first,
            ctx,
            nums: &answer.nums[..usize::from(answer.n_nums)],
            strs: &bytes[..n_strs],
            status: answer.status,
            result: answer.has_result.then(|| bytes[n_strs]),
        });
    }
    Ok(answer.status)
}

/// Registers a host function: `host!(linker, module, name, first, |c, arg: u32, ...| body)`.
/// The function traps when Envoy would refuse the call right now ([`enter`]); otherwise the
/// body's answer (see [`run`]) is recorded once and its status returned to the guest.
macro_rules! host {
    ($linker:expr, $module:expr, $name:expr, $first:expr,
     |$c:ident $(, $arg:ident : $ty:ty)* $(,)?| $body:expr) => {
        $linker.func_wrap(
            $module,
            $name,
            move |mut caller: $crate::host::call::C<'_>, $($arg: $ty),*| -> $crate::host::call::R {
                $crate::host::call::enter(&caller, $module, $name)?;
                if let Some(status) = $crate::host::call::injected(&mut caller, $name) {
                    return Ok(status);
                }
                $crate::host::call::run(&mut caller, $name, $first, |$c| $body)
            },
        )?
    };
}
pub(super) use host;
