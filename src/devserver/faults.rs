//! Fault injection endpoints (`--faults` only; see docs/devserver.md).

use std::collections::HashMap;
use std::time::Duration;

use actix_web::{web, HttpResponse};
use serde_json::json;
use tokio::time::Instant;

use super::state::Hub;

type Query = web::Query<HashMap<String, String>>;

fn bad(why: &str) -> HttpResponse {
    HttpResponse::BadRequest().json(json!({"ok": false, "error": why}))
}

fn num(q: &Query, name: &str) -> Result<u64, String> {
    match q.get(name).map(|v| v.trim().parse::<u64>()) {
        Some(Ok(n)) => Ok(n),
        _ => Err(format!(
            "query parameter {name} must be a non-negative integer"
        )),
    }
}

/// Registers the fault routes under `/faults`.
pub fn routes(cfg: &mut web::ServiceConfig) {
    cfg.service(
        web::scope("/faults")
            .route("/drop", web::post().to(drop_all))
            .route("/silence", web::post().to(silence))
            .route("/refuse", web::post().to(refuse))
            .route("/delay", web::post().to(delay))
            .route("/fail-logins", web::post().to(fail_logins))
            .route("/clear", web::post().to(clear))
            .route("/push-burst", web::post().to(push_burst)),
    );
}

/// `POST /faults/drop`: every open connection ends its TCP without a close frame.
async fn drop_all(hub: web::Data<Hub>) -> HttpResponse {
    hub.signals.send_modify(|s| s.drop_generation += 1);
    tracing::warn!("fault: dropping every connection");
    HttpResponse::Ok().json(json!({"ok": true}))
}

/// `POST /faults/silence?ms=N`: existing connections read and write nothing for N ms.
async fn silence(hub: web::Data<Hub>, q: Query) -> HttpResponse {
    let ms = match num(&q, "ms") {
        Ok(n) => n,
        Err(e) => return bad(&e),
    };
    let until = Instant::now() + Duration::from_millis(ms);
    hub.signals.send_modify(|s| s.silent_until = Some(until));
    tracing::warn!(ms, "fault: every connection goes silent");
    HttpResponse::Ok().json(json!({"ok": true, "ms": ms}))
}

/// `POST /faults/refuse?ms=N`: upgrades are answered HTTP 503 for N ms.
async fn refuse(hub: web::Data<Hub>, q: Query) -> HttpResponse {
    let ms = match num(&q, "ms") {
        Ok(n) => n,
        Err(e) => return bad(&e),
    };
    hub.set_refuse_until(Some(Instant::now() + Duration::from_millis(ms)));
    tracing::warn!(ms, "fault: refusing new connections");
    HttpResponse::Ok().json(json!({"ok": true, "ms": ms}))
}

/// `POST /faults/delay?ms=N`: every response to a request waits N ms (0 ends it).
async fn delay(hub: web::Data<Hub>, q: Query) -> HttpResponse {
    let ms = match num(&q, "ms") {
        Ok(n) => n,
        Err(e) => return bad(&e),
    };
    hub.set_delay_ms(ms);
    tracing::warn!(ms, "fault: delaying responses");
    HttpResponse::Ok().json(json!({"ok": true, "ms": ms}))
}

/// `POST /faults/fail-logins?count=K&code=C`: the next K logins fail with code C.
async fn fail_logins(hub: web::Data<Hub>, q: Query) -> HttpResponse {
    let count = match num(&q, "count") {
        Ok(n) => n,
        Err(e) => return bad(&e),
    };
    let code = match q.get("code").map(|c| c.trim().parse::<i32>()) {
        Some(Ok(c)) if c != 0 => c,
        _ => return bad("query parameter code must be a non-zero integer"),
    };
    hub.set_fail_logins(count, code);
    tracing::warn!(count, code, "fault: failing the next logins");
    HttpResponse::Ok().json(json!({"ok": true, "count": count, "code": code}))
}

/// `POST /faults/clear`: ends silence, refusal, delay and pending login failures.
async fn clear(hub: web::Data<Hub>) -> HttpResponse {
    hub.clear_faults();
    tracing::warn!("fault: all faults cleared");
    HttpResponse::Ok().json(json!({"ok": true}))
}

/// The custom profile fields a burst stamps on each push: its number (1..N), and the
/// server's unix ms and µs as it makes it.
const STAMPS: [&str; 3] = [
    "Tag_Profile_Custom_Seq",
    "Tag_Profile_Custom_SentAtMs",
    "Tag_Profile_Custom_SentAtUs",
];

/// N pushes to the user's online connections, R per second (or as fast as possible);
/// returns how many connections were pushed to.
async fn burst(hub: &Hub, app: u64, user: &str, count: u64, rate: Option<u64>) -> usize {
    let start = Instant::now();
    let mut connections = 0;
    // Paced: one push per wake-up. Unpaced: batches under one lock, and a yield between
    // them so the connection tasks drain their queues.
    let batch = if rate.is_some() { 1 } else { 256 };
    let mut next = 1;
    while next <= count {
        if let Some(r) = rate {
            let at = (next - 1).saturating_mul(1_000_000) / r;
            tokio::time::sleep_until(start + Duration::from_micros(at)).await;
        }
        let times = batch.min(count - next + 1);
        let first = next;
        let n = hub.push_stamped(app, user, times, STAMPS, |k| {
            let sent_us = super::state::now_us();
            let seq = i64::try_from(first.saturating_add(k)).unwrap_or(i64::MAX);
            [seq, sent_us / 1000, sent_us]
        });
        connections = n.unwrap_or(0);
        next += times;
        if rate.is_none() {
            tokio::task::yield_now().await;
        }
    }
    connections
}

/// `POST /faults/push-burst?user=U&count=N[&rate=R][&sdkappid=A]`: N `selfInfoUpdated`
/// pushes to the user's online connections, `customInfo.Tag_Profile_Custom_Seq` = 1..N
/// `Tag_Profile_Custom_SentAtMs` = the server's unix ms at the push and
/// `Tag_Profile_Custom_SentAtUs` = the same instant in unix µs (for latency figures finer
/// than a millisecond). Without `rate`
/// as fast as possible; with it, R per second. Answers when every push is queued.
async fn push_burst(hub: web::Data<Hub>, q: Query) -> HttpResponse {
    let Some(user) = q.get("user").cloned() else {
        return bad("query parameter user is required");
    };
    let count = match num(&q, "count") {
        Ok(n) => n,
        Err(e) => return bad(&e),
    };
    let rate = match q.get("rate") {
        None => None,
        Some(_) => match num(&q, "rate") {
            Ok(0) => None,
            Ok(r) => Some(r),
            Err(e) => return bad(&e),
        },
    };
    let app = match q.get("sdkappid").map(|a| a.trim().parse::<u64>()) {
        Some(Ok(a)) => a,
        Some(Err(_)) => return bad("sdkappid must be an integer"),
        None => match hub.settings.apps.keys().next() {
            Some(a) => *a,
            None => return bad("no app configured"),
        },
    };
    if !hub.account_exists(app, &user) {
        return bad("no such account");
    }
    tracing::info!(user, count, ?rate, "bench: push burst");
    // The pushes to a user with one connection are made on the thread that writes it: each
    // is stamped on the thread that sends it (as a publisher stamps a message on the
    // thread that writes it), with no hop between threads in between, and a burst's frames
    // are made and freed by one thread (no wake-up of another per batch, no memory freed
    // across threads). Otherwise they are made here.
    let home = hub.home_of(app, &user);
    let connections = match home {
        Some(home) => {
            let (tx, rx) = tokio::sync::oneshot::channel();
            let (h, u) = (hub.clone(), user.clone());
            let spawned = home.spawn(async move {
                let _ = tx.send(burst(&h, app, &u, count, rate).await);
            });
            if spawned {
                // Nothing back: the thread stopped (the server is stopping) mid-burst.
                rx.await.unwrap_or(0)
            } else {
                burst(&hub, app, &user, count, rate).await
            }
        }
        None => burst(&hub, app, &user, count, rate).await,
    };
    HttpResponse::Ok().json(json!({"ok": true, "pushed": count, "connections": connections}))
}
