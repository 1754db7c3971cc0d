use std::net::{Ipv4Addr, Ipv6Addr};

use proptest::prelude::*;

use super::*;

fn ip(s: &str) -> IpAddr {
    s.parse().unwrap()
}

fn set(entries: &[&str]) -> CidrSet {
    CidrSet::parse(entries).unwrap()
}

fn err(entries: &[&str]) -> String {
    CidrSet::parse(entries).unwrap_err().to_string()
}

#[test]
fn parses_v4_v6_and_bare_addresses() {
    let s = set(&[
        "10.0.0.0/8",
        "2001:db8::/32",
        "203.0.113.7",
        "2001:db8:ffff::1",
    ]);
    let allow: Vec<String> = s.allow().iter().map(ToString::to_string).collect();
    assert_eq!(
        allow,
        [
            "10.0.0.0/8",
            "2001:db8::/32",
            "203.0.113.7/32",
            "2001:db8:ffff::1/128"
        ]
    );
    assert!(s.except().is_empty());
    assert!(s.contains(ip("10.255.0.1")));
    assert!(s.contains(ip("2001:db8:1::1")));
    assert!(s.contains(ip("203.0.113.7")));
    assert!(!s.contains(ip("203.0.113.8")));
    assert!(!s.contains(ip("11.0.0.0")));
    assert!(!s.contains(ip("2001:db9::1")));
}

#[test]
fn trims_whitespace() {
    let s = set(&["  10.0.0.0/8 ", " ! 10.1.0.0/16"]);
    assert_eq!(s.allow().len(), 1);
    assert_eq!(s.except().len(), 1);
}

#[test]
fn exceptions_carve_holes() {
    let s = set(&["10.0.0.0/8", "!10.1.0.0/16", "!10.2.3.4"]);
    assert!(s.contains(ip("10.0.0.1")));
    assert!(!s.contains(ip("10.1.2.3")));
    assert!(!s.contains(ip("10.2.3.4")));
    assert!(s.contains(ip("10.2.3.5")));
    assert_eq!(
        s.except(),
        [
            "10.1.0.0/16".parse::<IpNet>().unwrap(),
            "10.2.3.4/32".parse().unwrap()
        ]
    );
}

#[test]
fn exception_may_precede_its_allow_entry() {
    let s = set(&["!10.1.0.0/16", "10.0.0.0/8"]);
    assert!(!s.contains(ip("10.1.0.1")));
    assert!(s.contains(ip("10.0.0.1")));
}

#[test]
fn exception_equal_to_allow_entry_empties_it() {
    let s = set(&["10.0.0.0/8", "!10.0.0.0/8"]);
    assert!(!s.contains(ip("10.0.0.1")));
    assert!(!s.is_empty(), "is_empty only looks at allow entries");
}

#[test]
fn v6_exceptions() {
    let s = set(&["2001:db8::/32", "!2001:db8:bad::/48"]);
    assert!(s.contains(ip("2001:db8:1::1")));
    assert!(!s.contains(ip("2001:db8:bad::1")));
}

#[test]
fn v4_mapped_probe_is_treated_as_v4() {
    let s = set(&["10.0.0.0/8", "!10.1.0.0/16"]);
    assert!(s.contains(ip("::ffff:10.0.0.1")));
    assert!(!s.contains(ip("::ffff:10.1.0.1")));
    assert!(!s.contains(ip("::ffff:11.0.0.1")));
    // IPv4-compatible addresses are a different thing (and deprecated): not unmapped.
    assert!(!s.contains(ip("::10.0.0.1")));
}

#[test]
fn v4_mapped_entry_is_stored_as_v4() {
    let s = set(&["::ffff:10.0.0.0/104", "::ffff:192.0.2.1"]);
    assert_eq!(
        s.allow(),
        [
            "10.0.0.0/8".parse::<IpNet>().unwrap(),
            "192.0.2.1/32".parse().unwrap()
        ]
    );
    assert!(s.contains(ip("10.1.2.3")));
    assert!(s.contains(ip("::ffff:10.1.2.3")));
    // A mapped exception narrows a v4 entry.
    let s = set(&["10.0.0.0/8", "!::ffff:10.1.0.0/112"]);
    assert!(!s.contains(ip("10.1.0.5")));
}

#[test]
fn v6_prefix_shorter_than_96_is_not_unmapped() {
    let s = set(&["::/64"]);
    assert_eq!(s.allow(), ["::/64".parse::<IpNet>().unwrap()]);
    // ::/64 contains ::ffff:0:0/96 in IPv6 terms, but probes are unmapped first.
    assert!(!s.contains(ip("::ffff:10.0.0.1")));
    assert!(s.contains(ip("::1")));
}

#[test]
fn any_contains_everything() {
    let s = CidrSet::any();
    for a in [
        "0.0.0.0",
        "255.255.255.255",
        "::",
        "ffff:ffff:ffff:ffff:ffff:ffff:ffff:ffff",
        "::ffff:1.2.3.4",
    ] {
        assert!(s.contains(ip(a)), "{a}");
    }
    assert!(!s.is_empty());
    assert_eq!(s, set(&["0.0.0.0/0", "::/0"]));
}

#[test]
fn empty_set_contains_nothing() {
    let s = CidrSet::parse(Vec::<String>::new()).unwrap();
    assert!(s.is_empty());
    assert_eq!(s, CidrSet::default());
    assert!(!s.contains(ip("1.2.3.4")));
    assert!(!s.contains(ip("::1")));
}

#[test]
fn accepts_owned_strings() {
    let entries = vec!["10.0.0.0/8".to_owned()];
    assert!(CidrSet::parse(&entries).unwrap().contains(ip("10.0.0.1")));
}

#[test]
fn host_bits_set_is_an_error_suggesting_the_network() {
    assert_eq!(
        CidrSet::parse(["10.0.0.1/8"]).unwrap_err(),
        CidrError::HostBitsSet {
            entry: "10.0.0.1/8".into(),
            network: "10.0.0.0/8".into()
        }
    );
    assert_eq!(
        err(&["10.0.0.1/8"]),
        "invalid CIDR '10.0.0.1/8': host bits are set; did you mean '10.0.0.0/8'?"
    );
    assert_eq!(
        err(&["2001:db8::1/32"]),
        "invalid CIDR '2001:db8::1/32': host bits are set; did you mean '2001:db8::/32'?"
    );
    assert_eq!(
        err(&["10.0.0.0/8", "!10.1.0.1/16"]),
        "invalid CIDR '!10.1.0.1/16': host bits are set; did you mean '!10.1.0.0/16'?"
    );
}

#[test]
fn prefix_too_long_is_an_error() {
    assert_eq!(
        err(&["10.0.0.0/33"]),
        "invalid CIDR '10.0.0.0/33': prefix length 33 is longer than 32"
    );
    assert_eq!(
        err(&["::/129"]),
        "invalid CIDR '::/129': prefix length 129 is longer than 128"
    );
}

#[test]
fn garbage_is_an_error() {
    assert_eq!(
        err(&["10.0.0.0/8", "example.com"]),
        "invalid CIDR 'example.com': expected an IP address or a network like 10.0.0.0/8"
    );
    assert_eq!(
        err(&["10.0.0/8"]),
        "invalid CIDR '10.0.0/8': '10.0.0' is not an IP address"
    );
    assert_eq!(
        err(&["10.0.0.0/x"]),
        "invalid CIDR '10.0.0.0/x': 'x' is not a prefix length between 0 and 32"
    );
    assert_eq!(
        err(&["10.0.0.0/"]),
        "invalid CIDR '10.0.0.0/': '' is not a prefix length between 0 and 32"
    );
    assert_eq!(err(&[""]), "invalid CIDR '': empty entry");
    assert_eq!(err(&["!"]), "invalid CIDR '!': empty entry");
    assert!(matches!(
        CidrSet::parse(["256.0.0.0"]).unwrap_err(),
        CidrError::Invalid { entry, .. } if entry == "256.0.0.0"
    ));
}

#[test]
fn exception_outside_allow_is_an_error() {
    assert_eq!(
        CidrSet::parse(["10.0.0.0/8", "!192.168.0.0/16"]).unwrap_err(),
        CidrError::ExceptionOutsideAllow {
            entry: "!192.168.0.0/16".into()
        }
    );
    assert_eq!(
        err(&["10.0.0.0/8", "!192.168.0.0/16"]),
        "CIDR exception '!192.168.0.0/16' is not inside any allowed network"
    );
    // Partly overlapping is still outside: the exception must narrow one entry.
    assert!(CidrSet::parse(["10.0.0.0/9", "!10.0.0.0/8"]).is_err());
    // A v6 exception cannot narrow a v4 entry.
    assert!(CidrSet::parse(["0.0.0.0/0", "!2001:db8::/32"]).is_err());
    // With no allow entries at all.
    assert!(CidrSet::parse(["!10.0.0.0/8"]).is_err());
}

// --- properties ---

/// A network in u128 terms: `(is_v6, first, last)`.
fn range(net: &IpNet) -> (bool, u128, u128) {
    match net {
        IpNet::V4(n) => (
            false,
            u128::from(u32::from(n.network())),
            u128::from(u32::from(n.broadcast())),
        ),
        IpNet::V6(n) => (true, u128::from(n.network()), u128::from(n.broadcast())),
    }
}

/// The reference: unmap the probe, then compare integer ranges.
fn naive_contains(allow: &[IpNet], except: &[IpNet], ip: IpAddr) -> bool {
    let (v6, x) = match ip {
        IpAddr::V4(a) => (false, u128::from(u32::from(a))),
        IpAddr::V6(a) => match a.to_ipv4_mapped() {
            Some(a) => (false, u128::from(u32::from(a))),
            None => (true, u128::from(a)),
        },
    };
    let inside = |net: &IpNet| {
        let (nv6, lo, hi) = range(net);
        nv6 == v6 && lo <= x && x <= hi
    };
    allow.iter().any(inside) && !except.iter().any(inside)
}

/// Small address spaces so random probes often land inside random networks.
fn arb_net() -> impl Strategy<Value = IpNet> {
    prop_oneof![
        (0u8..4, any::<u32>(), 0u8..=32).prop_map(|(hi, rest, len)| {
            let addr = Ipv4Addr::from(u32::from(hi) << 30 | rest >> 2);
            IpNet::V4(Ipv4Net::new(addr, len).unwrap().trunc())
        }),
        (0u16..4, any::<u128>(), 0u8..=128).prop_map(|(hi, rest, len)| {
            let addr = Ipv6Addr::from(u128::from(hi) << 126 | rest >> 2);
            IpNet::V6(Ipv6Net::new(addr, len).unwrap().trunc())
        }),
    ]
}

fn arb_ip() -> impl Strategy<Value = IpAddr> {
    prop_oneof![
        (0u8..4, any::<u32>())
            .prop_map(|(hi, rest)| IpAddr::from(Ipv4Addr::from(u32::from(hi) << 30 | rest >> 2))),
        (0u16..4, any::<u128>())
            .prop_map(|(hi, rest)| IpAddr::from(Ipv6Addr::from(u128::from(hi) << 126 | rest >> 2))),
        // IPv4-mapped probes.
        (0u8..4, any::<u32>()).prop_map(|(hi, rest)| IpAddr::from(
            Ipv4Addr::from(u32::from(hi) << 30 | rest >> 2).to_ipv6_mapped()
        )),
    ]
}

/// An exception inside `net`: a longer prefix at a random offset.
fn sub_net(net: IpNet, extra: u8, offset: u128) -> IpNet {
    match net {
        IpNet::V4(n) => {
            let len = (n.prefix_len() + extra).min(32);
            let span = u32::MAX.checked_shr(u32::from(n.prefix_len())).unwrap_or(0);
            let addr = u32::from(n.network()) | (offset as u32 & span);
            IpNet::V4(Ipv4Net::new(Ipv4Addr::from(addr), len).unwrap().trunc())
        }
        IpNet::V6(n) => {
            let len = (n.prefix_len() + extra).min(128);
            let span = u128::MAX
                .checked_shr(u32::from(n.prefix_len()))
                .unwrap_or(0);
            let addr = u128::from(n.network()) | (offset & span);
            IpNet::V6(Ipv6Net::new(Ipv6Addr::from(addr), len).unwrap().trunc())
        }
    }
}

/// Probes at the edges of every network, where off-by-one errors live.
fn edges(nets: &[IpNet]) -> Vec<IpAddr> {
    let mut out = Vec::new();
    for net in nets {
        let (v6, lo, hi) = range(net);
        for x in [lo.wrapping_sub(1), lo, hi, hi.wrapping_add(1)] {
            out.push(if v6 {
                IpAddr::from(Ipv6Addr::from(x))
            } else {
                IpAddr::from(Ipv4Addr::from(x as u32))
            });
        }
    }
    out
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(256))]

    #[test]
    fn contains_agrees_with_naive_reference(
        allow in prop::collection::vec(arb_net(), 0..5),
        subs in prop::collection::vec((any::<prop::sample::Index>(), 0u8..12, any::<u128>()), 0..4),
        probes in prop::collection::vec(arb_ip(), 1..32),
    ) {
        let except: Vec<IpNet> = if allow.is_empty() {
            Vec::new()
        } else {
            subs.iter()
                .map(|(i, extra, offset)| sub_net(*i.get(&allow), *extra, *offset))
                .collect()
        };
        let entries: Vec<String> = allow
            .iter()
            .map(ToString::to_string)
            .chain(except.iter().map(|n| format!("!{n}")))
            .collect();
        let set = CidrSet::parse(&entries).unwrap();
        prop_assert_eq!(set.is_empty(), allow.is_empty());
        let all_nets: Vec<IpNet> = allow.iter().chain(&except).copied().collect();
        for probe in probes.into_iter().chain(edges(&all_nets)) {
            prop_assert_eq!(
                set.contains(probe),
                naive_contains(&allow, &except, probe),
                "probe {} in {:?}", probe, entries
            );
        }
    }

    #[test]
    fn parse_never_panics(s in "[!0-9a-f:./ ]{0,24}") {
        let _ = CidrSet::parse([&s]);
    }
}
