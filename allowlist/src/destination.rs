//! The SSRF guard: which upstream addresses the gateway refuses to connect to.
//!
//! The gateway calls [`DestinationGuard::check`] on the *resolved* address right before
//! connecting, never on the hostname: a tenant-controlled DNS name can resolve to anything, and
//! checking earlier would leave a DNS-rebinding window between check and connect.

use std::fmt;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use crate::cidr::CidrSet;

#[cfg(test)]
mod tests;

/// Why an address is not a public destination.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum DeniedClass {
    /// `127.0.0.0/8`, `::1`.
    Loopback,
    /// RFC 1918: `10.0.0.0/8`, `172.16.0.0/12`, `192.168.0.0/16`.
    Private,
    /// `169.254.0.0/16`, `fe80::/10`.
    LinkLocal,
    /// `fc00::/7`.
    UniqueLocal,
    /// Instance metadata services, which hand out cloud credentials: `169.254.169.254`,
    /// `169.254.170.2` (ECS), `169.254.170.23` (EKS pod identity), `100.100.100.200` (Alibaba),
    /// `168.63.129.16` (Azure WireServer), `fd00:ec2::254` and `fd00:ec2::23` (AWS IPv6).
    CloudMetadata,
    /// Carrier-grade NAT, `100.64.0.0/10`.
    SharedAddressSpace,
    /// `0.0.0.0/8`, `::`.
    Unspecified,
    /// `224.0.0.0/4`, `ff00::/8`.
    Multicast,
    /// `255.255.255.255`.
    Broadcast,
    /// Special-purpose ranges that are never a SaaS endpoint: `240.0.0.0/4`, `192.0.0.0/24`,
    /// `198.18.0.0/15`, `192.88.99.0/24`, and for IPv6 `100::/64`, `2001::/23`, `64:ff9b:1::/48`
    /// and everything outside global unicast `2000::/3`.
    Reserved,
    /// `192.0.2.0/24`, `198.51.100.0/24`, `203.0.113.0/24`, `2001:db8::/32`, `3fff::/20`.
    Documentation,
}

/// Refuses connections to non-public addresses unless the route explicitly allows them.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct DestinationGuard {
    explicitly_allowed: CidrSet,
}

/// The guard refused an address; the gateway maps this to a 502 and a log line.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("destination {ip} is {} and the route does not allow it", class.phrase())]
pub struct DestinationDenied {
    /// The resolved address the gateway was about to connect to.
    pub ip: IpAddr,
    /// Why it is not public.
    pub class: DeniedClass,
}

/// Classifies an address: `None` means public, so the guard lets it through.
///
/// IPv6 addresses that embed an IPv4 address (IPv4-mapped `::ffff:0:0/96`, IPv4-compatible
/// `::/96`, NAT64 `64:ff9b::/96`, 6to4 `2002::/16`) are classified by that IPv4 address, since
/// that is where the packets end up. Cloud metadata addresses take precedence over the wider
/// range they sit in.
pub fn classify(ip: IpAddr) -> Option<DeniedClass> {
    match ip {
        IpAddr::V4(v4) => classify_v4(v4),
        IpAddr::V6(v6) => classify_v6(v6),
    }
}

// === impl DeniedClass ===

impl DeniedClass {
    /// Every class, for exhaustive tests and metric registration.
    pub const ALL: [DeniedClass; 11] = [
        DeniedClass::Loopback,
        DeniedClass::Private,
        DeniedClass::LinkLocal,
        DeniedClass::UniqueLocal,
        DeniedClass::CloudMetadata,
        DeniedClass::SharedAddressSpace,
        DeniedClass::Unspecified,
        DeniedClass::Multicast,
        DeniedClass::Broadcast,
        DeniedClass::Reserved,
        DeniedClass::Documentation,
    ];

    /// A stable snake_case name for logs and metric labels.
    pub fn as_str(&self) -> &'static str {
        match self {
            DeniedClass::Loopback => "loopback",
            DeniedClass::Private => "private",
            DeniedClass::LinkLocal => "link_local",
            DeniedClass::UniqueLocal => "unique_local",
            DeniedClass::CloudMetadata => "cloud_metadata",
            DeniedClass::SharedAddressSpace => "shared_address_space",
            DeniedClass::Unspecified => "unspecified",
            DeniedClass::Multicast => "multicast",
            DeniedClass::Broadcast => "broadcast",
            DeniedClass::Reserved => "reserved",
            DeniedClass::Documentation => "documentation",
        }
    }

    /// The class in an English sentence, with its article.
    fn phrase(&self) -> &'static str {
        match self {
            DeniedClass::Loopback => "a loopback address",
            DeniedClass::Private => "a private address",
            DeniedClass::LinkLocal => "a link-local address",
            DeniedClass::UniqueLocal => "a unique local address",
            DeniedClass::CloudMetadata => "a cloud metadata address",
            DeniedClass::SharedAddressSpace => "a shared (carrier-grade NAT) address",
            DeniedClass::Unspecified => "an unspecified address",
            DeniedClass::Multicast => "a multicast address",
            DeniedClass::Broadcast => "a broadcast address",
            DeniedClass::Reserved => "a reserved address",
            DeniedClass::Documentation => "a documentation address",
        }
    }
}

impl fmt::Display for DeniedClass {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

// === impl DestinationGuard ===

impl DestinationGuard {
    /// A guard that also lets through the non-public addresses in `explicitly_allowed`, for a
    /// route that says e.g. `allow_destinations = ["127.0.0.0/8"]`.
    ///
    /// Note that an allowed range wide enough to cover a metadata address (`169.254.0.0/16`,
    /// `0.0.0.0/0`) opens it too; the config layer should warn about that.
    pub fn new(explicitly_allowed: CidrSet) -> Self {
        DestinationGuard { explicitly_allowed }
    }

    /// The non-public ranges this guard lets through.
    pub fn explicitly_allowed(&self) -> &CidrSet {
        &self.explicitly_allowed
    }

    /// Allows `ip` if it is public or explicitly allowed.
    ///
    /// # Errors
    ///
    /// [`DestinationDenied`] naming the address and its [`DeniedClass`].
    pub fn check(&self, ip: IpAddr) -> Result<(), DestinationDenied> {
        match classify(ip) {
            None => Ok(()),
            Some(_) if self.explicitly_allowed.contains(ip) => Ok(()),
            Some(class) => Err(DestinationDenied { ip, class }),
        }
    }
}

fn classify_v4(ip: Ipv4Addr) -> Option<DeniedClass> {
    let [a, b, c, d] = ip.octets();
    // Metadata first: each of these sits inside a wider class, and the specific name is what an
    // operator needs to see in the log.
    let class = match (a, b, c, d) {
        (169, 254, 169, 254) | (169, 254, 170, 2) | (169, 254, 170, 23) => {
            DeniedClass::CloudMetadata
        }
        (100, 100, 100, 200) | (168, 63, 129, 16) => DeniedClass::CloudMetadata,
        (0, ..) => DeniedClass::Unspecified,
        (127, ..) => DeniedClass::Loopback,
        (10, ..) => DeniedClass::Private,
        (172, 16..=31, ..) => DeniedClass::Private,
        (192, 168, ..) => DeniedClass::Private,
        (169, 254, ..) => DeniedClass::LinkLocal,
        (100, 64..=127, ..) => DeniedClass::SharedAddressSpace,
        (224..=239, ..) => DeniedClass::Multicast,
        (255, 255, 255, 255) => DeniedClass::Broadcast,
        (240..=255, ..) => DeniedClass::Reserved,
        (192, 0, 0, _) => DeniedClass::Reserved,
        (198, 18..=19, ..) => DeniedClass::Reserved,
        // 6to4 relay anycast (deprecated by RFC 7526): would tunnel to an address we can't see.
        (192, 88, 99, _) => DeniedClass::Reserved,
        (192, 0, 2, _) | (198, 51, 100, _) | (203, 0, 113, _) => DeniedClass::Documentation,
        _ => return None,
    };
    Some(class)
}

fn classify_v6(ip: Ipv6Addr) -> Option<DeniedClass> {
    if ip.is_unspecified() {
        return Some(DeniedClass::Unspecified);
    }
    if ip.is_loopback() {
        return Some(DeniedClass::Loopback);
    }
    if let Some(v4) = embedded_v4(ip) {
        return classify_v4(v4);
    }
    let s = ip.segments();
    let class = match s {
        [0xfd00, 0x0ec2, 0, 0, 0, 0, 0, 0x0254 | 0x0023] => DeniedClass::CloudMetadata,
        [x, ..] if x & 0xffc0 == 0xfe80 => DeniedClass::LinkLocal,
        [x, ..] if x & 0xfe00 == 0xfc00 => DeniedClass::UniqueLocal,
        [x, ..] if x & 0xff00 == 0xff00 => DeniedClass::Multicast,
        [0x2001, 0x0db8, ..] => DeniedClass::Documentation,
        [0x3fff, y, ..] if y < 0x1000 => DeniedClass::Documentation,
        // Discard-only (RFC 6666).
        [0x0100, 0, 0, 0, ..] => DeniedClass::Reserved,
        // IETF protocol assignments: Teredo, benchmarking, ORCHID, AS112 and friends.
        [0x2001, y, ..] if y < 0x0200 => DeniedClass::Reserved,
        // Local-use NAT64 (RFC 8215): the embedded IPv4 position depends on the operator's
        // prefix length, so we cannot classify the target.
        [0x0064, 0xff9b, 0x0001, ..] => DeniedClass::Reserved,
        // Everything outside global unicast is unassigned or special-purpose.
        [x, ..] if x & 0xe000 != 0x2000 => DeniedClass::Reserved,
        _ => return None,
    };
    Some(class)
}

/// The IPv4 address an IPv6 address delivers to, if it embeds one.
fn embedded_v4(ip: Ipv6Addr) -> Option<Ipv4Addr> {
    let o = ip.octets();
    let low = Ipv4Addr::new(o[12], o[13], o[14], o[15]);
    match ip.segments() {
        // IPv4-mapped and IPv4-compatible (`::` and `::1` are handled before this).
        [0, 0, 0, 0, 0, 0xffff | 0, _, _] => Some(low),
        // NAT64 well-known prefix (RFC 6052).
        [0x0064, 0xff9b, 0, 0, 0, 0, _, _] => Some(low),
        // 6to4 (RFC 3056): the relay forwards to the IPv4 address in bits 16..48.
        [0x2002, ..] => Some(Ipv4Addr::new(o[2], o[3], o[4], o[5])),
        _ => None,
    }
}
