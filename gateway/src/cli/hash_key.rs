//! `portcullis hash-key`: the sha256 of a gateway key, for `key_sha256`.

use std::io::Read;
use std::process::ExitCode;

use zeroize::Zeroizing;

/// Prints the hex sha256 of `key`, or of stdin without its trailing newline.
pub(super) fn hash_key(key: Option<String>) -> ExitCode {
    let key = match key {
        Some(k) => Zeroizing::new(k),
        None => {
            let mut k = Zeroizing::new(String::new());
            if let Err(e) = std::io::stdin().read_to_string(&mut k) {
                eprintln!("error: reading the key from stdin: {e}");
                return ExitCode::FAILURE;
            }
            Zeroizing::new(k.trim_end_matches(['\r', '\n']).to_owned())
        }
    };
    if key.is_empty() {
        eprintln!("error: empty key");
        return ExitCode::FAILURE;
    }
    println!("{}", hex::encode(portcullis_config::sha256(key.as_bytes())));
    ExitCode::SUCCESS
}
