//! What a run measured: a JSON document for the harness and a table for people.

use std::collections::BTreeMap;
use std::fmt::Write as _;

use serde::Serialize;

use crate::stats::Summary;

#[derive(Debug, Clone, Serialize)]
pub struct Report {
    pub settings: Settings,
    /// Wall time from the first INVITE to the last call's end (s).
    pub duration_s: f64,
    pub calls: CallCounts,
    pub retransmissions: RetransmissionCounts,
    /// INVITE sent → 200 OK received (µs).
    pub invite_to_200_us: Summary,
    /// INVITE sent → 503 received (µs): how fast overload control refuses.
    pub invite_to_503_us: Summary,
    pub rtp: RtpFigures,
    pub generator: GeneratorFigures,
    pub per_call: Vec<CallLine>,
}

#[derive(Debug, Clone, Serialize)]
pub struct Settings {
    pub target: String,
    pub to: String,
    pub rate_per_s: f64,
    pub calls: u64,
    pub max_concurrent: Option<usize>,
    pub hold_ms: u64,
    pub digit: Option<String>,
    pub digit_at_ms: Option<u64>,
    pub codec: String,
    pub rtp_sockets: usize,
    pub send_phases: u32,
    pub max_duration_ms: u64,
}

#[derive(Debug, Clone, Default, Serialize)]
pub struct CallCounts {
    pub attempted: u64,
    pub answered: u64,
    /// Answered and ended by our BYE.
    pub completed: u64,
    /// Answered and ended by the server's BYE.
    pub hung_up_by_server: u64,
    /// Final non-2xx statuses other than 503, by code.
    pub failed_by_status: BTreeMap<u16, u64>,
    /// 503 (refused by overload control).
    pub refused_503: u64,
    /// No final response to the INVITE in 64·T1.
    pub timed_out: u64,
    /// Answered, but the BYE got no final response in 64·T1.
    pub bye_timed_out: u64,
    /// Answered with an SDP answer the generator could not use.
    pub bad_answer: u64,
    /// Still going when --max-duration ran out.
    pub unfinished: u64,
    pub peak_concurrent: u64,
}

impl CallCounts {
    /// Calls that did not end well (everything but completed, hung up by server and 503).
    pub fn failed(&self) -> u64 {
        self.failed_by_status.values().sum::<u64>()
            + self.timed_out
            + self.bye_timed_out
            + self.bad_answer
            + self.unfinished
    }
}

#[derive(Debug, Clone, Copy, Default, Serialize)]
pub struct RetransmissionCounts {
    pub invite: u64,
    pub bye: u64,
    /// 200 OKs to INVITE received more than once.
    pub ok_received_again: u64,
}

#[derive(Debug, Clone, Serialize)]
pub struct RtpFigures {
    pub sent: u64,
    pub received: u64,
    pub lost: u64,
    pub digit_packets_sent: u64,
    /// Calls whose press could not be sent (no telephone-event in the answer).
    pub digits_refused: u64,
    /// Received packets matching no call.
    pub unmatched: u64,
    /// Among answered calls: the fewest and median packets received per call.
    pub per_call_received_min: u64,
    pub per_call_received_median: u64,
    /// |arrival interval − 20 ms| over consecutive packets of every stream (µs): the server's
    /// send-interval jitter as seen by the client (kernel receive timestamps).
    pub receive_jitter_us: Summary,
}

#[derive(Debug, Clone, Serialize)]
pub struct GeneratorFigures {
    /// How late each send phase of the shared 20 ms tick was served (µs).
    pub tick_lateness_us: Summary,
    /// |interval between consecutive send bursts − the phase interval| (µs): the generator's
    /// own jitter.
    pub send_interval_jitter_us: Summary,
    pub skipped_ticks: u64,
    /// Packets the kernel would not take (socket buffer full).
    pub send_dropped: u64,
    /// Packets the kernel dropped before the generator read them (receive buffers full).
    pub receive_buffer_drops: u64,
    pub sip_parse_errors: u64,
    pub cpu_user_s: f64,
    pub cpu_system_s: f64,
    /// CPU time over wall time (100 = one full core).
    pub cpu_percent: f64,
    /// True when the generator itself was late, so figures may show the client's limit.
    pub client_limited: bool,
    pub client_limited_reasons: Vec<String>,
}

#[derive(Debug, Clone, Serialize)]
pub struct CallLine {
    pub index: u32,
    pub call_id: String,
    pub outcome: String,
    pub status: Option<u16>,
    pub invite_to_200_us: Option<u64>,
    pub invite_retransmissions: u32,
    pub bye_retransmissions: u32,
    pub rtp_sent: u64,
    pub rtp_received: u64,
    pub rtp_lost: u64,
}

impl Report {
    /// The human table printed on stdout.
    pub fn table(&self) -> String {
        let mut t = String::new();
        let s = &self.settings;
        let c = &self.calls;
        let _ = writeln!(
            t,
            "santral-load → {} (to {}): {} calls at {}/s, hold {} ms, codec {}{}",
            s.target,
            s.to,
            s.calls,
            s.rate_per_s,
            s.hold_ms,
            s.codec,
            s.digit
                .as_ref()
                .map(|d| format!(", digit {d} at {} ms", s.digit_at_ms.unwrap_or(0)))
                .unwrap_or_default()
        );
        let _ = writeln!(t, "duration                    {:>12.2} s", self.duration_s);
        let row = |t: &mut String, name: &str, value: u64| {
            let _ = writeln!(t, "{name:<28}{value:>12}");
        };
        row(&mut t, "calls attempted", c.attempted);
        row(&mut t, "calls answered", c.answered);
        row(&mut t, "  completed (our BYE)", c.completed);
        row(&mut t, "  hung up by server", c.hung_up_by_server);
        row(&mut t, "refused with 503", c.refused_503);
        for (code, n) in &c.failed_by_status {
            row(&mut t, &format!("failed with {code}"), *n);
        }
        row(&mut t, "INVITE timed out", c.timed_out);
        row(&mut t, "BYE timed out", c.bye_timed_out);
        row(&mut t, "bad SDP answer", c.bad_answer);
        row(&mut t, "unfinished at time limit", c.unfinished);
        row(&mut t, "peak concurrent calls", c.peak_concurrent);
        row(
            &mut t,
            "INVITE retransmissions",
            self.retransmissions.invite,
        );
        row(&mut t, "BYE retransmissions", self.retransmissions.bye);
        row(
            &mut t,
            "200 OK received again",
            self.retransmissions.ok_received_again,
        );
        let summary = |t: &mut String, name: &str, s: &Summary| {
            let _ = writeln!(
                t,
                "{name:<28}p50 {:>8}  p90 {:>8}  p99 {:>8}  max {:>8}  (n={})",
                s.p50, s.p90, s.p99, s.max, s.count
            );
        };
        summary(&mut t, "INVITE→200 (µs)", &self.invite_to_200_us);
        if self.invite_to_503_us.count > 0 {
            summary(&mut t, "INVITE→503 (µs)", &self.invite_to_503_us);
        }
        let r = &self.rtp;
        row(&mut t, "RTP sent", r.sent);
        row(&mut t, "RTP received", r.received);
        row(&mut t, "RTP lost (sequence gaps)", r.lost);
        row(
            &mut t,
            "RTP received per call, min",
            r.per_call_received_min,
        );
        row(
            &mut t,
            "RTP received per call, med",
            r.per_call_received_median,
        );
        row(&mut t, "RTP unmatched", r.unmatched);
        row(&mut t, "RFC 4733 packets sent", r.digit_packets_sent);
        summary(&mut t, "RTP receive jitter (µs)", &r.receive_jitter_us);
        let g = &self.generator;
        summary(&mut t, "generator tick late (µs)", &g.tick_lateness_us);
        summary(
            &mut t,
            "generator send jitter (µs)",
            &g.send_interval_jitter_us,
        );
        row(&mut t, "generator skipped ticks", g.skipped_ticks);
        row(&mut t, "generator send drops", g.send_dropped);
        row(&mut t, "generator receive drops", g.receive_buffer_drops);
        let _ = writeln!(
            t,
            "generator CPU               {:>12.2} s user + {:.2} s system = {:.1} % of a core",
            g.cpu_user_s, g.cpu_system_s, g.cpu_percent
        );
        if g.client_limited {
            let _ = writeln!(
                t,
                "WARNING: the generator itself was late ({}); figures may show the client's limit",
                g.client_limited_reasons.join("; ")
            );
        } else {
            let _ = writeln!(t, "generator kept its schedule (figures show the server)");
        }
        t
    }
}
