//! The few protobuf messages of `envoy.service.auth.v3.Authorization/Check`, by hand.
//!
//! Only the fields ext-authz sends or reads are here; the decoder skips every other field, so
//! a service that sends more (dynamic metadata, query parameters, …) still decodes. Field
//! numbers are those of envoy/service/auth/v3/{external_auth,attribute_context}.proto,
//! envoy/config/core/v3/base.proto and google/rpc/status.proto.

use alloc::string::String;
use alloc::vec::Vec;

/// The request's attributes a policy reads (OPA-Envoy's `input.attributes.request.http`,
/// Authorino's `context.request.http`).
pub struct HttpRequest<'a> {
    /// `x-request-id`, if any.
    pub id: &'a str,
    pub method: &'a str,
    /// Every header sent, pseudo-headers included, as Envoy's ext_authz sends them.
    pub headers: &'a [(&'a str, &'a str)],
    /// The path with its query string.
    pub path: &'a str,
    pub host: &'a str,
    pub scheme: &'a str,
    /// `source.address` as `ip:port`, when the host knows it.
    pub source_address: Option<&'a str>,
}

fn put_varint(out: &mut Vec<u8>, mut value: u64) {
    while value >= 0x80 {
        out.push((value as u8) | 0x80);
        value >>= 7;
    }
    out.push(value as u8);
}

fn put_bytes(out: &mut Vec<u8>, field: u32, bytes: &[u8]) {
    put_varint(out, u64::from(field << 3 | 2));
    put_varint(out, bytes.len() as u64);
    out.extend_from_slice(bytes);
}

/// A string field; proto3 leaves empty strings out.
fn put_string(out: &mut Vec<u8>, field: u32, text: &str) {
    if !text.is_empty() {
        put_bytes(out, field, text.as_bytes());
    }
}

fn put_varint_field(out: &mut Vec<u8>, field: u32, value: u64) {
    put_varint(out, u64::from(field << 3));
    put_varint(out, value);
}

/// `CheckRequest { attributes: AttributeContext { source, request: { http } } }`.
pub fn encode_check_request(request: &HttpRequest<'_>) -> Vec<u8> {
    let mut http = Vec::new();
    put_string(&mut http, 1, request.id);
    put_string(&mut http, 2, request.method);
    for (name, value) in request.headers {
        let mut entry = Vec::new();
        put_string(&mut entry, 1, name);
        put_string(&mut entry, 2, value);
        put_bytes(&mut http, 3, &entry);
    }
    put_string(&mut http, 4, request.path);
    put_string(&mut http, 5, request.host);
    put_string(&mut http, 6, request.scheme);

    let mut attributes = Vec::new();
    if let Some(address) = request.source_address {
        // Peer { address: Address { socket_address: SocketAddress { address, port_value } } }
        let (ip, port) = match address.rsplit_once(':') {
            Some((ip, port)) => {
                let ip = ip
                    .strip_prefix('[')
                    .and_then(|ip| ip.strip_suffix(']'))
                    .unwrap_or(ip);
                (ip, port.parse().ok())
            }
            None => (address, None),
        };
        let mut socket = Vec::new();
        put_string(&mut socket, 2, ip);
        if let Some(port) = port {
            put_varint_field(&mut socket, 3, port);
        }
        let mut address = Vec::new();
        put_bytes(&mut address, 1, &socket);
        let mut peer = Vec::new();
        put_bytes(&mut peer, 1, &address);
        put_bytes(&mut attributes, 1, &peer);
    }
    let mut attribute_request = Vec::new();
    put_bytes(&mut attribute_request, 2, &http);
    put_bytes(&mut attributes, 4, &attribute_request);

    let mut check = Vec::new();
    put_bytes(&mut check, 1, &attributes);
    check
}

/// A header the service asks to set, add or send back.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HeaderOption {
    pub name: String,
    pub value: String,
    /// Add the value even if the header exists (`append: true` or `append_action:
    /// APPEND_IF_EXISTS_OR_ADD`); otherwise set it.
    pub append: bool,
    /// Only when the header is absent (`ADD_IF_ABSENT`).
    pub if_absent: bool,
    /// Only when the header exists (`OVERWRITE_IF_EXISTS`).
    pub if_exists: bool,
}

/// What the service decided.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct CheckResponse {
    /// `status.code`: 0 allows, anything else denies.
    pub code: u64,
    /// `denied_response.status.code`, 0 when absent.
    pub denied_status: u64,
    /// `denied_response.headers` (or `ok_response.headers` when allowed).
    pub headers: Vec<HeaderOption>,
    /// `denied_response.body`.
    pub body: Vec<u8>,
    /// `ok_response.headers_to_remove`.
    pub headers_to_remove: Vec<String>,
    /// `ok_response.response_headers_to_add`.
    pub response_headers_to_add: Vec<HeaderOption>,
}

/// The service's answer does not decode.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct DecodeError;

struct Reader<'a> {
    bytes: &'a [u8],
}

enum Value<'a> {
    Varint(u64),
    Bytes(&'a [u8]),
    Fixed,
}

impl<'a> Reader<'a> {
    fn varint(&mut self) -> Result<u64, DecodeError> {
        let mut value = 0u64;
        for shift in (0..64).step_by(7) {
            let (&byte, rest) = self.bytes.split_first().ok_or(DecodeError)?;
            self.bytes = rest;
            value |= u64::from(byte & 0x7f) << shift;
            if byte < 0x80 {
                return Ok(value);
            }
        }
        Err(DecodeError)
    }

    fn take(&mut self, n: usize) -> Result<&'a [u8], DecodeError> {
        if n > self.bytes.len() {
            return Err(DecodeError);
        }
        let (taken, rest) = self.bytes.split_at(n);
        self.bytes = rest;
        Ok(taken)
    }

    /// The next field number and value; `None` at the end.
    fn field(&mut self) -> Result<Option<(u64, Value<'a>)>, DecodeError> {
        if self.bytes.is_empty() {
            return Ok(None);
        }
        let key = self.varint()?;
        let value = match key & 7 {
            0 => Value::Varint(self.varint()?),
            1 => {
                self.take(8)?;
                Value::Fixed
            }
            2 => {
                let n = usize::try_from(self.varint()?).map_err(|_| DecodeError)?;
                Value::Bytes(self.take(n)?)
            }
            5 => {
                self.take(4)?;
                Value::Fixed
            }
            _ => return Err(DecodeError),
        };
        Ok(Some((key >> 3, value)))
    }
}

/// Calls `each` with every field of `bytes`.
fn fields<'a>(
    bytes: &'a [u8],
    mut each: impl FnMut(u64, Value<'a>) -> Result<(), DecodeError>,
) -> Result<(), DecodeError> {
    let mut reader = Reader { bytes };
    while let Some((field, value)) = reader.field()? {
        each(field, value)?;
    }
    Ok(())
}

fn text(bytes: &[u8]) -> Result<String, DecodeError> {
    core::str::from_utf8(bytes)
        .map(String::from)
        .map_err(|_| DecodeError)
}

/// The first varint field numbered `wanted` of a message (`HttpStatus.code`, `BoolValue.value`).
fn varint_of(bytes: &[u8], wanted: u64) -> Result<u64, DecodeError> {
    let mut found = 0;
    fields(bytes, |field, value| {
        if let (true, Value::Varint(value)) = (field == wanted, value) {
            found = value;
        }
        Ok(())
    })?;
    Ok(found)
}

/// `HeaderValueOption { header: HeaderValue { key, value, raw_value }, append, append_action }`.
fn header_option(bytes: &[u8]) -> Result<HeaderOption, DecodeError> {
    let mut option = HeaderOption {
        name: String::new(),
        value: String::new(),
        append: false,
        if_absent: false,
        if_exists: false,
    };
    let mut append = None;
    let mut action = None;
    fields(bytes, |field, value| {
        match (field, value) {
            (1, Value::Bytes(header)) => fields(header, |field, value| {
                match (field, value) {
                    (1, Value::Bytes(key)) => option.name = text(key)?.to_ascii_lowercase(),
                    (2 | 3, Value::Bytes(value)) if !value.is_empty() => {
                        option.value = text(value)?
                    }
                    _ => {}
                }
                Ok(())
            })?,
            (2, Value::Bytes(bool_value)) => append = Some(varint_of(bool_value, 1)? != 0),
            (3, Value::Varint(value)) => action = Some(value),
            _ => {}
        }
        Ok(())
    })?;
    // `append` (deprecated) wins when present; otherwise `append_action`; with neither, set.
    match (append, action) {
        (Some(append), _) => option.append = append,
        (None, Some(0)) => option.append = true,
        (None, Some(1)) => option.if_absent = true,
        (None, Some(3)) => option.if_exists = true,
        _ => {}
    }
    Ok(option)
}

/// Decodes a `CheckResponse`.
pub fn decode_check_response(bytes: &[u8]) -> Result<CheckResponse, DecodeError> {
    let mut response = CheckResponse::default();
    fields(bytes, |field, value| {
        let Value::Bytes(message) = value else {
            return Ok(());
        };
        match field {
            1 => response.code = varint_of(message, 1)?,
            2 => fields(message, |field, value| {
                match (field, value) {
                    (1, Value::Bytes(status)) => response.denied_status = varint_of(status, 1)?,
                    (2, Value::Bytes(option)) => response.headers.push(header_option(option)?),
                    (3, Value::Bytes(body)) => response.body = body.to_vec(),
                    _ => {}
                }
                Ok(())
            })?,
            3 => fields(message, |field, value| {
                match (field, value) {
                    (2, Value::Bytes(option)) => response.headers.push(header_option(option)?),
                    (5, Value::Bytes(name)) => {
                        response
                            .headers_to_remove
                            .push(text(name)?.to_ascii_lowercase());
                    }
                    (6, Value::Bytes(option)) => {
                        response
                            .response_headers_to_add
                            .push(header_option(option)?);
                    }
                    _ => {}
                }
                Ok(())
            })?,
            _ => {}
        }
        Ok(())
    })?;
    Ok(response)
}
