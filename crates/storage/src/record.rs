//! What sled holds: document records (`docs`: id → point id + document) and op-log entries
//! (`oplog`: sequence → upsert or delete), each behind a format byte.

use serde::{Deserialize, Serialize};

use crate::document::{Document, Metadata};
use crate::error::{Error, Result};
use crate::{PointId, Seq};

const RECORD_FORMAT: u8 = 1;
const OP_FORMAT: u8 = 1;

/// The stored body of a document; the id is the sled key.
#[derive(Serialize, Deserialize)]
struct Body {
    title: String,
    text: String,
    metadata: Metadata,
    vector: Option<Vec<f32>>,
}

/// Encodes a document version: format byte, point id (big-endian, readable without decoding
/// the rest), then the body.
pub(crate) fn encode_record(pid: PointId, doc: &Document) -> Vec<u8> {
    let body = Body {
        title: doc.title.clone(),
        text: doc.text.clone(),
        metadata: doc.metadata.clone(),
        vector: doc.vector.clone(),
    };
    let mut bytes = vec![RECORD_FORMAT];
    bytes.extend_from_slice(&pid.to_be_bytes());
    postcard::to_extend(&body, bytes).expect("documents serialise")
}

/// The point id of a stored record.
pub(crate) fn record_pid(bytes: &[u8]) -> Result<PointId> {
    match bytes {
        [RECORD_FORMAT, rest @ ..] if rest.len() >= 8 => {
            Ok(PointId::from_be_bytes(rest[..8].try_into().expect("8 bytes")))
        }
        _ => Err(Error::Corrupt(format!(
            "document record of {} bytes has an unknown format",
            bytes.len()
        ))),
    }
}

/// Decodes a stored record back into its point id and document.
pub(crate) fn decode_record(id: &[u8], bytes: &[u8]) -> Result<(PointId, Document)> {
    let pid = record_pid(bytes)?;
    let id = String::from_utf8(id.to_vec())
        .map_err(|_| Error::Corrupt("document id is not UTF-8".into()))?;
    let body: Body = postcard::from_bytes(&bytes[9..])
        .map_err(|e| Error::Corrupt(format!("document '{id}' does not decode: {e}")))?;
    let Body { title, text, metadata, vector } = body;
    Ok((pid, Document { id, title, text, metadata, vector }))
}

/// One op-log entry.
#[derive(Debug, PartialEq, Serialize, Deserialize)]
pub(crate) enum Op {
    /// Document `id` now has version `pid`.
    Upsert { id: String, pid: PointId },
    /// Document `id` (version `pid`) was deleted.
    Delete { id: String, pid: PointId },
}

impl Op {
    pub(crate) fn encode(&self) -> Vec<u8> {
        postcard::to_extend(self, vec![OP_FORMAT]).expect("ops serialise")
    }

    pub(crate) fn decode(seq: Seq, bytes: &[u8]) -> Result<Op> {
        match bytes {
            [OP_FORMAT, rest @ ..] => postcard::from_bytes(rest)
                .map_err(|e| Error::Corrupt(format!("op-log entry {seq} does not decode: {e}"))),
            _ => Err(Error::Corrupt(format!("op-log entry {seq} has an unknown format"))),
        }
    }
}

/// Op-log keys sort by sequence.
pub(crate) fn seq_key(seq: Seq) -> [u8; 8] {
    seq.to_be_bytes()
}

pub(crate) fn key_seq(key: &[u8]) -> Result<Seq> {
    key.try_into()
        .map(Seq::from_be_bytes)
        .map_err(|_| Error::Corrupt(format!("op-log key of {} bytes", key.len())))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::document::Value;

    #[test]
    fn records_and_ops_round_trip() {
        let doc = Document {
            id: "d1".into(),
            title: "T".into(),
            text: "body".into(),
            metadata: [("year".to_string(), Value::Int(2020))].into(),
            vector: Some(vec![0.5, -1.0]),
        };
        let bytes = encode_record(77, &doc);
        assert_eq!(record_pid(&bytes).unwrap(), 77);
        assert_eq!(decode_record(b"d1", &bytes).unwrap(), (77, doc));
        let op = Op::Delete { id: "d1".into(), pid: 77 };
        assert_eq!(Op::decode(3, &op.encode()).unwrap(), op);
        assert!(matches!(Op::decode(3, b"\x09junk"), Err(Error::Corrupt(_))));
        assert_eq!(key_seq(&seq_key(12345)).unwrap(), 12345);
    }
}
