//! What travels through the log: collection creation and one partition's slice of a client
//! batch, with vectors already computed (replicas apply identical floats; a replay never
//! re-embeds).

use bytes::Bytes;
use serde::{Deserialize, Serialize};
use sieve_storage::{CollectionConfig, Document};

/// First byte of every encoded message: its format, so old messages stay readable.
const FORMAT: u8 = 1;

/// One log message.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub enum LogOp {
    /// Create a collection with these settings (published to every partition before its first
    /// write; applying it where the collection exists with the same settings does nothing).
    Create {
        /// Collection name.
        collection: String,
        /// Its settings.
        config: CollectionConfig,
    },
    /// Upsert then delete, in one collection, atomically on each replica of the partition.
    Write {
        /// Collection name.
        collection: String,
        /// Documents of this partition, vectors included.
        upserts: Vec<Document>,
        /// Ids of this partition to delete.
        deletes: Vec<String>,
    },
    /// Delete a collection and everything in it (published to every partition after the
    /// catalog forgot it; writes behind it in the stream find no collection and are skipped).
    Drop {
        /// Collection name.
        collection: String,
    },
}

impl LogOp {
    /// The bytes appended to the log.
    pub fn encode(&self) -> Bytes {
        Bytes::from(encode_value(self))
    }

    /// Reads a message back; `Err` names what is wrong with it.
    pub fn decode(bytes: &[u8]) -> Result<LogOp, String> {
        decode_value(bytes).map_err(|e| format!("log message: {e}"))
    }
}

/// Encodes a storage value (a filter, a document) for the internal shard service.
pub(crate) fn encode_value<T: Serialize>(value: &T) -> Vec<u8> {
    postcard::to_extend(value, vec![FORMAT]).expect("storage values serialise")
}

/// Reads back what [`encode_value`] wrote.
pub(crate) fn decode_value<T: for<'de> Deserialize<'de>>(bytes: &[u8]) -> Result<T, String> {
    match bytes {
        [FORMAT, rest @ ..] => postcard::from_bytes(rest).map_err(|e| format!("undecodable: {e}")),
        [other, ..] => Err(format!("format {other} is unknown to this build")),
        [] => Err("empty".to_string()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use sieve_storage::Value;

    #[test]
    fn messages_round_trip_with_their_format_byte() {
        let op = LogOp::Write {
            collection: "papers".into(),
            upserts: vec![Document {
                id: "d1".into(),
                text: "text".into(),
                metadata: [("year".to_string(), Value::Int(2024))].into(),
                vector: Some(vec![0.25, -1.5]),
                ..Document::default()
            }],
            deletes: vec!["d0".into()],
        };
        let bytes = op.encode();
        assert_eq!(bytes[0], FORMAT);
        assert_eq!(LogOp::decode(&bytes), Ok(op));
        assert_eq!(
            LogOp::decode(&[9, 1]),
            Err("log message: format 9 is unknown to this build".into())
        );
        assert_eq!(LogOp::decode(&[]), Err("log message: empty".into()));
    }
}
