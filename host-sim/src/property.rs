//! Property values as Envoy serializes them for `proxy_get_property` (`serializeValue` in
//! Envoy's `source/extensions/common/wasm/context.cc`).

use serde::Deserialize;

use crate::headers::serialize_pairs;

/// A typed property value.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum PropertyValue {
    /// A string: raw bytes.
    String(String),
    /// Bytes: raw.
    Bytes(Vec<u8>),
    /// An int64: 8 bytes little-endian.
    Int(i64),
    /// A uint64: 8 bytes little-endian.
    Uint(u64),
    /// A double: 8 bytes little-endian.
    Double(f64),
    /// A bool: one byte.
    Bool(bool),
    /// A duration in nanoseconds: int64, 8 bytes little-endian.
    DurationNanos(i64),
    /// A timestamp in nanoseconds since the Unix epoch: int64, 8 bytes little-endian.
    TimestampNanos(i64),
    /// A map: the pairs format, keys and values serialized.
    Map(Vec<(String, PropertyValue)>),
    /// A list: the pairs format, each item a key with an empty value (as Envoy does).
    List(Vec<PropertyValue>),
    /// A protobuf message: its serialized bytes, as given.
    Message(Vec<u8>),
}

impl PropertyValue {
    /// The bytes `proxy_get_property` returns.
    pub fn encode(&self) -> Vec<u8> {
        match self {
            PropertyValue::String(value) => value.as_bytes().to_vec(),
            PropertyValue::Bytes(value) | PropertyValue::Message(value) => value.clone(),
            PropertyValue::Int(value)
            | PropertyValue::DurationNanos(value)
            | PropertyValue::TimestampNanos(value) => value.to_le_bytes().to_vec(),
            PropertyValue::Uint(value) => value.to_le_bytes().to_vec(),
            PropertyValue::Double(value) => value.to_le_bytes().to_vec(),
            PropertyValue::Bool(value) => vec![u8::from(*value)],
            PropertyValue::Map(entries) => {
                let encoded: Vec<(Vec<u8>, Vec<u8>)> = entries
                    .iter()
                    .map(|(key, value)| (key.as_bytes().to_vec(), value.encode()))
                    .collect();
                serialize_pairs(
                    encoded
                        .iter()
                        .map(|(key, value)| (key.as_slice(), value.as_slice())),
                )
            }
            PropertyValue::List(items) => {
                let encoded: Vec<Vec<u8>> = items.iter().map(PropertyValue::encode).collect();
                serialize_pairs(encoded.iter().map(|item| (item.as_slice(), &[][..])))
            }
        }
    }

    /// The value one path segment below this one (map key or list index).
    pub(crate) fn child(&self, segment: &[u8]) -> Option<&PropertyValue> {
        match self {
            PropertyValue::Map(entries) => entries
                .iter()
                .find(|(key, _)| key.as_bytes() == segment)
                .map(|(_, value)| value),
            PropertyValue::List(items) => {
                let idx: usize = std::str::from_utf8(segment).ok()?.parse().ok()?;
                items.get(idx)
            }
            _ => None,
        }
    }
}

impl From<&str> for PropertyValue {
    fn from(value: &str) -> PropertyValue {
        PropertyValue::String(value.to_string())
    }
}

impl From<String> for PropertyValue {
    fn from(value: String) -> PropertyValue {
        PropertyValue::String(value)
    }
}

impl From<i64> for PropertyValue {
    fn from(value: i64) -> PropertyValue {
        PropertyValue::Int(value)
    }
}

impl From<u64> for PropertyValue {
    fn from(value: u64) -> PropertyValue {
        PropertyValue::Uint(value)
    }
}

impl From<bool> for PropertyValue {
    fn from(value: bool) -> PropertyValue {
        PropertyValue::Bool(value)
    }
}
