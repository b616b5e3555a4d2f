//! Sysctl values, compared as the kernel prints them, and the shapes a key's kernel type allows.
//! Pure: no I/O. Where the shape of a key is learnt from the host, the caller reads the file
//! and hands its text to [`Shape::infer`].
//!
//! What the kernel's integer handlers (`proc_dointvec` and friends, `proc_get_long`) do, checked
//! on kernel 6.18 in a private network namespace against `conf/all/forwarding`:
//! - they read numbers with base 0: `0x1` and `0X2` are hex, a leading `0` is octal (`010`
//!   reads back 8, `08` is refused), `01` is 1; `+1` is refused; `-1` and `2` are kept as written
//!   (forwarding is not clamped); a value outside `int` is refused;
//! - white space around and between fields is skipped; extra fields after the last one the key
//!   holds are ignored (`1 0` sets 1);
//! - they print decimal, fields separated by a tab, with a newline.

use std::fmt;

use crate::key::SysctlKey;

/// A sysctl value as `sysctl(8)` shows it: fields separated by single spaces. Integer values
/// from the configuration are in canonical decimal, which is how the kernel prints them, so
/// equal values compare equal.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Value(String);

impl Value {
    /// A value as read from `/proc/sys` (or a string key's configured text): white space
    /// normalised, nothing else changed.
    pub fn new(raw: &str) -> Self {
        Self(raw.split_whitespace().collect::<Vec<_>>().join(" "))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }

    fn ints(fields: &[i128]) -> Self {
        Self(
            fields
                .iter()
                .map(i128::to_string)
                .collect::<Vec<_>>()
                .join(" "),
        )
    }
}

impl fmt::Display for Value {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// What a key's kernel type can hold.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Shape {
    /// Exactly `count` integers, each within `min..=max`.
    Ints {
        count: usize,
        min: i128,
        max: i128,
        /// Said when a number is out of range, e.g. why a boolean key takes only 0 and 1.
        why: &'static str,
        /// The fields must not decrease (a range the kernel refuses upside down).
        ascending: bool,
    },
    /// Any text (a string key, or a key whose type is not known).
    Text,
}

const INT: (i128, i128) = (i32::MIN as i128, i32::MAX as i128);
const INT_WHY: &str = "the kernel stores it as an int";

impl Shape {
    const fn int(count: usize) -> Self {
        Shape::Ints {
            count,
            min: INT.0,
            max: INT.1,
            why: INT_WHY,
            ascending: false,
        }
    }

    /// Integers of a key whose type is learnt from the host: int, long or unsigned long, the
    /// file does not say which.
    const fn host_ints(count: usize) -> Self {
        Shape::Ints {
            count,
            min: i64::MIN as i128,
            max: u64::MAX as i128,
            why: "it is outside the range of a kernel integer",
            ascending: false,
        }
    }

    /// The shapes fwdguard knows from the kernel sources, for the keys it is meant for.
    pub fn known(key: &SysctlKey) -> Option<Shape> {
        let c: Vec<&str> = key.components().collect();
        let shape = match c[..] {
            // Every net.ipv4.conf.DEVICE.* entry is an int (devinet_conf_proc -> proc_dointvec).
            ["net", "ipv4", "conf", _, _] => Shape::int(1),
            [
                "net",
                "ipv6",
                "conf",
                _,
                "forwarding"
                | "proxy_ndp"
                | "ignore_routes_with_linkdown"
                | "accept_ra"
                | "disable_ipv6"
                | "accept_redirects",
            ] => Shape::int(1),
            ["net", "ipv4", "ip_forward_use_pmtu" | "ip_nonlocal_bind"] => Shape::int(1),
            // brnf_sysctl_call_tables stores any non-zero number as 1.
            [
                "net",
                "bridge",
                "bridge-nf-call-iptables"
                | "bridge-nf-call-ip6tables"
                | "bridge-nf-call-arptables"
                | "bridge-nf-filter-vlan-tagged"
                | "bridge-nf-filter-pppoe-tagged"
                | "bridge-nf-pass-vlan-input-dev",
            ] => Shape::Ints {
                count: 1,
                min: 0,
                max: 1,
                why: "the kernel stores any other number as 1",
                ascending: false,
            },
            ["net", "ipv4", "ip_local_port_range"] => Shape::Ints {
                count: 2,
                min: 1,
                max: 65535,
                why: "it is a port range",
                ascending: true,
            },
            ["net", "ipv4", "ping_group_range"] => Shape::Ints {
                count: 2,
                min: 0,
                max: i128::from(u32::MAX >> 1),
                why: "it is a range of group ids",
                // "1 0" (nobody may ping) is the default: upside down is allowed here.
                ascending: false,
            },
            ["net", "ipv4", "tcp_rmem" | "tcp_wmem"] => Shape::int(3),
            _ => return None,
        };
        Some(shape)
    }

    /// The shape of a key from what its file holds now: integers in the kernel's own decimal
    /// form mean an integer key with that many fields; anything else is text.
    pub fn infer(current: &str) -> Shape {
        let fields: Vec<&str> = current.split_whitespace().collect();
        let canonical =
            |f: &&str| parse_int(f).is_ok_and(|n| n.is_some_and(|n| n.to_string() == *f));
        if !fields.is_empty() && fields.iter().all(canonical) {
            Shape::host_ints(fields.len())
        } else {
            Shape::Text
        }
    }

    /// The value for `raw` from the configuration, or why this key cannot hold it. `Text` keeps
    /// the text, but text made only of numbers is compared as numbers: a key whose type is not
    /// known and that does not exist now may well be an integer key.
    pub fn value(self, raw: &str) -> Result<Value, String> {
        let fields: Vec<&str> = raw.split_whitespace().collect();
        if fields.is_empty() {
            return Err("a value must not be empty".into());
        }
        match self {
            Shape::Text => {
                let parsed: Vec<_> = fields.iter().map(|f| parse_int(f)).collect();
                if parsed.iter().any(|p| matches!(p, Ok(None))) {
                    return Ok(Value::new(raw));
                }
                let ints = parsed
                    .into_iter()
                    .map(|p| p.map(|n| n.unwrap_or_default()))
                    .collect::<Result<Vec<_>, _>>()?;
                Ok(Value::ints(&ints))
            }
            Shape::Ints {
                count,
                min,
                max,
                why,
                ascending,
            } => {
                if fields.len() != count {
                    let ignored = if count < fields.len() {
                        " (the kernel would keep the first and ignore the rest, so it never reads back as written)"
                    } else {
                        ""
                    };
                    return Err(format!(
                        "`{raw}` has {} field{}; this key holds {}{ignored}",
                        fields.len(),
                        if fields.len() == 1 { "" } else { "s" },
                        plural(count)
                    ));
                }
                let mut ints = Vec::with_capacity(count);
                for f in fields {
                    let n = parse_int(f)?.ok_or_else(|| {
                        format!("`{f}` is not an integer; this key holds {}", plural(count))
                    })?;
                    if n < min || n > max {
                        return Err(format!(
                            "{n} is out of range {min}..={max} for this key: {why}"
                        ));
                    }
                    ints.push(n);
                }
                if ascending && ints.windows(2).any(|w| w[0] > w[1]) {
                    return Err(format!(
                        "`{raw}` is upside down: the kernel refuses a range whose first number is above the second"
                    ));
                }
                Ok(Value::ints(&ints))
            }
        }
    }
}

fn plural(count: usize) -> String {
    match count {
        1 => "an integer".into(),
        n => format!("{n} integers"),
    }
}

/// One field as the kernel's `proc_get_long` reads it, plus a leading `+`: decimal, `0x` hex,
/// and leading zeros where octal and decimal agree. `Ok(None)`: not a number at all. `Err`: a
/// number the kernel would read differently from a person (`010` is 8 to the kernel) or not
/// at all.
fn parse_int(field: &str) -> Result<Option<i128>, String> {
    let (neg, digits) = match field.as_bytes().first() {
        Some(b'-') => (true, &field[1..]),
        Some(b'+') => (false, &field[1..]),
        _ => (false, field),
    };
    if !digits.as_bytes().first().is_some_and(u8::is_ascii_digit) {
        return Ok(None);
    }
    let hex = digits
        .strip_prefix("0x")
        .or_else(|| digits.strip_prefix("0X"));
    let (digits, radix) = match hex {
        Some(h) => (h, 16),
        None => (digits, 10),
    };
    if digits.is_empty() || !digits.chars().all(|c| c.is_digit(radix)) {
        return Ok(None);
    }
    let significant = digits.trim_start_matches('0');
    // `07` is 7 either way; `010` is 8 to the kernel and 10 to a reader; `08` the kernel refuses.
    if radix == 10
        && significant.len() < digits.len()
        && (significant.len() > 1 || significant.starts_with(['8', '9']))
    {
        return Err(format!(
            "`{field}` is ambiguous: the kernel reads a leading 0 as octal; write it without the 0"
        ));
    }
    // Past 32 hex or 38 decimal digits even i128 overflows: far outside any kernel type.
    let magnitude = match significant {
        "" => Some(0),
        s if s.len() > 38 => None,
        s => u128::from_str_radix(s, radix).ok(),
    };
    let magnitude = magnitude
        .and_then(|m| i128::try_from(m).ok())
        .ok_or_else(|| format!("`{field}` is too large for any kernel integer"))?;
    Ok(Some(if neg { -magnitude } else { magnitude }))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key(s: &str) -> SysctlKey {
        SysctlKey::parse(s).expect(s)
    }

    fn forwarding(raw: &str) -> Result<String, String> {
        Shape::known(&key("net.ipv4.conf.all.forwarding"))
            .expect("known")
            .value(raw)
            .map(|v| v.to_string())
    }

    #[test]
    fn readings_compare_as_sysctl_prints_them() {
        assert_eq!(Value::new("1\n"), Value::new("1"));
        assert_eq!(Value::new("32768\t60999\n"), Value::new("32768 60999"));
        assert_ne!(Value::new("0\n"), Value::new("1"));
    }

    #[test]
    fn integers_are_normalised_as_the_kernel_prints_them() {
        for (raw, want) in [
            ("1", "1"),
            ("01", "1"),
            ("+1", "1"),
            (" 1\t", "1"),
            ("0x1", "1"),
            ("0X2", "2"),
            ("00", "0"),
            ("07", "7"),
            ("-1", "-1"),
            ("2", "2"),
            ("2147483647", "2147483647"),
            ("-2147483648", "-2147483648"),
        ] {
            assert_eq!(forwarding(raw).as_deref(), Ok(want), "{raw:?}");
        }
        let range = Shape::known(&key("net.ipv4.ip_local_port_range")).expect("known");
        assert_eq!(
            range
                .value(" 32768\t060999 ")
                .map_err(|e| e.contains("ambiguous")),
            Err(true)
        );
        assert_eq!(
            range.value(" 0x1000\t 32768 ").map(|v| v.to_string()),
            Ok("4096 32768".into())
        );
    }

    #[test]
    fn values_an_int_key_cannot_hold_are_refused_with_the_reason() {
        for (raw, want) in [
            ("yes", "`yes` is not an integer; this key holds an integer"),
            (
                "1 0",
                "`1 0` has 2 fields; this key holds an integer (the kernel would keep the first",
            ),
            ("01 x", "`01 x` has 2 fields"),
            ("1x", "`1x` is not an integer"),
            ("0x", "`0x` is not an integer"),
            ("- 1", "`- 1` has 2 fields"),
            ("-", "`-` is not an integer"),
            (
                "2147483648",
                "2147483648 is out of range -2147483648..=2147483647",
            ),
            (
                "010",
                "`010` is ambiguous: the kernel reads a leading 0 as octal",
            ),
            ("08", "`08` is ambiguous"),
            ("99999999999999999999999999999999999999999", "too large"),
        ] {
            let got = forwarding(raw).expect_err(raw);
            assert!(got.contains(want), "{raw:?}: {got}");
        }
        let bridge = Shape::known(&key("net.bridge.bridge-nf-call-iptables")).expect("known");
        assert_eq!(
            bridge.value("2"),
            Err(
                "2 is out of range 0..=1 for this key: the kernel stores any other number as 1"
                    .into()
            )
        );
        let range = Shape::known(&key("net.ipv4.ip_local_port_range")).expect("known");
        assert_eq!(
            range.value("5000 4000"),
            Err("`5000 4000` is upside down: the kernel refuses a range whose first number is above the second".into())
        );
        assert_eq!(
            range.value("1024"),
            Err("`1024` has 1 field; this key holds 2 integers".into())
        );
    }

    #[test]
    fn shapes_are_inferred_from_what_the_kernel_prints() {
        assert_eq!(Shape::infer("4096\t131072\t6291456\n"), Shape::host_ints(3));
        assert_eq!(Shape::infer("cubic\n"), Shape::Text);
        // Text that only looks like a number in a form the kernel never prints: a string key.
        assert_eq!(Shape::infer("0123\n"), Shape::Text);
        assert_eq!(Shape::infer(""), Shape::Text);
        assert_eq!(
            Shape::infer("18446744073692774399\n")
                .value("18446744073692774399")
                .map(|v| v.to_string()),
            Ok("18446744073692774399".into())
        );
    }

    #[test]
    fn text_stays_text_and_numbers_in_it_are_normalised() {
        for (raw, want) in [
            (" bbr ", "bbr"),
            ("01  2", "1 2"),
            ("01 x", "01 x"),
            ("010 x", "010 x"),
        ] {
            assert_eq!(
                Shape::Text.value(raw).map(|v| v.to_string()),
                Ok(want.into()),
                "{raw:?}"
            );
        }
        assert!(
            Shape::Text.value("1 010").is_err(),
            "numbers only: ambiguous"
        );
    }

    #[test]
    fn keys_fwdguard_is_for_have_known_shapes() {
        for k in [
            "net.ipv4.ip_forward",
            "net.ipv4.conf.all.forwarding",
            "net.ipv4.conf.eth0.rp_filter",
            "net.ipv4.conf.default.proxy_arp",
            "net.ipv4.conf.all.ignore_routes_with_linkdown",
            "net.ipv6.conf.all.forwarding",
            "net.ipv6.conf.eth0.proxy_ndp",
            "net.ipv6.conf.all.ignore_routes_with_linkdown",
        ] {
            assert_eq!(Shape::known(&key(k)), Some(Shape::int(1)), "{k}");
        }
        assert_eq!(Shape::known(&key("net.core.somaxconn")), None);
        assert_eq!(Shape::known(&key("net.ipv6.conf.all.stable_secret")), None);
    }
}
