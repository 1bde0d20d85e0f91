//! Virtual-time walks through every RFC 3261 §17 timer path, asserting the RFC's numbers.

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use santral_sip::transaction::{State, TimerName};
use santral_sip::{Endpoint, EndpointConfig, Event, Message, Method, Peer, TransportKind};

fn peer(transport: TransportKind) -> Peer {
    Peer {
        transport,
        local: "127.0.0.1:5060".parse().unwrap(),
        remote: "127.0.0.2:5070".parse().unwrap(),
    }
}

fn request(method: Method) -> Message {
    let mut m = Message::request(method.clone(), "sip:2001@127.0.0.2:5070");
    m.push_header("From", "<sip:santral@127.0.0.1>;tag=abc");
    m.push_header("To", "<sip:2001@127.0.0.2>");
    m.push_header("Call-ID", "timers@127.0.0.1");
    m.push_header("CSeq", format!("1 {method}"));
    m
}

/// Runs the endpoint's timers until nothing is pending or `limit` passes; returns the offsets
/// (from `start`) at which something was transmitted and the events seen with their offsets.
fn run(
    ep: &mut Endpoint,
    start: Instant,
    limit: Duration,
) -> (Vec<Duration>, Vec<(Duration, Event)>) {
    let mut sent = Vec::new();
    let mut events = Vec::new();
    for _ in 0..10_000 {
        while ep.poll_transmit().is_some() {}
        let Some(at) = ep.poll_timeout() else { break };
        if at - start > limit {
            break;
        }
        ep.handle_timeout(at);
        while ep.poll_transmit().is_some() {
            sent.push(at - start);
        }
        while let Some(e) = ep.poll_event() {
            events.push((at - start, e));
        }
    }
    (sent, events)
}

fn ms(v: &[u64]) -> Vec<Duration> {
    v.iter().map(|m| Duration::from_millis(*m)).collect()
}

#[test]
fn invite_client_timer_a_doubles_and_timer_b_fires_at_64_t1() {
    let mut ep = Endpoint::new(EndpointConfig::default());
    let t0 = Instant::now();
    let id = ep
        .send_request(t0, request(Method::Invite), peer(TransportKind::Udp))
        .unwrap();
    assert!(
        ep.poll_transmit().is_some(),
        "initial INVITE is sent at once"
    );
    let (sent, events) = run(&mut ep, t0, Duration::from_secs(60));
    // Timer A: 500 ms, 1 s, 2 s, 4 s, 8 s, 16 s after each other (no T2 cap for INVITE).
    assert_eq!(sent, ms(&[500, 1500, 3500, 7500, 15500, 31500]));
    assert_eq!(
        events,
        vec![(
            Duration::from_secs(32),
            Event::Timeout {
                id,
                timer: TimerName::B
            }
        )]
    );
    assert_eq!(ep.transaction_count(), 0);
}

#[test]
fn non_invite_client_timer_e_caps_at_t2_and_timer_f_fires_at_64_t1() {
    let mut ep = Endpoint::new(EndpointConfig::default());
    let t0 = Instant::now();
    let id = ep
        .send_request(t0, request(Method::Options), peer(TransportKind::Udp))
        .unwrap();
    let (sent, events) = run(&mut ep, t0, Duration::from_secs(60));
    assert_eq!(
        sent,
        ms(&[
            500, 1500, 3500, 7500, 11500, 15500, 19500, 23500, 27500, 31500
        ])
    );
    assert_eq!(
        events,
        vec![(
            Duration::from_secs(32),
            Event::Timeout {
                id,
                timer: TimerName::F
            }
        )]
    );
}

#[test]
fn reliable_transport_has_no_retransmissions_but_still_times_out() {
    let mut ep = Endpoint::new(EndpointConfig::default());
    let t0 = Instant::now();
    let id = ep
        .send_request(t0, request(Method::Invite), peer(TransportKind::Tcp))
        .unwrap();
    let (sent, events) = run(&mut ep, t0, Duration::from_secs(60));
    assert!(sent.is_empty());
    assert_eq!(
        events,
        vec![(
            Duration::from_secs(32),
            Event::Timeout {
                id,
                timer: TimerName::B
            }
        )]
    );
}

fn response_for(ep: &mut Endpoint, code: u16) -> Vec<u8> {
    // The last transmitted request is what the peer answers.
    let mut last = None;
    while let Some(t) = ep.poll_transmit() {
        last = Some(t);
    }
    let req = Message::parse(&last.expect("a request was sent").bytes).unwrap();
    let mut resp = Message::response_to(&req, code, "Reason");
    resp.set_to_tag("peer");
    resp.to_bytes()
}

fn deliver(ep: &mut Endpoint, now: Instant, p: Peer, bytes: &[u8]) {
    ep.handle_input(now, p.transport, p.local, p.remote, bytes);
}

#[test]
fn non_invite_client_proceeding_retransmits_every_t2_then_timer_k_is_t4() {
    let mut ep = Endpoint::new(EndpointConfig::default());
    let p = peer(TransportKind::Udp);
    let t0 = Instant::now();
    let id = ep.send_request(t0, request(Method::Options), p).unwrap();
    let trying = response_for(&mut ep, 100);
    deliver(&mut ep, t0 + Duration::from_millis(100), p, &trying);
    assert!(matches!(ep.poll_event(), Some(Event::Response { .. })));
    assert_eq!(ep.transaction_state(id), Some(State::Proceeding));
    // Timer E was armed for 500 ms; after it fires in Proceeding the interval is T2.
    let (sent, _) = run(&mut ep, t0, Duration::from_millis(9000));
    assert_eq!(sent, ms(&[500, 4500, 8500]));
    let ok = String::from_utf8(trying)
        .unwrap()
        .replace("100 Reason", "200 OK");
    let t_final = t0 + Duration::from_secs(9);
    deliver(&mut ep, t_final, p, ok.as_bytes());
    assert!(matches!(ep.poll_event(), Some(Event::Response { .. })));
    assert_eq!(ep.transaction_state(id), Some(State::Completed));
    // Timer K = T4 = 5 s absorbs retransmitted finals, then the transaction ends.
    assert_eq!(ep.poll_timeout(), Some(t_final + Duration::from_secs(5)));
    ep.handle_timeout(t_final + Duration::from_secs(5));
    assert_eq!(ep.transaction_state(id), None);
}

#[test]
fn invite_client_non_2xx_sends_ack_and_timer_d_is_32s() {
    let mut ep = Endpoint::new(EndpointConfig::default());
    let p = peer(TransportKind::Udp);
    let t0 = Instant::now();
    let id = ep.send_request(t0, request(Method::Invite), p).unwrap();
    let busy = response_for(&mut ep, 486);
    deliver(&mut ep, t0, p, &busy);
    let ack = Message::parse(&ep.poll_transmit().unwrap().bytes).unwrap();
    assert_eq!(ack.method(), Some(&Method::Ack));
    assert_eq!(ack.cseq().unwrap(), (1, Method::Ack));
    assert_eq!(ack.to_tag().as_deref(), Some("peer"));
    assert_eq!(ep.transaction_state(id), Some(State::Completed));
    // A retransmitted 486 is answered with the same ACK, not passed up again.
    let _ = ep.poll_event();
    deliver(&mut ep, t0 + Duration::from_secs(1), p, &busy);
    assert_eq!(
        Message::parse(&ep.poll_transmit().unwrap().bytes).unwrap(),
        ack
    );
    assert_eq!(ep.poll_event(), None);
    assert_eq!(ep.poll_timeout(), Some(t0 + Duration::from_secs(32)));
    ep.handle_timeout(t0 + Duration::from_secs(32));
    assert_eq!(ep.transaction_state(id), None);
}

#[test]
fn invite_client_2xx_accepted_passes_retransmitted_2xx_then_timer_m() {
    let mut ep = Endpoint::new(EndpointConfig::default());
    let p = peer(TransportKind::Udp);
    let t0 = Instant::now();
    let id = ep.send_request(t0, request(Method::Invite), p).unwrap();
    let ok = response_for(&mut ep, 200);
    deliver(&mut ep, t0, p, &ok);
    assert!(matches!(ep.poll_event(), Some(Event::Response { .. })));
    assert_eq!(ep.transaction_state(id), Some(State::Accepted));
    deliver(&mut ep, t0 + Duration::from_secs(1), p, &ok);
    assert!(matches!(ep.poll_event(), Some(Event::Response { id: got, .. }) if got == id));
    assert_eq!(ep.poll_timeout(), Some(t0 + Duration::from_secs(32)));
    ep.handle_timeout(t0 + Duration::from_secs(32));
    assert_eq!(ep.transaction_state(id), None);
}

fn incoming(method: Method, branch: &str) -> Vec<u8> {
    format!(
        "{method} sip:2001@127.0.0.1 SIP/2.0\r\n\
Via: SIP/2.0/UDP 127.0.0.2:5070;branch={branch}\r\n\
Max-Forwards: 70\r\nFrom: <sip:alice@127.0.0.2>;tag=a1\r\nTo: <sip:2001@127.0.0.1>\r\n\
Call-ID: srv@127.0.0.2\r\nCSeq: 7 {method}\r\nContent-Length: 0\r\n\r\n"
    )
    .into_bytes()
}

fn take_request(ep: &mut Endpoint) -> (santral_sip::TransactionId, Message) {
    loop {
        match ep.poll_event() {
            Some(Event::Request { id, request, .. }) => return (id, request),
            Some(_) => continue,
            None => panic!("no request event"),
        }
    }
}

#[test]
fn invite_server_timer_g_retransmits_final_until_timer_h() {
    let mut ep = Endpoint::new(EndpointConfig::default());
    let p = peer(TransportKind::Udp);
    let t0 = Instant::now();
    deliver(&mut ep, t0, p, &incoming(Method::Invite, "z9hG4bKg1"));
    let trying = Message::parse(&ep.poll_transmit().unwrap().bytes).unwrap();
    assert_eq!(trying.status(), Some(100));
    let (id, _) = take_request(&mut ep);
    ep.respond_with(t0, id, 486, "Busy Here").unwrap();
    let (sent, events) = run(&mut ep, t0, Duration::from_secs(60));
    // Timer G: T1 doubling, capped at T2; Timer H at 64·T1.
    assert_eq!(
        sent,
        ms(&[
            0, 500, 1500, 3500, 7500, 11500, 15500, 19500, 23500, 27500, 31500
        ])[1..]
            .to_vec()
    );
    assert_eq!(
        events,
        vec![(
            Duration::from_secs(32),
            Event::Timeout {
                id,
                timer: TimerName::H
            }
        )]
    );
}

#[test]
fn invite_server_ack_confirms_and_timer_i_is_t4() {
    let mut ep = Endpoint::new(EndpointConfig::default());
    let p = peer(TransportKind::Udp);
    let t0 = Instant::now();
    deliver(&mut ep, t0, p, &incoming(Method::Invite, "z9hG4bKi1"));
    let (id, _) = take_request(&mut ep);
    ep.respond_with(t0, id, 404, "Not Found").unwrap();
    while ep.poll_transmit().is_some() {}
    let t_ack = t0 + Duration::from_millis(200);
    deliver(&mut ep, t_ack, p, &incoming(Method::Ack, "z9hG4bKi1"));
    assert_eq!(ep.transaction_state(id), Some(State::Confirmed));
    assert_eq!(ep.poll_event(), None, "ACK for non-2xx is absorbed");
    // Retransmitted ACKs are absorbed too.
    deliver(&mut ep, t_ack, p, &incoming(Method::Ack, "z9hG4bKi1"));
    assert_eq!(ep.poll_event(), None);
    assert_eq!(ep.poll_timeout(), Some(t_ack + Duration::from_secs(5)));
    ep.handle_timeout(t_ack + Duration::from_secs(5));
    assert_eq!(ep.transaction_state(id), None);
}

#[test]
fn invite_server_2xx_retransmitted_by_core_until_ack() {
    let mut ep = Endpoint::new(EndpointConfig::default());
    let p = peer(TransportKind::Udp);
    let t0 = Instant::now();
    deliver(&mut ep, t0, p, &incoming(Method::Invite, "z9hG4bKok"));
    let (id, _) = take_request(&mut ep);
    ep.respond_with(t0, id, 200, "OK").unwrap();
    while ep.poll_transmit().is_some() {}
    let (sent, _) = run(&mut ep, t0, Duration::from_millis(8000));
    assert_eq!(sent, ms(&[500, 1500, 3500, 7500]));
    // A retransmitted INVITE in Accepted is absorbed (no new request event).
    deliver(
        &mut ep,
        t0 + Duration::from_secs(8),
        p,
        &incoming(Method::Invite, "z9hG4bKok"),
    );
    assert_eq!(ep.poll_event(), None);
    // The ACK (new branch: it is its own transaction) stops the retransmissions.
    deliver(
        &mut ep,
        t0 + Duration::from_secs(8),
        p,
        &incoming(Method::Ack, "z9hG4bKack"),
    );
    assert!(matches!(ep.poll_event(), Some(Event::Ack { .. })));
    let (sent, events) = run(&mut ep, t0, Duration::from_secs(60));
    assert!(sent.is_empty(), "no retransmission after ACK: {sent:?}");
    assert!(events.is_empty());
    assert_eq!(
        ep.transaction_state(id),
        None,
        "Timer L ended the transaction"
    );
}

#[test]
fn invite_server_2xx_never_acked_reports_timeout_at_64_t1() {
    let mut ep = Endpoint::new(EndpointConfig::default());
    let p = peer(TransportKind::Udp);
    let t0 = Instant::now();
    deliver(&mut ep, t0, p, &incoming(Method::Invite, "z9hG4bKnoack"));
    let (id, _) = take_request(&mut ep);
    ep.respond_with(t0, id, 200, "OK").unwrap();
    let (sent, events) = run(&mut ep, t0, Duration::from_secs(60));
    assert_eq!(
        sent,
        ms(&[
            500, 1500, 3500, 7500, 11500, 15500, 19500, 23500, 27500, 31500
        ])
    );
    assert_eq!(
        events,
        vec![(
            Duration::from_secs(32),
            Event::Timeout {
                id,
                timer: TimerName::H
            }
        )]
    );
}

#[test]
fn non_invite_server_timer_j_absorbs_retransmissions_for_64_t1() {
    let mut ep = Endpoint::new(EndpointConfig::default());
    let p = peer(TransportKind::Udp);
    let t0 = Instant::now();
    deliver(&mut ep, t0, p, &incoming(Method::Options, "z9hG4bKj"));
    let (id, _) = take_request(&mut ep);
    ep.respond_with(t0, id, 200, "OK").unwrap();
    let first = ep.poll_transmit().unwrap().bytes;
    deliver(
        &mut ep,
        t0 + Duration::from_secs(10),
        p,
        &incoming(Method::Options, "z9hG4bKj"),
    );
    assert_eq!(
        ep.poll_transmit().unwrap().bytes,
        first,
        "same response resent"
    );
    assert_eq!(ep.poll_event(), None);
    assert_eq!(ep.poll_timeout(), Some(t0 + Duration::from_secs(32)));
    ep.handle_timeout(t0 + Duration::from_secs(32));
    assert_eq!(ep.transaction_state(id), None);
}

#[test]
fn reliable_server_transactions_end_at_once() {
    let mut ep = Endpoint::new(EndpointConfig::default());
    let p = peer(TransportKind::Tcp);
    let t0 = Instant::now();
    deliver(&mut ep, t0, p, &incoming(Method::Options, "z9hG4bKtcp"));
    let (id, _) = take_request(&mut ep);
    ep.respond_with(t0, id, 200, "OK").unwrap();
    assert_eq!(ep.transaction_state(id), None, "Timer J is 0 on TCP");
}

#[test]
fn cancel_matches_invite_and_sends_487() {
    let mut ep = Endpoint::new(EndpointConfig::default());
    let p = peer(TransportKind::Udp);
    let t0 = Instant::now();
    deliver(&mut ep, t0, p, &incoming(Method::Invite, "z9hG4bKc"));
    let (id, _) = take_request(&mut ep);
    while ep.poll_transmit().is_some() {}
    deliver(&mut ep, t0, p, &incoming(Method::Cancel, "z9hG4bKc"));
    let mut codes: Vec<(u16, String)> = Vec::new();
    while let Some(t) = ep.poll_transmit() {
        let m = Message::parse(&t.bytes).unwrap();
        codes.push((m.status().unwrap(), m.cseq().unwrap().1.to_string()));
    }
    assert_eq!(codes, vec![(200, "CANCEL".into()), (487, "INVITE".into())]);
    assert_eq!(ep.poll_event(), Some(Event::Cancelled { id }));
    // CANCEL for nothing: 481.
    deliver(&mut ep, t0, p, &incoming(Method::Cancel, "z9hG4bKnothing"));
    let m = Message::parse(&ep.poll_transmit().unwrap().bytes).unwrap();
    assert_eq!(m.status(), Some(481));
}

#[test]
fn merged_request_gets_482() {
    let mut ep = Endpoint::new(EndpointConfig::default());
    let p = peer(TransportKind::Udp);
    let t0 = Instant::now();
    deliver(&mut ep, t0, p, &incoming(Method::Options, "z9hG4bKpath1"));
    let _ = take_request(&mut ep);
    deliver(&mut ep, t0, p, &incoming(Method::Options, "z9hG4bKpath2"));
    assert_eq!(ep.poll_event(), None);
    let m = Message::parse(&ep.poll_transmit().unwrap().bytes).unwrap();
    assert_eq!(m.status(), Some(482));
}

#[test]
fn client_cancel_uses_invite_branch() {
    let mut ep = Endpoint::new(EndpointConfig::default());
    let p = peer(TransportKind::Udp);
    let t0 = Instant::now();
    let invite_id = ep.send_request(t0, request(Method::Invite), p).unwrap();
    let invite = Message::parse(&ep.poll_transmit().unwrap().bytes).unwrap();
    ep.send_cancel(t0, invite_id).unwrap();
    let cancel = Message::parse(&ep.poll_transmit().unwrap().bytes).unwrap();
    assert_eq!(cancel.method(), Some(&Method::Cancel));
    assert_eq!(
        cancel.top_via().unwrap().branch(),
        invite.top_via().unwrap().branch()
    );
    assert_eq!(cancel.cseq().unwrap(), (1, Method::Cancel));
}

#[test]
fn received_and_rport_are_stamped() {
    let mut ep = Endpoint::new(EndpointConfig::default());
    let p = peer(TransportKind::Udp);
    let text = String::from_utf8(incoming(Method::Options, "z9hG4bKr"))
        .unwrap()
        .replace("127.0.0.2:5070;branch", "10.0.0.9:5999;rport;branch");
    deliver(&mut ep, Instant::now(), p, text.as_bytes());
    let (id, req) = take_request(&mut ep);
    let via = req.top_via().unwrap();
    assert_eq!(via.received(), Some("127.0.0.2"));
    assert_eq!(via.rport(), Some(Some(5070)));
    ep.respond_with(Instant::now(), id, 200, "OK").unwrap();
    let t = ep.poll_transmit().unwrap();
    assert_eq!(
        t.peer.remote,
        "127.0.0.2:5070".parse::<SocketAddr>().unwrap()
    );
    let resp = Message::parse(&t.bytes).unwrap();
    assert_eq!(resp.top_via().unwrap().rport(), Some(Some(5070)));
}

#[test]
fn malformed_request_gets_400_with_reason() {
    let mut ep = Endpoint::new(EndpointConfig::default());
    let p = peer(TransportKind::Udp);
    let text = String::from_utf8(incoming(Method::Options, "z9hG4bKbad"))
        .unwrap()
        .replace("Max-Forwards: 70", "Max-Forwards: seventy");
    deliver(&mut ep, Instant::now(), p, text.as_bytes());
    let m = Message::parse(&ep.poll_transmit().unwrap().bytes).unwrap();
    assert_eq!(m.status(), Some(400));
    assert!(m.summary().contains("Max-Forwards"), "{}", m.summary());
    assert_eq!(ep.poll_event(), None);
    // Garbage without identifying headers is dropped silently.
    deliver(&mut ep, Instant::now(), p, b"\x00\xffhello");
    assert_eq!(ep.poll_transmit(), None);
}

#[test]
fn timers_follow_configured_t1_t2_t4() {
    let config = EndpointConfig {
        timers: santral_sip::Timers {
            t1: Duration::from_millis(100),
            t2: Duration::from_millis(300),
            t4: Duration::from_millis(700),
        },
        ..EndpointConfig::default()
    };
    let mut ep = Endpoint::new(config.clone());
    let t0 = Instant::now();
    let id = ep
        .send_request(t0, request(Method::Options), peer(TransportKind::Udp))
        .unwrap();
    let (sent, events) = run(&mut ep, t0, Duration::from_secs(60));
    // E: 100, +200, then capped at T2 = 300 ms; F at 64·T1 = 6.4 s.
    let expected: Vec<u64> = [100u64, 300]
        .into_iter()
        .chain((0..20).map(|i| 600 + 300 * i))
        .filter(|t| *t < 6400)
        .collect();
    assert_eq!(sent, ms(&expected));
    assert_eq!(
        events,
        vec![(
            Duration::from_millis(6400),
            Event::Timeout {
                id,
                timer: TimerName::F
            }
        )]
    );

    // Timer K = T4 after a final response.
    let mut ep = Endpoint::new(config);
    let p = peer(TransportKind::Udp);
    let id = ep.send_request(t0, request(Method::Options), p).unwrap();
    let ok = response_for(&mut ep, 200);
    deliver(&mut ep, t0, p, &ok);
    assert_eq!(ep.poll_timeout(), Some(t0 + Duration::from_millis(700)));
    ep.handle_timeout(t0 + Duration::from_millis(700));
    assert_eq!(ep.transaction_state(id), None);
}
