//! The `broker_frame` target: [`decode`], the broker tunnel's frame decoder.
//!
//! The decoder reads bytes an agent (or a gateway) sent before anything is authenticated, so
//! besides never panicking it must keep what `portcullis_broker::protocol::frame` documents:
//! a decoded frame used at most the bytes it was given, re-encodes and decodes to itself, and
//! is found again from exactly its own bytes; a valid frame cut anywhere short of its end is
//! "incomplete", never an error (a streaming reader waits for more); and errors are short,
//! one line, and never quote a payload (which may carry a broker token).

use portcullis_broker::protocol::frame::{decode, Frame, HEADER_LEN, MAX_PAYLOAD};

/// The longest error message any input may produce: a type, a length, a JSON position.
const MAX_ERROR_LEN: usize = 200;

/// Runs the target on one input.
pub fn frame(data: &[u8]) {
    match decode(data) {
        Ok(None) => check_incomplete(data),
        Ok(Some((frame, used))) => check_frame(data, &frame, used),
        Err(e) => check_error(data, &e.to_string()),
    }
}

/// `Ok(None)` only while the header or the payload it announces is not all there.
fn check_incomplete(data: &[u8]) {
    if data.len() < HEADER_LEN {
        return;
    }
    let len = u32::from_be_bytes([data[1], data[2], data[3], data[4]]) as usize;
    assert!(
        len <= MAX_PAYLOAD,
        "an over-long header was not rejected: {data:?}"
    );
    assert!(
        data.len() < HEADER_LEN + len,
        "a whole frame ({} bytes) was reported incomplete: {data:?}",
        HEADER_LEN + len
    );
}

fn check_frame(data: &[u8], frame: &Frame, used: usize) {
    assert!(
        (HEADER_LEN..=HEADER_LEN + MAX_PAYLOAD).contains(&used) && used <= data.len(),
        "{} frame used {used} of {} bytes",
        frame.name(),
        data.len()
    );
    // The frame is its own bytes: what follows it does not change it.
    assert_eq!(
        decode(&data[..used]),
        Ok(Some((frame.clone(), used))),
        "the frame decodes differently without the bytes after it"
    );
    let encoded = frame
        .encode()
        .unwrap_or_else(|e| panic!("a decoded {} frame does not encode: {e}", frame.name()));
    assert_eq!(
        decode(&encoded),
        Ok(Some((frame.clone(), encoded.len()))),
        "encode then decode changed a {} frame",
        frame.name()
    );
    // A streaming reader sees the frame a piece at a time: every proper prefix is incomplete.
    for cut in 0..encoded.len() {
        assert_eq!(
            decode(&encoded[..cut]),
            Ok(None),
            "{} frame cut after {cut} of {} bytes is not 'incomplete'",
            frame.name(),
            encoded.len()
        );
    }
    if let Frame::Hello(hello) = frame {
        let token = hello.token.expose();
        // A short token can coincide with field names; a long one must not be printed.
        let printed = format!("{frame:?}");
        if token.len() >= 12
            && !hello.agent_id.contains(token)
            && !hello.agent_version.contains(token)
        {
            assert!(
                !printed.contains(token),
                "Debug of a hello frame shows its token"
            );
        }
    }
}

fn check_error(data: &[u8], message: &str) {
    assert!(
        message.len() <= MAX_ERROR_LEN && !message.chars().any(char::is_control),
        "error message is long or has control characters: {message:?}"
    );
    // The payload is never quoted: a run of 12 payload bytes (a token, say) must not appear.
    let payload = data.get(HEADER_LEN..).unwrap_or_default();
    if let Ok(text) = std::str::from_utf8(payload) {
        for word in text
            .split(|c: char| !c.is_ascii_alphanumeric())
            .filter(|w| w.len() >= 12)
        {
            assert!(
                !message.contains(word),
                "error message quotes the payload ({word:?}): {message}"
            );
        }
    }
}
