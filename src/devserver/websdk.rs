//! The Web access endpoint `GET /binfo` (binary frames) and `GET /info` (text frames): the
//! protocol of Tencent's official Web SDK (`@tencentcloud/chat`), enough for the unmodified
//! SDK to log in through `proxyServer: 'ws://HOST:PORT'` (docs/devserver.md, "Web access
//! protocol").
//!
//! Web connections share the [`Hub`] with `/v1/connect`: every connection is a
//! [`Platform::Web`] device of the login policy, UserSigs are verified by the same code,
//! and the Hub's pushes (kicks, profile updates) reach them through [`Outbound::Push`],
//! translated here into the SDK's frames.
//!
//! Frames are JSON objects `{"head":{"servcmd":…,"seq":…,…},"body":{…}}`. The client sends
//! them as UTF-8 (binary or text frames; a binary frame starting with `COMP` holds a gzip
//! or zlib stream). Replies echo `servcmd` and `seq` and carry `ErrorCode`/`ErrorInfo` in
//! the body. On `/binfo` with `compress=gzip` in the URL, replies of 1 KiB or more are sent
//! as `COMP` + gzip, which the SDK inflates.
//!
//! One task per connection owns the socket, like `access.rs`: it selects over client
//! frames, the outbound queue, the fault signals, the idle deadline and the ticket's expiry.
//! Ticket expiry cannot be pushed in this protocol: the login ends when the ticket runs out
//! and the connection's next request is answered `ErrorCode` 70001, which the SDK reports
//! as `KICKED_OUT` `userSigExpired`.

use std::collections::HashMap;
use std::io::{Read as _, Write as _};
use std::sync::Arc;
use std::time::Duration;

use actix_web::{web, HttpRequest, HttpResponse};
use actix_ws::{AggregatedMessage, CloseCode, CloseReason, ProtocolError, Session};
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine as _;
use hmac::{Hmac, Mac};
use serde_json::{json, Map, Value};
use sha2::Sha256;
use subtle::ConstantTimeEq;
use tokio::time::Instant;

use super::state::{now_ms, ConnId, ExpiryCheck, Hub, Outbound, Protocol};
use crate::codes::code;
use crate::proto::profile::UserFullInfo;
use crate::proto::ws::{KickReason, LoginBody, Platform, Push};
use crate::usersig;

/// The path of the binary-frame endpoint (what the SDK uses).
pub const BINARY_PATH: &str = "/binfo";
/// The path of the text-frame endpoint (the SDK's fallback when it cannot send binary).
pub const TEXT_PATH: &str = "/info";
/// The largest frame accepted, before and after inflating; a larger one closes with 1009.
pub const MAX_WEB_FRAME_BYTES: usize = 512 * 1024;
/// `HelloInterval` of the login reply: the SDK sends `im_open_status.wshello` this often.
pub const HELLO_INTERVAL_S: u32 = 30;
/// The `ErrorCode` that tells the SDK its login was ended by another login or the REST API.
pub const KICKED_OUT: i32 = 1002;
/// `KickType` of a newer login on a conflicting device (`multipleDevice`).
pub const KICK_TYPE_MULTI_DEVICE: u8 = 2;
/// `KickType` of `im_open_login_svc/kick` (`REST_API_Kick`).
pub const KICK_TYPE_REST_API: u8 = 3;
/// `Event` of the C2C-notification item that carries a kick (the SDK dispatches on the key).
const EVENT_C2C_NOTIFY: u32 = 9;
/// `Event` of the profile-change item (the SDK dispatches on the key).
const EVENT_PROFILE: u32 = 7;
/// Prefix of a compressed frame.
const COMP: &[u8; 4] = b"COMP";
/// Replies at least this long are compressed when the client asked for it.
const COMPRESS_FROM_BYTES: usize = 1024;
/// The longest `servcmd` accepted.
const MAX_SERVCMD: usize = 128;
/// The longest A2 key accepted.
const MAX_A2: usize = 1024;
/// The most accounts one `portrait_get_all` may ask for (the SDK sends 100 at most).
const MAX_PROFILE_QUERY: usize = 100;

/// Commands the SDK sends after login whose answer may be an empty, complete list.
const EMPTY_LISTS: &[&str] = &[
    "sns.black_list_get",
    "sns.friend_get",
    "sns.group_get",
    "sns.pendency_get",
    "recentcontact.page_get",
    "recentcontact.get_contact_group",
    "group_open_http_svc.get_joined_group_list",
    "million_group_open_http_svc.get_joined_group_list",
    "openim.getmsg",
    "im_sdk_config_mgr.fetch_config",
    "im_sdk_config_mgr.fetch_imsdk_purchase_bitsv2",
];

/// Fixed facts about one connection.
#[derive(Debug, Clone)]
struct ConnInfo {
    app: u64,
    instance: String,
    /// The `platform` number of the URL (7 is Web); logged only.
    platform_code: u32,
    /// `/binfo`: binary frames out.
    binary: bool,
    /// `compress=gzip`: large replies compressed.
    gzip: bool,
    peer: String,
}

fn valid_instance(s: &str) -> bool {
    !s.is_empty()
        && s.len() <= 64
        && s.bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-')
}

fn valid_servcmd(s: &str) -> bool {
    !s.is_empty()
        && s.len() <= MAX_SERVCMD
        && s.bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'.')
}

fn refuse(status: actix_web::http::StatusCode, why: &str) -> HttpResponse {
    HttpResponse::build(status)
        .content_type("text/plain; charset=utf-8")
        .body(format!("{why}\n"))
}

/// `GET /binfo?sdkappid=&instanceid=&platform=&compress=…` (and `/info`).
pub async fn connect(
    req: HttpRequest,
    body: web::Payload,
    query: web::Query<HashMap<String, String>>,
    hub: web::Data<Hub>,
) -> HttpResponse {
    use actix_web::http::StatusCode;
    let peer = req.peer_addr().map(|a| a.to_string()).unwrap_or_default();
    if hub.refusing() {
        tracing::warn!(%peer, "fault: Web connection refused (503)");
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
    let instance = match query.get("instanceid") {
        Some(i) if valid_instance(i) => i.clone(),
        _ => {
            return refuse(
                StatusCode::BAD_REQUEST,
                "missing or malformed instanceid: [A-Za-z0-9_-]{1,64}",
            )
        }
    };
    let platform_code = match query.get("platform").map(|p| p.trim().parse::<u32>()) {
        Some(Ok(p)) => p,
        None => 7,
        Some(Err(_)) => return refuse(StatusCode::BAD_REQUEST, "malformed platform"),
    };
    let binary = req.path() == BINARY_PATH;
    let gzip = query.get("compress").is_some_and(|c| c == "gzip");
    let (response, session, stream) = match actix_ws::handle(&req, body) {
        Ok(x) => x,
        Err(e) => return e.error_response(),
    };
    let info = ConnInfo {
        app,
        instance,
        platform_code,
        binary,
        gzip,
        peer,
    };
    actix_web::rt::spawn(run(hub.into_inner(), session, stream, info));
    response
}

/// Why a connection task ended.
enum End {
    Closed,
    Dropped,
}

fn unix_s_to_instant(unix_s_inclusive: i64) -> Instant {
    // The ticket is valid while now <= expires_at; it is dead from second expires_at + 1.
    let wait = unix_s_inclusive
        .saturating_add(1)
        .saturating_mul(1000)
        .saturating_sub(now_ms());
    Instant::now() + Duration::from_millis(wait.max(0) as u64)
}

async fn close(session: Session, code: CloseCode, reason: &str) {
    let _ = session
        .close(Some(CloseReason {
            code,
            description: Some(reason.to_owned()),
        }))
        .await;
}

/// A frame ready to go out in the connection's framing.
enum Wire {
    Text(String),
    Binary(Vec<u8>),
}

fn gzip(data: &[u8]) -> Option<Vec<u8>> {
    let mut out = COMP.to_vec();
    let mut enc = flate2::write::GzEncoder::new(&mut out, flate2::Compression::fast());
    enc.write_all(data).ok()?;
    enc.finish().ok()?;
    Some(out)
}

fn encode(info: &ConnInfo, json: String) -> Wire {
    if !info.binary {
        return Wire::Text(json);
    }
    if info.gzip && json.len() >= COMPRESS_FROM_BYTES {
        if let Some(z) = gzip(json.as_bytes()) {
            return Wire::Binary(z);
        }
    }
    Wire::Binary(json.into_bytes())
}

async fn send(session: &mut Session, w: Wire) -> Result<(), actix_ws::Closed> {
    match w {
        Wire::Text(t) => session.text(t).await,
        Wire::Binary(b) => session.binary(b).await,
    }
}

/// Sends a reply after the `delay` fault's wait, without holding up the connection.
async fn respond(hub: &Hub, session: &mut Session, w: Wire) {
    let delay = hub.delay_ms();
    if delay == 0 {
        let _ = send(session, w).await;
    } else {
        let mut s = session.clone();
        actix_web::rt::spawn(async move {
            tokio::time::sleep(Duration::from_millis(delay)).await;
            let _ = send(&mut s, w).await;
        });
    }
}

/// One connection's mutable protocol state.
struct Conn {
    hub: Arc<Hub>,
    id: ConnId,
    info: ConnInfo,
    /// `seq` of the next push.
    push_seq: u64,
    /// The ticket ran out while online: the next request is answered 70001.
    expired: bool,
}

async fn run(hub: Arc<Hub>, mut session: Session, stream: actix_ws::MessageStream, info: ConnInfo) {
    let mut stream = stream
        .max_frame_size(MAX_WEB_FRAME_BYTES)
        .aggregate_continuations()
        .max_continuation_size(MAX_WEB_FRAME_BYTES);
    let (id, mut outbound) =
        hub.register_as(Protocol::Web, info.app, Platform::Web, &info.instance);
    let mut signals = hub.signals.subscribe();
    let drop_generation = signals.borrow_and_update().drop_generation;
    tracing::info!(conn = id, peer = %info.peer, app = info.app, platform = %Platform::Web,
        platform_code = info.platform_code, binary = info.binary, gzip = info.gzip,
        instance = %info.instance, "Web connection opened");
    let idle = Duration::from_millis(hub.settings.idle_timeout_ms);
    let mut c = Conn {
        hub: hub.clone(),
        id,
        info,
        push_seq: 0,
        expired: false,
    };
    let mut last_rx = Instant::now();
    let mut expiry: Option<(u64, Instant)> = None;
    let end = loop {
        let sig = *signals.borrow_and_update();
        if sig.drop_generation != drop_generation {
            break End::Dropped;
        }
        if let Some(until) = sig.silent_until.filter(|u| *u > Instant::now()) {
            tokio::select! {
                _ = tokio::time::sleep_until(until) => {}
                r = signals.changed() => if r.is_err() { break End::Dropped },
            }
            last_rx = Instant::now();
            continue;
        }
        let expiry_at = expiry.map(|(_, at)| at);
        tokio::select! {
            biased;
            r = signals.changed() => if r.is_err() { break End::Dropped },
            out = outbound.recv() => match out {
                Some(Outbound::Push(p)) => {
                    if let Some(json) = c.push_frame(&p) {
                        if send(&mut session, encode(&c.info, json)).await.is_err() { break End::Closed; }
                    }
                    expiry = hub.login_of(id).map(|(l, e)| (l, unix_s_to_instant(e)));
                }
                Some(Outbound::Frame(f)) => {
                    // Pushes are queued as `Push` for Web connections; a serialised one is
                    // translated the same way.
                    if let Some(json) = serde_json::from_str::<Push>(&f).ok().and_then(|p| c.push_frame(&p)) {
                        if send(&mut session, encode(&c.info, json)).await.is_err() { break End::Closed; }
                    }
                    expiry = hub.login_of(id).map(|(l, e)| (l, unix_s_to_instant(e)));
                }
                Some(Outbound::Close(code, reason)) => {
                    close(session.clone(), CloseCode::from(code), &reason).await;
                    break End::Closed;
                }
                None => break End::Closed,
            },
            msg = stream.recv() => {
                last_rx = Instant::now();
                let raw = match msg {
                    None => break End::Closed,
                    Some(Ok(AggregatedMessage::Text(t))) => t.into_bytes(),
                    Some(Ok(AggregatedMessage::Binary(b))) => b,
                    Some(Ok(AggregatedMessage::Ping(p))) => {
                        if session.pong(&p).await.is_err() { break End::Closed; }
                        continue;
                    }
                    Some(Ok(AggregatedMessage::Pong(_))) => continue,
                    Some(Ok(AggregatedMessage::Close(_))) => {
                        close(session.clone(), CloseCode::Normal, "bye").await;
                        break End::Closed;
                    }
                    Some(Err(ProtocolError::Overflow)) => {
                        tracing::warn!(conn = id, "Web frame larger than {MAX_WEB_FRAME_BYTES} bytes: closing 1009");
                        close(session.clone(), CloseCode::Size, &format!("frame exceeds {MAX_WEB_FRAME_BYTES} bytes")).await;
                        break End::Closed;
                    }
                    Some(Err(ProtocolError::Io(e))) => {
                        // A browser tab or Node process that went away without a close frame.
                        tracing::info!(conn = id, error = %e, "Web connection ended by the peer without a close frame");
                        break End::Closed;
                    }
                    Some(Err(e)) => {
                        tracing::warn!(conn = id, error = %e, "Web protocol error: closing 1002");
                        close(session.clone(), CloseCode::Protocol, "protocol error").await;
                        break End::Closed;
                    }
                };
                match c.handle(&raw) {
                    Ok(json) => respond(&hub, &mut session, encode(&c.info, json)).await,
                    Err(why) => {
                        tracing::warn!(conn = id, reason = %why, "Web frame too large once inflated: closing 1009");
                        close(session.clone(), CloseCode::Size, &why).await;
                        break End::Closed;
                    }
                }
                expiry = hub.login_of(id).map(|(l, e)| (l, unix_s_to_instant(e)));
            }
            _ = tokio::time::sleep_until(last_rx + idle) => {
                tracing::info!(conn = id, idle_ms = hub.settings.idle_timeout_ms, "Web idle timeout: closing 4001");
                close(session.clone(), CloseCode::Other(4001), "idle timeout").await;
                break End::Closed;
            }
            _ = async { match expiry_at { Some(at) => tokio::time::sleep_until(at).await, None => std::future::pending().await } } => {
                let Some((login, _)) = expiry else { continue };
                match hub.expire(id, login, usersig::now_unix()) {
                    ExpiryCheck::Expired => {
                        // No push for this in the Web protocol: the next request learns it.
                        c.expired = true;
                        expiry = None;
                    }
                    ExpiryCheck::NotYet(e) => expiry = Some((login, unix_s_to_instant(e).max(Instant::now() + Duration::from_millis(20)))),
                    ExpiryCheck::Gone => expiry = None,
                }
            }
        }
    };
    hub.disconnect(id);
    match end {
        End::Closed => tracing::info!(conn = id, peer = %c.info.peer, "Web connection closed"),
        End::Dropped => {
            tracing::warn!(conn = id, peer = %c.info.peer, "Web connection dropped (no close frame)")
        }
    }
}

/// A reply frame: `{"head":{"servcmd","seq"},"body":{"ErrorCode","ErrorInfo",…}}`.
fn reply(servcmd: &str, seq: u64, code: i32, info: &str, mut fields: Map<String, Value>) -> String {
    let mut body = Map::new();
    body.insert("ErrorCode".into(), json!(code));
    body.insert("ErrorInfo".into(), json!(info));
    body.append(&mut fields);
    json!({"head": {"servcmd": servcmd, "seq": seq}, "body": body}).to_string()
}

fn fields(v: Value) -> Map<String, Value> {
    match v {
        Value::Object(m) => m,
        _ => Map::new(),
    }
}

/// A request frame's parts.
#[derive(Debug)]
pub(crate) struct Request {
    pub(crate) servcmd: String,
    pub(crate) seq: u64,
    pub(crate) head: Map<String, Value>,
    pub(crate) body: Value,
}

/// Why a frame could not be read: the `servcmd`/`seq` to answer with, if they were
/// readable, and the reason. `fatal` frames (too large once inflated) close the connection.
#[derive(Debug)]
pub(crate) struct Bad {
    pub(crate) servcmd: String,
    pub(crate) seq: u64,
    pub(crate) why: String,
    pub(crate) fatal: bool,
}

fn bad(why: impl Into<String>) -> Bad {
    Bad {
        servcmd: String::new(),
        seq: 0,
        why: why.into(),
        fatal: false,
    }
}

/// Inflates a `COMP`-prefixed frame (gzip or zlib), at most [`MAX_WEB_FRAME_BYTES`].
fn inflate(data: &[u8]) -> Result<Vec<u8>, Bad> {
    let mut out = Vec::new();
    let limit = MAX_WEB_FRAME_BYTES as u64 + 1;
    let r = if data.starts_with(&[0x1f, 0x8b]) {
        flate2::read::GzDecoder::new(data)
            .take(limit)
            .read_to_end(&mut out)
    } else {
        flate2::read::ZlibDecoder::new(data)
            .take(limit)
            .read_to_end(&mut out)
    };
    r.map_err(|e| bad(format!("compressed frame does not inflate: {e}")))?;
    if out.len() > MAX_WEB_FRAME_BYTES {
        return Err(Bad {
            fatal: true,
            ..bad(format!(
                "frame exceeds {MAX_WEB_FRAME_BYTES} bytes once inflated"
            ))
        });
    }
    Ok(out)
}

pub(crate) fn parse(raw: &[u8]) -> Result<Request, Bad> {
    let inflated;
    let bytes = match raw.strip_prefix(COMP) {
        Some(z) => {
            inflated = inflate(z)?;
            inflated.as_slice()
        }
        None => raw,
    };
    let value: Value =
        serde_json::from_slice(bytes).map_err(|e| bad(format!("frame is not JSON: {e}")))?;
    let Value::Object(mut obj) = value else {
        return Err(bad("a frame must be a JSON object"));
    };
    let Some(Value::Object(head)) = obj.remove("head") else {
        return Err(bad("a frame needs a head object"));
    };
    let servcmd = match head.get("servcmd").and_then(Value::as_str) {
        Some(s) if valid_servcmd(s) => s.to_owned(),
        _ => {
            return Err(bad(format!(
                "head.servcmd must match [A-Za-z0-9_.]{{1,{MAX_SERVCMD}}}"
            )))
        }
    };
    let Some(seq) = head.get("seq").and_then(Value::as_u64) else {
        return Err(Bad {
            servcmd,
            ..bad("head.seq must be a non-negative integer")
        });
    };
    let body = match obj.remove("body") {
        None | Some(Value::Null) => Value::Object(Map::new()),
        Some(b @ Value::Object(_)) => b,
        Some(_) => {
            return Err(Bad {
                servcmd,
                seq,
                ..bad("body must be a JSON object")
            })
        }
    };
    Ok(Request {
        servcmd,
        seq,
        head,
        body,
    })
}

/// A head field as a string, `""` when absent or not a string.
fn head_str<'a>(head: &'a Map<String, Value>, name: &str) -> &'a str {
    head.get(name).and_then(Value::as_str).unwrap_or("")
}

/// The `TinyId` of a user: a stable number derived from (app, user), as a string.
fn tiny_id(app: u64, user: &str) -> String {
    // FNV-1a, kept within JavaScript's exact integers.
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for b in app.to_le_bytes().iter().chain(user.as_bytes()) {
        h ^= u64::from(*b);
        h = h.wrapping_mul(0x0100_0000_01b3);
    }
    (h & ((1 << 53) - 1)).max(1).to_string()
}

const A2_PREFIX: &str = "A2v1.";
const A2_CONTEXT: &str = "imlink-devserver A2 key\n";

fn a2_mac(key: &str, payload: &str) -> Vec<u8> {
    let mut m = match Hmac::<Sha256>::new_from_slice(key.as_bytes()) {
        Ok(m) => m,
        Err(_) => unreachable!("HMAC takes keys of any length"),
    };
    m.update(A2_CONTEXT.as_bytes());
    m.update(payload.as_bytes());
    m.finalize().into_bytes().to_vec()
}

/// The A2 key of a login: the login ticket's app, instance, user, time and lifetime, with
/// an HMAC under the app's key. The SDK re-logs in with it after a reconnect; it carries
/// no secret of the client and survives a server restart.
pub(crate) fn seal_a2(
    key: &str,
    app: u64,
    instance: &str,
    user: &str,
    time: i64,
    expire: i64,
) -> String {
    let payload = format!("{app}\n{instance}\n{time}\n{expire}\n{user}");
    format!(
        "{A2_PREFIX}{}.{}",
        URL_SAFE_NO_PAD.encode(payload.as_bytes()),
        URL_SAFE_NO_PAD.encode(a2_mac(key, &payload))
    )
}

/// An A2 key's (user, time, expire), after checking its MAC, app and instance.
pub(crate) fn open_a2(
    key: &str,
    app: u64,
    instance: &str,
    a2: &str,
) -> Result<(String, i64, i64), String> {
    let rest = a2
        .strip_prefix(A2_PREFIX)
        .filter(|_| a2.len() <= MAX_A2)
        .ok_or("not an A2 key of this server")?;
    let (payload, mac) = rest.split_once('.').ok_or("malformed A2 key")?;
    let payload = URL_SAFE_NO_PAD
        .decode(payload)
        .ok()
        .and_then(|p| String::from_utf8(p).ok())
        .ok_or("malformed A2 key")?;
    let mac = URL_SAFE_NO_PAD
        .decode(mac)
        .map_err(|_| "malformed A2 key")?;
    let expected = a2_mac(key, &payload);
    if !(mac.len() == expected.len() && bool::from(mac.ct_eq(&expected))) {
        return Err("A2 key signature mismatch".into());
    }
    let mut parts = payload.splitn(5, '\n');
    let (Some(a), Some(i), Some(t), Some(e), Some(u)) = (
        parts.next(),
        parts.next(),
        parts.next(),
        parts.next(),
        parts.next(),
    ) else {
        return Err("malformed A2 key".into());
    };
    if a.parse::<u64>().ok() != Some(app) || i != instance {
        return Err("the A2 key belongs to another app or instance".into());
    }
    let (Ok(t), Ok(e)) = (t.parse::<i64>(), e.parse::<i64>()) else {
        return Err("malformed A2 key".into());
    };
    Ok((u.to_owned(), t, e))
}

fn gender_tag(g: u8) -> &'static str {
    match g {
        1 => "Gender_Type_Male",
        2 => "Gender_Type_Female",
        _ => "Gender_Type_Unknown",
    }
}

fn allow_type_tag(a: u8) -> &'static str {
    match a {
        1 => "AllowType_Type_NeedConfirm",
        2 => "AllowType_Type_DenyAny",
        _ => "AllowType_Type_AllowAny",
    }
}

/// A profile as Tencent's tag list. `bytes`/`num` name the value field of string and
/// integer tags (`Value` in replies, `ValueBytes`/`ValueNum` in pushes).
fn profile_items(info: &UserFullInfo, bytes: &str, num: &str) -> Vec<Value> {
    let s = |tag: &str, v: &str| json!({"Tag": tag, bytes: v});
    let n = |tag: &str, v: u32| json!({"Tag": tag, num: v});
    let mut items = vec![
        s("Tag_Profile_IM_Nick", &info.nick_name),
        s("Tag_Profile_IM_Image", &info.face_url),
        s("Tag_Profile_IM_SelfSignature", &info.self_signature),
        s("Tag_Profile_IM_Gender", gender_tag(info.gender)),
        s("Tag_Profile_IM_AllowType", allow_type_tag(info.allow_type)),
        n("Tag_Profile_IM_BirthDay", info.birthday),
        n("Tag_Profile_IM_Level", info.level),
        n("Tag_Profile_IM_Role", info.role),
    ];
    for (k, v) in &info.custom_info {
        items.push(s(k, v));
    }
    items
}

impl Conn {
    fn next_push_seq(&mut self) -> u64 {
        self.push_seq = self.push_seq.wrapping_add(1);
        self.push_seq
    }

    /// The SDK's frame for a Hub push, or `None` when the protocol has none.
    fn push_frame(&mut self, p: &Push) -> Option<String> {
        match p {
            Push::KickedOffline(k) => {
                let kick_type = match k.reason {
                    KickReason::MultiDevice => KICK_TYPE_MULTI_DEVICE,
                    KickReason::RestApi => KICK_TYPE_REST_API,
                };
                let seq = self.next_push_seq();
                tracing::info!(conn = self.id, kick_type, "Web kick pushed");
                Some(
                    json!({
                        "head": {"servcmd": "im_open_status.stat_forceoffline", "seq": seq},
                        "body": {"EventArray": [{
                            "Event": EVENT_C2C_NOTIFY,
                            "C2cNotifyMsgArray": [{"KickoutMsgNotify": {"KickType": kick_type}}],
                        }]},
                    })
                    .to_string(),
                )
            }
            Push::SelfInfoUpdated(b) => {
                let seq = self.next_push_seq();
                Some(
                    json!({
                        "head": {"servcmd": "im_open_push.msg_push", "seq": seq},
                        "body": {"EventArray": [{
                            "Event": EVENT_PROFILE,
                            "ProfileDataMod": [{
                                "Profile_Account": b.info.user_id,
                                "ProfileList": profile_items(&b.info, "ValueBytes", "ValueNum"),
                            }],
                        }]},
                    })
                    .to_string(),
                )
            }
            Push::UserSigExpired(_) | Push::Hello(_) => None,
        }
    }

    /// Handles one client frame; the reply to send, or `Err` to close the connection (1009).
    fn handle(&mut self, raw: &[u8]) -> Result<String, String> {
        let req = match parse(raw) {
            Ok(r) => r,
            Err(b) if b.fatal => return Err(b.why),
            Err(b) => {
                tracing::debug!(conn = self.id, reason = %b.why, "malformed Web frame");
                return Ok(reply(
                    &b.servcmd,
                    b.seq,
                    code::INVALID_PARAMETERS,
                    &b.why,
                    Map::new(),
                ));
            }
        };
        let (servcmd, seq) = (req.servcmd.as_str(), req.seq);
        let telemetry = servcmd.starts_with("imopenstat.");
        if telemetry {
            self.hub.count_web_telemetry();
        }
        if self.expired && servcmd != "im_open_status.wslogin" {
            self.expired = false;
            tracing::info!(
                conn = self.id,
                servcmd,
                "answering 70001: the UserSig expired while online"
            );
            return Ok(reply(
                servcmd,
                seq,
                code::USERSIG_EXPIRED,
                "UserSig expired",
                Map::new(),
            ));
        }
        let ok = |f: Map<String, Value>| Ok(reply(servcmd, seq, 0, "", f));
        match servcmd {
            "im_open_status.wslogin" => Ok(self.login(&req)),
            "im_open_status.wslogout" => {
                self.hub.logout(self.id);
                ok(Map::new())
            }
            "heartbeat.alive" | "im_open_status.wshello" | "openim.msg_push_ack" => ok(Map::new()),
            _ if telemetry => ok(Map::new()),
            "profile.portrait_get_all" => {
                let Some(me) = self.caller(&req.head) else {
                    return Ok(not_logged_in(servcmd, seq));
                };
                ok(self.profiles(&me, &req.body))
            }
            _ if EMPTY_LISTS.contains(&servcmd) => {
                if self.caller(&req.head).is_none() {
                    return Ok(not_logged_in(servcmd, seq));
                }
                ok(fields(
                    json!({"CompleteFlag": 1, "IsCompleted": 1, "StartIndex": 0}),
                ))
            }
            _ => {
                tracing::debug!(conn = self.id, servcmd, "unsupported Web servcmd");
                Ok(reply(
                    servcmd,
                    seq,
                    code::INVALID_PARAMETERS,
                    &format!("servcmd {servcmd} is not supported by imlink-devserver"),
                    Map::new(),
                ))
            }
        }
    }

    /// Who a request acts for: the connection's login, else the user of a valid, unexpired
    /// A2 key in its head (after a reconnect the SDK resends its pending requests on the
    /// new connection before its re-login is answered).
    fn caller(&self, head: &Map<String, Value>) -> Option<UserFullInfo> {
        if let Some(info) = self.hub.self_info(self.id) {
            return Some(info);
        }
        let a2 = head_str(head, "a2");
        if a2.is_empty() {
            return None;
        }
        let key = self.hub.settings.apps.get(&self.info.app)?;
        let (user, time, expire) = open_a2(key, self.info.app, &self.info.instance, a2).ok()?;
        if usersig::now_unix() > time.saturating_add(expire) {
            return None;
        }
        self.hub.account(self.info.app, &user)
    }

    /// `profile.portrait_get_all`: the profiles of the accounts in `UserItem` that exist.
    fn profiles(&self, me: &UserFullInfo, body: &Value) -> Map<String, Value> {
        let wanted: Vec<&str> = body
            .get("UserItem")
            .and_then(Value::as_array)
            .map(|items| {
                items
                    .iter()
                    .filter_map(|i| i.get("To_Account").and_then(Value::as_str))
                    .take(MAX_PROFILE_QUERY)
                    .collect()
            })
            .unwrap_or_default();
        let mut found = Vec::new();
        let mut failed = Vec::new();
        for u in wanted {
            let info = if u == me.user_id {
                Some(me.clone())
            } else if super::state::valid_user_id(u) {
                self.hub.account(self.info.app, u)
            } else {
                None
            };
            match info {
                Some(i) => found.push(json!({
                    "To_Account": u,
                    "ResultCode": 0,
                    "ResultInfo": "",
                    "ProfileItem": profile_items(&i, "Value", "Value"),
                })),
                None if super::state::valid_user_id(u) => failed.push(json!(u)),
                None => {}
            }
        }
        fields(json!({"UserProfileItem": found, "Fail_Account": failed}))
    }

    /// `im_open_status.wslogin`: a first login (head `identifier` + `usersig`) or the SDK's
    /// re-login after a reconnect (head `a2` + `tinyid`, counted as `auto`).
    fn login(&mut self, req: &Request) -> String {
        let (servcmd, seq) = (req.servcmd.as_str(), req.seq);
        let app = self.info.app;
        let Some(key) = self.hub.settings.apps.get(&app).cloned() else {
            return reply(
                servcmd,
                seq,
                code::USERSIG_SDKAPPID_MISMATCH,
                "unknown SDKAppID",
                Map::new(),
            );
        };
        let a2 = head_str(&req.head, "a2");
        let (user, sig, auto) = if a2.is_empty() {
            (
                head_str(&req.head, "identifier").to_owned(),
                head_str(&req.head, "usersig").to_owned(),
                false,
            )
        } else {
            match open_a2(&key, app, &self.info.instance, a2) {
                Ok((user, time, expire)) => {
                    let sig = usersig::generate(app, &key, &user, expire, time);
                    (user, sig, true)
                }
                Err(why) => {
                    tracing::info!(conn = self.id, reason = %why, "Web re-login refused: bad A2 key");
                    return reply(servcmd, seq, code::USERSIG_CHECK_FAILED, &why, Map::new());
                }
            }
        };
        let body = LoginBody {
            user_id: user,
            user_sig: sig,
            auto,
        };
        match self.hub.login(self.id, &body, usersig::now_unix()) {
            Ok(r) => {
                let (instance_id, _) = self.hub.login_of(self.id).unwrap_or((1, 0));
                let (time, expire) = usersig::decode(&body.user_sig)
                    .map(|t| (t.time, t.expire))
                    .unwrap_or((0, 0));
                let a2 = seal_a2(&key, app, &self.info.instance, &r.user_id, time, expire);
                tracing::info!(conn = self.id, user = %r.user_id, auto, "Web login accepted");
                reply(
                    servcmd,
                    seq,
                    0,
                    "",
                    fields(json!({
                        "A2Key": a2,
                        "TinyId": tiny_id(app, &r.user_id),
                        "InstId": instance_id,
                        "HelloInterval": HELLO_INTERVAL_S,
                        "TimeStamp": usersig::now_unix(),
                    })),
                )
            }
            Err((c, why)) => {
                tracing::info!(conn = self.id, user = ?body.user_id, code = c, auto, reason = %why, "Web login refused");
                // A re-login the SDK makes by itself after a reconnect: the reasons that mean
                // "this device was put offline" are told the way the SDK understands them.
                let kick = match c {
                    code::KICKED_BY_OTHER_DEVICE if auto => Some(KICK_TYPE_MULTI_DEVICE),
                    code::USERSIG_INVALIDATED if auto => Some(KICK_TYPE_REST_API),
                    _ => None,
                };
                match kick {
                    Some(k) => reply(
                        servcmd,
                        seq,
                        KICKED_OUT,
                        &why,
                        fields(json!({"KickType": k})),
                    ),
                    None => reply(servcmd, seq, c, &why, Map::new()),
                }
            }
        }
    }
}

fn not_logged_in(servcmd: &str, seq: u64) -> String {
    reply(
        servcmd,
        seq,
        code::NOT_LOGGED_IN,
        "not logged in",
        Map::new(),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a2_keys_round_trip_and_resist_tampering() {
        let a2 = seal_a2("k", 1400000001, "inst", "alice", 1000, 3600);
        assert_eq!(
            open_a2("k", 1400000001, "inst", &a2).unwrap(),
            ("alice".to_string(), 1000, 3600)
        );
        assert!(open_a2("other key", 1400000001, "inst", &a2).is_err());
        assert!(open_a2("k", 1400000002, "inst", &a2).is_err());
        assert!(open_a2("k", 1400000001, "inst2", &a2).is_err());
        let forged = seal_a2("k", 1400000001, "inst", "bob", 1000, 3600);
        let (head, _) = forged.rsplit_once('.').unwrap();
        let (_, mac) = a2.rsplit_once('.').unwrap();
        assert!(open_a2("k", 1400000001, "inst", &format!("{head}.{mac}")).is_err());
        for junk in ["", "A2v1.", "A2v1.x.y", "A2v1.....", &"A2v1.a".repeat(400)] {
            assert!(open_a2("k", 1400000001, "inst", junk).is_err(), "{junk}");
        }
    }

    #[test]
    fn frames_parse_or_explain() {
        let r =
            parse(br#"{"head":{"servcmd":"heartbeat.alive","seq":89000700},"body":{}}"#).unwrap();
        assert_eq!((r.servcmd.as_str(), r.seq), ("heartbeat.alive", 89000700));
        let b = parse(br#"{"head":{"servcmd":"heartbeat.alive"}}"#)
            .err()
            .unwrap();
        assert_eq!(b.servcmd, "heartbeat.alive");
        assert!(b.why.contains("seq"));
        for junk in [
            &b"not json"[..],
            b"[]",
            b"{}",
            b"{\"head\":1}",
            b"{\"head\":{\"servcmd\":\"a b\",\"seq\":1}}",
            b"{\"head\":{\"servcmd\":\"x.y\",\"seq\":-1}}",
            b"{\"head\":{\"servcmd\":\"x.y\",\"seq\":1},\"body\":[]}",
            b"COMPnot zlib",
            b"\xff\xfe",
        ] {
            assert!(!parse(junk).err().unwrap().fatal);
        }
    }

    #[test]
    fn compressed_frames_inflate_within_bounds() {
        let frame = br#"{"head":{"servcmd":"heartbeat.alive","seq":5},"body":{}}"#;
        let z = gzip(frame).unwrap();
        assert!(z.starts_with(COMP));
        assert_eq!(parse(&z).unwrap().seq, 5);
        let mut zl = COMP.to_vec();
        let mut enc = flate2::write::ZlibEncoder::new(Vec::new(), flate2::Compression::new(6));
        std::io::Write::write_all(&mut enc, frame).unwrap();
        zl.extend(enc.finish().unwrap());
        assert_eq!(parse(&zl).unwrap().seq, 5);
        // A bomb: small compressed, larger than the limit inflated.
        let big = vec![b' '; MAX_WEB_FRAME_BYTES + 10];
        let bomb = gzip(&big).unwrap();
        assert!(bomb.len() < 4096);
        assert!(parse(&bomb).err().unwrap().fatal);
    }

    #[test]
    fn profiles_become_tags() {
        let mut info = UserFullInfo {
            user_id: "alice".into(),
            nick_name: "Alice".into(),
            gender: 2,
            allow_type: 1,
            level: 3,
            ..UserFullInfo::default()
        };
        info.custom_info
            .insert("Tag_Profile_Custom_Team".into(), "blue".into());
        let items = profile_items(&info, "ValueBytes", "ValueNum");
        assert!(items.contains(&json!({"Tag":"Tag_Profile_IM_Nick","ValueBytes":"Alice"})));
        assert!(items
            .contains(&json!({"Tag":"Tag_Profile_IM_Gender","ValueBytes":"Gender_Type_Female"})));
        assert!(items.contains(
            &json!({"Tag":"Tag_Profile_IM_AllowType","ValueBytes":"AllowType_Type_NeedConfirm"})
        ));
        assert!(items.contains(&json!({"Tag":"Tag_Profile_IM_Level","ValueNum":3})));
        assert!(items.contains(&json!({"Tag":"Tag_Profile_Custom_Team","ValueBytes":"blue"})));
    }

    #[test]
    fn tiny_ids_are_stable_exact_javascript_integers() {
        let a = tiny_id(1400000001, "alice");
        assert_eq!(a, tiny_id(1400000001, "alice"));
        assert_ne!(a, tiny_id(1400000001, "bob"));
        assert!(a.parse::<u64>().unwrap() < (1 << 53));
    }
}
