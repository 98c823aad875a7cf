//! The `log` facade's logger: every record the host's current level accepts goes to
//! `proxy_log`; see [`host_accepts`] for how the level is followed without a callback.
//!
//! A message without arguments (`log::info!("ready")`) is passed through as it is; only a
//! message with arguments is formatted, into one buffer.

use alloc::string::String;
use core::sync::atomic::{AtomicU32, Ordering};

use crate::abi;

pub(crate) const INFO: u32 = 2;
pub(crate) const ERROR: u32 = 4;

struct Logger;

static LOGGER: Logger = Logger;

fn proxy_level(level: log::Level) -> u32 {
    match level {
        log::Level::Trace => 0,
        log::Level::Debug => 1,
        log::Level::Info => 2,
        log::Level::Warn => 3,
        log::Level::Error => ERROR,
    }
}

/// The host's log level as last read: only an estimate, to skip formatting records the host
/// would drop. On wasm32 there is one thread; natively tests share it, which is fine because
/// no decision to drop a record is taken on it alone (see [`host_accepts`]).
static CACHED_LEVEL: AtomicU32 = AtomicU32::new(0);

/// Whether the host logs records at `level` now.
///
/// Proxy-Wasm 0.2.1 has no "log level changed" callback (neither the spec nor
/// proxy-wasm-cpp-host, which Envoy uses): Envoy's `proxy_get_log_level` answers the current
/// level of its `wasm` logger, which an operator can change at any moment
/// (`POST /logging?wasm=debug`). So a record at or above the cached level is sent (if the
/// level went up meanwhile, the host drops it: correct, only wasted work), and a record below
/// it is dropped only after asking the host again (one host call, no formatting). Records are
/// therefore never lost to a stale level, and a filter that logs nothing below the host's
/// level pays nothing per request.
fn host_accepts(level: u32) -> bool {
    if level >= CACHED_LEVEL.load(Ordering::Relaxed) {
        return true;
    }
    // Decide on the level just read, not on the cache, which another thread may have
    // written meanwhile (natively).
    level >= refresh_level()
}

impl log::Log for Logger {
    /// Exact, at the price of one host call: `log_enabled!` guards work worth skipping.
    fn enabled(&self, metadata: &log::Metadata<'_>) -> bool {
        proxy_level(metadata.level()) >= refresh_level()
    }

    fn log(&self, record: &log::Record<'_>) {
        let level = proxy_level(record.level());
        if !host_accepts(level) {
            return;
        }
        let _ = match record.args().as_str() {
            Some(message) => abi::log(level, message.as_bytes()),
            None => {
                let mut message = String::new();
                let _ = core::fmt::write(&mut message, *record.args());
                abi::log(level, message.as_bytes())
            }
        };
    }

    fn flush(&self) {}
}

/// Installs the logger (once per VM) and reads the host's log level.
///
/// `log`'s own maximum level stays at `Trace`: it is process-wide and cannot be refreshed
/// without a host call, so the filtering happens in [`host_accepts`].
pub(crate) fn install() {
    let _ = log::set_logger(&LOGGER);
    log::set_max_level(log::LevelFilter::Trace);
    let _ = refresh_level();
}

/// Reads the host's log level into the cache and returns it; on error assume everything is
/// logged (the host filters again anyway).
pub(crate) fn refresh_level() -> u32 {
    let level = abi::get_log_level().unwrap_or(0);
    CACHED_LEVEL.store(level, Ordering::Relaxed);
    level
}
