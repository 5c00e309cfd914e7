use std::process::ExitCode;

fn main() -> ExitCode {
    earshot_agent::cli::main()
}
