//! Addresses as text without `core::fmt`, for what is written once per request (the
//! `X-Forwarded-For` header, the audit line). `Display` for an address goes through the
//! formatter's padding logic, about ten times the cost of writing the digits
//! (`load-tests/callgrind.sh`). The text is the same as `Display`'s; IPv6 keeps `Display`.

use std::net::{Ipv4Addr, SocketAddrV4};

/// At most `N` ASCII bytes, on the stack.
pub(crate) struct AsciiText<const N: usize> {
    bytes: [u8; N],
    len: usize,
}

impl<const N: usize> AsciiText<N> {
    fn new() -> Self {
        Self {
            bytes: [0; N],
            len: 0,
        }
    }

    fn push(&mut self, byte: u8) {
        self.bytes[self.len] = byte;
        self.len += 1;
    }

    /// Decimal, no padding.
    fn push_decimal(&mut self, value: u16) {
        let mut digits = [0u8; 5];
        let mut rest = value;
        let mut count = 0;
        loop {
            digits[count] = b'0' + (rest % 10) as u8;
            count += 1;
            rest /= 10;
            if rest == 0 {
                break;
            }
        }
        for &digit in digits[..count].iter().rev() {
            self.push(digit);
        }
    }

    /// The text's bytes (ASCII).
    pub(crate) fn as_bytes(&self) -> &[u8] {
        &self.bytes[..self.len]
    }

    /// The text.
    pub(crate) fn as_str(&self) -> &str {
        // Only digits, dots and colons are ever pushed.
        std::str::from_utf8(self.as_bytes()).unwrap_or_default()
    }
}

/// `192.0.2.44`, as `Display` writes it.
pub(crate) fn ipv4(ip: Ipv4Addr) -> AsciiText<15> {
    let mut text = AsciiText::new();
    push_ipv4(&mut text, ip);
    text
}

/// `192.0.2.44:8080`, as `Display` writes it.
pub(crate) fn socket_v4(addr: SocketAddrV4) -> AsciiText<21> {
    let mut text = AsciiText::new();
    push_ipv4(&mut text, *addr.ip());
    text.push(b':');
    text.push_decimal(addr.port());
    text
}

fn push_ipv4<const N: usize>(text: &mut AsciiText<N>, ip: Ipv4Addr) {
    for (i, octet) in ip.octets().into_iter().enumerate() {
        if i > 0 {
            text.push(b'.');
        }
        text.push_decimal(u16::from(octet));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn addresses_read_as_display_writes_them() {
        for octets in [
            [0, 0, 0, 0],
            [127, 0, 0, 1],
            [10, 20, 255, 1],
            [100, 9, 99, 250],
            [1, 10, 109, 190],
            [255, 255, 255, 255],
        ] {
            let ip = Ipv4Addr::from(octets);
            assert_eq!(ipv4(ip).as_str(), ip.to_string());
            for port in [0, 7, 10, 99, 443, 8080, 10000, 65535] {
                let addr = SocketAddrV4::new(ip, port);
                assert_eq!(socket_v4(addr).as_str(), addr.to_string());
            }
        }
    }
}
