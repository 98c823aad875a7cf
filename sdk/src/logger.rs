//! The `log` facade's logger: every record goes to `proxy_log` at the host's level.
//!
//! A message without arguments (`log::info!("ready")`) is passed through as it is; only a
//! message with arguments is formatted, into one buffer.

use alloc::string::String;

use crate::abi;

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

impl log::Log for Logger {
    fn enabled(&self, _metadata: &log::Metadata<'_>) -> bool {
        true
    }

    fn log(&self, record: &log::Record<'_>) {
        let level = proxy_level(record.level());
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
pub(crate) fn install() {
    let _ = log::set_logger(&LOGGER);
    refresh_level();
}

/// Follows the host's log level so disabled records cost nothing.
///
/// Natively the level is a process-wide setting shared by parallel tests, so it stays at
/// `Trace` and the fake host filters by its own level instead.
pub(crate) fn refresh_level() {
    #[cfg(target_arch = "wasm32")]
    {
        let filter = match abi::get_log_level() {
            Ok(0) => log::LevelFilter::Trace,
            Ok(1) => log::LevelFilter::Debug,
            Ok(2) => log::LevelFilter::Info,
            Ok(3) => log::LevelFilter::Warn,
            Ok(4) => log::LevelFilter::Error,
            // Critical (5) and above: nothing the `log` crate emits is that severe.
            Ok(_) => log::LevelFilter::Off,
            Err(_) => log::LevelFilter::Info,
        };
        log::set_max_level(filter);
    }
    #[cfg(not(target_arch = "wasm32"))]
    log::set_max_level(log::LevelFilter::Trace);
}
