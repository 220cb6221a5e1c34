//! Exactly-once application of a cluster's replicated log: per stream partition, the position
//! of the last message applied, written in the same sled transaction as its documents.

use std::collections::BTreeMap;

use crate::error::{Context, Error, Result};

/// Name of the sled tree holding one position per partition (outside every collection's
/// `c{uid}/` prefix, so collection deletes and orphan removal leave it alone).
pub(crate) const TREE: &str = "log_positions";

/// A place in a cluster's replicated log: message `seq` (from 1) of `partition`'s stream.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct LogPosition {
    /// The stream partition.
    pub partition: u32,
    /// The message's sequence in that partition's stream.
    pub seq: u64,
}

/// Why a logged message was not applied: it is not the next one of its partition.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum OutOfOrder {
    /// At or below the partition's applied position: already applied, skip it.
    Duplicate {
        /// The partition's applied position.
        applied: u64,
    },
    /// Past the next expected message: messages `applied + 1 ..` must be read first.
    Gap {
        /// The partition's applied position.
        applied: u64,
    },
}

/// What applying a logged message did.
#[derive(Clone, Debug, PartialEq)]
pub enum Logged<T> {
    /// Applied, and the partition's position moved to its sequence.
    Applied(T),
    /// Not applied; nothing changed.
    Refused(OutOfOrder),
}

pub(crate) fn key(partition: u32) -> [u8; 4] {
    partition.to_be_bytes()
}

pub(crate) fn decode(bytes: Option<impl AsRef<[u8]>>) -> Result<u64> {
    match bytes {
        None => Ok(0),
        Some(v) => v
            .as_ref()
            .try_into()
            .map(u64::from_be_bytes)
            .map_err(|_| Error::Corrupt("a log position is not 8 bytes".to_string())),
    }
}

impl LogPosition {
    /// `Ok` when this is the message after `applied`, its partition's applied position.
    pub fn follows(self, applied: u64) -> std::result::Result<(), OutOfOrder> {
        check(applied, self)
    }
}

/// `Ok` when `at` is the message after `applied`.
pub(crate) fn check(applied: u64, at: LogPosition) -> std::result::Result<(), OutOfOrder> {
    if at.seq <= applied {
        Err(OutOfOrder::Duplicate { applied })
    } else if at.seq > applied + 1 {
        Err(OutOfOrder::Gap { applied })
    } else {
        Ok(())
    }
}

/// Every partition's applied position.
pub(crate) fn read_all(tree: &sled::Tree) -> Result<BTreeMap<u32, u64>> {
    tree.iter()
        .map(|entry| {
            let (k, v) = entry.context("reading log positions")?;
            let partition = k
                .as_ref()
                .try_into()
                .map(u32::from_be_bytes)
                .map_err(|_| Error::Corrupt("a log position key is not 4 bytes".to_string()))?;
            Ok((partition, decode(Some(v))?))
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_the_next_message_passes() {
        let at = |seq| LogPosition { partition: 3, seq };
        assert_eq!(check(0, at(1)), Ok(()));
        assert_eq!(check(7, at(8)), Ok(()));
        assert_eq!(check(7, at(7)), Err(OutOfOrder::Duplicate { applied: 7 }));
        assert_eq!(check(7, at(2)), Err(OutOfOrder::Duplicate { applied: 7 }));
        assert_eq!(check(7, at(9)), Err(OutOfOrder::Gap { applied: 7 }));
    }
}
