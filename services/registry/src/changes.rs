//! The pure decision at the heart of the registry: given a batch of changes
//! in partition order and what is stored, which changes apply, which are
//! harmless redeliveries and which are stale.
//!
//! Rules (per household):
//! - a message at or before the stored source offset of the same partition,
//!   and not newer than the stored version, was already applied or
//!   superseded: a redelivery, accepted silently (a newer version at such an
//!   offset is new data on a topic that numbers from 0 again — recreated, or
//!   the embedded broker's in-memory topics after a restart — and applies);
//! - otherwise a higher version applies (upsert or tombstone);
//! - an equal version from the same event is a replay; anything else older
//!   or equal is stale. Both go to the dead-letter topic.

use std::collections::HashMap;

use sumud_shared::areas::AreaPath;
use sumud_shared::deadletter::Reason;
use sumud_shared::envelope::Rejection;
use sumud_shared::events::household::Household;
use sumud_shared::kafka::consumer::Verdict;

/// What a message asks for.
#[derive(Debug, Clone, PartialEq)]
pub enum Change {
    /// Insert or replace the full record.
    Upsert(Box<Upsert>),
    /// Tombstone from this version on.
    Remove,
}

/// A full record together with where its area sits in the hierarchy
/// (resolved once, when the message is checked).
#[derive(Debug, Clone, PartialEq)]
pub struct Upsert {
    /// The record as published.
    pub household: Household,
    /// Its area code placed in the hierarchy.
    pub area: AreaPath,
}

/// One change with its identity and provenance.
#[derive(Debug, Clone, PartialEq)]
pub struct Versioned {
    /// The household.
    pub household_id: String,
    /// The record version.
    pub version: i64,
    /// CloudEvent id.
    pub event_id: String,
    /// Kafka partition it was read from.
    pub partition: i32,
    /// Kafka offset it was read from.
    pub offset: i64,
    /// Upsert or removal.
    pub change: Change,
}

/// What is stored for a household.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Stored {
    /// Stored version.
    pub version: i64,
    /// Event that set it.
    pub event_id: String,
    /// Where that event was read.
    pub partition: i32,
    /// Offset of that event.
    pub offset: i64,
}

/// The outcome of [`decide`].
#[derive(Debug, Clone, PartialEq)]
pub struct Decision {
    /// One verdict per input, in input order.
    pub verdicts: Vec<Verdict>,
    /// Indexes (into the input, ascending) of the change to write per
    /// household: at most one per household, the last one that applies.
    pub winners: Vec<usize>,
}

/// The state a household is in while a batch is decided: borrowed from the
/// stored row or from the change that last applied.
#[derive(Clone, Copy)]
struct Current<'a> {
    version: i64,
    event_id: &'a str,
    partition: i32,
    offset: i64,
    /// The input that set it, if it came from this batch.
    winner: Option<usize>,
}

/// The verdict for each input, and the final change to write per household.
pub fn decide(batch: &[Versioned], stored: &HashMap<String, Stored>) -> Decision {
    let mut state: HashMap<&str, Current<'_>> = HashMap::with_capacity(batch.len());
    let mut verdicts = Vec::with_capacity(batch.len());
    for (i, c) in batch.iter().enumerate() {
        let current = state.get(c.household_id.as_str()).copied().or_else(|| {
            stored.get(&c.household_id).map(|s| Current {
                version: s.version,
                event_id: &s.event_id,
                partition: s.partition,
                offset: s.offset,
                winner: None,
            })
        });
        let verdict = match current {
            Some(s)
                if s.partition == c.partition && c.offset <= s.offset && c.version <= s.version =>
            {
                Verdict::Done
            }
            Some(s) if c.version <= s.version => {
                let reason = if c.version == s.version && c.event_id == s.event_id {
                    Reason::Replayed
                } else {
                    Reason::StaleVersion
                };
                Verdict::Reject(Rejection::new(
                    reason,
                    format!(
                        "version {} is not newer than stored version {}",
                        c.version, s.version
                    ),
                ))
            }
            _ => {
                state.insert(
                    &c.household_id,
                    Current {
                        version: c.version,
                        event_id: &c.event_id,
                        partition: c.partition,
                        offset: c.offset,
                        winner: Some(i),
                    },
                );
                Verdict::Done
            }
        };
        verdicts.push(verdict);
    }
    let mut winners: Vec<usize> = state.into_values().filter_map(|s| s.winner).collect();
    winners.sort_unstable();
    Decision { verdicts, winners }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn change(id: &str, version: i64, offset: i64) -> Versioned {
        Versioned {
            household_id: id.into(),
            version,
            event_id: format!("{id}-v{version}"),
            partition: 0,
            offset,
            change: Change::Remove,
        }
    }

    fn stored(version: i64, offset: i64, id: &str) -> Stored {
        Stored {
            version,
            event_id: format!("{id}-v{version}"),
            partition: 0,
            offset,
        }
    }

    fn reasons(v: &[Verdict]) -> Vec<Option<Reason>> {
        v.iter()
            .map(|v| match v {
                Verdict::Done => None,
                Verdict::Reject(r) => Some(r.reason),
            })
            .collect()
    }

    #[test]
    fn newer_versions_apply_and_only_the_last_is_written() {
        let batch = [change("a", 1, 10), change("a", 2, 11), change("b", 1, 12)];
        let d = decide(&batch, &HashMap::new());
        assert_eq!(reasons(&d.verdicts), vec![None, None, None]);
        assert_eq!(
            d.winners
                .iter()
                .map(|&i| (batch[i].household_id.as_str(), batch[i].version))
                .collect::<Vec<_>>(),
            vec![("a", 2), ("b", 1)]
        );
    }

    #[test]
    fn out_of_order_versions_are_stale() {
        let batch = [change("a", 3, 10), change("a", 2, 11)];
        let d = decide(&batch, &HashMap::new());
        assert_eq!(reasons(&d.verdicts), vec![None, Some(Reason::StaleVersion)]);
        assert_eq!(d.winners, vec![0]);
        let stored_map = HashMap::from([("a".to_string(), stored(5, 3, "a"))]);
        let d = decide(&[change("a", 4, 20)], &stored_map);
        assert_eq!(reasons(&d.verdicts), vec![Some(Reason::StaleVersion)]);
        assert!(d.winners.is_empty());
    }

    #[test]
    fn redelivered_messages_change_nothing_and_are_not_dead_lettered() {
        // v1 and v2 were applied from offsets 10 and 11; after a crash both come again.
        let stored_map = HashMap::from([("a".to_string(), stored(2, 11, "a"))]);
        let d = decide(&[change("a", 1, 10), change("a", 2, 11)], &stored_map);
        assert_eq!(reasons(&d.verdicts), vec![None, None]);
        assert!(d.winners.is_empty());
    }

    #[test]
    fn a_newer_version_at_a_reused_offset_applies() {
        // v2 was applied from offset 11; the topic was recreated and numbers
        // from 0 again, so v3 arrives at offset 5.
        let stored_map = HashMap::from([("a".to_string(), stored(2, 11, "a"))]);
        let d = decide(&[change("a", 3, 5)], &stored_map);
        assert_eq!(reasons(&d.verdicts), vec![None]);
        assert_eq!(d.winners, vec![0]);
    }

    #[test]
    fn the_same_event_published_twice_is_a_replay() {
        let stored_map = HashMap::from([("a".to_string(), stored(2, 11, "a"))]);
        let d = decide(&[change("a", 2, 40)], &stored_map);
        assert_eq!(reasons(&d.verdicts), vec![Some(Reason::Replayed)]);
    }
}
