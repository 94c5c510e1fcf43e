//! The versioned envelope every stored value is wrapped in:
//! `[format_version: u16 little-endian][payload]`.
//!
//! A reader that does not know the version refuses the value with
//! [`EnvelopeError::UnknownVersion`]; it never guesses.

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum EnvelopeError {
    #[error("stored {what} has format version {found}, this build reads version {supported}; run the twinstream version that wrote it, or migrate the state directory")]
    UnknownVersion {
        what: &'static str,
        found: u16,
        supported: u16,
    },
    #[error("stored value is too short to hold a format version ({0} bytes)")]
    Truncated(usize),
    #[error("stored value is corrupt: {0}")]
    Corrupt(String),
}

/// The most memory decoding one stored value may claim. A length prefix
/// is read before what it counts, so a damaged one could ask for terabytes
/// (the `stored` fuzz target found it): over this, the value is corrupt.
pub const DECODE_LIMIT: usize = 64 << 20;

/// The bincode configuration of every stored value: bincode's standard
/// encoding (the limit is not part of the format), decoded within
/// [`DECODE_LIMIT`].
pub fn bincode_config() -> bincode::config::Configuration<
    bincode::config::LittleEndian,
    bincode::config::Varint,
    bincode::config::Limit<DECODE_LIMIT>,
> {
    bincode::config::standard().with_limit::<DECODE_LIMIT>()
}

/// A buffer that starts with the envelope header for `version`.
pub fn start(version: u16, capacity: usize) -> Vec<u8> {
    let mut buf = Vec::with_capacity(capacity + 2);
    buf.extend_from_slice(&version.to_le_bytes());
    buf
}

/// Appends the envelope header for `version` to `buf`.
pub fn put_header(version: u16, buf: &mut Vec<u8>) {
    buf.extend_from_slice(&version.to_le_bytes());
}

/// The payload of `bytes` if its version is `supported`.
pub fn open<'a>(bytes: &'a [u8], supported: u16, what: &'static str) -> Result<&'a [u8], EnvelopeError> {
    if bytes.len() < 2 {
        return Err(EnvelopeError::Truncated(bytes.len()));
    }
    let found = u16::from_le_bytes([bytes[0], bytes[1]]);
    if found != supported {
        return Err(EnvelopeError::UnknownVersion { what, found, supported });
    }
    Ok(&bytes[2..])
}

/// The version and payload of `bytes` if its version is one of `readable`
/// (the last one is the current format).
pub fn open_any<'a>(bytes: &'a [u8], readable: &[u16], what: &'static str) -> Result<(u16, &'a [u8]), EnvelopeError> {
    if bytes.len() < 2 {
        return Err(EnvelopeError::Truncated(bytes.len()));
    }
    let found = u16::from_le_bytes([bytes[0], bytes[1]]);
    if !readable.contains(&found) {
        let supported = readable.last().copied().unwrap_or(0);
        return Err(EnvelopeError::UnknownVersion { what, found, supported });
    }
    Ok((found, &bytes[2..]))
}

/// FNV-1a, the content hash of stored forms (schema ids, file
/// fingerprints): stable across builds and platforms.
pub fn fnv1a(bytes: &[u8]) -> u64 {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for b in bytes {
        h ^= u64::from(*b);
        h = h.wrapping_mul(0x0000_0100_0000_01b3);
    }
    h
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trip_and_version_check() {
        let mut b = start(1, 3);
        b.extend_from_slice(b"abc");
        assert_eq!(open(&b, 1, "twin"), Ok(&b"abc"[..]));
        assert_eq!(
            open(&b, 2, "twin"),
            Err(EnvelopeError::UnknownVersion {
                what: "twin",
                found: 1,
                supported: 2
            })
        );
        assert_eq!(open(&[1], 1, "twin"), Err(EnvelopeError::Truncated(1)));
    }
}
