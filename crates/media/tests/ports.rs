//! RTP port pairs bound for real on 127.0.0.1: even RTP / odd RTCP, ports held by someone else
//! are skipped, and a pair is reused after its sockets are dropped.

use std::net::{IpAddr, Ipv4Addr, UdpSocket};

use santral_media::driver::RtpSockets;
use santral_media::port::PortAllocator;

const LOCALHOST: IpAddr = IpAddr::V4(Ipv4Addr::LOCALHOST);

#[tokio::test]
async fn busy_ports_are_skipped_and_pairs_come_back_after_release() {
    let allocator = PortAllocator::new(44100..=44107).unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(allocator.capacity(), 4);
    // Another process holds 44100.
    let squatter = UdpSocket::bind((LOCALHOST, 44100)).unwrap_or_else(|e| panic!("{e}"));
    let first = RtpSockets::bind(LOCALHOST, &allocator)
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(first.rtp_port(), 44102);
    assert_eq!(
        first.rtcp.local_addr().map(|a| a.port()).unwrap_or(0),
        44103
    );
    let second = RtpSockets::bind(LOCALHOST, &allocator)
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    let third = RtpSockets::bind(LOCALHOST, &allocator)
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    assert_eq!((second.rtp_port(), third.rtp_port()), (44104, 44106));
    // 44100 is still taken and everything else is leased: no pair left.
    assert!(RtpSockets::bind(LOCALHOST, &allocator).await.is_err());
    drop(squatter);
    drop(second);
    let again = RtpSockets::bind(LOCALHOST, &allocator)
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    assert!(
        [44100, 44104].contains(&again.rtp_port()),
        "{}",
        again.rtp_port()
    );
    drop((first, third, again));
    assert_eq!(allocator.available(), 4);
}
