//! The engine's timers: a min-heap of deadlines. Entries are never removed; each carries the
//! generation it was armed for and is ignored when it fires stale.

use std::cmp::Reverse;
use std::collections::BinaryHeap;
use std::time::Instant;

use crate::id::CallId;

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub(crate) enum Timer {
    /// The ring timeout of the offer made with this generation.
    Ring {
        call: CallId,
        generation: u64,
    },
    /// Maximum wait in the queue entered on this visit.
    MaxWait {
        call: CallId,
        visit: u32,
    },
    Escalate {
        call: CallId,
        visit: u32,
    },
    Announce {
        call: CallId,
        visit: u32,
    },
    /// Wrap-up end or retry delay end for the agent state of this generation.
    AgentWake {
        agent: usize,
        generation: u64,
    },
}

#[derive(Debug, Default)]
pub(crate) struct Timers {
    heap: BinaryHeap<Reverse<(Instant, u64, Timer)>>,
    armed: u64,
}

impl Timers {
    pub(crate) fn arm(&mut self, at: Instant, timer: Timer) {
        self.armed += 1;
        self.heap.push(Reverse((at, self.armed, timer)));
    }

    pub(crate) fn next_deadline(&self) -> Option<Instant> {
        self.heap.peek().map(|Reverse((at, _, _))| *at)
    }

    /// The earliest timer due at `now`, if any.
    pub(crate) fn pop_due(&mut self, now: Instant) -> Option<Timer> {
        match self.heap.peek() {
            Some(Reverse((at, _, _))) if *at <= now => self.heap.pop().map(|Reverse((_, _, t))| t),
            _ => None,
        }
    }
}
