//! Property tests: the machines take any sequence of inputs, with extreme times, extreme
//! expiries and extreme random numbers, without panicking, and keep their promises.

use proptest::prelude::*;

use super::backoff::Backoff;
use super::connection::{ConnAction, ConnInput, ConnMachine};
use super::session::*;
use crate::codes::LoginStatus;

fn backoff() -> Backoff {
    Backoff {
        initial_ms: 1000,
        max_ms: 30_000,
        multiplier: 1.6,
        jitter: 0.2,
    }
}

fn any_i64() -> impl Strategy<Value = i64> {
    prop_oneof![
        Just(i64::MIN),
        Just(i64::MAX),
        Just(0i64),
        Just(-1i64),
        1_700_000_000i64..1_900_000_000,
        any::<i64>(),
    ]
}

fn any_rand() -> impl Strategy<Value = f64> {
    prop_oneof![
        0.0f64..1.0,
        Just(f64::NAN),
        Just(f64::INFINITY),
        Just(-1.0),
        Just(1.0),
    ]
}

fn fail() -> impl Strategy<Value = Fail> {
    prop_oneof![
        Just(70001),
        Just(70003),
        Just(6208),
        Just(9508),
        Just(9520),
        any::<i32>()
    ]
    .prop_map(|c| Fail::new(c, "x"))
}

fn timer() -> impl Strategy<Value = Timer> {
    prop_oneof![
        Just(Timer::LoginDeadline),
        Just(Timer::Relogin),
        Just(Timer::Expiring),
        Just(Timer::Expiry),
        Just(Timer::Renew)
    ]
}

/// An input; `caller` ids are filled in by the test so that each is unique.
fn input() -> impl Strategy<Value = SessionInput> {
    prop_oneof![
        any::<u64>().prop_map(|app_id| SessionInput::Init { caller: 0, app_id }),
        Just(SessionInput::UnInit { caller: 0 }),
        (
            prop_oneof![Just("alice".to_owned()), Just("bob".to_owned())],
            proptest::option::of(any_i64())
        )
            .prop_map(|(user, expires_at)| SessionInput::Login {
                caller: 0,
                user,
                sig: Some("sig".into()),
                expires_at,
            }),
        prop_oneof![Just("alice".to_owned()), Just("bob".to_owned())].prop_map(|user| {
            SessionInput::Login {
                caller: 0,
                user,
                sig: None,
                expires_at: None,
            }
        }),
        Just(SessionInput::Renew { caller: 0 }),
        Just(SessionInput::StartLogin {
            user: "alice".into()
        }),
        (
            0u64..8,
            prop_oneof![
                (
                    prop_oneof![
                        Just("sig".to_owned()),
                        Just("s".to_owned()),
                        Just("t".to_owned())
                    ],
                    any_i64()
                )
                    .prop_map(|(sig, expires_at)| Ok(Fetched { sig, expires_at })),
                fail().prop_map(Err)
            ]
        )
            .prop_map(|(fetch, result)| SessionInput::TicketFetched { fetch, result }),
        Just(SessionInput::Logout { caller: 0 }),
        proptest::option::of(any_i64()).prop_map(|expires_at| SessionInput::Restore {
            saved: Saved {
                app_id: 1,
                user: "alice".into(),
                sig: "s".into()
            },
            expires_at
        }),
        Just(SessionInput::LinkUp),
        Just(SessionInput::LinkDown),
        (
            0u64..8,
            prop_oneof![
                proptest::option::of(any_i64()).prop_map(Ok),
                fail().prop_map(Err)
            ]
        )
            .prop_map(|(req, result)| SessionInput::LoginDone { req, result }),
        (0u64..8).prop_map(|req| SessionInput::LogoutDone { req }),
        Just(SessionInput::Kicked),
        Just(SessionInput::SigExpired),
        timer().prop_map(SessionInput::TimerFired),
    ]
}

fn with_caller(i: SessionInput, c: CallerId) -> SessionInput {
    match i {
        SessionInput::Init { app_id, .. } => SessionInput::Init { caller: c, app_id },
        SessionInput::UnInit { .. } => SessionInput::UnInit { caller: c },
        SessionInput::Login {
            user,
            sig,
            expires_at,
            ..
        } => SessionInput::Login {
            caller: c,
            user,
            sig,
            expires_at,
        },
        SessionInput::Logout { .. } => SessionInput::Logout { caller: c },
        SessionInput::Renew { .. } => SessionInput::Renew { caller: c },
        other => other,
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(512))]

    #[test]
    fn the_session_machine_survives_anything_and_answers_each_caller_once(
        steps in proptest::collection::vec((input(), any_i64(), any_rand()), 1..60),
        provider in any::<bool>(),
        lead in prop_oneof![Just(0u64), Just(4), Just(u64::MAX), any::<u64>()],
    ) {
        let mut m = SessionMachine::new(SessionSettings {
            backoff: backoff(),
            login_timeout_ms: 30_000,
            expiring_lead_secs: lead,
            provider,
        });
        let mut answered = std::collections::HashSet::new();
        // Set when the session ended by a kick or a dead ticket; cleared by what a person
        // or the configuration asks for (login, restore, start login).
        let mut ended = false;
        // Refreshes since the last login asked for, or accepted.
        let mut refreshes = 0u32;
        for (n, (i, now, rand)) in steps.into_iter().enumerate() {
            let caller = n as CallerId + 1;
            if matches!(
                i,
                SessionInput::Login { .. } | SessionInput::Restore { .. } | SessionInput::StartLogin { .. }
            ) {
                ended = false;
                refreshes = 0;
            }
            let actions = m.handle(with_caller(i, caller), now, rand);
            let fetches = actions.iter().filter(|a| matches!(a, SessionAction::FetchTicket { .. })).count();
            prop_assert!(fetches <= 1, "{fetches} provider calls at once");
            prop_assert!(provider || fetches == 0, "a provider call without a provider");
            for a in actions {
                match a {
                    SessionAction::Reply { caller, .. } => {
                        prop_assert!(answered.insert(caller), "caller {caller} answered twice");
                    }
                    SessionAction::FetchTicket { purpose, .. } => {
                        prop_assert!(!ended, "a provider call after the session ended");
                        if purpose == Purpose::Refresh {
                            refreshes += 1;
                            prop_assert!(refreshes <= 1, "a second refresh for one login");
                        }
                    }
                    SessionAction::SendLogin { .. } => {
                        prop_assert!(!ended, "a login after the session ended");
                    }
                    SessionAction::Emit(crate::proto::api::Event::KickedOffline {})
                    | SessionAction::Emit(crate::proto::api::Event::UserSigExpired {}) => {
                        ended = true;
                    }
                    SessionAction::Emit(crate::proto::api::Event::LoginStatusChanged {
                        status: LoginStatus::Logined,
                        ..
                    })
                    | SessionAction::Emit(crate::proto::api::Event::Relogin { success: true, .. }) => {
                        refreshes = 0;
                    }
                    SessionAction::SetTimer(Timer::Renew, ms) => {
                        prop_assert!(provider, "a renewal timer without a provider");
                        prop_assert!(ms <= MAX_TIMER_MS, "renewal in {ms} ms");
                    }
                    SessionAction::SetTimer(Timer::Relogin, ms) => {
                        prop_assert!(ms <= 36_001, "re-login in {ms} ms");
                    }
                    SessionAction::SetTimer(t, ms) if t != Timer::LoginDeadline => {
                        prop_assert!(ms <= MAX_TIMER_MS, "{t:?} in {ms} ms");
                    }
                    _ => {}
                }
            }
            prop_assert_eq!(m.user().is_empty(), m.status() == LoginStatus::Logout);
        }
    }

    #[test]
    fn the_connection_machine_survives_extreme_times_and_randoms(
        steps in proptest::collection::vec((0u8..7, any::<u64>(), any_rand()), 1..60)
    ) {
        let mut m = ConnMachine::new(backoff(), 10_000);
        for (k, now, rand) in steps {
            let i = match k {
                0 => ConnInput::Start,
                1 => ConnInput::Stop,
                2 => ConnInput::Opened,
                3 => ConnInput::OpenFailed { code: 9508, desc: "x".into() },
                4 => ConnInput::Lost { code: 9508, desc: "x".into() },
                5 => ConnInput::RetryDue,
                _ => ConnInput::ReconnectNow,
            };
            for a in m.handle(i, now, rand) {
                if let ConnAction::ScheduleRetry(ms) = a {
                    prop_assert!(ms <= 36_001, "retry in {ms} ms");
                }
            }
            if m.state() == crate::proto::api::ConnState::Connected {
                prop_assert_eq!(m.attempt(), 0);
            }
            let _ = m.next_retry_ms(now);
        }
    }

    #[test]
    fn backoff_stays_within_its_cap_for_any_setting(
        initial in 1u64..3_600_000, max in 1u64..3_600_000, mult in 1.0f64..10.0,
        jitter in 0.0f64..1.0, failures in any::<u32>(), rand in any_rand()
    ) {
        let b = Backoff { initial_ms: initial, max_ms: max, multiplier: mult, jitter };
        let d = b.delay(failures, rand).as_millis();
        prop_assert!(d <= u128::from(max) * 2 + 1);
    }
}
