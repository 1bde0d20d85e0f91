//! Adaptive jitter buffer (sans-IO): packets go in with their arrival time, one 20 ms frame
//! comes out per pacing tick.
//!
//! - Reordering: packets are slotted by extended sequence number.
//! - Duplicates and packets whose play-out time has passed are dropped (and counted).
//! - Adaptive delay: the target depth follows the RFC 3550 interarrival jitter estimate plus the
//!   recent worst transit excursion; it grows at once (by inserting one concealed frame) and
//!   shrinks only after a calm second (by skipping one frame).
//! - Missing frames are reported as [`Playout::Lost`] so the caller runs packet-loss concealment.
//!
//! Slots are allocated once; `push` and `pop` never allocate.

use std::time::Instant;

use crate::codec::MAX_FRAME_BYTES;

/// Capacity in frames (1.28 s at 20 ms): far beyond any sane target depth.
const SLOTS: usize = 64;
/// Frames of calm (no growth) before the buffer may shrink by one frame.
const CALM_FRAMES_BEFORE_SHRINK: u32 = 50;

/// Tunables of a jitter buffer.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct JitterConfig {
    /// Smallest playout delay in frames (≥ 1).
    pub min_depth: usize,
    /// Largest playout delay in frames.
    pub max_depth: usize,
    /// RTP timestamp units per frame (160 for 20 ms at 8 kHz).
    pub frame_timestamp_units: u32,
    /// RTP clock rate (8000).
    pub clock_rate: u32,
}

impl Default for JitterConfig {
    fn default() -> Self {
        JitterConfig {
            min_depth: 2,
            max_depth: 12,
            frame_timestamp_units: 160,
            clock_rate: 8000,
        }
    }
}

/// What happened to a pushed packet.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PushOutcome {
    Accepted,
    Duplicate,
    /// Arrived after its play-out time.
    Late,
    /// So far ahead of the play-out point that it cannot be slotted (stream jump): the buffer
    /// resynchronised on it.
    Resynchronised,
    /// Payload larger than one 20 ms frame of any of our codecs.
    Oversized,
}

/// One frame out of the buffer.
#[derive(Debug, PartialEq, Eq)]
pub enum Playout<'a> {
    /// Still filling up to the target depth (or nothing received yet): play comfort noise/silence.
    Buffering,
    /// The frame for this tick.
    Frame {
        payload: &'a [u8],
        payload_type: u8,
        sequence: u16,
    },
    /// This frame is missing (lost or not yet here): conceal it.
    Lost,
}

#[derive(Debug, Clone, Copy)]
struct Slot {
    occupied: bool,
    extended_sequence: u64,
    payload_type: u8,
    length: usize,
    payload: [u8; MAX_FRAME_BYTES],
}

const EMPTY_SLOT: Slot = Slot {
    occupied: false,
    extended_sequence: 0,
    payload_type: 0,
    length: 0,
    payload: [0; MAX_FRAME_BYTES],
};

/// Counters for the call's quality summary.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct JitterStats {
    pub accepted: u64,
    pub duplicates: u64,
    pub late: u64,
    pub lost: u64,
    pub reordered: u64,
    pub grown: u64,
    pub shrunk: u64,
}

/// The adaptive jitter buffer.
#[derive(Debug)]
pub struct JitterBuffer {
    config: JitterConfig,
    slots: Box<[Slot; SLOTS]>,
    /// Extended sequence number of the next frame to play, once playing.
    next_play: Option<u64>,
    highest: Option<u64>,
    target_depth: usize,
    /// RFC 3550 interarrival jitter, in timestamp units (×1, kept as f64 for smoothing).
    jitter: f64,
    previous_transit: Option<f64>,
    /// Decaying maximum of |transit deviation| in timestamp units (catches bursts).
    peak_deviation: f64,
    epoch: Option<Instant>,
    calm_frames: u32,
    stats: JitterStats,
}

impl JitterBuffer {
    pub fn new(config: JitterConfig) -> Self {
        let min_depth = config.min_depth.max(1);
        let config = JitterConfig {
            min_depth,
            max_depth: config.max_depth.clamp(min_depth, SLOTS / 2),
            ..config
        };
        JitterBuffer {
            config,
            slots: Box::new([EMPTY_SLOT; SLOTS]),
            next_play: None,
            highest: None,
            target_depth: min_depth,
            jitter: 0.0,
            previous_transit: None,
            peak_deviation: 0.0,
            epoch: None,
            calm_frames: 0,
            stats: JitterStats::default(),
        }
    }

    pub fn stats(&self) -> JitterStats {
        self.stats
    }

    /// Current target playout delay, in frames.
    pub fn target_depth(&self) -> usize {
        self.target_depth
    }

    /// RFC 3550 interarrival jitter estimate, in milliseconds.
    pub fn jitter_ms(&self) -> f64 {
        self.jitter * 1000.0 / self.config.clock_rate as f64
    }

    /// Forgets everything (new far-end stream).
    pub fn reset(&mut self) {
        for slot in self.slots.iter_mut() {
            slot.occupied = false;
        }
        self.next_play = None;
        self.highest = None;
        self.previous_transit = None;
        self.calm_frames = 0;
    }

    fn extend(&self, sequence: u16) -> u64 {
        match self.highest {
            None => (1u64 << 16) + sequence as u64,
            Some(highest) => {
                let base = highest & !0xFFFF;
                let candidate = base + sequence as u64;
                let candidates = [
                    candidate.saturating_sub(1 << 16),
                    candidate,
                    candidate + (1 << 16),
                ];
                let mut best = candidate;
                let mut best_distance = u64::MAX;
                for c in candidates {
                    let distance = c.abs_diff(highest);
                    if distance < best_distance {
                        best = c;
                        best_distance = distance;
                    }
                }
                best
            }
        }
    }

    /// Adds a received packet. `now` is its arrival time.
    pub fn push(
        &mut self,
        now: Instant,
        sequence: u16,
        timestamp: u32,
        payload_type: u8,
        payload: &[u8],
    ) -> PushOutcome {
        if payload.len() > MAX_FRAME_BYTES {
            return PushOutcome::Oversized;
        }
        self.update_jitter(now, timestamp);
        let extended = self.extend(sequence);
        let mut outcome = PushOutcome::Accepted;
        if let Some(next) = self.next_play {
            if extended < next {
                self.stats.late += 1;
                // A late packet means our delay was too short: grow now.
                self.grow();
                return PushOutcome::Late;
            }
            if extended >= next + SLOTS as u64 {
                self.reset();
                outcome = PushOutcome::Resynchronised;
            }
        } else if let Some(highest) = self.highest
            && highest.abs_diff(extended) >= SLOTS as u64
        {
            self.reset();
            outcome = PushOutcome::Resynchronised;
        }
        let extended = if outcome == PushOutcome::Resynchronised {
            self.extend(sequence)
        } else {
            extended
        };
        let slot = &mut self.slots[(extended % SLOTS as u64) as usize];
        if slot.occupied && slot.extended_sequence == extended {
            self.stats.duplicates += 1;
            return PushOutcome::Duplicate;
        }
        slot.occupied = true;
        slot.extended_sequence = extended;
        slot.payload_type = payload_type;
        slot.length = payload.len();
        slot.payload[..payload.len()].copy_from_slice(payload);
        match self.highest {
            Some(highest) if extended < highest => self.stats.reordered += 1,
            _ => self.highest = Some(extended),
        }
        self.stats.accepted += 1;
        outcome
    }

    /// Slots a packet that carries no audio for its period (an RFC 4733 event in the audio
    /// stream's sequence space) so the gap plays as silence instead of counting as a loss. It
    /// does not touch the delay estimate: its timestamp is the event's start, not its own.
    pub fn push_untimed(&mut self, sequence: u16, payload_type: u8) -> PushOutcome {
        let extended = self.extend(sequence);
        if let Some(next) = self.next_play
            && (extended < next || extended >= next + SLOTS as u64)
        {
            return PushOutcome::Late;
        }
        let slot = &mut self.slots[(extended % SLOTS as u64) as usize];
        if slot.occupied && slot.extended_sequence == extended {
            self.stats.duplicates += 1;
            return PushOutcome::Duplicate;
        }
        slot.occupied = true;
        slot.extended_sequence = extended;
        slot.payload_type = payload_type;
        slot.length = 0;
        if self.highest.is_none_or(|h| extended > h) {
            self.highest = Some(extended);
        }
        PushOutcome::Accepted
    }

    fn update_jitter(&mut self, now: Instant, timestamp: u32) {
        let epoch = *self.epoch.get_or_insert(now);
        let arrival_units = now.duration_since(epoch).as_secs_f64() * self.config.clock_rate as f64;
        let transit = arrival_units - timestamp as f64;
        if let Some(previous) = self.previous_transit {
            let mut deviation = (transit - previous).abs();
            // Timestamp wrap or a stream jump: don't let it poison the estimate.
            if deviation > self.config.clock_rate as f64 * 2.0 {
                deviation = 0.0;
            }
            self.jitter += (deviation - self.jitter) / 16.0;
            self.peak_deviation = self.peak_deviation.max(deviation);
        }
        self.previous_transit = Some(transit);
        self.retarget();
    }

    fn retarget(&mut self) {
        let frame = self.config.frame_timestamp_units as f64;
        let wanted = ((3.0 * self.jitter).max(self.peak_deviation) / frame).ceil() as usize + 1;
        let wanted = wanted.clamp(self.config.min_depth, self.config.max_depth);
        if wanted > self.target_depth {
            self.target_depth = wanted;
            self.stats.grown += 1;
            self.calm_frames = 0;
        }
    }

    fn grow(&mut self) {
        if self.target_depth < self.config.max_depth {
            self.target_depth += 1;
            self.stats.grown += 1;
        }
        self.calm_frames = 0;
    }

    fn depth(&self) -> usize {
        match (self.next_play, self.highest) {
            (Some(next), Some(highest)) if highest >= next => (highest - next + 1) as usize,
            (None, Some(_)) => self.slots.iter().filter(|s| s.occupied).count(),
            _ => 0,
        }
    }

    /// Takes the frame for this 20 ms tick.
    pub fn pop(&mut self, _now: Instant) -> Playout<'_> {
        let Some(highest) = self.highest else {
            return Playout::Buffering;
        };
        let next = match self.next_play {
            Some(next) => next,
            None => {
                if self.depth() < self.target_depth {
                    return Playout::Buffering;
                }
                let lowest = self
                    .slots
                    .iter()
                    .filter(|s| s.occupied)
                    .map(|s| s.extended_sequence)
                    .min()
                    .unwrap_or(highest);
                self.next_play = Some(lowest);
                lowest
            }
        };

        // Adapt: decay the burst memory, shrink after calm, stretch when too shallow.
        self.peak_deviation *= 0.98;
        self.calm_frames = self.calm_frames.saturating_add(1);
        let depth = self.depth();
        let relaxed = (((3.0 * self.jitter).max(self.peak_deviation)
            / self.config.frame_timestamp_units as f64)
            .ceil() as usize
            + 1)
        .clamp(self.config.min_depth, self.config.max_depth);
        if self.calm_frames >= CALM_FRAMES_BEFORE_SHRINK && self.target_depth > relaxed {
            self.target_depth -= 1;
            self.calm_frames = 0;
        }
        let mut play = next;
        if depth > self.target_depth + 1 && self.calm_frames == 0
            || depth > self.config.max_depth + 2
        {
            // Too deep: drop one frame to cut delay.
            let index = (play % SLOTS as u64) as usize;
            if self.slots[index].occupied && self.slots[index].extended_sequence == play {
                self.slots[index].occupied = false;
            }
            self.stats.shrunk += 1;
            play += 1;
        } else if depth < self.target_depth && depth > 0 && !self.has(play) {
            // Too shallow and the frame is not here yet: wait one frame (conceal) rather than
            // skip it.
            self.stats.lost += 1;
            return Playout::Lost;
        }

        self.next_play = Some(play + 1);
        let index = (play % SLOTS as u64) as usize;
        let slot = &mut self.slots[index];
        if slot.occupied && slot.extended_sequence == play {
            slot.occupied = false;
            let slot = &self.slots[index];
            Playout::Frame {
                payload: &slot.payload[..slot.length],
                payload_type: slot.payload_type,
                sequence: play as u16,
            }
        } else {
            if play > highest {
                // Underrun: nothing at all to play. Hold the play-out point and grow.
                self.next_play = Some(play);
                self.grow();
            }
            self.stats.lost += 1;
            Playout::Lost
        }
    }

    fn has(&self, extended: u64) -> bool {
        let slot = &self.slots[(extended % SLOTS as u64) as usize];
        slot.occupied && slot.extended_sequence == extended
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    fn payload(sequence: u16) -> [u8; 160] {
        [sequence as u8; 160]
    }

    fn played(buffer: &mut JitterBuffer, now: Instant) -> Option<Option<u16>> {
        match buffer.pop(now) {
            Playout::Buffering => None,
            Playout::Frame {
                payload, sequence, ..
            } => {
                assert_eq!(payload[0], sequence as u8);
                Some(Some(sequence))
            }
            Playout::Lost => Some(None),
        }
    }

    #[test]
    fn in_order_stream_plays_every_frame_after_the_target_delay() {
        let start = Instant::now();
        let mut buffer = JitterBuffer::new(JitterConfig::default());
        let mut out = Vec::new();
        for i in 0..100u16 {
            let now = start + Duration::from_millis(20 * i as u64);
            assert_eq!(
                buffer.push(now, 1000 + i, 160 * i as u32, 0, &payload(1000 + i)),
                PushOutcome::Accepted
            );
            if let Some(frame) = played(&mut buffer, now) {
                out.push(frame);
            }
        }
        assert_eq!(out.len(), 99, "starts after two frames are buffered");
        assert!(
            out.iter()
                .enumerate()
                .all(|(k, f)| *f == Some(1000 + k as u16))
        );
        assert_eq!(buffer.stats().lost, 0);
        assert_eq!(buffer.target_depth(), 2);
    }

    #[test]
    fn shuffled_packets_are_reordered() {
        let start = Instant::now();
        let mut buffer = JitterBuffer::new(JitterConfig {
            min_depth: 4,
            ..JitterConfig::default()
        });
        // Deliver in blocks of four, each block reversed.
        let order: Vec<u16> = (0..40u16)
            .collect::<Vec<_>>()
            .chunks(4)
            .flat_map(|c| c.iter().rev().copied())
            .collect();
        let mut out = Vec::new();
        for (tick, &seq) in order.iter().enumerate() {
            let now = start + Duration::from_millis(20 * tick as u64);
            buffer.push(now, seq, 160 * seq as u32, 0, &payload(seq));
            if let Some(frame) = played(&mut buffer, now) {
                out.push(frame);
            }
        }
        let expected: Vec<Option<u16>> = (0..out.len() as u16).map(Some).collect();
        assert_eq!(out, expected);
        assert!(buffer.stats().reordered > 0);
    }

    #[test]
    fn duplicates_are_dropped_and_late_packets_rejected() {
        let start = Instant::now();
        let mut buffer = JitterBuffer::new(JitterConfig::default());
        buffer.push(start, 10, 0, 0, &payload(10));
        assert_eq!(
            buffer.push(start, 10, 0, 0, &payload(10)),
            PushOutcome::Duplicate
        );
        buffer.push(start, 11, 160, 0, &payload(11));
        assert_eq!(played(&mut buffer, start), Some(Some(10)));
        assert_eq!(played(&mut buffer, start), Some(Some(11)));
        // Sequence 10 again, after it was played: late.
        assert_eq!(
            buffer.push(start, 10, 0, 0, &payload(10)),
            PushOutcome::Late
        );
        let stats = buffer.stats();
        assert_eq!((stats.duplicates, stats.late), (1, 1));
        assert!(buffer.target_depth() > 2, "a late packet grows the delay");
    }

    #[test]
    fn lost_packets_are_reported_for_concealment() {
        let start = Instant::now();
        let mut buffer = JitterBuffer::new(JitterConfig::default());
        let mut out = Vec::new();
        for i in 0..20u16 {
            let now = start + Duration::from_millis(20 * i as u64);
            if i != 7 && i != 8 {
                buffer.push(now, i, 160 * i as u32, 0, &payload(i));
            }
            if let Some(frame) = played(&mut buffer, now) {
                out.push(frame);
            }
        }
        let received: Vec<u16> = out.iter().flatten().copied().collect();
        let expected: Vec<u16> = (0..20)
            .filter(|s| *s != 7 && *s != 8)
            .take(received.len())
            .collect();
        assert_eq!(received, expected);
        // Two real losses; the first gap also looks like an underrun, which grows the delay
        // by one more concealed frame.
        let lost = out.iter().filter(|f| f.is_none()).count();
        assert!((2..=3).contains(&lost), "{out:?}");
        assert_eq!(out[7], None);
    }

    #[test]
    fn sequence_wrap_is_seamless() {
        let start = Instant::now();
        let mut buffer = JitterBuffer::new(JitterConfig::default());
        let mut out = Vec::new();
        for i in 0..20u16 {
            let seq = 65530u16.wrapping_add(i);
            let now = start + Duration::from_millis(20 * i as u64);
            buffer.push(now, seq, 160 * i as u32, 0, &payload(seq));
            if let Some(Some(frame)) = played(&mut buffer, now) {
                out.push(frame);
            }
        }
        assert_eq!(out.len(), 19);
        assert!(out.windows(2).all(|w| w[1] == w[0].wrapping_add(1)));
    }

    #[test]
    fn delay_grows_on_jitter_and_shrinks_when_calm() {
        let start = Instant::now();
        let mut buffer = JitterBuffer::new(JitterConfig::default());
        let mut tick = 0u64;
        let mut seq = 0u16;
        // Two seconds of ±40 ms jitter: packets arrive in bursts of three every 60 ms.
        for _ in 0..34 {
            let now = start + Duration::from_millis(60 * (tick / 3 + 1));
            for _ in 0..3 {
                buffer.push(now, seq, 160 * seq as u32, 0, &payload(seq));
                seq += 1;
                tick += 1;
            }
            for k in 0..3 {
                let _ = buffer.pop(now + Duration::from_millis(20 * k));
            }
        }
        let grown = buffer.target_depth();
        assert!(grown >= 4, "target depth {grown} after bursty arrival");
        // Then ten seconds of perfectly regular arrival.
        let base = start + Duration::from_millis(60 * (tick / 3 + 1));
        for i in 0..500u64 {
            let now = base + Duration::from_millis(20 * i);
            buffer.push(now, seq, 160 * seq as u32, 0, &payload(seq));
            seq = seq.wrapping_add(1);
            let _ = buffer.pop(now);
        }
        assert!(
            buffer.target_depth() < grown,
            "target {} should shrink below {grown}",
            buffer.target_depth()
        );
    }

    #[test]
    fn oversized_payload_is_refused() {
        let mut buffer = JitterBuffer::new(JitterConfig::default());
        assert_eq!(
            buffer.push(Instant::now(), 1, 0, 0, &[0u8; 400]),
            PushOutcome::Oversized
        );
    }

    proptest::proptest! {
        /// Whatever the network does (reorder, duplicate, drop, jump), play-out is strictly
        /// increasing, never repeats a packet, never plays a packet not sent, and never panics.
        #[test]
        fn playout_is_monotonic_and_unique(
            start in 0u16..=u16::MAX,
            ops in proptest::collection::vec((0u16..80, proptest::bool::ANY, 0u8..4), 1..400),
        ) {
            let epoch = Instant::now();
            let mut buffer = JitterBuffer::new(JitterConfig::default());
            let mut played: Vec<u16> = Vec::new();
            for (tick, (offset, duplicate, pops)) in ops.iter().enumerate() {
                let now = epoch + Duration::from_millis(20 * tick as u64);
                let sequence = start.wrapping_add(tick as u16).wrapping_add(*offset).wrapping_sub(40);
                let _ = buffer.push(now, sequence, 160u32.wrapping_mul(sequence as u32), 0, &payload(sequence));
                if *duplicate {
                    let _ = buffer.push(now, sequence, 160u32.wrapping_mul(sequence as u32), 0, &payload(sequence));
                }
                for _ in 0..*pops {
                    if let Playout::Frame { payload, sequence, .. } = buffer.pop(now) {
                        proptest::prop_assert_eq!(payload[0], sequence as u8);
                        played.push(sequence);
                    }
                }
            }
            for pair in played.windows(2) {
                let step = pair[1].wrapping_sub(pair[0]);
                // Strictly forward in sequence space (a resynchronisation may jump far ahead).
                proptest::prop_assert!(step != 0 && step < 0x8000, "{:?}", pair);
            }
        }
    }
}
