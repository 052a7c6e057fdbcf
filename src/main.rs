//! The `agentplane` binary: parse, run, exit.

// mimalloc: validate's worker threads allocate many small JSON values; glibc's
// per-thread arenas grew by mprotect/page faults for ~18% of its time.
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn main() -> std::process::ExitCode {
    std::process::ExitCode::from(agentplane::run().code())
}
