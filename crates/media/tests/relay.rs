//! `driver::run_relay` over real UDP on 127.0.0.1: packets from the caller's phone come out to
//! the agent's phone with the agent leg's SSRC and continuous numbering, and the other way,
//! transcoded PCMU ⇄ PCMA; far ends are learned from where their packets come from.

use std::net::{IpAddr, Ipv4Addr};
use std::time::Duration;

use santral_media::codec::Codec;
use santral_media::g711;
use santral_media::relay::{LegFormat, RtpRelay};
use tokio::net::UdpSocket;
use tokio::sync::watch;

const LOCALHOST: IpAddr = IpAddr::V4(Ipv4Addr::LOCALHOST);

fn packet(ssrc: u32, sequence: u16, payload_type: u8, payload: &[u8]) -> Vec<u8> {
    let mut bytes = vec![0x80, payload_type];
    bytes.extend_from_slice(&sequence.to_be_bytes());
    bytes.extend_from_slice(&(sequence as u32 * 160).to_be_bytes());
    bytes.extend_from_slice(&ssrc.to_be_bytes());
    bytes.extend_from_slice(payload);
    bytes
}

async fn bind() -> UdpSocket {
    UdpSocket::bind((LOCALHOST, 0))
        .await
        .unwrap_or_else(|e| panic!("{e}"))
}

async fn receive(socket: &UdpSocket) -> Vec<u8> {
    let mut buffer = [0u8; 2048];
    match tokio::time::timeout(Duration::from_secs(2), socket.recv_from(&mut buffer)).await {
        Ok(Ok((len, _))) => buffer[..len].to_vec(),
        other => panic!("no packet: {other:?}"),
    }
}

#[tokio::test]
async fn relay_forwards_both_ways_with_rewrite_and_transcoding() {
    let (caller_phone, agent_phone, leg_a, leg_b) =
        (bind().await, bind().await, bind().await, bind().await);
    let addr = |s: &UdpSocket| s.local_addr().unwrap_or_else(|e| panic!("{e}"));
    let (caller_addr, agent_addr, leg_a_addr, leg_b_addr) = (
        addr(&caller_phone),
        addr(&agent_phone),
        addr(&leg_a),
        addr(&leg_b),
    );
    let pcmu = LegFormat {
        codec: Codec::Pcmu,
        payload_type: 0,
        telephone_event_payload_type: Some(101),
    };
    let pcma = LegFormat {
        codec: Codec::Pcma,
        payload_type: 8,
        telephone_event_payload_type: Some(96),
    };
    let (stop_tx, stop_rx) = watch::channel(false);
    let relay = tokio::spawn(async move {
        santral_media::driver::run_relay(
            &leg_a,
            // SDP said the caller is elsewhere; symmetric RTP corrects it on the first packet.
            "127.0.0.1:9".parse().unwrap_or(caller_addr),
            &leg_b,
            agent_addr,
            RtpRelay::new(pcmu, pcma, 0xB0B0, 500, 8000),
            RtpRelay::new(pcma, pcmu, 0xA0A0, 900, 16000),
            stop_rx,
        )
        .await
    });

    let tone: Vec<i16> = (0..160)
        .map(|n| ((n as f64 * 0.4).sin() * 6000.0) as i16)
        .collect();
    let ulaw: Vec<u8> = tone.iter().map(|&s| g711::ulaw_encode(s)).collect();
    for sequence in 0..3u16 {
        caller_phone
            .send_to(&packet(0x1111, 40 + sequence, 0, &ulaw), leg_a_addr)
            .await
            .unwrap_or_else(|e| panic!("{e}"));
        let out = receive(&agent_phone).await;
        assert_eq!(out[1] & 0x7F, 8, "PCMA towards the agent");
        assert_eq!(u16::from_be_bytes([out[2], out[3]]), 500 + sequence);
        assert_eq!(
            u32::from_be_bytes([out[8], out[9], out[10], out[11]]),
            0xB0B0
        );
        let worst = out[12..]
            .iter()
            .zip(&tone)
            .map(|(c, s)| (g711::alaw_decode(*c) as i32 - *s as i32).abs())
            .max()
            .unwrap_or(i32::MAX);
        assert!(worst <= 256, "{worst}");
    }
    // The agent answers: it reaches the caller's real address (learned), as PCMU.
    let alaw: Vec<u8> = tone.iter().map(|&s| g711::alaw_encode(s)).collect();
    agent_phone
        .send_to(&packet(0x2222, 7, 8, &alaw), leg_b_addr)
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    let out = receive(&caller_phone).await;
    assert_eq!(
        (out[1] & 0x7F, u16::from_be_bytes([out[2], out[3]])),
        (0, 900)
    );
    assert_eq!(
        u32::from_be_bytes([out[8], out[9], out[10], out[11]]),
        0xA0A0
    );

    let _ = stop_tx.send(true);
    let relayed = relay
        .await
        .unwrap_or_else(|e| panic!("{e}"))
        .unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(relayed, 4);
}
