//! A full REGISTER challenge/response through the Endpoint and the Registrar: REGISTER → 401
//! with a fresh nonce → the client's digest answer → REGISTER with Authorization → 200 OK.
//! Each iteration is one such exchange (four SIP messages). TCP peers, so transactions end at
//! once and the endpoint does not grow across iterations.

use std::hint::black_box;
use std::net::SocketAddr;
use std::time::Instant;

use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use santral_sip::client::{self, Credentials};
use santral_sip::registrar::{Registrar, RegistrarConfig};
use santral_sip::{Endpoint, EndpointConfig, Event, Message, TransportKind};

fn register(n: u64, cseq: u32) -> Message {
    let mut m = Message::request(santral_sip::Method::Register, "sip:127.0.0.1");
    m.push_header(
        "Via",
        format!("SIP/2.0/TCP 127.0.0.2:5070;branch=z9hG4bK{n}x{cseq};rport"),
    );
    m.push_header("Max-Forwards", "70");
    m.push_header("From", format!("<sip:2001@127.0.0.1>;tag=t{n}"));
    m.push_header("To", "<sip:2001@127.0.0.1>");
    m.push_header("Call-ID", format!("bench-{n}@127.0.0.2"));
    m.push_header("CSeq", format!("{cseq} REGISTER"));
    m.push_header("Contact", "<sip:2001@127.0.0.2:5070;transport=tcp>");
    m.push_header("Expires", "600");
    m
}

fn exchange(
    ep: &mut Endpoint,
    registrar: &mut Registrar,
    now: Instant,
    local: SocketAddr,
    remote: SocketAddr,
    bytes: &[u8],
) -> Option<Message> {
    ep.handle_input(now, TransportKind::Tcp, local, remote, bytes);
    while let Some(event) = ep.poll_event() {
        if let Event::Request { id, request, peer } = event {
            let reply = registrar.handle_register(now, &request, peer);
            ep.respond(now, id, reply.response).ok()?;
        }
    }
    let transmit = ep.poll_transmit()?;
    Message::parse(&transmit.bytes).ok()
}

fn register_round_trip(c: &mut Criterion) {
    let local: SocketAddr = "127.0.0.1:5060".parse().unwrap();
    let remote: SocketAddr = "127.0.0.2:5070".parse().unwrap();
    let credentials = Credentials {
        username: "2001".into(),
        password: "secret2001".into(),
    };
    let mut ep = Endpoint::new(EndpointConfig::default());
    let mut registrar = Registrar::new(
        RegistrarConfig::default(),
        [("2001".to_string(), "secret2001".to_string())],
    );
    let now = Instant::now();
    let mut n = 0u64;
    let mut group = c.benchmark_group("register");
    group.throughput(Throughput::Elements(4));
    group.bench_function("challenge_response_through_endpoint", |b| {
        b.iter(|| {
            n += 1;
            let first = register(n, 1);
            let challenge = exchange(
                &mut ep,
                &mut registrar,
                now,
                local,
                remote,
                &first.to_bytes(),
            )
            .expect("401");
            let mut second = register(n, 2);
            client::authorize(&mut second, &challenge, &credentials, 1);
            let ok = exchange(
                &mut ep,
                &mut registrar,
                now,
                local,
                remote,
                &second.to_bytes(),
            )
            .expect("200");
            assert_eq!(ok.status(), Some(200));
            black_box(ok)
        })
    });
    group.finish();
}

criterion_group!(benches, register_round_trip);
criterion_main!(benches);
