//! Consistency tokens: how far a client's writes reached in each partition's stream. A router
//! puts one in every ingest ack; a read given it back (`AFTER`) is served only by replicas that
//! have applied at least that far, so a client reads its own writes.
//!
//! The text form is `1/{partitions}/{p}:{seq},{p}:{seq}…` (partitions ascending): version,
//! the cluster's partition count (a token from a cluster of another shape is refused), then
//! each touched partition's stream sequence.

use std::collections::BTreeMap;
use std::fmt;

use crate::partition::Partition;

const VERSION: &str = "1";

/// Stream positions a read must have seen.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Token {
    partitions: u32,
    positions: BTreeMap<Partition, u64>,
}

impl Token {
    /// An empty token of a cluster with `partitions` partitions.
    pub fn new(partitions: u32) -> Token {
        Token { partitions, positions: BTreeMap::new() }
    }

    /// Records that `partition` reached `seq` (a token only moves forward).
    pub fn advance(&mut self, partition: Partition, seq: u64) {
        let at = self.positions.entry(partition).or_default();
        *at = (*at).max(seq);
    }

    /// Takes in another token of the same cluster.
    pub fn merge(&mut self, other: &Token) {
        for (&partition, &seq) in &other.positions {
            self.advance(partition, seq);
        }
    }

    /// (partition, sequence) pairs, partitions ascending.
    pub fn positions(&self) -> impl Iterator<Item = (Partition, u64)> + '_ {
        self.positions.iter().map(|(&p, &seq)| (p, seq))
    }

    /// The position `partition` must have reached (0: none).
    pub fn at(&self, partition: Partition) -> u64 {
        self.positions.get(&partition).copied().unwrap_or(0)
    }

    /// True when it asks for nothing.
    pub fn is_empty(&self) -> bool {
        self.positions.is_empty()
    }

    /// Reads a token given by a client of a cluster with `partitions` partitions; `Err` says
    /// what is wrong with it.
    pub fn parse(text: &str, partitions: u32) -> Result<Token, String> {
        let mut parts = text.splitn(3, '/');
        let (version, count, list) = (parts.next(), parts.next(), parts.next());
        let (Some(version), Some(count), Some(list)) = (version, count, list) else {
            return Err(format!(
                "'{}' is not a consistency token (expected the IngestAck.consistency_token of \
                 this cluster, such as '1/16/3:42')",
                shorten(text)
            ));
        };
        if version != VERSION {
            return Err(format!(
                "token version '{}' is not known (this build reads 1)",
                shorten(version)
            ));
        }
        let count: u32 =
            count.parse().map_err(|_| format!("'{}' is not a partition count", shorten(count)))?;
        if count != partitions {
            return Err(format!(
                "the token is from a cluster of {count} partitions; this one has {partitions}"
            ));
        }
        let mut token = Token::new(partitions);
        if list.is_empty() {
            return Ok(token);
        }
        for item in list.split(',') {
            let parsed = item.split_once(':').and_then(|(p, seq)| {
                Some((p.parse::<Partition>().ok()?, seq.parse::<u64>().ok()?))
            });
            let Some((partition, seq)) = parsed else {
                return Err(format!("'{}' is not a partition:sequence pair", shorten(item)));
            };
            if partition >= partitions {
                return Err(format!(
                    "partition {partition} is out of range (the cluster has {partitions})"
                ));
            }
            if token.positions.insert(partition, seq).is_some() {
                return Err(format!("partition {partition} appears twice"));
            }
        }
        Ok(token)
    }
}

/// At most 40 characters of a client's text, for error messages.
fn shorten(text: &str) -> String {
    match text.char_indices().nth(40) {
        Some((end, _)) => format!("{}…", &text[..end]),
        None => text.to_string(),
    }
}

impl fmt::Display for Token {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{VERSION}/{}/", self.partitions)?;
        for (i, (p, seq)) in self.positions().enumerate() {
            if i > 0 {
                f.write_str(",")?;
            }
            write!(f, "{p}:{seq}")?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trips_and_only_moves_forward() {
        let mut token = Token::new(16);
        token.advance(3, 42);
        token.advance(0, 7);
        token.advance(3, 40);
        assert_eq!(token.to_string(), "1/16/0:7,3:42");
        assert_eq!(Token::parse("1/16/0:7,3:42", 16).unwrap(), token);
        assert_eq!(token.at(3), 42);
        assert_eq!(token.at(5), 0);
        let mut other = Token::new(16);
        other.advance(5, 1);
        other.advance(0, 9);
        token.merge(&other);
        assert_eq!(token.to_string(), "1/16/0:9,3:42,5:1");
        assert_eq!(Token::parse("1/16/", 16).unwrap(), Token::new(16));
    }

    #[test]
    fn refuses_malformed_tokens_precisely() {
        let err = |text| Token::parse(text, 16).unwrap_err();
        assert_eq!(
            err("abc"),
            "'abc' is not a consistency token (expected the IngestAck.consistency_token of this \
             cluster, such as '1/16/3:42')"
        );
        assert_eq!(err("2/16/0:1"), "token version '2' is not known (this build reads 1)");
        assert_eq!(err("1/x/0:1"), "'x' is not a partition count");
        assert_eq!(err("1/6/0:1"), "the token is from a cluster of 6 partitions; this one has 16");
        assert_eq!(err("1/16/0:1,3"), "'3' is not a partition:sequence pair");
        assert_eq!(err("1/16/0:-1"), "'0:-1' is not a partition:sequence pair");
        assert_eq!(err("1/16/16:1"), "partition 16 is out of range (the cluster has 16)");
        assert_eq!(err("1/16/2:1,2:5"), "partition 2 appears twice");
        assert_eq!(
            err(&"9".repeat(100)),
            format!(
                "'{}…' is not a consistency token (expected the IngestAck.consistency_token of this cluster, such as '1/16/3:42')",
                "9".repeat(40)
            )
        );
    }
}
