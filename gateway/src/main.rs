//! `portcullis`: the gateway binary. Argument parsing and everything else live in the library.

fn main() -> std::process::ExitCode {
    portcullis_gateway::main()
}
