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
        provider: false,
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
        sig: Some(sig.into()),
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
            sig: Some("S".into()),
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
            sig: Some("S".into()),
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

// ------------------------------------------------------------------ the UserSig provider

const LEAD: u64 = 4;

/// Initialised, with a provider and a 4-s lead.
fn provided() -> SessionMachine {
    let mut m = SessionMachine::new(SessionSettings {
        provider: true,
        expiring_lead_secs: LEAD,
        ..settings()
    });
    m.handle(
        I::Init {
            caller: 1,
            app_id: 1400000001,
        },
        NOW,
        0.5,
    );
    m
}

fn fetch_of(a: &[SessionAction]) -> Option<(FetchId, Purpose)> {
    a.iter().find_map(|x| match x {
        A::FetchTicket { fetch, purpose, .. } => Some((*fetch, *purpose)),
        _ => None,
    })
}

fn fetches(a: &[SessionAction]) -> usize {
    a.iter()
        .filter(|x| matches!(x, A::FetchTicket { .. }))
        .count()
}

fn ticket(sig: &str, expires_at: i64) -> Result<Fetched, Fail> {
    Ok(Fetched {
        sig: sig.into(),
        expires_at,
    })
}

fn got(
    m: &mut SessionMachine,
    fetch: FetchId,
    r: Result<Fetched, Fail>,
    now: i64,
) -> Vec<SessionAction> {
    m.handle(I::TicketFetched { fetch, result: r }, now, 0.5)
}

fn timer_ms(a: &[SessionAction], t: Timer) -> Option<u64> {
    a.iter().find_map(|x| match x {
        A::SetTimer(tt, ms) if *tt == t => Some(*ms),
        _ => None,
    })
}

fn sent_sig(a: &[SessionAction]) -> Option<String> {
    a.iter().find_map(|x| match x {
        A::SendLogin { sig, .. } => Some(sig.clone()),
        _ => None,
    })
}

/// Logged in as alice with ticket S1 from the provider, valid 6 s from NOW, link up.
fn provider_logged_in() -> SessionMachine {
    let mut m = provided();
    m.handle(I::LinkUp, NOW, 0.5);
    let a = m.handle(
        I::Login {
            caller: 2,
            user: "alice".into(),
            sig: None,
            expires_at: None,
        },
        NOW,
        0.5,
    );
    assert_eq!(
        status_changes(&a),
        vec![(LoginStatus::Logining, "login".into())]
    );
    let (f, p) = fetch_of(&a).unwrap();
    assert_eq!(p, Purpose::Login);
    assert!(
        sent_login(&a).is_none(),
        "nothing is sent before the ticket"
    );
    assert_eq!(timer_ms(&a, Timer::LoginDeadline), Some(30_000));
    let a = got(&mut m, f, ticket("S1", NOW + 6), NOW);
    assert_eq!(sent_sig(&a).as_deref(), Some("S1"));
    let (req, auto) = sent_login(&a).unwrap();
    assert!(!auto);
    let a = m.handle(
        I::LoginDone {
            req,
            result: Ok(Some(NOW + 6)),
        },
        NOW,
        0.5,
    );
    assert_eq!(replies(&a), vec![(2, Ok(Reply::Done))]);
    assert_eq!(
        status_changes(&a),
        vec![(LoginStatus::Logined, "login".into())]
    );
    // Renewal at the lead (2 s) or halfway (3 s), whichever is later; no warning event.
    assert_eq!(timer_ms(&a, Timer::Renew), Some(3000));
    assert_eq!(timer_ms(&a, Timer::Expiring), None);
    assert_eq!(m.auth().next_renew_at, Some(NOW + 3));
    assert_eq!(m.auth().calls, 1);
    m
}

#[test]
fn a_login_without_a_ticket_fetches_one_from_the_provider() {
    provider_logged_in();
    // Without a provider it is a bad request.
    let mut m = inited();
    let a = m.handle(
        I::Login {
            caller: 3,
            user: "alice".into(),
            sig: None,
            expires_at: None,
        },
        NOW,
        0.5,
    );
    assert_eq!(replies(&a), vec![(3, Err(code::INVALID_PARAMETERS))]);
    assert_eq!(fetches(&a), 0);
}

#[test]
fn the_provider_failing_at_login_fails_the_login_once() {
    let mut m = provided();
    m.handle(I::LinkUp, NOW, 0.5);
    let a = m.handle(
        I::Login {
            caller: 2,
            user: "alice".into(),
            sig: None,
            expires_at: None,
        },
        NOW,
        0.5,
    );
    let (f, _) = fetch_of(&a).unwrap();
    let a = got(
        &mut m,
        f,
        Err(Fail::new(code::AUTH_PROVIDER_FAILED, "exit 1")),
        NOW,
    );
    assert_eq!(replies(&a), vec![(2, Err(code::AUTH_PROVIDER_FAILED))]);
    assert_eq!(
        status_changes(&a),
        vec![(LoginStatus::Logout, "loginFailed".into())]
    );
    assert_eq!(fetches(&a), 0);
    assert!(a.contains(&A::CancelTimer(Timer::LoginDeadline)));
    assert_eq!(
        m.auth().last_error.as_ref().map(|f| f.code),
        Some(code::AUTH_PROVIDER_FAILED)
    );
}

#[test]
fn auth_user_id_logs_in_at_start_and_waits_for_the_link() {
    let mut m = provided();
    let a = m.handle(
        I::StartLogin {
            user: "alice".into(),
        },
        NOW,
        0.5,
    );
    let (f, p) = fetch_of(&a).unwrap();
    assert_eq!(p, Purpose::Login);
    assert_eq!(
        timer_ms(&a, Timer::LoginDeadline),
        None,
        "no deadline at start"
    );
    let a = got(&mut m, f, ticket("S1", NOW + 600), NOW);
    assert!(sent_login(&a).is_none(), "the link is down");
    let a = m.handle(I::LinkUp, NOW + 100, 0.5);
    assert_eq!(sent_sig(&a).as_deref(), Some("S1"));
    // Only once, and only when nothing is logged in.
    let mut m = provider_logged_in();
    assert!(m
        .handle(I::StartLogin { user: "bob".into() }, NOW, 0.5)
        .is_empty());
    // Without a provider, nothing.
    let mut m = inited();
    assert!(m
        .handle(I::StartLogin { user: "bob".into() }, NOW, 0.5)
        .is_empty());
}

#[test]
fn renewals_reauthenticate_in_place_without_a_status_change() {
    let mut m = provider_logged_in();
    let mut now = NOW + 3;
    for (n, sig) in ["S2", "S3", "S4"].into_iter().enumerate() {
        let a = m.handle(I::TimerFired(Timer::Renew), now, 0.5);
        let (f, p) = fetch_of(&a).unwrap();
        assert_eq!(p, Purpose::Renew);
        assert_eq!(m.auth().next_renew_at, None);
        let a = got(&mut m, f, ticket(sig, now + 6), now);
        assert_eq!(sent_sig(&a).as_deref(), Some(sig));
        let (req, auto) = sent_login(&a).unwrap();
        assert!(!auto, "a re-authentication, not a re-login");
        let a = m.handle(
            I::LoginDone {
                req,
                result: Ok(Some(now + 6)),
            },
            now,
            0.5,
        );
        assert!(status_changes(&a).is_empty());
        assert_eq!(
            events(&a),
            vec![Event::UserSigRenewed {
                expires_at: now + 6
            }]
        );
        assert!(a
            .iter()
            .any(|x| matches!(x, A::Persist(Some(s)) if s.sig == sig)));
        assert_eq!(timer_ms(&a, Timer::Renew), Some(3000));
        assert_eq!(m.status(), LoginStatus::Logined);
        assert!(m.online());
        assert_eq!(m.auth().renewals, n as u64 + 1);
        assert_eq!(m.expires_at(), Some(now + 6));
        now += 3;
    }
    assert_eq!(m.auth().calls, 4);
}

#[test]
fn a_failing_provider_is_retried_with_backoff_until_the_ticket_expires() {
    let mut m = provider_logged_in();
    let mut now = NOW + 3;
    let mut retries = Vec::new();
    loop {
        let a = m.handle(I::TimerFired(Timer::Renew), now, 0.5);
        let Some((f, _)) = fetch_of(&a) else {
            panic!("no fetch at {now}: {a:?}")
        };
        let a = got(
            &mut m,
            f,
            Err(Fail::new(code::AUTH_PROVIDER_FAILED, "exit 1")),
            now,
        );
        assert!(sent_login(&a).is_none());
        let ev = events(&a);
        let Some(Event::UserSigRenewFailed {
            code: c,
            retry_in_ms,
            ..
        }) = ev.first()
        else {
            panic!("{ev:?}")
        };
        assert_eq!(*c, code::AUTH_PROVIDER_FAILED);
        match retry_in_ms {
            Some(ms) => {
                assert_eq!(timer_ms(&a, Timer::Renew), Some(*ms));
                retries.push(*ms);
                now += i64::try_from(ms.div_ceil(1000)).unwrap();
            }
            None => {
                assert!(a.contains(&A::CancelTimer(Timer::Renew)));
                assert_eq!(m.auth().next_renew_at, None);
                break;
            }
        }
    }
    // The backoff grew (1 s, 1.6 s, …) and stopped before the expiry at NOW + 6.
    assert!(
        !retries.is_empty() && retries.windows(2).all(|w| w[0] <= w[1]),
        "{retries:?}"
    );
    assert!(now <= NOW + 7);
    let a = m.handle(I::TimerFired(Timer::Expiry), NOW + 7, 0.5);
    assert_eq!(events(&a)[0], Event::UserSigExpired {});
    assert_eq!(
        status_changes(&a),
        vec![(LoginStatus::Logout, "userSigExpired".into())]
    );
    // Then nothing asks the provider or the server again.
    for i in [
        I::TimerFired(Timer::Renew),
        I::LinkDown,
        I::LinkUp,
        I::TimerFired(Timer::Relogin),
    ] {
        let a = m.handle(i, NOW + 8, 0.5);
        assert_eq!(fetches(&a), 0);
        assert!(sent_login(&a).is_none());
    }
}

#[test]
fn a_ticket_the_server_refused_as_wrong_is_not_sent_again() {
    for refusal in [
        code::USERSIG_CHECK_FAILED,
        code::USERSIG_USERID_MISMATCH,
        code::USERSIG_SDKAPPID_MISMATCH,
    ] {
        let mut m = provider_logged_in();
        let a = m.handle(I::TimerFired(Timer::Renew), NOW + 3, 0.5);
        let (f, _) = fetch_of(&a).unwrap();
        let a = got(&mut m, f, ticket("BAD", NOW + 9), NOW + 3);
        let (req, _) = sent_login(&a).unwrap();
        let a = m.handle(
            I::LoginDone {
                req,
                result: Err(Fail::new(refusal, "no")),
            },
            NOW + 3,
            0.5,
        );
        assert!(
            matches!(events(&a)[..], [Event::UserSigRenewFailed { code, retry_in_ms: Some(_), .. }] if code == refusal)
        );
        assert!(m.online(), "the login in use is kept");
        // The same output again: reported without sending it.
        let a = m.handle(I::TimerFired(Timer::Renew), NOW + 4, 0.5);
        let (f, _) = fetch_of(&a).unwrap();
        let a = got(&mut m, f, ticket("BAD", NOW + 10), NOW + 4);
        assert!(sent_login(&a).is_none());
        assert!(
            matches!(events(&a)[..], [Event::UserSigRenewFailed { code, .. }] if code == refusal)
        );
        // Another one is tried.
        let a = m.handle(I::TimerFired(Timer::Renew), NOW + 5, 0.5);
        let (f, _) = fetch_of(&a).unwrap();
        let a = got(&mut m, f, ticket("GOOD", NOW + 11), NOW + 5);
        assert_eq!(sent_sig(&a).as_deref(), Some("GOOD"));
    }
}

#[test]
fn a_provider_ticket_that_is_not_newer_is_a_failure() {
    let mut m = provider_logged_in();
    for (sig, exp) in [("S1", NOW + 9), ("S9", NOW + 6), ("S9", NOW + 5)] {
        let a = m.handle(I::TimerFired(Timer::Renew), NOW + 3, 0.5);
        let (f, _) = fetch_of(&a).unwrap();
        let a = got(&mut m, f, ticket(sig, exp), NOW + 3);
        assert!(sent_login(&a).is_none(), "{sig} {exp}");
        assert!(matches!(
            events(&a)[..],
            [Event::UserSigRenewFailed {
                code: code::AUTH_PROVIDER_FAILED,
                ..
            }]
        ));
    }
}

#[test]
fn an_expired_refusal_fetches_once_and_retries_once() {
    let saved = Saved {
        app_id: 1400000001,
        user: "alice".into(),
        sig: "OLD".into(),
    };
    let mut m = SessionMachine::new(SessionSettings {
        provider: true,
        ..settings()
    });
    m.handle(
        I::Restore {
            saved: saved.clone(),
            expires_at: Some(NOW + 100),
        },
        NOW,
        0.5,
    );
    let a = m.handle(I::LinkUp, NOW, 0.5);
    let (req, auto) = sent_login(&a).unwrap();
    assert!(auto);
    let a = m.handle(
        I::LoginDone {
            req,
            result: Err(Fail::new(code::USERSIG_EXPIRED, "expired")),
        },
        NOW,
        0.5,
    );
    let (f, p) = fetch_of(&a).unwrap();
    assert_eq!(p, Purpose::Refresh);
    assert!(events(&a).is_empty());
    let a = got(&mut m, f, ticket("NEW", NOW + 600), NOW);
    assert_eq!(sent_sig(&a).as_deref(), Some("NEW"));
    let (req, _) = sent_login(&a).unwrap();
    let a = m.handle(
        I::LoginDone {
            req,
            result: Err(Fail::new(code::USERSIG_EXPIRED, "expired")),
        },
        NOW,
        0.5,
    );
    assert_eq!(fetches(&a), 0, "only once");
    assert_eq!(events(&a)[0], Event::UserSigExpired {});
    assert_eq!(m.status(), LoginStatus::Logout);

    // A stored ticket that expired while the daemon was down: fetched, not dropped.
    let mut m = SessionMachine::new(SessionSettings {
        provider: true,
        ..settings()
    });
    let a = m.handle(
        I::Restore {
            saved: saved.clone(),
            expires_at: Some(NOW - 10),
        },
        NOW,
        0.5,
    );
    assert_eq!(
        status_changes(&a),
        vec![(LoginStatus::Logining, "restore".into())]
    );
    let a = m.handle(I::LinkUp, NOW, 0.5);
    assert!(sent_login(&a).is_none(), "an expired ticket is never sent");
    let (f, p) = fetch_of(&a).unwrap();
    assert_eq!(p, Purpose::Refresh);
    let a = got(&mut m, f, ticket("NEW", NOW + 600), NOW);
    let (req, _) = sent_login(&a).unwrap();
    let a = m.handle(
        I::LoginDone {
            req,
            result: Ok(Some(NOW + 600)),
        },
        NOW,
        0.5,
    );
    assert!(a
        .iter()
        .any(|x| matches!(x, A::Persist(Some(s)) if s.sig == "NEW")));
    assert_eq!(
        status_changes(&a),
        vec![(LoginStatus::Logined, "restore".into())]
    );

    // The refresh failing ends the session as a dead ticket does.
    let mut m = SessionMachine::new(SessionSettings {
        provider: true,
        ..settings()
    });
    m.handle(
        I::Restore {
            saved,
            expires_at: Some(NOW - 10),
        },
        NOW,
        0.5,
    );
    let a = m.handle(I::LinkUp, NOW, 0.5);
    let (f, _) = fetch_of(&a).unwrap();
    let a = got(
        &mut m,
        f,
        Err(Fail::new(code::AUTH_PROVIDER_FAILED, "timeout")),
        NOW,
    );
    let ev = events(&a);
    assert!(
        matches!(
            ev[0],
            Event::UserSigRenewFailed {
                retry_in_ms: None,
                ..
            }
        ),
        "{ev:?}"
    );
    assert_eq!(ev[1], Event::UserSigExpired {});
    assert_eq!(m.status(), LoginStatus::Logout);
}

#[test]
fn after_a_kick_nothing_asks_the_provider_or_the_server() {
    let mut m = provider_logged_in();
    let a = m.handle(I::TimerFired(Timer::Renew), NOW + 3, 0.5);
    let (f, _) = fetch_of(&a).unwrap();
    let a = m.handle(I::Kicked, NOW + 3, 0.5);
    assert_eq!(events(&a)[0], Event::KickedOffline {});
    assert!(a.contains(&A::CancelTimer(Timer::Renew)));
    assert_eq!(m.auth().next_renew_at, None);
    for i in [
        I::TicketFetched {
            fetch: f,
            result: ticket("S2", NOW + 9),
        },
        I::TimerFired(Timer::Renew),
        I::TimerFired(Timer::Expiry),
        I::LinkDown,
        I::LinkUp,
    ] {
        let a = m.handle(i, NOW + 10, 0.5);
        assert!(a.is_empty(), "{a:?}");
    }
}

#[test]
fn renew_user_sig_renews_now_and_answers_every_caller() {
    let mut m = inited();
    let a = m.handle(I::Renew { caller: 5 }, NOW, 0.5);
    assert_eq!(replies(&a), vec![(5, Err(code::AUTH_PROVIDER_FAILED))]);
    let mut m = provided();
    let a = m.handle(I::Renew { caller: 5 }, NOW, 0.5);
    assert_eq!(replies(&a), vec![(5, Err(code::NOT_LOGGED_IN))]);

    let mut m = provider_logged_in();
    let a = m.handle(I::Renew { caller: 5 }, NOW + 1, 0.5);
    assert!(a.contains(&A::CancelTimer(Timer::Renew)));
    let (f, p) = fetch_of(&a).unwrap();
    assert_eq!(p, Purpose::Renew);
    let a = m.handle(I::Renew { caller: 6 }, NOW + 1, 0.5);
    assert!(a.is_empty(), "joins the renewal in flight");
    let a = got(&mut m, f, ticket("S2", NOW + 7), NOW + 1);
    let (req, _) = sent_login(&a).unwrap();
    // A login with another ticket meanwhile waits its turn.
    let a = m.handle(login(7, "alice", "S3"), NOW + 1, 0.5);
    assert_eq!(replies(&a), vec![(7, Err(code::LOGIN_IN_PROGRESS))]);
    let a = m.handle(
        I::LoginDone {
            req,
            result: Ok(Some(NOW + 7)),
        },
        NOW + 1,
        0.5,
    );
    assert_eq!(
        replies(&a),
        vec![
            (5, Ok(Reply::Renewed(NOW + 7))),
            (6, Ok(Reply::Renewed(NOW + 7)))
        ]
    );
    // A failure is answered too, and retried on schedule.
    let a = m.handle(I::Renew { caller: 8 }, NOW + 2, 0.5);
    let (f, _) = fetch_of(&a).unwrap();
    let a = got(
        &mut m,
        f,
        Err(Fail::new(code::USERSIG_USERID_MISMATCH, "bob's")),
        NOW + 2,
    );
    assert_eq!(replies(&a), vec![(8, Err(code::USERSIG_USERID_MISMATCH))]);
    assert!(timer_ms(&a, Timer::Renew).is_some());
    // A logout answers the waiting callers.
    let a = m.handle(I::Renew { caller: 9 }, NOW + 2, 0.5);
    assert!(fetch_of(&a).is_some());
    let a = m.handle(I::Logout { caller: 10 }, NOW + 2, 0.5);
    assert!(replies(&a).contains(&(9, Err(code::NOT_LOGGED_IN))));
}

#[test]
fn offline_the_renewed_ticket_waits_for_the_next_re_login() {
    let mut m = provider_logged_in();
    m.handle(I::LinkDown, NOW + 1, 0.5);
    let a = m.handle(I::TimerFired(Timer::Renew), NOW + 3, 0.5);
    let (f, _) = fetch_of(&a).unwrap();
    let a = got(&mut m, f, ticket("S2", NOW + 9), NOW + 3);
    assert!(sent_login(&a).is_none());
    assert_eq!(
        events(&a),
        vec![Event::UserSigRenewed {
            expires_at: NOW + 9
        }]
    );
    assert!(a
        .iter()
        .any(|x| matches!(x, A::Persist(Some(s)) if s.sig == "S2")));
    let a = m.handle(I::LinkUp, NOW + 4, 0.5);
    assert_eq!(sent_login(&a).map(|(_, auto)| auto), Some(true));
    assert_eq!(sent_sig(&a).as_deref(), Some("S2"));
}

#[test]
fn a_connection_lost_during_the_reauthentication_is_a_failed_renewal() {
    let mut m = provider_logged_in();
    let a = m.handle(I::TimerFired(Timer::Renew), NOW + 3, 0.5);
    let (f, _) = fetch_of(&a).unwrap();
    let a = got(&mut m, f, ticket("S2", NOW + 9), NOW + 3);
    let (req, _) = sent_login(&a).unwrap();
    let a = m.handle(I::LinkDown, NOW + 3, 0.5);
    assert!(matches!(
        events(&a)[..],
        [Event::UserSigRenewFailed {
            code: code::DISCONNECTED,
            retry_in_ms: Some(_),
            ..
        }]
    ));
    assert!(late_reply_ignored(&mut m, req));
    assert_eq!(m.expires_at(), Some(NOW + 6), "the old ticket stays");
}
