//! The `hotswap` command, as the crash tests run it: in a process of its own, to be killed.

fn main() -> std::process::ExitCode {
    hotswap::main()
}
