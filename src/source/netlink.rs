//! fwdguard's two rtnetlink sockets.
//!
//! [`EventSocket`] subscribes to the netconf and link multicast groups and turns what the
//! kernel sends into [`KernelEvent`]s. [`RequestSocket`] asks the kernel for the current
//! state (link dump, `GETNETCONF`). They are separate on purpose: a dump sent on the
//! subscription socket has to share its receive queue with the event flood, and under a
//! small buffer that livelocked (docs/kernel-and-systemd-facts.md#separate-request-socket).
//!
//! Nothing read from the kernel is fatal: unknown message types are skipped at `trace!`,
//! malformed ones at `debug!`.

use std::io;

use netlink_packet_core::{
    NLM_F_DUMP, NLM_F_DUMP_INTR, NLM_F_REQUEST, NetlinkBuffer, NetlinkHeader, NetlinkMessage,
    NetlinkPayload,
};
use netlink_sys::{Socket, SocketAddr, protocols::NETLINK_ROUTE};
use tokio::io::Interest;
use tokio::io::unix::AsyncFd;
use tracing::{debug, trace};

use super::netconf::{IFINDEX_ALL, IFINDEX_DEFAULT, LinkSummary, NetconfMessage, RtnlMessage};
use crate::key::Family;

/// Whether this process may subscribe to netconf events (for `fwdguard check`).
pub fn can_subscribe() -> io::Result<()> {
    EventSocket::open_socket().map(drop)
}
use crate::observation::{Device, KernelEvent};

/// Receive buffer asked for on the event socket. The kernel doubles it and caps it at
/// `net.core.rmem_max`.
const EVENT_RCVBUF: usize = 1 << 20;
/// How long a request waits for the kernel's answer.
const REQUEST_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(5);
/// At most this many datagrams per [`EventSocket::next_batch`], so a storm cannot starve
/// the caller's other work.
const MAX_DATAGRAMS_PER_BATCH: usize = 256;
/// Initial user-space buffer for one datagram; grows when a bigger one shows up. A dump
/// datagram is at most 32 KiB; a multicast one holds one message.
const DATAGRAM_BUF: usize = 64 * 1024;
/// How often a `GETLINK` dump is retried when the kernel marks it inconsistent.
const DUMP_ATTEMPTS: usize = 5;

fn af(family: Family) -> u8 {
    match family {
        Family::Ipv4 => libc::AF_INET as u8,
        Family::Ipv6 => libc::AF_INET6 as u8,
    }
}

fn family_of(af: u8) -> Option<Family> {
    match i32::from(af) {
        libc::AF_INET => Some(Family::Ipv4),
        libc::AF_INET6 => Some(Family::Ipv6),
        _ => None,
    }
}

fn device_of(ifindex: i32) -> Option<Device> {
    match ifindex {
        IFINDEX_ALL => Some(Device::All),
        IFINDEX_DEFAULT => Some(Device::Default),
        index => u32::try_from(index)
            .ok()
            .filter(|&i| i > 0)
            .map(Device::Index),
    }
}

/// Where the daemon's loop takes its netconf and link events from: the [`EventSocket`], or in
/// the loop's unit tests a script of batches and errors.
pub trait KernelEvents {
    /// Waits for events and appends them to `out` (see [`EventSocket::next_batch`]). An error
    /// is the source failing: the loop re-reads every key, and gives the source up after many
    /// in a row. Cancel safe: the loop drops the future when another source is ready first.
    fn next_batch(&mut self, out: &mut Vec<KernelEvent>) -> impl Future<Output = io::Result<()>>;
}

impl KernelEvents for EventSocket {
    fn next_batch(&mut self, out: &mut Vec<KernelEvent>) -> impl Future<Output = io::Result<()>> {
        EventSocket::next_batch(self, out)
    }
}

/// The subscription socket: `RTNLGRP_IPV4_NETCONF`, `RTNLGRP_IPV6_NETCONF`, `RTNLGRP_LINK`.
#[derive(Debug)]
pub struct EventSocket {
    socket: AsyncFd<Socket>,
    buf: Vec<u8>,
    /// An ENOBUFS (or a truncated datagram) was seen and not reported yet.
    overrun_pending: bool,
}

impl EventSocket {
    /// Opens a non-blocking rtnetlink socket with a bigger receive buffer and joins the
    /// groups. Must be called from within a tokio runtime (it registers with the reactor).
    ///
    pub fn open() -> io::Result<Self> {
        let socket = Self::open_socket().map_err(|e| context("netlink event socket", e))?;
        debug!(
            rcvbuf = socket.get_rx_buf_sz().ok(),
            "netlink event socket open"
        );
        // SAFETY: `netlink_sys::Socket` owns its descriptor: it stays open, and `as_raw_fd`
        // returns the same one, until the socket is dropped, which only happens with the
        // `AsyncFd`. Readable only: with EPOLLOUT in the interest set, every recv that frees
        // queue space woke the loop once more for nothing.
        #[allow(unsafe_code)]
        let socket = unsafe { AsyncFd::register_with_interest(socket, Interest::READABLE) }
            .map_err(|e| context("netlink event socket", e.into()))?;
        Ok(EventSocket {
            socket,
            buf: Vec::with_capacity(DATAGRAM_BUF),
            overrun_pending: false,
        })
    }

    fn open_socket() -> io::Result<Socket> {
        let mut socket = Socket::new(NETLINK_ROUTE)?;
        socket.set_non_blocking(true)?;
        // Best effort: the default (rmem_default, ~200 KiB) still works, just overruns sooner.
        // SO_RCVBUFFORCE passes net.core.rmem_max where we have CAP_NET_ADMIN (as a restoring
        // guard does); SO_RCVBUF is capped by it.
        if let Err(e) = nix::sys::socket::setsockopt(
            &socket,
            nix::sys::socket::sockopt::RcvBufForce,
            &EVENT_RCVBUF,
        ) {
            debug!(error = %e, "netlink event socket: SO_RCVBUFFORCE failed, trying SO_RCVBUF");
            if let Err(e) = socket.set_rx_buf_sz(EVENT_RCVBUF as libc::c_int) {
                debug!(error = %e, "netlink event socket: SO_RCVBUF failed, keeping the default");
            }
        }
        socket.bind(&SocketAddr::new(0, 0))?;
        for group in [
            libc::RTNLGRP_IPV4_NETCONF,
            libc::RTNLGRP_IPV6_NETCONF,
            libc::RTNLGRP_LINK,
        ] {
            socket.add_membership(group)?;
        }
        Ok(socket)
    }

    /// Waits until a datagram is readable, then receives until one yields events (or at most
    /// 256 datagrams, so a storm of messages we skip cannot starve the caller), appending the
    /// decoded events to `out`.
    ///
    /// ENOBUFS means events were lost. The kernel reports it once and then drops further
    /// overflowing messages silently until the queue has been drained, so a re-read taken
    /// when the error arrives can miss the last change. Hence [`KernelEvent::Overrun`] is
    /// pushed only once recv finds the queue empty; when a call stops at the bound first,
    /// the overrun stays pending for a later call.
    ///
    /// Cancel safe: a datagram is either fully decoded into `out` or still queued.
    pub async fn next_batch(&mut self, out: &mut Vec<KernelEvent>) -> io::Result<()> {
        loop {
            let mut guard = self
                .socket
                .readable()
                .await
                .map_err(|e| context("netlink event socket", e))?;
            let mut received = 0;
            while received < MAX_DATAGRAMS_PER_BATCH {
                self.buf.clear();
                let buf = &mut self.buf;
                match guard.try_io(|socket| socket.get_ref().recv(buf, libc::MSG_TRUNC)) {
                    // WouldBlock: the queue is empty, and readiness has been cleared.
                    Err(_would_block) => {
                        if std::mem::take(&mut self.overrun_pending) {
                            out.push(KernelEvent::Overrun);
                        } else if received == 0 {
                            break; // Spurious wake-up: wait again.
                        }
                        return Ok(());
                    }
                    Ok(Ok(len)) => {
                        received += 1;
                        if len > self.buf.len() {
                            debug!(
                                len,
                                buf = self.buf.len(),
                                "netlink event truncated, treating as overrun"
                            );
                            self.buf.reserve(len);
                            self.overrun_pending = true;
                            continue;
                        }
                        trace!(len, "netlink event datagram");
                        self.overrun_pending |= decode_events(&self.buf, out);
                        // Act on the first datagram that says something, rather than draining
                        // a fan-out of ~100 messages first: the caller comes straight back
                        // (readiness stays set until recv finds the queue empty).
                        if !out.is_empty() {
                            return Ok(());
                        }
                    }
                    Ok(Err(e)) if e.raw_os_error() == Some(libc::ENOBUFS) => {
                        received += 1;
                        debug!(
                            "netlink event socket: ENOBUFS, events lost; re-read pending until drained"
                        );
                        self.overrun_pending = true;
                    }
                    Ok(Err(e)) if e.kind() == io::ErrorKind::Interrupted => {}
                    Ok(Err(e)) => return Err(context("netlink event socket recv", e)),
                }
            }
            if received > 0 {
                return Ok(());
            }
        }
    }
}

/// Decodes one datagram from the event socket into `out`. Returns true when the kernel
/// said messages were lost (`NLMSG_OVERRUN`, which Linux does not actually send).
fn decode_events(datagram: &[u8], out: &mut Vec<KernelEvent>) -> bool {
    let mut overrun = false;
    for msg in split_messages(datagram) {
        match msg.payload {
            NetlinkPayload::InnerMessage(inner) => out.extend(event_of(inner)),
            NetlinkPayload::Overrun(_) => overrun = true,
            other => trace!(?other, "netlink event socket: control message ignored"),
        }
    }
    overrun
}

fn event_of(msg: RtnlMessage) -> Option<KernelEvent> {
    match msg {
        RtnlMessage::NewNetconf(netconf) => netconf_event(&netconf),
        RtnlMessage::NewLink(link) => named(link, "RTM_NEWLINK without IFLA_IFNAME ignored")
            .map(|(index, name)| KernelEvent::LinkNew { index, name }),
        RtnlMessage::DelLink(link) => named(link, "RTM_DELLINK without IFLA_IFNAME ignored")
            .map(|(index, name)| KernelEvent::LinkDel { index, name }),
        // RTM_DELNETCONF comes with a link's deletion (then RTM_DELLINK follows) or its
        // rename (then RTM_NEWNETCONF follows): there is nothing left to re-read.
        other => {
            trace!(?other, "netlink event ignored");
            None
        }
    }
}

/// A link message's index and name. Without `IFLA_IFNAME` (the kernel always sends it: only
/// odd input) there is nothing to know the link by: `None`, logged as `ignored` says.
fn named(link: LinkSummary, ignored: &str) -> Option<(u32, String)> {
    match link.name {
        Some(name) => Some((link.index, name)),
        None => {
            debug!(index = link.index, "{ignored}");
            None
        }
    }
}

fn netconf_event(netconf: &NetconfMessage) -> Option<KernelEvent> {
    let Some(family) = family_of(netconf.family) else {
        trace!(
            family = netconf.family,
            "netconf event of another family ignored"
        );
        return None;
    };
    match netconf.ifindex().map(|i| (i, device_of(i))) {
        Some((_, Some(device))) => Some(KernelEvent::Netconf {
            family,
            device,
            values: netconf.values(),
        }),
        Some((ifindex, None)) => {
            debug!(ifindex, "netconf event with an odd ifindex ignored");
            None
        }
        None => {
            debug!(?netconf, "netconf event without NETCONFA_IFINDEX ignored");
            None
        }
    }
}

/// The netlink messages of one datagram, decoded. A message that does not decode is logged
/// and skipped; a broken length field ends the datagram.
fn split_messages(datagram: &[u8]) -> impl Iterator<Item = NetlinkMessage<RtnlMessage>> + '_ {
    let mut rest = datagram;
    std::iter::from_fn(move || {
        while !rest.is_empty() {
            let len = match NetlinkBuffer::new_checked(rest) {
                Ok(buf) => buf.length() as usize,
                Err(e) => {
                    debug!(error = %e, "malformed netlink message, rest of datagram dropped");
                    rest = &[];
                    return None;
                }
            };
            let (bytes, tail) = rest.split_at(len);
            // NLMSG_ALIGN: the next message starts at a multiple of 4.
            rest = tail
                .get(len.next_multiple_of(4) - len..)
                .unwrap_or_default();
            match NetlinkMessage::<RtnlMessage>::deserialize(bytes) {
                Ok(msg) => {
                    trace!(?msg, "netlink message");
                    return Some(msg);
                }
                Err(e) => debug!(error = %e, len, "malformed netlink message skipped"),
            }
        }
        None
    })
}

/// A separate socket for requests (dumps must not share the subscription socket: that
/// livelocked, docs/kernel-and-systemd-facts.md#separate-request-socket). Non-blocking: a dump after an overrun runs beside the loop's other
/// work, and every request gives up after a timeout.
#[derive(Debug)]
pub struct RequestSocket {
    socket: AsyncFd<Socket>,
    /// Our port id: replies to us carry it.
    port: u32,
    /// Sequence number of the last request.
    seq: u32,
    buf: Vec<u8>,
}

impl RequestSocket {
    /// Opens a non-blocking rtnetlink socket bound to a kernel-assigned port. Must be called
    /// from within a tokio runtime.
    pub fn open() -> io::Result<Self> {
        let mut socket =
            Socket::new(NETLINK_ROUTE).map_err(|e| context("netlink request socket", e))?;
        let addr = socket
            .bind_auto()
            .map_err(|e| context("netlink request socket bind", e))?;
        socket
            .set_non_blocking(true)
            .map_err(|e| context("netlink request socket", e))?;
        // SAFETY: as for the event socket: the `Socket` owns its descriptor until it is
        // dropped, which only happens with the `AsyncFd`.
        #[allow(unsafe_code)]
        let socket = unsafe { AsyncFd::register_with_interest(socket, Interest::READABLE) }
            .map_err(|e| context("netlink request socket", e.into()))?;
        Ok(RequestSocket {
            socket,
            port: addr.port_number(),
            seq: 0,
            buf: Vec::with_capacity(DATAGRAM_BUF),
        })
    }

    /// RTM_GETLINK dump: every link's index and name.
    ///
    /// A dump the kernel marks inconsistent (`NLM_F_DUMP_INTR`: links changed while it ran)
    /// is retried a few times.
    pub async fn links(&mut self) -> io::Result<Vec<(u32, String)>> {
        for attempt in 1..=DUMP_ATTEMPTS {
            match timed(self.dump_links_once())
                .await
                .map_err(|e| context("netlink GETLINK dump", e))?
            {
                Some(links) => return Ok(links),
                None => debug!(
                    attempt,
                    "netlink GETLINK dump interrupted by a change, retrying"
                ),
            }
        }
        Err(io::Error::other(format!(
            "netlink GETLINK dump: interrupted by link changes {DUMP_ATTEMPTS} times in a row"
        )))
    }

    /// One dump; `None` when it was interrupted.
    async fn dump_links_once(&mut self) -> io::Result<Option<Vec<(u32, String)>>> {
        let seq = self.send(NLM_F_REQUEST | NLM_F_DUMP, RtnlMessage::GetLinkDump)?;
        let mut links = Vec::new();
        let mut interrupted = false;
        loop {
            for msg in self.replies_to(seq).await? {
                interrupted |= msg.header.flags & NLM_F_DUMP_INTR != 0;
                match msg.payload {
                    NetlinkPayload::InnerMessage(RtnlMessage::NewLink(link)) => {
                        links.extend(named(link, "dumped link without IFLA_IFNAME skipped"))
                    }
                    NetlinkPayload::Done(done) if done.code < 0 => {
                        return Err(io::Error::from_raw_os_error(-done.code));
                    }
                    NetlinkPayload::Done(_) => return Ok((!interrupted).then_some(links)),
                    NetlinkPayload::Error(e) if e.code.is_some() => return Err(e.to_io()),
                    other => trace!(?other, "netlink GETLINK dump: message ignored"),
                }
            }
        }
    }

    /// RTM_GETNETCONF doit for (family, `IFINDEX_ALL`): `Ok(Some(forwarding))` when the kernel
    /// speaks netconf for this family, `Ok(None)` when it answers EOPNOTSUPP, EAFNOSUPPORT or
    /// ENODEV, `Err` for other failures.
    ///
    /// A family without a netconf handler gets EOPNOTSUPP (seen on 6.18 for `AF_UNSPEC`,
    /// `AF_MPLS` without `mpls_router`, and family 99); `ipv6.disable=1` skips registering
    /// the IPv6 handlers, so IPv6 then lands there too. `disable_ipv6=1` still answers.
    pub async fn netconf_forwarding(&mut self, family: Family) -> io::Result<Option<i32>> {
        let what = || format!("netlink GETNETCONF {family:?}");
        timed(self.netconf_forwarding_once(family))
            .await
            .map_err(|e| context(&what(), e))
    }

    async fn netconf_forwarding_once(&mut self, family: Family) -> io::Result<Option<i32>> {
        let what = || format!("netlink GETNETCONF {family:?}");
        let request = RtnlMessage::GetNetconf(NetconfMessage::request(af(family), IFINDEX_ALL));
        let seq = self.send(NLM_F_REQUEST, request)?;
        loop {
            for msg in self.replies_to(seq).await? {
                match msg.payload {
                    NetlinkPayload::InnerMessage(RtnlMessage::NewNetconf(netconf)) => {
                        return match netconf.forwarding() {
                            Some(forwarding) => Ok(Some(forwarding)),
                            None => Err(io::Error::new(
                                io::ErrorKind::InvalidData,
                                format!("{}: reply without NETCONFA_FORWARDING", what()),
                            )),
                        };
                    }
                    NetlinkPayload::Error(e) if e.code.is_some() => {
                        let e = e.to_io();
                        return match e.raw_os_error() {
                            Some(libc::EOPNOTSUPP | libc::EAFNOSUPPORT | libc::ENODEV) => {
                                debug!(error = %e, "{}: no netconf for this family", what());
                                Ok(None)
                            }
                            _ => Err(e),
                        };
                    }
                    other => trace!(?other, "{}: message ignored", what()),
                }
            }
        }
    }

    /// Waits for the next datagram: the messages in it that answer request `seq` (late replies
    /// to an earlier request are skipped).
    async fn replies_to(&mut self, seq: u32) -> io::Result<Vec<NetlinkMessage<RtnlMessage>>> {
        recv_full(&self.socket, &mut self.buf).await?;
        Ok(split_messages(&self.buf)
            .filter(|msg| {
                let ours = is_reply(&msg.header, self.port, seq);
                if !ours {
                    trace!(?msg.header, "netlink reply to an earlier request skipped");
                }
                ours
            })
            .collect())
    }

    /// Sends one request to the kernel; returns its sequence number.
    fn send(&mut self, flags: u16, message: RtnlMessage) -> io::Result<u32> {
        self.seq = self.seq.wrapping_add(1).max(1);
        let mut header = NetlinkHeader::default();
        header.flags = flags;
        header.sequence_number = self.seq;
        let mut msg = NetlinkMessage::new(header, NetlinkPayload::InnerMessage(message));
        msg.finalize();
        let mut bytes = vec![0; msg.buffer_len()];
        msg.serialize(&mut bytes);
        trace!(?msg, "netlink request");
        // A request is small and the kernel handles it inside sendto: this does not wait.
        let sent = self
            .socket
            .get_ref()
            .send_to(&bytes, &SocketAddr::new(0, 0), 0)?;
        if sent != bytes.len() {
            return Err(io::Error::new(
                io::ErrorKind::WriteZero,
                format!("sent {sent} of {} bytes", bytes.len()),
            ));
        }
        Ok(self.seq)
    }
}

/// Whether a message answers our request `seq`. Stale replies (an earlier request given up
/// after an error) carry older sequence numbers.
fn is_reply(header: &NetlinkHeader, port: u32, seq: u32) -> bool {
    header.sequence_number == seq && header.port_number == port
}

/// Gives up on a request the kernel does not answer: an error the daemon logs and survives.
async fn timed<T>(request: impl Future<Output = io::Result<T>>) -> io::Result<T> {
    tokio::time::timeout(REQUEST_TIMEOUT, request)
        .await
        .unwrap_or_else(|_| {
            Err(io::Error::new(
                io::ErrorKind::TimedOut,
                format!("no answer within {REQUEST_TIMEOUT:?}"),
            ))
        })
}

/// Receives one whole datagram into `buf`, sized by peeking first.
async fn recv_full(socket: &AsyncFd<Socket>, buf: &mut Vec<u8>) -> io::Result<()> {
    loop {
        let mut ready = socket.readable().await?;
        let result = ready.try_io(|socket| {
            let socket = socket.get_ref();
            buf.clear();
            let len = socket.recv(buf, libc::MSG_PEEK | libc::MSG_TRUNC)?;
            buf.clear();
            buf.reserve(len);
            socket.recv(buf, 0)
        });
        match result {
            Ok(Ok(len)) => {
                trace!(len, "netlink reply datagram");
                return Ok(());
            }
            Ok(Err(e)) if e.kind() == io::ErrorKind::Interrupted => continue,
            Ok(Err(e)) => return Err(e),
            Err(_would_block) => continue,
        }
    }
}

fn context(what: &str, e: io::Error) -> io::Error {
    io::Error::new(e.kind(), format!("{what}: {e}"))
}

#[cfg(test)]
mod tests {
    use std::fs;
    use std::time::Duration;

    use super::super::netconf::captured::{self, bytes};
    use super::*;
    use crate::observation::NetconfValues;

    /// A netconf event carrying only forwarding, as a change of it sends.
    fn forwarding(family: Family, device: Device, value: i32) -> KernelEvent {
        KernelEvent::Netconf {
            family,
            device,
            values: NetconfValues {
                forwarding: Some(value),
                ..NetconfValues::default()
            },
        }
    }

    /// Family and device of a netconf event.
    fn at(e: &KernelEvent) -> Option<(Family, Device)> {
        match e {
            KernelEvent::Netconf { family, device, .. } => Some((*family, *device)),
            _ => None,
        }
    }

    // ---- decoding, no privileges ----

    #[test]
    fn decodes_a_datagram_of_captured_messages() {
        let mut datagram = Vec::new();
        for hex in [
            captured::NEWNETCONF_V4_ALL_FORWARDING_1,
            captured::NEWNETCONF_V6_DEFAULT_FORWARDING_1,
            captured::NEWNETCONF_V4_LO_RP_FILTER_2,
            captured::NEWNETCONF_V4_NEW_DEVICE,
            captured::NEWLINK_D0,
            captured::DELNETCONF_V4_DEVICE,
            captured::DELLINK_D1,
            captured::GETLINK_DUMP_DONE,
        ] {
            datagram.extend(bytes(hex));
        }
        let mut out = Vec::new();
        assert!(!decode_events(&datagram, &mut out));
        use KernelEvent::*;
        assert_eq!(out[0], forwarding(Family::Ipv4, Device::All, 1));
        assert_eq!(out[1], forwarding(Family::Ipv6, Device::Default, 1));
        assert_eq!(
            out[2],
            Netconf {
                family: Family::Ipv4,
                device: Device::Index(1),
                values: NetconfValues {
                    rp_filter: Some(2),
                    ..NetconfValues::default()
                }
            }
        );
        assert_eq!(at(&out[3]), Some((Family::Ipv4, Device::Index(2))));
        assert_eq!(
            out[4..],
            vec![
                LinkNew {
                    index: 2,
                    name: "d0".into()
                },
                LinkDel {
                    index: 2,
                    name: "d1".into()
                },
            ]
        );
    }

    #[test]
    fn bad_messages_are_skipped_not_fatal() {
        let good = bytes(captured::NEWNETCONF_V4_ALL_FORWARDING_1);
        // A netconf message whose FORWARDING attribute is 2 bytes long: skipped.
        let mut broken = good.clone();
        broken[28] = 6;
        // An RTM_NEWADDR (type 20): unknown to us, skipped.
        let mut other = good.clone();
        other[4] = 20;
        let mut datagram = [broken, other, good.clone()].concat();
        let mut out = Vec::new();
        decode_events(&datagram, &mut out);
        assert_eq!(out, vec![forwarding(Family::Ipv4, Device::All, 1)]);
        // A length field beyond the datagram ends it, without panicking.
        datagram.extend_from_slice(&[0xff, 0, 0, 0, 80, 0, 0, 0]);
        out.clear();
        decode_events(&datagram, &mut out);
        assert_eq!(out.len(), 1);
    }

    #[test]
    fn request_socket_reads_without_privileges() {
        // Read-only, so it may run in the host's namespace.
        let rt = runtime();
        let _in_runtime = rt.enter();
        let mut socket = RequestSocket::open().expect("open");
        let links = rt.block_on(socket.links()).expect("GETLINK dump");
        assert!(links.contains(&(1, "lo".to_string())), "{links:?}");
        let want: i32 = fs::read_to_string("/proc/sys/net/ipv4/conf/all/forwarding")
            .expect("read forwarding")
            .trim()
            .parse()
            .expect("number");
        assert_eq!(
            rt.block_on(socket.netconf_forwarding(Family::Ipv4))
                .expect("GETNETCONF"),
            Some(want)
        );
    }

    // ---- in a private network namespace, as root ----

    use crate::sandbox::{PrivateNetns, in_private_netns};

    fn write(ns: &PrivateNetns, key: &str, value: &str) {
        ns.write(&format!("/proc/sys/net/{key}"), value)
            .expect("write");
    }

    fn ip(ns: &PrivateNetns, args: &[&str]) {
        // The child is forked from this thread, so it is in this namespace too.
        let status = ns
            .command("ip")
            .expect("private")
            .args(args)
            .status()
            .expect("run ip");
        assert!(status.success(), "ip {args:?}: {status}");
    }

    fn runtime() -> tokio::runtime::Runtime {
        tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .expect("runtime")
    }

    /// Collects events until one matches, or panics after a few seconds.
    async fn until(
        socket: &mut EventSocket,
        events: &mut Vec<KernelEvent>,
        wanted: impl Fn(&KernelEvent) -> bool,
    ) {
        let wait = async {
            while !events.iter().any(&wanted) {
                socket.next_batch(events).await.expect("next_batch");
            }
        };
        if tokio::time::timeout(Duration::from_secs(5), wait)
            .await
            .is_err()
        {
            panic!("timed out; got {events:?}");
        }
    }

    /// Forgets the events so far, makes `change` and collects events until `expected` is
    /// among them.
    async fn after_change_until(
        socket: &mut EventSocket,
        events: &mut Vec<KernelEvent>,
        change: impl FnOnce(),
        expected: KernelEvent,
    ) {
        events.clear();
        change();
        until(socket, events, |e| *e == expected).await;
    }

    /// Writes `value` to the IPv4 knob at `path` and waits for the netconf event of `all`
    /// that carries it.
    async fn write_until_forwarding_is(
        ns: &PrivateNetns,
        socket: &mut EventSocket,
        events: &mut Vec<KernelEvent>,
        path: &str,
        value: i32,
    ) {
        let change = || write(ns, path, &value.to_string());
        let expected = forwarding(Family::Ipv4, Device::All, value);
        after_change_until(socket, events, change, expected).await;
    }

    #[test]
    fn event_socket_sees_ipv4_all_forwarding() {
        in_private_netns("event_socket_sees_ipv4_all_forwarding", |ns| {
            runtime().block_on(async {
                let mut socket = EventSocket::open().expect("open");
                let mut events = Vec::new();
                let all = "ipv4/conf/all/forwarding";
                write_until_forwarding_is(ns, &mut socket, &mut events, all, 1).await;
                // ip_forward is the same knob; the event carries the new value.
                let ip_forward = "ipv4/ip_forward";
                write_until_forwarding_is(ns, &mut socket, &mut events, ip_forward, 0).await;
            });
        });
    }

    #[test]
    fn event_socket_sees_link_add_rename_del() {
        in_private_netns("event_socket_sees_link_add_rename_del", |ns| {
            runtime().block_on(async {
                let mut socket = EventSocket::open().expect("open");
                let mut events = Vec::new();
                // This kernel has no dummy driver; a bridge will do.
                ip(ns, &["link", "add", "fg0", "type", "bridge"]);
                until(
                    &mut socket,
                    &mut events,
                    |e| matches!(e, KernelEvent::LinkNew { name, .. } if name == "fg0"),
                )
                .await;
                let Some(&KernelEvent::LinkNew { index, .. }) = events
                    .iter()
                    .find(|e| matches!(e, KernelEvent::LinkNew { .. }))
                else {
                    unreachable!()
                };
                let device = (Family::Ipv4, Device::Index(index));
                assert!(
                    events.iter().any(|e| at(e) == Some(device)),
                    "no netconf event for the new link: {events:?}"
                );

                let renamed = KernelEvent::LinkNew {
                    index,
                    name: "fg1".into(),
                };
                let rename = || ip(ns, &["link", "set", "fg0", "name", "fg1"]);
                after_change_until(&mut socket, &mut events, rename, renamed).await;

                let deleted = KernelEvent::LinkDel {
                    index,
                    name: "fg1".into(),
                };
                let delete = || ip(ns, &["link", "del", "fg1"]);
                after_change_until(&mut socket, &mut events, delete, deleted).await;
            });
        });
    }

    #[test]
    fn storm_ends_in_one_overrun_after_the_drain() {
        in_private_netns("storm_ends_in_one_overrun_after_the_drain", |ns| {
            runtime().block_on(async {
                let mut socket = EventSocket::open().expect("open");
                // Every write flips the value, so each one fans out to all, default and lo.
                for i in 0..50_000 {
                    write(
                        ns,
                        "ipv4/conf/all/forwarding",
                        if i % 2 == 0 { "1" } else { "0" },
                    );
                }
                let mut batches = 0;
                let mut events = Vec::new();
                let wait = async {
                    loop {
                        let mut batch = Vec::new();
                        socket.next_batch(&mut batch).await.expect("next_batch");
                        batches += 1;
                        let overrun = batch.contains(&KernelEvent::Overrun);
                        if overrun {
                            assert_eq!(
                                batch.last(),
                                Some(&KernelEvent::Overrun),
                                "overrun must come last"
                            );
                        }
                        events.extend(batch);
                        if overrun {
                            break;
                        }
                    }
                };
                tokio::time::timeout(Duration::from_secs(10), wait)
                    .await
                    .expect("no overrun within 10 s");
                assert_eq!(
                    events
                        .iter()
                        .filter(|e| **e == KernelEvent::Overrun)
                        .count(),
                    1
                );
                // The queue held more than one bound's worth: the overrun waited for the drain.
                assert!(
                    batches > 1,
                    "drained in {batches} batch(es), {} events",
                    events.len()
                );

                // Once drained, the socket reports again.
                let all = "ipv4/conf/all/forwarding";
                write_until_forwarding_is(ns, &mut socket, &mut events, all, 1).await;
                assert!(!events.contains(&KernelEvent::Overrun), "{events:?}");
            });
        });
    }

    #[test]
    fn request_socket_lists_links_and_reads_forwarding() {
        in_private_netns("request_socket_lists_links_and_reads_forwarding", |ns| {
            ip(ns, &["link", "add", "fg0", "type", "bridge"]);
            let rt = runtime();
            let _in_runtime = rt.enter();
            let mut socket = RequestSocket::open().expect("open");
            let links = rt.block_on(socket.links()).expect("GETLINK dump");
            assert!(links.contains(&(1, "lo".to_string())), "{links:?}");
            assert!(links.iter().any(|(_, name)| name == "fg0"), "{links:?}");

            for value in [1, 0] {
                write(ns, "ipv4/conf/all/forwarding", &value.to_string());
                assert_eq!(
                    rt.block_on(socket.netconf_forwarding(Family::Ipv4))
                        .expect("GETNETCONF"),
                    Some(value)
                );
            }
            if fs::metadata("/proc/sys/net/ipv6").is_ok() {
                write(ns, "ipv6/conf/all/forwarding", "1");
                assert_eq!(
                    rt.block_on(socket.netconf_forwarding(Family::Ipv6))
                        .expect("GETNETCONF"),
                    Some(1)
                );
            }
        });
    }
}

/// Hostile datagrams: whatever the event socket receives, decoding it into events never
/// panics, and a broken message costs only itself and what follows it in its datagram.
#[cfg(test)]
mod hostile_datagrams {
    use proptest::prelude::*;

    use super::super::netconf::captured::{self, bytes};
    use super::super::netconf::hostile_input::{captured_messages, mutated};
    use super::*;
    use crate::observation::NetconfValues;

    /// Messages laid out as the kernel packs them: each padded to a multiple of 4.
    fn datagram(messages: &[Vec<u8>]) -> Vec<u8> {
        let mut out = Vec::new();
        for m in messages {
            out.extend_from_slice(m);
            out.resize(out.len().next_multiple_of(4), 0);
        }
        out
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(4096))]

        #[test]
        fn any_datagram_decodes_without_panic(raw in prop::collection::vec(any::<u8>(), 0..512)) {
            let mut out = Vec::new();
            decode_events(&raw, &mut out);
        }

    }

    proptest! {
        // Each case builds up to eight messages: fewer cases for the same time.
        #![proptest_config(ProptestConfig::with_cases(1024))]

        #[test]
        fn datagrams_of_mutated_kernel_messages_decode_without_panic(
            messages in prop::collection::vec(mutated(), 1..6),
            intact in prop::collection::vec(0..captured_messages().len(), 0..3),
        ) {
            let all = captured_messages();
            let mut mixed = messages;
            mixed.extend(intact.into_iter().map(|i| all[i].clone()));
            let mut out = Vec::new();
            decode_events(&datagram(&mixed), &mut out);
        }

        /// The first message of a datagram (the kernel's `all` event of a drop) counts
        /// whatever garbage follows it.
        #[test]
        fn a_good_message_counts_whatever_follows_it(bad in mutated()) {
            let good = bytes(captured::NEWNETCONF_V4_ALL_FORWARDING_1);
            let mut out = Vec::new();
            decode_events(&datagram(&[good, bad]), &mut out);
            prop_assert_eq!(
                out.first(),
                Some(&KernelEvent::Netconf {
                    family: Family::Ipv4,
                    device: Device::All,
                    values: NetconfValues {
                        forwarding: Some(1),
                        ..NetconfValues::default()
                    },
                })
            );
        }
    }
}
