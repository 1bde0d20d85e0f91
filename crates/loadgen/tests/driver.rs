//! The generator's driver against small scripted SIP servers on loopback: refusals, silence,
//! and the loopback-only rule.

mod support;

use std::net::UdpSocket;
use std::time::Duration;

use santral_load::audio::EncodedAudio;
use santral_load::call::SipTimers;
use santral_load::sdp::Law;
use santral_load::{LoadConfig, LoadError, run};
use santral_sip::{Message, Method};
use support::Scripted;

fn config(target: std::net::SocketAddr, calls: u64) -> LoadConfig {
    LoadConfig {
        target,
        to_user: "1000".into(),
        rate_per_s: 50.0,
        calls,
        max_concurrent: None,
        hold: Duration::from_millis(200),
        digit: None,
        law: Law::Pcma,
        audio: EncodedAudio::tone(Law::Pcma),
        max_duration: Duration::from_secs(20),
        rtp_sockets: 1,
        send_phases: 10,
        timers: SipTimers::default(),
    }
}

#[test]
fn overload_refusals_are_counted_apart_from_failures() {
    let server = Scripted::start(|request| match request.method() {
        Some(Method::Invite) => {
            let mut busy = Message::response_to(request, 503, "Service Unavailable");
            busy.set_to_tag("busy");
            busy.push_header("Retry-After", "30");
            Some(busy)
        }
        _ => None,
    });
    let report = run(&config(server.addr, 5)).expect("run");
    let seen = server.stop();
    assert_eq!(report.calls.attempted, 5);
    assert_eq!(report.calls.refused_503, 5);
    assert_eq!(report.calls.answered, 0);
    assert_eq!(report.calls.failed(), 0);
    assert_eq!(report.invite_to_503_us.count, 5);
    assert_eq!(report.invite_to_200_us.count, 0);
    // Every 503 was acknowledged.
    assert_eq!(
        seen.iter().filter(|m| **m == Method::Ack).count(),
        5,
        "{seen:?}"
    );
    assert!(
        report
            .table()
            .contains("refused with 503                       5"),
        "{}",
        report.table()
    );
}

#[test]
fn other_final_statuses_are_counted_by_code() {
    let server = Scripted::start(|request| match request.method() {
        Some(Method::Invite) => {
            let mut nope = Message::response_to(request, 404, "Not Found");
            nope.set_to_tag("nf");
            Some(nope)
        }
        _ => None,
    });
    let report = run(&config(server.addr, 3)).expect("run");
    server.stop();
    assert_eq!(report.calls.failed_by_status.get(&404), Some(&3));
    assert_eq!(report.calls.failed(), 3);
    assert_eq!(report.per_call[0].outcome, "failed_404");
    assert_eq!(report.per_call[0].status, Some(404));
}

#[test]
fn a_silent_server_times_out_and_the_retransmissions_are_counted() {
    let server = Scripted::start(|_| None);
    let mut config = config(server.addr, 2);
    // A short T1 keeps the test quick: Timer B is 64·T1 = 640 ms.
    config.timers = SipTimers {
        t1: Duration::from_millis(10),
        t2: Duration::from_millis(80),
    };
    let report = run(&config).expect("run");
    let seen = server.stop();
    assert_eq!(report.calls.timed_out, 2);
    assert!(
        report.retransmissions.invite >= 2,
        "{:?}",
        report.retransmissions
    );
    let invites = seen.iter().filter(|m| **m == Method::Invite).count() as u64;
    assert_eq!(
        invites,
        2 + report.retransmissions.invite,
        "each retransmission reached the server"
    );
}

#[test]
fn targets_outside_loopback_are_refused_before_anything_is_sent() {
    let outside = config("198.51.100.7:5060".parse().unwrap(), 1);
    let err = run(&outside).unwrap_err();
    assert!(matches!(err, LoadError::Target(_)), "{err}");
    assert!(err.to_string().contains("not a loopback address"), "{err}");
    let mut zero = config("127.0.0.1:5060".parse().unwrap(), 0);
    assert!(run(&zero).unwrap_err().to_string().contains("--calls"));
    zero.calls = 1;
    zero.to_user = "a b".into();
    assert!(run(&zero).unwrap_err().to_string().contains("--to"));
}

/// A responder working on the text (santral-sip's parser, through rsip, refuses IPv6 hosts in a
/// Request-URI): 200 with an IPv6 SDP answer to INVITE, 200 to BYE; returns the methods seen.
fn ipv6_responder(socket: UdpSocket) -> Vec<String> {
    let mut seen = Vec::new();
    let mut buf = [0u8; 8192];
    let mut idle = 0;
    // Bounded: 30 s at most, or 1 s without a datagram once something was seen.
    for _ in 0..1500 {
        let Ok((n, from)) = socket.recv_from(&mut buf) else {
            idle += 1;
            if !seen.is_empty() && idle >= 50 {
                break;
            }
            continue;
        };
        idle = 0;
        let text = String::from_utf8_lossy(&buf[..n]).into_owned();
        let method = text.split(' ').next().unwrap_or_default().to_owned();
        let copied: String = text
            .split("\r\n")
            .filter(|line| {
                ["Via:", "From:", "To:", "Call-ID:", "CSeq:"]
                    .iter()
                    .any(|h| line.starts_with(h))
            })
            .map(|line| {
                if line.starts_with("To:") {
                    format!("{line};tag=v6\r\n")
                } else {
                    format!("{line}\r\n")
                }
            })
            .collect();
        let response = match method.as_str() {
            "INVITE" => {
                let sdp = "v=0\r\nc=IN IP6 ::1\r\nt=0 0\r\nm=audio 9 RTP/AVP 0 101\r\n\
                           a=rtpmap:101 telephone-event/8000\r\n";
                Some(format!(
                    "SIP/2.0 200 OK\r\n{copied}Contact: <sip:uas@[::1]>\r\n\
                     Content-Type: application/sdp\r\nContent-Length: {}\r\n\r\n{sdp}",
                    sdp.len()
                ))
            }
            "BYE" => Some(format!(
                "SIP/2.0 200 OK\r\n{copied}Content-Length: 0\r\n\r\n"
            )),
            _ => None,
        };
        if let Some(response) = response {
            let _ = socket.send_to(response.as_bytes(), from);
        }
        seen.push(method);
    }
    seen
}

#[test]
fn ipv6_loopback_works_end_to_end() {
    let socket = UdpSocket::bind("[::1]:0").expect("bind [::1]");
    socket
        .set_read_timeout(Some(Duration::from_millis(20)))
        .expect("timeout");
    let addr = socket.local_addr().expect("addr");
    let server = std::thread::spawn(move || ipv6_responder(socket));
    let mut config = config(addr, 2);
    config.law = Law::Pcmu;
    config.digit = Some(('5', Duration::from_millis(20)));
    let report = run(&config).expect("run");
    let seen = server.join().expect("responder");
    assert_eq!(report.calls.completed, 2, "{}", report.table());
    assert_eq!(report.rtp.digit_packets_sent, 2 * 8, "{}", report.table());
    assert_eq!(seen.iter().filter(|m| *m == "ACK").count(), 2, "{seen:?}");
    assert_eq!(seen.iter().filter(|m| *m == "BYE").count(), 2, "{seen:?}");
}
