//! `portcullis`: the gateway binary. Argument parsing and everything else live in the library.

/// mimalloc instead of glibc's malloc: a request allocates and frees a few dozen small blocks
/// (header values, the record, Pingora's buffers), and mimalloc's thread-local free lists make
/// each of those cheaper (load-tests/callgrind.sh measures it). Built with `no_thp`: mimalloc
/// otherwise asks for transparent huge pages on the memory it commits eagerly, and every
/// connection's mostly-unused 64 KiB read buffer then became resident — 103 KiB of RSS per idle
/// keep-alive connection instead of 46 (`load-tests/attacks.py --only="idle keep-alive"`).
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn main() -> std::process::ExitCode {
    portcullis_gateway::main()
}
