//! Process-level facilities of the generator: its CPU time, the wall clock kernel packet
//! timestamps use, and (optionally) real-time scheduling so it keeps its 20 ms schedule on a
//! busy machine.

use std::io;
use std::mem::zeroed;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

/// Set by SIGINT/SIGTERM: the run stops early (hanging up its calls) and still reports.
static STOP: AtomicBool = AtomicBool::new(false);

extern "C" fn on_stop_signal(_signal: libc::c_int) {
    // Only an atomic store: async-signal-safe.
    STOP.store(true, Ordering::Relaxed);
}

/// Makes SIGINT and SIGTERM request a graceful stop instead of killing the process, so a
/// harness that stops the generator still gets its report.
pub fn install_stop_handler() -> io::Result<()> {
    for signal in [libc::SIGINT, libc::SIGTERM] {
        // SAFETY: installs a handler that only stores to an atomic.
        let previous =
            unsafe { libc::signal(signal, on_stop_signal as *const () as libc::sighandler_t) };
        if previous == libc::SIG_ERR {
            return Err(io::Error::last_os_error());
        }
    }
    Ok(())
}

/// Whether a stop was requested (by a signal or [`request_stop`]).
pub fn stop_requested() -> bool {
    STOP.load(Ordering::Relaxed)
}

/// Requests a graceful stop (what the signal handler does).
pub fn request_stop() {
    STOP.store(true, Ordering::Relaxed);
}

/// CPU time this process used: (user, system).
pub fn cpu_time() -> (Duration, Duration) {
    // SAFETY: getrusage fills the zeroed struct it is given.
    let mut usage: libc::rusage = unsafe { zeroed() };
    if unsafe { libc::getrusage(libc::RUSAGE_SELF, &mut usage) } != 0 {
        return (Duration::ZERO, Duration::ZERO);
    }
    let to_duration = |tv: libc::timeval| {
        Duration::from_secs(tv.tv_sec.max(0) as u64)
            + Duration::from_micros(tv.tv_usec.max(0) as u64)
    };
    (to_duration(usage.ru_utime), to_duration(usage.ru_stime))
}

/// Wall-clock now in ns since the Unix epoch (the clock SO_TIMESTAMPNS uses), for packets that
/// arrive without a kernel timestamp.
pub fn wall_ns() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_nanos() as u64)
        .unwrap_or(0)
}

/// Asks for SCHED_FIFO at a modest priority (needs root or CAP_SYS_NICE). The loop always
/// sleeps in `ppoll` between ticks, so it cannot starve the core.
pub fn set_realtime_priority(priority: i32) -> io::Result<()> {
    let param = libc::sched_param {
        sched_priority: priority,
    };
    // SAFETY: passes a pointer to a live sched_param for the calling thread (pid 0).
    if unsafe { libc::sched_setscheduler(0, libc::SCHED_FIFO, &param) } == 0 {
        Ok(())
    } else {
        Err(io::Error::last_os_error())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cpu_time_is_measured() {
        let mut spin = 0u64;
        for i in 0..2_000_000u64 {
            spin = spin.wrapping_add(std::hint::black_box(i));
        }
        std::hint::black_box(spin);
        let (user, system) = cpu_time();
        assert!(user + system > Duration::ZERO);
    }

    #[test]
    fn the_wall_clock_is_after_2020() {
        assert!(wall_ns() > 1_577_836_800_000_000_000);
    }
}
