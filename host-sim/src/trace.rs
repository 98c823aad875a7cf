//! A compact record of every callback and host call, rendered to stable text on demand.
//!
//! Entries are fixed-size and their byte strings live in one arena, so recording costs a few
//! copies and no allocation per call; [`Trace::render`] turns them into text for snapshots.

use std::fmt::Write as _;

use crate::abi::{BufferType, MapType, Status};

/// A span of bytes in the trace's arena.
#[derive(Debug, Clone, Copy, Default)]
pub(crate) struct Span {
    start: u32,
    len: u32,
}

/// What one entry records.
#[derive(Debug, Clone, Copy)]
pub(crate) enum Kind {
    /// The host called an export: `name` with `n_nums` numeric arguments.
    Call(&'static str),
    /// The export returned (`has_value` says whether it returned a value).
    Return { has_value: bool },
    /// The export trapped; `a` holds the message.
    Trap,
    /// The guest called a host function.
    Host(&'static str, FirstArg),
    /// A log line; `nums[0]` is the level, `a` the message.
    Log,
    /// Something host-sim did on the guest's behalf (local reply sent, stream continued...).
    Note(&'static str),
}

/// How to render the first numeric argument of a host call.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum FirstArg {
    /// As a number.
    Plain,
    /// As a header map type name.
    Map,
    /// As a buffer type name.
    Buffer,
    /// As a log level name.
    Level,
    /// As a stream type name.
    Stream,
}

#[derive(Debug, Clone, Copy)]
pub(crate) struct Entry {
    kind: Kind,
    ctx: u32,
    status: u32,
    n_nums: u8,
    n_strs: u8,
    nums: [u64; 4],
    strs: [Span; 3],
    result: Option<Span>,
}

/// The trace of one [`crate::Sim`]: every callback into the guest and every host call.
#[derive(Debug, Default)]
pub struct Trace {
    entries: Vec<Entry>,
    bytes: Vec<u8>,
    enabled: bool,
    /// The worker whose VM the next entries come from, and the one the trace last named
    /// (a `# worker N` line is written when they differ, so one worker never sees one).
    worker: usize,
    noted_worker: usize,
}

/// Arguments of a host call as recorded.
pub(crate) struct HostRecord<'a> {
    pub(crate) name: &'static str,
    pub(crate) first: FirstArg,
    pub(crate) ctx: u32,
    pub(crate) nums: &'a [u64],
    pub(crate) strs: &'a [&'a [u8]],
    pub(crate) status: u32,
    pub(crate) result: Option<&'a [u8]>,
}

impl Trace {
    pub(crate) fn new(enabled: bool) -> Trace {
        Trace {
            entries: Vec::new(),
            bytes: Vec::new(),
            enabled,
            worker: 0,
            noted_worker: 0,
        }
    }

    /// Whether calls are being recorded.
    pub fn enabled(&self) -> bool {
        self.enabled
    }

    pub(crate) fn set_enabled(&mut self, enabled: bool) {
        self.enabled = enabled;
    }

    /// Forgets everything recorded so far (keeps the allocations for reuse).
    pub fn clear(&mut self) {
        self.entries.clear();
        self.bytes.clear();
        self.noted_worker = 0;
    }

    /// Entries recorded from now on come from this worker's VM.
    pub(crate) fn set_worker(&mut self, worker: usize) {
        self.worker = worker;
    }

    /// Where the trace ends now, to [`Trace::truncate`] back to.
    pub(crate) fn mark(&self) -> (usize, usize) {
        (self.entries.len(), self.bytes.len())
    }

    /// Forgets what was recorded after `mark`.
    pub(crate) fn truncate(&mut self, mark: (usize, usize)) {
        self.entries.truncate(mark.0);
        self.bytes.truncate(mark.1);
    }

    /// The number of entries recorded.
    pub fn len(&self) -> usize {
        self.entries.len()
    }

    /// Whether nothing was recorded.
    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    fn span(&mut self, bytes: &[u8]) -> Span {
        // Cap what one string may add so a hostile guest cannot balloon the trace.
        let bytes = &bytes[..bytes.len().min(4096)];
        let start = self.bytes.len() as u32;
        self.bytes.extend_from_slice(bytes);
        Span {
            start,
            len: bytes.len() as u32,
        }
    }

    fn push(&mut self, kind: Kind, ctx: u32, nums: &[u64], strs: &[&[u8]]) -> Option<&mut Entry> {
        if !self.enabled {
            return None;
        }
        if self.worker != self.noted_worker {
            self.noted_worker = self.worker;
            self.entries.push(Entry {
                kind: Kind::Note("worker"),
                ctx: 0,
                status: 0,
                n_nums: 1,
                n_strs: 0,
                nums: [self.worker as u64, 0, 0, 0],
                strs: [Span::default(); 3],
                result: None,
            });
        }
        let mut entry = Entry {
            kind,
            ctx,
            status: 0,
            n_nums: nums.len().min(4) as u8,
            n_strs: strs.len().min(3) as u8,
            nums: [0; 4],
            strs: [Span::default(); 3],
            result: None,
        };
        for (slot, value) in entry.nums.iter_mut().zip(nums) {
            *slot = *value;
        }
        for (idx, value) in strs.iter().take(3).enumerate() {
            entry.strs[idx] = self.span(value);
        }
        self.entries.push(entry);
        self.entries.last_mut()
    }

    pub(crate) fn call(&mut self, name: &'static str, ctx: u32, nums: &[u64]) {
        self.push(Kind::Call(name), ctx, nums, &[]);
    }

    pub(crate) fn returned(&mut self, ctx: u32, value: Option<u64>) {
        let nums = value.map(|value| [value]);
        let nums: &[u64] = match &nums {
            Some(value) => value,
            None => &[],
        };
        self.push(
            Kind::Return {
                has_value: value.is_some(),
            },
            ctx,
            nums,
            &[],
        );
    }

    pub(crate) fn trap(&mut self, ctx: u32, message: &str) {
        self.push(Kind::Trap, ctx, &[], &[message.as_bytes()]);
    }

    pub(crate) fn host(&mut self, record: HostRecord<'_>) {
        if !self.enabled {
            return;
        }
        let result = record.result.map(|bytes| self.span(bytes));
        if let Some(entry) = self.push(
            Kind::Host(record.name, record.first),
            record.ctx,
            record.nums,
            record.strs,
        ) {
            entry.status = record.status;
            entry.result = result;
        }
    }

    pub(crate) fn log(&mut self, ctx: u32, level: u32, message: &[u8]) {
        self.push(Kind::Log, ctx, &[u64::from(level)], &[message]);
    }

    pub(crate) fn note(&mut self, what: &'static str, ctx: u32, nums: &[u64], strs: &[&[u8]]) {
        self.push(Kind::Note(what), ctx, nums, strs);
    }

    fn text(&self, span: Span) -> &[u8] {
        &self.bytes[span.start as usize..(span.start + span.len) as usize]
    }

    /// Renders the trace as stable text, one line per entry; host calls made inside a
    /// callback are indented under it.
    pub fn render(&self) -> String {
        let mut out = String::new();
        let mut depth = 0usize;
        for entry in &self.entries {
            let nums = &entry.nums[..entry.n_nums as usize];
            let strs = &entry.strs[..entry.n_strs as usize];
            match entry.kind {
                Kind::Call(name) => {
                    indent(&mut out, depth);
                    let _ = write!(out, "{name}(ctx={}", entry.ctx);
                    for value in nums {
                        let _ = write!(out, ", {value}");
                    }
                    out.push_str(")\n");
                    depth += 1;
                }
                Kind::Return { has_value } => {
                    depth = depth.saturating_sub(1);
                    indent(&mut out, depth + 1);
                    if has_value {
                        let _ = writeln!(out, "=> {}", nums[0]);
                    } else {
                        out.push_str("=> ()\n");
                    }
                }
                Kind::Trap => {
                    depth = depth.saturating_sub(1);
                    indent(&mut out, depth + 1);
                    out.push_str("=> trap ");
                    quote(
                        &mut out,
                        strs.first().map(|span| self.text(*span)).unwrap_or(b""),
                    );
                    out.push('\n');
                }
                Kind::Host(name, first) => {
                    indent(&mut out, depth);
                    let _ = write!(out, "{name}(");
                    let mut first_item = true;
                    for (idx, value) in nums.iter().enumerate() {
                        if !first_item {
                            out.push_str(", ");
                        }
                        first_item = false;
                        if idx == 0 {
                            render_first(&mut out, first, *value);
                        } else {
                            let _ = write!(out, "{value}");
                        }
                    }
                    for span in strs {
                        if !first_item {
                            out.push_str(", ");
                        }
                        first_item = false;
                        quote(&mut out, self.text(*span));
                    }
                    // WASI functions answer errnos, not Proxy-Wasm statuses (Envoy's own
                    // `envoy_*` functions answer statuses).
                    let status = if !name.starts_with("proxy_") && !name.starts_with("envoy_") {
                        format!("errno {}", entry.status)
                    } else {
                        Status::from_code(entry.status)
                            .map(|status| status.name().to_string())
                            .unwrap_or_else(|| entry.status.to_string())
                    };
                    let _ = write!(out, ") -> {status}");
                    if let Some(span) = entry.result {
                        out.push(' ');
                        quote(&mut out, self.text(span));
                    }
                    out.push('\n');
                }
                Kind::Log => {
                    indent(&mut out, depth);
                    let _ = write!(out, "log {} ", level_name(nums[0]));
                    quote(
                        &mut out,
                        strs.first().map(|span| self.text(*span)).unwrap_or(b""),
                    );
                    out.push('\n');
                }
                Kind::Note(what) => {
                    indent(&mut out, depth);
                    let _ = write!(out, "# {what}");
                    if entry.ctx != 0 {
                        let _ = write!(out, " ctx={}", entry.ctx);
                    }
                    for value in nums {
                        let _ = write!(out, " {value}");
                    }
                    for span in strs {
                        out.push(' ');
                        quote(&mut out, self.text(*span));
                    }
                    out.push('\n');
                }
            }
        }
        out
    }
}

fn indent(out: &mut String, depth: usize) {
    for _ in 0..depth {
        out.push_str("  ");
    }
}

fn render_first(out: &mut String, first: FirstArg, value: u64) {
    let name = match first {
        FirstArg::Plain => None,
        FirstArg::Map => u32::try_from(value)
            .ok()
            .and_then(MapType::from_code)
            .map(MapType::name),
        FirstArg::Buffer => u32::try_from(value)
            .ok()
            .and_then(BufferType::from_code)
            .map(BufferType::name),
        FirstArg::Level => Some(level_name(value)).filter(|name| !name.is_empty()),
        FirstArg::Stream => match value {
            0 => Some("request"),
            1 => Some("response"),
            2 => Some("downstream"),
            3 => Some("upstream"),
            _ => None,
        },
    };
    match name {
        Some(name) => out.push_str(name),
        None => {
            let _ = write!(out, "{value}");
        }
    }
}

/// The name of a Proxy-Wasm log level.
pub(crate) fn level_name(level: u64) -> &'static str {
    match level {
        0 => "trace",
        1 => "debug",
        2 => "info",
        3 => "warn",
        4 => "error",
        5 => "critical",
        _ => "",
    }
}

/// Writes bytes as a quoted string, escaping non-printable bytes.
pub(crate) fn quote(out: &mut String, bytes: &[u8]) {
    out.push('"');
    for chunk in bytes.utf8_chunks() {
        for ch in chunk.valid().chars() {
            match ch {
                '"' => out.push_str("\\\""),
                '\\' => out.push_str("\\\\"),
                '\n' => out.push_str("\\n"),
                '\r' => out.push_str("\\r"),
                '\t' => out.push_str("\\t"),
                '\0' => out.push_str("\\0"),
                ch if ch.is_control() => {
                    let _ = write!(out, "\\u{{{:x}}}", ch as u32);
                }
                ch => out.push(ch),
            }
        }
        for byte in chunk.invalid() {
            let _ = write!(out, "\\x{byte:02x}");
        }
    }
    out.push('"');
}
