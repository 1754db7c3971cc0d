use proptest::prelude::*;

use super::*;

fn hello() -> Frame {
    Frame::Hello(Hello {
        protocol: PROTOCOL_VERSION,
        token: Token::new("s3cret-token"),
        agent_id: "host-1234".into(),
        agent_version: "0.1.0".into(),
    })
}

#[test]
fn hello_round_trips() {
    let bytes = hello().encode().unwrap();
    assert_eq!(bytes[0], TYPE_HELLO);
    let (frame, used) = decode(&bytes).unwrap().unwrap();
    assert_eq!(used, bytes.len());
    assert_eq!(frame, hello());
}

#[test]
fn token_is_never_in_debug_output() {
    let debug = format!("{:?}", hello());
    assert!(!debug.contains("s3cret"), "{debug}");
    assert!(debug.contains("[redacted]"));
}

#[test]
fn partial_input_asks_for_more() {
    let bytes = hello().encode().unwrap();
    for cut in 0..bytes.len() {
        assert_eq!(decode(&bytes[..cut]), Ok(None), "cut at {cut}");
    }
}

#[test]
fn oversized_header_is_rejected_before_the_payload_arrives() {
    let mut bytes = vec![TYPE_PING];
    bytes.extend_from_slice(&u32::MAX.to_be_bytes());
    assert_eq!(
        decode(&bytes),
        Err(FrameError::TooLarge {
            frame_type: TYPE_PING,
            len: u64::from(u32::MAX)
        })
    );
}

#[test]
fn unknown_type_is_rejected() {
    assert_eq!(
        decode(&[0x7f, 0, 0, 0, 0]),
        Err(FrameError::UnknownType(0x7f))
    );
}

#[test]
fn payload_errors_never_echo_the_payload() {
    let payload = br#"{"protocol":1,"token":12345678,"agent_id":"a","agent_version":"v"}"#;
    let mut bytes = vec![TYPE_HELLO];
    bytes.extend_from_slice(&(payload.len() as u32).to_be_bytes());
    bytes.extend_from_slice(payload);
    let err = decode(&bytes).unwrap_err();
    assert!(!err.to_string().contains("12345678"), "{err}");
    assert!(err.to_string().contains("hello"), "{err}");
}

#[test]
fn unknown_codes_from_newer_peers_decode() {
    let payload = br#"{"code":"quota_exceeded","message":"m"}"#;
    let mut bytes = vec![TYPE_REFUSED];
    bytes.extend_from_slice(&(payload.len() as u32).to_be_bytes());
    bytes.extend_from_slice(payload);
    let (frame, _) = decode(&bytes).unwrap().unwrap();
    assert_eq!(
        frame,
        Frame::Refused(Refused {
            code: RefuseCode::Unknown,
            message: "m".into()
        })
    );
}

#[test]
fn stream_kinds_have_their_documented_shape() {
    let tcp = Frame::Open(StreamKind::Tcp {
        origin: "db".into(),
    })
    .encode()
    .unwrap();
    assert_eq!(&tcp[HEADER_LEN..], br#"{"kind":"tcp","origin":"db"}"#);
    let http = Frame::Open(StreamKind::Http).encode().unwrap();
    assert_eq!(&http[HEADER_LEN..], br#"{"kind":"http"}"#);
}

#[test]
fn too_large_frames_are_not_encoded() {
    let frame = Frame::GoAway(GoAway {
        reason: CloseReason::Shutdown,
        message: "x".repeat(MAX_PAYLOAD),
    });
    assert!(matches!(frame.encode(), Err(FrameError::TooLarge { .. })));
}

#[tokio::test]
async fn read_frame_reads_exactly_one_frame() {
    let mut bytes = hello().encode().unwrap();
    bytes.extend_from_slice(b"yamux bytes");
    let mut reader = &bytes[..];
    let frame = read_frame(&mut reader).await.unwrap();
    assert_eq!(frame, hello());
    assert_eq!(reader, b"yamux bytes");
}

fn arb_string() -> impl Strategy<Value = String> {
    proptest::string::string_regex("[ -~\u{e9}\u{1F600}]{0,40}").unwrap()
}

fn arb_frame() -> impl Strategy<Value = Frame> {
    let code = prop_oneof![
        Just(RefuseCode::BadToken),
        Just(RefuseCode::Revoked),
        Just(RefuseCode::Version),
        Just(RefuseCode::Malformed),
        Just(RefuseCode::Overloaded),
        Just(RefuseCode::ShuttingDown),
    ];
    let reason = prop_oneof![
        Just(CloseReason::Revoked),
        Just(CloseReason::Shutdown),
        Just(CloseReason::HeartbeatTimeout),
        Just(CloseReason::ProtocolError),
        Just(CloseReason::ConnectionLost),
    ];
    prop_oneof![
        (any::<u16>(), arb_string(), arb_string(), arb_string()).prop_map(|(p, t, a, v)| {
            Frame::Hello(Hello {
                protocol: p,
                token: Token::new(t),
                agent_id: a,
                agent_version: v,
            })
        }),
        (
            any::<u16>(),
            arb_string(),
            arb_string(),
            any::<u64>(),
            any::<u64>()
        )
            .prop_map(
                |(protocol, tunnel, tenant, heartbeat_interval_ms, heartbeat_timeout_ms)| {
                    Frame::Accepted(Accepted {
                        protocol,
                        tunnel,
                        tenant,
                        heartbeat_interval_ms,
                        heartbeat_timeout_ms,
                    })
                }
            ),
        (code, arb_string()).prop_map(|(code, message)| Frame::Refused(Refused { code, message })),
        Just(Frame::Open(StreamKind::Http)),
        Just(Frame::Open(StreamKind::Control)),
        arb_string().prop_map(|origin| Frame::Open(StreamKind::Tcp { origin })),
        Just(Frame::OpenOk),
        (arb_string(), arb_string())
            .prop_map(|(reason, message)| Frame::OpenRefused(OpenRefused { reason, message })),
        any::<u64>().prop_map(|seq| Frame::Ping(Ping { seq })),
        (reason, arb_string())
            .prop_map(|(reason, message)| Frame::GoAway(GoAway { reason, message })),
    ]
}

proptest! {
    #[test]
    fn encode_decode_round_trip(frame in arb_frame(), tail in proptest::collection::vec(any::<u8>(), 0..16)) {
        let mut bytes = frame.encode().unwrap();
        let len = bytes.len();
        bytes.extend_from_slice(&tail);
        let (decoded, used) = decode(&bytes).unwrap().unwrap();
        prop_assert_eq!(used, len);
        prop_assert_eq!(decoded, frame);
    }

    #[test]
    fn truncated_frames_never_decode_and_never_panic(frame in arb_frame(), cut in any::<prop::sample::Index>()) {
        let bytes = frame.encode().unwrap();
        let cut = cut.index(bytes.len());
        prop_assert_eq!(decode(&bytes[..cut]), Ok(None));
    }

    #[test]
    fn arbitrary_bytes_never_panic(bytes in proptest::collection::vec(any::<u8>(), 0..512)) {
        if let Ok(Some((_, used))) = decode(&bytes) {
            prop_assert!(used <= bytes.len());
        }
    }

    #[test]
    fn oversized_lengths_are_always_rejected(frame_type in any::<u8>(), len in (MAX_PAYLOAD as u32 + 1)..=u32::MAX) {
        let mut bytes = vec![frame_type];
        bytes.extend_from_slice(&len.to_be_bytes());
        let is_too_large = matches!(decode(&bytes), Err(FrameError::TooLarge { .. }));
        prop_assert!(is_too_large);
    }
}
