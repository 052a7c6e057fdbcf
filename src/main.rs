//! The `agentplane` binary: parse, run, exit.

fn main() -> std::process::ExitCode {
    std::process::ExitCode::from(agentplane::run().code())
}
