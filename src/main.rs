//! The `cairn` binary: parses the command line and hands over to [`cairn::cli`].

/// The binary's allocator is mimalloc, not the C library's malloc. `cairn serve` allocates and
/// frees many small, short-lived buffers per request (heads, bodies, events, futures, answers)
/// on its runtime threads and hands some to the writer and syncer threads, which free them;
/// with glibc's malloc that took about an eighth of the server's CPU per append (malloc, free,
/// and the consolidation of its fast bins), measured with `perf record` under 64 connections
/// (docs/benchmarks.md, "Server CPU per append"). mimalloc's per-thread free lists cost less.
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn main() -> std::process::ExitCode {
    cairn::cli::main()
}
