use super::*;

#[test]
fn parses_proxy_urls() {
    let p = ProxyConfig::parse("http://proxy.corp:3128/").unwrap();
    assert_eq!((p.host.as_str(), p.port), ("proxy.corp", 3128));
    assert!(p.basic_auth.is_none());
    let p = ProxyConfig::parse("http://u%40x:pw@127.0.0.1:8080").unwrap();
    assert_eq!((p.host.as_str(), p.port), ("127.0.0.1", 8080));
    assert_eq!(p.basic_auth.unwrap().expose_secret(), "u@x:pw");
    let p = ProxyConfig::parse("http://[::1]:9").unwrap();
    assert_eq!((p.host.as_str(), p.port), ("::1", 9));
    assert_eq!(ProxyConfig::parse("http://p").unwrap().port, 80);
}

#[test]
fn invalid_proxy_urls_never_show_the_password() {
    let err = ProxyConfig::parse("socks5://user:hunter2@p:1")
        .unwrap_err()
        .to_string();
    assert!(!err.contains("hunter2"), "{err}");
    assert!(err.contains("only http://"), "{err}");
    let err = ProxyConfig::parse("http://user:hunter2@p:notaport")
        .unwrap_err()
        .to_string();
    assert!(!err.contains("hunter2"), "{err}");
    let debug = format!(
        "{:?}",
        ProxyConfig::parse("http://user:hunter2@p:1").unwrap()
    );
    assert!(!debug.contains("hunter2"), "{debug}");
}

#[test]
fn no_proxy_matches_names_suffixes_ips_and_cidrs() {
    let np = NoProxy::parse("example.com, .corp.internal,10.0.0.0/8, 192.168.1.7,gw:7443");
    assert!(np.matches("example.com"));
    assert!(np.matches("api.example.com"));
    assert!(np.matches("API.Example.COM."));
    assert!(!np.matches("badexample.com"));
    assert!(np.matches("x.corp.internal"));
    assert!(np.matches("corp.internal"));
    assert!(np.matches("10.1.2.3"));
    assert!(!np.matches("11.1.2.3"));
    assert!(np.matches("192.168.1.7"));
    assert!(np.matches("gw"));
    assert!(!np.matches("gateway.example.org"));
    assert!(NoProxy::parse("*").matches("anything"));
    assert!(!NoProxy::parse("").matches("anything"));
    assert!(NoProxy::parse("::1").matches("[::1]"));
}
