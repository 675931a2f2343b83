//! The WebSocket access endpoint `GET /v1/connect` (docs/protocol.md).
//!
//! One task per connection owns the socket. It selects over: frames from the client, its
//! outbound queue (pushes the [`Hub`] addresses to it), the fault signals, the idle
//! deadline and the login's expiry deadline.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use actix_web::{web, HttpRequest, HttpResponse};
use actix_ws::{AggregatedMessage, CloseCode, CloseReason, ProtocolError};
use tokio::time::Instant;

use super::state::{now_ms, ConnId, ExpiryCheck, Hub, Outbound};
use super::wsout::{WsOut, CHUNK_BYTES};
use crate::codes::code;
use crate::proto::ws::{
    Command, Empty, HeartbeatResult, Hello, InfoBody, Platform, Push, Request, Response,
    MAX_FRAME_BYTES, PROTOCOL_VERSIONS,
};
use crate::usersig;

/// Fixed facts about one connection.
#[derive(Debug, Clone)]
struct ConnInfo {
    app: u64,
    platform: Platform,
    instance: String,
    version: u32,
    peer: String,
}

fn valid_instance(s: &str) -> bool {
    !s.is_empty()
        && s.len() <= 64
        && s.bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-')
}

fn refuse(status: actix_web::http::StatusCode, why: &str) -> HttpResponse {
    HttpResponse::build(status)
        .content_type("text/plain; charset=utf-8")
        .body(format!("{why}\n"))
}

/// `GET /v1/connect?sdkappid=&platform=&instanceid=&ver=`.
pub async fn connect(
    req: HttpRequest,
    body: web::Payload,
    query: web::Query<HashMap<String, String>>,
    hub: web::Data<Hub>,
) -> HttpResponse {
    use actix_web::http::StatusCode;
    let peer = req.peer_addr().map(|a| a.to_string()).unwrap_or_default();
    if hub.refusing() {
        tracing::warn!(%peer, "fault: connection refused (503)");
        return refuse(
            StatusCode::SERVICE_UNAVAILABLE,
            "refusing connections (fault injection)",
        );
    }
    let app = match query.get("sdkappid").map(|s| s.trim().parse::<u64>()) {
        Some(Ok(a)) if hub.settings.apps.contains_key(&a) => a,
        Some(Ok(_)) => return refuse(StatusCode::FORBIDDEN, "unknown sdkappid"),
        _ => return refuse(StatusCode::BAD_REQUEST, "missing or malformed sdkappid"),
    };
    let platform = match query.get("platform").map(|p| Platform::parse(p)) {
        Some(Ok(p)) => p,
        Some(Err(e)) => return refuse(StatusCode::BAD_REQUEST, &e),
        None => return refuse(StatusCode::BAD_REQUEST, "missing platform"),
    };
    let instance = match query.get("instanceid") {
        Some(i) if valid_instance(i) => i.clone(),
        _ => {
            return refuse(
                StatusCode::BAD_REQUEST,
                "missing or malformed instanceid: [A-Za-z0-9_-]{1,64}",
            )
        }
    };
    let offered: Vec<u32> = query
        .get("ver")
        .map(|v| v.split(',').filter_map(|x| x.trim().parse().ok()).collect())
        .unwrap_or_else(|| vec![1]);
    let Some(version) = PROTOCOL_VERSIONS
        .iter()
        .rev()
        .find(|v| offered.contains(v))
        .copied()
    else {
        return refuse(StatusCode::BAD_REQUEST, "no common protocol version");
    };
    // The handshake and the reading half as actix-ws makes them; the writing half is
    // the connection task's own (frames encoded in batches).
    let (response, _generic, stream) = match actix_ws::handle(&req, body) {
        Ok(x) => x,
        Err(e) => return e.error_response(),
    };
    let (response, session) = WsOut::attach(response);
    let info = ConnInfo {
        app,
        platform,
        instance,
        version,
        peer,
    };
    let hub = hub.into_inner();
    actix_web::rt::spawn(run(hub, session, stream, info));
    response
}

/// The most queued frames a connection task sends before it looks at its socket and
/// timers again.
const OUT_BATCH: usize = 256;

/// Why a connection task ended.
enum End {
    /// Close frame sent (or received); the socket ends normally.
    Closed,
    /// The `drop` fault: end without a close frame.
    Dropped,
}

fn unix_ms_to_instant(unix_s_exclusive: i64) -> Instant {
    // The ticket is valid while now <= expires_at; it is dead from second expires_at + 1.
    let wait = (unix_s_exclusive.saturating_add(1)).saturating_mul(1000) - now_ms();
    Instant::now() + Duration::from_millis(wait.max(0) as u64)
}

async fn close(session: &mut WsOut, code: CloseCode, reason: &str) {
    let _ = session
        .close(Some(CloseReason {
            code,
            description: Some(reason.to_owned()),
        }))
        .await;
}

async fn run(hub: Arc<Hub>, mut session: WsOut, stream: actix_ws::MessageStream, info: ConnInfo) {
    let mut stream = stream
        .max_frame_size(MAX_FRAME_BYTES)
        .aggregate_continuations()
        .max_continuation_size(MAX_FRAME_BYTES);
    let (id, mut outbound) = hub.register(info.app, info.platform, &info.instance);
    let mut signals = hub.signals.subscribe();
    let drop_generation = signals.borrow_and_update().drop_generation;
    tracing::info!(conn = id, peer = %info.peer, app = info.app, platform = %info.platform, instance = %info.instance, "connection opened");

    let idle = Duration::from_millis(hub.settings.idle_timeout_ms);
    let hello = Push::Hello(Hello {
        version: info.version,
        server_time: now_ms(),
        idle_timeout_ms: hub.settings.idle_timeout_ms,
        max_frame_bytes: MAX_FRAME_BYTES,
    });
    let end = if session.text(to_json(&hello)).await.is_err() {
        End::Dropped
    } else {
        let mut last_rx = Instant::now();
        let mut expiry: Option<(u64, Instant)> = None;
        loop {
            // The silence fault: read nothing, write nothing, until it ends.
            let sig = *signals.borrow_and_update();
            if sig.drop_generation != drop_generation {
                break End::Dropped;
            }
            if let Some(until) = sig.silent_until.filter(|u| *u > Instant::now()) {
                tokio::select! {
                    _ = tokio::time::sleep_until(until) => {}
                    r = signals.changed() => if r.is_err() { break End::Dropped },
                }
                // Frames the client sent meanwhile are read now; the silence is ours.
                last_rx = Instant::now();
                continue;
            }
            let expiry_at = expiry.map(|(_, at)| at);
            // Biased: fault signals, then pushes queued before the next request is read, so a
            // client sees a kick before the answer to a request it sent after the kick.
            tokio::select! {
                biased;
                r = signals.changed() => if r.is_err() { break End::Dropped },
                out = outbound.recv() => {
                    // What queued behind this one goes out in the same turn and the same
                    // writes (a burst of pushes), up to OUT_BATCH, unless a fault signal is
                    // waiting.
                    let mut next = out;
                    let mut sent = 0;
                    let end = loop {
                        let queued = match next {
                            Some(Outbound::Frame(f)) => session.queue_text(f),
                            Some(Outbound::Push(p)) => session.queue_text(to_json(&p)),
                            Some(Outbound::Close(c, reason)) => {
                                // After the frames batched before it.
                                close(&mut session, CloseCode::from(c), &reason).await;
                                break Some(End::Closed);
                            }
                            None => break Some(End::Closed),
                        };
                        if queued.is_err() { break Some(End::Closed); }
                        if session.queued() >= CHUNK_BYTES && session.flush().await.is_err() {
                            break Some(End::Closed);
                        }
                        sent += 1;
                        if sent == OUT_BATCH || signals.has_changed().unwrap_or(true) {
                            break None;
                        }
                        match outbound.try_recv() {
                            Ok(o) => next = Some(o),
                            Err(_) => break None,
                        }
                    };
                    if session.flush().await.is_err() { break End::Closed; }
                    if let Some(e) = end { break e; }
                    expiry = hub.login_of(id).map(|(l, e)| (l, unix_ms_to_instant(e)));
                },
                msg = stream.recv() => {
                    last_rx = Instant::now();
                    match msg {
                        None => break End::Closed,
                        Some(Ok(AggregatedMessage::Text(t))) => {
                            handle_text(&hub, id, &mut session, &t).await;
                            expiry = hub.login_of(id).map(|(l, e)| (l, unix_ms_to_instant(e)));
                        }
                        Some(Ok(AggregatedMessage::Binary(_))) => {
                            respond(&hub, &mut session, error(0, code::INVALID_PARAMETERS, "binary frames are not part of the protocol")).await;
                        }
                        Some(Ok(AggregatedMessage::Ping(p))) => {
                            if session.pong(&p).await.is_err() { break End::Closed; }
                        }
                        Some(Ok(AggregatedMessage::Pong(_))) => {}
                        Some(Ok(AggregatedMessage::Close(reason))) => {
                            let code = reason.map(|r| u16::from(r.code)).unwrap_or(1005);
                            tracing::info!(conn = id, code, "closed by the client ({code})");
                            close(&mut session, CloseCode::Normal, "bye").await;
                            break End::Closed;
                        }
                        Some(Err(ProtocolError::Overflow)) => {
                            tracing::warn!(conn = id, "frame larger than {MAX_FRAME_BYTES} bytes: closing 1009");
                            close(&mut session, CloseCode::Size, &format!("frame exceeds maxFrameBytes ({MAX_FRAME_BYTES})")).await;
                            break End::Closed;
                        }
                        Some(Err(e)) => {
                            tracing::warn!(conn = id, error = %e, "protocol error: closing 1002");
                            close(&mut session, CloseCode::Protocol, "protocol error").await;
                            break End::Closed;
                        }
                    }
                }
                _ = tokio::time::sleep_until(last_rx + idle) => {
                    tracing::info!(conn = id, idle_ms = hub.settings.idle_timeout_ms, "idle timeout: closing 4001");
                    close(&mut session, CloseCode::Other(4001), "idle timeout").await;
                    break End::Closed;
                }
                _ = async { match expiry_at { Some(at) => tokio::time::sleep_until(at).await, None => std::future::pending().await } } => {
                    let Some((login, _)) = expiry else { continue };
                    match hub.expire(id, login, usersig::now_unix()) {
                        ExpiryCheck::Expired => {
                            expiry = None;
                            if session.text(to_json(&Push::UserSigExpired(Empty {}))).await.is_err() { break End::Closed; }
                        }
                        ExpiryCheck::NotYet(e) => expiry = Some((login, unix_ms_to_instant(e).max(Instant::now() + Duration::from_millis(20)))),
                        ExpiryCheck::Gone => expiry = None,
                    }
                }
            }
        }
    };
    hub.disconnect(id);
    match end {
        End::Closed => tracing::info!(conn = id, peer = %info.peer, "connection closed"),
        End::Dropped => {
            tracing::warn!(conn = id, peer = %info.peer, "connection dropped (no close frame)")
        }
    }
    // Dropping the session and the stream ends the response: the TCP connection closes,
    // without a close frame when none was sent.
}

fn to_json<T: serde::Serialize>(v: &T) -> String {
    serde_json::to_string(v).unwrap_or_else(|_| String::from("{}"))
}

fn error(seq: u64, code: i32, desc: &str) -> Response {
    Response {
        seq,
        code,
        desc: desc.to_owned(),
        body: serde_json::json!({}),
    }
}

fn ok<T: serde::Serialize>(seq: u64, body: &T) -> Response {
    Response {
        seq,
        code: 0,
        desc: String::new(),
        body: serde_json::to_value(body).unwrap_or_else(|_| serde_json::json!({})),
    }
}

/// Sends a response, after the `delay` fault's wait when one is set (without holding up
/// the connection: pongs and other frames go on meanwhile).
async fn respond(hub: &Hub, session: &mut WsOut, r: Response) {
    let frame = to_json(&r);
    let delay = hub.delay_ms();
    if delay == 0 {
        let _ = session.text(frame).await;
    } else {
        let mut s = session.clone();
        actix_web::rt::spawn(async move {
            tokio::time::sleep(Duration::from_millis(delay)).await;
            let _ = s.text(frame).await;
        });
    }
}

/// Parses one request frame; on failure, the error response to send.
fn parse(text: &str) -> Result<Request, Response> {
    let value: serde_json::Value = serde_json::from_str(text)
        .map_err(|e| error(0, code::INVALID_PARAMETERS, &format!("not JSON: {e}")))?;
    let serde_json::Value::Object(mut obj) = value else {
        return Err(error(
            0,
            code::INVALID_PARAMETERS,
            "a frame must be a JSON object",
        ));
    };
    let seq = obj.get("seq").and_then(|s| s.as_u64()).unwrap_or(0);
    if seq == 0 {
        return Err(error(
            0,
            code::INVALID_PARAMETERS,
            "seq must be a positive integer",
        ));
    }
    if !obj.contains_key("body") || obj.get("body").is_some_and(|b| b.is_null()) {
        obj.insert("body".into(), serde_json::json!({}));
    }
    let cmd = obj
        .get("cmd")
        .and_then(|c| c.as_str())
        .unwrap_or("")
        .to_owned();
    serde_json::from_value::<Request>(serde_json::Value::Object(obj)).map_err(|e| {
        let known = ["login", "logout", "heartbeat", "getSelfInfo"];
        if known.contains(&cmd.as_str()) {
            error(
                seq,
                code::INVALID_PARAMETERS,
                &format!("bad body for {cmd}: {e}"),
            )
        } else {
            error(
                seq,
                code::INVALID_PARAMETERS,
                &format!("unknown cmd {cmd:?}"),
            )
        }
    })
}

async fn handle_text(hub: &Hub, id: ConnId, session: &mut WsOut, text: &str) {
    let req = match parse(text) {
        Ok(r) => r,
        Err(resp) => {
            tracing::debug!(conn = id, desc = %resp.desc, "malformed frame");
            respond(hub, session, resp).await;
            return;
        }
    };
    let seq = req.seq;
    hub.count_request(match &req.cmd {
        Command::Login(_) => "login",
        Command::Logout(_) => "logout",
        Command::Heartbeat(_) => "heartbeat",
        Command::GetSelfInfo(_) => "getSelfInfo",
    });
    let resp = match req.cmd {
        Command::Login(body) => match hub.login(id, &body, usersig::now_unix()) {
            Ok(r) => ok(seq, &r),
            Err((c, why)) => {
                tracing::info!(conn = id, user = %crate::text::clean(&body.user_id), code = c, reason = %crate::text::clean(&why), "login refused");
                error(seq, c, &why)
            }
        },
        Command::Logout(_) => {
            hub.logout(id);
            ok(seq, &Empty {})
        }
        Command::Heartbeat(_) => ok(
            seq,
            &HeartbeatResult {
                server_time: now_ms(),
            },
        ),
        Command::GetSelfInfo(_) => match hub.self_info(id) {
            Some(info) => ok(seq, &InfoBody { info }),
            None => error(seq, code::NOT_LOGGED_IN, "not logged in"),
        },
    };
    respond(hub, session, resp).await;
}
