//! The `questline` binary: parse the command line, run the command, exit with its code.

use clap::Parser;

/// mimalloc instead of glibc's allocator: the worker allocates and frees many small strings
/// and buffers per record, and a profile of the end-to-end benchmark showed a fifth of its
/// time in glibc's malloc and free. Set in the binary only; the library leaves the choice to
/// whoever embeds it.
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

/// mimalloc's options (`mi_option_e` in its mimalloc.h, v2) that questline sets, with the
/// environment variable that overrides each.
const ALLOCATOR_OPTIONS: [(libmimalloc_sys::mi_option_t, &str, std::ffi::c_long); 2] = [
    // Freed pages are returned to the OS at once rather than 10 ms later: the worker frees a
    // batch's buffers while it allocates the next one's, and with the delay the two overlapped
    // (peak resident memory of the end-to-end benchmark ~25 % lower, docs/benchmarks.md).
    (15, "MIMALLOC_PURGE_DELAY", 0),
    // A finished thread's (tokio's blocking pool: the store's writes) delayed purges at once.
    (12, "MIMALLOC_ABANDONED_PAGE_PURGE", 1),
];

/// Sets [`ALLOCATOR_OPTIONS`] not set in the environment (mimalloc read that at start).
#[allow(unsafe_code)] // mimalloc's C setter: an option number and a value, before any thread.
fn tune_allocator() {
    for (option, variable, value) in ALLOCATOR_OPTIONS {
        if std::env::var_os(variable).is_none() {
            // SAFETY: a plain C call with integer arguments; `option` is a valid `mi_option_e`
            // of the mimalloc version linked (v2); called before any other thread exists, as
            // mimalloc's option setter requires.
            unsafe { libmimalloc_sys::mi_option_set(option, value) };
        }
    }
}

fn main() {
    tune_allocator();
    let cli = questline::cli::Cli::parse();
    if let Err(failure) = questline::cli::run(cli) {
        eprintln!("questline: {failure}");
        std::process::exit(failure.exit_code());
    }
}
