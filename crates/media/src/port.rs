//! RTP/RTCP port allocation over a configured range: even RTP port, odd RTCP port (RFC 3550
//! §11), released pairs go back to the pool. Allocation happens once per call, so a mutex here
//! is off the packet path. Allocation rotates through the range so a just-released pair is not
//! handed out again at once (late packets of the old call would land in the new one).

use std::collections::VecDeque;
use std::ops::RangeInclusive;
use std::sync::{Arc, Mutex};

use thiserror::Error;

#[derive(Debug, Error, PartialEq, Eq)]
pub enum PortError {
    #[error("port range {0}-{1} holds no even/odd pair")]
    EmptyRange(u16, u16),
    #[error("all RTP port pairs are in use")]
    Exhausted,
}

/// An allocated pair; the RTCP port is `rtp + 1`. Returned to the pool on drop.
#[derive(Debug)]
pub struct PortLease {
    rtp: u16,
    pool: Arc<Mutex<VecDeque<u16>>>,
}

impl PortLease {
    pub fn rtp_port(&self) -> u16 {
        self.rtp
    }

    pub fn rtcp_port(&self) -> u16 {
        self.rtp + 1
    }
}

impl Drop for PortLease {
    fn drop(&mut self) {
        if let Ok(mut free) = self.pool.lock() {
            free.push_back(self.rtp);
        }
    }
}

/// Hands out even/odd port pairs from a range. Cheap to clone (shared pool).
#[derive(Debug, Clone)]
pub struct PortAllocator {
    free: Arc<Mutex<VecDeque<u16>>>,
    pairs: usize,
}

impl PortAllocator {
    pub fn new(range: RangeInclusive<u16>) -> Result<Self, PortError> {
        let (low, high) = (*range.start(), *range.end());
        let first = low.saturating_add(low % 2);
        let free: VecDeque<u16> = (first as u32..high as u32)
            .step_by(2)
            .map(|p| p as u16)
            .collect();
        if free.is_empty() {
            return Err(PortError::EmptyRange(low, high));
        }
        Ok(PortAllocator {
            pairs: free.len(),
            free: Arc::new(Mutex::new(free)),
        })
    }

    /// Takes the least recently used free pair.
    pub fn allocate(&self) -> Result<PortLease, PortError> {
        let mut free = self.free.lock().map_err(|_| PortError::Exhausted)?;
        let rtp = free.pop_front().ok_or(PortError::Exhausted)?;
        Ok(PortLease {
            rtp,
            pool: Arc::clone(&self.free),
        })
    }

    /// Number of pairs in the range.
    pub fn capacity(&self) -> usize {
        self.pairs
    }

    /// Number of pairs free now.
    pub fn available(&self) -> usize {
        self.free.lock().map(|f| f.len()).unwrap_or(0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pairs_are_even_odd_and_within_range() {
        let allocator = PortAllocator::new(10001..=10010).unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(allocator.capacity(), 4); // 10002, 10004, 10006, 10008 (10010 has no 10011)
        let leases: Vec<_> = (0..4).filter_map(|_| allocator.allocate().ok()).collect();
        let ports: Vec<_> = leases
            .iter()
            .map(|l| (l.rtp_port(), l.rtcp_port()))
            .collect();
        assert_eq!(
            ports,
            [
                (10002, 10003),
                (10004, 10005),
                (10006, 10007),
                (10008, 10009)
            ]
        );
        assert_eq!(
            allocator.allocate().map(|l| l.rtp_port()),
            Err(PortError::Exhausted)
        );
    }

    #[test]
    fn released_pairs_are_reused_after_the_others() {
        let allocator = PortAllocator::new(20000..=20007).unwrap_or_else(|e| panic!("{e}"));
        let first = allocator.allocate().map(|l| l.rtp_port());
        assert_eq!(first, Ok(20000)); // lease dropped at once → back of the queue
        assert_eq!(allocator.available(), 4);
        let order: Vec<_> = (0..4)
            .filter_map(|_| allocator.allocate().ok())
            .map(|l| l.rtp_port())
            .collect();
        assert_eq!(order, [20002, 20004, 20006, 20000]);
    }

    #[test]
    fn empty_range_is_an_error() {
        assert_eq!(
            PortAllocator::new(5000..=5000).map(|a| a.capacity()),
            Err(PortError::EmptyRange(5000, 5000))
        );
    }
}
