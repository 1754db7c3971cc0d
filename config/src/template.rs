//! Header value templates: literal text with `${secret:NAME}` and `${env:NAME}` references.
//!
//! The config holds only the *names*; the gateway resolves them against its secret store, so
//! a compiled snapshot never contains a secret value.

use std::fmt;

/// A parsed header value: literal pieces and references, in order.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Template {
    parts: Vec<TemplatePart>,
}

/// One piece of a [`Template`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum TemplatePart {
    /// Text copied as is.
    Literal(String),
    /// A tenant secret, looked up in the secret store by name.
    Secret(String),
    /// A variable of the gateway's environment.
    Env(String),
}

/// Why a template did not parse.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum TemplateError {
    /// `${` without a closing `}`.
    #[error("unterminated reference in '{0}': '${{' has no closing '}}'")]
    Unterminated(String),
    /// `${kind:name}` with an unknown kind.
    #[error("unknown reference '${{{0}}}': expected ${{secret:NAME}} or ${{env:NAME}}")]
    UnknownKind(String),
    /// A reference name with characters outside `[A-Za-z0-9_.-]`.
    #[error("invalid name in reference '${{{0}}}': use letters, digits, '_', '-' and '.'")]
    InvalidName(String),
}

// === impl Template ===

impl Template {
    /// Parses a header value template.
    pub fn parse(input: &str) -> Result<Self, TemplateError> {
        let mut parts = Vec::new();
        let mut rest = input;
        while let Some(start) = rest.find("${") {
            if start > 0 {
                parts.push(TemplatePart::Literal(rest[..start].to_owned()));
            }
            let after = &rest[start + 2..];
            let end = after
                .find('}')
                .ok_or_else(|| TemplateError::Unterminated(input.to_owned()))?;
            let reference = &after[..end];
            let (kind, name) = reference
                .split_once(':')
                .ok_or_else(|| TemplateError::UnknownKind(reference.to_owned()))?;
            if name.is_empty()
                || !name
                    .bytes()
                    .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'_' | b'-' | b'.'))
            {
                return Err(TemplateError::InvalidName(reference.to_owned()));
            }
            parts.push(match kind {
                "secret" => TemplatePart::Secret(name.to_owned()),
                "env" => TemplatePart::Env(name.to_owned()),
                _ => return Err(TemplateError::UnknownKind(reference.to_owned())),
            });
            rest = &after[end + 1..];
        }
        if !rest.is_empty() {
            parts.push(TemplatePart::Literal(rest.to_owned()));
        }
        Ok(Self { parts })
    }

    /// The pieces, in order.
    pub fn parts(&self) -> &[TemplatePart] {
        &self.parts
    }

    /// Names of the secrets this template references.
    pub fn secret_names(&self) -> impl Iterator<Item = &str> {
        self.parts.iter().filter_map(|p| match p {
            TemplatePart::Secret(name) => Some(name.as_str()),
            _ => None,
        })
    }

    /// True when the value is literal text only.
    pub fn is_literal(&self) -> bool {
        self.parts
            .iter()
            .all(|p| matches!(p, TemplatePart::Literal(_)))
    }
}

/// Shows the template with references, never values (there are none here to show).
impl fmt::Display for Template {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for part in &self.parts {
            match part {
                TemplatePart::Literal(text) => f.write_str(text)?,
                TemplatePart::Secret(name) => write!(f, "${{secret:{name}}}")?,
                TemplatePart::Env(name) => write!(f, "${{env:{name}}}")?,
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_literals_and_references() {
        let t = Template::parse("Token token=${secret:pagerduty} v=${env:VERSION}!").unwrap();
        assert_eq!(
            t.parts(),
            &[
                TemplatePart::Literal("Token token=".into()),
                TemplatePart::Secret("pagerduty".into()),
                TemplatePart::Literal(" v=".into()),
                TemplatePart::Env("VERSION".into()),
                TemplatePart::Literal("!".into()),
            ]
        );
        assert_eq!(t.secret_names().collect::<Vec<_>>(), ["pagerduty"]);
        assert_eq!(
            t.to_string(),
            "Token token=${secret:pagerduty} v=${env:VERSION}!"
        );
    }

    #[test]
    fn rejects_bad_references() {
        assert_eq!(
            Template::parse("x ${secret:a").unwrap_err().to_string(),
            "unterminated reference in 'x ${secret:a': '${' has no closing '}'"
        );
        assert_eq!(
            Template::parse("${vault:a}").unwrap_err().to_string(),
            "unknown reference '${vault:a}': expected ${secret:NAME} or ${env:NAME}"
        );
        assert!(matches!(
            Template::parse("${secret:a b}"),
            Err(TemplateError::InvalidName(_))
        ));
        assert!(matches!(
            Template::parse("${secret:}"),
            Err(TemplateError::InvalidName(_))
        ));
    }

    #[test]
    fn literal_only() {
        let t = Template::parse("application/json").unwrap();
        assert!(t.is_literal());
        assert!(Template::parse("").unwrap().parts().is_empty());
    }
}
