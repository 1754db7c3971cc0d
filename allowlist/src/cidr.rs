//! Sets of IP networks with exceptions, parsed from config strings.
//!
//! Used for peer allowlists (checked before the TLS handshake) and for a route's
//! `allow_destinations`, which punches holes in the [destination guard](crate::destination).

use std::net::IpAddr;

use ipnet::{IpNet, Ipv4Net, Ipv6Net};

#[cfg(test)]
mod tests;

/// A set of IP networks: the addresses inside some `allow` entry and inside no `except` entry.
///
/// Entries keep the order they were written in, so the set can be shown back to the operator.
/// IPv4-mapped IPv6 entries (`::ffff:10.0.0.0/104`) are stored as their IPv4 network, because
/// [`CidrSet::contains`] looks at mapped addresses as IPv4 too.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct CidrSet {
    allow: Vec<IpNet>,
    except: Vec<IpNet>,
}

/// Why a list of CIDR entries could not be parsed into a [`CidrSet`].
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum CidrError {
    /// The entry is neither an address nor a network in CIDR notation.
    #[error("invalid CIDR '{entry}': {reason}")]
    Invalid {
        /// The entry as written.
        entry: String,
        /// What is wrong with it.
        reason: String,
    },
    /// The entry has bits set to the right of the prefix, which usually means a typo.
    #[error("invalid CIDR '{entry}': host bits are set; did you mean '{network}'?")]
    HostBitsSet {
        /// The entry as written.
        entry: String,
        /// The network the entry probably meant, with the host bits cleared.
        network: String,
    },
    /// A `!` exception that does not narrow any allow entry; it would be a no-op, so it is
    /// almost certainly a mistake in the allow list.
    #[error("CIDR exception '{entry}' is not inside any allowed network")]
    ExceptionOutsideAllow {
        /// The exception as written, including its `!`.
        entry: String,
    },
}

// === impl CidrSet ===

impl CidrSet {
    /// Parses entries such as `"10.0.0.0/8"`, `"2001:db8::/32"`, a bare address
    /// (`"203.0.113.7"`, meaning `/32` or `/128`) and exceptions prefixed with `!`
    /// (`"!10.1.0.0/16"`). Surrounding whitespace is ignored.
    ///
    /// # Errors
    ///
    /// Returns the first bad entry: one that does not parse, one with host bits set
    /// (`"10.0.0.1/8"`), or an exception that lies outside every allow entry.
    pub fn parse<I, S>(entries: I) -> Result<CidrSet, CidrError>
    where
        I: IntoIterator<Item = S>,
        S: AsRef<str>,
    {
        let mut set = CidrSet::default();
        // Exceptions are checked once every allow entry is known, so entry order does not matter.
        let mut exceptions = Vec::new();
        for entry in entries {
            let entry = entry.as_ref().trim();
            match entry.strip_prefix('!') {
                Some(rest) => {
                    let net = parse_net(entry, rest.trim())?;
                    exceptions.push((entry.to_owned(), net));
                }
                None => set.allow.push(parse_net(entry, entry)?),
            }
        }
        for (entry, net) in exceptions {
            if !set.allow.iter().any(|allow| allow.contains(&net)) {
                return Err(CidrError::ExceptionOutsideAllow { entry });
            }
            set.except.push(net);
        }
        Ok(set)
    }

    /// The set of every IPv4 and IPv6 address (`0.0.0.0/0` and `::/0`).
    pub fn any() -> CidrSet {
        CidrSet {
            allow: vec![IpNet::V4(Ipv4Net::default()), IpNet::V6(Ipv6Net::default())],
            except: Vec::new(),
        }
    }

    /// True iff some allow entry contains `ip` and no exception does.
    ///
    /// An IPv4-mapped IPv6 address (`::ffff:a.b.c.d`) is treated as the IPv4 address: that is
    /// what a dual-stack socket reports for an IPv4 peer.
    pub fn contains(&self, ip: IpAddr) -> bool {
        let ip = ip.to_canonical();
        self.allow.iter().any(|net| net.contains(&ip))
            && !self.except.iter().any(|net| net.contains(&ip))
    }

    /// True when there are no allow entries, so [`CidrSet::contains`] is always false.
    pub fn is_empty(&self) -> bool {
        self.allow.is_empty()
    }

    /// The allow entries, in the order they were written.
    pub fn allow(&self) -> &[IpNet] {
        &self.allow
    }

    /// The exception entries (written with `!`), in the order they were written.
    pub fn except(&self) -> &[IpNet] {
        &self.except
    }
}

/// Parses one entry (`text` is `entry` without its `!`) into a network, mapping IPv4-mapped
/// IPv6 networks to IPv4.
fn parse_net(entry: &str, text: &str) -> Result<IpNet, CidrError> {
    let net = if text.contains('/') {
        let net: IpNet = text.parse().map_err(|_| CidrError::Invalid {
            entry: entry.to_owned(),
            reason: invalid_reason(text),
        })?;
        if net.trunc() != net {
            let network = match entry.strip_prefix('!') {
                Some(_) => format!("!{}", net.trunc()),
                None => net.trunc().to_string(),
            };
            return Err(CidrError::HostBitsSet {
                entry: entry.to_owned(),
                network,
            });
        }
        net
    } else {
        let ip: IpAddr = text.parse().map_err(|_| CidrError::Invalid {
            entry: entry.to_owned(),
            reason: if text.is_empty() {
                "empty entry".to_owned()
            } else {
                "expected an IP address or a network like 10.0.0.0/8".to_owned()
            },
        })?;
        IpNet::from(ip)
    };
    Ok(unmap(net))
}

/// Explains, as well as cheaply possible, why `text` (which contains a '/') is not a network.
fn invalid_reason(text: &str) -> String {
    let (addr, len) = text.split_once('/').unwrap_or((text, ""));
    let Ok(addr) = addr.trim().parse::<IpAddr>() else {
        return format!("'{addr}' is not an IP address");
    };
    let max = if addr.is_ipv4() { 32 } else { 128 };
    match len.parse::<u8>() {
        Ok(len) if len > max => format!("prefix length {len} is longer than {max}"),
        _ => format!("'{len}' is not a prefix length between 0 and {max}"),
    }
}

/// Turns a network inside `::ffff:0:0/96` into the IPv4 network it maps.
fn unmap(net: IpNet) -> IpNet {
    match net {
        IpNet::V6(v6) if v6.prefix_len() >= 96 => match v6.network().to_ipv4_mapped() {
            Some(v4) => Ipv4Net::new(v4, v6.prefix_len() - 96)
                .map(IpNet::V4)
                .unwrap_or(net),
            None => net,
        },
        _ => net,
    }
}
