//! The watcher task: rtnetlink notifications in, [`NetNotice`]s out.
//!
//! One task on the daemon's thread (the tokio runtime actix runs on). It subscribes to the
//! kernel's link, IPv4/IPv6 address and IPv4/IPv6 route groups; after a notification it
//! lets [`SETTLE`] pass (a burst — a link going down withdraws its addresses and routes in
//! a dozen messages — gives one look), then asks the kernel for the route to each of the
//! server's addresses, the interface's flags and its addresses. The [`Tracker`] decides
//! what to tell the links. The task holds no state the daemon depends on: when netlink
//! cannot be opened (no such socket in a sandbox), `status.network` says why and the
//! links work as without the watcher.

use actix::prelude::*;
use futures_util::{StreamExt, TryStreamExt};
use rtnetlink::packet_route::address::AddressMessage;
use rtnetlink::packet_route::link::{LinkAttribute, LinkFlags, LinkMessage, State};
use rtnetlink::packet_route::route::{RouteAddress, RouteAttribute, RouteMessage, RouteType};
use rtnetlink::packet_route::AddressFamily;
use rtnetlink::{Handle, MulticastGroup};
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};
use std::rc::Rc;
use std::time::Duration;
use tokio::sync::mpsc;
use tokio::time::Instant;

use super::{NetNotice, Reach, Route, Tracker};
use crate::config::NetworkConfig;
use crate::daemon::hub::Hub;
use crate::proto::api::NetworkStatus;

/// How long after a notification the kernel is asked (the rest of the burst arrives
/// meanwhile). At most one look per `SETTLE`, however many notifications come.
pub const SETTLE: Duration = Duration::from_millis(50);

/// How long one look may take before it is abandoned (the kernel answers in microseconds;
/// a name lookup of the server may take longer).
pub const LOOK_TIMEOUT: Duration = Duration::from_secs(3);

/// How long the watcher waits before opening netlink again after it failed or closed.
pub const REOPEN_AFTER: Duration = Duration::from_secs(5);

/// Longest interface name kept for `status` (the kernel's limit is 15 bytes).
const MAX_NAME: usize = 15;

/// Where the server is.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Target {
    /// These addresses (an IP literal in the URL).
    Addrs(Vec<IpAddr>),
    /// A host name and port, resolved at each look (the last answer is kept for a look
    /// whose resolution fails).
    Host(String, u16),
    /// Somewhere on the internet (Tencent's own servers): the default route is looked at,
    /// through the addresses of the documentation ranges (no packet is sent).
    Internet,
}

impl Target {
    /// The target of a `ws://` or `wss://` URL.
    pub fn of_url(url: &str) -> Target {
        let Ok(u) = url::Url::parse(url) else {
            return Target::Internet;
        };
        let port = u.port_or_known_default().unwrap_or(443);
        match u.host() {
            Some(url::Host::Ipv4(a)) => Target::Addrs(vec![IpAddr::V4(a)]),
            Some(url::Host::Ipv6(a)) => Target::Addrs(vec![IpAddr::V6(a)]),
            Some(url::Host::Domain(d)) => Target::Host(d.to_owned(), port),
            None => Target::Internet,
        }
    }
}

/// What the daemon tells the watcher.
#[derive(Debug)]
enum Control {
    Reconfigure(NetworkConfig),
    Subscribe(Recipient<NetNotice>),
}

/// The handle on the watcher task (dropping it stops the task).
pub struct Watcher {
    tx: mpsc::UnboundedSender<Control>,
}

impl Watcher {
    /// New `[network]` settings (SIGHUP): on, off, other interfaces.
    pub fn reconfigure(&self, cfg: NetworkConfig) {
        let _ = self.tx.send(Control::Reconfigure(cfg));
    }

    /// One more link to notify.
    pub fn subscribe(&self, link: Recipient<NetNotice>) {
        let _ = self.tx.send(Control::Subscribe(link));
    }
}

/// Starts the watcher on the current thread's runtime, notifying `links`.
pub fn start(
    cfg: NetworkConfig,
    target: Target,
    hub: Rc<Hub>,
    links: Vec<Recipient<NetNotice>>,
) -> Watcher {
    let (tx, rx) = mpsc::unbounded_channel();
    let task = Task {
        cfg,
        target,
        hub,
        links,
        tracker: Tracker::new(),
        resolved: Vec::new(),
        changes: 0,
        changed_at: None,
        reason: None,
    };
    tokio::task::spawn_local(task.run(rx));
    Watcher { tx }
}

struct Task {
    cfg: NetworkConfig,
    target: Target,
    hub: Rc<Hub>,
    links: Vec<Recipient<NetNotice>>,
    tracker: Tracker,
    /// The last addresses a name lookup gave.
    resolved: Vec<IpAddr>,
    changes: u64,
    changed_at: Option<i64>,
    /// Why the watcher cannot watch (netlink failed), when it cannot.
    reason: Option<String>,
}

/// How the inner loop ended.
enum Leave {
    /// The daemon dropped the handle.
    Gone,
    /// Turned off, or netlink failed: go round the outer loop.
    Again,
}

impl Task {
    async fn run(mut self, mut rx: mpsc::UnboundedReceiver<Control>) {
        loop {
            self.publish();
            if !self.cfg.watch {
                match rx.recv().await {
                    Some(c) => self.control(c),
                    None => return,
                }
                continue;
            }
            match self.watch(&mut rx).await {
                Leave::Gone => return,
                Leave::Again => {}
            }
        }
    }

    fn control(&mut self, c: Control) {
        match c {
            Control::Reconfigure(cfg) => {
                if cfg.watch != self.cfg.watch {
                    tracing::info!(
                        watch = cfg.watch,
                        "network watching turned {}",
                        if cfg.watch { "on" } else { "off" }
                    );
                }
                if !cfg.watch {
                    self.tracker.reset();
                    self.reason = None;
                }
                self.cfg = cfg;
            }
            Control::Subscribe(r) => self.links.push(r),
        }
    }

    /// Watches until turned off or netlink fails.
    async fn watch(&mut self, rx: &mut mpsc::UnboundedReceiver<Control>) -> Leave {
        let groups = [
            MulticastGroup::Link,
            MulticastGroup::Ipv4Ifaddr,
            MulticastGroup::Ipv6Ifaddr,
            MulticastGroup::Ipv4Route,
            MulticastGroup::Ipv6Route,
        ];
        let (conn, handle, mut messages) = match rtnetlink::new_multicast_connection(&groups) {
            Ok(c) => c,
            Err(e) => {
                let why = format!("cannot open rtnetlink: {e}");
                if self.reason.as_deref() != Some(why.as_str()) {
                    tracing::warn!("network watching unavailable: {why}");
                }
                self.reason = Some(why);
                self.tracker.reset();
                self.publish();
                return self.pause(rx).await;
            }
        };
        let conn = tokio::task::spawn_local(conn);
        self.reason = None;
        tracing::info!("watching the network (rtnetlink: links, addresses, routes)");
        // The first look at once.
        let mut due = Some(Instant::now());
        let leave = loop {
            let sleep = async {
                match due {
                    Some(t) => tokio::time::sleep_until(t).await,
                    None => std::future::pending().await,
                }
            };
            tokio::select! {
                c = rx.recv() => match c {
                    Some(c) => {
                        let interfaces = self.cfg.interfaces.clone();
                        self.control(c);
                        if !self.cfg.watch {
                            break Leave::Again;
                        }
                        if self.cfg.interfaces != interfaces {
                            due = Some(Instant::now());
                        }
                    }
                    None => break Leave::Gone,
                },
                m = messages.next() => match m {
                    Some(_) => {
                        due.get_or_insert_with(|| Instant::now() + SETTLE);
                    }
                    None => {
                        self.reason = Some("the rtnetlink socket closed".into());
                        tracing::warn!("the rtnetlink socket closed; opening it again");
                        self.tracker.reset();
                        self.publish();
                        break self.pause(rx).await;
                    }
                },
                () = sleep => {
                    due = None;
                    self.look(&handle).await;
                }
            }
        };
        conn.abort();
        leave
    }

    /// Waits [`REOPEN_AFTER`] (or a control message).
    async fn pause(&mut self, rx: &mut mpsc::UnboundedReceiver<Control>) -> Leave {
        tokio::select! {
            c = rx.recv() => match c {
                Some(c) => { self.control(c); Leave::Again }
                None => Leave::Gone,
            },
            () = tokio::time::sleep(REOPEN_AFTER) => Leave::Again,
        }
    }

    /// One look at the kernel; notices to the links when the route changed.
    async fn look(&mut self, handle: &Handle) {
        let addrs = self.addresses().await;
        let reach =
            match tokio::time::timeout(LOOK_TIMEOUT, reach(handle, &addrs, &self.cfg.interfaces))
                .await
            {
                Ok(r) => r,
                Err(_) => Reach::Unreachable("the kernel did not answer a route lookup".into()),
            };
        let notices = self.tracker.update(reach.clone());
        if !notices.is_empty() {
            match &reach {
                Reach::Unreachable(why) => tracing::warn!("no usable route to the server: {why}"),
                Reach::Usable(r) | Reach::Unwatched(r) => tracing::info!(
                    interface = %r.ifname,
                    gateway = ?r.gateway,
                    "a usable route to the server"
                ),
            }
            self.changes = self.changes.saturating_add(1);
            self.changed_at = Some(self.hub.clock().unix_ms());
            self.links.retain(|l| l.connected());
            for n in &notices {
                for l in &self.links {
                    l.do_send(*n);
                }
            }
        }
        self.publish();
    }

    /// The server's addresses now.
    async fn addresses(&mut self) -> Vec<IpAddr> {
        match &self.target {
            Target::Addrs(a) => a.clone(),
            Target::Internet => vec![
                IpAddr::V4(Ipv4Addr::new(192, 0, 2, 1)),
                IpAddr::V6(Ipv6Addr::new(0x2001, 0xdb8, 0, 0, 0, 0, 0, 1)),
            ],
            Target::Host(host, port) => {
                let looked = tokio::time::timeout(
                    LOOK_TIMEOUT,
                    tokio::net::lookup_host((host.as_str(), *port)),
                )
                .await;
                if let Ok(Ok(found)) = looked {
                    let mut v: Vec<IpAddr> = found.map(|s| s.ip()).collect();
                    v.dedup();
                    v.truncate(16);
                    if !v.is_empty() {
                        self.resolved = v;
                    }
                }
                self.resolved.clone()
            }
        }
    }

    fn publish(&self) {
        let (state, interface, gateway, reason) = if !self.cfg.watch {
            ("off", None, None, None)
        } else {
            match self.tracker.last() {
                None => ("unknown", None, None, self.reason.clone()),
                Some(r @ (Reach::Usable(route) | Reach::Unwatched(route))) => (
                    r.state_name(),
                    Some(route.ifname.clone()),
                    route.gateway.map(|g| g.to_string()),
                    None,
                ),
                Some(r @ Reach::Unreachable(why)) => {
                    (r.state_name(), None, None, Some(why.clone()))
                }
            }
        };
        self.hub.set_net(NetworkStatus {
            watch: self.cfg.watch,
            state: state.into(),
            interface,
            gateway,
            reason,
            changes: self.changes,
            changed_at: self.changed_at,
        });
    }
}

/// The best route among `addrs`: the first usable one, else the first reason.
async fn reach(handle: &Handle, addrs: &[IpAddr], interfaces: &[String]) -> Reach {
    let mut why = None;
    for ip in addrs {
        match reach_one(handle, *ip, interfaces).await {
            Reach::Unreachable(w) => {
                why.get_or_insert(w);
            }
            r => return r,
        }
    }
    Reach::Unreachable(why.unwrap_or_else(|| "the server's address is not known".into()))
}

fn kernel_error(e: rtnetlink::Error) -> String {
    match e {
        rtnetlink::Error::NetlinkError(m) => {
            std::io::Error::from_raw_os_error(m.raw_code().saturating_neg()).to_string()
        }
        e => e.to_string(),
    }
}

/// `ip route get ADDR`, then the interface's flags and addresses.
async fn reach_one(handle: &Handle, ip: IpAddr, interfaces: &[String]) -> Reach {
    let (family, bits) = match ip {
        IpAddr::V4(_) => (AddressFamily::Inet, 32),
        IpAddr::V6(_) => (AddressFamily::Inet6, 128),
    };
    let mut q = RouteMessage::default();
    q.header.address_family = family;
    q.header.destination_prefix_length = bits;
    q.attributes
        .push(RouteAttribute::Destination(RouteAddress::from(ip)));
    let route = match handle.route().get(q).execute().try_next().await {
        Ok(Some(r)) => r,
        Ok(None) => return Reach::Unreachable(format!("no route to {ip}")),
        Err(e) => return Reach::Unreachable(format!("no route to {ip}: {}", kernel_error(e))),
    };
    if matches!(
        route.header.kind,
        RouteType::Unreachable | RouteType::Prohibit | RouteType::BlackHole | RouteType::Throw
    ) {
        return Reach::Unreachable(format!("the route to {ip} is {:?}", route.header.kind));
    }
    let mut oif = None;
    let mut gateway = None;
    for a in &route.attributes {
        match a {
            RouteAttribute::Oif(i) => oif = Some(*i),
            RouteAttribute::Gateway(RouteAddress::Inet(g)) => gateway = Some(IpAddr::V4(*g)),
            RouteAttribute::Gateway(RouteAddress::Inet6(g)) => gateway = Some(IpAddr::V6(*g)),
            _ => {}
        }
    }
    let Some(ifindex) = oif else {
        return Reach::Unreachable(format!("the route to {ip} has no interface"));
    };
    let link: Option<LinkMessage> = handle
        .link()
        .get()
        .match_index(ifindex)
        .execute()
        .try_next()
        .await
        .ok()
        .flatten();
    let Some(link) = link else {
        return Reach::Unreachable(format!("interface {ifindex} is gone"));
    };
    let mut ifname = String::new();
    let mut oper = None;
    for a in &link.attributes {
        match a {
            LinkAttribute::IfName(n) => {
                ifname = crate::text::clean(n).chars().take(MAX_NAME).collect();
            }
            LinkAttribute::OperState(s) => oper = Some(*s),
            _ => {}
        }
    }
    let flags = link.header.flags;
    let route_view = Route {
        ifindex,
        ifname: ifname.clone(),
        gateway,
    };
    let watched = if interfaces.is_empty() {
        !flags.contains(LinkFlags::Loopback) && route.header.kind != RouteType::Local
    } else {
        interfaces.contains(&ifname)
    };
    if !watched {
        return Reach::Unwatched(route_view);
    }
    if !flags.contains(LinkFlags::Up) {
        return Reach::Unreachable(format!("{ifname} is down"));
    }
    if !flags.contains(LinkFlags::LowerUp)
        || matches!(
            oper,
            Some(State::Down | State::LowerLayerDown | State::NotPresent)
        )
    {
        return Reach::Unreachable(format!("{ifname} has no carrier"));
    }
    let addrs: Vec<AddressMessage> = handle
        .address()
        .get()
        .set_link_index_filter(ifindex)
        .execute()
        .try_collect()
        .await
        .unwrap_or_default();
    if !addrs
        .iter()
        .any(|a| a.header.index == ifindex && a.header.family == family)
    {
        return Reach::Unreachable(format!(
            "{ifname} has no {} address",
            if family == AddressFamily::Inet {
                "IPv4"
            } else {
                "IPv6"
            }
        ));
    }
    Reach::Usable(route_view)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn targets_come_from_the_url() {
        assert_eq!(
            Target::of_url("ws://10.0.0.1:8600/v1/connect"),
            Target::Addrs(vec!["10.0.0.1".parse().unwrap()])
        );
        assert_eq!(
            Target::of_url("wss://[::1]/x"),
            Target::Addrs(vec!["::1".parse().unwrap()])
        );
        assert_eq!(
            Target::of_url("wss://im.example.com/x"),
            Target::Host("im.example.com".into(), 443)
        );
        assert_eq!(Target::of_url("not a url"), Target::Internet);
    }
}
