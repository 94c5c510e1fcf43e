//! The value codec of a stored outbox message: the versioned envelope
//! (column family `outbox`, key `sink NUL seq`) and the message's topic,
//! key, headers, partition and payload inside it. These bytes are on disk:
//! every format an earlier version wrote still reads.

use super::Msg;
use crate::store::{envelope, StoreError};

/// Format of an outbox value: `[topic length u32 LE][topic][payload]`.
const FORMAT_V1: u16 = 1;
/// Format of an outbox value: `[topic length u32 LE][topic][key length u32
/// LE, u32::MAX: no key][key][header count u16 LE]([name length u16 LE]
/// [name][value length u32 LE][value])*[payload]`.
const FORMAT_V2: u16 = 2;
/// Format 2 after `[partition i32 LE, -1: the partitioner's choice]`.
pub const OUTBOX_FORMAT: u16 = 3;

/// A stored message of sink `name`.
pub(super) fn read(name: &str, seq: u64, value: &[u8]) -> Result<Msg, StoreError> {
    let mut msg = decode(value).map_err(|cause| StoreError::Envelope {
        key: format!("outbox {name}/{seq}"),
        cause,
    })?;
    msg.seq = seq;
    Ok(msg)
}

pub(super) fn encode(m: &Msg) -> Vec<u8> {
    let headers: usize = m.headers.iter().map(|(n, v)| 6 + n.len() + v.len()).sum();
    let key = m.key.as_ref().map_or(0, Vec::len);
    let mut v = envelope::start(OUTBOX_FORMAT, 14 + m.topic.len() + key + headers + m.payload.len());
    v.extend_from_slice(&m.partition.unwrap_or(-1).to_le_bytes());
    v.extend_from_slice(&(m.topic.len() as u32).to_le_bytes());
    v.extend_from_slice(m.topic.as_bytes());
    match &m.key {
        Some(k) => {
            v.extend_from_slice(&(k.len() as u32).to_le_bytes());
            v.extend_from_slice(k);
        }
        None => v.extend_from_slice(&u32::MAX.to_le_bytes()),
    }
    v.extend_from_slice(&(m.headers.len() as u16).to_le_bytes());
    for (name, value) in &m.headers {
        v.extend_from_slice(&(name.len() as u16).to_le_bytes());
        v.extend_from_slice(name.as_bytes());
        v.extend_from_slice(&(value.len() as u32).to_le_bytes());
        v.extend_from_slice(value);
    }
    v.extend_from_slice(&m.payload);
    v
}

/// The length of `encode(m)`.
pub(super) fn stored_len(m: &Msg) -> usize {
    let headers: usize = m.headers.iter().map(|(n, v)| 6 + n.len() + v.len()).sum();
    2 + 14 + m.topic.len() + m.key.as_ref().map_or(0, Vec::len) + headers + m.payload.len()
}

/// A stored message (its `seq` is the store key's, set by the caller).
pub(super) fn decode(value: &[u8]) -> Result<Msg, envelope::EnvelopeError> {
    let (version, body) = envelope::open_any(value, &[FORMAT_V1, FORMAT_V2, OUTBOX_FORMAT], "outbox message")?;
    let mut r = Reader(body);
    let partition = match version {
        OUTBOX_FORMAT => Some(r.u32()? as i32).filter(|p| *p >= 0),
        _ => None,
    };
    let len = r.u32()? as usize;
    let topic = String::from_utf8(r.bytes(len)?.to_vec())
        .map_err(|_| envelope::EnvelopeError::Corrupt("outbox topic is not UTF-8".into()))?;
    let mut msg = Msg {
        seq: 0,
        topic,
        key: None,
        headers: Vec::new(),
        partition,
        payload: Vec::new(),
        stored: true,
        timing: Default::default(),
    };
    if version >= 2 {
        msg.key = match r.u32()? {
            u32::MAX => None,
            len => Some(r.bytes(len as usize)?.to_vec()),
        };
        for _ in 0..r.u16()? {
            let len = r.u16()? as usize;
            let name = String::from_utf8(r.bytes(len)?.to_vec())
                .map_err(|_| envelope::EnvelopeError::Corrupt("outbox header name is not UTF-8".into()))?;
            let len = r.u32()? as usize;
            msg.headers.push((name, r.bytes(len)?.to_vec()));
        }
    }
    msg.payload = r.0.to_vec();
    Ok(msg)
}

struct Reader<'a>(&'a [u8]);

impl<'a> Reader<'a> {
    fn bytes(&mut self, n: usize) -> Result<&'a [u8], envelope::EnvelopeError> {
        if self.0.len() < n {
            return Err(envelope::EnvelopeError::Corrupt("outbox message cut short".into()));
        }
        let (head, rest) = self.0.split_at(n);
        self.0 = rest;
        Ok(head)
    }

    fn u32(&mut self) -> Result<u32, envelope::EnvelopeError> {
        let b = self.bytes(4)?;
        Ok(u32::from_le_bytes([b[0], b[1], b[2], b[3]]))
    }

    fn u16(&mut self) -> Result<u16, envelope::EnvelopeError> {
        let b = self.bytes(2)?;
        Ok(u16::from_le_bytes([b[0], b[1]]))
    }
}

#[cfg(test)]
pub(super) mod tests {
    use super::*;

    pub(in crate::sink::outbox) fn msg(key: Option<&[u8]>, headers: &[(&str, &[u8])]) -> Msg {
        Msg {
            seq: 0,
            topic: "plant/p-1/commands".into(),
            key: key.map(<[u8]>::to_vec),
            headers: headers.iter().map(|(n, v)| (n.to_string(), v.to_vec())).collect(),
            partition: None,
            payload: br#"{"id":"x"}"#.to_vec(),
            stored: true,
            timing: Default::default(),
        }
    }

    #[test]
    fn outbox_values_round_trip_and_refuse_garbage() {
        let to_partition = Msg {
            partition: Some(7),
            ..msg(Some(b"tank-1"), &[("twinstream.kind", b"relay")])
        };
        for m in [
            msg(None, &[]),
            msg(Some(b""), &[]),
            msg(Some(b"p-1"), &[("twinstream.reason", b"malformed"), ("empty", b"")]),
            to_partition,
        ] {
            let v = encode(&m);
            assert_eq!(v.len(), stored_len(&m));
            assert_eq!(decode(&v).unwrap(), m);
            assert!(decode(&v[..v.len() - m.payload.len() - 1]).is_err());
            // Format 2 (no partition) still reads.
            let mut v2 = envelope::start(FORMAT_V2, 0);
            v2.extend_from_slice(&v[6..]);
            assert_eq!(decode(&v2).unwrap(), Msg { partition: None, ..m });
        }
        let v = encode(&msg(Some(b"p-1"), &[("h", b"v")]));
        assert!(decode(&v[..12]).is_err());
        let mut other = v.clone();
        other[0] = 9;
        assert!(matches!(
            decode(&other),
            Err(envelope::EnvelopeError::UnknownVersion { .. })
        ));
    }

    #[test]
    fn the_stored_bytes_of_a_message_stay_as_they_are() {
        // The value a store holds: a later version must write and read
        // exactly these bytes.
        let m = Msg {
            seq: 0,
            topic: "t/1".into(),
            key: Some(b"k".to_vec()),
            headers: vec![("h".into(), b"v".to_vec())],
            partition: Some(7),
            payload: b"{}".to_vec(),
            stored: true,
            timing: Default::default(),
        };
        let bytes: &[u8] = &[
            3, 0, // envelope: format 3
            7, 0, 0, 0, // partition
            3, 0, 0, 0, b't', b'/', b'1', // topic
            1, 0, 0, 0, b'k', // key
            1, 0, // one header
            1, 0, b'h', 1, 0, 0, 0, b'v', // its name and value
            b'{', b'}', // payload
        ];
        assert_eq!(encode(&m), bytes);
        assert_eq!(decode(bytes).unwrap(), m);
        let bare = Msg {
            key: None,
            headers: Vec::new(),
            partition: None,
            ..m
        };
        let bytes: &[u8] = &[
            3, 0, 0xff, 0xff, 0xff, 0xff, 3, 0, 0, 0, b't', b'/', b'1', 0xff, 0xff, 0xff, 0xff, 0, 0, b'{', b'}',
        ];
        assert_eq!(encode(&bare), bytes);
        assert_eq!(decode(bytes).unwrap(), bare);
    }

    #[test]
    fn values_of_the_first_format_still_read() {
        // `[topic length][topic][payload]`, as MQTT sinks stored them.
        let mut v = envelope::start(FORMAT_V1, 0);
        v.extend_from_slice(&18u32.to_le_bytes());
        v.extend_from_slice(b"plant/p-1/commands");
        v.extend_from_slice(br#"{"id":"x"}"#);
        assert_eq!(decode(&v).unwrap(), msg(None, &[]));
    }
}
