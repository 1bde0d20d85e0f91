//! Batched RTP socket I/O for a media thread, through io_uring.
//!
//! With one socket per call, `recvmmsg`/`sendmmsg` cannot batch across calls; io_uring can.
//! A media thread queues one non-blocking receive for each of a run of sessions, submits them
//! with the previous run's sends in one `io_uring_enter`, and reads the results from shared
//! memory. The sockets are registered with the ring (fixed files), which also spares the
//! kernel its per-call file-table lookup and reference count.
//!
//! Every operation carries `MSG_DONTWAIT`, so the kernel completes it inside the submitting
//! call (a datagram, nothing waiting, or a full send buffer): nothing stays in flight between
//! submissions, and the buffers here are never touched by the kernel while the thread reads
//! them. Sends are copied into the batch's own buffers, so no session memory is lent out.
//!
//! This is the only place in the crate that talks to the kernel through raw pointers; each
//! `unsafe` says what keeps it sound.

use std::io;
use std::net::SocketAddr;
use std::os::fd::{AsFd, AsRawFd, BorrowedFd};
use std::time::Duration;

use io_uring::{IoUring, opcode, squeue, types};
use nix::sys::socket::{SockaddrLike, SockaddrStorage};

use crate::receive::{ArrivalClock, Datagram, socket_addr};

/// Sessions whose receives go down in one submission (and whose sends in the next).
pub const BATCH: usize = 64;

/// Largest datagram read or sent whole through the batch.
const DATAGRAM_BYTES: usize = 2048;

/// First size of the fixed-file table (it doubles as places are used).
const FIRST_FILE_TABLE: u32 = 1024;

/// `user_data` tag of a send (receives carry their position, below `BATCH`).
const SEND_TAG: u64 = 1 << 32;

/// Control-message room for one `SCM_TIMESTAMPNS`, aligned as `cmsghdr` requires.
#[repr(C, align(8))]
#[derive(Clone, Copy)]
struct Control([u8; 64]);

/// The kernel did not complete every operation inside the submitting call.
#[derive(Debug, thiserror::Error)]
#[error("io_uring left {missing} of {expected} socket operations in flight")]
pub struct Incomplete {
    /// Still in the kernel's hands after cancelling: when not zero, the batch's buffers may
    /// yet be written, so it must be leaked rather than dropped.
    pub missing: usize,
    pub expected: usize,
}

impl Incomplete {
    /// Every operation ended (after cancelling): the batch may be dropped.
    pub fn settled(&self) -> bool {
        self.missing == 0
    }
}

/// One receive position: where the kernel writes a datagram, its source and arrival time.
struct ReceiveArea {
    buffer: [u8; DATAGRAM_BYTES],
    name: libc::sockaddr_storage,
    control: Control,
    iov: libc::iovec,
    header: libc::msghdr,
    /// The kernel's answer: bytes read, or a negative errno.
    result: Option<i32>,
}

/// One send position: a copy of the packet and where it goes.
struct SendArea {
    buffer: [u8; DATAGRAM_BYTES],
    destination: SockaddrStorage,
}

/// What a queued receive found.
#[derive(Debug)]
pub enum Received<'a> {
    /// Nothing was waiting.
    Nothing,
    Datagram(Datagram, &'a [u8]),
    Failed(io::Error),
}

/// A media thread's ring, its fixed-file table and its buffers.
pub struct SocketBatch {
    ring: IoUring,
    /// The registered (sparse) file table, as registered: a session's place is its index,
    /// -1 where empty. Kept here because the kernel's table cannot be read back when it grows.
    files: Vec<i32>,
    receives: Box<[ReceiveArea]>,
    sends: Box<[SendArea]>,
    queued_sends: usize,
    /// Sends the kernel refused in the last submission: (place, error).
    failed_sends: Vec<(usize, io::Error)>,
}

impl std::fmt::Debug for SocketBatch {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SocketBatch")
            .field("files", &self.files.len())
            .finish_non_exhaustive()
    }
}

impl SocketBatch {
    /// A ring for the calling thread (the only thread that may submit to it). Fails where the
    /// kernel or a seccomp profile refuses io_uring, or where the ring cannot do what the media
    /// threads ask of it (checked with one datagram over loopback).
    pub fn new() -> io::Result<SocketBatch> {
        let ring = IoUring::builder()
            .setup_single_issuer()
            .setup_coop_taskrun()
            .build(2 * BATCH as u32)?;
        let first_table = FIRST_FILE_TABLE.min(open_file_limit() as u32);
        ring.submitter().register_files_sparse(first_table)?;
        let receives = (0..BATCH)
            .map(|_| ReceiveArea {
                buffer: [0; DATAGRAM_BYTES],
                // SAFETY: both are plain C structs for which all-zero bytes are a valid value.
                name: unsafe { std::mem::zeroed() },
                control: Control([0; 64]),
                iov: libc::iovec {
                    iov_base: std::ptr::null_mut(),
                    iov_len: 0,
                },
                // SAFETY: as above.
                header: unsafe { std::mem::zeroed() },
                result: None,
            })
            .collect();
        let sends = (0..BATCH)
            .map(|_| SendArea {
                buffer: [0; DATAGRAM_BYTES],
                destination: SockaddrStorage::from(SocketAddr::from(([127, 0, 0, 1], 9))),
            })
            .collect();
        let mut batch = SocketBatch {
            ring,
            files: vec![-1; first_table as usize],
            receives,
            sends,
            queued_sends: 0,
            failed_sends: Vec::new(),
        };
        batch.self_test()?;
        Ok(batch)
    }

    /// Proves the ring does what the media threads need on this kernel: a send with a
    /// destination address from one fixed file, and a read with source and control data on
    /// another (kernels before 6.0 refuse a send's address, for one). Loopback only.
    fn self_test(&mut self) -> io::Result<()> {
        let sender = std::net::UdpSocket::bind("127.0.0.1:0")?;
        let receiver = std::net::UdpSocket::bind("127.0.0.1:0")?;
        let (from, to) = (sender.local_addr()?, receiver.local_addr()?);
        self.register(0, sender.as_fd())?;
        self.register(1, receiver.as_fd())?;
        let result = self.probe(from, to);
        self.unregister(0)?;
        self.unregister(1)?;
        result
    }

    fn probe(&mut self, from: SocketAddr, to: SocketAddr) -> io::Result<()> {
        const PROBE: &[u8] = b"santral io_uring probe";
        let failed = |what: String| io::Error::other(format!("io_uring self-test: {what}"));
        if !self.queue_send(0, PROBE, to) {
            return Err(failed("send not queued".into()));
        }
        self.submit().map_err(|e| failed(e.to_string()))?;
        if let Some((_, error)) = self.failed_sends().next() {
            return Err(failed(format!("send refused: {error}")));
        }
        // Bounded: a loopback datagram is there at once; a few tries cover a slow wake-up.
        for _ in 0..50 {
            self.queue_receive(0, 1);
            self.submit().map_err(|e| failed(e.to_string()))?;
            match self.received(0, &ArrivalClock::read()) {
                Received::Datagram(datagram, bytes)
                    if bytes == PROBE && datagram.source == from =>
                {
                    return Ok(());
                }
                Received::Datagram(..) => return Err(failed("read the wrong datagram".into())),
                Received::Failed(error) => return Err(failed(format!("read refused: {error}"))),
                Received::Nothing => std::thread::sleep(Duration::from_millis(1)),
            }
        }
        Err(failed("the probe never arrived".into()))
    }

    /// Registers `socket` as fixed file `place` (the table grows when needed). Until
    /// [`SocketBatch::unregister`], the ring holds its own reference to the socket.
    pub fn register(&mut self, place: usize, socket: BorrowedFd<'_>) -> io::Result<()> {
        if place >= self.files.len() {
            self.grow(place + 1)?;
        }
        let index = u32::try_from(place).map_err(io::Error::other)?;
        self.ring
            .submitter()
            .register_files_update(index, &[socket.as_raw_fd()])?;
        self.files[place] = socket.as_raw_fd();
        Ok(())
    }

    /// Drops the ring's reference to the socket at `place`, so closing it releases its port.
    pub fn unregister(&mut self, place: usize) -> io::Result<()> {
        let Some(file) = self.files.get_mut(place) else {
            return Ok(());
        };
        *file = -1;
        let index = u32::try_from(place).map_err(io::Error::other)?;
        self.ring.submitter().register_files_update(index, &[-1])?;
        Ok(())
    }

    /// A larger table with the same sockets in it. Called between walks, when nothing is in
    /// flight (the kernel waits for in-flight users of the old table otherwise).
    fn grow(&mut self, at_least: usize) -> io::Result<()> {
        // The kernel refuses a table larger than the open-file limit (and a process cannot
        // hold more sockets than that anyway).
        let limit = open_file_limit();
        if at_least > limit {
            return Err(io::Error::other(format!(
                "place {} is beyond the open-file limit ({limit})",
                at_least - 1
            )));
        }
        let size = at_least
            .next_power_of_two()
            .max(self.files.len() * 2)
            .min(limit);
        let entries = u32::try_from(size).map_err(io::Error::other)?;
        self.ring.submitter().unregister_files()?;
        self.files.resize(size, -1);
        self.ring.submitter().register_files_sparse(entries)?;
        // -1 leaves an entry empty.
        self.ring
            .submitter()
            .register_files_update(0, &self.files)?;
        Ok(())
    }

    /// Queues a non-blocking read of one datagram from the socket at `place`; its result is
    /// [`SocketBatch::received`]`(position)` after the next [`SocketBatch::submit`]. One read
    /// per position (below [`BATCH`]) per submission; false when `position` is out of range.
    pub fn queue_receive(&mut self, position: usize, place: usize) -> bool {
        let Some(area) = self.receives.get_mut(position) else {
            return false;
        };
        area.result = None;
        area.iov = libc::iovec {
            iov_base: area.buffer.as_mut_ptr().cast(),
            iov_len: DATAGRAM_BYTES,
        };
        area.header.msg_name = (&raw mut area.name).cast();
        area.header.msg_namelen = std::mem::size_of::<libc::sockaddr_storage>() as u32;
        area.header.msg_iov = &raw mut area.iov;
        area.header.msg_iovlen = 1;
        area.header.msg_control = area.control.0.as_mut_ptr().cast();
        area.header.msg_controllen = area.control.0.len();
        area.header.msg_flags = 0;
        let entry = opcode::RecvMsg::new(types::Fixed(place as u32), &raw mut area.header)
            .flags(libc::MSG_DONTWAIT as u32)
            .build()
            .user_data(position as u64);
        self.push(entry);
        true
    }

    /// Queues `payload` (copied) to `destination` from the socket at `place`; false when the
    /// batch has no room (send it directly instead).
    pub fn queue_send(&mut self, place: usize, payload: &[u8], destination: SocketAddr) -> bool {
        if self.queued_sends >= BATCH || payload.len() > DATAGRAM_BYTES {
            return false;
        }
        let area = &mut self.sends[self.queued_sends];
        area.buffer[..payload.len()].copy_from_slice(payload);
        area.destination = SockaddrStorage::from(destination);
        let entry = opcode::Send::new(
            types::Fixed(place as u32),
            area.buffer.as_ptr(),
            payload.len() as u32,
        )
        .flags(libc::MSG_DONTWAIT)
        .dest_addr(area.destination.as_ptr())
        .dest_addr_len(area.destination.len())
        .build()
        .user_data(SEND_TAG | place as u64);
        self.push(entry);
        self.queued_sends += 1;
        true
    }

    fn push(&mut self, entry: squeue::Entry) {
        // SAFETY: every pointer in the entry points into `self.receives`/`self.sends` (boxed,
        // never moved or freed while the ring lives) and stays valid until the operation
        // completes, which `submit` waits for before anything here is touched again.
        let pushed = unsafe { self.ring.submission().push(&entry) };
        if pushed.is_err() {
            // The ring holds 2 × BATCH entries and callers queue at most BATCH of each kind
            // between submissions; reaching here is a bug, and dropping the operation is safe.
            tracing::error!("io_uring submission queue full: operation dropped");
        }
    }

    /// Submits what is queued and collects every completion. `Err` when the kernel did not
    /// complete everything inside the call (not expected with `MSG_DONTWAIT`): this batch
    /// must then be given up (see [`Incomplete::settled`]).
    pub fn submit(&mut self) -> Result<(), Incomplete> {
        let expected = self.ring.submission().len();
        self.failed_sends.clear();
        self.queued_sends = 0;
        let mut completed = 0;
        // Bounded: every operation completes inside the first call; the rest covers EINTR.
        for attempt in 0..4 {
            if completed == expected {
                return Ok(());
            }
            let waited = if attempt == 0 {
                self.ring.submit_and_wait(expected)
            } else {
                let timeout = types::Timespec::from(Duration::from_millis(5));
                let args = types::SubmitArgs::new().timespec(&timeout);
                self.ring
                    .submitter()
                    .submit_with_args(expected - completed, &args)
            };
            if let Err(error) = waited
                && !matches!(error.raw_os_error(), Some(libc::EINTR) | Some(libc::ETIME))
            {
                tracing::debug!(%error, "io_uring_enter failed");
            }
            completed += self.reap();
        }
        if completed == expected {
            return Ok(());
        }
        // Take back whatever the kernel still holds, so the buffers are ours again.
        let timeout = types::Timespec::from(Duration::from_millis(100));
        let _ = self
            .ring
            .submitter()
            .register_sync_cancel(Some(timeout), types::CancelBuilder::any());
        completed += self.reap();
        Err(Incomplete {
            missing: expected.saturating_sub(completed),
            expected,
        })
    }

    /// Collects the completions waiting; returns how many.
    fn reap(&mut self) -> usize {
        let mut count = 0;
        for entry in self.ring.completion() {
            count += 1;
            let data = entry.user_data();
            let result = entry.result();
            if data & SEND_TAG != 0 {
                if result < 0 {
                    self.failed_sends.push((
                        (data & !SEND_TAG) as usize,
                        io::Error::from_raw_os_error(-result),
                    ));
                }
            } else if let Some(area) = self.receives.get_mut(data as usize) {
                area.result = Some(result);
            }
        }
        count
    }

    /// Sends the kernel refused in the last submission, by place.
    pub fn failed_sends(&mut self) -> impl Iterator<Item = (usize, io::Error)> + '_ {
        self.failed_sends.drain(..)
    }

    /// What the receive queued at `position` found (after [`SocketBatch::submit`]).
    pub fn received(&self, position: usize, clock: &ArrivalClock) -> Received<'_> {
        let Some(area) = self.receives.get(position) else {
            return Received::Nothing;
        };
        match area.result {
            None => Received::Nothing,
            Some(result) if result == -libc::EAGAIN || result == -libc::EINTR => Received::Nothing,
            Some(result) if result < 0 => Received::Failed(io::Error::from_raw_os_error(-result)),
            Some(result) => {
                let len = (result as usize).min(DATAGRAM_BYTES);
                // SAFETY: the kernel wrote a socket address of `msg_namelen` bytes (at most
                // the storage's size, which it was told) into `name`.
                let source = unsafe {
                    SockaddrStorage::from_raw(
                        (&raw const area.name).cast(),
                        Some(area.header.msg_namelen),
                    )
                }
                .and_then(|address| socket_addr(&address));
                let Some(source) = source else {
                    return Received::Nothing;
                };
                let control_len = area.header.msg_controllen.min(area.control.0.len());
                let arrived = arrival_stamp(&area.control.0[..control_len])
                    .map_or(clock.now(), |stamp| clock.instant_of(stamp));
                Received::Datagram(
                    Datagram {
                        len,
                        source,
                        arrived,
                    },
                    &area.buffer[..len],
                )
            }
        }
    }
}

/// The soft open-file limit: the largest fixed-file table the kernel accepts.
fn open_file_limit() -> usize {
    nix::sys::resource::getrlimit(nix::sys::resource::Resource::RLIMIT_NOFILE)
        .map_or(FIRST_FILE_TABLE as usize, |(soft, _)| {
            usize::try_from(soft).unwrap_or(usize::MAX)
        })
}

/// The `SCM_TIMESTAMPNS` stamp among control messages, read field by field (Linux's
/// `cmsghdr` layout: length, level, type, then the data aligned to the word size).
fn arrival_stamp(control: &[u8]) -> Option<Duration> {
    const WORD: usize = std::mem::size_of::<usize>();
    const HEADER: usize = WORD + 8;
    let mut offset = 0;
    // Bounded: each step moves forward by at least a header.
    while offset + HEADER <= control.len() {
        let length = usize::from_ne_bytes(control[offset..offset + WORD].try_into().ok()?);
        let level = i32::from_ne_bytes(control[offset + WORD..offset + WORD + 4].try_into().ok()?);
        let kind = i32::from_ne_bytes(
            control[offset + WORD + 4..offset + HEADER]
                .try_into()
                .ok()?,
        );
        if length < HEADER || offset + length > control.len() {
            return None;
        }
        if level == libc::SOL_SOCKET && kind == libc::SCM_TIMESTAMPNS && length >= HEADER + 16 {
            let data = &control[offset + HEADER..offset + HEADER + 16];
            let seconds = i64::from_ne_bytes(data[..8].try_into().ok()?);
            let nanos = i64::from_ne_bytes(data[8..].try_into().ok()?);
            // A zero stamp: the kernel had not started stamping yet (it turns on lazily).
            return (seconds > 0 && (0..1_000_000_000).contains(&nanos))
                .then(|| Duration::new(seconds as u64, nanos as u32));
        }
        offset += length.next_multiple_of(WORD);
    }
    None
}

#[cfg(test)]
mod tests {
    use std::net::UdpSocket;
    use std::os::fd::AsFd;

    use super::*;
    use crate::receive::enable_arrival_times;

    /// Where io_uring is refused (some containers), there is nothing here to test: the engine
    /// tests cover the direct path.
    fn batch() -> Option<SocketBatch> {
        SocketBatch::new()
            .inspect_err(|error| eprintln!("io_uring refused here ({error}): skipped"))
            .ok()
    }

    #[test]
    fn reads_what_arrived_with_source_and_kernel_time_and_nothing_when_empty() {
        let Some(mut batch) = batch() else { return };
        let mine = UdpSocket::bind("127.0.0.1:0").unwrap();
        enable_arrival_times(&mine).unwrap();
        let far = UdpSocket::bind("127.0.0.1:0").unwrap();
        batch.register(3, mine.as_fd()).unwrap();

        batch.queue_receive(0, 3);
        batch.submit().unwrap();
        assert!(matches!(
            batch.received(0, &ArrivalClock::read()),
            Received::Nothing
        ));

        let before = std::time::Instant::now();
        far.send_to(b"first", mine.local_addr().unwrap()).unwrap();
        far.send_to(b"second", mine.local_addr().unwrap()).unwrap();
        std::thread::sleep(Duration::from_millis(30));
        let clock = ArrivalClock::read();
        batch.queue_receive(0, 3);
        batch.queue_receive(1, 3);
        batch.submit().unwrap();
        for (position, expected) in [(0, &b"first"[..]), (1, &b"second"[..])] {
            let Received::Datagram(datagram, bytes) = batch.received(position, &clock) else {
                panic!("datagram {position} read");
            };
            assert_eq!(bytes, expected);
            assert_eq!(datagram.len, expected.len());
            assert_eq!(datagram.source, far.local_addr().unwrap());
            // The kernel's time: before the read, not when read (30 ms later).
            assert!(datagram.arrived >= before - Duration::from_millis(2));
            assert!(clock.now() - datagram.arrived >= Duration::from_millis(20));
        }
    }

    #[test]
    fn sends_copies_to_each_destination_and_unregistering_lets_the_port_go() {
        let Some(mut batch) = batch() else { return };
        let mine = UdpSocket::bind("127.0.0.1:0").unwrap();
        let port = mine.local_addr().unwrap();
        let far: Vec<UdpSocket> = (0..3)
            .map(|_| UdpSocket::bind("127.0.0.1:0").unwrap())
            .collect();
        // Beyond the first table: the table grows, up to the open-file limit, and keeps what
        // it had. (As the server does, the test takes the hard limit when it may.)
        use nix::sys::resource::{Resource, getrlimit, setrlimit};
        let (_, hard) = getrlimit(Resource::RLIMIT_NOFILE).unwrap();
        let _ = setrlimit(Resource::RLIMIT_NOFILE, hard, hard);
        let early = UdpSocket::bind("127.0.0.1:0").unwrap();
        batch.register(0, early.as_fd()).unwrap();
        let far_place = 5000;
        let place = if open_file_limit() > far_place {
            batch.register(far_place, mine.as_fd()).unwrap();
            far_place
        } else {
            let refused = batch.register(far_place, mine.as_fd()).unwrap_err();
            assert!(refused.to_string().contains("open-file limit"), "{refused}");
            batch.register(7, mine.as_fd()).unwrap();
            7
        };
        for (index, socket) in far.iter().enumerate() {
            let payload = [index as u8; 172];
            assert!(batch.queue_send(place, &payload, socket.local_addr().unwrap()));
        }
        assert!(batch.queue_send(0, b"early", far[0].local_addr().unwrap()));
        batch.submit().unwrap();
        assert_eq!(batch.failed_sends().count(), 0);
        let mut buffer = [0u8; 2048];
        for (index, socket) in far.iter().enumerate() {
            socket
                .set_read_timeout(Some(Duration::from_secs(2)))
                .unwrap();
            let (len, from) = socket.recv_from(&mut buffer).unwrap();
            assert_eq!((len, from), (172, port));
            assert!(buffer[..len].iter().all(|byte| *byte == index as u8));
        }
        let (len, from) = far[0].recv_from(&mut buffer).unwrap();
        assert_eq!(
            (&buffer[..len], from),
            (&b"early"[..], early.local_addr().unwrap())
        );

        batch.unregister(place).unwrap();
        drop(mine);
        UdpSocket::bind(port).expect("the port is free once unregistered and closed");
    }

    #[test]
    fn control_messages_are_read_field_by_field() {
        const WORD: usize = std::mem::size_of::<usize>();
        let mut control = Vec::new();
        // An unrelated message first, then the stamp.
        control.extend_from_slice(&(WORD + 8 + 4).to_ne_bytes());
        control.extend_from_slice(&libc::IPPROTO_IP.to_ne_bytes());
        control.extend_from_slice(&8i32.to_ne_bytes());
        control.extend_from_slice(&[0; 4]);
        control.resize(control.len().next_multiple_of(WORD), 0);
        control.extend_from_slice(&(WORD + 8 + 16).to_ne_bytes());
        control.extend_from_slice(&libc::SOL_SOCKET.to_ne_bytes());
        control.extend_from_slice(&libc::SCM_TIMESTAMPNS.to_ne_bytes());
        control.extend_from_slice(&1_700_000_000i64.to_ne_bytes());
        control.extend_from_slice(&250_000_000i64.to_ne_bytes());
        assert_eq!(
            arrival_stamp(&control),
            Some(Duration::new(1_700_000_000, 250_000_000))
        );
        // Truncated, zero or nonsense: no stamp, no panic.
        assert_eq!(arrival_stamp(&control[..control.len() - 4]), None);
        assert_eq!(arrival_stamp(&[0xFF; 40]), None);
        assert_eq!(arrival_stamp(&[]), None);
    }
}
