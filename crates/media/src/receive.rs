//! Reading a session's datagrams at its tick, with the time the kernel received each one.
//!
//! A session driver that waits for every packet wakes twice per 20 ms (its packet, the tick),
//! and the packet wake-ups land between other sessions' ticks in an order that changes from
//! period to period. Reading what arrived at the tick instead halves the wake-ups and keeps
//! every session's work in one stable slot of the period; the kernel's arrival timestamp
//! (`SO_TIMESTAMPNS`) keeps the jitter buffer's and RTCP's view of arrival times exact, as if
//! each packet had been read the moment it came.

use std::io;
use std::io::IoSliceMut;
use std::net::{SocketAddr, SocketAddrV4, SocketAddrV6};
use std::os::fd::{AsFd, AsRawFd};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use nix::errno::Errno;
use nix::sys::socket::{
    ControlMessageOwned, MsgFlags, SockaddrStorage, recvmsg, setsockopt, sockopt,
};

/// Room for one `SCM_TIMESTAMPNS` control message (a `timespec`), with headroom, aligned as
/// the kernel's `cmsghdr` walk requires.
#[repr(C, align(8))]
struct ControlBuffer([u8; 64]);

/// One datagram read.
#[derive(Debug, Clone, Copy)]
pub struct Datagram {
    pub len: usize,
    pub source: SocketAddr,
    /// When the kernel received it (or when it was read, if the kernel gave no time).
    pub arrived: Instant,
}

/// Asks the kernel to stamp every datagram this socket receives with its arrival time.
pub fn enable_arrival_times(socket: &impl AsFd) -> io::Result<()> {
    setsockopt(socket, sockopt::ReceiveTimestampns, &true).map_err(io::Error::from)
}

/// Maps the kernel's wall-clock stamps onto `Instant`s: one reading of both clocks per batch.
#[derive(Debug, Clone, Copy)]
pub struct ArrivalClock {
    wall: SystemTime,
    now: Instant,
}

impl ArrivalClock {
    pub fn read() -> Self {
        ArrivalClock {
            wall: SystemTime::now(),
            now: Instant::now(),
        }
    }

    pub(crate) fn instant_of(&self, stamp: Duration) -> Instant {
        let at = UNIX_EPOCH + stamp;
        // A stamp more than a second away is not a timing we would act on: clamp it.
        match self.wall.duration_since(at) {
            Ok(age) => self
                .now
                .checked_sub(age.min(Duration::from_secs(1)))
                .unwrap_or(self.now),
            // Arrived after the clocks were read (one reading serves a whole walk of sessions).
            Err(ahead) => self.now + ahead.duration().min(Duration::from_secs(1)),
        }
    }

    /// When the clocks were read.
    pub fn now(&self) -> Instant {
        self.now
    }
}

/// Reads one waiting datagram without blocking; `Ok(None)` when none is waiting.
pub fn try_receive(
    socket: &impl AsRawFd,
    buffer: &mut [u8],
    clock: &ArrivalClock,
) -> io::Result<Option<Datagram>> {
    let mut control = ControlBuffer([0; 64]);
    let mut iov = [IoSliceMut::new(buffer)];
    let message = match recvmsg::<SockaddrStorage>(
        socket.as_raw_fd(),
        &mut iov,
        Some(&mut control.0),
        MsgFlags::MSG_DONTWAIT,
    ) {
        Ok(message) => message,
        Err(Errno::EAGAIN) => return Ok(None),
        Err(Errno::EINTR) => return Ok(None),
        Err(errno) => return Err(io::Error::from(errno)),
    };
    let len = message.bytes;
    let Some(source) = message.address.as_ref().and_then(socket_addr) else {
        return Ok(None);
    };
    let arrived = message
        .cmsgs()
        .ok()
        .and_then(|mut messages| messages.find_map(|control| arrival_stamp(&control)))
        .map_or(clock.now, |stamp| clock.instant_of(stamp));
    Ok(Some(Datagram {
        len,
        source,
        arrived,
    }))
}

/// The kernel's receive time, when the control message is one (a zero stamp means the kernel
/// had not started stamping yet: it turns stamping on for the whole stack lazily).
fn arrival_stamp(control: &ControlMessageOwned) -> Option<Duration> {
    match control {
        ControlMessageOwned::ScmTimestampns(stamp) if stamp.tv_sec() > 0 => {
            Some(Duration::new(stamp.tv_sec() as u64, stamp.tv_nsec() as u32))
        }
        _ => None,
    }
}

pub(crate) fn socket_addr(address: &SockaddrStorage) -> Option<SocketAddr> {
    if let Some(v4) = address.as_sockaddr_in() {
        return Some(SocketAddr::V4(SocketAddrV4::from(*v4)));
    }
    address
        .as_sockaddr_in6()
        .map(|v6| SocketAddr::V6(SocketAddrV6::from(*v6)))
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::net::UdpSocket;

    #[test]
    fn datagrams_carry_the_kernel_arrival_time_and_source() {
        let receiver = UdpSocket::bind("127.0.0.1:0").unwrap();
        enable_arrival_times(&receiver).unwrap();
        let sender = UdpSocket::bind("127.0.0.1:0").unwrap();
        let mut buffer = [0u8; 64];
        let clock = ArrivalClock::read();
        assert!(
            try_receive(&receiver, &mut buffer, &clock)
                .unwrap()
                .is_none()
        );
        // The kernel turns stamping on for the stack a moment after the first socket asks;
        // until then datagrams are timed when read.
        for _ in 0..100 {
            sender
                .send_to(b"warm-up", receiver.local_addr().unwrap())
                .unwrap();
            std::thread::sleep(Duration::from_millis(10));
            let clock = ArrivalClock::read();
            let warm_up = try_receive(&receiver, &mut buffer, &clock).unwrap();
            if warm_up.is_some_and(|d| d.arrived + Duration::from_millis(5) < clock.now) {
                break;
            }
        }

        let sent_at = Instant::now();
        sender
            .send_to(b"first", receiver.local_addr().unwrap())
            .unwrap();
        std::thread::sleep(Duration::from_millis(30));
        sender
            .send_to(b"second!", receiver.local_addr().unwrap())
            .unwrap();
        std::thread::sleep(Duration::from_millis(5));
        let clock = ArrivalClock::read();
        let first = try_receive(&receiver, &mut buffer, &clock)
            .unwrap()
            .unwrap();
        assert_eq!(&buffer[..first.len], b"first");
        assert_eq!(first.source, sender.local_addr().unwrap());
        let second = try_receive(&receiver, &mut buffer, &clock)
            .unwrap()
            .unwrap();
        assert_eq!(second.len, 7);
        // Read together, yet stamped ~30 ms apart, the first one before the reading.
        let apart = second.arrived.duration_since(first.arrived);
        assert!(
            apart >= Duration::from_millis(25) && apart <= Duration::from_millis(200),
            "{apart:?}: first {:?} second {:?} before the read",
            clock.now.saturating_duration_since(first.arrived),
            clock.now.saturating_duration_since(second.arrived)
        );
        assert!(first.arrived < clock.now && first.arrived + Duration::from_millis(5) >= sent_at);
        assert!(
            try_receive(&receiver, &mut buffer, &clock)
                .unwrap()
                .is_none()
        );
    }

    #[test]
    fn ipv6_loopback_sources_are_read() {
        let Ok(receiver) = UdpSocket::bind("[::1]:0") else {
            return; // no IPv6 loopback on this machine
        };
        enable_arrival_times(&receiver).unwrap();
        let sender = UdpSocket::bind("[::1]:0").unwrap();
        sender
            .send_to(b"v6", receiver.local_addr().unwrap())
            .unwrap();
        std::thread::sleep(Duration::from_millis(5));
        let mut buffer = [0u8; 16];
        let datagram = try_receive(&receiver, &mut buffer, &ArrivalClock::read())
            .unwrap()
            .unwrap();
        assert_eq!(datagram.source, sender.local_addr().unwrap());
    }
}
