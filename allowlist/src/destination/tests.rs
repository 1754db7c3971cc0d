use super::*;

fn ip(s: &str) -> IpAddr {
    s.parse().unwrap()
}

fn class(s: &str) -> Option<DeniedClass> {
    classify(ip(s))
}

/// One or more example addresses per class, each at a range edge where one exists.
const EXAMPLES: &[(&str, DeniedClass)] = &[
    ("127.0.0.1", DeniedClass::Loopback),
    ("127.255.255.255", DeniedClass::Loopback),
    ("::1", DeniedClass::Loopback),
    ("10.0.0.0", DeniedClass::Private),
    ("10.255.255.255", DeniedClass::Private),
    ("172.16.0.0", DeniedClass::Private),
    ("172.31.255.255", DeniedClass::Private),
    ("192.168.1.1", DeniedClass::Private),
    ("169.254.0.1", DeniedClass::LinkLocal),
    ("169.254.169.253", DeniedClass::LinkLocal),
    ("fe80::1", DeniedClass::LinkLocal),
    ("febf:ffff::1", DeniedClass::LinkLocal),
    ("fc00::1", DeniedClass::UniqueLocal),
    ("fdff:ffff::1", DeniedClass::UniqueLocal),
    ("fd00:ec2::253", DeniedClass::UniqueLocal),
    ("169.254.169.254", DeniedClass::CloudMetadata),
    ("169.254.170.2", DeniedClass::CloudMetadata),
    ("169.254.170.23", DeniedClass::CloudMetadata),
    ("100.100.100.200", DeniedClass::CloudMetadata),
    ("168.63.129.16", DeniedClass::CloudMetadata),
    ("fd00:ec2::254", DeniedClass::CloudMetadata),
    ("fd00:ec2::23", DeniedClass::CloudMetadata),
    ("100.64.0.0", DeniedClass::SharedAddressSpace),
    ("100.127.255.255", DeniedClass::SharedAddressSpace),
    ("0.0.0.0", DeniedClass::Unspecified),
    ("0.255.255.255", DeniedClass::Unspecified),
    ("::", DeniedClass::Unspecified),
    ("224.0.0.1", DeniedClass::Multicast),
    ("239.255.255.255", DeniedClass::Multicast),
    ("ff02::1", DeniedClass::Multicast),
    ("255.255.255.255", DeniedClass::Broadcast),
    ("240.0.0.1", DeniedClass::Reserved),
    ("255.255.255.254", DeniedClass::Reserved),
    ("192.0.0.8", DeniedClass::Reserved),
    ("198.18.0.1", DeniedClass::Reserved),
    ("198.19.255.255", DeniedClass::Reserved),
    ("192.88.99.1", DeniedClass::Reserved),
    ("100::1", DeniedClass::Reserved),
    ("2001::1", DeniedClass::Reserved),
    ("2001:2::1", DeniedClass::Reserved),
    ("64:ff9b:1::1", DeniedClass::Reserved),
    ("fec0::1", DeniedClass::Reserved),
    ("4000::1", DeniedClass::Reserved),
    ("192.0.2.1", DeniedClass::Documentation),
    ("198.51.100.1", DeniedClass::Documentation),
    ("203.0.113.255", DeniedClass::Documentation),
    ("2001:db8::1", DeniedClass::Documentation),
    ("3fff::1", DeniedClass::Documentation),
    ("3fff:fff::1", DeniedClass::Documentation),
];

#[test]
fn every_class_has_examples() {
    for class in DeniedClass::ALL {
        assert!(
            EXAMPLES.iter().any(|(_, c)| *c == class),
            "no example for {class}"
        );
    }
}

#[test]
fn classifies_examples() {
    for (addr, expected) in EXAMPLES {
        assert_eq!(class(addr), Some(*expected), "{addr}");
    }
}

#[test]
fn public_addresses_are_allowed() {
    for addr in [
        "1.1.1.1",
        "8.8.8.8",
        "9.255.255.255",
        "11.0.0.0",
        "100.63.255.255",
        "100.128.0.0",
        "126.255.255.255",
        "128.0.0.0",
        "169.253.255.255",
        "169.255.0.0",
        "172.15.255.255",
        "172.32.0.0",
        "192.0.1.0",
        "192.0.3.0",
        "192.167.255.255",
        "192.169.0.0",
        "198.17.255.255",
        "198.20.0.0",
        "203.0.112.255",
        "223.255.255.255",
        "2606:4700:4700::1111",
        "2001:4860:4860::8888",
        "2001:200::1",
        "3ffe::1",
        "3fff:1000::1",
        "::ffff:8.8.8.8",
        "64:ff9b::808:808",
        "2002:808:808::1",
    ] {
        assert_eq!(class(addr), None, "{addr}");
    }
}

#[test]
fn embedded_v4_is_classified_as_v4() {
    // IPv4-mapped.
    assert_eq!(class("::ffff:127.0.0.1"), Some(DeniedClass::Loopback));
    assert_eq!(class("::ffff:10.0.0.1"), Some(DeniedClass::Private));
    assert_eq!(
        class("::ffff:169.254.169.254"),
        Some(DeniedClass::CloudMetadata)
    );
    assert_eq!(class("::ffff:0.0.0.0"), Some(DeniedClass::Unspecified));
    // IPv4-compatible.
    assert_eq!(class("::127.0.0.1"), Some(DeniedClass::Loopback));
    assert_eq!(class("::192.168.0.1"), Some(DeniedClass::Private));
    assert_eq!(class("::0.0.0.2"), Some(DeniedClass::Unspecified));
    // NAT64.
    assert_eq!(class("64:ff9b::7f00:1"), Some(DeniedClass::Loopback));
    assert_eq!(
        class("64:ff9b::a9fe:a9fe"),
        Some(DeniedClass::CloudMetadata)
    );
    assert_eq!(class("64:ff9b::10.0.0.1"), Some(DeniedClass::Private));
    // 6to4.
    assert_eq!(class("2002:7f00:1::"), Some(DeniedClass::Loopback));
    assert_eq!(class("2002:a00:1::1"), Some(DeniedClass::Private));
    assert_eq!(class("2002:a9fe:a9fe::"), Some(DeniedClass::CloudMetadata));
}

#[test]
fn metadata_takes_precedence_over_its_range() {
    // 169.254.169.254 is link-local and 100.100.100.200 is shared address space, but the
    // specific class is what the log must say.
    assert_eq!(class("169.254.169.254"), Some(DeniedClass::CloudMetadata));
    assert_eq!(class("169.254.169.255"), Some(DeniedClass::LinkLocal));
    assert_eq!(class("100.100.100.200"), Some(DeniedClass::CloudMetadata));
    assert_eq!(
        class("100.100.100.201"),
        Some(DeniedClass::SharedAddressSpace)
    );
    assert_eq!(class("fd00:ec2::254"), Some(DeniedClass::CloudMetadata));
}

#[test]
fn class_names_are_snake_case_and_unique() {
    let names: Vec<&str> = DeniedClass::ALL.iter().map(DeniedClass::as_str).collect();
    for name in &names {
        assert!(
            name.bytes().all(|b| b.is_ascii_lowercase() || b == b'_'),
            "{name}"
        );
        assert_eq!(names.iter().filter(|n| *n == name).count(), 1, "{name}");
    }
    assert_eq!(DeniedClass::CloudMetadata.to_string(), "cloud_metadata");
    assert_eq!(
        DeniedClass::SharedAddressSpace.as_str(),
        "shared_address_space"
    );
}

#[test]
fn default_guard_denies_every_class_and_allows_public() {
    let guard = DestinationGuard::default();
    for (addr, expected) in EXAMPLES {
        let denied = guard.check(ip(addr)).unwrap_err();
        assert_eq!(denied.class, *expected, "{addr}");
        assert_eq!(denied.ip, ip(addr));
    }
    assert_eq!(guard.check(ip("8.8.8.8")), Ok(()));
    assert_eq!(guard.check(ip("2606:4700::1")), Ok(()));
}

#[test]
fn denied_message_names_address_and_class() {
    let guard = DestinationGuard::default();
    assert_eq!(
        guard.check(ip("127.0.0.1")).unwrap_err().to_string(),
        "destination 127.0.0.1 is a loopback address and the route does not allow it"
    );
    assert_eq!(
        guard.check(ip("0.0.0.0")).unwrap_err().to_string(),
        "destination 0.0.0.0 is an unspecified address and the route does not allow it"
    );
    assert_eq!(
        guard.check(ip("fd00:ec2::254")).unwrap_err().to_string(),
        "destination fd00:ec2::254 is a cloud metadata address and the route does not allow it"
    );
}

#[test]
fn explicit_allow_overrides_only_its_range() {
    let guard = DestinationGuard::new(CidrSet::parse(["127.0.0.0/8"]).unwrap());
    assert_eq!(guard.check(ip("127.0.0.1")), Ok(()));
    assert_eq!(guard.check(ip("127.10.0.1")), Ok(()));
    // A dual-stack socket's view of the same address.
    assert_eq!(guard.check(ip("::ffff:127.0.0.1")), Ok(()));
    assert_eq!(
        guard.check(ip("10.0.0.1")).unwrap_err().class,
        DeniedClass::Private
    );
    assert_eq!(
        guard.check(ip("::1")).unwrap_err().class,
        DeniedClass::Loopback
    );
    assert_eq!(
        guard.check(ip("169.254.169.254")).unwrap_err().class,
        DeniedClass::CloudMetadata
    );
    assert_eq!(guard.check(ip("8.8.8.8")), Ok(()));
}

#[test]
fn explicit_allow_respects_exceptions() {
    let guard = DestinationGuard::new(CidrSet::parse(["10.0.0.0/8", "!10.0.0.0/24"]).unwrap());
    assert_eq!(guard.check(ip("10.1.0.1")), Ok(()));
    assert_eq!(
        guard.check(ip("10.0.0.5")).unwrap_err().class,
        DeniedClass::Private
    );
    assert_eq!(guard.explicitly_allowed().allow().len(), 1);
}

#[test]
fn wide_explicit_allow_opens_metadata_too() {
    // Documented behaviour: the config layer is responsible for warning about this.
    let guard = DestinationGuard::new(CidrSet::parse(["169.254.0.0/16"]).unwrap());
    assert_eq!(guard.check(ip("169.254.169.254")), Ok(()));
}
