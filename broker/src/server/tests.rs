use super::*;
use crate::protocol::frame::Token;

fn grant(tunnel: &str) -> TunnelGrant {
    TunnelGrant {
        tunnel: tunnel.into(),
        tenant: "acme".into(),
    }
}

fn hello(token: &str, protocol: u16) -> Hello {
    Hello {
        protocol,
        token: Token::new(token),
        agent_id: "host-1".into(),
        agent_version: "0.1.0".into(),
    }
}

#[test]
fn static_tokens_accept_revoke_and_refuse() {
    let mut tokens = StaticTokens::new();
    tokens
        .insert(token_sha256("good"), grant("dc1"))
        .revoke(token_sha256("old"));
    assert_eq!(
        tokens.lookup(&token_sha256("good")),
        TokenVerdict::Accept(grant("dc1"))
    );
    assert_eq!(tokens.lookup(&token_sha256("old")), TokenVerdict::Revoked);
    assert_eq!(tokens.lookup(&token_sha256("nope")), TokenVerdict::Unknown);
}

#[test]
fn hex_hashes_parse() {
    let hash = token_sha256("good");
    assert_eq!(parse_sha256_hex(&hex::encode(hash)), Some(hash));
    assert_eq!(parse_sha256_hex("abc"), None);
    assert!(hashes_equal(&hash, &token_sha256("good")));
    assert!(!hashes_equal(&hash, &token_sha256("bad")));
}

#[test]
fn hello_checks_name_the_reason() {
    let mut tokens = StaticTokens::new();
    tokens.insert(token_sha256("good"), grant("dc1"));
    assert_eq!(
        check_hello(&hello("good", PROTOCOL_VERSION), &tokens),
        Ok(grant("dc1"))
    );
    assert_eq!(
        check_hello(&hello("bad", PROTOCOL_VERSION), &tokens)
            .unwrap_err()
            .0,
        RefuseCode::BadToken
    );
    assert_eq!(
        check_hello(&hello("good", 99), &tokens).unwrap_err().0,
        RefuseCode::Version
    );
    let mut weird = hello("good", PROTOCOL_VERSION);
    weird.agent_id = "a\nb".into();
    assert_eq!(
        check_hello(&weird, &tokens).unwrap_err().0,
        RefuseCode::Malformed
    );
    weird.agent_id = "x".repeat(MAX_AGENT_ID + 1);
    assert_eq!(
        check_hello(&weird, &tokens).unwrap_err().0,
        RefuseCode::Malformed
    );
}

#[test]
fn refusal_messages_never_contain_the_token() {
    let tokens = StaticTokens::new();
    let (_, message) =
        check_hello(&hello("tok-SECRET-123", PROTOCOL_VERSION), &tokens).unwrap_err();
    assert!(!message.contains("SECRET"), "{message}");
}
