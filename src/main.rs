//! The `bertscope` binary: the command line of [`cli`], which opens the app without a
//! subcommand.

mod cli;

fn main() -> std::process::ExitCode {
    cli::main()
}
