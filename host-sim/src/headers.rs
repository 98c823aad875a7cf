//! Header maps with Envoy's semantics: lowercase names, repeated values kept in order,
//! pseudo-headers kept before regular headers, first-value lookup.

/// An ordered multimap of lowercase header names to values.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct HeaderMap {
    entries: Vec<(Vec<u8>, Vec<u8>)>,
}

impl HeaderMap {
    /// An empty map.
    pub fn new() -> HeaderMap {
        HeaderMap::default()
    }

    /// Builds a map from pairs, in order (names are lowercased).
    pub fn from_pairs<K: AsRef<[u8]>, V: AsRef<[u8]>>(
        pairs: impl IntoIterator<Item = (K, V)>,
    ) -> HeaderMap {
        let mut map = HeaderMap::new();
        for (key, value) in pairs {
            map.add(key.as_ref(), value.as_ref());
        }
        map
    }

    /// The number of entries (what Envoy passes as the header count to callbacks).
    pub fn len(&self) -> usize {
        self.entries.len()
    }

    /// Whether there are no entries.
    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    /// Envoy's `HeaderMap::byteSize()`: the sum of name and value lengths.
    pub fn byte_size(&self) -> usize {
        self.entries
            .iter()
            .map(|(key, value)| key.len() + value.len())
            .sum()
    }

    /// Appends a value; pseudo-headers go after the last pseudo-header, as Envoy keeps them.
    pub fn add(&mut self, key: &[u8], value: &[u8]) {
        let key = key.to_ascii_lowercase();
        if key.first() == Some(&b':') {
            let idx = self
                .entries
                .iter()
                .take_while(|(name, _)| name.first() == Some(&b':'))
                .count();
            self.entries.insert(idx, (key, value.to_vec()));
        } else {
            self.entries.push((key, value.to_vec()));
        }
    }

    /// The first value for a name (case-insensitive).
    pub fn get(&self, key: &[u8]) -> Option<&[u8]> {
        self.entries
            .iter()
            .find(|(name, _)| name.eq_ignore_ascii_case(key))
            .map(|(_, value)| value.as_slice())
    }

    /// The first value as text, for tests.
    pub fn get_str(&self, key: &str) -> Option<&str> {
        self.get(key.as_bytes())
            .and_then(|value| std::str::from_utf8(value).ok())
    }

    /// Every value for a name, in order.
    pub fn get_all(&self, key: &[u8]) -> Vec<&[u8]> {
        self.entries
            .iter()
            .filter(|(name, _)| name.eq_ignore_ascii_case(key))
            .map(|(_, value)| value.as_slice())
            .collect()
    }

    /// Removes every value for a name.
    pub fn remove(&mut self, key: &[u8]) {
        self.entries
            .retain(|(name, _)| !name.eq_ignore_ascii_case(key));
    }

    /// Envoy's `setCopy`: removes every value for the name, then adds this one.
    pub fn replace(&mut self, key: &[u8], value: &[u8]) {
        self.remove(key);
        self.add(key, value);
    }

    /// Envoy's inline-header `set…`: the first value keeps its place and takes this value,
    /// later ones go; a missing header is added at the end.
    pub fn set(&mut self, key: &[u8], value: &[u8]) {
        match self
            .entries
            .iter()
            .position(|(name, _)| name.eq_ignore_ascii_case(key))
        {
            Some(first) => {
                self.entries[first].1 = value.to_vec();
                let mut index = 0;
                self.entries.retain(|(name, _)| {
                    index += 1;
                    index - 1 <= first || !name.eq_ignore_ascii_case(key)
                });
            }
            None => self.add(key, value),
        }
    }

    /// Removes everything.
    pub fn clear(&mut self) {
        self.entries.clear();
    }

    /// The entries in order.
    pub fn iter(&self) -> impl Iterator<Item = (&[u8], &[u8])> + Clone {
        self.entries
            .iter()
            .map(|(key, value)| (key.as_slice(), value.as_slice()))
    }

    /// The entries as text pairs, for tests (invalid UTF-8 replaced).
    pub fn to_vec(&self) -> Vec<(String, String)> {
        self.iter()
            .map(|(key, value)| {
                (
                    String::from_utf8_lossy(key).into_owned(),
                    String::from_utf8_lossy(value).into_owned(),
                )
            })
            .collect()
    }

    /// Serializes to the Proxy-Wasm pairs format.
    pub fn serialize(&self) -> Vec<u8> {
        serialize_pairs(self.iter())
    }
}

/// Serializes pairs: u32 count, count × (u32 key_len, u32 value_len), then each key and
/// value followed by NUL; little-endian.
pub fn serialize_pairs<'a>(pairs: impl Iterator<Item = (&'a [u8], &'a [u8])> + Clone) -> Vec<u8> {
    let count = pairs.clone().count();
    let data: usize = pairs
        .clone()
        .map(|(key, value)| key.len() + value.len() + 2)
        .sum();
    let mut out = Vec::with_capacity(4 + count * 8 + data);
    out.extend_from_slice(&(count as u32).to_le_bytes());
    for (key, value) in pairs.clone() {
        out.extend_from_slice(&(key.len() as u32).to_le_bytes());
        out.extend_from_slice(&(value.len() as u32).to_le_bytes());
    }
    for (key, value) in pairs {
        out.extend_from_slice(key);
        out.push(0);
        out.extend_from_slice(value);
        out.push(0);
    }
    out
}

/// The most bytes Envoy accepts for a serialized pairs buffer (`PROXY_WASM_HOST_PAIRS_MAX_BYTES`).
pub const PAIRS_MAX_BYTES: usize = 1024 * 1024;
/// The most pairs Envoy accepts (`PROXY_WASM_HOST_PAIRS_MAX_COUNT`).
pub const PAIRS_MAX_COUNT: usize = 1024;

/// Parses the pairs format as proxy-wasm-cpp-host's `PairsUtil::toPairs` does: anything
/// malformed or over the limits gives no pairs at all.
pub fn parse_pairs(buffer: &[u8]) -> Vec<(Vec<u8>, Vec<u8>)> {
    parse_pairs_checked(buffer).unwrap_or_default()
}

fn parse_pairs_checked(buffer: &[u8]) -> Option<Vec<(Vec<u8>, Vec<u8>)>> {
    if buffer.len() > PAIRS_MAX_BYTES {
        return None;
    }
    let read_u32 = |at: usize| -> Option<usize> {
        let bytes = buffer.get(at..at.checked_add(4)?)?;
        Some(u32::from_le_bytes(bytes.try_into().ok()?) as usize)
    };
    let count = read_u32(0)?;
    if count > PAIRS_MAX_COUNT {
        return None;
    }
    let mut sizes = Vec::with_capacity(count);
    let mut pos = 4usize;
    for _ in 0..count {
        let key = read_u32(pos)?;
        let value = read_u32(pos + 4)?;
        sizes.push((key, value));
        pos += 8;
    }
    let mut pairs = Vec::with_capacity(count);
    for (key_len, value_len) in sizes {
        let key = buffer.get(pos..pos.checked_add(key_len)?)?.to_vec();
        pos = pos.checked_add(key_len)?;
        if buffer.get(pos) != Some(&0) {
            return None;
        }
        pos += 1;
        let value = buffer.get(pos..pos.checked_add(value_len)?)?.to_vec();
        pos = pos.checked_add(value_len)?;
        if buffer.get(pos) != Some(&0) {
            return None;
        }
        pos += 1;
        pairs.push((key, value));
    }
    // Bytes after the last pair make the whole buffer malformed (cpp-host checks
    // `pos == end`; seen in Envoy 1.40: differential `wat-malformed-pairs-are-an-empty-list`).
    (pos == buffer.len()).then_some(pairs)
}
