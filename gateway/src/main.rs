//! `portcullis`: the gateway binary. Argument parsing and everything else live in the library.

/// mimalloc instead of glibc's malloc: a request allocates and frees a few dozen small blocks
/// (header values, the record, Pingora's buffers), and mimalloc's thread-local free lists make
/// each of those cheaper (load-tests/callgrind.sh measures it).
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn main() -> std::process::ExitCode {
    portcullis_gateway::main()
}
