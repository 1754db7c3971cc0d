//! Schema errors (unknown keys, wrong types) with their locations, and every one of them that
//! serde's first-error-only deserialisation would hide.
//!
//! serde stops at the first schema error of a file. To report the others too, each top-level
//! section (`[server]`, every `[[routes]]` element with its sub-tables, …) is cut out of the
//! source at the header positions that `toml_edit` reports — never by looking for `[` at the
//! start of a line, which a multi-line array also has — and deserialised on its own.

use std::collections::BTreeMap;

use serde::de::DeserializeOwned;
use toml_edit::{Item, Table};

use crate::error::Reporter;
use crate::raw::{
    RawAdmin, RawAudit, RawEgressPool, RawMetrics, RawRoute, RawSecrets, RawServer, RawTcpRoute,
    RawTenant, RawTunnel, RawTunnelListener,
};

/// Records a toml/serde error found in `source[offset..]`, naming the key for type errors.
pub(super) fn report_toml_error(
    reporter: &mut Reporter<'_>,
    source: &str,
    offset: usize,
    e: &toml::de::Error,
) {
    let span = e
        .span()
        .map_or(offset..offset, |s| s.start + offset..s.end + offset);
    let message = clean_toml_message(e.message());
    let message = match key_before(source, span.start) {
        Some(key) if !message.contains('`') => format!("{key}: {message}"),
        _ => message,
    };
    reporter.error(span, message);
}

/// Re-checks each top-level section on its own, so that one bad section does not hide the
/// errors of the others. Returns each error with the byte offset of the section it was found
/// in. Only used after the whole-file parse failed; sections written inline
/// (`routes = [{…}]`) are not split.
pub(super) fn schema_errors_by_section(source: &str) -> Vec<(usize, toml::de::Error)> {
    fn check<T: DeserializeOwned>(text: &str) -> Option<toml::de::Error> {
        toml::from_str::<BTreeMap<String, T>>(text).err()
    }
    // A syntax error makes any split meaningless: the first error is all there is.
    let Ok(document) = toml_edit::Document::parse(source) else {
        return Vec::new();
    };
    let mut headers = Vec::new();
    collect_headers(document.as_table(), "", &mut headers);
    headers.sort_by_key(|(start, _)| *start);

    let mut out = Vec::new();
    for (i, (start, name)) in headers.iter().enumerate() {
        if name.contains('.') {
            continue; // a sub-table: checked with its parent
        }
        let end = headers[i + 1..]
            .iter()
            .find(|(_, next)| !next.starts_with(&format!("{name}.")))
            .map_or(source.len(), |(next_start, _)| *next_start);
        let Some(text) = source.get(*start..end) else {
            continue;
        };
        let error = match name.as_str() {
            "server" => check::<RawServer>(text),
            "secrets" => check::<RawSecrets>(text),
            "admin" => check::<RawAdmin>(text),
            "audit" => check::<RawAudit>(text),
            "metrics" => check::<RawMetrics>(text),
            "allowlists" => check::<BTreeMap<String, Vec<String>>>(text),
            "egress_pools" => check::<Vec<RawEgressPool>>(text),
            "tenants" => check::<Vec<RawTenant>>(text),
            "routes" => check::<Vec<RawRoute>>(text),
            "tunnel" => check::<RawTunnelListener>(text),
            "tunnels" => check::<Vec<RawTunnel>>(text),
            "tcp_routes" => check::<Vec<RawTcpRoute>>(text),
            // Unknown sections are reported by the whole-file parse.
            _ => None,
        };
        if let Some(e) = error {
            out.push((*start, e));
        }
    }
    out
}

/// `(byte offset, dotted name)` of every `[table]` and `[[array]]` header under `table`.
fn collect_headers(table: &Table, prefix: &str, out: &mut Vec<(usize, String)>) {
    for (key, item) in table.iter() {
        let name = if prefix.is_empty() {
            key.to_owned()
        } else {
            format!("{prefix}.{key}")
        };
        match item {
            Item::Table(sub) => {
                if let (false, Some(span)) = (sub.is_implicit(), sub.span()) {
                    out.push((span.start, name.clone()));
                }
                collect_headers(sub, &name, out);
            }
            Item::ArrayOfTables(array) => {
                for element in array.iter() {
                    if let Some(span) = element.span() {
                        out.push((span.start, name.clone()));
                    }
                    collect_headers(element, &name, out);
                }
            }
            Item::None | Item::Value(_) => {}
        }
    }
}

/// The key whose value starts at `offset` (`retries` in `retries = "three"`), to name it in
/// type errors, which toml reports without the key.
fn key_before(source: &str, offset: usize) -> Option<&str> {
    let line_start = source.get(..offset)?.rfind('\n').map_or(0, |i| i + 1);
    let before = source.get(line_start..offset)?;
    let eq = before.rfind('=')?;
    let key = before[..eq]
        .trim_end()
        .rsplit(|c: char| c.is_whitespace() || c == '{' || c == ',')
        .next()?
        .trim_matches('"');
    (!key.is_empty()).then_some(key)
}

/// toml's messages end with a newline and sometimes repeat the key; keep one line.
fn clean_toml_message(message: &str) -> String {
    message.trim().replace('\n', " ")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn headers_come_from_the_parser_not_from_line_starts() {
        let source = "[server]\nlisten = [\n  [\"not\", \"a\", \"header\"],\n]\n\n[[routes]]\nname = \"a\"\n[routes.health_check]\npath = \"/h\"\n\n[[routes]]\nname = \"b\"\n";
        let document = toml_edit::Document::parse(source).expect("valid TOML");
        let mut headers = Vec::new();
        collect_headers(document.as_table(), "", &mut headers);
        headers.sort_by_key(|(start, _)| *start);
        let names: Vec<&str> = headers.iter().map(|(_, n)| n.as_str()).collect();
        assert_eq!(
            names,
            ["server", "routes", "routes.health_check", "routes"],
            "{headers:?}"
        );
        assert_eq!(&source[headers[1].0..headers[1].0 + 10], "[[routes]]");
    }

    #[test]
    fn a_bracket_at_a_line_start_inside_a_string_does_not_split_a_section() {
        // A line-based splitter takes the `[routes]` line of the multi-line string for a header,
        // cuts the first route there and reports a bogus syntax error instead of `bogus`.
        let source = "[[routes]]\nname = \"a\"\npath = \"\"\"\n[routes]\n\"\"\"\nbogus = 1\n\n[[routes]]\nname = \"b\"\nother = 2\n";
        let errors: Vec<String> = schema_errors_by_section(source)
            .iter()
            .map(|(_, e)| e.message().to_owned())
            .collect();
        assert_eq!(errors.len(), 2, "{errors:?}");
        assert!(errors[0].contains("bogus"), "{errors:?}");
        assert!(errors[1].contains("other"), "{errors:?}");
    }
}
