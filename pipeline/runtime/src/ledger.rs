//! Which offsets may be committed: only the contiguous prefix of messages whose every
//! output the broker has acknowledged. A later offset never overtakes an earlier one that
//! is still in flight or has failed.

use std::collections::{HashMap, VecDeque};
use std::sync::{Mutex, MutexGuard};

/// A topic-partition.
pub(crate) type Tp = (String, i32);

#[derive(Debug, Default)]
struct Partition {
    epoch: u64,
    /// Tracked messages in offset order, with the number of outputs still unacknowledged.
    pending: VecDeque<(i64, u32)>,
    /// The next offset to commit (last done + 1), once it changed since the last take.
    committable: Option<i64>,
}

#[derive(Debug, Default)]
pub(crate) struct Ledger {
    partitions: HashMap<Tp, Partition>,
    next_epoch: u64,
    in_flight: usize,
    fatal: Option<String>,
    /// When the last in-flight message became fully acknowledged.
    last_drained: Option<std::time::Instant>,
}

impl Ledger {
    /// A partition was assigned to us; messages received under an older assignment of it
    /// are stale (their epoch no longer matches).
    pub(crate) fn assign(&mut self, tp: Tp) {
        self.next_epoch += 1;
        let epoch = self.next_epoch;
        if let Some(old) = self.partitions.insert(
            tp,
            Partition {
                epoch,
                ..Partition::default()
            },
        ) {
            self.in_flight -= old.pending.len();
        }
    }

    /// The partition was taken away. Returns the offset still to commit for it, if any.
    pub(crate) fn revoke(&mut self, tp: &Tp) -> Option<i64> {
        let p = self.partitions.remove(tp)?;
        self.in_flight -= p.pending.len();
        p.committable
    }

    pub(crate) fn epoch(&self, tp: &Tp) -> Option<u64> {
        self.partitions.get(tp).map(|p| p.epoch)
    }

    /// Records a handled message whose `outputs` messages were just enqueued for delivery.
    /// Returns false when the partition was revoked (or reassigned) since the message was
    /// received: its outputs must not be produced, the new owner will process it again.
    pub(crate) fn track(&mut self, tp: &Tp, epoch: u64, offset: i64, outputs: u32) -> bool {
        let Some(p) = self.partitions.get_mut(tp) else {
            return false;
        };
        if p.epoch != epoch {
            return false;
        }
        debug_assert!(p.pending.back().is_none_or(|(o, _)| *o < offset), "offsets must grow");
        p.pending.push_back((offset, outputs));
        self.in_flight += 1;
        if outputs == 0 {
            self.advance(tp);
        }
        true
    }

    /// One output of a message was acknowledged by the broker.
    pub(crate) fn ack(&mut self, tp: &Tp, epoch: u64, offset: i64) {
        let Some(p) = self.partitions.get_mut(tp) else {
            return;
        };
        if p.epoch != epoch {
            return;
        }
        if let Ok(i) = p.pending.binary_search_by_key(&offset, |(o, _)| *o) {
            let remaining = &mut p.pending[i].1;
            *remaining = remaining.saturating_sub(1);
            if i == 0 && *remaining == 0 {
                self.advance(tp);
            }
        }
    }

    fn advance(&mut self, tp: &Tp) {
        let Some(p) = self.partitions.get_mut(tp) else {
            return;
        };
        while let Some(&(offset, 0)) = p.pending.front() {
            p.pending.pop_front();
            self.in_flight -= 1;
            p.committable = Some(offset + 1);
        }
        if self.in_flight == 0 {
            self.last_drained = Some(std::time::Instant::now());
        }
    }

    pub(crate) fn last_drained(&self) -> Option<std::time::Instant> {
        self.last_drained
    }

    /// A delivery failed for good, or the broker refused the worker what it needs (a
    /// missing ACL): nothing after it may be committed, the worker must stop.
    pub(crate) fn fail(&mut self, reason: String) {
        self.fatal.get_or_insert(reason);
    }

    pub(crate) fn fatal(&self) -> Option<&str> {
        self.fatal.as_deref()
    }

    /// Offsets that became committable since the last call.
    pub(crate) fn take_committable(&mut self) -> Vec<(Tp, i64)> {
        self.partitions
            .iter_mut()
            .filter_map(|(tp, p)| p.committable.take().map(|o| (tp.clone(), o)))
            .collect()
    }

    /// Messages tracked but not yet fully acknowledged.
    pub(crate) fn in_flight(&self) -> usize {
        self.in_flight
    }

    pub(crate) fn in_flight_for(&self, tp: &Tp) -> usize {
        self.partitions.get(tp).map_or(0, |p| p.pending.len())
    }
}

/// The ledger, locked.
pub(crate) fn lock(ledger: &Mutex<Ledger>) -> MutexGuard<'_, Ledger> {
    // A panic while holding the lock cannot leave the ledger half-updated in a way that
    // loses data (at worst an offset is not committed), so poisoning is ignored.
    ledger.lock().unwrap_or_else(|p| p.into_inner())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tp(p: i32) -> Tp {
        ("t".to_owned(), p)
    }

    #[test]
    fn only_the_contiguous_acknowledged_prefix_is_committable() {
        let mut l = Ledger::default();
        l.assign(tp(0));
        let e = l.epoch(&tp(0)).expect("assigned");
        assert!(l.track(&tp(0), e, 10, 2));
        assert!(l.track(&tp(0), e, 11, 1));
        assert!(l.track(&tp(0), e, 12, 1));
        // 12 and 11 done first: nothing may be committed while 10 is in flight.
        l.ack(&tp(0), e, 12);
        l.ack(&tp(0), e, 11);
        assert!(l.take_committable().is_empty());
        l.ack(&tp(0), e, 10);
        assert!(l.take_committable().is_empty(), "10 has a second output in flight");
        l.ack(&tp(0), e, 10);
        assert_eq!(l.take_committable(), vec![(tp(0), 13)]);
        assert_eq!(l.in_flight(), 0);
        assert!(l.take_committable().is_empty(), "taken once");
    }

    #[test]
    fn messages_without_outputs_commit_in_order() {
        let mut l = Ledger::default();
        l.assign(tp(1));
        let e = l.epoch(&tp(1)).expect("assigned");
        assert!(l.track(&tp(1), e, 5, 1));
        assert!(l.track(&tp(1), e, 6, 0));
        assert!(l.take_committable().is_empty());
        l.ack(&tp(1), e, 5);
        assert_eq!(l.take_committable(), vec![(tp(1), 7)]);
    }

    #[test]
    fn stale_messages_of_a_revoked_partition_are_refused() {
        let mut l = Ledger::default();
        l.assign(tp(0));
        let old = l.epoch(&tp(0)).expect("assigned");
        assert!(l.track(&tp(0), old, 1, 1));
        assert_eq!(l.revoke(&tp(0)), None);
        assert_eq!(l.in_flight(), 0);
        assert!(!l.track(&tp(0), old, 2, 1), "revoked");
        l.assign(tp(0));
        assert!(!l.track(&tp(0), old, 2, 1), "reassigned: old epoch is stale");
        let new = l.epoch(&tp(0)).expect("assigned");
        l.ack(&tp(0), old, 1); // a late ack of the old assignment changes nothing
        assert!(l.take_committable().is_empty());
        assert!(l.track(&tp(0), new, 2, 1));
        l.ack(&tp(0), new, 2);
        assert_eq!(l.revoke(&tp(0)), Some(3));
    }

    #[test]
    fn a_failure_is_sticky() {
        let mut l = Ledger::default();
        l.fail("first".into());
        l.fail("second".into());
        assert_eq!(l.fatal(), Some("first"));
    }
}
