//! A stop request (what SIGINT/SIGTERM do) ends a run early: answered calls are hung up and
//! counted unfinished, and the report is still produced. Its own test binary, because the stop
//! flag is process-wide.

mod support;

use std::time::Duration;

use santral_load::audio::EncodedAudio;
use santral_load::call::SipTimers;
use santral_load::sdp::Law;
use santral_load::{LoadConfig, process, run};
use santral_sip::{Message, Method};
use support::Scripted;

#[test]
fn a_stop_request_hangs_up_and_still_reports() {
    let server = Scripted::start(|request| match request.method() {
        Some(Method::Invite) => {
            let mut ok = Message::response_to(request, 200, "OK");
            ok.set_to_tag("uas");
            ok.push_header("Contact", "<sip:uas@127.0.0.1>");
            ok.push_header("Content-Type", "application/sdp");
            // RTP towards a discard port on loopback; nobody needs to read it.
            let sdp = "v=0\r\nc=IN IP4 127.0.0.1\r\nt=0 0\r\nm=audio 9 RTP/AVP 8\r\n";
            ok.body = sdp.as_bytes().to_vec().into();
            Some(ok)
        }
        Some(Method::Bye) => Some(Message::response_to(request, 200, "OK")),
        _ => None,
    });
    let config = LoadConfig {
        target: server.addr,
        to_user: "1000".into(),
        rate_per_s: 50.0,
        calls: 3,
        max_concurrent: None,
        // Without the stop, calls would complete after the hold: unfinished proves the stop.
        hold: Duration::from_secs(100),
        digit: None,
        law: Law::Pcma,
        audio: EncodedAudio::tone(Law::Pcma),
        max_duration: Duration::from_secs(120),
        rtp_sockets: 1,
        send_phases: 10,
        timers: SipTimers::default(),
    };
    let stopper = std::thread::spawn(|| {
        std::thread::sleep(Duration::from_millis(500));
        process::request_stop();
    });
    let report = run(&config).expect("run");
    stopper.join().expect("stopper");
    let seen = server.stop();
    assert_eq!(report.calls.answered, 3, "{}", report.table());
    assert_eq!(report.calls.unfinished, 3, "{}", report.table());
    assert_eq!(
        seen.iter().filter(|m| **m == Method::Bye).count(),
        3,
        "{seen:?}"
    );
    assert!(report.rtp.sent > 0);
}
