use core::fmt;

/// A non-OK status returned by a Proxy-Wasm host function.
///
/// The host returns a raw `u32`; [`Status::check`] maps it. A value this crate does not know is
/// kept as [`Status::Unknown`] instead of trapping.
///
/// ```
/// use filterkit::Status;
/// assert_eq!(Status::check(0), Ok(()));
/// assert_eq!(Status::check(1), Err(Status::NotFound));
/// assert_eq!(Status::check(99), Err(Status::Unknown(99)));
/// ```
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum Status {
    /// `NOT_FOUND` (1).
    NotFound,
    /// `BAD_ARGUMENT` (2).
    BadArgument,
    /// `SERIALIZATION_FAILURE` (3).
    SerializationFailure,
    /// `PARSE_FAILURE` (4).
    ParseFailure,
    /// `BAD_EXPRESSION` (5).
    BadExpression,
    /// `INVALID_MEMORY_ACCESS` (6).
    InvalidMemoryAccess,
    /// `EMPTY` (7).
    Empty,
    /// `CAS_MISMATCH` (8).
    CasMismatch,
    /// `RESULT_MISMATCH` (9).
    ResultMismatch,
    /// `INTERNAL_FAILURE` (10).
    InternalFailure,
    /// `BROKEN_CONNECTION` (11).
    BrokenConnection,
    /// `UNIMPLEMENTED` (12).
    Unimplemented,
    /// A status this version of filterkit does not know.
    Unknown(u32),
}

impl Status {
    /// Maps a raw host status: 0 (`OK`) is `Ok(())`, anything else an error value.
    ///
    /// ```
    /// use filterkit::Status;
    /// assert_eq!(Status::check(8), Err(Status::CasMismatch));
    /// ```
    pub fn check(raw: u32) -> Result<(), Status> {
        Err(match raw {
            0 => return Ok(()),
            1 => Status::NotFound,
            2 => Status::BadArgument,
            3 => Status::SerializationFailure,
            4 => Status::ParseFailure,
            5 => Status::BadExpression,
            6 => Status::InvalidMemoryAccess,
            7 => Status::Empty,
            8 => Status::CasMismatch,
            9 => Status::ResultMismatch,
            10 => Status::InternalFailure,
            11 => Status::BrokenConnection,
            12 => Status::Unimplemented,
            other => Status::Unknown(other),
        })
    }

    /// The raw value, as the spec spells it.
    ///
    /// ```
    /// use filterkit::Status;
    /// assert_eq!(Status::BadArgument.as_raw(), 2);
    /// ```
    pub fn as_raw(self) -> u32 {
        match self {
            Status::NotFound => 1,
            Status::BadArgument => 2,
            Status::SerializationFailure => 3,
            Status::ParseFailure => 4,
            Status::BadExpression => 5,
            Status::InvalidMemoryAccess => 6,
            Status::Empty => 7,
            Status::CasMismatch => 8,
            Status::ResultMismatch => 9,
            Status::InternalFailure => 10,
            Status::BrokenConnection => 11,
            Status::Unimplemented => 12,
            Status::Unknown(raw) => raw,
        }
    }
}

/// Everything that can go wrong in filterkit, as a value: nothing here ever traps the VM.
///
/// ```
/// use filterkit::{Error, Status};
/// let error = Error::Host { function: "proxy_get_property", status: Status::BadArgument };
/// assert_eq!(error.to_string(), "proxy_get_property returned status 2");
/// ```
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum Error {
    /// A host function answered with a status the caller did not expect.
    Host {
        /// The host function, spelled as in the spec (`proxy_get_header_map_value`).
        function: &'static str,
        /// What it answered.
        status: Status,
    },
    /// Bytes that should have been UTF-8 text were not.
    NotUtf8,
    /// A property value did not have the size its type requires.
    BadPropertyValue {
        /// The size the type requires.
        expected_len: usize,
        /// The size the host returned.
        actual_len: usize,
    },
    /// A shared-data update kept losing the compare-and-swap race.
    CasRetriesExhausted {
        /// How many attempts were made.
        attempts: u32,
    },
    /// A duration does not fit the ABI's `u32` milliseconds.
    DurationTooLong,
    /// An http or gRPC callout was made by a filter whose root sets
    /// [`crate::RootContext::CALLOUTS`] to `false`: its answer could not be delivered.
    CalloutsDisabled,
}

/// Writes `value` in decimal without `core::fmt`'s integer machinery (which pads and aligns).
fn write_decimal(f: &mut fmt::Formatter<'_>, value: u64) -> fmt::Result {
    let mut text = alloc::string::String::new();
    crate::text::push_decimal(&mut text, value);
    f.write_str(&text)
}

// Written with `write_str` only: a `{}` here would bring padding and integer formatting
// code into every module that logs an error.
impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Error::Host { function, status } => {
                f.write_str(function)?;
                f.write_str(" returned status ")?;
                write_decimal(f, status.as_raw().into())
            }
            Error::NotUtf8 => f.write_str("value is not valid UTF-8"),
            Error::BadPropertyValue {
                expected_len,
                actual_len,
            } => {
                f.write_str("property value has ")?;
                write_decimal(f, *actual_len as u64)?;
                f.write_str(" bytes, expected ")?;
                write_decimal(f, *expected_len as u64)
            }
            Error::CasRetriesExhausted { attempts } => {
                f.write_str("shared data update lost the race ")?;
                write_decimal(f, (*attempts).into())?;
                f.write_str(" times")
            }
            Error::DurationTooLong => f.write_str("duration does not fit u32 milliseconds"),
            Error::CalloutsDisabled => f.write_str("callouts are disabled (RootContext::CALLOUTS)"),
        }
    }
}

impl core::error::Error for Error {}
