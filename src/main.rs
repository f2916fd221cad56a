//! The `questline` binary: parse the command line, run the command, exit with its code.

use clap::Parser;

mod allocator;

fn main() {
    allocator::tune();
    let cli = questline::cli::Cli::parse();
    if let Err(failure) = questline::cli::run(cli) {
        eprintln!("questline: {failure}");
        std::process::exit(failure.exit_code());
    }
}
