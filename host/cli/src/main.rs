//! The `hotswap` command; everything is in the library, so the tests can build the same command
//! as a process of their own.

/// mimalloc: the server and the fleet simulator allocate per request from several threads, where
/// it keeps memory tighter and allocation cheaper than the system allocator (see BENCHMARKS.md).
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn main() -> std::process::ExitCode {
    hotswap::main()
}
