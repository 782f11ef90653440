//! The `palisade` binary: parses the command line, loads the configuration and hands over to the libraries.

mod cli;

fn main() -> std::process::ExitCode {
    cli::main()
}
