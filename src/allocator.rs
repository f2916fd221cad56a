//! The binary's allocator (the library leaves the choice to whoever embeds it): mimalloc 3,
//! with transparent huge pages off and freed memory returned after a second, so that the
//! worker's resident memory stays near what it holds and a batch's freed pages serve the
//! next batches (docs/operations.md, "Sizing and scaling").
//!
//! Why a second (mimalloc 3's own delay) and not the 100 ms questline set before: at 100 ms
//! mimalloc 3 returned the memory of one batch and faulted it in again for the next (in one
//! profile each, page faults and `madvise` were 49 samples of the record step's thread
//! against 4). `scripts/bench`, alternated against mimalloc 2 at 100 ms (which keeps it, and
//! was the allocator for a while): the same CPU per action over 8 pairs, a lower peak
//! resident set in 7 of them (220–268 against 246–283 MB), and with new users queued a p99
//! lower in 6 of 6 pairs (103–265 against 114–768 ms) (docs/benchmarks.md).
//!
//! Huge pages off is what keeps the resident set near the heap. Measured with `scripts/bench`
//! (docs/benchmarks.md, "Where the worker's memory goes"), with them on the live heap peaked
//! at ~250 MB while the resident set peaked at 454–498 MB: mimalloc asks the kernel for
//! transparent huge pages, so a 2 MiB page is resident as soon as one byte of it is touched.
//!
//! The one module with `unsafe` code: calls into mimalloc's C API and `prctl`, with integer
//! arguments only (and, in a test, C's `malloc` and `free`).
#![allow(unsafe_code)]

use std::ffi::{c_int, c_long};

/// mimalloc instead of glibc's allocator: the worker allocates and frees many small strings
/// and buffers per record, and a profile of the end-to-end benchmark showed a fifth of its
/// time in glibc's malloc and free.
///
/// The C code too: with mimalloc's `override` feature the binary defines `malloc`, `free`
/// and the rest of their family, so librdkafka (linked in statically) and the shared
/// libraries it loads (OpenSSL, zlib) allocate from mimalloc as well. glibc supports
/// replacing its allocator this way. librdkafka allocates and frees several blocks per
/// message (the message, its header list, each header, the delivery report), on one thread
/// and frees them on another; through glibc's malloc that was a seventh of the publishing
/// threads' samples and most of the delivery thread's. With it, `scripts/bench` measured the
/// threads other than the record step lower in 5 of 6 pairs (by 21 % in the median pair), and
/// the peak resident memory lower in each (docs/benchmarks.md).
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

/// The mimalloc release the option numbers below come from (its `MI_MALLOC_VERSION`).
/// `mi_option_t` is a C enum whose numbering changed between mimalloc 2 and 3: with another
/// release linked, [`tune`] sets nothing rather than a wrong option, and a test fails so that
/// whoever upgrades it checks the numbers against its `include/mimalloc.h`.
const MIMALLOC_VERSION: c_int = 30302;
/// `mi_option_purge_delay`: how long freed memory stays before it goes back to the OS, in ms.
const MI_OPTION_PURGE_DELAY: c_int = 15;
/// `mi_option_allow_thp`: whether mimalloc asks for transparent huge pages.
const MI_OPTION_ALLOW_THP: c_int = 43;

/// questline's purge delay, mimalloc 3's own, set rather than assumed: long enough that the
/// memory one batch frees serves the batches after it instead of being faulted in again.
/// `MIMALLOC_PURGE_DELAY=100` (questline's earlier value) trades CPU for memory: against
/// mimalloc 2 it peaked at 196–235 MB and cost more CPU per action in 5 of 6 rounds
/// (docs/benchmarks.md).
const PURGE_DELAY_MS: c_long = 1_000;

extern "C" {
    fn mi_version() -> c_int;
    fn mi_option_set_default(option: c_int, value: c_long);
}

/// Sets questline's values of mimalloc's options unless the environment set them
/// (`MIMALLOC_PURGE_DELAY`, `MIMALLOC_ALLOW_THP`: an operator's value wins). Called first
/// thing in `main`, before the worker allocates anything large.
pub fn tune() {
    // SAFETY: reads a constant.
    if unsafe { mi_version() } != MIMALLOC_VERSION {
        return;
    }
    // SAFETY: plain setters of mimalloc's option table, valid option numbers (pinned by the
    // test below); `mi_option_set_default` leaves an option the environment set untouched.
    unsafe { mi_option_set_default(MI_OPTION_PURGE_DELAY, PURGE_DELAY_MS) };
    if std::env::var_os("MIMALLOC_ALLOW_THP").is_none() {
        // SAFETY: as above.
        unsafe { mi_option_set_default(MI_OPTION_ALLOW_THP, 0) };
        // mimalloc read the option when the process started, before `main`, and advised the
        // kernel to back its memory with huge pages; the kernel's per-process switch turns
        // them off for every mapping, the ones already made included. Failure (a kernel
        // without the switch) only leaves huge pages on.
        // SAFETY: prctl with integer arguments only; no memory is passed.
        unsafe { libc::prctl(libc::PR_SET_THP_DISABLE, 1, 0, 0, 0) };
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn option_numbers_belong_to_the_linked_mimalloc() {
        // SAFETY: reads a constant.
        let linked = unsafe { mi_version() };
        assert_eq!(
            linked, MIMALLOC_VERSION,
            "mimalloc was upgraded: check MI_OPTION_* against its include/mimalloc.h"
        );
    }

    extern "C" {
        fn mi_option_get(option: c_int) -> c_long;
        fn mi_is_in_heap_region(p: *const std::ffi::c_void) -> bool;
    }

    /// C's `malloc` (librdkafka's, OpenSSL's) is mimalloc's: the `override` feature is on.
    #[test]
    fn c_allocations_come_from_mimalloc() {
        // SAFETY: a block of 64 bytes, checked and freed by the same allocator's `free`.
        unsafe {
            let block = libc::malloc(64);
            assert!(!block.is_null());
            let ours = mi_is_in_heap_region(block);
            libc::free(block);
            assert!(
                ours,
                "malloc is not mimalloc's: is mimalloc's `override` feature still on?"
            );
        }
    }

    /// The environment's values win; these assertions are of questline's own defaults.
    #[test]
    fn tuning_sets_the_purge_delay_and_turns_huge_pages_off() {
        tune();
        if std::env::var_os("MIMALLOC_PURGE_DELAY").is_none() {
            // SAFETY: reads an option.
            assert_eq!(
                unsafe { mi_option_get(MI_OPTION_PURGE_DELAY) },
                PURGE_DELAY_MS
            );
        }
        if std::env::var_os("MIMALLOC_ALLOW_THP").is_none() {
            // SAFETY: reads an option.
            assert_eq!(unsafe { mi_option_get(MI_OPTION_ALLOW_THP) }, 0);
            // SAFETY: prctl with integer arguments only.
            let disabled = unsafe { libc::prctl(libc::PR_GET_THP_DISABLE, 0, 0, 0, 0) };
            assert_eq!(
                disabled, 1,
                "the kernel's switch for huge pages is still on"
            );
        }
    }
}
