use std::process::ExitCode;

fn main() -> ExitCode {
    earshot_collector::cli::main()
}
