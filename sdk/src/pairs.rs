//! The ABI's map encoding: u32 count, count × (u32 key length, u32 value length), then each key
//! and value followed by a NUL byte; little-endian. Decoding treats the bytes as untrusted.

use alloc::vec::Vec;

/// Encodes `pairs` in the ABI's map format.
pub(crate) fn serialize<K: AsRef<[u8]>, V: AsRef<[u8]>>(pairs: &[(K, V)]) -> Vec<u8> {
    // Only a capacity hint: saturate rather than overflow.
    let mut size: usize = 4;
    for (key, value) in pairs {
        size = size
            .saturating_add(10)
            .saturating_add(key.as_ref().len())
            .saturating_add(value.as_ref().len());
    }
    let mut bytes = Vec::with_capacity(size);
    bytes.extend_from_slice(&(pairs.len() as u32).to_le_bytes());
    for (key, value) in pairs {
        bytes.extend_from_slice(&(key.as_ref().len() as u32).to_le_bytes());
        bytes.extend_from_slice(&(value.as_ref().len() as u32).to_le_bytes());
    }
    for (key, value) in pairs {
        bytes.extend_from_slice(key.as_ref());
        bytes.push(0);
        bytes.extend_from_slice(value.as_ref());
        bytes.push(0);
    }
    bytes
}

fn read_u32(bytes: &[u8], at: usize) -> Option<usize> {
    let word = bytes.get(at..at.checked_add(4)?)?;
    Some(u32::from_le_bytes(<[u8; 4]>::try_from(word).ok()?) as usize)
}

/// Decodes the ABI's map format; `None` if the bytes are malformed. No bytes is an empty map.
pub(crate) fn deserialize(bytes: &[u8]) -> Option<Vec<(Vec<u8>, Vec<u8>)>> {
    if bytes.is_empty() {
        return Some(Vec::new());
    }
    let count = read_u32(bytes, 0)?;
    // Each pair needs at least 10 bytes, so a count larger than that is malformed.
    if count > bytes.len() / 10 {
        return None;
    }
    let mut data = 4 + count * 8;
    let mut pairs = Vec::with_capacity(count);
    for idx in 0..count {
        let key_len = read_u32(bytes, 4 + idx * 8)?;
        let value_len = read_u32(bytes, 8 + idx * 8)?;
        let key = bytes.get(data..data.checked_add(key_len)?)?.to_vec();
        data = data.checked_add(key_len)?.checked_add(1)?;
        let value = bytes.get(data..data.checked_add(value_len)?)?.to_vec();
        data = data.checked_add(value_len)?.checked_add(1)?;
        pairs.push((key, value));
    }
    Some(pairs)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn check(pairs: &[(&str, &str)]) {
        let bytes = serialize(pairs);
        let back = deserialize(&bytes).unwrap();
        let back: Vec<(&[u8], &[u8])> = back
            .iter()
            .map(|(key, value)| (key.as_slice(), value.as_slice()))
            .collect();
        let expected: Vec<(&[u8], &[u8])> = pairs
            .iter()
            .map(|(key, value)| (key.as_bytes(), value.as_bytes()))
            .collect();
        assert_eq!(back, expected);
    }

    #[test]
    fn round_trips_maps() {
        check(&[]);
        check(&[("a", "b")]);
        check(&[(":status", "200"), ("x", ""), ("", "y")]);
    }

    #[test]
    fn rejects_truncated_maps() {
        let bytes = serialize(&[("key", "value")]);
        for len in 1..bytes.len() - 1 {
            assert_eq!(deserialize(&bytes[..len]), None, "len={len}");
        }
        assert_eq!(deserialize(&[255, 255, 255, 255]), None);
    }
}
