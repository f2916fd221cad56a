//! The `questline` binary: parse the command line, run the command, exit with its code.

use clap::Parser;

mod allocator;

fn main() {
    allocator::tune();
    // OpenSSL initialized before librdkafka does it, with `OPENSSL_INIT_NO_ATEXIT`: its
    // cleanup is then not run by `exit`. A failing command exits while threads the runtime
    // left behind (a blocking call to the brokers, its librdkafka threads) may still use TLS,
    // and a cleanup under them can crash the process instead of exiting with the command's
    // code: the suspected cause of one CI run's worker that ended by a signal after printing
    // its error (not reproduced in 16 runs since). The cleanup only frees memory the exit
    // frees anyway.
    openssl_sys::init();
    let cli = questline::cli::Cli::parse();
    if let Err(failure) = questline::cli::run(cli) {
        eprintln!("questline: {failure}");
        std::process::exit(failure.exit_code());
    }
}
