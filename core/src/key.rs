//! Sysctl key names: validated where they enter, and mapped to what can watch them.
//!
//! A key is written the way `sysctl(8)` accepts it: `net.ipv4.conf.all.forwarding` or
//! `net/ipv4/conf/all/forwarding`. In the dotted form a `/` stands for a literal dot inside one
//! component (a VLAN interface `eth0.100` is `net.ipv4.conf.eth0/100.forwarding`), exactly as
//! procps does it.

use std::fmt;
use std::path::PathBuf;

/// A validated sysctl key, stored as its path components below `/proc/sys`.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct SysctlKey {
    components: Vec<String>,
}

/// Why a key name was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum KeyError {
    #[error("a sysctl key must not be empty")]
    Empty,
    #[error(
        "`{0}` is an absolute path; name the key as sysctl(8) does, e.g. net.ipv4.conf.all.forwarding"
    )]
    Absolute(String),
    #[error("`{0}` has an empty component")]
    EmptyComponent(String),
    #[error("`{0}` contains `..` or `.` as a component")]
    Traversal(String),
    #[error("`{0}` is a pattern; name each key on its own (one [[guard]] per interface)")]
    Glob(String),
    #[error("`{key}` contains {what}, which no sysctl name has")]
    BadCharacter { key: String, what: String },
}

/// Which netconf value (per `net.ipvX.conf.DEVICE.LEAF`) the kernel announces over netlink.
///
/// Only these leaves send `RTM_NEWNETCONF` when written; any other key needs inotify and the
/// timed re-read.
const NETCONF_LEAVES: &[(&str, &[&str])] = &[
    (
        "ipv4",
        &[
            "forwarding",
            "rp_filter",
            "proxy_arp",
            "ignore_routes_with_linkdown",
        ],
    ),
    (
        "ipv6",
        &["forwarding", "proxy_ndp", "ignore_routes_with_linkdown"],
    ),
];

/// Address family of a netconf key or event.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Family {
    /// `AF_INET`.
    Ipv4,
    /// `AF_INET6`.
    Ipv6,
}

/// Which netconf attribute announces a key's value (`NETCONFA_*`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum NetconfLeaf {
    /// `forwarding`.
    Forwarding,
    /// `rp_filter` (IPv4).
    RpFilter,
    /// `proxy_arp` (IPv4) and `proxy_ndp` (IPv6): `NETCONFA_PROXY_NEIGH`.
    ProxyNeigh,
    /// `ignore_routes_with_linkdown`.
    IgnoreRoutesWithLinkdown,
}

impl NetconfLeaf {
    fn of(leaf: &str) -> Option<Self> {
        Some(match leaf {
            "forwarding" => NetconfLeaf::Forwarding,
            "rp_filter" => NetconfLeaf::RpFilter,
            "proxy_arp" | "proxy_ndp" => NetconfLeaf::ProxyNeigh,
            "ignore_routes_with_linkdown" => NetconfLeaf::IgnoreRoutesWithLinkdown,
            _ => return None,
        })
    }
}

/// The device part of a `net.ipvX.conf.DEVICE.*` key.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum ConfDevice {
    All,
    Default,
    Interface(String),
}

/// How changes to a key can be seen.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum Watch {
    /// The kernel sends a netconf event for every change: microseconds.
    Netconf {
        family: Family,
        device: ConfDevice,
        leaf: NetconfLeaf,
    },
    /// No event: an inotify watch on the `/proc/sys` file sees writes through that file, and the
    /// timed re-read catches the rest.
    File,
}

impl Watch {
    /// Whether the key's `/proc/sys` file wants an inotify watch: always without netconf
    /// events for it, and for every key while there are no netlink events at all (`netlink`
    /// says whether there are).
    pub fn needs_file_watch(&self, netlink: bool) -> bool {
        match self {
            Watch::File => true,
            Watch::Netconf { .. } => !netlink,
        }
    }
}

impl SysctlKey {
    /// Parses a key as `sysctl(8)` accepts it.
    pub fn parse(name: &str) -> Result<Self, KeyError> {
        let name = name.trim();
        if name.is_empty() {
            return Err(KeyError::Empty);
        }
        if name.starts_with('/') {
            return Err(KeyError::Absolute(name.to_owned()));
        }
        // procps: the first separator decides the form. In the dotted form `/` is a literal dot.
        let slashed = name
            .find(['.', '/'])
            .is_some_and(|i| name.as_bytes()[i] == b'/');
        let components: Vec<String> = if slashed {
            name.split('/').map(str::to_owned).collect()
        } else {
            name.split('.').map(|c| c.replace('/', ".")).collect()
        };
        for c in &components {
            if c.is_empty() {
                return Err(KeyError::EmptyComponent(name.to_owned()));
            }
            if c == "." || c == ".." {
                return Err(KeyError::Traversal(name.to_owned()));
            }
            if c.contains(['*', '?', '[']) {
                return Err(KeyError::Glob(name.to_owned()));
            }
            if let Some(bad) = c.chars().find(|ch| !ch.is_ascii_graphic() || *ch == '\\') {
                let what = if bad.is_whitespace() {
                    "white space".to_owned()
                } else {
                    format!("{bad:?}")
                };
                return Err(KeyError::BadCharacter {
                    key: name.to_owned(),
                    what,
                });
            }
        }
        // `net.ipv4.ip_forward` and `net.ipv4.conf.all.forwarding` are one knob in the kernel:
        // keep one spelling so that two guards on it are seen as duplicates.
        if components == ["net", "ipv4", "ip_forward"] {
            return Ok(Self::from_components(&[
                "net",
                "ipv4",
                "conf",
                "all",
                "forwarding",
            ]));
        }
        Ok(Self { components })
    }

    fn from_components(c: &[&str]) -> Self {
        Self {
            components: c.iter().map(|s| (*s).to_owned()).collect(),
        }
    }

    /// The path components below `/proc/sys`.
    pub fn components(&self) -> impl Iterator<Item = &str> {
        self.components.iter().map(String::as_str)
    }

    /// The name relative to `/proc/sys`, with `/`: `net/ipv4/conf/all/forwarding`.
    pub fn proc_name(&self) -> String {
        let path = self.proc_path();
        path.strip_prefix("/proc/sys")
            .unwrap_or(&path)
            .to_string_lossy()
            .into_owned()
    }

    /// The file that holds the value.
    pub fn proc_path(&self) -> PathBuf {
        let mut p = PathBuf::from("/proc/sys");
        p.extend(&self.components);
        p
    }

    /// How a change of this key can be seen.
    pub fn watch(&self) -> Watch {
        let c: Vec<&str> = self.components.iter().map(String::as_str).collect();
        if let ["net", proto, "conf", device, leaf] = c[..] {
            let family = match proto {
                "ipv4" => Some(Family::Ipv4),
                "ipv6" => Some(Family::Ipv6),
                _ => None,
            };
            let announced = NETCONF_LEAVES
                .iter()
                .any(|(p, leaves)| *p == proto && leaves.contains(&leaf));
            if let (Some(family), true, Some(leaf)) = (family, announced, NetconfLeaf::of(leaf)) {
                let device = match device {
                    "all" => ConfDevice::All,
                    "default" => ConfDevice::Default,
                    name => ConfDevice::Interface(name.to_owned()),
                };
                return Watch::Netconf {
                    family,
                    device,
                    leaf,
                };
            }
        }
        Watch::File
    }

    /// The interface this key belongs to, for `net.ipvX.conf.IFACE.*` keys.
    pub fn interface(&self) -> Option<&str> {
        match &self.components[..] {
            [net, _, conf, dev, _] if net == "net" && conf == "conf" => {
                (dev != "all" && dev != "default").then_some(dev.as_str())
            }
            _ => None,
        }
    }
}

impl fmt::Display for SysctlKey {
    /// The dotted form `sysctl(8)` prints, with dots inside a component written as `/`.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, c) in self.components.iter().enumerate() {
            if i > 0 {
                f.write_str(".")?;
            }
            f.write_str(&c.replace('.', "/"))?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_file_watch_is_wanted_without_netconf_events_for_the_key() {
        let netconf = key("net.ipv4.conf.all.forwarding").watch();
        let file = key("net.ipv4.ip_default_ttl").watch();
        assert!(!netconf.needs_file_watch(true));
        assert!(netconf.needs_file_watch(false), "netlink is gone");
        assert!(file.needs_file_watch(true) && file.needs_file_watch(false));
    }

    fn key(s: &str) -> SysctlKey {
        SysctlKey::parse(s).expect(s)
    }

    #[test]
    fn dotted_and_slashed_forms_are_the_same_key() {
        assert_eq!(
            key("net.ipv4.conf.all.forwarding"),
            key("net/ipv4/conf/all/forwarding")
        );
        assert_eq!(
            key("net.ipv4.conf.all.forwarding").proc_path(),
            PathBuf::from("/proc/sys/net/ipv4/conf/all/forwarding")
        );
    }

    #[test]
    fn ip_forward_is_conf_all_forwarding() {
        assert_eq!(
            key("net.ipv4.ip_forward"),
            key("net.ipv4.conf.all.forwarding")
        );
        assert_eq!(
            key("net/ipv4/ip_forward").to_string(),
            "net.ipv4.conf.all.forwarding"
        );
    }

    #[test]
    fn vlan_interface_dots_follow_procps() {
        let k = key("net.ipv4.conf.eth0/100.forwarding");
        assert_eq!(
            k.proc_path(),
            PathBuf::from("/proc/sys/net/ipv4/conf/eth0.100/forwarding")
        );
        assert_eq!(k, key("net/ipv4/conf/eth0.100/forwarding"));
        assert_eq!(k.to_string(), "net.ipv4.conf.eth0/100.forwarding");
        assert_eq!(k.interface(), Some("eth0.100"));
    }

    #[test]
    fn bad_names_are_refused_with_the_reason() {
        assert_eq!(SysctlKey::parse(" "), Err(KeyError::Empty));
        assert!(matches!(
            SysctlKey::parse("/proc/sys/net/ipv4/ip_forward"),
            Err(KeyError::Absolute(_))
        ));
        assert!(matches!(
            SysctlKey::parse("net/../../etc/passwd"),
            Err(KeyError::Traversal(_))
        ));
        assert!(matches!(
            SysctlKey::parse("net..ipv4"),
            Err(KeyError::EmptyComponent(_))
        ));
        assert!(matches!(
            SysctlKey::parse("net.ipv4."),
            Err(KeyError::EmptyComponent(_))
        ));
        let err = SysctlKey::parse("net.ipv4.conf.all. forwarding").unwrap_err();
        assert!(err.to_string().contains("white space"), "{err}");
        assert!(SysctlKey::parse("net\\ipv4").is_err());
        assert!(matches!(
            SysctlKey::parse("net.ipv4.conf.*.forwarding"),
            Err(KeyError::Glob(_))
        ));
    }

    #[test]
    fn watch_kinds() {
        assert_eq!(
            key("net.ipv4.ip_forward").watch(),
            Watch::Netconf {
                family: Family::Ipv4,
                device: ConfDevice::All,
                leaf: NetconfLeaf::Forwarding,
            }
        );
        assert_eq!(
            key("net.ipv6.conf.default.forwarding").watch(),
            Watch::Netconf {
                family: Family::Ipv6,
                device: ConfDevice::Default,
                leaf: NetconfLeaf::Forwarding,
            }
        );
        assert_eq!(
            key("net.ipv4.conf.docker0.rp_filter").watch(),
            Watch::Netconf {
                family: Family::Ipv4,
                device: ConfDevice::Interface("docker0".into()),
                leaf: NetconfLeaf::RpFilter,
            }
        );
        assert_eq!(key("net.ipv6.conf.all.rp_filter").watch(), Watch::File);
        assert_eq!(
            key("net.bridge.bridge-nf-call-iptables").watch(),
            Watch::File
        );
        assert_eq!(
            key("net.ipv4.conf.all.accept_redirects").watch(),
            Watch::File
        );
    }
}
