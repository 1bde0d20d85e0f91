//! The tokio driver on real loopback sockets: a client registration against the registrar over
//! UDP and TCP, TCP stream framing (several messages per segment, one message over several
//! segments, responses on the same connection), and an outgoing call cancelled with CANCEL.

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use santral_sip::client::{
    CallConfig, CallEvent, Credentials, OutgoingCall, RegistrationConfig, RegistrationEvent,
    RegistrationState,
};
use santral_sip::driver::{self, Listen, SipEvents, SipHandle};
use santral_sip::registrar::{Registrar, RegistrarConfig};
use santral_sip::user_agent::RegistrationTask;
use santral_sip::{EndpointConfig, Event, Message, Method, TransportKind};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::time::timeout;

const WAIT: Duration = Duration::from_secs(5);

async fn start(listen: &[(TransportKind, &str)]) -> (SipHandle, SipEvents) {
    let listen: Vec<Listen> = listen
        .iter()
        .map(|(transport, addr)| Listen {
            transport: *transport,
            addr: addr.parse().unwrap(),
        })
        .collect();
    driver::start(EndpointConfig::default(), &listen)
        .await
        .unwrap()
}

/// Runs a registrar on `handle`'s events until the task is aborted.
fn spawn_registrar(handle: SipHandle, mut events: SipEvents) -> tokio::task::JoinHandle<()> {
    tokio::spawn(async move {
        let mut registrar = Registrar::new(
            RegistrarConfig::default(),
            [("2001".to_string(), "secret2001".to_string())],
        );
        while let Some(event) = events.next().await {
            if let Event::Request { id, request, peer } = event {
                let response = match request.method() {
                    Some(Method::Register) => {
                        registrar
                            .handle_register(Instant::now(), &request, peer)
                            .response
                    }
                    _ => santral_sip::registrar::options_response(&request, "srv"),
                };
                let _ = handle.respond(id, response).await;
            }
        }
    })
}

async fn register_once(transport: TransportKind, server: SocketAddr) -> u32 {
    let (client, mut events) = start(&[(transport, "127.0.0.1:0")]).await;
    let local = client.local_addr(transport).unwrap();
    let config = RegistrationConfig {
        registrar_uri: format!("sip:{server}"),
        aor: format!("sip:2001@{}", server.ip()),
        contact: format!("sip:2001@{local}"),
        expires: 120,
        credentials: Credentials {
            username: "2001".into(),
            password: "secret2001".into(),
        },
        retry_after: Duration::from_secs(30),
    };
    let mut task = RegistrationTask::new(config, transport, server, Instant::now());
    task.poll(&client, Instant::now()).await.unwrap();
    for _ in 0..4 {
        let event = timeout(WAIT, events.next()).await.unwrap().unwrap();
        match task
            .handle_event(&client, &event, Instant::now())
            .await
            .unwrap()
        {
            Some(RegistrationEvent::Registered { expires }) => {
                assert!(matches!(task.state(), RegistrationState::Registered { .. }));
                // Refresh due at 80 % of the granted time.
                let wake = task.next_wake().unwrap();
                assert!(wake > Instant::now() + Duration::from_secs(90));
                // Unregistering is challenged too, then accepted.
                task.unregister(&client).await.unwrap();
                let mut outcome = None;
                for _ in 0..4 {
                    let event = timeout(WAIT, events.next()).await.unwrap().unwrap();
                    outcome = task
                        .handle_event(&client, &event, Instant::now())
                        .await
                        .unwrap();
                    if outcome.is_some() {
                        break;
                    }
                }
                assert_eq!(outcome, Some(RegistrationEvent::Unregistered));
                assert_eq!(task.state(), RegistrationState::Unregistered);
                return expires;
            }
            Some(other) => panic!("registration failed: {other:?}"),
            None => {}
        }
    }
    panic!("no final answer")
}

#[tokio::test]
async fn client_registers_over_udp_and_tcp() {
    let (server, events) = start(&[
        (TransportKind::Udp, "127.0.0.1:0"),
        (TransportKind::Tcp, "127.0.0.1:0"),
    ])
    .await;
    let udp = server.local_addr(TransportKind::Udp).unwrap();
    let tcp = server.local_addr(TransportKind::Tcp).unwrap();
    let task = spawn_registrar(server.clone(), events);
    assert_eq!(register_once(TransportKind::Udp, udp).await, 120);
    assert_eq!(register_once(TransportKind::Tcp, tcp).await, 120);
    task.abort();
}

fn options(branch: &str, body: &str) -> String {
    format!(
        "OPTIONS sip:127.0.0.1 SIP/2.0\r\nVia: SIP/2.0/TCP 127.0.0.1:9;branch={branch}\r\n\
Max-Forwards: 70\r\nFrom: <sip:t@127.0.0.1>;tag={branch}\r\nTo: <sip:127.0.0.1>\r\n\
Call-ID: {branch}\r\nCSeq: 1 OPTIONS\r\nContent-Length: {}\r\n\r\n{body}",
        body.len()
    )
}

async fn read_responses(stream: &mut tokio::net::TcpStream, count: usize) -> Vec<Message> {
    let mut framer = santral_sip::transport::StreamFramer::new(Default::default());
    let mut out = Vec::new();
    let mut buffer = [0u8; 4096];
    while out.len() < count {
        let n = timeout(WAIT, stream.read(&mut buffer))
            .await
            .unwrap()
            .unwrap();
        assert!(n > 0, "connection closed early");
        framer.push(&buffer[..n]);
        while let Some(bytes) = framer.next_message().unwrap() {
            out.push(Message::parse(&bytes).unwrap());
        }
    }
    out
}

#[tokio::test]
async fn tcp_framing_and_responses_on_the_same_connection() {
    let (server, events) = start(&[(TransportKind::Tcp, "127.0.0.1:0")]).await;
    let tcp = server.local_addr(TransportKind::Tcp).unwrap();
    let task = spawn_registrar(server.clone(), events);
    let mut stream = tokio::net::TcpStream::connect(tcp).await.unwrap();
    // Two messages in one segment.
    let both = format!(
        "{}{}",
        options("z9hG4bKone", "x"),
        options("z9hG4bKtwo", "")
    );
    stream.write_all(both.as_bytes()).await.unwrap();
    let got = read_responses(&mut stream, 2).await;
    let mut ids: Vec<_> = got
        .iter()
        .map(|m| m.call_id().unwrap().to_string())
        .collect();
    ids.sort();
    assert_eq!(ids, vec!["z9hG4bKone", "z9hG4bKtwo"]);
    assert!(got.iter().all(|m| m.status() == Some(200)));
    // One message over many segments.
    let whole = options("z9hG4bKthree", "hello");
    for chunk in whole.as_bytes().chunks(11) {
        stream.write_all(chunk).await.unwrap();
        stream.flush().await.unwrap();
        tokio::time::sleep(Duration::from_millis(2)).await;
    }
    let got = read_responses(&mut stream, 1).await;
    assert_eq!(got[0].call_id(), Some("z9hG4bKthree"));
    assert_eq!(got[0].header("Allow"), Some(santral_sip::registrar::ALLOW));
    task.abort();
}

#[tokio::test]
async fn outgoing_call_is_cancelled() {
    let (callee, mut callee_events) = start(&[(TransportKind::Udp, "127.0.0.1:0")]).await;
    let callee_addr = callee.local_addr(TransportKind::Udp).unwrap();
    let callee_task = tokio::spawn(async move {
        let mut seen = Vec::new();
        while let Some(event) = callee_events.next().await {
            match event {
                Event::Request { id, request, .. } if request.method() == Some(&Method::Invite) => {
                    let mut ringing = Message::response_to(&request, 180, "Ringing");
                    ringing.set_to_tag("callee");
                    ringing.push_header("Contact", format!("<sip:2001@{}>", "127.0.0.1"));
                    callee.respond(id, ringing).await.unwrap();
                    seen.push("invite");
                }
                Event::Cancelled { .. } => {
                    seen.push("cancelled");
                    return seen;
                }
                _ => {}
            }
        }
        seen
    });

    let (caller, mut events) = start(&[(TransportKind::Udp, "127.0.0.1:0")]).await;
    let local = caller.local_addr(TransportKind::Udp).unwrap();
    let (mut call, invite) = OutgoingCall::new(CallConfig {
        target: format!("sip:2001@{callee_addr}"),
        from: format!("sip:santral@{}", local.ip()),
        to: format!("sip:2001@{}", callee_addr.ip()),
        contact: format!("sip:santral@{local}"),
        sdp: None,
        credentials: None,
    });
    let invite_id = caller
        .send_request(invite.clone(), TransportKind::Udp, callee_addr)
        .await
        .unwrap();
    let mut statuses = Vec::new();
    for _ in 0..10 {
        let event = timeout(WAIT, events.next()).await.unwrap().unwrap();
        let Event::Response { id, response } = event else {
            continue;
        };
        let status = response.status().unwrap();
        statuses.push((response.cseq().unwrap().1.to_string(), status));
        if id == invite_id {
            match call.handle_response(&invite, &response) {
                Some(CallEvent::Progress { status: 180 }) => {
                    assert!(call.cancel());
                    caller.cancel(invite_id).await.unwrap();
                }
                Some(CallEvent::Failed { status: 487 }) => break,
                _ => {}
            }
        }
    }
    assert!(statuses.contains(&("INVITE".to_string(), 180)));
    assert!(statuses.contains(&("CANCEL".to_string(), 200)));
    assert!(statuses.contains(&("INVITE".to_string(), 487)));
    let seen = timeout(WAIT, callee_task).await.unwrap().unwrap();
    assert_eq!(seen, vec!["invite", "cancelled"]);
}

/// A whole call between two drivers on loopback: INVITE challenged with 401 and answered with
/// digest, 180, 200 with SDP, ACK (its own transaction, stopping the 2xx retransmissions),
/// re-INVITE for hold, INFO, and BYE, every in-dialog request checked by the callee's dialog.
#[tokio::test]
async fn call_with_digest_dialog_reinvite_info_and_bye() {
    use bytes::Bytes;
    use santral_sip::dialog::Dialog;

    let (callee, mut callee_events) = start(&[(TransportKind::Udp, "127.0.0.1:0")]).await;
    let callee_addr = callee.local_addr(TransportKind::Udp).unwrap();
    let callee_task = tokio::spawn(async move {
        let mut auth = Registrar::new(
            RegistrarConfig {
                realm: "agents".into(),
                ..RegistrarConfig::default()
            },
            [("santral".to_string(), "trunk-secret".to_string())],
        );
        let mut dialog: Option<Dialog> = None;
        let mut log = Vec::new();
        while let Some(event) = timeout(WAIT, callee_events.next()).await.ok().flatten() {
            match event {
                Event::Request { id, request, peer } => {
                    let method = request.method().cloned().unwrap();
                    log.push(method.to_string());
                    let response = match (&mut dialog, method) {
                        (None, Method::Invite) => {
                            match auth.authenticate(Instant::now(), &request, peer.remote.ip()) {
                                Err(reply) => reply.response,
                                Ok(user) => {
                                    log.push(format!("authenticated {user}"));
                                    let mut d = Dialog::from_uas(
                                        &request,
                                        "callee-tag",
                                        &format!("sip:2001@{callee_addr}"),
                                    )
                                    .unwrap();
                                    let ringing = d.response(&request, 180, "Ringing");
                                    callee.respond(id, ringing).await.unwrap();
                                    let mut ok = d.response(&request, 200, "OK");
                                    ok.push_header("Content-Type", "application/sdp");
                                    ok.body = Bytes::from_static(b"v=0\r\na=sendrecv\r\n");
                                    dialog = Some(d);
                                    ok
                                }
                            }
                        }
                        (Some(d), _) => match d.handle_request(&request) {
                            Ok(()) => d.response(&request, 200, "OK"),
                            Err(e) => Message::response_to(&request, e.status(), "Dialog error"),
                        },
                        (None, _) => Message::response_to(&request, 481, "No dialog"),
                    };
                    callee.respond(id, response).await.unwrap();
                    if request.method() == Some(&Method::Bye) {
                        return log;
                    }
                }
                Event::Ack { request, .. } => {
                    if let Some(d) = &mut dialog {
                        assert!(d.matches(&request), "ACK belongs to the dialog");
                    }
                    log.push("ACK".into());
                }
                _ => {}
            }
        }
        log
    });

    let (caller, mut events) = start(&[(TransportKind::Udp, "127.0.0.1:0")]).await;
    let local = caller.local_addr(TransportKind::Udp).unwrap();
    let (mut call, mut invite) = OutgoingCall::new(CallConfig {
        target: format!("sip:2001@{callee_addr}"),
        from: format!("sip:santral@{}", local.ip()),
        to: format!("sip:2001@{}", callee_addr.ip()),
        contact: format!("sip:santral@{local}"),
        sdp: Some(Bytes::from_static(b"v=0\r\na=sendrecv\r\n")),
        credentials: Some(Credentials {
            username: "santral".into(),
            password: "trunk-secret".into(),
        }),
    });
    caller
        .send_request(invite.clone(), TransportKind::Udp, callee_addr)
        .await
        .unwrap();
    let mut answered_sdp = None;
    for _ in 0..20 {
        let event = timeout(WAIT, events.next()).await.unwrap().unwrap();
        let Event::Response { response, .. } = event else {
            continue;
        };
        match call.handle_response(&invite, &response) {
            Some(CallEvent::Resend(next)) => {
                invite = next;
                caller
                    .send_request(invite.clone(), TransportKind::Udp, callee_addr)
                    .await
                    .unwrap();
            }
            Some(CallEvent::Answered { ack, sdp }) => {
                let hop = call.dialog().and_then(|d| d.next_hop()).unwrap();
                assert_eq!(hop, callee_addr, "remote target from the callee's Contact");
                caller.send_stateless(ack, TransportKind::Udp, hop).unwrap();
                answered_sdp = Some(sdp);
                break;
            }
            Some(CallEvent::Failed { status }) => panic!("call failed with {status}"),
            _ => {}
        }
    }
    assert_eq!(answered_sdp.as_deref(), Some(&b"v=0\r\na=sendrecv\r\n"[..]));

    // In-dialog requests: hold (re-INVITE + ACK), INFO, then BYE.
    let hop = callee_addr;
    let dialog = call.dialog_mut().unwrap();
    let hold = dialog.reinvite(Bytes::from_static(b"v=0\r\na=sendonly\r\n"));
    let hold_seq = hold.cseq().unwrap().0;
    let info = dialog.info(
        "application/dtmf-relay",
        Bytes::from_static(b"Signal=5\r\nDuration=160\r\n"),
    );
    for request in [hold, info] {
        let method = request.method().cloned().unwrap();
        caller
            .send_request(request, TransportKind::Udp, hop)
            .await
            .unwrap();
        loop {
            let event = timeout(WAIT, events.next()).await.unwrap().unwrap();
            if let Event::Response { response, .. } = event
                && response.cseq().unwrap().1 == method
                && response.status() == Some(200)
            {
                break;
            }
        }
        if method == Method::Invite {
            let ack = call.dialog().unwrap().ack(hold_seq);
            caller.send_stateless(ack, TransportKind::Udp, hop).unwrap();
        }
    }
    let bye = call.bye().unwrap();
    caller
        .send_request(bye, TransportKind::Udp, hop)
        .await
        .unwrap();
    loop {
        let event = timeout(WAIT, events.next()).await.unwrap().unwrap();
        if let Event::Response { response, .. } = event
            && response.cseq().unwrap().1 == Method::Bye
        {
            assert_eq!(response.status(), Some(200));
            break;
        }
    }
    let log = timeout(WAIT, callee_task).await.unwrap().unwrap();
    assert_eq!(
        log,
        vec![
            "INVITE",
            "INVITE",
            "authenticated santral",
            "ACK",
            "INVITE",
            "ACK",
            "INFO",
            "BYE"
        ]
    );
}
