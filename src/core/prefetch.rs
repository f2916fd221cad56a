//! Hints that memory will be read soon, so that the CPU starts loading it while it works on
//! something else.
//!
//! Why: the worker's record step touches, for each record, a user's state it last touched a
//! batch or more ago: a dozen separate allocations that have left the CPU's caches. Waiting
//! for them one after the other is a large part of the step's time (docs/benchmarks.md,
//! "Next steps"); asking for them ahead overlaps those waits with useful work. A hint changes
//! no value: on architectures without one, these functions do nothing.

/// The cache line of the processors the worker runs on (x86-64).
pub const CACHE_LINE: usize = 64;

/// A hint that the line holding `at` will be read soon.
#[cfg(target_arch = "x86_64")]
#[allow(unsafe_code)]
pub fn line(at: *const u8) {
    use std::arch::x86_64::{_mm_prefetch, _MM_HINT_T0};
    // SAFETY: `_mm_prefetch` needs SSE, which every x86-64 processor has (it is in the
    // target's baseline). A prefetch is a hint: it reads nothing into the program and does
    // not fault, whatever the address.
    unsafe { _mm_prefetch::<_MM_HINT_T0>(at.cast()) };
}

#[cfg(not(target_arch = "x86_64"))]
pub fn line(_at: *const u8) {}

/// Hints every cache line `slice`'s elements span, up to `max_lines` lines. A longer read
/// goes on from there as a sequential one, which the processor's own prefetcher follows.
pub fn slice<T>(slice: &[T], max_lines: usize) {
    let start = slice.as_ptr().cast::<u8>();
    let (skew, count) = span(start as usize, std::mem::size_of_val(slice), max_lines);
    // The address is only a hint, never read through: plain (wrapping) arithmetic.
    let first = start.wrapping_sub(skew);
    for i in 0..count {
        line(first.wrapping_add(i * CACHE_LINE));
    }
}

/// For `len` bytes at address `start`: how far `start` is into its cache line, and how many
/// lines (at most `max_lines`) the bytes span from that line on.
fn span(start: usize, len: usize, max_lines: usize) -> (usize, usize) {
    let skew = start % CACHE_LINE;
    if len == 0 {
        return (skew, 0);
    }
    (skew, (skew + len).div_ceil(CACHE_LINE).min(max_lines))
}

/// Hints the memory of `value` itself (not what it points to), up to `max_lines` lines.
pub fn value<T>(value: &T, max_lines: usize) {
    slice(std::slice::from_ref(value), max_lines);
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_span_counts_every_line_its_bytes_touch() {
        assert_eq!(span(0, 0, 8), (0, 0), "nothing to hint");
        assert_eq!(span(128, 1, 8), (0, 1));
        assert_eq!(span(128, 64, 8), (0, 1), "one whole line");
        assert_eq!(span(128, 65, 8), (0, 2));
        assert_eq!(
            span(160, 64, 8),
            (32, 2),
            "a line's worth across a boundary"
        );
        assert_eq!(span(191, 2, 8), (63, 2));
        assert_eq!(span(160, 10_000, 8), (32, 8), "capped");
    }
}
