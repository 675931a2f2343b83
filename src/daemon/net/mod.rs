//! Network awareness: the host's view of the route to the server, and what the links do
//! when it changes.
//!
//! The watcher ([`watch`]) is a task of its own on the daemon's thread. It listens to the
//! kernel's rtnetlink notifications (links, IPv4 and IPv6 addresses and routes), and after
//! each burst of them asks the kernel for the route to the server (`ip route get`), the
//! state of the interface it leaves by (up, with carrier) and whether that interface has
//! an address of the route's family. [`Tracker`] turns the successive answers into at
//! most one [`NetNotice`] per change, which the watcher sends to every link it serves
//! (today one; the list is there so that many links can share one watcher):
//!
//! | notice | when | the native link does | the Tencent link does |
//! | --- | --- | --- | --- |
//! | [`NetNotice::RouteUp`] | a usable route to the server appeared, or a different one replaced it | waiting to retry: connects now (once per backoff step) | waiting to restart the bridge: restarts it now (once per backoff step) |
//! | [`NetNotice::RouteGone`] | the route in use went away or changed | connected: probes at once (a heartbeat answered within one heartbeat interval, or the connection is lost) | connected: pings the bridge at once with the same deadline |
//!
//! A route through an interface that is not watched (`network.interfaces`; loopback by
//! default) is taken as usable and never reported: a server on the same host is not
//! affected by the network. The watcher publishes its view to the hub (`status.network`).

pub mod watch;

use actix::prelude::*;
use std::net::IpAddr;

/// What the watcher tells a link.
#[derive(Message, Debug, Clone, Copy, PartialEq, Eq)]
#[rtype(result = "()")]
pub enum NetNotice {
    /// A usable route to the server appeared (or replaced the one before): a link waiting
    /// to retry should try now.
    RouteUp,
    /// The route the connection used went away or changed: a connected link should check
    /// its connection now rather than at the heartbeat timeout.
    RouteGone,
}

/// The route to the server as the kernel answers it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Route {
    /// The interface the route leaves by.
    pub ifindex: u32,
    /// Its name (cleaned, bounded).
    pub ifname: String,
    /// The next hop, when not on-link.
    pub gateway: Option<IpAddr>,
}

/// What one look at the kernel found.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Reach {
    /// A route through a watched interface that is up, has carrier and an address.
    Usable(Route),
    /// A route through an interface that is not watched (loopback by default): usable,
    /// never reported.
    Unwatched(Route),
    /// No usable route: why, for `status` and the log.
    Unreachable(String),
}

impl Reach {
    /// The route the connection would use, if any.
    fn route(&self) -> Option<(u32, Option<IpAddr>)> {
        match self {
            Reach::Usable(r) | Reach::Unwatched(r) => Some((r.ifindex, r.gateway)),
            Reach::Unreachable(_) => None,
        }
    }

    /// `status.network.state`.
    pub fn state_name(&self) -> &'static str {
        match self {
            Reach::Usable(_) => "usable",
            Reach::Unwatched(_) => "unwatched",
            Reach::Unreachable(_) => "unreachable",
        }
    }
}

/// Turns successive looks at the kernel into notices: one per change of the route the
/// connection would use, none while it stays the same however many notifications came.
#[derive(Debug, Clone, Default)]
pub struct Tracker {
    last: Option<Reach>,
}

impl Tracker {
    /// A tracker that has seen nothing yet (the first look sets the view; it reports
    /// only a route that is missing, so that a link knows an attempt running now is
    /// running without one).
    pub fn new() -> Tracker {
        Tracker::default()
    }

    /// The last view.
    pub fn last(&self) -> Option<&Reach> {
        self.last.as_ref()
    }

    /// Forgets the view (the watcher was turned off).
    pub fn reset(&mut self) {
        self.last = None;
    }

    /// A new look: the notices it calls for, in order.
    pub fn update(&mut self, now: Reach) -> Vec<NetNotice> {
        let Some(before) = self.last.replace(now) else {
            return match self.last {
                Some(Reach::Unreachable(_)) => vec![NetNotice::RouteGone],
                _ => Vec::new(),
            };
        };
        let (old, new) = (before.route(), self.last.as_ref().and_then(Reach::route));
        let mut out = Vec::new();
        if old == new {
            return out;
        }
        if old.is_some() {
            out.push(NetNotice::RouteGone);
        }
        if new.is_some() {
            out.push(NetNotice::RouteUp);
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn usable(i: u32) -> Reach {
        Reach::Usable(Route {
            ifindex: i,
            ifname: format!("eth{i}"),
            gateway: None,
        })
    }

    #[test]
    fn a_first_look_without_a_route_says_so() {
        let mut t = Tracker::new();
        assert_eq!(
            t.update(Reach::Unreachable("down".into())),
            vec![NetNotice::RouteGone]
        );
        assert!(t.update(Reach::Unreachable("still".into())).is_empty());
        assert_eq!(t.update(usable(2)), vec![NetNotice::RouteUp]);
    }

    #[test]
    fn the_first_look_is_silent_and_repeats_change_nothing() {
        let mut t = Tracker::new();
        assert!(t.update(usable(2)).is_empty());
        for _ in 0..10 {
            assert!(t.update(usable(2)).is_empty());
        }
        assert_eq!(t.last(), Some(&usable(2)));
    }

    #[test]
    fn losing_and_regaining_the_route_each_give_one_notice() {
        let mut t = Tracker::new();
        t.update(usable(2));
        assert_eq!(
            t.update(Reach::Unreachable("no route".into())),
            vec![NetNotice::RouteGone]
        );
        assert!(t.update(Reach::Unreachable("no carrier".into())).is_empty());
        assert_eq!(t.update(usable(2)), vec![NetNotice::RouteUp]);
    }

    #[test]
    fn a_route_that_moves_is_gone_then_up() {
        let mut t = Tracker::new();
        t.update(usable(2));
        assert_eq!(
            t.update(usable(3)),
            vec![NetNotice::RouteGone, NetNotice::RouteUp]
        );
        let via = Reach::Usable(Route {
            ifindex: 3,
            ifname: "eth3".into(),
            gateway: Some("10.0.0.1".parse().unwrap()),
        });
        assert_eq!(
            t.update(via),
            vec![NetNotice::RouteGone, NetNotice::RouteUp]
        );
    }

    #[test]
    fn unwatched_routes_count_as_usable() {
        let mut t = Tracker::new();
        t.update(Reach::Unreachable("down".into()));
        let lo = Route {
            ifindex: 1,
            ifname: "lo".into(),
            gateway: None,
        };
        assert_eq!(
            t.update(Reach::Unwatched(lo.clone())),
            vec![NetNotice::RouteUp]
        );
        assert!(t.update(Reach::Unwatched(lo)).is_empty());
    }
}
