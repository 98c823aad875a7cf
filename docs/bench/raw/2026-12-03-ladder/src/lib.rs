//! add-header with no SDK around it: the ABI by hand, one global configuration, and only the
//! requirements switched on by features. Shows what each requirement costs in Envoy.
#![no_std]
// A bench module, not a filter: what a feature turns off leaves constants and arguments unused.
#![allow(unsafe_code, static_mut_refs, dead_code, unused_variables)]

extern crate alloc;

// The allocator, the panic handler and `memcmp` come from filterkit (its wasm32 ABI module).
use filterkit as _;

#[link(wasm_import_module = "env")]
unsafe extern "C" {
    fn proxy_log(level: u32, data: *const u8, size: usize) -> u32;
    fn proxy_add_header_map_value(
        map: u32,
        key: *const u8,
        key_size: usize,
        value: *const u8,
        value_size: usize,
    ) -> u32;
    #[cfg(feature = "config")]
    fn proxy_get_buffer_bytes(
        buffer: u32,
        start: usize,
        max: usize,
        data: *mut *mut u8,
        size: *mut usize,
    ) -> u32;
}

const RESPONSE_HEADERS: u32 = 2;
const PLUGIN_CONFIGURATION: u32 = 7;
const WARN: u32 = 3;
const ERROR: u32 = 4;

#[unsafe(no_mangle)]
pub extern "C" fn proxy_abi_version_0_2_1() {}

#[unsafe(no_mangle)]
pub extern "C" fn proxy_on_memory_allocate(size: usize) -> *mut u8 {
    use alloc::alloc::{Layout, alloc};
    match Layout::from_size_align(size.max(1), 8) {
        Ok(layout) => unsafe { alloc(layout) },
        Err(_) => core::ptr::null_mut(),
    }
}

#[unsafe(no_mangle)]
pub extern "C" fn proxy_on_context_create(_context: u32, _parent: u32) {}

#[unsafe(no_mangle)]
pub extern "C" fn proxy_on_vm_start(_context: u32, _size: usize) -> u32 {
    #[cfg(feature = "log")]
    {
        let _ = log::set_logger(&LOGGER);
        log::set_max_level(log::LevelFilter::Trace);
    }
    1
}

fn report(level: u32, message: &str) {
    unsafe { proxy_log(level, message.as_ptr(), message.len()) };
}

fn add(name: &str, value: &str) -> u32 {
    unsafe {
        proxy_add_header_map_value(
            RESPONSE_HEADERS,
            name.as_ptr(),
            name.len(),
            value.as_ptr(),
            value.len(),
        )
    }
}

/// Text interpolated into a log record without `Formatter::pad` (which `str`'s own `Display`
/// calls, for widths and precisions no record here uses).
#[cfg(feature = "log")]
struct Text<'a>(&'a str);
#[cfg(feature = "log")]
impl core::fmt::Display for Text<'_> {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.write_str(self.0)
    }
}

#[cfg(feature = "log")]
struct Logger;
#[cfg(feature = "log")]
static LOGGER: Logger = Logger;
#[cfg(feature = "log")]
impl log::Log for Logger {
    fn enabled(&self, _: &log::Metadata<'_>) -> bool {
        true
    }
    fn log(&self, record: &log::Record<'_>) {
        let level = match record.level() {
            log::Level::Error => ERROR,
            log::Level::Warn => WARN,
            _ => 2,
        };
        match record.args().as_str() {
            Some(message) => report(level, message),
            None => {
                let mut message = alloc::string::String::new();
                let _ = core::fmt::write(&mut message, *record.args());
                report(level, &message);
            }
        }
    }
    fn flush(&self) {}
}

#[cfg(feature = "config")]
mod config {
    use alloc::string::String;
    use serde::Deserialize;

    #[derive(Deserialize)]
    #[serde(deny_unknown_fields)]
    pub struct Header {
        pub name: String,
        pub value: String,
    }

    pub static mut HEADER: Option<Header> = None;

    fn is_token_char(byte: u8) -> bool {
        matches!(byte,
            b'0'..=b'9' | b'a'..=b'z' | b'A'..=b'Z'
            | b'!' | b'#' | b'$' | b'%' | b'&' | b'\'' | b'*' | b'+' | b'-' | b'.' | b'^' | b'_' | b'`' | b'|' | b'~')
    }

    /// The configuration, or the message that rejects it.
    #[cfg_attr(feature = "split", inline(never))]
    pub fn parse(bytes: &[u8]) -> Result<Option<Header>, String> {
        if bytes.iter().all(|b| b.is_ascii_whitespace()) {
            return Ok(None);
        }
        let mut header: Header = filterkit::json::from_slice(bytes).map_err(|error| {
            filterkit::join(&["invalid plugin configuration: ", &error.message()])
        })?;
        header.name = header.name.to_ascii_lowercase();
        check(header).map(Some)
    }

    /// The configured header if it is one HTTP accepts, or the message that rejects it.
    #[cfg_attr(feature = "split", inline(never))]
    fn check(header: Header) -> Result<Header, String> {
        if header.name.is_empty() || !header.name.bytes().all(is_token_char) {
            return Err(filterkit::join(&[
                "header name ",
                &filterkit::quote(&header.name),
                " is not a valid HTTP token",
            ]));
        }
        if header.value.chars().any(|c| c.is_control() && c != '\t') {
            return Err(filterkit::join(&[
                "header value ",
                &filterkit::quote(&header.value),
                " contains a control character",
            ]));
        }
        Ok(header)
    }
}

#[unsafe(no_mangle)]
pub extern "C" fn proxy_on_configure(_context: u32, size: usize) -> u32 {
    #[cfg(feature = "config")]
    {
        let mut data = core::ptr::null_mut();
        let mut got = 0;
        let bytes: &[u8] = if size == 0
            || unsafe { proxy_get_buffer_bytes(PLUGIN_CONFIGURATION, 0, size, &mut data, &mut got) }
                != 0
            || data.is_null()
        {
            &[]
        } else {
            unsafe { core::slice::from_raw_parts(data, got) }
        };
        let parsed = config::parse(bytes);
        if !data.is_null() {
            unsafe {
                alloc::alloc::dealloc(
                    data,
                    alloc::alloc::Layout::from_size_align_unchecked(got.max(1), 8),
                )
            };
        }
        match parsed {
            Ok(header) => unsafe { config::HEADER = header },
            Err(message) => {
                #[cfg(feature = "log")]
                log::error!("{}", Text(&message));
                #[cfg(not(feature = "log"))]
                report(ERROR, &message);
                return 0;
            }
        }
    }
    1
}

#[unsafe(no_mangle)]
pub extern "C" fn proxy_on_request_headers(_context: u32, _n: usize, _eos: u32) -> u32 {
    0
}

#[unsafe(no_mangle)]
pub extern "C" fn proxy_on_response_headers(_context: u32, _n: usize, _eos: u32) -> u32 {
    let status = add("resp-header-demo", "added by our filter");
    if status != 0 {
        warn("cannot add the demo header: ", status);
    }
    #[cfg(feature = "config")]
    if let Some(header) = unsafe { config::HEADER.as_ref() } {
        let status = add(&header.name, &header.value);
        if status != 0 {
            warn("cannot add the configured header: ", status);
        }
    }
    #[cfg(not(feature = "config"))]
    {
        let status = add("hello", "hello details");
        if status != 0 {
            warn("cannot add the configured header: ", status);
        }
    }
    0
}

/// The ABI's name for a status code.
#[cfg(feature = "log")]
fn status_name(status: u32) -> &'static str {
    match status {
        1 => "NotFound",
        2 => "BadArgument",
        3 => "SerializationFailure",
        8 => "InternalFailure",
        _ => "unknown",
    }
}

/// A failed host call, with its status code.
fn warn(what: &str, status: u32) {
    #[cfg(feature = "log")]
    log::warn!("{}status {}", Text(what), Text(status_name(status)));
    #[cfg(all(not(feature = "log"), feature = "constant-warning"))]
    {
        let _ = status;
        report(WARN, what);
    }
    #[cfg(all(not(feature = "log"), not(feature = "constant-warning")))]
    {
        let digits = [b'0' + (status / 10 % 10) as u8, b'0' + (status % 10) as u8];
        let message = filterkit::join(&[
            what,
            "status ",
            core::str::from_utf8(&digits).unwrap_or("?"),
        ]);
        report(WARN, &message);
    }
}

#[unsafe(no_mangle)]
pub extern "C" fn proxy_on_done(_context: u32) -> u32 {
    1
}

#[unsafe(no_mangle)]
pub extern "C" fn proxy_on_delete(_context: u32) {}
