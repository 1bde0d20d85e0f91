//! Per-call voice quality summary: loss, jitter, round-trip time, and an E-model (ITU-T G.107)
//! R-factor with its MOS estimate, for the call record.

use std::time::Duration;

use crate::codec::Codec;

/// Inputs measured over the call.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct QualityInputs {
    pub packets_expected: u64,
    pub packets_lost: u64,
    /// Mean RFC 3550 interarrival jitter over the call, in ms.
    pub mean_jitter_ms: f64,
    pub max_jitter_ms: f64,
    /// Last measured RTCP round-trip time.
    pub round_trip: Option<Duration>,
    /// Playout (jitter buffer) delay in ms.
    pub jitter_buffer_ms: f64,
}

/// The summary written to the call record.
#[derive(Debug, Clone, Copy, PartialEq, serde::Serialize)]
pub struct QualitySummary {
    pub packets_expected: u64,
    pub packets_lost: u64,
    pub loss_percent: f64,
    pub mean_jitter_ms: f64,
    pub max_jitter_ms: f64,
    pub round_trip_ms: Option<f64>,
    /// E-model transmission rating (0–100).
    pub r_factor: f64,
    /// Estimated mean opinion score (1.0–4.5).
    pub mos: f64,
}

/// Equipment impairment and packet-loss robustness (ITU-T G.113 Appendix I) with PLC.
fn impairment(codec: Codec) -> (f64, f64) {
    match codec {
        Codec::Pcmu | Codec::Pcma => (0.0, 25.1),
        // G.722 rated on the narrowband scale (a conservative simplification).
        Codec::G722 => (0.0, 25.1),
    }
}

/// R-factor → MOS (G.107 Annex B).
pub fn mos_from_r(r: f64) -> f64 {
    if r <= 0.0 {
        1.0
    } else if r >= 100.0 {
        4.5
    } else {
        1.0 + 0.035 * r + r * (r - 60.0) * (100.0 - r) * 7.0e-6
    }
}

/// Computes the summary with the simplified E-model: R = 93.2 − Id − Ie,eff.
pub fn summarise(codec: Codec, inputs: &QualityInputs) -> QualitySummary {
    let loss_percent = if inputs.packets_expected == 0 {
        0.0
    } else {
        100.0 * inputs.packets_lost as f64 / inputs.packets_expected as f64
    };
    // One-way mouth-to-ear delay: half the RTT (network) + packetisation + playout buffer.
    let network_ms = inputs
        .round_trip
        .map(|rtt| rtt.as_secs_f64() * 500.0)
        .unwrap_or(0.0);
    let delay_ms = network_ms + 20.0 + inputs.jitter_buffer_ms;
    let id = 0.024 * delay_ms
        + if delay_ms > 177.3 {
            0.11 * (delay_ms - 177.3)
        } else {
            0.0
        };
    let (ie, bpl) = impairment(codec);
    let ie_eff = ie + (95.0 - ie) * loss_percent / (loss_percent + bpl);
    let r_factor = (93.2 - id - ie_eff).clamp(0.0, 100.0);
    QualitySummary {
        packets_expected: inputs.packets_expected,
        packets_lost: inputs.packets_lost,
        loss_percent,
        mean_jitter_ms: inputs.mean_jitter_ms,
        max_jitter_ms: inputs.max_jitter_ms,
        round_trip_ms: inputs.round_trip.map(|d| d.as_secs_f64() * 1000.0),
        r_factor,
        mos: mos_from_r(r_factor),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn clean_g711_call_rates_about_4_4() {
        let summary = summarise(
            Codec::Pcmu,
            &QualityInputs {
                packets_expected: 5000,
                packets_lost: 0,
                round_trip: Some(Duration::from_millis(20)),
                jitter_buffer_ms: 40.0,
                ..Default::default()
            },
        );
        assert!(
            summary.r_factor > 90.0 && summary.r_factor < 93.2,
            "{summary:?}"
        );
        assert!((summary.mos - 4.4).abs() < 0.1, "{summary:?}");
    }

    #[test]
    fn loss_and_delay_lower_the_score_monotonically() {
        let base = QualityInputs {
            packets_expected: 1000,
            jitter_buffer_ms: 40.0,
            ..Default::default()
        };
        let mut previous = 5.0;
        for lost in [0, 10, 30, 50, 100, 200] {
            let summary = summarise(
                Codec::Pcma,
                &QualityInputs {
                    packets_lost: lost,
                    ..base
                },
            );
            assert!(summary.mos < previous, "{lost} lost");
            previous = summary.mos;
        }
        // 5 % loss with PLC: Ie,eff = 95·5/(5+25.1) ≈ 15.8.
        let five = summarise(
            Codec::Pcma,
            &QualityInputs {
                packets_lost: 50,
                ..base
            },
        );
        assert!((five.loss_percent - 5.0).abs() < 1e-9);
        assert!((five.r_factor - (93.2 - 0.024 * 60.0 - 95.0 * 5.0 / 30.1)).abs() < 0.01);
        let slow = summarise(
            Codec::Pcma,
            &QualityInputs {
                round_trip: Some(Duration::from_millis(600)),
                ..base
            },
        );
        assert!(slow.r_factor < 80.0);
    }

    #[test]
    fn mos_curve_end_points() {
        assert_eq!(mos_from_r(-5.0), 1.0);
        assert_eq!(mos_from_r(120.0), 4.5);
        assert!((mos_from_r(50.0) - 2.58).abs() < 0.01);
    }
}
