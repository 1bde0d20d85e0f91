//! Property tests: the parsers never panic on arbitrary bytes, and the accounting keeps its
//! invariants for any input.

use proptest::prelude::*;
use santral_load::call::{call_id, call_index};
use santral_load::rtp::{HeaderView, StreamReceiver, read_header};
use santral_load::sdp::{Answer, Offer};
use santral_load::stats::Histogram;

proptest! {
    #[test]
    fn sdp_parsers_never_panic(body in proptest::collection::vec(any::<u8>(), 0..512)) {
        let _ = Answer::parse(&body);
        let _ = Offer::parse(&body);
    }

    #[test]
    fn sdp_like_text_never_panics(lines in proptest::collection::vec(
        prop_oneof![
            Just("v=0".to_string()),
            Just("c=IN IP4 127.0.0.1".to_string()),
            "c=IN IP[46] [0-9a-f:.]{0,20}",
            "m=audio [0-9]{0,6} RTP/AVP( [0-9]{0,4}){0,5}",
            "a=rtpmap:[0-9]{0,4} [a-zA-Z-]{0,16}/8000",
            ".{0,40}",
        ], 0..12)) {
        let body = lines.join("\r\n");
        if let Ok(answer) = Answer::parse(body.as_bytes()) {
            prop_assert!(answer.rtp.ip().is_loopback());
            prop_assert!(answer.rtp.port() != 0);
        }
    }

    #[test]
    fn rtp_header_reader_never_panics(packet in proptest::collection::vec(any::<u8>(), 0..64)) {
        if let Some(header) = read_header(&packet) {
            prop_assert!(packet.len() >= 12);
            prop_assert!(header.payload_type < 128);
        }
    }

    #[test]
    fn gaps_in_an_increasing_sequence_are_exactly_the_loss(
        start in any::<u16>(),
        steps in proptest::collection::vec(1u16..5, 1..300),
    ) {
        let mut rx = StreamReceiver::default();
        let mut jitter = Histogram::new();
        let mut seq = start;
        let mut lost = 0u64;
        rx.on_packet(&HeaderView { marker: false, payload_type: 8, seq, timestamp: 0, ssrc: 7 }, 0, &mut jitter);
        for (i, step) in steps.iter().enumerate() {
            seq = seq.wrapping_add(*step);
            lost += u64::from(*step - 1);
            let at = (i as u64 + 1) * 20_000_000;
            rx.on_packet(&HeaderView { marker: false, payload_type: 8, seq, timestamp: 0, ssrc: 7 }, at, &mut jitter);
        }
        prop_assert_eq!(rx.received(), steps.len() as u64 + 1);
        prop_assert_eq!(rx.lost(), lost);
    }

    #[test]
    fn any_arrival_order_never_counts_more_lost_than_the_span(
        seqs in proptest::collection::vec(any::<u16>(), 1..200),
    ) {
        let mut rx = StreamReceiver::default();
        let mut jitter = Histogram::new();
        for (i, seq) in seqs.iter().enumerate() {
            rx.on_packet(&HeaderView { marker: false, payload_type: 0, seq: *seq, timestamp: 0, ssrc: 1 }, i as u64, &mut jitter);
        }
        prop_assert_eq!(rx.received(), seqs.len() as u64);
        // Extended numbers can span at most one wrap per packet.
        prop_assert!(rx.lost() <= seqs.len() as u64 * 65_536);
    }

    #[test]
    fn percentiles_are_ordered_and_within_range(values in proptest::collection::vec(0u64..10_000_000, 1..500)) {
        let mut h = Histogram::new();
        for v in &values {
            h.record(*v);
        }
        let min = *values.iter().min().unwrap_or(&0);
        let max = *values.iter().max().unwrap_or(&0);
        let s = h.summary();
        prop_assert!(min <= s.p50 && s.p50 <= s.p90 && s.p90 <= s.p99 && s.p99 <= s.max);
        prop_assert_eq!(s.max, max);
        prop_assert_eq!(s.count, values.len() as u64);
    }

    #[test]
    fn call_ids_round_trip(index in any::<u32>(), tag in any::<u32>(), other in any::<u32>()) {
        let id = call_id(index, tag);
        prop_assert_eq!(call_index(&id, tag), Some(index));
        if other != tag {
            prop_assert_eq!(call_index(&id, other), None);
        }
    }
}
