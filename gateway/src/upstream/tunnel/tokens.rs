//! The broker token table of one runtime: which tunnel (and tenant) each token hash opens.
//!
//! Built with the runtime from `[[tunnels]] token_sha256`, so a reload swaps it together with
//! everything else, in the one runtime store. The gateway never sees a token it does not hash
//! first: the broker handshake hashes what the agent presents and asks [`TunnelTokens`].

use std::sync::OnceLock;

use portcullis_broker::server::{TokenLookup, TokenVerdict, TunnelGrant};
use portcullis_config::{KeyDigests, Snapshot};

/// The token table of one config.
#[derive(Debug, Default)]
pub(crate) struct TunnelTokens {
    entries: Vec<Entry>,
}

#[derive(Debug)]
struct Entry {
    grant: TunnelGrant,
    tokens: KeyDigests,
}

/// A lookup for one handshake that remembers the hash it accepted, so the registry can tell
/// later whether a reload removed that agent's token.
pub(super) struct Recording<'a> {
    table: &'a TunnelTokens,
    accepted: OnceLock<[u8; 32]>,
}

// === impl TunnelTokens ===

impl TunnelTokens {
    /// The table of `config`'s tunnels.
    pub(crate) fn new(config: &Snapshot) -> Self {
        Self {
            entries: config
                .tunnels
                .iter()
                .map(|t| Entry {
                    grant: TunnelGrant {
                        tunnel: t.name.clone(),
                        tenant: config.tenants[t.tenant].id.clone(),
                    },
                    tokens: t.tokens.clone(),
                })
                .collect(),
        }
    }

    /// Whether the token with this hash still opens `tunnel` for `tenant`.
    pub(crate) fn still_grants(&self, hash: &[u8; 32], tunnel: &str, tenant: &str) -> bool {
        matches!(
            self.lookup(hash),
            TokenVerdict::Accept(grant) if grant.tunnel == tunnel && grant.tenant == tenant
        )
    }
}

impl TokenLookup for TunnelTokens {
    fn lookup(&self, token_sha256: &[u8; 32]) -> TokenVerdict {
        // Every tunnel is looked at (each comparison constant time), whatever matches first.
        let mut found = None;
        for entry in &self.entries {
            if entry.tokens.contains_digest(token_sha256) && found.is_none() {
                found = Some(entry.grant.clone());
            }
        }
        // A removed token is indistinguishable from one never issued: the config keeps no
        // list of revoked hashes, so both are `bad_token`.
        found.map_or(TokenVerdict::Unknown, TokenVerdict::Accept)
    }
}

// === impl Recording ===

impl<'a> Recording<'a> {
    pub(super) fn new(table: &'a TunnelTokens) -> Self {
        Self {
            table,
            accepted: OnceLock::new(),
        }
    }

    /// The hash of the token that was accepted, once one was.
    pub(super) fn accepted(&self) -> Option<[u8; 32]> {
        self.accepted.get().copied()
    }
}

impl TokenLookup for Recording<'_> {
    fn lookup(&self, token_sha256: &[u8; 32]) -> TokenVerdict {
        let verdict = self.table.lookup(token_sha256);
        if matches!(verdict, TokenVerdict::Accept(_)) {
            let _ = self.accepted.set(*token_sha256);
        }
        verdict
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use portcullis_broker::server::token_sha256;

    fn config() -> Snapshot {
        let text = format!(
            r#"
[tunnel]
listen = "127.0.0.1:0"
insecure_plaintext = true
[[tenants]]
id = "acme"
[[tenants]]
id = "globex"
[[tunnels]]
name = "acme-dc1"
tenant = "acme"
token_sha256 = ["{}", "{}"]
[[tunnels]]
name = "globex-dc"
tenant = "globex"
token_sha256 = ["{}"]
"#,
            hex::encode(token_sha256("a1")),
            hex::encode(token_sha256("a2")),
            hex::encode(token_sha256("g1")),
        );
        portcullis_config::compile(std::path::Path::new("t.toml"), &text).unwrap()
    }

    #[test]
    fn each_token_opens_its_own_tunnel_only() {
        let table = TunnelTokens::new(&config());
        let grant = |tunnel: &str, tenant: &str| {
            TokenVerdict::Accept(TunnelGrant {
                tunnel: tunnel.into(),
                tenant: tenant.into(),
            })
        };
        assert_eq!(table.lookup(&token_sha256("a1")), grant("acme-dc1", "acme"));
        assert_eq!(table.lookup(&token_sha256("a2")), grant("acme-dc1", "acme"));
        assert_eq!(
            table.lookup(&token_sha256("g1")),
            grant("globex-dc", "globex")
        );
        assert_eq!(table.lookup(&token_sha256("nope")), TokenVerdict::Unknown);
        assert!(table.still_grants(&token_sha256("a2"), "acme-dc1", "acme"));
        assert!(!table.still_grants(&token_sha256("a2"), "globex-dc", "globex"));
        assert!(!table.still_grants(&token_sha256("a2"), "acme-dc1", "globex"));
    }

    #[test]
    fn the_recording_lookup_keeps_the_accepted_hash_only() {
        let table = TunnelTokens::new(&config());
        let recording = Recording::new(&table);
        assert_eq!(
            recording.lookup(&token_sha256("wrong")),
            TokenVerdict::Unknown
        );
        assert_eq!(recording.accepted(), None);
        assert!(matches!(
            recording.lookup(&token_sha256("g1")),
            TokenVerdict::Accept(_)
        ));
        assert_eq!(recording.accepted(), Some(token_sha256("g1")));
    }
}
