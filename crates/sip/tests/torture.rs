//! RFC 4475 torture messages (tests/torture/*.sip, documentation addresses rewritten to
//! 127.0.0.x): valid ones parse and reach the application, invalid ones are rejected by the
//! stack with the status the RFC suggests (or dropped when no response can be formed), and none
//! panics.

use std::path::Path;
use std::time::Instant;

use santral_sip::{Endpoint, EndpointConfig, Event, Message, Method, TransportKind};

fn load(name: &str) -> Vec<u8> {
    let path = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/torture")
        .join(format!("{name}.sip"));
    let text = std::fs::read(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    // The files are stored with LF; SIP lines end with CRLF (the bodies' Content-Length counts it).
    let mut out = Vec::with_capacity(text.len() + 64);
    for b in text {
        if b == b'\n' {
            out.push(b'\r');
        }
        out.push(b);
    }
    out
}

/// RFC 4475 §3.1.1.2 "intmeth": kept here because it holds control characters and UTF-8.
fn intmeth() -> Vec<u8> {
    let text = "!interesting-Method0123456789_*+`.%indeed'~ sip:1_unusual.URI~(to-be!sure)&isn't+it$/crazy?,/;;*:&it+has=1,weird!*pas$wo~d_too.(doesn't-it)@example.com SIP/2.0\r\n\
Via: SIP/2.0/TCP host1.example.com;branch=z9hG4bK-.!%66*_+`'~\r\n\
To: \"BEL:\\\x07 NUL:\\\x00 DEL:\\\x7F\" <sip:1_unusual.URI~(to-be!sure)&isn't+it$/crazy?,/;;*@example.com>\r\n\
From: token1~` token2'+_ token3*%!.- <sip:mundane@example.com>;fromParam''~+*_!.-%=\"\u{0440}\u{0430}\u{0431}\u{043e}\u{0442}\u{0430}\u{044e}\u{0449}\u{0438}\u{0439}\";tag=_token~1'+`*%!-.\r\n\
Call-ID: intmeth.word%ZK-!.*_+'@word`~)(><:\\/\"][?}{\r\n\
CSeq: 139122385 !interesting-Method0123456789_*+`.%indeed'~\r\n\
Max-Forwards: 255\r\n\
extensionHeader-!.%*+_`'~:\u{feff}\u{5927}\u{505c}\u{96fb}\r\n\
Content-Length: 0\r\n\r\n";
    text.as_bytes().to_vec()
}

/// Events for the application and the status codes the endpoint sent back. (Error responses
/// echo the sender's headers, broken ones included, so only their status line is read.)
fn feed(bytes: &[u8]) -> (Vec<Event>, Vec<u16>) {
    let mut ep = Endpoint::new(EndpointConfig::default());
    ep.handle_input(
        Instant::now(),
        TransportKind::Udp,
        "127.0.0.1:5060".parse().unwrap(),
        "127.0.0.9:5060".parse().unwrap(),
        bytes,
    );
    let mut events = Vec::new();
    while let Some(e) = ep.poll_event() {
        events.push(e);
    }
    let mut sent = Vec::new();
    while let Some(t) = ep.poll_transmit() {
        let text = String::from_utf8_lossy(&t.bytes).to_string();
        let code = text
            .strip_prefix("SIP/2.0 ")
            .and_then(|rest| rest.get(..3))
            .and_then(|c| c.parse::<u16>().ok())
            .expect("a response status line");
        sent.push(code);
    }
    (events, sent)
}

fn assert_valid_request(name: &str, bytes: &[u8]) -> Message {
    let parsed = Message::parse(bytes).unwrap_or_else(|e| panic!("{name} must parse: {e}"));
    let (events, _) = feed(bytes);
    match events.as_slice() {
        [Event::Request { request, .. }] => assert_eq!(request.call_id(), parsed.call_id()),
        other => panic!("{name}: expected one request event, got {other:?}"),
    }
    parsed
}

fn assert_rejected(name: &str, bytes: &[u8], status: Option<u16>) {
    let (events, sent) = feed(bytes);
    assert!(
        events.is_empty(),
        "{name} must not reach the application: {events:?}"
    );
    assert_eq!(sent, status.into_iter().collect::<Vec<_>>(), "{name}");
}

#[test]
fn wsinv_short_tortuous_invite() {
    let m = assert_valid_request("wsinv", &load("wsinv"));
    assert_eq!(m.to_tag().as_deref(), Some("1918181833n"));
    assert_eq!(m.from_tag().as_deref(), Some("98asjd8"));
    assert_eq!(m.max_forwards().unwrap(), Some(68));
    assert_eq!(m.cseq().unwrap(), (9, Method::Invite));
    let via = m.top_via().unwrap();
    assert_eq!(
        (via.transport.as_str(), via.host.as_str()),
        ("UDP", "127.0.0.2")
    );
    assert_eq!(via.branch(), Some("390skdjuw"));
    assert_eq!(m.header_entries("Via").len(), 3);
    assert_eq!(m.header("Subject"), Some(""));
    assert_eq!(
        m.header("NewFangledHeader"),
        Some("newfangled value continued newfangled value")
    );
    assert_eq!(m.header("UnknownHeaderWithUnusualValue"), Some(";;,,;;,;"));
    assert_eq!(m.body.len(), 150);
    let contacts = m.contacts().unwrap();
    assert_eq!(contacts.len(), 1);
}

#[test]
fn intmeth_wide_range_of_valid_characters() {
    let m = assert_valid_request("intmeth", &intmeth());
    assert_eq!(
        m.method(),
        Some(&Method::Extension(
            "!interesting-Method0123456789_*+`.%indeed'~".into()
        ))
    );
    assert_eq!(m.from_tag().as_deref(), Some("_token~1'+`*%!-."));
    assert_eq!(m.max_forwards().unwrap(), Some(255));
    assert_eq!(m.top_via().unwrap().branch(), Some("z9hG4bK-.!%66*_+`'~"));
}

#[test]
fn esc01_escaped_characters() {
    let m = assert_valid_request("esc01", &load("esc01"));
    assert_eq!(
        m.request_uri(),
        Some("sip:sips%3Auser%40example.com@example.net")
    );
    assert_eq!(m.header("Content-Type"), Some("application/sdp"));
    assert_eq!(m.call_id(), Some("esc01.239409asdfakjkn23onasd0-3234"));
}

#[test]
fn other_valid_requests_reach_the_application() {
    for name in ["badbranch", "cparam01", "cparam02"] {
        assert_valid_request(name, &load(name));
    }
}

#[test]
fn bext01_unknown_required_extensions_get_420_listing_them() {
    assert!(Message::parse(&load("bext01")).is_ok());
    let mut ep = Endpoint::new(EndpointConfig::default());
    ep.handle_input(
        Instant::now(),
        TransportKind::Udp,
        "127.0.0.1:5060".parse().unwrap(),
        "127.0.0.9:5060".parse().unwrap(),
        &load("bext01"),
    );
    assert_eq!(ep.poll_event(), None);
    let response = Message::parse(&ep.poll_transmit().unwrap().bytes).unwrap();
    assert_eq!(response.status(), Some(420));
    assert_eq!(
        response.header("Unsupported"),
        Some("nothingSupportsThis, nothingSupportsThisEither")
    );
}

#[test]
fn valid_response_parses_and_is_dropped_without_a_transaction() {
    let m = Message::parse(&load("bcast")).unwrap();
    assert_eq!(m.status(), Some(200));
    let (events, sent) = feed(&load("bcast"));
    assert!(events.is_empty() && sent.is_empty());
}

#[test]
fn invalid_requests_get_400() {
    for name in [
        "badinv01",
        "clerr",
        "ncl",
        "scalar02",
        "quotbal",
        "ltgtruri",
        "lwsruri",
        "lwsstart",
        "trws",
        "escruri",
        "baddate",
        "regbadct",
        "badaspec",
        "baddn",
        "mismatch01",
        "mismatch02",
    ] {
        assert!(
            Message::parse(&load(name)).is_err(),
            "{name} must not parse"
        );
        assert_rejected(name, &load(name), Some(400));
    }
}

#[test]
fn unsupported_version_gets_505() {
    assert_rejected("badvers", &load("badvers"), Some(505));
}

#[test]
fn unanswerable_messages_are_dropped() {
    // insuf lacks From, To and Call-ID: no response can be formed.
    assert_rejected("insuf", &load("insuf"), None);
    // Responses with out-of-range scalars are simply discarded.
    for name in ["scalarlg", "bigcode"] {
        assert!(Message::parse(&load(name)).is_err(), "{name}");
        assert_rejected(name, &load(name), None);
    }
}

#[test]
fn truncations_of_every_message_never_panic() {
    let mut all: Vec<Vec<u8>> = [
        "wsinv",
        "esc01",
        "badinv01",
        "clerr",
        "ncl",
        "scalar02",
        "scalarlg",
        "quotbal",
        "ltgtruri",
        "lwsruri",
        "lwsstart",
        "trws",
        "escruri",
        "baddate",
        "regbadct",
        "badaspec",
        "baddn",
        "badvers",
        "mismatch01",
        "mismatch02",
        "bigcode",
        "badbranch",
        "bcast",
        "bext01",
        "cparam01",
        "cparam02",
        "insuf",
    ]
    .iter()
    .map(|n| load(n))
    .collect();
    all.push(intmeth());
    for bytes in all {
        for cut in 0..bytes.len() {
            let _ = feed(&bytes[..cut]);
        }
    }
}
