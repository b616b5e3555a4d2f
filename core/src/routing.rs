//! Which guards a kernel event concerns: the interface table (index to name, for per-interface
//! keys) and how each guard's key is watched. Pure: the loop feeds it events and link dumps and
//! gets back one [`Observation`] per guard concerned.

use std::collections::HashMap;

use serde::Serialize;

use crate::key::{ConfDevice, SysctlKey, Watch};
use crate::observation::{Device, KernelEvent, NetconfValues, Observation, Scope, Trigger};
use crate::value::Value;

/// A guard's stable name for as long as its key is guarded, across reloads.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize)]
#[serde(transparent)]
pub struct GuardId(pub u32);

#[derive(Debug, Clone)]
struct Route {
    id: GuardId,
    key: SysctlKey,
    watch: Watch,
}

/// The routing table.
#[derive(Debug, Clone, Default)]
pub struct Routes {
    routes: Vec<Route>,
    /// Interface index to name.
    links: HashMap<u32, String>,
}

impl Routes {
    /// Puts the guards of a (new) configuration in place; the link table stays.
    pub fn set_guards<'a>(&mut self, guards: impl IntoIterator<Item = (GuardId, &'a SysctlKey)>) {
        self.routes = guards
            .into_iter()
            .map(|(id, key)| Route {
                id,
                key: key.clone(),
                watch: key.watch(),
            })
            .collect();
    }

    /// How the guard's key is watched.
    pub fn watch(&self, id: GuardId) -> Option<&Watch> {
        self.routes.iter().find(|r| r.id == id).map(|r| &r.watch)
    }

    /// The guard of `key`, if it is guarded.
    pub fn guard_of(&self, key: &SysctlKey) -> Option<GuardId> {
        self.routes.iter().find(|r| r.key == *key).map(|r| r.id)
    }

    /// The guards an observation from outside (a scope) concerns.
    pub fn resolve(&self, scope: &Scope) -> Vec<GuardId> {
        match scope {
            Scope::All => self.routes.iter().map(|r| r.id).collect(),
            Scope::Key(key) => self.guard_of(key).into_iter().collect(),
        }
    }

    /// A fresh interface table (a link dump). Guards on an interface whose index changed
    /// meanwhile (it came, went or was renamed while events were lost) get a link observation.
    pub fn set_links(&mut self, links: Vec<(u32, String)>, out: &mut Vec<(GuardId, Observation)>) {
        let new: HashMap<u32, String> = links.into_iter().collect();
        let index_of = |table: &HashMap<u32, String>, name: &str| {
            table.iter().find(|(_, n)| *n == name).map(|(i, _)| *i)
        };
        for r in &self.routes {
            if let Some(name) = r.key.interface()
                && index_of(&self.links, name) != index_of(&new, name)
            {
                out.push((r.id, self.observe(r, Trigger::Link, None)));
            }
        }
        self.links = new;
    }

    /// The guards a kernel event concerns, each with what it says about its key.
    pub fn route(&mut self, event: &KernelEvent, out: &mut Vec<(GuardId, Observation)>) {
        match event {
            KernelEvent::Netconf {
                family,
                device,
                values,
            } => {
                let name = match device {
                    Device::Index(i) => self.links.get(i).map(String::as_str),
                    _ => None,
                };
                for r in &self.routes {
                    let Watch::Netconf {
                        family: f,
                        device: d,
                        leaf,
                    } = &r.watch
                    else {
                        continue;
                    };
                    let hit = f == family
                        && match (d, device) {
                            (ConfDevice::All, Device::All)
                            | (ConfDevice::Default, Device::Default) => true,
                            // An index not in the table yet: its link event is still on the
                            // way, so check every per-interface guard rather than miss one.
                            (ConfDevice::Interface(n), Device::Index(_)) => {
                                name.is_none_or(|m| m == n)
                            }
                            _ => false,
                        };
                    if !hit {
                        continue;
                    }
                    // A change event carries the attribute that changed. One that carries
                    // other attributes but not this key's is about another knob.
                    let value = values.get(*leaf);
                    if value.is_none() && *values != NetconfValues::default() {
                        continue;
                    }
                    // The value is only this guard's for sure when the device is known.
                    let value = value
                        .filter(|_| !matches!(device, Device::Index(_)) || name.is_some())
                        .map(|v| Value::new(&v.to_string()));
                    out.push((r.id, self.observe(r, Trigger::Netconf, value)));
                }
            }
            KernelEvent::LinkNew { index, name } => {
                if let Some(old) = self.links.insert(*index, name.clone())
                    && old != *name
                {
                    tracing::info!("interface {old} is now called {name}");
                    self.on_interface(&old, out);
                }
                self.on_interface(name, out);
            }
            KernelEvent::LinkDel { index, name } => {
                self.links.remove(index);
                self.on_interface(name, out);
            }
            KernelEvent::Overrun => {
                for r in &self.routes {
                    out.push((r.id, self.observe(r, Trigger::Overrun, None)));
                }
            }
        }
    }

    fn on_interface(&self, name: &str, out: &mut Vec<(GuardId, Observation)>) {
        for r in &self.routes {
            if r.key.interface() == Some(name) {
                out.push((r.id, self.observe(r, Trigger::Link, None)));
            }
        }
    }

    fn observe(&self, r: &Route, trigger: Trigger, value: Option<Value>) -> Observation {
        Observation {
            scope: Scope::Key(r.key.clone()),
            trigger,
            value,
            cause: None,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::key::Family;

    fn key(s: &str) -> SysctlKey {
        SysctlKey::parse(s).expect("key")
    }

    fn routes() -> Routes {
        let keys = [
            key("net.ipv4.conf.all.forwarding"),
            key("net.ipv6.conf.default.forwarding"),
            key("net.ipv4.conf.eth0.forwarding"),
            key("net.ipv4.conf.eth0.rp_filter"),
            key("net.ipv4.tcp_ecn"),
        ];
        let mut r = Routes::default();
        r.set_guards(keys.iter().enumerate().map(|(i, k)| (GuardId(i as u32), k)));
        r.set_links(vec![(1, "lo".into()), (2, "eth0".into())], &mut Vec::new());
        r
    }

    fn forwarding(family: Family, device: Device, v: i32) -> KernelEvent {
        KernelEvent::Netconf {
            family,
            device,
            values: NetconfValues {
                forwarding: Some(v),
                ..NetconfValues::default()
            },
        }
    }

    fn route(r: &mut Routes, e: KernelEvent) -> Vec<(u32, Trigger, Option<String>)> {
        let mut out = Vec::new();
        r.route(&e, &mut out);
        out.into_iter()
            .map(|(id, o)| (id.0, o.trigger, o.value.map(|v| v.to_string())))
            .collect()
    }

    #[test]
    fn a_netconf_event_reaches_its_guard_with_the_value_it_carries() {
        let mut r = routes();
        assert_eq!(
            route(&mut r, forwarding(Family::Ipv4, Device::All, 0)),
            [(0, Trigger::Netconf, Some("0".into()))]
        );
        assert_eq!(
            route(&mut r, forwarding(Family::Ipv6, Device::Default, 1)),
            [(1, Trigger::Netconf, Some("1".into()))]
        );
        // Another family's `all` is another knob.
        assert_eq!(route(&mut r, forwarding(Family::Ipv6, Device::All, 0)), []);
    }

    #[test]
    fn a_device_event_reaches_the_guard_of_that_attribute_only() {
        let mut r = routes();
        assert_eq!(
            route(&mut r, forwarding(Family::Ipv4, Device::Index(2), 0)),
            [(2, Trigger::Netconf, Some("0".into()))]
        );
        let rp = KernelEvent::Netconf {
            family: Family::Ipv4,
            device: Device::Index(2),
            values: NetconfValues {
                rp_filter: Some(2),
                ..NetconfValues::default()
            },
        };
        assert_eq!(route(&mut r, rp), [(3, Trigger::Netconf, Some("2".into()))]);
        // lo's event is not eth0's.
        assert_eq!(
            route(&mut r, forwarding(Family::Ipv4, Device::Index(1), 0)),
            []
        );
    }

    #[test]
    fn an_unknown_index_checks_every_interface_guard_by_reading() {
        let mut r = routes();
        assert_eq!(
            route(&mut r, forwarding(Family::Ipv4, Device::Index(9), 0)),
            [(2, Trigger::Netconf, None)]
        );
    }

    #[test]
    fn links_coming_renamed_and_going_reach_their_guards() {
        let mut r = routes();
        let new = |index, name: &str| KernelEvent::LinkNew {
            index,
            name: name.into(),
        };
        // eth0 renamed away: its guards re-check (and find their key gone).
        assert_eq!(
            route(&mut r, new(2, "wan0")),
            [(2, Trigger::Link, None), (3, Trigger::Link, None)]
        );
        // A new link takes the name.
        assert_eq!(
            route(&mut r, new(7, "eth0")),
            [(2, Trigger::Link, None), (3, Trigger::Link, None)]
        );
        assert_eq!(
            route(&mut r, forwarding(Family::Ipv4, Device::Index(7), 0)),
            [(2, Trigger::Netconf, Some("0".into()))]
        );
        assert_eq!(
            route(
                &mut r,
                KernelEvent::LinkDel {
                    index: 7,
                    name: "eth0".into()
                }
            ),
            [(2, Trigger::Link, None), (3, Trigger::Link, None)]
        );
    }

    #[test]
    fn an_overrun_reaches_every_guard_and_a_dump_the_changed_interfaces() {
        let mut r = routes();
        assert_eq!(route(&mut r, KernelEvent::Overrun).len(), 5);
        let mut out = Vec::new();
        // eth0 came back with another index while events were lost.
        r.set_links(vec![(1, "lo".into()), (8, "eth0".into())], &mut out);
        let ids: Vec<u32> = out.iter().map(|(id, _)| id.0).collect();
        assert_eq!(ids, [2, 3]);
    }

    #[test]
    fn outside_observations_resolve_to_guards() {
        let r = routes();
        assert_eq!(r.resolve(&Scope::All).len(), 5);
        assert_eq!(
            r.resolve(&Scope::Key(key("net.ipv4.ip_forward"))),
            [GuardId(0)]
        );
        assert_eq!(r.resolve(&Scope::Key(key("net.ipv4.tcp_syncookies"))), []);
        assert_eq!(r.watch(GuardId(4)), Some(&Watch::File));
    }
}
