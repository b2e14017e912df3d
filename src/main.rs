//! The `flowctl` binary: parse arguments, set up tracing, hand over to the CLI layer.

use std::process::ExitCode;

fn main() -> ExitCode {
    flowctl::cli::init_tracing();
    flowctl::cli::main()
}
