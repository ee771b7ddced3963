//! Which IP addresses are public: the classification behind every
//! "internal address" refusal, kept apart so it can be tested exhaustively.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

/// Whether `ip` is a public unicast address: not loopback, private,
/// link-local, CGNAT, unique-local, site-local, multicast, documentation,
/// benchmarking, reserved, unspecified or broadcast — and not an IPv6
/// address that embeds, or is translated to, an IPv4 address that is not
/// public itself.
pub fn is_public(ip: IpAddr) -> bool {
    match ip {
        IpAddr::V4(v4) => is_public_v4(v4),
        IpAddr::V6(v6) => is_public_v6(v6),
    }
}

fn is_public_v4(v4: Ipv4Addr) -> bool {
    let o = v4.octets();
    !(v4.is_loopback()
        || v4.is_private()
        || v4.is_link_local()
        || v4.is_unspecified()
        || v4.is_broadcast()
        || v4.is_multicast()
        || v4.is_documentation()
        || o[0] == 0
        || (o[0] == 100 && (o[1] & 0xc0) == 64) // 100.64/10 CGNAT
        || (o[0] == 192 && o[1] == 0 && o[2] == 0) // 192.0.0/24 protocol assignments
        || (o[0] == 192 && o[1] == 88 && o[2] == 99) // 192.88.99/24 6to4 relays
        || (o[0] == 198 && (o[1] & 0xfe) == 18) // 198.18/15 benchmarking
        || o[0] >= 240)
}

/// An allowlist: only global unicast (`2000::/3`) less its special blocks
/// is public, so every range outside it — `::/96` IPv4-compatible, `::1`,
/// `::`, NAT64 `64:ff9b::/96` and `64:ff9b:1::/48`, discard `100::/64`,
/// unique-local `fc00::/7`, site-local `fec0::/10`, link-local `fe80::/10`,
/// multicast — is internal without a rule of its own. The forms that reach
/// an IPv4 address are judged by that address.
fn is_public_v6(v6: Ipv6Addr) -> bool {
    let v4 = |hi: u16, lo: u16| Ipv4Addr::from((u32::from(hi) << 16) | u32::from(lo));
    match v6.segments() {
        // ::ffff:a.b.c.d, IPv4-mapped: the IPv4 address itself.
        [0, 0, 0, 0, 0, 0xffff, hi, lo] => is_public_v4(v4(hi, lo)),
        // ::ffff:0:a.b.c.d, IPv4-translated (SIIT, RFC 7915).
        [0, 0, 0, 0, 0xffff, 0, hi, lo] => is_public_v4(v4(hi, lo)),
        // 2002:a.b.c.d::/48, 6to4: routed to the IPv4 address in bits 16-47.
        [0x2002, hi, lo, ..] => is_public_v4(v4(hi, lo)),
        s => {
            (s[0] & 0xe000) == 0x2000
                // 2001::/23 IETF protocol assignments: Teredo 2001::/32
                // (which embeds a server and a client IPv4 address),
                // benchmarking 2001:2::/48, ORCHID 2001:10::/28 and more.
                && !(s[0] == 0x2001 && s[1] < 0x0200)
                // 2001:db8::/32 and 3fff::/20 documentation.
                && !(s[0] == 0x2001 && s[1] == 0x0db8)
                && s[0] != 0x3fff
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn ip(s: &str) -> IpAddr {
        s.parse().unwrap()
    }

    #[test]
    fn address_classes() {
        for internal in [
            "127.0.0.1",
            "10.1.2.3",
            "172.16.0.1",
            "192.168.1.1",
            "169.254.169.254",
            "100.64.0.1",
            "0.0.0.0",
            "192.88.99.1",
            "::1",
            "::",
            "fe80::1",
            "fd00::1",
            "ff02::1",
            "::ffff:127.0.0.1",
            "::ffff:169.254.169.254",
        ] {
            assert!(!is_public(ip(internal)), "{internal}");
        }
        for public in [
            "1.1.1.1",
            "93.184.216.34",
            "2606:4700::1111",
            "2a00:1450:4001::1",
            "::ffff:93.184.216.34",
            // 6to4 of 93.184.216.34
            "2002:5db8:d822::1",
        ] {
            assert!(is_public(ip(public)), "{public}");
        }
    }

    /// IPv6 forms that reach an internal IPv4 address, and special IPv6
    /// ranges, are internal.
    #[test]
    fn ipv6_forms_of_internal_addresses_are_internal() {
        for internal in [
            // IPv4-compatible (deprecated)
            "::7f00:1",
            "::127.0.0.1",
            "::a9fe:a9fe",
            // IPv4-translated (SIIT)
            "::ffff:0:7f00:1",
            "::ffff:0:a00:1",
            // 6to4 of 127.0.0.1, 10.0.0.1, 169.254.169.254
            "2002:7f00:1::",
            "2002:a00:1::1",
            "2002:a9fe:a9fe::1",
            // Teredo, server 65.54.227.120, client 192.0.2.45 (RFC 4380)
            "2001:0:4136:e378:8000:63bf:3fff:fdd2",
            "2001::1",
            // NAT64 well-known and local-use prefixes
            "64:ff9b::7f00:1",
            "64:ff9b::a9fe:a9fe",
            "64:ff9b::5db8:d822",
            "64:ff9b:1::a00:1",
            // site-local, discard, ORCHID, ORCHIDv2, benchmarking, documentation
            "fec0::1",
            "100::1",
            "2001:10::1",
            "2001:20::1",
            "2001:2::1",
            "2001:db8::1",
            "3fff::1",
        ] {
            assert!(!is_public(ip(internal)), "{internal}");
        }
    }

    /// IPv4 addresses, drawn mostly from the internal ranges.
    fn ipv4() -> impl Strategy<Value = Ipv4Addr> {
        let in_range = |base: [u8; 4], prefix: u32| {
            let base = u32::from(Ipv4Addr::from(base));
            (0..=u32::MAX >> prefix).prop_map(move |h| Ipv4Addr::from(base | h))
        };
        prop_oneof![
            any::<u32>().prop_map(Ipv4Addr::from),
            in_range([127, 0, 0, 0], 8),
            in_range([10, 0, 0, 0], 8),
            in_range([172, 16, 0, 0], 12),
            in_range([192, 168, 0, 0], 16),
            in_range([169, 254, 0, 0], 16),
            in_range([100, 64, 0, 0], 10),
            in_range([0, 0, 0, 0], 8),
            in_range([224, 0, 0, 0], 4),
            in_range([240, 0, 0, 0], 4),
        ]
    }

    /// Every IPv6 form that carries `v4`.
    fn embeddings(v4: Ipv4Addr, rest: [u16; 5]) -> Vec<Ipv6Addr> {
        let n = u32::from(v4);
        let (hi, lo) = ((n >> 16) as u16, n as u16);
        let [a, b, c, d, e] = rest;
        vec![
            v4.to_ipv6_mapped(),
            v4.to_ipv6_compatible(),
            Ipv6Addr::new(0, 0, 0, 0, 0xffff, 0, hi, lo),
            Ipv6Addr::new(0x2002, hi, lo, a, b, c, d, e),
            // Teredo: server v4 in bits 32-63, client v4 inverted in the last 32.
            Ipv6Addr::new(0x2001, 0, hi, lo, a, b, !hi, !lo),
            Ipv6Addr::new(0x2001, 0, c, d, a, b, !hi, !lo),
            Ipv6Addr::new(0x64, 0xff9b, 0, 0, 0, 0, hi, lo),
            Ipv6Addr::new(0x64, 0xff9b, 1, a, b, c, hi, lo),
        ]
    }

    proptest! {
        #[test]
        fn an_ipv6_form_of_an_internal_ipv4_address_is_internal(
            v4 in ipv4(),
            rest in any::<[u16; 5]>(),
        ) {
            if !is_public(IpAddr::V4(v4)) {
                for v6 in embeddings(v4, rest) {
                    prop_assert!(!is_public(IpAddr::V6(v6)), "{v6} embeds internal {v4}");
                }
            } else {
                // The mapped form is the address itself.
                prop_assert!(is_public(IpAddr::V6(v4.to_ipv6_mapped())), "{v4}");
            }
        }
    }
}
