//! JWT verification against a route's policy: signature with a published key, the algorithm
//! allowlist, `exp`/`nbf` with leeway, `iss` and `aud`. The checks themselves are
//! `jsonwebtoken`'s; this module prepares them once per runtime and names each failure with a
//! [`TokenReason`].
//!
//! Two things are decided before `jsonwebtoken` sees a token: its `alg` must be on the route's
//! list (so `alg: none`, and an HMAC token "signed" with the public key, are refused as a bad
//! signature without looking for a key), and a key is used only for algorithms of its own
//! kind — an RSA key never becomes an HMAC secret.

use base64::Engine;
use jsonwebtoken::{Algorithm, DecodingKey, Validation};
use portcullis_config::{JwtAlgorithm, JwtValidation};

use super::jwks::KeySet;
use crate::outcome::TokenReason;

/// At most this many keys are tried for a token without `kid`.
const MAX_KEYS_TRIED: usize = 8;

/// A route's token checks, prepared once per runtime.
pub(crate) struct JwtPolicy {
    /// One validation per allowed algorithm (`jsonwebtoken` wants every algorithm of a
    /// validation to match the key's kind).
    validations: Vec<(Algorithm, Validation)>,
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
        Self { validations }
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
    /// it. `Err(UnknownKey)` when none could.
    pub(crate) fn verify(
        &self,
        token: &str,
        head: &TokenHead,
        keys: &KeySet,
    ) -> Result<(), TokenReason> {
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
                Ok(()) => return Ok(()),
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

fn check(token: &str, key: &DecodingKey, validation: &Validation) -> Result<(), TokenReason> {
    use jsonwebtoken::errors::ErrorKind;
    match jsonwebtoken::decode::<serde::de::IgnoredAny>(token, key, validation) {
        Ok(_) => Ok(()),
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
}
