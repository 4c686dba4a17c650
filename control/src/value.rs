//! The scalar values of the YAML files (durations, `IP:PORT`, ports, bounded counts, DNS names,
//! host patterns), each checked while it is deserialised so that a bad value is reported at its
//! own line and column with a message that says what to write instead.

use std::fmt;
use std::net::{IpAddr, SocketAddr};
use std::time::Duration;

use serde::de::{self, Deserialize, Deserializer, Visitor};

/// The duration syntax, quoted in every duration error.
const DURATION_HINT: &str = "use 500ms, 10s, 5m, 1h";

/// The longest duration accepted. Timeouts become deadlines (`Instant::now() + d`), which panic
/// on overflow (`--drain-timeout 9999999999999999h` did, on SIGTERM); nothing a gateway waits for
/// needs over a year.
pub const MAX_DURATION: Duration = Duration::from_secs(365 * 24 * 3600);

/// Parses `500ms`, `15s`, `10m`, `1h`, and sums of them such as `1m30s`, up to
/// [`MAX_DURATION`].
pub fn parse_duration(s: &str) -> Result<Duration, String> {
    let bad = || format!("{s:?} is not a duration ({DURATION_HINT})");
    let too_long = || format!("{s:?} is longer than a year (365 days), the most a timeout may be");
    let mut rest = s.trim();
    if rest.is_empty() {
        return Err(bad());
    }
    let mut total = Duration::ZERO;
    while !rest.is_empty() {
        let digits = rest
            .find(|c: char| !c.is_ascii_digit())
            .unwrap_or(rest.len());
        if digits == 0 {
            return Err(bad());
        }
        // All ASCII digits, so the only way to fail is a number too big for a u64.
        let n: u64 = rest[..digits].parse().map_err(|_| too_long())?;
        rest = &rest[digits..];
        let unit_len = rest
            .find(|c: char| c.is_ascii_digit())
            .unwrap_or(rest.len());
        let part = match &rest[..unit_len] {
            "ms" => Duration::from_millis(n),
            "s" => Duration::from_secs(n),
            "m" => Duration::from_secs(n.saturating_mul(60)),
            "h" => Duration::from_secs(n.saturating_mul(3600)),
            "" => return Err(format!("{s:?} has no unit ({DURATION_HINT})")),
            _ => return Err(bad()),
        };
        rest = &rest[unit_len..];
        // Saturated sums are far over the cap, so the check below still catches them.
        total = total.saturating_add(part);
    }
    if total > MAX_DURATION {
        return Err(too_long());
    }
    Ok(total)
}

/// Parses an endpoint address, with a hint for the usual mistakes.
pub fn parse_addr(s: &str) -> Result<SocketAddr, String> {
    if let Ok(addr) = s.trim().parse::<SocketAddr>() {
        return Ok(addr);
    }
    let hint = if let Ok(ip) = s.trim().parse::<IpAddr>() {
        match ip {
            IpAddr::V4(_) => format!(" (add the port, e.g. {ip}:8080)"),
            IpAddr::V6(_) => format!(" (add the port, e.g. [{ip}]:8080)"),
        }
    } else {
        String::new()
    };
    Err(format!("{s:?} is not IP:PORT{hint}"))
}

/// Checks a service host: a DNS name (letters, digits, `-`, `_`, `.`), at most 253 characters.
pub fn check_dns_name(s: &str) -> Result<(), String> {
    let name = s.strip_suffix('.').unwrap_or(s);
    let ok = !name.is_empty()
        && name.len() <= 253
        && name.split('.').all(|label| {
            !label.is_empty()
                && label.len() <= 63
                && label
                    .bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
        });
    if ok {
        Ok(())
    } else {
        Err(format!(
            "{s:?} is not a DNS name (letters, digits, '-' and '.', e.g. west.west.svc.cluster.local)"
        ))
    }
}

/// Checks an Istio subset name (a DNS label, as Istio requires). It travels inside the SNI
/// (`outbound_.8080_.v1_.host`), where `_`, `.` or `|` would make the name ambiguous.
pub fn check_subset(s: &str) -> Result<(), String> {
    if s.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-') {
        Ok(())
    } else {
        Err(format!(
            "{s:?} is not a subset name (letters, digits and '-')"
        ))
    }
}

/// Checks a Kubernetes namespace name (an RFC 1123 label: lower-case letters, digits and '-',
/// at most 63, starting and ending with a letter or digit).
pub fn check_namespace(s: &str) -> Result<(), String> {
    let ok = !s.is_empty()
        && s.len() <= 63
        && s.bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
        && !s.starts_with('-')
        && !s.ends_with('-');
    if ok {
        Ok(())
    } else {
        Err(format!(
            "{s:?} is not a namespace name (lower-case letters, digits and '-', at most 63)"
        ))
    }
}

/// Checks a cluster ID (Istio's `clusterID`, e.g. `Kubernetes`, `cluster1`): it names logs,
/// metric labels and `/debug/routes` lines, so 1 to 63 letters, digits, '-', '_' or '.'.
pub fn check_cluster_id(s: &str) -> Result<(), String> {
    let ok = !s.is_empty()
        && s.len() <= 63
        && s.bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.'));
    if ok {
        Ok(())
    } else {
        Err(format!(
            "{s:?} is not a cluster ID (1 to 63 letters, digits, '-', '_' or '.')"
        ))
    }
}

/// A string checked as it is deserialised; `KIND` says which check.
pub struct Checked<const KIND: u8>(pub String);

/// `Checked` kinds.
pub const DNS_NAME: u8 = 0;
pub const SUBSET: u8 = 1;
pub const HOST_PATTERN: u8 = 2;
pub const NAMESPACE: u8 = 3;
pub const CLUSTER_ID: u8 = 4;

impl<'de, const KIND: u8> Deserialize<'de> for Checked<KIND> {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = String::deserialize(d)?;
        let checked = match KIND {
            DNS_NAME => check_dns_name(&s),
            SUBSET => check_subset(&s),
            NAMESPACE => check_namespace(&s),
            CLUSTER_ID => check_cluster_id(&s),
            _ => eastwest_proxy::hosts::HostPatterns::parse(&[&s])
                .map(|_| ())
                .map_err(|e| e.to_string()),
        };
        checked.map_err(de::Error::custom)?;
        Ok(Checked(s))
    }
}

/// A watch timeout (`timeouts.watch`, `--watch-timeout`): whole seconds, 1 s to 1 h, as the
/// API server's `timeoutSeconds` takes them.
pub fn parse_watch_timeout(s: &str) -> Result<Duration, String> {
    let d = parse_duration(s)?;
    if d.subsec_nanos() != 0 || d < Duration::from_secs(1) || d > Duration::from_secs(3600) {
        return Err(format!(
            "{s:?} is not a watch timeout (whole seconds, 1s to 1h, e.g. 60s)"
        ));
    }
    Ok(d)
}

/// A watch timeout string.
pub struct WatchDur(pub Duration);

impl<'de> Deserialize<'de> for WatchDur {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = String::deserialize(d)?;
        parse_watch_timeout(&s)
            .map(WatchDur)
            .map_err(de::Error::custom)
    }
}

impl From<WatchDur> for Duration {
    fn from(v: WatchDur) -> Self {
        v.0
    }
}

/// A duration string.
pub struct Dur(pub Duration);

impl<'de> Deserialize<'de> for Dur {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = String::deserialize(d)?;
        parse_duration(&s).map(Dur).map_err(de::Error::custom)
    }
}

/// An `IP:PORT` string.
pub struct Addr(pub SocketAddr);

impl<'de> Deserialize<'de> for Addr {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = String::deserialize(d)?;
        parse_addr(&s).map(Addr).map_err(de::Error::custom)
    }
}

/// Upper bounds from here up are the type's limit rather than a policy, so messages omit them.
const UNBOUNDED: u64 = u32::MAX as u64;

/// An integer in `MIN..=MAX`.
pub struct Bounded<const MIN: u64, const MAX: u64>(pub u64);

impl<'de, const MIN: u64, const MAX: u64> Deserialize<'de> for Bounded<MIN, MAX> {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V<const MIN: u64, const MAX: u64>;
        impl<const MIN: u64, const MAX: u64> V<MIN, MAX> {
            fn out_of_range<E: de::Error>(v: impl fmt::Display) -> E {
                if MAX >= UNBOUNDED {
                    E::custom(format_args!("{v} is out of range (at least {MIN})"))
                } else {
                    E::custom(format_args!("{v} is out of range ({MIN} to {MAX})"))
                }
            }
        }
        impl<'de, const MIN: u64, const MAX: u64> Visitor<'de> for V<MIN, MAX> {
            type Value = Bounded<MIN, MAX>;
            fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                if MAX >= UNBOUNDED {
                    write!(f, "an integer, at least {MIN}")
                } else {
                    write!(f, "an integer from {MIN} to {MAX}")
                }
            }
            fn visit_u64<E: de::Error>(self, v: u64) -> Result<Self::Value, E> {
                if (MIN..=MAX).contains(&v) {
                    Ok(Bounded(v))
                } else {
                    Err(Self::out_of_range(v))
                }
            }
            fn visit_i64<E: de::Error>(self, v: i64) -> Result<Self::Value, E> {
                match u64::try_from(v) {
                    Ok(v) => self.visit_u64(v),
                    Err(_) => Err(Self::out_of_range(v)),
                }
            }
            // The rest return `custom` errors, which serde-saphyr places at the value (its
            // `invalid_type` errors point at the enclosing mapping instead).
            fn visit_f64<E: de::Error>(self, v: f64) -> Result<Self::Value, E> {
                Err(E::custom(format_args!("{v} is not a whole number")))
            }
            fn visit_bool<E: de::Error>(self, v: bool) -> Result<Self::Value, E> {
                Err(E::custom(format_args!("{v} is not a number")))
            }
            fn visit_str<E: de::Error>(self, v: &str) -> Result<Self::Value, E> {
                Err(E::custom(format_args!(
                    "{v:?} is not a number (write it unquoted)"
                )))
            }
            fn visit_seq<A: de::SeqAccess<'de>>(self, _: A) -> Result<Self::Value, A::Error> {
                Err(de::Error::custom("expected a number, found a list"))
            }
            fn visit_map<A: de::MapAccess<'de>>(self, _: A) -> Result<Self::Value, A::Error> {
                Err(de::Error::custom("expected a number, found a map"))
            }
        }
        // deserialize_any, not _u64: serde-saphyr then names the type it found on a mismatch.
        d.deserialize_any(V::<MIN, MAX>)
    }
}

/// A TCP port, 1 to 65535.
pub type PortValue = Bounded<1, 65535>;

impl PortValue {
    pub fn port(&self) -> u16 {
        u16::try_from(self.0).unwrap_or(u16::MAX)
    }
}

/// `#[serde(deserialize_with)]` adapter: an optional `W` converted into `T`.
pub fn opt<'de, D, W, T>(d: D) -> Result<Option<T>, D::Error>
where
    D: Deserializer<'de>,
    W: Deserialize<'de> + Into<T>,
{
    Ok(Option::<W>::deserialize(d)?.map(Into::into))
}

impl From<Dur> for Duration {
    fn from(v: Dur) -> Self {
        v.0
    }
}

impl From<Addr> for SocketAddr {
    fn from(v: Addr) -> Self {
        v.0
    }
}

impl<const MIN: u64, const MAX: u64> From<Bounded<MIN, MAX>> for usize {
    fn from(v: Bounded<MIN, MAX>) -> Self {
        usize::try_from(v.0).unwrap_or(usize::MAX)
    }
}

impl<const MIN: u64, const MAX: u64> From<Bounded<MIN, MAX>> for u32 {
    fn from(v: Bounded<MIN, MAX>) -> Self {
        u32::try_from(v.0).unwrap_or(u32::MAX)
    }
}

impl<const MIN: u64, const MAX: u64> From<Bounded<MIN, MAX>> for u16 {
    fn from(v: Bounded<MIN, MAX>) -> Self {
        u16::try_from(v.0).unwrap_or(u16::MAX)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations() {
        assert_eq!(parse_duration("500ms"), Ok(Duration::from_millis(500)));
        assert_eq!(parse_duration("15s"), Ok(Duration::from_secs(15)));
        assert_eq!(parse_duration("10m"), Ok(Duration::from_secs(600)));
        assert_eq!(parse_duration("1h"), Ok(Duration::from_secs(3600)));
        assert_eq!(parse_duration("1m30s"), Ok(Duration::from_secs(90)));
        assert_eq!(parse_duration("0s"), Ok(Duration::ZERO));
        assert_eq!(
            parse_duration("10 seconds").unwrap_err(),
            r#""10 seconds" is not a duration (use 500ms, 10s, 5m, 1h)"#
        );
        assert_eq!(
            parse_duration("15").unwrap_err(),
            r#""15" has no unit (use 500ms, 10s, 5m, 1h)"#
        );
        for bad in ["", "s", "1d", "-1s", "1.5s", "ms10"] {
            assert!(parse_duration(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn durations_over_a_year_are_refused() {
        assert_eq!(parse_duration("8760h"), Ok(MAX_DURATION));
        assert_eq!(parse_duration("8759h59m60s"), Ok(MAX_DURATION));
        let long = r#""8760h1ms" is longer than a year (365 days), the most a timeout may be"#;
        assert_eq!(parse_duration("8760h1ms").unwrap_err(), long);
        // Once saturated, and once too big for a u64: the same message, not a panic later on
        // `Instant + Duration` (as `--drain-timeout 9999999999999999h` did on SIGTERM).
        for huge in [
            "9999999999999999h",
            "99999999999999999999999ms",
            "1h18446744073709551615s",
        ] {
            let err = parse_duration(huge).unwrap_err();
            assert!(
                err.ends_with("is longer than a year (365 days), the most a timeout may be"),
                "{huge}: {err}"
            );
        }
    }

    /// The config file's durations go through the same parser, and the error keeps its place.
    #[test]
    fn a_duration_over_a_year_in_the_file_is_refused_at_its_line() {
        let path = std::path::Path::new("/etc/eastwest/config.yaml");
        let err = crate::Config::parse("timeouts:\n  drain: 9999999999999999h\n", path)
            .unwrap_err()
            .to_string();
        assert_eq!(
            err,
            r#"/etc/eastwest/config.yaml:2:10: timeouts.drain: "9999999999999999h" is longer than a year (365 days), the most a timeout may be"#
        );
    }

    #[test]
    fn addresses() {
        assert_eq!(parse_addr("[::1]:9001").unwrap().port(), 9001);
        assert_eq!(
            parse_addr("10.0.0.1").unwrap_err(),
            r#""10.0.0.1" is not IP:PORT (add the port, e.g. 10.0.0.1:8080)"#
        );
        // A bare IPv6 address with a port is another IPv6 address.
        assert_eq!(
            parse_addr("::1:80").unwrap_err(),
            r#""::1:80" is not IP:PORT (add the port, e.g. [::1:80]:8080)"#
        );
        assert_eq!(
            parse_addr("pod:80").unwrap_err(),
            r#""pod:80" is not IP:PORT"#
        );
    }

    #[test]
    fn names() {
        assert!(check_dns_name("west.west.svc.cluster.local").is_ok());
        assert!(check_dns_name("west.west.svc.cluster.local.").is_ok());
        for bad in ["", "a b", "a..b", ".", "*.local", "a:80", "a/b"] {
            assert!(check_dns_name(bad).is_err(), "{bad}");
        }
        assert!(check_subset("v1").is_ok());
        assert!(check_subset("").is_ok());
        assert!(check_subset("v 1").is_err());
        assert!(check_subset("v1_").is_err());
    }
}
