//! Property tests: random bytes and mutated real messages fed to the Endpoint (over UDP and
//! TCP peers) never panic, every transmit it produces is a well-formed SIP response, and its
//! timers always run dry.

use std::time::{Duration, Instant};

use proptest::prelude::*;
use santral_sip::{Endpoint, EndpointConfig, Message, TransportKind};

const SEEDS: &[&str] = &[
    "INVITE sip:2001@127.0.0.1 SIP/2.0\r\nVia: SIP/2.0/UDP 127.0.0.2:5070;branch=z9hG4bKa1;rport\r\nMax-Forwards: 70\r\nFrom: \"A\" <sip:a@127.0.0.2>;tag=1\r\nTo: <sip:2001@127.0.0.1>\r\nCall-ID: p1@127.0.0.2\r\nCSeq: 1 INVITE\r\nContact: <sip:a@127.0.0.2:5070>\r\nContent-Type: application/sdp\r\nContent-Length: 10\r\n\r\nv=0\r\ns=-\r\n",
    "REGISTER sip:127.0.0.1 SIP/2.0\r\nv: SIP/2.0/TCP 127.0.0.2;branch=z9hG4bKr\r\nf: <sip:2001@127.0.0.1>;tag=x\r\nt: <sip:2001@127.0.0.1>\r\ni: reg\r\nCSeq: 2 REGISTER\r\nm: <sip:2001@127.0.0.2>;expires=60, *\r\nAuthorization: Digest username=\"2001\", realm=\"santral\", nonce=\"n\", uri=\"sip:127.0.0.1\", response=\"00\"\r\nl: 0\r\n\r\n",
    "SIP/2.0 200 OK\r\nVia: SIP/2.0/UDP 127.0.0.1:5060;branch=z9hG4bKx\r\nFrom: <sip:a@127.0.0.1>;tag=1\r\nTo: <sip:b@127.0.0.2>;tag=2\r\nCall-ID: r\r\nCSeq: 1 INVITE\r\nContent-Length: 0\r\n\r\n",
    "CANCEL sip:2001@127.0.0.1 SIP/2.0\r\nVia: SIP/2.0/UDP 127.0.0.2:5070;branch=z9hG4bKa1\r\nMax-Forwards: 70\r\nFrom: <sip:a@127.0.0.2>;tag=1\r\nTo: <sip:2001@127.0.0.1>\r\nCall-ID: p1@127.0.0.2\r\nCSeq: 1 CANCEL\r\nContent-Length: 0\r\n\r\n",
];

#[derive(Debug, Clone)]
enum Mutation {
    Flip(usize, u8),
    Delete(usize, usize),
    Insert(usize, Vec<u8>),
    Duplicate(usize, usize),
}

fn mutation() -> impl Strategy<Value = Mutation> {
    prop_oneof![
        (any::<usize>(), any::<u8>()).prop_map(|(i, b)| Mutation::Flip(i, b)),
        (any::<usize>(), 0usize..40).prop_map(|(i, n)| Mutation::Delete(i, n)),
        (
            any::<usize>(),
            prop::collection::vec(
                prop_oneof![
                    Just(b':'),
                    Just(b';'),
                    Just(b','),
                    Just(b'"'),
                    Just(b'<'),
                    Just(b'>'),
                    Just(b'\r'),
                    Just(b'\n'),
                    Just(b' '),
                    Just(b'='),
                    any::<u8>()
                ],
                0..12
            )
        )
            .prop_map(|(i, v)| Mutation::Insert(i, v)),
        (any::<usize>(), 0usize..80).prop_map(|(i, n)| Mutation::Duplicate(i, n)),
    ]
}

fn apply(mut bytes: Vec<u8>, mutations: &[Mutation]) -> Vec<u8> {
    for m in mutations {
        let len = bytes.len().max(1);
        match m {
            Mutation::Flip(i, b) => {
                if !bytes.is_empty() {
                    let at = i % len;
                    bytes[at] = *b;
                }
            }
            Mutation::Delete(i, n) => {
                let at = i % len;
                let end = (at + n).min(bytes.len());
                if at < end {
                    bytes.drain(at..end);
                }
            }
            Mutation::Insert(i, v) => {
                let at = (i % len).min(bytes.len());
                bytes.splice(at..at, v.iter().copied());
            }
            Mutation::Duplicate(i, n) => {
                let at = i % len;
                let end = (at + n).min(bytes.len());
                if at < end {
                    let piece = bytes[at..end].to_vec();
                    bytes.splice(at..at, piece);
                }
            }
        }
    }
    bytes
}

fn exercise(inputs: &[Vec<u8>], transport: TransportKind) {
    let mut ep = Endpoint::new(EndpointConfig::default());
    let t0 = Instant::now();
    let local = "127.0.0.1:5060".parse().unwrap();
    let remote = "127.0.0.2:5070".parse().unwrap();
    for (i, bytes) in inputs.iter().enumerate() {
        ep.handle_input(
            t0 + Duration::from_millis(i as u64),
            transport,
            local,
            remote,
            bytes,
        );
        // Answer every request so server transactions run their course too.
        while let Some(event) = ep.poll_event() {
            if let santral_sip::Event::Request { id, .. } = event {
                let _ = ep.respond_with(t0, id, 486, "Busy Here");
            }
        }
    }
    while let Some(t) = ep.poll_transmit() {
        assert!(t.bytes.starts_with(b"SIP/2.0 "), "only responses are sent");
        assert_eq!(t.peer.remote, remote);
    }
    // Every timer ends: the endpoint drains within 64·T1 plus margin, in a bounded loop.
    let mut steps = 0;
    while let Some(at) = ep.poll_timeout() {
        assert!(at <= t0 + Duration::from_secs(40), "timer too far out");
        ep.handle_timeout(at);
        while ep.poll_transmit().is_some() {}
        while ep.poll_event().is_some() {}
        steps += 1;
        assert!(steps < 10_000);
    }
    assert_eq!(ep.transaction_count(), 0);
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(512))]

    #[test]
    fn random_bytes_never_panic(inputs in prop::collection::vec(prop::collection::vec(any::<u8>(), 0..600), 1..6)) {
        exercise(&inputs, TransportKind::Udp);
    }

    #[test]
    fn mutated_messages_never_panic(
        picks in prop::collection::vec((0usize..SEEDS.len(), prop::collection::vec(mutation(), 0..6)), 1..6),
        tcp in any::<bool>(),
    ) {
        let inputs: Vec<Vec<u8>> = picks
            .iter()
            .map(|(seed, muts)| apply(SEEDS[*seed].as_bytes().to_vec(), muts))
            .collect();
        for bytes in &inputs {
            // The parser alone must not panic either, and what it accepts re-serialises to
            // something it accepts again.
            if let Ok(m) = Message::parse(bytes) {
                prop_assert!(Message::parse(&m.to_bytes()).is_ok(), "round trip of {:?}", String::from_utf8_lossy(bytes));
            }
        }
        exercise(&inputs, if tcp { TransportKind::Tcp } else { TransportKind::Udp });
    }
}
