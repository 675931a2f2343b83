//! The REST admin API: `POST /v4/<service>/<command>?sdkappid=&identifier=&usersig=&random=&contenttype=json`,
//! Tencent's URLs and JSON shapes. Every answer is HTTP 200 with
//! `{"ActionStatus":"OK"|"FAIL","ErrorCode":n,"ErrorInfo":"…"}` plus the command's fields.

use std::collections::HashMap;

use actix_web::{web, HttpResponse};
use serde_json::{json, Map, Value};

use super::state::{valid_user_id, Hub};
use crate::proto::profile::UserFullInfo;
use crate::usersig;

/// Tencent's "parameters are invalid".
const INVALID_PARAMS: i32 = 70402;
/// Tencent's "the request requires app admin permissions".
const NEEDS_ADMIN: i32 = 70403;
/// Tencent's "the requested user account does not exist".
const NO_ACCOUNT: i32 = 70107;
/// Tencent's profile error "the tag is not valid" (unknown profile field).
const BAD_TAG: i32 = 40008;

struct Fail(i32, String);

fn fail(code: i32, info: impl Into<String>) -> Fail {
    Fail(code, info.into())
}

fn answer(r: Result<Map<String, Value>, Fail>) -> HttpResponse {
    let body = match r {
        Ok(mut fields) => {
            let mut m = Map::new();
            m.insert("ActionStatus".into(), json!("OK"));
            m.insert("ErrorCode".into(), json!(0));
            m.insert("ErrorInfo".into(), json!(""));
            m.append(&mut fields);
            Value::Object(m)
        }
        Err(Fail(code, info)) => {
            json!({"ActionStatus": "FAIL", "ErrorCode": code, "ErrorInfo": info})
        }
    };
    HttpResponse::Ok().json(body)
}

/// `POST /v4/{service}/{command}`.
pub async fn handle(
    path: web::Path<(String, String)>,
    query: web::Query<HashMap<String, String>>,
    body: web::Bytes,
    hub: web::Data<Hub>,
) -> HttpResponse {
    let (service, command) = path.into_inner();
    answer(dispatch(&hub, &service, &command, &query, &body))
}

/// Checks the admin's credentials; returns the SDKAppID.
fn authenticate(hub: &Hub, q: &HashMap<String, String>) -> Result<u64, Fail> {
    let app = q
        .get("sdkappid")
        .and_then(|s| s.trim().parse::<u64>().ok())
        .ok_or_else(|| fail(INVALID_PARAMS, "sdkappid is missing or not a number"))?;
    let key = hub.settings.apps.get(&app).ok_or_else(|| {
        fail(
            crate::codes::code::USERSIG_SDKAPPID_MISMATCH,
            format!("unknown sdkappid {app}"),
        )
    })?;
    let identifier = q
        .get("identifier")
        .ok_or_else(|| fail(INVALID_PARAMS, "identifier is missing"))?;
    let sig = q
        .get("usersig")
        .ok_or_else(|| fail(INVALID_PARAMS, "usersig is missing"))?;
    usersig::verify(sig, app, key, identifier, usersig::now_unix())
        .map_err(|e| fail(e.code(), e.to_string()))?;
    if *identifier != hub.settings.admin {
        return Err(fail(
            NEEDS_ADMIN,
            format!("the request requires app admin permissions; {identifier:?} is not the administrator"),
        ));
    }
    Ok(app)
}

fn dispatch(
    hub: &Hub,
    service: &str,
    command: &str,
    q: &HashMap<String, String>,
    body: &[u8],
) -> Result<Map<String, Value>, Fail> {
    let app = authenticate(hub, q)?;
    let body: Value = serde_json::from_slice(body)
        .map_err(|e| fail(INVALID_PARAMS, format!("body is not JSON: {e}")))?;
    let body = body
        .as_object()
        .ok_or_else(|| fail(INVALID_PARAMS, "body must be a JSON object"))?;
    tracing::info!(service, command, app, "REST request");
    match (service, command) {
        ("im_open_login_svc", "account_import") => account_import(hub, app, body),
        ("im_open_login_svc", "kick") => kick(hub, app, body),
        ("openim", "query_online_status") => query_online_status(hub, app, body),
        ("profile", "portrait_set") => portrait_set(hub, app, body),
        _ => Err(fail(
            INVALID_PARAMS,
            format!("unknown command v4/{service}/{command}"),
        )),
    }
}

fn user_field<'a>(body: &'a Map<String, Value>, name: &str) -> Result<&'a str, Fail> {
    let u = body
        .get(name)
        .and_then(Value::as_str)
        .ok_or_else(|| fail(INVALID_PARAMS, format!("{name} is missing or not a string")))?;
    if !valid_user_id(u) {
        return Err(fail(
            INVALID_PARAMS,
            format!("{name} must match [A-Za-z0-9_-]{{1,32}}"),
        ));
    }
    Ok(u)
}

fn account_import(
    hub: &Hub,
    app: u64,
    body: &Map<String, Value>,
) -> Result<Map<String, Value>, Fail> {
    let user = user_field(body, "UserID")?;
    let nick = body.get("Nick").and_then(Value::as_str);
    let face = body.get("FaceUrl").and_then(Value::as_str);
    hub.import_account(app, user, nick, face);
    Ok(Map::new())
}

fn kick(hub: &Hub, app: u64, body: &Map<String, Value>) -> Result<Map<String, Value>, Fail> {
    let user = user_field(body, "UserID")?;
    if !hub.account_exists(app, user) {
        return Err(fail(NO_ACCOUNT, format!("account {user} does not exist")));
    }
    hub.kick(app, user, usersig::now_unix());
    Ok(Map::new())
}

fn query_online_status(
    hub: &Hub,
    app: u64,
    body: &Map<String, Value>,
) -> Result<Map<String, Value>, Fail> {
    let to = body
        .get("To_Account")
        .and_then(Value::as_array)
        .ok_or_else(|| fail(INVALID_PARAMS, "To_Account must be an array of UserIDs"))?;
    let detail = body
        .get("IsNeedDetail")
        .and_then(Value::as_i64)
        .unwrap_or(0)
        == 1;
    let mut results = Vec::new();
    let mut errors = Vec::new();
    for u in to {
        let Some(u) = u.as_str() else {
            return Err(fail(
                INVALID_PARAMS,
                "To_Account must be an array of strings",
            ));
        };
        if !valid_user_id(u) {
            errors.push(json!({"To_Account": u, "ErrorCode": INVALID_PARAMS}));
            continue;
        }
        let online = hub.online(app, u);
        let mut r = Map::new();
        r.insert("To_Account".into(), json!(u));
        r.insert(
            "Status".into(),
            json!(if online.is_empty() {
                "Offline"
            } else {
                "Online"
            }),
        );
        if detail && !online.is_empty() {
            let d: Vec<Value> = online
                .iter()
                .map(|o| json!({"Platform": o.platform.name(), "Status": "Online"}))
                .collect();
            r.insert("Detail".into(), Value::Array(d));
        }
        results.push(Value::Object(r));
    }
    let mut out = Map::new();
    out.insert("QueryResult".into(), Value::Array(results));
    if !errors.is_empty() {
        out.insert("ErrorList".into(), Value::Array(errors));
    }
    Ok(out)
}

/// Applies one `ProfileItem` to the profile.
fn apply_tag(info: &mut UserFullInfo, tag: &str, value: &Value) -> Result<(), Fail> {
    let string = || -> Result<String, Fail> {
        match value {
            Value::String(s) => Ok(s.clone()),
            Value::Number(n) => Ok(n.to_string()),
            _ => Err(fail(INVALID_PARAMS, format!("{tag} needs a string value"))),
        }
    };
    let number = || -> Result<u32, Fail> {
        match value {
            Value::Number(n) => n.as_u64().and_then(|n| u32::try_from(n).ok()),
            Value::String(s) => s.trim().parse().ok(),
            _ => None,
        }
        .ok_or_else(|| {
            fail(
                INVALID_PARAMS,
                format!("{tag} needs a non-negative integer value"),
            )
        })
    };
    match tag {
        "Tag_Profile_IM_Nick" => info.nick_name = string()?,
        "Tag_Profile_IM_Image" => info.face_url = string()?,
        "Tag_Profile_IM_SelfSignature" => info.self_signature = string()?,
        "Tag_Profile_IM_Gender" => {
            info.gender = match string()?.as_str() {
                "Gender_Type_Unknown" => 0,
                "Gender_Type_Male" => 1,
                "Gender_Type_Female" => 2,
                other => {
                    return Err(fail(
                        INVALID_PARAMS,
                        format!("bad Tag_Profile_IM_Gender value {other:?}"),
                    ))
                }
            }
        }
        "Tag_Profile_IM_AllowType" => {
            info.allow_type = match string()?.as_str() {
                "AllowType_Type_AllowAny" => 0,
                "AllowType_Type_NeedConfirm" => 1,
                "AllowType_Type_DenyAny" => 2,
                other => {
                    return Err(fail(
                        INVALID_PARAMS,
                        format!("bad Tag_Profile_IM_AllowType value {other:?}"),
                    ))
                }
            }
        }
        "Tag_Profile_IM_BirthDay" => info.birthday = number()?,
        "Tag_Profile_IM_Level" => info.level = number()?,
        "Tag_Profile_IM_Role" => info.role = number()?,
        t if t.starts_with("Tag_Profile_Custom_") && t.len() > "Tag_Profile_Custom_".len() => {
            info.custom_info.insert(t.to_owned(), string()?);
        }
        other => {
            return Err(fail(
                BAD_TAG,
                format!("unknown or unsupported profile tag {other:?}"),
            ))
        }
    }
    Ok(())
}

fn portrait_set(
    hub: &Hub,
    app: u64,
    body: &Map<String, Value>,
) -> Result<Map<String, Value>, Fail> {
    let user = user_field(body, "From_Account")?;
    let items = body
        .get("ProfileItem")
        .and_then(Value::as_array)
        .ok_or_else(|| fail(INVALID_PARAMS, "ProfileItem must be an array"))?;
    // Validate everything on a copy first, so a bad item changes nothing.
    let mut scratch = UserFullInfo::default();
    let mut pairs = Vec::new();
    for item in items {
        let tag = item
            .get("Tag")
            .and_then(Value::as_str)
            .ok_or_else(|| fail(INVALID_PARAMS, "every ProfileItem needs a Tag"))?;
        let value = item
            .get("Value")
            .ok_or_else(|| fail(INVALID_PARAMS, format!("ProfileItem {tag} has no Value")))?;
        apply_tag(&mut scratch, tag, value)?;
        pairs.push((tag.to_owned(), value.clone()));
    }
    let pushed = hub
        .update_profile(app, user, |info| {
            for (tag, value) in &pairs {
                let _ = apply_tag(info, tag, value);
            }
        })
        .ok_or_else(|| fail(NO_ACCOUNT, format!("account {user} does not exist")))?;
    tracing::info!(
        user,
        tags = pairs.len(),
        pushed,
        "profile set; selfInfoUpdated pushed"
    );
    let mut out = Map::new();
    out.insert("ErrorDisplay".into(), json!(""));
    Ok(out)
}
