//! Table tests of the session machine: every state × input that matters, the awkward
//! ones included.

use super::backoff::Backoff;
use super::session::*;
use crate::codes::{code, LoginStatus};
use crate::proto::api::Event;
use SessionAction as A;
use SessionInput as I;

const NOW: i64 = 1_764_000_000;

fn settings() -> SessionSettings {
    SessionSettings {
        backoff: Backoff {
            initial_ms: 1000,
            max_ms: 30_000,
            multiplier: 1.6,
            jitter: 0.2,
        },
        login_timeout_ms: 30_000,
        expiring_lead_secs: 300,
    }
}

fn inited() -> SessionMachine {
    let mut m = SessionMachine::new(settings());
    let a = m.handle(
        I::Init {
            caller: 1,
            app_id: 1400000001,
        },
        NOW,
        0.5,
    );
    assert_eq!(
        a,
        vec![
            A::StartConnection,
            A::Reply {
                caller: 1,
                result: Ok(Reply::Done)
            }
        ]
    );
    m
}

fn login(caller: u64, user: &str, sig: &str) -> SessionInput {
    I::Login {
        caller,
        user: user.into(),
        sig: sig.into(),
        expires_at: Some(NOW + 86400),
    }
}

fn sent_login(a: &[SessionAction]) -> Option<(ReqId, bool)> {
    a.iter().find_map(|x| match x {
        A::SendLogin { req, auto, .. } => Some((*req, *auto)),
        _ => None,
    })
}

fn replies(a: &[SessionAction]) -> Vec<(u64, Result<Reply, i32>)> {
    a.iter()
        .filter_map(|x| match x {
            A::Reply { caller, result } => Some((*caller, result.clone().map_err(|f| f.code))),
            _ => None,
        })
        .collect()
}

fn events(a: &[SessionAction]) -> Vec<Event> {
    a.iter()
        .filter_map(|x| match x {
            A::Emit(e) => Some(e.clone()),
            _ => None,
        })
        .collect()
}

fn status_changes(a: &[SessionAction]) -> Vec<(LoginStatus, String)> {
    events(a)
        .into_iter()
        .filter_map(|e| match e {
            Event::LoginStatusChanged { status, reason, .. } => Some((status, reason)),
            _ => None,
        })
        .collect()
}

/// Feeds a successful reply to `req` and tells whether the machine did nothing with it.
fn late_reply_ignored(m: &mut SessionMachine, req: ReqId) -> bool {
    m.handle(
        I::LoginDone {
            req,
            result: Ok(None),
        },
        NOW,
        0.5,
    )
    .is_empty()
}

/// An initialised machine, link up, logged in as alice with sig S1.
fn logged_in() -> SessionMachine {
    let mut m = inited();
    m.handle(I::LinkUp, NOW, 0.5);
    let a = m.handle(login(2, "alice", "S1"), NOW, 0.5);
    let (req, auto) = sent_login(&a).unwrap();
    assert!(!auto);
    let a = m.handle(
        I::LoginDone {
            req,
            result: Ok(Some(NOW + 86400)),
        },
        NOW,
        0.5,
    );
    assert_eq!(replies(&a), vec![(2, Ok(Reply::Done))]);
    assert_eq!(m.status(), LoginStatus::Logined);
    m
}

#[test]
fn login_before_init_is_6013() {
    let mut m = SessionMachine::new(settings());
    assert_eq!(
        replies(&m.handle(login(1, "alice", "S"), NOW, 0.5)),
        vec![(1, Err(code::SDK_NOT_INITIALIZED))]
    );
}

#[test]
fn init_twice_with_the_same_id_is_a_no_op_and_another_id_is_refused() {
    let mut m = inited();
    assert_eq!(
        m.handle(
            I::Init {
                caller: 5,
                app_id: 1400000001
            },
            NOW,
            0.5
        ),
        vec![A::Reply {
            caller: 5,
            result: Ok(Reply::Done)
        }]
    );
    assert_eq!(
        replies(&m.handle(
            I::Init {
                caller: 6,
                app_id: 7
            },
            NOW,
            0.5
        )),
        vec![(6, Err(code::INVALID_PARAMETERS))]
    );
}

#[test]
fn login_goes_logining_then_logined_and_persists() {
    let mut m = inited();
    m.handle(I::LinkUp, NOW, 0.5);
    let a = m.handle(login(2, "alice", "S1"), NOW, 0.5);
    assert_eq!(m.status(), LoginStatus::Logining);
    assert_eq!(
        status_changes(&a),
        vec![(LoginStatus::Logining, "login".into())]
    );
    let (req, _) = sent_login(&a).unwrap();
    let a = m.handle(
        I::LoginDone {
            req,
            result: Ok(Some(NOW + 86400)),
        },
        NOW,
        0.5,
    );
    assert!(a.contains(&A::Persist(Some(Saved {
        app_id: 1400000001,
        user: "alice".into(),
        sig: "S1".into()
    }))));
    assert_eq!(
        status_changes(&a),
        vec![(LoginStatus::Logined, "login".into())]
    );
    assert_eq!(m.user(), "alice");
    assert!(a.contains(&A::SetTimer(Timer::Expiring, (86400 - 300) * 1000)));
}

#[test]
fn an_expired_ticket_is_refused_locally_with_6206() {
    let mut m = inited();
    let a = m.handle(
        I::Login {
            caller: 3,
            user: "alice".into(),
            sig: "S".into(),
            expires_at: Some(NOW - 1),
        },
        NOW,
        0.5,
    );
    assert_eq!(replies(&a), vec![(3, Err(code::USERSIG_EXPIRED_LOCAL))]);
    assert_eq!(m.status(), LoginStatus::Logout);
}

#[test]
fn login_during_a_login_is_7501() {
    let mut m = inited();
    m.handle(login(2, "alice", "S1"), NOW, 0.5);
    assert_eq!(
        replies(&m.handle(login(3, "alice", "S1"), NOW, 0.5)),
        vec![(3, Err(code::LOGIN_IN_PROGRESS))]
    );
    // Another user while logging in: also 7501.
    assert_eq!(
        replies(&m.handle(login(4, "bob", "S2"), NOW, 0.5)),
        vec![(4, Err(code::LOGIN_IN_PROGRESS))]
    );
}

#[test]
fn same_user_same_ticket_is_repeat_login_at_once() {
    let mut m = logged_in();
    let a = m.handle(login(9, "alice", "S1"), NOW, 0.5);
    assert_eq!(
        a,
        vec![A::Reply {
            caller: 9,
            result: Ok(Reply::RepeatLogin)
        }]
    );
}

#[test]
fn same_user_new_ticket_renews_on_the_live_connection() {
    let mut m = logged_in();
    let a = m.handle(login(9, "alice", "S2"), NOW, 0.5);
    let (req, auto) = sent_login(&a).unwrap();
    assert!(!auto);
    assert_eq!(
        m.status(),
        LoginStatus::Logined,
        "renewal does not go offline"
    );
    let a = m.handle(
        I::LoginDone {
            req,
            result: Ok(Some(NOW + 999)),
        },
        NOW,
        0.5,
    );
    assert_eq!(replies(&a), vec![(9, Ok(Reply::RepeatLogin))]);
    assert!(a.contains(&A::Persist(Some(Saved {
        app_id: 1400000001,
        user: "alice".into(),
        sig: "S2".into()
    }))));
    assert_eq!(m.expires_at(), Some(NOW + 999));
}

#[test]
fn another_user_while_logged_in_logs_the_old_one_out_first() {
    let mut m = logged_in();
    let a = m.handle(login(9, "bob", "SB"), NOW, 0.5);
    assert_eq!(
        status_changes(&a),
        vec![
            (LoginStatus::Logout, "switchUser".into()),
            (LoginStatus::Logining, "login".into())
        ]
    );
    assert_eq!(a.first(), Some(&A::Persist(None)));
    let (req, _) = sent_login(&a).unwrap();
    m.handle(
        I::LoginDone {
            req,
            result: Ok(None),
        },
        NOW,
        0.5,
    );
    assert_eq!(m.user(), "bob");
}

#[test]
fn logout_while_logging_in_cancels_the_login() {
    let mut m = inited();
    m.handle(I::LinkUp, NOW, 0.5);
    let a = m.handle(login(2, "alice", "S1"), NOW, 0.5);
    let (req, _) = sent_login(&a).unwrap();
    let a = m.handle(I::Logout { caller: 3 }, NOW, 0.5);
    assert_eq!(replies(&a), vec![(2, Err(code::NOT_LOGGED_IN))]);
    let logout_req = a
        .iter()
        .find_map(|x| {
            if let A::SendLogout { req } = x {
                Some(*req)
            } else {
                None
            }
        })
        .unwrap();
    // The late login reply is ignored.
    assert!(replies(&m.handle(
        I::LoginDone {
            req,
            result: Ok(None)
        },
        NOW,
        0.5
    ))
    .is_empty());
    let a = m.handle(I::LogoutDone { req: logout_req }, NOW, 0.5);
    assert_eq!(replies(&a), vec![(3, Ok(Reply::Done))]);
    assert_eq!(m.status(), LoginStatus::Logout);
}

#[test]
fn logout_during_a_logout_is_7502_and_logout_when_logged_out_succeeds() {
    let mut m = logged_in();
    let a = m.handle(I::Logout { caller: 3 }, NOW, 0.5);
    assert_eq!(
        a.first(),
        Some(&A::Persist(None)),
        "the saved session is cleared before anything else"
    );
    assert_eq!(
        replies(&m.handle(I::Logout { caller: 4 }, NOW, 0.5)),
        vec![(4, Err(code::LOGOUT_IN_PROGRESS))]
    );
    assert_eq!(
        replies(&m.handle(login(5, "alice", "S1"), NOW, 0.5)),
        vec![(5, Err(code::LOGOUT_IN_PROGRESS))]
    );
    let mut m2 = inited();
    assert_eq!(
        replies(&m2.handle(I::Logout { caller: 6 }, NOW, 0.5)),
        vec![(6, Ok(Reply::Done))]
    );
}

#[test]
fn connection_lost_in_the_middle_of_a_login_resends_on_reconnect() {
    let mut m = inited();
    m.handle(I::LinkUp, NOW, 0.5);
    let a = m.handle(login(2, "alice", "S1"), NOW, 0.5);
    let (req1, _) = sent_login(&a).unwrap();
    m.handle(I::LinkDown, NOW, 0.5);
    // The failure of the lost request is stale.
    let a = m.handle(
        I::LoginDone {
            req: req1,
            result: Err(Fail::new(code::DISCONNECTED, "lost")),
        },
        NOW,
        0.5,
    );
    assert!(a.is_empty());
    let a = m.handle(I::LinkUp, NOW, 0.5);
    let (req2, auto) = sent_login(&a).unwrap();
    assert!(req2 != req1 && !auto);
    let a = m.handle(
        I::LoginDone {
            req: req2,
            result: Ok(None),
        },
        NOW,
        0.5,
    );
    assert_eq!(replies(&a), vec![(2, Ok(Reply::Done))]);
}

#[test]
fn login_without_a_connection_fails_with_9508_at_the_deadline() {
    let mut m = inited();
    let a = m.handle(login(2, "alice", "S1"), NOW, 0.5);
    assert!(sent_login(&a).is_none());
    assert!(a.contains(&A::SetTimer(Timer::LoginDeadline, 30_000)));
    let a = m.handle(I::TimerFired(Timer::LoginDeadline), NOW + 30, 0.5);
    assert_eq!(replies(&a), vec![(2, Err(code::DISCONNECTED))]);
    assert_eq!(m.status(), LoginStatus::Logout);
}

#[test]
fn a_server_reply_after_its_timeout_is_ignored() {
    let mut m = inited();
    m.handle(I::LinkUp, NOW, 0.5);
    let a = m.handle(login(2, "alice", "S1"), NOW, 0.5);
    let (req, _) = sent_login(&a).unwrap();
    let a = m.handle(
        I::LoginDone {
            req,
            result: Err(Fail::new(code::REQUEST_TIMEOUT, "timeout")),
        },
        NOW,
        0.5,
    );
    assert_eq!(replies(&a), vec![(2, Err(code::REQUEST_TIMEOUT))]);
    assert!(
        a.iter().any(|x| matches!(x, A::SendLogout { .. })),
        "a logout undoes what the late request may do"
    );
    assert!(late_reply_ignored(&mut m, req));
    assert_eq!(m.status(), LoginStatus::Logout);
}

#[test]
fn reconnect_relogs_in_silently_and_status_stays_logined() {
    let mut m = logged_in();
    let a = m.handle(I::LinkDown, NOW, 0.5);
    assert!(status_changes(&a).is_empty());
    assert_eq!(m.status(), LoginStatus::Logined);
    let a = m.handle(I::LinkUp, NOW, 0.5);
    let (req, auto) = sent_login(&a).unwrap();
    assert!(auto);
    let a = m.handle(
        I::LoginDone {
            req,
            result: Ok(None),
        },
        NOW,
        0.5,
    );
    assert_eq!(
        events(&a),
        vec![Event::Relogin {
            success: true,
            code: None,
            desc: None,
            retry_in_ms: None
        }],
        "only onRelogin: no status change"
    );
    assert!(m.online());
}

#[test]
fn relogin_refusals_follow_the_rules() {
    // (code, event expected, retries?)
    let table: &[(i32, Option<Event>, bool)] = &[
        (70001, Some(Event::UserSigExpired {}), false),
        (70003, Some(Event::UserSigExpired {}), false),
        (70052, Some(Event::UserSigExpired {}), false),
        (6208, Some(Event::KickedOffline {}), false),
        (9520, None, true),
        (9508, None, true),
        (5000, None, true),
    ];
    for (c, ev, retries) in table {
        let mut m = logged_in();
        m.handle(I::LinkDown, NOW, 0.5);
        let (req, _) = sent_login(&m.handle(I::LinkUp, NOW, 0.5)).unwrap();
        let a = m.handle(
            I::LoginDone {
                req,
                result: Err(Fail::new(*c, "no")),
            },
            NOW,
            0.5,
        );
        match ev {
            Some(e) => {
                assert_eq!(a.first(), Some(&A::Persist(None)), "{c}");
                assert!(events(&a).contains(e), "{c}");
                assert_eq!(m.status(), LoginStatus::Logout, "{c}");
                // Nothing ever logs in again by itself.
                for input in [I::LinkDown, I::LinkUp, I::TimerFired(Timer::Relogin)] {
                    assert!(sent_login(&m.handle(input, NOW, 0.5)).is_none(), "{c}");
                }
            }
            None => {
                assert!(a.contains(&A::SetTimer(Timer::Relogin, 1000)), "{c}: {a:?}");
                assert_eq!(
                    events(&a),
                    vec![Event::Relogin {
                        success: false,
                        code: Some(*c),
                        desc: Some("no".into()),
                        retry_in_ms: Some(1000)
                    }],
                    "{c}: the failed re-login is announced with its retry"
                );
                assert_eq!(m.status(), LoginStatus::Logined);
                let (_, auto) =
                    sent_login(&m.handle(I::TimerFired(Timer::Relogin), NOW, 0.5)).unwrap();
                assert!(auto && *retries);
            }
        }
    }
}

#[test]
fn a_kick_during_a_relogin_ends_the_session_and_the_late_reply_is_ignored() {
    let mut m = logged_in();
    m.handle(I::LinkDown, NOW, 0.5);
    let (req, _) = sent_login(&m.handle(I::LinkUp, NOW, 0.5)).unwrap();
    let a = m.handle(I::Kicked, NOW, 0.5);
    assert_eq!(a.first(), Some(&A::Persist(None)));
    assert_eq!(events(&a)[0], Event::KickedOffline {});
    assert_eq!(m.status(), LoginStatus::Logout);
    assert!(late_reply_ignored(&mut m, req));
    assert_eq!(m.status(), LoginStatus::Logout);
}

#[test]
fn kicked_online_fires_once_and_never_relogs_in() {
    let mut m = logged_in();
    let a = m.handle(I::Kicked, NOW, 0.5);
    assert_eq!(
        events(&a)
            .iter()
            .filter(|e| **e == Event::KickedOffline {})
            .count(),
        1
    );
    assert!(
        m.handle(I::Kicked, NOW, 0.5).is_empty(),
        "a second push is stale"
    );
    m.handle(I::LinkDown, NOW, 0.5);
    assert!(sent_login(&m.handle(I::LinkUp, NOW, 0.5)).is_none());
}

#[test]
fn expiry_warns_then_ends_the_session() {
    let mut m = inited();
    m.handle(I::LinkUp, NOW, 0.5);
    let a = m.handle(
        I::Login {
            caller: 2,
            user: "alice".into(),
            sig: "S".into(),
            expires_at: Some(NOW + 10),
        },
        NOW,
        0.5,
    );
    let (req, _) = sent_login(&a).unwrap();
    let a = m.handle(
        I::LoginDone {
            req,
            result: Ok(Some(NOW + 10)),
        },
        NOW,
        0.5,
    );
    assert!(a.contains(&A::SetTimer(Timer::Expiring, 0)));
    assert!(a.contains(&A::SetTimer(Timer::Expiry, 11_000)));
    let a = m.handle(I::TimerFired(Timer::Expiring), NOW, 0.5);
    assert_eq!(
        events(&a),
        vec![Event::UserSigExpiring {
            expires_at: NOW + 10,
            remaining_secs: 10
        }]
    );
    let a = m.handle(I::SigExpired, NOW + 11, 0.5);
    assert_eq!(events(&a)[0], Event::UserSigExpired {});
    assert_eq!(m.status(), LoginStatus::Logout);
    // The local timer firing after the push changes nothing.
    assert!(m
        .handle(I::TimerFired(Timer::Expiry), NOW + 11, 0.5)
        .is_empty());
}

#[test]
fn an_expired_ticket_is_not_sent_at_relogin() {
    let mut m = logged_in();
    m.handle(I::LinkDown, NOW, 0.5);
    let a = m.handle(I::LinkUp, NOW + 90_000, 0.5);
    assert!(sent_login(&a).is_none());
    assert!(events(&a).contains(&Event::UserSigExpired {}));
    assert_eq!(m.status(), LoginStatus::Logout);
}

#[test]
fn restore_resumes_with_an_auto_login_or_drops_an_expired_ticket() {
    let saved = Saved {
        app_id: 1400000001,
        user: "alice".into(),
        sig: "S".into(),
    };
    let mut m = SessionMachine::new(settings());
    let a = m.handle(
        I::Restore {
            saved: saved.clone(),
            expires_at: Some(NOW + 100),
        },
        NOW,
        0.5,
    );
    assert_eq!(a[0], A::StartConnection);
    assert_eq!(m.status(), LoginStatus::Logining);
    let (req, auto) = sent_login(&m.handle(I::LinkUp, NOW, 0.5)).unwrap();
    assert!(auto);
    let a = m.handle(
        I::LoginDone {
            req,
            result: Err(Fail::new(6208, "displaced")),
        },
        NOW,
        0.5,
    );
    assert_eq!(a[0], A::Persist(None));
    assert!(events(&a).contains(&Event::KickedOffline {}));
    assert_eq!(m.status(), LoginStatus::Logout);

    let mut m = SessionMachine::new(settings());
    let a = m.handle(
        I::Restore {
            saved,
            expires_at: Some(NOW - 1),
        },
        NOW,
        0.5,
    );
    assert!(a.contains(&A::Persist(None)));
    assert!(events(&a).contains(&Event::UserSigExpired {}));
    assert_eq!(m.status(), LoginStatus::Logout);
}

#[test]
fn uninit_logs_out_then_stops_the_connection() {
    let mut m = logged_in();
    let a = m.handle(I::UnInit { caller: 7 }, NOW, 0.5);
    let req = a
        .iter()
        .find_map(|x| {
            if let A::SendLogout { req } = x {
                Some(*req)
            } else {
                None
            }
        })
        .unwrap();
    assert!(!a.contains(&A::StopConnection));
    let a = m.handle(I::LogoutDone { req }, NOW, 0.5);
    assert!(a.contains(&A::StopConnection));
    assert!(replies(&a).contains(&(7, Ok(Reply::Done))));
    assert_eq!(m.app_id(), None);
}
