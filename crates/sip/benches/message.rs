//! Parse + serialise of a typical INVITE with SDP.

use std::hint::black_box;

use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use santral_sip::Message;

const INVITE: &str = "INVITE sip:2001@127.0.0.1:5060 SIP/2.0\r\n\
Via: SIP/2.0/UDP 127.0.0.2:5070;branch=z9hG4bK74bf9;rport\r\n\
Max-Forwards: 70\r\n\
From: \"Customer\" <sip:+905321112233@127.0.0.2>;tag=9fxced76sl\r\n\
To: <sip:2001@127.0.0.1>\r\n\
Call-ID: 3848276298220188511@127.0.0.2\r\n\
CSeq: 1 INVITE\r\n\
Contact: <sip:+905321112233@127.0.0.2:5070;transport=udp>\r\n\
Allow: INVITE, ACK, CANCEL, BYE, OPTIONS, INFO, REFER, NOTIFY\r\n\
Supported: replaces, timer\r\n\
User-Agent: carrier-sbc/4.2\r\n\
Content-Type: application/sdp\r\n\
Content-Length: 226\r\n\
\r\n\
v=0\r\n\
o=- 3849372 3849372 IN IP4 127.0.0.2\r\n\
s=-\r\n\
c=IN IP4 127.0.0.2\r\n\
t=0 0\r\n\
m=audio 40000 RTP/AVP 0 8 101\r\n\
a=rtpmap:0 PCMU/8000\r\n\
a=rtpmap:8 PCMA/8000\r\n\
a=rtpmap:101 telephone-event/8000\r\n\
a=fmtp:101 0-16\r\n\
a=ptime:20\r\n\
a=sendrecv\r\n";

fn parse_and_serialise(c: &mut Criterion) {
    assert!(Message::parse(INVITE.as_bytes()).is_ok());
    let mut group = c.benchmark_group("message");
    group.throughput(Throughput::Elements(1));
    group.bench_function("parse_serialise_invite_sdp", |b| {
        let mut out = Vec::with_capacity(2048);
        b.iter(|| {
            let message = Message::parse(black_box(INVITE.as_bytes())).ok();
            out.clear();
            if let Some(m) = &message {
                m.write_to(&mut out);
            }
            black_box(out.len())
        })
    });
    group.bench_function("parse_invite_sdp", |b| {
        b.iter(|| black_box(Message::parse(black_box(INVITE.as_bytes())).is_ok()))
    });
    group.finish();
}

criterion_group!(benches, parse_and_serialise);
criterion_main!(benches);
