//! JWT verification against a route's policy: signature with a published key, the algorithm
//! allowlist, `exp`/`nbf` with leeway, `iss` and `aud`. The checks themselves are
//! `jsonwebtoken`'s; this module prepares them once per runtime and names each failure with a
//! [`TokenReason`].
//!
//! Two things are decided before `jsonwebtoken` sees a token: its `alg` must be on the route's
//! list (so `alg: none`, and an HMAC token "signed" with the public key, are refused as a bad
//! signature without looking for a key), and a key is used only for algorithms of its own
//! kind — an RSA key never becomes an HMAC secret.
//!
//! A token that passed is remembered ([`JwtPolicy::already_verified`]): a caller sends the
//! same token on every request until it expires, and verifying a signature is the most
//! expensive thing on a passthrough request (an RS256 verification costs more than the rest of
//! the request together). The entry is keyed by the SHA-256 of the whole token — the same
//! bytes, so the same signature and claims — and holds only until the token's `exp` (plus the
//! leeway) or until the key set it was verified with is replaced (a refresh or a rotation),
//! whichever comes first; the policy itself is rebuilt on every reload, cache and all.

use std::time::Instant;

use base64::Engine;
use jsonwebtoken::{Algorithm, DecodingKey, Validation};
use portcullis_config::{JwtAlgorithm, JwtValidation};
use sha2::{Digest, Sha256};

use super::jwks::KeySet;
use crate::outcome::TokenReason;

/// At most this many keys are tried for a token without `kid`.
const MAX_KEYS_TRIED: usize = 8;

/// Verified tokens remembered per route (about 100 bytes each).
const VERIFIED_CAPACITY: usize = 10_000;

/// A route's token checks, prepared once per runtime.
pub(crate) struct JwtPolicy {
    /// One validation per allowed algorithm (`jsonwebtoken` wants every algorithm of a
    /// validation to match the key's kind).
    validations: Vec<(Algorithm, Validation)>,
    /// Seconds past `exp` a token is still accepted.
    leeway: u64,
    /// Tokens that passed, by the SHA-256 of the token.
    verified: quick_cache::sync::Cache<[u8; 32], Verified>,
}

/// A token that passed every check.
#[derive(Clone, Copy)]
struct Verified {
    /// Unix seconds after which it no longer passes (`exp` + leeway).
    valid_until: u64,
    /// The key set it was verified with (its fetch time identifies it).
    keys: Instant,
}

/// The one claim the cache needs; `jsonwebtoken` has checked it (and the others) already.
#[derive(serde::Deserialize)]
struct Expiry {
    exp: u64,
}

/// What the token's header says, read before any key is looked up.
pub(crate) struct TokenHead {
    /// The (allowed) algorithm.
    pub(crate) alg: Algorithm,
    /// The key id, when the token names one.
    pub(crate) kid: Option<String>,
}

// === impl JwtPolicy ===

impl JwtPolicy {
    /// The checks of a route's `[routes.jwt]`.
    pub(crate) fn new(jwt: &JwtValidation) -> Self {
        let validations = jwt
            .algorithms
            .iter()
            .map(|alg| {
                let alg = algorithm(*alg);
                let mut v = Validation::new(alg);
                v.set_issuer(&[jwt.issuer.as_str()]);
                v.set_audience(&jwt.audiences);
                v.set_required_spec_claims(&["exp", "iss", "aud"]);
                v.leeway = jwt.leeway.as_secs();
                v.validate_exp = true;
                v.validate_nbf = true;
                (alg, v)
            })
            .collect();
        Self {
            validations,
            leeway: jwt.leeway.as_secs(),
            verified: quick_cache::sync::Cache::new(VERIFIED_CAPACITY),
        }
    }

    /// Whether `token` passed every check with `keys` before and has not expired since.
    /// Returns the token's digest for [`JwtPolicy::remember`] either way.
    pub(crate) fn already_verified(&self, token: &str, keys: &KeySet) -> (bool, [u8; 32]) {
        let digest: [u8; 32] = Sha256::digest(token.as_bytes()).into();
        let hit = self.verified.get(&digest).is_some_and(|v| {
            v.keys == keys.fetched() && crate::clock::now_ms() / 1000 <= v.valid_until
        });
        (hit, digest)
    }

    /// Remembers that the token with `digest`, expiring at `exp`, passed with `keys`.
    pub(crate) fn remember(&self, digest: [u8; 32], exp: u64, keys: &KeySet) {
        self.verified.insert(
            digest,
            Verified {
                valid_until: exp.saturating_add(self.leeway),
                keys: keys.fetched(),
            },
        );
    }

    /// Reads the token's header: its shape, then its `alg` against the allowlist.
    pub(crate) fn head(&self, token: &str) -> Result<TokenHead, TokenReason> {
        let mut parts = token.split('.');
        let (Some(header), Some(_), Some(_), None) =
            (parts.next(), parts.next(), parts.next(), parts.next())
        else {
            return Err(TokenReason::Malformed);
        };
        let bytes = base64::engine::general_purpose::URL_SAFE_NO_PAD
            .decode(header)
            .map_err(|_| TokenReason::Malformed)?;
        let header: serde_json::Value =
            serde_json::from_slice(&bytes).map_err(|_| TokenReason::Malformed)?;
        let alg = header
            .get("alg")
            .and_then(|a| a.as_str())
            .ok_or(TokenReason::Malformed)?;
        // `none`, HMAC and anything not listed: the signature cannot be one the route trusts.
        let alg = self
            .validations
            .iter()
            .map(|(a, _)| *a)
            .find(|a| algorithm_name(*a) == alg)
            .ok_or(TokenReason::BadSignature)?;
        let kid = match header.get("kid") {
            None => None,
            Some(serde_json::Value::String(kid)) => Some(kid.clone()),
            Some(_) => return Err(TokenReason::Malformed),
        };
        Ok(TokenHead { alg, kid })
    }

    /// Verifies `token` (whose head is `head`) with the keys of `keys` that could have signed
    /// it, returning its `exp`. `Err(UnknownKey)` when no key could.
    pub(crate) fn verify(
        &self,
        token: &str,
        head: &TokenHead,
        keys: &KeySet,
    ) -> Result<u64, TokenReason> {
        let Some((_, validation)) = self.validations.iter().find(|(a, _)| *a == head.alg) else {
            return Err(TokenReason::BadSignature);
        };
        let mut tried = 0;
        let mut outcome = Err(TokenReason::UnknownKey);
        for key in keys
            .candidates(head.kid.as_deref(), head.alg)
            .take(MAX_KEYS_TRIED)
        {
            tried += 1;
            match check(token, key, validation) {
                Ok(exp) => return Ok(exp),
                // Another key without `kid` may still match.
                Err(TokenReason::BadSignature) if head.kid.is_none() => {
                    outcome = Err(TokenReason::BadSignature);
                }
                Err(reason) => return Err(reason),
            }
        }
        if tried == 0 {
            return Err(TokenReason::UnknownKey);
        }
        outcome
    }
}

/// Checks `token` with one key; its `exp` when it passes.
fn check(token: &str, key: &DecodingKey, validation: &Validation) -> Result<u64, TokenReason> {
    use jsonwebtoken::errors::ErrorKind;
    match jsonwebtoken::decode::<Expiry>(token, key, validation) {
        Ok(data) => Ok(data.claims.exp),
        Err(e) => Err(match e.kind() {
            ErrorKind::ExpiredSignature => TokenReason::Expired,
            ErrorKind::ImmatureSignature => TokenReason::NotYetValid,
            ErrorKind::InvalidIssuer => TokenReason::WrongIssuer,
            ErrorKind::InvalidAudience => TokenReason::WrongAudience,
            ErrorKind::MissingRequiredClaim(claim) => match claim.as_str() {
                "iss" => TokenReason::WrongIssuer,
                "aud" => TokenReason::WrongAudience,
                _ => TokenReason::Malformed,
            },
            ErrorKind::InvalidToken
            | ErrorKind::Base64(_)
            | ErrorKind::Json(_)
            | ErrorKind::Utf8(_) => TokenReason::Malformed,
            _ => TokenReason::BadSignature,
        }),
    }
}

/// The `jsonwebtoken` algorithm of a config algorithm.
pub(crate) fn algorithm(alg: JwtAlgorithm) -> Algorithm {
    match alg {
        JwtAlgorithm::Rs256 => Algorithm::RS256,
        JwtAlgorithm::Rs384 => Algorithm::RS384,
        JwtAlgorithm::Rs512 => Algorithm::RS512,
        JwtAlgorithm::Ps256 => Algorithm::PS256,
        JwtAlgorithm::Ps384 => Algorithm::PS384,
        JwtAlgorithm::Ps512 => Algorithm::PS512,
        JwtAlgorithm::Es256 => Algorithm::ES256,
        JwtAlgorithm::Es384 => Algorithm::ES384,
        JwtAlgorithm::EdDsa => Algorithm::EdDSA,
    }
}

/// The JOSE name of an algorithm.
fn algorithm_name(alg: Algorithm) -> &'static str {
    match alg {
        Algorithm::HS256 => "HS256",
        Algorithm::HS384 => "HS384",
        Algorithm::HS512 => "HS512",
        Algorithm::ES256 => "ES256",
        Algorithm::ES384 => "ES384",
        Algorithm::RS256 => "RS256",
        Algorithm::RS384 => "RS384",
        Algorithm::RS512 => "RS512",
        Algorithm::PS256 => "PS256",
        Algorithm::PS384 => "PS384",
        Algorithm::PS512 => "PS512",
        Algorithm::EdDSA => "EdDSA",
    }
}

impl std::fmt::Debug for JwtPolicy {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("JwtPolicy")
            .field("verified", &self.verified.len())
            .field(
                "algorithms",
                &self
                    .validations
                    .iter()
                    .map(|(a, _)| algorithm_name(*a))
                    .collect::<Vec<_>>(),
            )
            .finish()
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use portcullis_config::Endpoint;

    use super::*;

    fn policy(algorithms: Vec<JwtAlgorithm>) -> JwtPolicy {
        JwtPolicy::new(&JwtValidation {
            issuer: "https://idp.test/".into(),
            audiences: vec!["api".into()],
            jwks_url: Endpoint::parse("https://idp.test/jwks").unwrap(),
            algorithms,
            leeway: Duration::from_secs(30),
            jwks_refresh: Duration::from_secs(300),
            jwks_grace: Duration::from_secs(3600),
            jwks_min_refetch: Duration::from_secs(10),
        })
    }

    fn token(header: &str) -> String {
        let b64 = |s: &str| base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(s);
        format!("{}.{}.c2ln", b64(header), b64(r#"{"sub":"x"}"#))
    }

    #[test]
    fn the_header_decides_before_any_key_is_looked_up() {
        let p = policy(vec![JwtAlgorithm::Rs256, JwtAlgorithm::EdDsa]);
        let head = p.head(&token(r#"{"alg":"EdDSA","kid":"k1"}"#)).unwrap();
        assert_eq!(head.alg, Algorithm::EdDSA);
        assert_eq!(head.kid.as_deref(), Some("k1"));
        assert!(p.head(&token(r#"{"alg":"RS256"}"#)).unwrap().kid.is_none());
        // Unsigned, HMAC, or allowed elsewhere but not here: not a signature the route trusts.
        for alg in ["none", "NONE", "HS256", "ES256"] {
            let header = format!(r#"{{"alg":"{alg}","kid":"k1"}}"#);
            assert!(matches!(
                p.head(&token(&header)),
                Err(TokenReason::BadSignature)
            ));
        }
        for bad in [
            "",
            "a.b",
            "a.b.c.d",
            "!!.e30.c2ln",
            &token(r#"{"kid":"k1"}"#),
        ] {
            assert!(matches!(p.head(bad), Err(TokenReason::Malformed)), "{bad}");
        }
        assert!(matches!(
            p.head(&token(r#"{"alg":"RS256","kid":7}"#)),
            Err(TokenReason::Malformed)
        ));
    }

    #[test]
    fn a_verified_token_is_remembered_until_it_expires_or_the_keys_change() {
        let p = policy(vec![JwtAlgorithm::Rs256]);
        let keys = KeySet::empty_for_tests(Instant::now());
        let replaced = KeySet::empty_for_tests(Instant::now() + Duration::from_secs(1));
        let now = crate::clock::now_ms() / 1000;
        let (hit, digest) = p.already_verified("h.c.s1", &keys);
        assert!(!hit);
        p.remember(digest, now + 60, &keys);
        assert!(p.already_verified("h.c.s1", &keys).0);
        // Any other token (one byte of the signature) is not.
        assert!(!p.already_verified("h.c.s2", &keys).0);
        // A refreshed or rotated key set is not the one it was verified with.
        assert!(!p.already_verified("h.c.s1", &replaced).0);
        // Expired but within the leeway (30 s) it still passes, as `jsonwebtoken` decides;
        // past it, it does not.
        let (_, within) = p.already_verified("h.c.s3", &keys);
        p.remember(within, now - 10, &keys);
        assert!(p.already_verified("h.c.s3", &keys).0);
        let (_, past) = p.already_verified("h.c.s4", &keys);
        p.remember(past, now - 31, &keys);
        assert!(!p.already_verified("h.c.s4", &keys).0);
    }
}
