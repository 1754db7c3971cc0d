use super::*;

fn exact(s: &str) -> HostMatch {
    HostMatch::Exact(s.to_owned())
}

fn suffix(s: &str) -> HostMatch {
    HostMatch::Suffix(s.to_owned())
}

fn parse_err(s: &str) -> String {
    HostMatch::parse(s).unwrap_err().to_string()
}

#[test]
fn parses_the_three_forms() {
    assert_eq!(HostMatch::parse("*").unwrap(), HostMatch::Any);
    assert_eq!(HostMatch::parse("").unwrap(), HostMatch::Any);
    assert_eq!(
        HostMatch::parse("*.example.com").unwrap(),
        suffix("example.com")
    );
    assert_eq!(
        HostMatch::parse("API.Example.com").unwrap(),
        exact("api.example.com")
    );
    assert_eq!(
        HostMatch::parse("*.EU.example.com").unwrap(),
        suffix("eu.example.com")
    );
    assert_eq!(HostMatch::parse("localhost").unwrap(), exact("localhost"));
    assert_eq!(HostMatch::parse("10.0.0.1").unwrap(), exact("10.0.0.1"));
}

#[test]
fn trims_one_trailing_dot() {
    assert_eq!(
        HostMatch::parse("example.com.").unwrap(),
        exact("example.com")
    );
    assert_eq!(
        HostMatch::parse("*.example.com.").unwrap(),
        suffix("example.com")
    );
    assert_eq!(
        parse_err("example.com.."),
        "invalid host 'example.com..': empty label"
    );
}

#[test]
fn rejects_bad_hosts_naming_them() {
    assert_eq!(
        parse_err("example.com:8080"),
        "invalid host 'example.com:8080': ports are not allowed; a route matches every port"
    );
    assert_eq!(parse_err("a..b"), "invalid host 'a..b': empty label");
    assert_eq!(parse_err(".a.b"), "invalid host '.a.b': empty label");
    assert_eq!(parse_err("."), "invalid host '.': empty host name");
    assert_eq!(parse_err("*."), "invalid host '*.': empty host name");
    assert_eq!(
        parse_err("exa_mple.com"),
        "invalid host 'exa_mple.com': only letters, digits, '-' and '.' are allowed"
    );
    assert_eq!(
        parse_err("[::1]"),
        "invalid host '[::1]': ports are not allowed; a route matches every port"
    );
    assert_eq!(
        parse_err("exämple.com"),
        "invalid host 'exämple.com': only letters, digits, '-' and '.' are allowed"
    );
    for wild in [
        "a.*.com",
        "*example.com",
        "**.example.com",
        "*.*.example.com",
        "example.*",
        "**",
    ] {
        assert_eq!(
            parse_err(wild),
            format!("invalid host '{wild}': '*' is only allowed as a leading '*.' label")
        );
    }
    let long_label = "a".repeat(64);
    assert!(parse_err(&long_label).ends_with("label longer than 63 characters"));
    let long_host = ["a".repeat(63).as_str(); 5].join(".");
    assert!(parse_err(&long_host).ends_with("longer than 253 characters"));
}

#[test]
fn display_round_trips() {
    for s in ["*", "api.example.com", "*.example.com", "*.eu.example.com"] {
        let parsed = HostMatch::parse(s).unwrap();
        assert_eq!(parsed.to_string(), s);
        assert_eq!(HostMatch::parse(&parsed.to_string()).unwrap(), parsed);
    }
}

#[test]
fn suffix_matches_strictly_below() {
    let m = suffix("example.com");
    assert!(m.matches("a.example.com"));
    assert!(m.matches("a.b.example.com"));
    assert!(!m.matches("example.com"));
    assert!(!m.matches("badexample.com"));
    assert!(!m.matches("example.com.evil"));
}

#[test]
fn request_hosts_ignore_case_port_and_trailing_dot() {
    let m = exact("api.example.com");
    for host in [
        "api.example.com",
        "API.Example.COM",
        "api.example.com:8443",
        "api.example.com.",
        "Api.Example.Com.:80",
    ] {
        assert!(m.matches(host), "{host}");
    }
    assert!(!m.matches("api.example.co"));
    assert!(!m.matches("xapi.example.com"));
    assert!(suffix("example.com").matches("A.EXAMPLE.COM:1"));
}

#[test]
fn strips_ports_from_ipv6_literals() {
    assert_eq!(strip_port_and_dot("[::1]:8080"), "[::1]");
    assert_eq!(strip_port_and_dot("[::1]"), "[::1]");
    assert_eq!(strip_port_and_dot("[::1"), "[::1");
    assert_eq!(strip_port_and_dot("host:80"), "host");
    assert_eq!(strip_port_and_dot("host.:80"), "host");
    assert_eq!(strip_port_and_dot(""), "");
}

#[test]
fn hosts_too_long_for_the_buffer_only_match_any() {
    let mut buf = [0; HOST_BUF_LEN];
    let fits = "a".repeat(HOST_BUF_LEN);
    assert_eq!(lowercase_host(&fits, &mut buf), Some(fits.as_str()));
    let long = format!("{}.example.com", "a".repeat(HOST_BUF_LEN));
    assert_eq!(lowercase_host(&long, &mut buf), None);
    assert!(!suffix("example.com").matches(&long));
    assert!(HostMatch::Any.matches(&long));
}

#[test]
fn check_rejects_what_parse_would_not_produce() {
    assert!(exact("api.example.com").check().is_ok());
    assert!(HostMatch::Any.check().is_ok());
    assert_eq!(
        exact("API.example.com").check().unwrap_err().to_string(),
        "invalid host 'API.example.com': must be lowercase"
    );
    assert_eq!(
        suffix("").check().unwrap_err().to_string(),
        "invalid host '*.': empty host name"
    );
    assert!(exact("example.com.").check().is_err());
}
