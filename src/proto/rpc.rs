//! The JSON-RPC 2.0 envelope of the local API (DESIGN §5, `docs/api.md`): request ids,
//! requests read from a line, replies, notifications and the one error type.
//!
//! Reading is strict where the specification is and lenient where `docs/api.md` promises:
//! a line is parsed once, borrowing from it; ids are kept as the exact JSON text the client
//! wrote (so `-123456789012345678901234567890` comes back unchanged); a key written twice
//! makes the request invalid (-32600) instead of "last one wins"; params are read field by
//! field so that a wrong-typed field gets 6017 naming it.
//!
//! The usual request (members `jsonrpc`, `id`, `method`, `params`, each once, strings
//! without escapes) is read by a direct scan of the line; every other line, and every
//! error, goes through the typed envelope, which reads anything the scan reads the same
//! way (a property test compares the two).
//!
//! Writing goes through [`write_result`], [`write_error`] and [`write_notification`]:
//! every reply the daemon sends, fast path or not, is produced by these, so the same
//! answer is always the same bytes.

use serde::de::{self, Deserializer, IgnoredAny, MapAccess, Visitor};
use serde::{Deserialize, Serialize, Serializer};
use serde_json::value::RawValue;
use std::borrow::Cow;
use std::fmt;

use crate::codes::code;

/// The `jsonrpc` member of every message.
pub const VERSION: &str = "2.0";

/// An error: the JSON-RPC error object, and the error type of every operation of the API
/// (the session's refusals, the link's failures, `imlinkctl`'s results).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, thiserror::Error)]
#[error("error {code}: {message}")]
pub struct RpcError {
    /// Tencent's code, or a JSON-RPC one (`crate::codes::code`).
    pub code: i32,
    /// One line for humans; never a ticket, never a raw peer string.
    pub message: String,
}

impl RpcError {
    /// An error with this code and message.
    pub fn new(code: i32, message: impl Into<String>) -> RpcError {
        RpcError {
            code,
            message: message.into(),
        }
    }

    /// -32700.
    pub fn parse_error(why: impl fmt::Display) -> RpcError {
        RpcError::new(code::PARSE_ERROR, format!("Parse error: {why}"))
    }

    /// -32600.
    pub fn invalid_request(why: impl fmt::Display) -> RpcError {
        RpcError::new(code::INVALID_REQUEST, format!("Invalid Request: {why}"))
    }

    /// -32601, naming the method (cleaned of control characters, bounded).
    pub fn method_not_found(method: &str) -> RpcError {
        RpcError::new(
            code::METHOD_NOT_FOUND,
            format!("Method not found: {}", crate::text::clean(method)),
        )
    }

    /// -32603.
    pub fn internal(why: impl fmt::Display) -> RpcError {
        RpcError::new(code::INTERNAL_ERROR, format!("internal error: {why}"))
    }

    /// 6017: `method: parameter field must be expected`.
    pub fn bad_param(method: &str, field: &str, expected: &str) -> RpcError {
        RpcError::new(
            code::INVALID_PARAMETERS,
            format!("{method}: parameter {field} must be {expected}"),
        )
    }
}

// ---------------------------------------------------------------------------------- ids

/// A request id, kept as the JSON text the client wrote: a string, a number (of any size)
/// or `null`.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Id(Box<str>);

impl Id {
    /// `null`.
    pub fn null() -> Id {
        Id("null".into())
    }

    /// A numeric id.
    pub fn num(n: u64) -> Id {
        Id(n.to_string().into_boxed_str())
    }

    /// A string id.
    pub fn string(s: &str) -> Id {
        Id(serde_json::to_string(s)
            .unwrap_or_else(|_| "null".into())
            .into_boxed_str())
    }

    /// The id in `raw`, if it is a string, a number or null (the only kinds allowed).
    pub fn from_raw(raw: &RawValue) -> Option<Id> {
        let t = raw.get();
        match t.as_bytes().first() {
            Some(b'"' | b'-' | b'0'..=b'9') => Some(Id(t.into())),
            Some(b'n') if t == "null" => Some(Id(t.into())),
            _ => None,
        }
    }

    /// The JSON text.
    pub fn as_json(&self) -> &str {
        &self.0
    }

    /// Is it `null`?
    pub fn is_null(&self) -> bool {
        &*self.0 == "null"
    }
}

impl fmt::Display for Id {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl Serialize for Id {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        let raw = RawValue::from_string(self.0.to_string()).map_err(serde::ser::Error::custom)?;
        raw.serialize(s)
    }
}

impl<'de> Deserialize<'de> for Id {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Id, D::Error> {
        let raw = Box::<RawValue>::deserialize(d)?;
        Id::from_raw(&raw)
            .ok_or_else(|| de::Error::custom("an id must be a string, a number or null"))
    }
}

// ------------------------------------------------------------------------- reading

/// A request as read from a line: the id to answer with (None: a notification), the
/// method name, and the params not yet interpreted.
#[derive(Debug, Clone)]
pub struct Incoming<'a> {
    /// None for a notification.
    pub id: Option<Id>,
    /// The method name.
    pub method: Cow<'a, str>,
    /// `params` as written (an object or an array), if present.
    pub params: Option<&'a RawValue>,
}

/// One request of a line that could not be read as a request: the id to answer with and
/// the error.
pub type Refused = (Id, RpcError);

/// What a line holds.
#[derive(Debug)]
pub enum Line<'a> {
    /// One request (or the reason it is not one).
    One(Result<Incoming<'a>, Refused>),
    /// A non-empty batch.
    Batch(Vec<Result<Incoming<'a>, Refused>>),
}

/// The members of a request object, each kept raw; a member written twice fails.
#[derive(Deserialize)]
struct Envelope<'a> {
    #[serde(borrow, default, deserialize_with = "present")]
    jsonrpc: Option<&'a RawValue>,
    #[serde(borrow, default, deserialize_with = "present")]
    id: Option<&'a RawValue>,
    #[serde(borrow, default, deserialize_with = "present")]
    method: Option<&'a RawValue>,
    #[serde(borrow, default, deserialize_with = "present")]
    params: Option<&'a RawValue>,
}

/// A member that is present is `Some`, even when it is `null`.
fn present<'de, D: Deserializer<'de>>(d: D) -> Result<Option<&'de RawValue>, D::Error> {
    <&'de RawValue>::deserialize(d).map(Some)
}

/// Only the id, to answer a request that is otherwise unreadable (a duplicated member).
#[derive(Deserialize)]
struct IdOnly<'a> {
    #[serde(borrow, default, deserialize_with = "present")]
    id: Option<&'a RawValue>,
}

/// A JSON string, borrowed when it has no escapes.
pub fn json_str(raw: &RawValue) -> Option<Cow<'_, str>> {
    if let Ok(s) = serde_json::from_str::<&str>(raw.get()) {
        return Some(Cow::Borrowed(s));
    }
    serde_json::from_str::<String>(raw.get())
        .ok()
        .map(Cow::Owned)
}

fn is_json(text: &str) -> Result<(), serde_json::Error> {
    serde_json::from_str::<IgnoredAny>(text).map(|_| ())
}

/// Reads one request object (a whole line, or a member of a batch).
pub fn read_request(text: &str) -> Result<Incoming<'_>, Refused> {
    if let Some(inc) = read_plain(text) {
        return Ok(inc);
    }
    read_enveloped(text)
}

/// The JSON whitespace from `i` on skipped.
fn skip_ws(b: &[u8], mut i: usize) -> usize {
    while let Some(b' ' | b'\t' | b'\n' | b'\r') = b.get(i) {
        i += 1;
    }
    i
}

/// A string without escapes or control characters at `i`: the index of its opening and
/// of its closing quote.
fn plain_string(b: &[u8], i: usize) -> Option<(usize, usize)> {
    if b.get(i) != Some(&b'"') {
        return None;
    }
    Some((i, i + 1 + super::json::plain_string_end(b.get(i + 1..)?)?))
}

/// An integer at `i` written as JSON writes one (`-?(0|[1-9][0-9]*)`): the index after it.
fn plain_integer(b: &[u8], i: usize) -> Option<usize> {
    let mut j = i + usize::from(b.get(i) == Some(&b'-'));
    match b.get(j)? {
        b'0' => j += 1,
        b'1'..=b'9' => {
            while b.get(j).is_some_and(u8::is_ascii_digit) {
                j += 1;
            }
        }
        _ => return None,
    }
    Some(j)
}

/// The common request, read without a deserializer: one object with `jsonrpc` `"2.0"`, a
/// `method`, and optionally an `id` (an integer, a string or `null`) and `params` (an
/// object or an array), every string without escapes, each member once. Anything else —
/// escapes, another member, a member twice, a fraction, an error of any kind — gives
/// `None`, and [`read_enveloped`] reads the line with the rules above: what this reads,
/// that reads the same (a property test holds them to it), so the fast path never
/// changes an answer.
fn read_plain(text: &str) -> Option<Incoming<'_>> {
    let b = text.as_bytes();
    let mut i = skip_ws(b, 0);
    if b.get(i) != Some(&b'{') {
        return None;
    }
    let mut version: Option<&str> = None;
    let mut id: Option<&str> = None;
    let mut method: Option<&str> = None;
    let mut params: Option<&RawValue> = None;
    loop {
        i = skip_ws(b, i + 1);
        let (k0, k1) = plain_string(b, i)?;
        i = skip_ws(b, k1 + 1);
        if b.get(i) != Some(&b':') {
            return None;
        }
        i = skip_ws(b, i + 1);
        let key = &text[k0 + 1..k1];
        if key == "params" {
            if params.is_some() || !matches!(b.get(i), Some(b'{' | b'[')) {
                return None;
            }
            let mut values =
                serde_json::Deserializer::from_str(text.get(i..)?).into_iter::<&RawValue>();
            params = Some(values.next()?.ok()?);
            i += values.byte_offset();
        } else {
            let end = match b.get(i)? {
                b'"' => plain_string(b, i)?.1 + 1,
                b'n' if b.get(i..i + 4) == Some(b"null") => i + 4,
                _ => plain_integer(b, i)?,
            };
            let slot = match key {
                "jsonrpc" => &mut version,
                "id" => &mut id,
                "method" => &mut method,
                _ => return None,
            };
            if slot.replace(&text[i..end]).is_some() {
                return None;
            }
            i = end;
        }
        i = skip_ws(b, i);
        match b.get(i)? {
            b',' => {}
            b'}' => break,
            _ => return None,
        }
    }
    if skip_ws(b, i + 1) != b.len() || version != Some("\"2.0\"") {
        return None;
    }
    let method = method?.strip_prefix('"')?.strip_suffix('"')?;
    Some(Incoming {
        id: id.map(|t| Id(t.into())),
        method: Cow::Borrowed(method),
        params,
    })
}

/// [`read_request`] through the typed envelope: every request, and every error.
fn read_enveloped(text: &str) -> Result<Incoming<'_>, Refused> {
    let env: Envelope = match serde_json::from_str(text) {
        Ok(e) => e,
        Err(e) => {
            if let Err(pe) = is_json(text) {
                return Err((Id::null(), RpcError::parse_error(pe)));
            }
            if !text.trim_start().starts_with('{') {
                return Err((
                    Id::null(),
                    RpcError::invalid_request("a request must be a JSON object"),
                ));
            }
            // Valid JSON that is not a readable request: a member given twice.
            let id = serde_json::from_str::<IdOnly>(text)
                .ok()
                .and_then(|i| i.id)
                .and_then(Id::from_raw)
                .unwrap_or_else(Id::null);
            let why = e.to_string();
            let why = why
                .split(" at line ")
                .next()
                .unwrap_or("unreadable request");
            return Err((id, RpcError::invalid_request(why)));
        }
    };
    let id = match env.id {
        None => None,
        Some(raw) => match Id::from_raw(raw) {
            Some(id) => Some(id),
            None => {
                return Err((
                    Id::null(),
                    RpcError::invalid_request("id must be a string, a number or null"),
                ))
            }
        },
    };
    let reply_id = id.clone().unwrap_or_else(Id::null);
    if env.jsonrpc.and_then(json_str).as_deref() != Some(VERSION) {
        return Err((
            reply_id,
            RpcError::invalid_request("\"jsonrpc\" must be \"2.0\""),
        ));
    }
    let Some(method) = env.method.and_then(json_str) else {
        return Err((
            reply_id,
            RpcError::invalid_request("\"method\" must be a string"),
        ));
    };
    if let Some(p) = env.params {
        if !matches!(p.get().as_bytes().first(), Some(b'{' | b'[')) {
            return Err((
                reply_id,
                RpcError::invalid_request("\"params\" must be an object or an array"),
            ));
        }
    }
    Ok(Incoming {
        id,
        method,
        params: env.params,
    })
}

/// Reads a line: one request, a batch, or an error for the whole line (-32700 not JSON,
/// -32600 an empty batch or a JSON value that is neither an object nor an array).
pub fn read_line(text: &str) -> Result<Line<'_>, RpcError> {
    let t = text.trim_start();
    match t.as_bytes().first() {
        Some(b'[') => {
            let items: Vec<&RawValue> =
                serde_json::from_str(text).map_err(RpcError::parse_error)?;
            if items.is_empty() {
                return Err(RpcError::invalid_request("empty batch"));
            }
            Ok(Line::Batch(
                items.into_iter().map(|r| read_request(r.get())).collect(),
            ))
        }
        Some(b'{') => Ok(Line::One(read_request(text))),
        _ => {
            is_json(text).map_err(RpcError::parse_error)?;
            Err(RpcError::invalid_request("a request must be a JSON object"))
        }
    }
}

// ------------------------------------------------------------------------- params

/// The params of a request, positional or named, each value still raw.
#[derive(Debug, Default)]
pub struct Params<'a> {
    named: Vec<(Cow<'a, str>, &'a RawValue)>,
    positional: Vec<&'a RawValue>,
    names: &'static [&'static str],
}

/// An object whose keys are unique.
struct UniqueMap<'a>(Vec<(Cow<'a, str>, &'a RawValue)>);

impl<'de> Deserialize<'de> for UniqueMap<'de> {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl<'de> Visitor<'de> for V {
            type Value = UniqueMap<'de>;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("an object")
            }
            fn visit_map<A: MapAccess<'de>>(self, mut m: A) -> Result<Self::Value, A::Error> {
                let mut out: Vec<(Cow<'de, str>, &'de RawValue)> = Vec::new();
                let mut seen = std::collections::HashSet::new();
                while let Some(k) = m.next_key::<Cow<'de, str>>()? {
                    let v: &'de RawValue = m.next_value()?;
                    if !seen.insert(k.clone()) {
                        return Err(de::Error::custom(format_args!(
                            "parameter {} given twice",
                            crate::text::clean(&k)
                        )));
                    }
                    out.push((k, v));
                }
                Ok(UniqueMap(out))
            }
        }
        d.deserialize_map(V)
    }
}

impl<'a> Params<'a> {
    /// Reads `raw` for a method whose params are `names` in positional order: an object
    /// (a key given twice: -32600), an array (more items than names: -32602) or nothing.
    pub fn read(
        method: &str,
        names: &'static [&'static str],
        raw: Option<&'a RawValue>,
    ) -> Result<Params<'a>, RpcError> {
        let Some(raw) = raw else {
            return Ok(Params {
                names,
                ..Params::default()
            });
        };
        if raw.get().starts_with('[') {
            let positional: Vec<&'a RawValue> =
                serde_json::from_str(raw.get()).map_err(RpcError::invalid_request)?;
            if positional.len() > names.len() {
                return Err(RpcError::new(
                    code::INVALID_PARAMS,
                    format!(
                        "{method} takes at most {} positional params ({})",
                        names.len(),
                        names.join(", ")
                    ),
                ));
            }
            return Ok(Params {
                named: Vec::new(),
                positional,
                names,
            });
        }
        let UniqueMap(named) = serde_json::from_str(raw.get()).map_err(|e| {
            let why = e.to_string();
            RpcError::invalid_request(why.split(" at line ").next().unwrap_or("bad params"))
        })?;
        Ok(Params {
            named,
            positional: Vec::new(),
            names,
        })
    }

    /// The raw value of `name`; None when absent or `null`.
    pub fn get(&self, name: &str) -> Option<&'a RawValue> {
        let v = if self.positional.is_empty() {
            self.named.iter().find(|(k, _)| k == name).map(|(_, v)| *v)
        } else {
            let i = self.names.iter().position(|n| *n == name)?;
            self.positional.get(i).copied()
        };
        v.filter(|v| v.get() != "null")
    }

    /// `name` read as `T`: `Ok(None)` when absent or null, `Err` when of another type.
    pub fn opt<T: Deserialize<'a>>(&self, name: &str) -> Result<Option<T>, WrongType> {
        match self.get(name) {
            None => Ok(None),
            Some(v) => serde_json::from_str(v.get())
                .map(Some)
                .map_err(|_| WrongType),
        }
    }
}

/// A param of another type than the method takes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct WrongType;

// ------------------------------------------------------------------------- writing

fn write_head(out: &mut Vec<u8>, id: &Id) {
    out.extend_from_slice(b"{\"jsonrpc\":\"2.0\",\"id\":");
    out.extend_from_slice(id.as_json().as_bytes());
}

/// Appends `{"jsonrpc":"2.0","id":ID,"result":RESULT}` (no newline).
pub fn write_result<T: Serialize + ?Sized>(out: &mut Vec<u8>, id: &Id, result: &T) {
    let start = out.len();
    write_head(out, id);
    out.extend_from_slice(b",\"result\":");
    if serde_json::to_writer(&mut *out, result).is_err() {
        out.truncate(start);
        write_error(out, id, &RpcError::internal("cannot encode the result"));
        return;
    }
    out.push(b'}');
}

/// Appends `{"jsonrpc":"2.0","id":ID,"error":{"code":N,"message":"…"}}` (no newline).
pub fn write_error(out: &mut Vec<u8>, id: &Id, e: &RpcError) {
    write_head(out, id);
    out.extend_from_slice(b",\"error\":");
    // A struct of an i32 and a String always serialises.
    let _ = serde_json::to_writer(&mut *out, e);
    out.push(b'}');
}

/// Appends a reply: [`write_result`] or [`write_error`].
pub fn write_reply<T: Serialize + ?Sized>(out: &mut Vec<u8>, id: &Id, r: &Result<&T, RpcError>) {
    match r {
        Ok(v) => write_result(out, id, *v),
        Err(e) => write_error(out, id, e),
    }
}

/// Appends `{"jsonrpc":"2.0","method":METHOD,"params":PARAMS}` (no newline).
pub fn write_notification<T: Serialize + ?Sized>(out: &mut Vec<u8>, method: &str, params: &T) {
    out.extend_from_slice(b"{\"jsonrpc\":\"2.0\",\"method\":");
    let _ = serde_json::to_writer(&mut *out, method);
    out.extend_from_slice(b",\"params\":");
    let _ = serde_json::to_writer(&mut *out, params);
    out.push(b'}');
}

/// A request as a client sends it.
#[derive(Debug, Clone, Serialize)]
pub struct Request<'a, P: Serialize> {
    /// Always `"2.0"`.
    pub jsonrpc: &'static str,
    /// The id (None: a notification).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub id: Option<Id>,
    /// The method.
    pub method: &'a str,
    /// The params (named).
    pub params: &'a P,
}

/// A reply or a notification as a client reads it.
#[derive(Debug, Clone, Deserialize)]
pub struct Message {
    /// The id (present on replies, absent on notifications).
    #[serde(default, deserialize_with = "some_id")]
    pub id: Option<Id>,
    /// The result of a successful call.
    #[serde(default)]
    pub result: Option<Box<RawValue>>,
    /// The error of a failed call.
    #[serde(default)]
    pub error: Option<RpcError>,
    /// The method of a notification (`event`).
    #[serde(default)]
    pub method: Option<String>,
    /// The params of a notification.
    #[serde(default)]
    pub params: Option<Box<RawValue>>,
}

fn some_id<'de, D: Deserializer<'de>>(d: D) -> Result<Option<Id>, D::Error> {
    Id::deserialize(d).map(Some)
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn one(line: &str) -> Result<Incoming<'_>, Refused> {
        match read_line(line).unwrap() {
            Line::One(r) => r,
            Line::Batch(_) => panic!("a batch"),
        }
    }

    #[test]
    fn requests_are_read_as_the_specification_says() {
        let r = one(r#"{"jsonrpc":"2.0","method":"status","id":1}"#).unwrap();
        assert_eq!((r.id.unwrap().as_json(), &*r.method), ("1", "status"));
        let n = one(r#"{"jsonrpc":"2.0","method":"status"}"#).unwrap();
        assert!(n.id.is_none(), "no id: a notification");
        let null = one(r#"{"jsonrpc":"2.0","method":"status","id":null}"#).unwrap();
        assert!(
            null.id.unwrap().is_null(),
            "an explicit null id is answered"
        );
        for (bad, code) in [
            ("1", -32600),
            (r#"{"method":"x"}"#, -32600),
            (r#"{"jsonrpc":"2.0","method":1}"#, -32600),
            (r#"{"jsonrpc":"2.0","method":"x","params":"p"}"#, -32600),
            (r#"{"jsonrpc":"2.0","method":"x","params":null}"#, -32600),
            (r#"{"jsonrpc":"2.0","method":"x","id":{}}"#, -32600),
            (r#"{"jsonrpc":"2.0","method":"x","id":true}"#, -32600),
            ("{not json", -32700),
            ("", -32700),
        ] {
            let got = match read_line(bad) {
                Err(e) => e.code,
                Ok(Line::One(Err((_, e)))) => e.code,
                other => panic!("{bad}: {other:?}"),
            };
            assert_eq!(got, code, "{bad}");
        }
    }

    #[test]
    fn a_member_given_twice_makes_the_request_invalid() {
        let (id, e) =
            one(r#"{"jsonrpc":"2.0","id":7,"method":"getLoginStatus","method":"logout"}"#)
                .unwrap_err();
        assert_eq!(e.code, code::INVALID_REQUEST);
        assert!(e.message.contains("duplicate field `method`"), "{e:?}");
        assert_eq!(id.as_json(), "7");
        let r = one(
            r#"{"jsonrpc":"2.0","id":1,"method":"login","params":{"userID":"a","userID":"b"}}"#,
        )
        .unwrap();
        let e = Params::read("login", &["userID", "userSig"], r.params).unwrap_err();
        assert_eq!(e.code, code::INVALID_REQUEST);
        assert!(e.message.contains("userID given twice"), "{e:?}");
    }

    #[test]
    fn ids_come_back_exactly_as_written() {
        for id in [
            "-123456789012345678901234567890",
            "1e400",
            "0.10000000000000000000001",
            "\"\\u00e9t\\u00e9\"",
            "18446744073709551616",
        ] {
            let line = format!(r#"{{"jsonrpc":"2.0","id":{id},"method":"x"}}"#);
            let r = one(&line).unwrap();
            let mut out = Vec::new();
            write_result(&mut out, r.id.as_ref().unwrap(), &serde_json::json!({}));
            let text = String::from_utf8(out).unwrap();
            assert_eq!(
                text,
                format!(r#"{{"jsonrpc":"2.0","id":{id},"result":{{}}}}"#)
            );
        }
    }

    #[test]
    fn batches_are_read_member_by_member() {
        let Line::Batch(items) = read_line(
            r#"[{"jsonrpc":"2.0","id":1,"method":"a"}, 1, {"jsonrpc":"2.0","method":"b"}]"#,
        )
        .unwrap() else {
            panic!("not a batch")
        };
        assert_eq!(items.len(), 3);
        assert!(items[0].is_ok() && items[2].is_ok());
        assert_eq!(items[1].as_ref().unwrap_err().1.code, code::INVALID_REQUEST);
        assert_eq!(read_line("[]").unwrap_err().code, code::INVALID_REQUEST);
        assert_eq!(read_line("[1,").unwrap_err().code, code::PARSE_ERROR);
    }

    #[test]
    fn params_are_read_by_name_or_position() {
        let names: &'static [&'static str] = &["userID", "userSig"];
        let raw: Box<RawValue> = RawValue::from_string(r#"["alice","sig"]"#.into()).unwrap();
        let p = Params::read("login", names, Some(&raw)).unwrap();
        assert_eq!(p.opt::<String>("userSig").unwrap().as_deref(), Some("sig"));
        let raw: Box<RawValue> = RawValue::from_string(r#"{"userSig":null}"#.into()).unwrap();
        let p = Params::read("login", names, Some(&raw)).unwrap();
        assert_eq!(p.opt::<String>("userSig").unwrap(), None);
        assert_eq!(p.opt::<String>("userID").unwrap(), None);
        let raw: Box<RawValue> = RawValue::from_string(r#"{"userID":5}"#.into()).unwrap();
        let p = Params::read("login", names, Some(&raw)).unwrap();
        assert!(p.opt::<String>("userID").is_err());
        let raw: Box<RawValue> = RawValue::from_string("[1,2,3]".into()).unwrap();
        assert_eq!(
            Params::read("login", names, Some(&raw)).unwrap_err().code,
            code::INVALID_PARAMS
        );
    }

    #[test]
    fn replies_are_one_shape() {
        let mut out = Vec::new();
        write_error(
            &mut out,
            &Id::string("x"),
            &RpcError::new(6014, "not logged in"),
        );
        assert_eq!(
            String::from_utf8(out).unwrap(),
            r#"{"jsonrpc":"2.0","id":"x","error":{"code":6014,"message":"not logged in"}}"#
        );
        let mut out = Vec::new();
        write_notification(&mut out, "event", &serde_json::json!({"a":1}));
        assert_eq!(
            String::from_utf8(out).unwrap(),
            r#"{"jsonrpc":"2.0","method":"event","params":{"a":1}}"#
        );
        let m: Message =
            serde_json::from_str(r#"{"jsonrpc":"2.0","id":12345678901234567890123,"result":{}}"#)
                .unwrap();
        assert_eq!(m.id.unwrap().as_json(), "12345678901234567890123");
    }

    /// Id, method and params as text, to compare two readings.
    fn parts(r: &Incoming<'_>) -> (Option<String>, String, Option<String>) {
        (
            r.id.as_ref().map(|i| i.as_json().to_string()),
            r.method.to_string(),
            r.params.map(|p| p.get().to_string()),
        )
    }

    #[test]
    fn the_usual_requests_take_the_fast_path() {
        for line in [
            r#"{"jsonrpc":"2.0","id":1,"method":"getLoginStatus"}"#,
            r#" { "method" : "subscribe" , "params" : {"events":["onSelfInfoUpdated"]}, "id" : "a-1", "jsonrpc" : "2.0" } "#,
            r#"{"jsonrpc":"2.0","method":"login","params":["u","s"],"id":-0}"#,
            r#"{"jsonrpc":"2.0","method":"logout","id":null}"#,
        ] {
            let fast = read_plain(line).unwrap_or_else(|| panic!("not on the fast path: {line}"));
            assert_eq!(
                parts(&fast),
                parts(&read_enveloped(line).unwrap()),
                "{line}"
            );
        }
        let r =
            read_plain(r#"{"jsonrpc":"2.0","id":7,"method":"x","params":{"a":[1,{}]}}"#).unwrap();
        assert_eq!(
            parts(&r),
            (Some("7".into()), "x".into(), Some(r#"{"a":[1,{}]}"#.into()))
        );
        for other in [
            r#"{"jsonrpc":"2.0","id":1,"method":"a\"b"}"#,
            r#"{"jsonrpc":"2.0","id":1.5,"method":"x"}"#,
            r#"{"jsonrpc":"2.0","id":1,"method":"x","id":2}"#,
            r#"{"jsonrpc":"2.0","id":1,"method":"x","extra":0}"#,
            r#"{"jsonrpc":"2.0","id":1,"method":"x"} x"#,
            r#"{"jsonrpc":"2.0","id":01,"method":"x"}"#,
            r#"{"jsonrpc":"2.0","id":1,"method":"x","params":[1,}"#,
        ] {
            assert!(read_plain(other).is_none(), "took the fast path: {other}");
        }
    }

    /// Pieces of request objects, right and wrong.
    const KEYS: &[&str] = &[
        r#""jsonrpc""#,
        r#""id""#,
        r#""method""#,
        r#""params""#,
        r#""x""#,
        r#""\u0069d""#,
        r#""method ""#,
        r#""Id""#,
    ];
    const VALUES: &[&str] = &[
        r#""2.0""#,
        r#""2.00""#,
        r#""2\u002e0""#,
        "1",
        "0",
        "-0",
        "-",
        "01",
        "1.5",
        "1e3",
        "-12345678901234567890123",
        r#""abc""#,
        r#""getLoginStatus""#,
        r#""a\"b""#,
        "\"é\"",
        "\"a\tb\"",
        r#""""#,
        "null",
        "nul",
        "nullx",
        "true",
        "{}",
        "[]",
        r#"{"a":[1,{"b":"c"}],"d":"\u00e9"}"#,
        "[1,2",
        r#"{"a":}"#,
        r#"{"a":1,"a":2}"#,
        "\"",
    ];
    const GAPS: &[&str] = &["", " ", "\t", "\r\n", "  "];
    const TAILS: &[&str] = &["", "", "", "", "", "", "x", "}", ",", " "];

    fn gap() -> impl Strategy<Value = &'static str> {
        proptest::sample::select(GAPS)
    }

    /// Whatever the fast path reads, the envelope reads the same way. The lines are
    /// request-like objects: a `jsonrpc` and a `method` member, right or wrong, among
    /// others of every kind, in any order, with any gaps; a good share of them (counted)
    /// are right, so the fast path is taken often enough for the comparison to mean
    /// something.
    #[test]
    fn the_fast_path_reads_what_the_envelope_reads() {
        use proptest::test_runner::{Config, TestRunner};
        let versions = proptest::sample::select(
            &[
                r#""2.0""#,
                r#""2.0""#,
                r#""2.0""#,
                r#""2.0""#,
                r#""2.0""#,
                r#""2.0""#,
                r#""2.00""#,
                r#""2\u002e0""#,
                "2",
                "null",
            ][..],
        );
        let methods = proptest::sample::select(
            &[
                r#""status""#,
                r#""getLoginStatus""#,
                r#""login""#,
                r#""a\"b""#,
                r#""""#,
                "1",
                "null",
                "\"é\"",
                "\"a\tb\"",
            ][..],
        );
        let ids =
            proptest::sample::select(&["1", "-0", r#""x-1""#, "null", "99999999999999999999"][..]);
        let params = proptest::sample::select(&["{}", "[]", r#"{"a":[1,{"b":"\u00e9"}]}"#][..]);
        let member = (
            prop_oneof![
                2 => (Just(r#""id""#), ids),
                2 => (Just(r#""params""#), params),
                3 => (proptest::sample::select(KEYS), proptest::sample::select(VALUES)),
            ],
            gap(),
            gap(),
            gap(),
        );
        let strategy = (
            proptest::option::weighted(0.9, versions),
            proptest::option::weighted(0.9, methods),
            proptest::collection::vec(member, 0..3),
            any::<u64>(),
            gap(),
            gap(),
            proptest::sample::select(TAILS),
        );
        let taken = std::cell::Cell::new(0u32);
        let mut runner = TestRunner::new(Config::with_cases(20_000));
        runner
            .run(
                &strategy,
                |(version, method, others, order, lead, close, tail)| {
                    let mut body: Vec<String> = others
                        .iter()
                        .map(|((k, v), a, b, c)| format!("{a}{k}{b}:{c}{v}"))
                        .collect();
                    body.extend(version.map(|v| format!(r#""jsonrpc":{v}"#)));
                    body.extend(method.map(|m| format!(r#""method":{m}"#)));
                    if !body.is_empty() {
                        let n = body.len();
                        body.rotate_left(usize::try_from(order % n as u64).unwrap());
                    }
                    let line = format!("{lead}{{{}{close}}}{tail}", body.join(","));
                    if let Some(fast) = read_plain(&line) {
                        taken.set(taken.get() + 1);
                        let slow = read_enveloped(&line);
                        prop_assert!(slow.is_ok(), "the envelope refused {line:?}: {slow:?}");
                        prop_assert_eq!(parts(&fast), parts(&slow.unwrap()), "{:?}", line);
                    }
                    Ok(())
                },
            )
            .unwrap();
        assert!(
            taken.get() > 1_500,
            "only {} of 20,000 lines took the fast path",
            taken.get()
        );
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(4000))]

        /// Every request of the usual shape takes the fast path, in any member order.
        #[test]
        fn usual_requests_in_any_order_take_the_fast_path(
            id in proptest::option::of(proptest::sample::select(&["1", "-0", "123456789012345678901234567890", "\"x-1\"", "null", "\"é\""][..])),
            method in "[a-zA-Z]{1,16}",
            params in proptest::option::of(proptest::sample::select(&["{}", "[]", r#"{"events":["a","b"],"since":3}"#, r#"["u",{"k":"\u00e9"}]"#][..])),
            order in Just(()).prop_perturb(|_, mut rng| rng.next_u64()),
            gaps in proptest::collection::vec(gap(), 4),
        ) {
            let mut members = vec![
                r#""jsonrpc":"2.0""#.to_string(),
                format!(r#""method"{}:{}"{method}""#, gaps[0], gaps[1]),
            ];
            if let Some(id) = id {
                members.push(format!(r#""id":{}{id}"#, gaps[2]));
            }
            if let Some(p) = params {
                members.push(format!(r#""params":{p}{}"#, gaps[3]));
            }
            let n = members.len();
            members.rotate_left(usize::try_from(order % n as u64).unwrap());
            if order & 0x100 != 0 {
                members.swap(0, n - 1);
            }
            let line = format!("{{{}}}", members.join(","));
            let fast = read_plain(&line);
            prop_assert!(fast.is_some(), "not on the fast path: {:?}", line);
            prop_assert_eq!(parts(&fast.unwrap()), parts(&read_enveloped(&line).unwrap()));
        }
    }
}
