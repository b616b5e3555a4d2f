//! Where observations come from. Each source only says *which* keys may have changed; the
//! daemon then re-reads `/proc/sys` rather than trusting an event's payload.

pub mod files;
pub mod netconf;
pub mod netlink;
