//! Cache prefetch hints for the media threads' walk.
//!
//! A media thread visits a thousand sessions every 20 ms; by the time it comes back to one, its
//! state has left the cache, and most of a session's user-space time was the processor
//! waiting for those loads. Asking for the next sessions' memory while the current one is in
//! its system calls hides that wait.

/// Asks the processor to bring `value`'s memory (every cache line of it) into the cache.
#[inline]
pub(crate) fn prefetch<T: ?Sized>(value: &T) {
    prefetch_range(
        (value as *const T).cast::<u8>(),
        std::mem::size_of_val(value),
    );
}

/// Cache line size of the processors we run on.
const LINE: usize = 64;

#[inline]
fn prefetch_range(start: *const u8, len: usize) {
    #[cfg(target_arch = "x86_64")]
    {
        use std::arch::x86_64::{_MM_HINT_T0, _mm_prefetch};
        for offset in (0..len).step_by(LINE) {
            // SAFETY: a prefetch is only a hint: it never faults and changes nothing, and the
            // address lies inside the referenced value anyway.
            unsafe { _mm_prefetch::<_MM_HINT_T0>(start.wrapping_add(offset).cast::<i8>()) };
        }
    }
    #[cfg(not(target_arch = "x86_64"))]
    {
        let _ = (start, len);
    }
}
