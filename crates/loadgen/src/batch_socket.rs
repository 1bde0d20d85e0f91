//! Batched UDP I/O: `sendmmsg` carries many calls' packets in one system call, `recvmmsg`
//! drains a socket in one, and `SO_TIMESTAMPNS` gives each received packet the kernel's arrival
//! time (so a busy generator does not mistake its own delay for the server's jitter).
//!
//! The unsafe code is confined to this file: each block fills C structures that point into
//! buffers owned by the batch and alive for the duration of the one system call.

use std::io;
use std::mem::{size_of, zeroed};
use std::net::{Ipv4Addr, Ipv6Addr, SocketAddr, SocketAddrV4, SocketAddrV6, UdpSocket};
use std::os::fd::{AsRawFd, RawFd};
use std::time::Duration;

/// Most messages one `sendmmsg`/`recvmmsg` takes (the kernel's UIO_MAXIOV).
const MAX_BATCH: usize = 1024;
/// Room for the SCM_TIMESTAMPNS and SO_RXQ_OVFL control messages (and slack).
const CONTROL_LEN: usize = 96;
/// `SO_RXQ_OVFL` (asm-generic/socket.h; libc does not export it for Linux): each received
/// message carries the socket's count of datagrams dropped for a full receive buffer.
#[cfg(any(
    target_arch = "x86_64",
    target_arch = "x86",
    target_arch = "aarch64",
    target_arch = "arm",
    target_arch = "riscv64"
))]
const SO_RXQ_OVFL: Option<libc::c_int> = Some(40);
#[cfg(not(any(
    target_arch = "x86_64",
    target_arch = "x86",
    target_arch = "aarch64",
    target_arch = "arm",
    target_arch = "riscv64"
)))]
const SO_RXQ_OVFL: Option<libc::c_int> = None;

/// A non-blocking UDP socket with batched send and receive.
#[derive(Debug)]
pub struct BatchSocket {
    socket: UdpSocket,
    timestamps: bool,
    /// Datagrams the kernel dropped because our receive buffer was full (from SO_RXQ_OVFL).
    kernel_drops: std::cell::Cell<u32>,
}

/// Packets to send: payloads laid end to end in one buffer, each with its destination.
#[derive(Debug, Default)]
pub struct SendBatch {
    data: Vec<u8>,
    entries: Vec<(SocketAddr, usize, usize)>,
    addrs: Vec<libc::sockaddr_storage>,
    iovecs: Vec<libc::iovec>,
    headers: Vec<libc::mmsghdr>,
}

impl SendBatch {
    pub fn with_capacity(packets: usize, bytes: usize) -> SendBatch {
        SendBatch {
            data: Vec::with_capacity(bytes),
            entries: Vec::with_capacity(packets),
            ..SendBatch::default()
        }
    }

    /// Appends a packet written by `write` into a fresh `N`-byte slot; `write` returns the length
    /// used (0 drops the packet).
    #[inline]
    pub fn push_with<const N: usize>(
        &mut self,
        to: SocketAddr,
        write: impl FnOnce(&mut [u8; N]) -> usize,
    ) {
        let start = self.data.len();
        self.data.resize(start + N, 0);
        let slot: &mut [u8; N] = match (&mut self.data[start..]).try_into() {
            Ok(slot) => slot,
            Err(_) => return,
        };
        let len = write(slot).min(N);
        self.data.truncate(start + len);
        if len > 0 {
            self.entries.push((to, start, len));
        }
    }

    /// Appends a copy of `payload`.
    pub fn push(&mut self, to: SocketAddr, payload: &[u8]) {
        let start = self.data.len();
        self.data.extend_from_slice(payload);
        self.entries.push((to, start, payload.len()));
    }

    pub fn len(&self) -> usize {
        self.entries.len()
    }

    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    pub fn clear(&mut self) {
        self.data.clear();
        self.entries.clear();
    }

    /// The packets, for inspection (tests, benches).
    pub fn packets(&self) -> impl Iterator<Item = (SocketAddr, &[u8])> {
        self.entries
            .iter()
            .map(|&(to, start, len)| (to, &self.data[start..start + len]))
    }
}

/// Received packets: fixed slots reused from call to call.
#[derive(Debug)]
pub struct RecvBatch {
    slot_len: usize,
    data: Vec<u8>,
    control: Vec<u8>,
    addrs: Vec<libc::sockaddr_storage>,
    iovecs: Vec<libc::iovec>,
    headers: Vec<libc::mmsghdr>,
    received: Vec<Received>,
}

/// One received datagram.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Received {
    pub len: usize,
    pub source: Option<SocketAddr>,
    /// Kernel arrival time (ns since the Unix epoch), when timestamps are on.
    pub arrival_ns: Option<u64>,
    /// The datagram was longer than its slot.
    pub truncated: bool,
}

impl RecvBatch {
    pub fn new(slots: usize, slot_len: usize) -> RecvBatch {
        let slots = slots.clamp(1, MAX_BATCH);
        RecvBatch {
            slot_len,
            data: vec![0; slots * slot_len],
            control: vec![0; slots * CONTROL_LEN],
            // SAFETY: sockaddr_storage is plain old data; all-zero is a valid value.
            addrs: vec![unsafe { zeroed() }; slots],
            iovecs: Vec::with_capacity(slots),
            headers: Vec::with_capacity(slots),
            received: Vec::with_capacity(slots),
        }
    }

    pub fn len(&self) -> usize {
        self.received.len()
    }

    pub fn is_empty(&self) -> bool {
        self.received.is_empty()
    }

    /// Packet `i` of the last receive and its metadata.
    pub fn get(&self, i: usize) -> Option<(&[u8], Received)> {
        let meta = *self.received.get(i)?;
        let start = i * self.slot_len;
        Some((&self.data[start..start + meta.len.min(self.slot_len)], meta))
    }
}

impl BatchSocket {
    /// Binds a non-blocking socket, with large buffers (best effort) and, when asked, kernel
    /// receive timestamps.
    pub fn bind(addr: SocketAddr, timestamps: bool) -> io::Result<BatchSocket> {
        let socket = UdpSocket::bind(addr)?;
        socket.set_nonblocking(true)?;
        let fd = socket.as_raw_fd();
        // Larger buffers absorb bursts of thousands of packets per tick; the kernel caps them at
        // net.core.[rw]mem_max, which is fine.
        let _ = set_int_option(fd, libc::SOL_SOCKET, libc::SO_RCVBUF, 8 << 20);
        let _ = set_int_option(fd, libc::SOL_SOCKET, libc::SO_SNDBUF, 8 << 20);
        if timestamps {
            set_int_option(fd, libc::SOL_SOCKET, libc::SO_TIMESTAMPNS, 1)?;
            if let Some(option) = SO_RXQ_OVFL {
                let _ = set_int_option(fd, libc::SOL_SOCKET, option, 1);
            }
        }
        Ok(BatchSocket {
            socket,
            timestamps,
            kernel_drops: std::cell::Cell::new(0),
        })
    }

    pub fn local_addr(&self) -> io::Result<SocketAddr> {
        self.socket.local_addr()
    }

    /// Datagrams the kernel dropped at this socket for a full receive buffer (as last reported).
    pub fn kernel_drops(&self) -> u32 {
        self.kernel_drops.get()
    }

    pub fn raw_fd(&self) -> RawFd {
        self.socket.as_raw_fd()
    }

    /// Sends one datagram (SIP).
    pub fn send_to(&self, payload: &[u8], to: SocketAddr) -> io::Result<usize> {
        self.socket.send_to(payload, to)
    }

    /// Sends every packet of `batch` with as few `sendmmsg` calls as possible, then clears it.
    /// Returns (sent, dropped): packets the kernel would not take without blocking are dropped
    /// and counted, never retried (a late packet is worse than a lost one for pacing).
    pub fn send_batch(&self, batch: &mut SendBatch) -> io::Result<(usize, usize)> {
        let total = batch.entries.len();
        batch.addrs.clear();
        batch.iovecs.clear();
        batch.headers.clear();
        for &(to, start, len) in &batch.entries {
            batch.addrs.push(to_storage(to).0);
            batch.iovecs.push(libc::iovec {
                iov_base: batch.data[start..].as_ptr() as *mut libc::c_void,
                iov_len: len,
            });
        }
        for (i, &(to, _, _)) in batch.entries.iter().enumerate() {
            // SAFETY: an all-zero mmsghdr is valid; the pointers set below point into
            // `batch.addrs` and `batch.iovecs`, which are not touched until the syscalls return.
            let mut header: libc::mmsghdr = unsafe { zeroed() };
            header.msg_hdr.msg_name =
                &mut batch.addrs[i] as *mut libc::sockaddr_storage as *mut libc::c_void;
            header.msg_hdr.msg_namelen = to_storage(to).1;
            header.msg_hdr.msg_iov = &mut batch.iovecs[i] as *mut libc::iovec;
            header.msg_hdr.msg_iovlen = 1;
            batch.headers.push(header);
        }
        let mut sent = 0;
        let mut dropped = 0;
        let mut result = Ok(());
        // Bounded: each pass sends ≥ 1 message or gives up on the rest.
        while sent + dropped < total {
            let rest = &mut batch.headers[sent + dropped..];
            let count = rest.len().min(MAX_BATCH);
            // SAFETY: `rest` holds `count` initialised mmsghdr whose pointers are valid (above).
            let n = unsafe {
                libc::sendmmsg(
                    self.socket.as_raw_fd(),
                    rest.as_mut_ptr(),
                    count as libc::c_uint,
                    0,
                )
            };
            if n < 0 {
                let err = io::Error::last_os_error();
                match err.kind() {
                    io::ErrorKind::Interrupted => continue,
                    io::ErrorKind::WouldBlock => {
                        dropped = total - sent;
                    }
                    // A refused destination (ICMP port unreachable from a hung-up call) fails
                    // only that message: skip it and go on.
                    _ if err.raw_os_error() == Some(libc::ECONNREFUSED) => dropped += 1,
                    _ => {
                        dropped = total - sent;
                        result = Err(err);
                    }
                }
            } else {
                sent += n as usize;
            }
        }
        batch.clear();
        result.map(|()| (sent, dropped))
    }

    /// Receives up to the batch's slot count of datagrams without blocking; returns how many
    /// (0 when none are waiting).
    pub fn recv_batch(&self, batch: &mut RecvBatch) -> io::Result<usize> {
        let slots = batch.addrs.len();
        batch.iovecs.clear();
        batch.headers.clear();
        batch.received.clear();
        let data = batch.data.as_mut_ptr();
        let control = batch.control.as_mut_ptr();
        for i in 0..slots {
            // SAFETY: offsets stay inside `data` (slots · slot_len bytes) and `control`.
            batch.iovecs.push(libc::iovec {
                iov_base: unsafe { data.add(i * batch.slot_len) } as *mut libc::c_void,
                iov_len: batch.slot_len,
            });
        }
        for i in 0..slots {
            // SAFETY: as in send_batch; every pointer targets a buffer of the batch.
            let mut header: libc::mmsghdr = unsafe { zeroed() };
            header.msg_hdr.msg_name =
                &mut batch.addrs[i] as *mut libc::sockaddr_storage as *mut libc::c_void;
            header.msg_hdr.msg_namelen = size_of::<libc::sockaddr_storage>() as libc::socklen_t;
            header.msg_hdr.msg_iov = &mut batch.iovecs[i] as *mut libc::iovec;
            header.msg_hdr.msg_iovlen = 1;
            if self.timestamps {
                header.msg_hdr.msg_control =
                    unsafe { control.add(i * CONTROL_LEN) } as *mut libc::c_void;
                header.msg_hdr.msg_controllen = CONTROL_LEN as _;
            }
            batch.headers.push(header);
        }
        let n = loop {
            // SAFETY: `headers` holds `slots` initialised mmsghdr pointing into the batch.
            let n = unsafe {
                libc::recvmmsg(
                    self.socket.as_raw_fd(),
                    batch.headers.as_mut_ptr(),
                    slots as libc::c_uint,
                    libc::MSG_DONTWAIT,
                    std::ptr::null_mut(),
                )
            };
            if n >= 0 {
                break n as usize;
            }
            let err = io::Error::last_os_error();
            match err.kind() {
                io::ErrorKind::Interrupted => continue,
                io::ErrorKind::WouldBlock => return Ok(0),
                // ICMP errors queued by earlier sends surface here; they are not packets.
                _ if err.raw_os_error() == Some(libc::ECONNREFUSED) => return Ok(0),
                _ => return Err(err),
            }
        };
        for i in 0..n {
            let header = &batch.headers[i];
            let (arrival_ns, drops) = if self.timestamps {
                control_of(&header.msg_hdr)
            } else {
                (None, None)
            };
            if let Some(drops) = drops {
                self.kernel_drops.set(self.kernel_drops.get().max(drops));
            }
            batch.received.push(Received {
                len: (header.msg_len as usize).min(batch.slot_len),
                source: from_storage(&batch.addrs[i], header.msg_hdr.msg_namelen),
                arrival_ns,
                truncated: header.msg_hdr.msg_flags & libc::MSG_TRUNC != 0,
            });
        }
        Ok(n)
    }
}

/// Waits until one of `fds` is readable or `timeout` passes (microsecond precision, `ppoll`).
pub fn wait_readable(fds: &mut [libc::pollfd], timeout: Duration) -> io::Result<()> {
    for fd in fds.iter_mut() {
        fd.events = libc::POLLIN;
        fd.revents = 0;
    }
    let spec = libc::timespec {
        tv_sec: timeout.as_secs().min(3600) as libc::time_t,
        tv_nsec: timeout.subsec_nanos() as libc::c_long,
    };
    // SAFETY: `fds` is a valid slice of pollfd; `spec` lives across the call.
    let rc = unsafe {
        libc::ppoll(
            fds.as_mut_ptr(),
            fds.len() as libc::nfds_t,
            &spec,
            std::ptr::null(),
        )
    };
    if rc < 0 {
        let err = io::Error::last_os_error();
        if err.kind() != io::ErrorKind::Interrupted {
            return Err(err);
        }
    }
    Ok(())
}

/// A pollfd for `fd`.
pub fn poll_entry(fd: RawFd) -> libc::pollfd {
    libc::pollfd {
        fd,
        events: libc::POLLIN,
        revents: 0,
    }
}

fn set_int_option(
    fd: RawFd,
    level: libc::c_int,
    name: libc::c_int,
    value: libc::c_int,
) -> io::Result<()> {
    // SAFETY: passes a pointer to a live c_int and its size.
    let rc = unsafe {
        libc::setsockopt(
            fd,
            level,
            name,
            &value as *const libc::c_int as *const libc::c_void,
            size_of::<libc::c_int>() as libc::socklen_t,
        )
    };
    if rc == 0 {
        Ok(())
    } else {
        Err(io::Error::last_os_error())
    }
}

/// The kernel arrival time (ns) and the socket's drop count from a received message's
/// control data.
fn control_of(msg: &libc::msghdr) -> (Option<u64>, Option<u32>) {
    let mut arrival = None;
    let mut drops = None;
    if msg.msg_control.is_null() {
        return (arrival, drops);
    }
    // SAFETY: the kernel filled msg_control/msg_controllen; the CMSG macros walk within them and
    // each value is read unaligned from the data of a control message of its type.
    unsafe {
        let mut cmsg = libc::CMSG_FIRSTHDR(msg);
        while !cmsg.is_null() {
            if (*cmsg).cmsg_level == libc::SOL_SOCKET {
                if (*cmsg).cmsg_type == libc::SCM_TIMESTAMPNS {
                    let spec =
                        std::ptr::read_unaligned(libc::CMSG_DATA(cmsg) as *const libc::timespec);
                    arrival = Some(spec.tv_sec as u64 * 1_000_000_000 + spec.tv_nsec as u64);
                } else if Some((*cmsg).cmsg_type) == SO_RXQ_OVFL {
                    drops = Some(std::ptr::read_unaligned(libc::CMSG_DATA(cmsg) as *const u32));
                }
            }
            cmsg = libc::CMSG_NXTHDR(msg, cmsg);
        }
    }
    (arrival, drops)
}

fn to_storage(addr: SocketAddr) -> (libc::sockaddr_storage, libc::socklen_t) {
    // SAFETY: sockaddr_storage is large and aligned enough for sockaddr_in and sockaddr_in6;
    // the writes below fill exactly one of them.
    let mut storage: libc::sockaddr_storage = unsafe { zeroed() };
    match addr {
        SocketAddr::V4(v4) => {
            let sin = libc::sockaddr_in {
                sin_family: libc::AF_INET as libc::sa_family_t,
                sin_port: v4.port().to_be(),
                sin_addr: libc::in_addr {
                    s_addr: u32::from_ne_bytes(v4.ip().octets()),
                },
                sin_zero: [0; 8],
            };
            unsafe { std::ptr::write(&mut storage as *mut _ as *mut libc::sockaddr_in, sin) };
            (storage, size_of::<libc::sockaddr_in>() as libc::socklen_t)
        }
        SocketAddr::V6(v6) => {
            let sin6 = libc::sockaddr_in6 {
                sin6_family: libc::AF_INET6 as libc::sa_family_t,
                sin6_port: v6.port().to_be(),
                sin6_flowinfo: v6.flowinfo(),
                sin6_addr: libc::in6_addr {
                    s6_addr: v6.ip().octets(),
                },
                sin6_scope_id: v6.scope_id(),
            };
            unsafe { std::ptr::write(&mut storage as *mut _ as *mut libc::sockaddr_in6, sin6) };
            (storage, size_of::<libc::sockaddr_in6>() as libc::socklen_t)
        }
    }
}

fn from_storage(storage: &libc::sockaddr_storage, len: libc::socklen_t) -> Option<SocketAddr> {
    let len = len as usize;
    match storage.ss_family as libc::c_int {
        libc::AF_INET if len >= size_of::<libc::sockaddr_in>() => {
            // SAFETY: the family says the storage holds a sockaddr_in of sufficient length.
            let sin = unsafe { &*(storage as *const _ as *const libc::sockaddr_in) };
            let ip = Ipv4Addr::from(sin.sin_addr.s_addr.to_ne_bytes());
            Some(SocketAddr::V4(SocketAddrV4::new(
                ip,
                u16::from_be(sin.sin_port),
            )))
        }
        libc::AF_INET6 if len >= size_of::<libc::sockaddr_in6>() => {
            // SAFETY: as above for sockaddr_in6.
            let sin6 = unsafe { &*(storage as *const _ as *const libc::sockaddr_in6) };
            let ip = Ipv6Addr::from(sin6.sin6_addr.s6_addr);
            Some(SocketAddr::V6(SocketAddrV6::new(
                ip,
                u16::from_be(sin6.sin6_port),
                sin6.sin6_flowinfo,
                sin6.sin6_scope_id,
            )))
        }
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn addresses_round_trip_through_sockaddr() {
        for addr in ["127.0.0.1:5060", "[::1]:40000"] {
            let addr: SocketAddr = addr.parse().unwrap();
            let (storage, len) = to_storage(addr);
            assert_eq!(from_storage(&storage, len), Some(addr));
        }
    }

    #[test]
    fn a_batch_goes_out_in_one_call_and_comes_back_with_timestamps() {
        let rx = BatchSocket::bind("127.0.0.1:0".parse().unwrap(), true).unwrap();
        let tx = BatchSocket::bind("127.0.0.1:0".parse().unwrap(), false).unwrap();
        let to = rx.local_addr().unwrap();
        let mut batch = SendBatch::with_capacity(100, 100 * 16);
        for i in 0..100u8 {
            batch.push_with::<16>(to, |slot| {
                slot[0] = i;
                1 + usize::from(i % 15)
            });
        }
        batch.push_with::<16>(to, |_| 0); // dropped: no packet
        assert_eq!(batch.len(), 100);
        assert_eq!(tx.send_batch(&mut batch).unwrap(), (100, 0));
        assert!(batch.is_empty());
        let mut got = Vec::new();
        let mut recv = RecvBatch::new(32, 2048);
        let before = crate::process::wall_ns();
        for _ in 0..1000 {
            let n = rx.recv_batch(&mut recv).unwrap();
            for i in 0..n {
                let (payload, meta) = recv.get(i).unwrap();
                assert_eq!(meta.source, Some(tx.local_addr().unwrap()));
                let at = meta.arrival_ns.expect("kernel timestamp");
                assert!(
                    at > before - 10_000_000_000,
                    "timestamp from the wall clock"
                );
                got.push((payload[0], payload.len()));
            }
            if got.len() == 100 {
                break;
            }
            let mut fds = [poll_entry(rx.raw_fd())];
            wait_readable(&mut fds, Duration::from_millis(10)).unwrap();
        }
        assert_eq!(got.len(), 100);
        for (i, (first, len)) in got.into_iter().enumerate() {
            assert_eq!(usize::from(first), i);
            assert_eq!(len, 1 + i % 15);
        }
        assert_eq!(rx.recv_batch(&mut recv).unwrap(), 0);
    }

    #[test]
    fn kernel_receive_drops_are_reported() {
        let rx = BatchSocket::bind("127.0.0.1:0".parse().unwrap(), true).unwrap();
        let tx = BatchSocket::bind("127.0.0.1:0".parse().unwrap(), false).unwrap();
        let to = rx.local_addr().unwrap();
        // Far more than the (≤ 8 MiB) receive buffer holds, none read meanwhile.
        let mut batch = SendBatch::with_capacity(1024, 1024 * 100);
        for _ in 0..40 {
            for _ in 0..1024 {
                batch.push(to, &[0u8; 100]);
            }
            tx.send_batch(&mut batch).unwrap();
        }
        // The count rides on datagrams queued after the drops: drain, then send one more.
        let mut recv = RecvBatch::new(512, 2048);
        let mut drained = 0;
        for _ in 0..1000 {
            match rx.recv_batch(&mut recv).unwrap() {
                0 => break,
                n => drained += n,
            }
        }
        assert!(drained > 0);
        tx.send_to(b"late", to).unwrap();
        let mut fds = [poll_entry(rx.raw_fd())];
        wait_readable(&mut fds, Duration::from_secs(1)).unwrap();
        assert_eq!(rx.recv_batch(&mut recv).unwrap(), 1);
        if SO_RXQ_OVFL.is_some() {
            assert!(
                rx.kernel_drops() > 0,
                "40,960 unread datagrams overflowed nothing? drained {drained}"
            );
        }
    }
}
