//! The `agentplane` binary: parse, run, exit.

// mimalloc: validate's worker threads allocate many small JSON values; glibc's
// per-thread arenas grew by mprotect/page faults for ~18% of its time.
// Built with `no_thp`: with transparent huge pages mimalloc's arena took
// whole 2 MiB pages it touched sparsely (verify's peak RSS 51 MB, 23 MB
// without) for no measurable speed (docs/performance.md, §1, session 7).
// The feature only leaves out mimalloc's madvise(MADV_HUGEPAGE); it does not
// disable huge pages for the process (no prctl), so a child such as QEMU
// keeps what the system gives it.
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn main() -> std::process::ExitCode {
    std::process::ExitCode::from(agentplane::run().code())
}
