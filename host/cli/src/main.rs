//! The `nexo` command line.

/// A sync allocates and frees many small strings and JSON values from
/// several threads at once; mimalloc does that with less contention and
/// copying than the system allocator.
#[global_allocator]
static ALLOC: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn main() -> std::process::ExitCode {
    nexo::cli::main()
}
