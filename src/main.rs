//! The `questline` binary: parse the command line, run the command, exit with its code.

use clap::Parser;

/// mimalloc instead of glibc's allocator: the worker allocates and frees many small strings
/// and buffers per record, and a profile of the end-to-end benchmark showed a fifth of its
/// time in glibc's malloc and free. Set in the binary only; the library leaves the choice to
/// whoever embeds it.
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn main() {
    let cli = questline::cli::Cli::parse();
    if let Err(failure) = questline::cli::run(cli) {
        eprintln!("questline: {failure}");
        std::process::exit(failure.exit_code());
    }
}
