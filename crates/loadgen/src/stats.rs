//! Fixed-size latency/jitter histograms (microseconds) with percentiles.
//!
//! Log-linear buckets: exact below 1,024 µs, then 128 sub-buckets per power of two (relative
//! error under 1 %). Recording is a couple of shifts and one increment, with no allocation, so
//! it can sit on the per-packet path for millions of samples.

use serde::Serialize;

/// Values below this are counted exactly.
const LINEAR_LIMIT: u64 = 1024;
/// log2 of [`LINEAR_LIMIT`].
const LINEAR_BITS: u32 = 10;
/// Sub-buckets per power of two above the linear range (2^7).
const SUB_BITS: u32 = 7;
const SUB_BUCKETS: usize = 1 << SUB_BITS;
const BUCKETS: usize = LINEAR_LIMIT as usize + (64 - LINEAR_BITS as usize) * SUB_BUCKETS;

/// A histogram of microsecond values.
#[derive(Debug, Clone)]
pub struct Histogram {
    buckets: Box<[u64]>,
    count: u64,
    max: u64,
    sum: u128,
}

/// What reports show of a histogram.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub struct Summary {
    pub count: u64,
    pub p50: u64,
    pub p90: u64,
    pub p99: u64,
    pub max: u64,
    pub mean: u64,
}

impl Default for Histogram {
    fn default() -> Self {
        Histogram::new()
    }
}

fn bucket_of(value: u64) -> usize {
    if value < LINEAR_LIMIT {
        return value as usize;
    }
    let exponent = 63 - value.leading_zeros(); // ≥ LINEAR_BITS
    let sub = (value >> (exponent - SUB_BITS)) as usize & (SUB_BUCKETS - 1);
    LINEAR_LIMIT as usize + (exponent - LINEAR_BITS) as usize * SUB_BUCKETS + sub
}

/// Largest value that falls in `bucket`.
fn bucket_high(bucket: usize) -> u64 {
    if bucket < LINEAR_LIMIT as usize {
        return bucket as u64;
    }
    let above = bucket - LINEAR_LIMIT as usize;
    let exponent = (above / SUB_BUCKETS) as u32 + LINEAR_BITS;
    let sub = (above % SUB_BUCKETS) as u64;
    let low = (1u64 << exponent) | (sub << (exponent - SUB_BITS));
    low.saturating_add((1u64 << (exponent - SUB_BITS)) - 1)
}

impl Histogram {
    pub fn new() -> Histogram {
        Histogram {
            buckets: vec![0; BUCKETS].into_boxed_slice(),
            count: 0,
            max: 0,
            sum: 0,
        }
    }

    #[inline]
    pub fn record(&mut self, value: u64) {
        self.buckets[bucket_of(value)] += 1;
        self.count += 1;
        self.max = self.max.max(value);
        self.sum += u128::from(value);
    }

    pub fn count(&self) -> u64 {
        self.count
    }

    pub fn max(&self) -> u64 {
        self.max
    }

    /// The smallest recorded bucket bound below which `percent` % of the values lie (nearest
    /// rank; the bucket's upper bound, capped at the maximum seen). 0 when empty.
    pub fn percentile(&self, percent: f64) -> u64 {
        if self.count == 0 {
            return 0;
        }
        let rank = ((percent.clamp(0.0, 100.0) / 100.0) * self.count as f64).ceil() as u64;
        let rank = rank.max(1);
        let mut seen = 0u64;
        for (bucket, &n) in self.buckets.iter().enumerate() {
            seen += n;
            if seen >= rank {
                return bucket_high(bucket).min(self.max);
            }
        }
        self.max
    }

    pub fn mean(&self) -> u64 {
        if self.count == 0 {
            0
        } else {
            (self.sum / u128::from(self.count)) as u64
        }
    }

    /// Adds every value of `other`.
    pub fn merge(&mut self, other: &Histogram) {
        for (mine, theirs) in self.buckets.iter_mut().zip(other.buckets.iter()) {
            *mine += theirs;
        }
        self.count += other.count;
        self.max = self.max.max(other.max);
        self.sum += other.sum;
    }

    pub fn summary(&self) -> Summary {
        Summary {
            count: self.count,
            p50: self.percentile(50.0),
            p90: self.percentile(90.0),
            p99: self.percentile(99.0),
            max: self.max,
            mean: self.mean(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn empty_histogram_reports_zeros() {
        let h = Histogram::new();
        assert_eq!(h.summary().p99, 0);
        assert_eq!(h.summary().count, 0);
    }

    #[test]
    fn small_values_are_exact_nearest_rank() {
        let mut h = Histogram::new();
        for v in 1..=100 {
            h.record(v);
        }
        assert_eq!(h.percentile(50.0), 50);
        assert_eq!(h.percentile(90.0), 90);
        assert_eq!(h.percentile(99.0), 99);
        assert_eq!(h.percentile(100.0), 100);
        assert_eq!(h.max(), 100);
        assert_eq!(h.mean(), 50);
    }

    #[test]
    fn large_values_are_within_one_percent_and_capped_at_max() {
        let mut h = Histogram::new();
        for v in [5_000u64, 20_000, 1_000_000, 3_000_000_000] {
            h.record(v);
        }
        let p25 = h.percentile(25.0);
        assert!((5_000..=5_050).contains(&p25), "{p25}");
        let p50 = h.percentile(50.0);
        assert!((20_000..=20_200).contains(&p50), "{p50}");
        assert_eq!(h.percentile(100.0), 3_000_000_000);
    }

    #[test]
    fn bucket_bounds_cover_every_value_once() {
        for v in (0..200_000u64).step_by(7).chain([u64::MAX / 2, u64::MAX]) {
            let b = bucket_of(v);
            assert!(bucket_high(b) >= v, "value {v} above its bucket {b}");
            if b > 0 {
                assert!(bucket_high(b - 1) < v, "value {v} fits an earlier bucket");
            }
        }
    }

    #[test]
    fn merge_adds_counts() {
        let mut a = Histogram::new();
        let mut b = Histogram::new();
        a.record(10);
        b.record(30);
        b.record(20);
        a.merge(&b);
        assert_eq!(a.count(), 3);
        assert_eq!(a.percentile(50.0), 20);
        assert_eq!(a.max(), 30);
    }
}
