//! The REST admin API end to end: authentication, account_import, kick, query_online_status,
//! portrait_set.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod support;

use std::time::Duration;

use serde_json::json;
use support::*;

const T: Duration = Duration::from_secs(10);

#[test]
fn rest_calls_are_authenticated_by_the_admin_usersig() {
    let server = DevServer::start(&[]);
    let body = json!({"UserID": "alice"});
    let now = now_unix();
    let cases = [
        (ADMIN, ticket_at(ADMIN, 10, now - 100), 70001),
        (ADMIN, ticket_for(APP, "bad-key", ADMIN, 3600, now), 70003),
        (ADMIN, ticket("someone", 3600), 70013),
        (ADMIN, ticket_for(1400000099, KEY, ADMIN, 3600, now), 70014),
        ("alice", ticket("alice", 3600), 70403),
    ];
    for (identifier, sig, code) in cases {
        let r = server.rest_as(
            "im_open_login_svc/account_import",
            identifier,
            &sig,
            body.clone(),
        );
        assert_eq!(r["ActionStatus"], "FAIL", "{r}");
        assert_eq!(r["ErrorCode"], code, "{r}");
        assert!(!r["ErrorInfo"].as_str().unwrap().is_empty());
    }
    let r = server.rest("im_open_login_svc/account_import", body);
    assert_eq!(
        r,
        json!({"ActionStatus": "OK", "ErrorCode": 0, "ErrorInfo": ""})
    );
}

#[test]
fn unknown_commands_and_bad_bodies_fail_the_tencent_way() {
    let server = DevServer::start(&[]);
    let r = server.rest("im_open_login_svc/fly", json!({}));
    assert_eq!(r["ActionStatus"], "FAIL");
    assert_eq!(r["ErrorCode"], 70402);
    let r = server.rest("im_open_login_svc/kick", json!({"UserID": 5}));
    assert_eq!(r["ErrorCode"], 70402);
    let r = server.rest("im_open_login_svc/kick", json!({"UserID": "nobody"}));
    assert_eq!(r["ErrorCode"], 70107);
    let path = format!(
        "/v4/im_open_login_svc/kick?sdkappid={APP}&identifier={ADMIN}&usersig={}&random=1&contenttype=json",
        ticket(ADMIN, 3600)
    );
    let (status, text) = server.http("POST", &path, "{not json");
    assert_eq!(status, 200);
    let r: serde_json::Value = serde_json::from_str(&text).unwrap();
    assert_eq!(r["ActionStatus"], "FAIL");
}

#[test]
fn account_import_creates_the_profile_seen_at_login() {
    let server = DevServer::start(&[]);
    let r = server.rest(
        "im_open_login_svc/account_import",
        json!({"UserID": "alice", "Nick": "Alice", "FaceUrl": "https://example.invalid/a.png"}),
    );
    assert_eq!(r["ActionStatus"], "OK");
    let mut c = WsClient::connect(&server, "Linux", "i1");
    let r = c.login("alice", &ticket("alice", 3600), false);
    assert_eq!(r["body"]["info"]["nickName"], "Alice");
    assert_eq!(
        r["body"]["info"]["faceUrl"],
        "https://example.invalid/a.png"
    );
}

#[test]
fn kick_ends_every_login_and_invalidates_earlier_tickets() {
    let server = DevServer::start(&[]);
    let mut linux = WsClient::connect(&server, "Linux", "i1");
    let mut phone = WsClient::connect(&server, "Android", "i2");
    let old = ticket("alice", 3600);
    assert_eq!(linux.login("alice", &old, false)["code"], 0);
    assert_eq!(phone.login("alice", &old, false)["code"], 0);

    let r = server.rest("im_open_login_svc/kick", json!({"UserID": "alice"}));
    assert_eq!(
        r,
        json!({"ActionStatus": "OK", "ErrorCode": 0, "ErrorInfo": ""})
    );
    let kick_second = now_unix();
    for c in [&mut linux, &mut phone] {
        assert_eq!(
            c.expect_push("kickedOffline", T),
            json!({"reason": "rest_api"})
        );
        assert_eq!(c.request("getSelfInfo", json!({}))["code"], 6014);
    }
    assert!(server.sessions().is_empty());
    let q = server.rest(
        "openim/query_online_status",
        json!({"To_Account": ["alice"]}),
    );
    assert_eq!(q["QueryResult"][0]["Status"], "Offline");

    // The old ticket, and any issued in the kick's second, are dead.
    assert_eq!(linux.login("alice", &old, false)["code"], 70052);
    assert_eq!(linux.login("alice", &old, true)["code"], 70052);
    // One issued later works (issue it in the next second rather than waiting for it).
    let fresh = ticket_at("alice", 3600, kick_second + 1);
    assert_eq!(linux.login("alice", &fresh, false)["code"], 0);
    assert_eq!(server.user_stats("alice")["failed"]["70052"], 2);
    assert_eq!(server.user_stats("alice")["kickedRestApi"], 2);
}

#[test]
fn kick_also_ends_offline_logins() {
    let server = DevServer::start(&[]);
    let sig = ticket("alice", 3600);
    {
        let mut c = WsClient::connect(&server, "Linux", "i1");
        assert_eq!(c.login("alice", &sig, false)["code"], 0);
    }
    wait_until(T, "offline", || {
        server
            .sessions()
            .first()
            .is_some_and(|s| s["state"] == "offline")
    });
    assert_eq!(
        server.rest("im_open_login_svc/kick", json!({"UserID": "alice"}))["ActionStatus"],
        "OK"
    );
    assert!(server.sessions().is_empty());
}

#[test]
fn query_online_status_reports_each_online_platform() {
    let server = DevServer::start(&[]);
    let sig = ticket("alice", 3600);
    let mut linux = WsClient::connect(&server, "Linux", "i1");
    let mut web = WsClient::connect(&server, "Web", "i2");
    let offline = WsClient::connect(&server, "Android", "i3");
    assert_eq!(linux.login("alice", &sig, false)["code"], 0);
    assert_eq!(web.login("alice", &sig, false)["code"], 0);
    drop(offline);
    assert_eq!(
        server.rest("im_open_login_svc/account_import", json!({"UserID": "bob"}))["ActionStatus"],
        "OK"
    );

    let q = server.rest(
        "openim/query_online_status",
        json!({"To_Account": ["alice", "bob", "nobody"], "IsNeedDetail": 1}),
    );
    assert_eq!(q["ActionStatus"], "OK");
    let r = q["QueryResult"].as_array().unwrap();
    assert_eq!(r.len(), 3);
    assert_eq!(r[0]["To_Account"], "alice");
    assert_eq!(r[0]["Status"], "Online");
    let mut platforms: Vec<String> = r[0]["Detail"]
        .as_array()
        .unwrap()
        .iter()
        .map(|d| {
            assert_eq!(d["Status"], "Online");
            d["Platform"].as_str().unwrap().to_string()
        })
        .collect();
    platforms.sort();
    assert_eq!(platforms, ["Linux", "Web"]);
    assert_eq!(r[1], json!({"To_Account": "bob", "Status": "Offline"}));
    assert_eq!(r[2]["Status"], "Offline");

    // Without IsNeedDetail there is no Detail; a dropped connection is Offline.
    drop(web);
    wait_until(T, "Web gone", || {
        let q = server.rest(
            "openim/query_online_status",
            json!({"To_Account": ["alice"], "IsNeedDetail": 1}),
        );
        q["QueryResult"][0]["Detail"]
            .as_array()
            .is_some_and(|d| d.len() == 1)
    });
    let q = server.rest(
        "openim/query_online_status",
        json!({"To_Account": ["alice"]}),
    );
    assert_eq!(
        q["QueryResult"][0],
        json!({"To_Account": "alice", "Status": "Online"})
    );
    assert_eq!(linux.request("logout", json!({}))["code"], 0);
    let q = server.rest(
        "openim/query_online_status",
        json!({"To_Account": ["alice"]}),
    );
    assert_eq!(q["QueryResult"][0]["Status"], "Offline");
}

#[test]
fn portrait_set_maps_the_tags_and_pushes_self_info_updated() {
    let server = DevServer::start(&[]);
    let sig = ticket("alice", 3600);
    let mut a = WsClient::connect(&server, "Linux", "i1");
    let mut b = WsClient::connect(&server, "Android", "i2");
    let mut other = WsClient::connect(&server, "Linux", "i3");
    assert_eq!(a.login("alice", &sig, false)["code"], 0);
    assert_eq!(b.login("alice", &sig, false)["code"], 0);
    assert_eq!(other.login("bob", &ticket("bob", 3600), false)["code"], 0);

    let r = server.rest(
        "profile/portrait_set",
        json!({"From_Account": "alice", "ProfileItem": [
            {"Tag": "Tag_Profile_IM_Nick", "Value": "Alice"},
            {"Tag": "Tag_Profile_IM_Image", "Value": "https://example.invalid/a.png"},
            {"Tag": "Tag_Profile_IM_SelfSignature", "Value": "hello"},
            {"Tag": "Tag_Profile_IM_Gender", "Value": "Gender_Type_Female"},
            {"Tag": "Tag_Profile_IM_AllowType", "Value": "AllowType_Type_DenyAny"},
            {"Tag": "Tag_Profile_IM_BirthDay", "Value": 19900101},
            {"Tag": "Tag_Profile_IM_Level", "Value": 7},
            {"Tag": "Tag_Profile_IM_Role", "Value": 3},
            {"Tag": "Tag_Profile_Custom_Team", "Value": "blue"}
        ]}),
    );
    assert_eq!(r["ActionStatus"], "OK", "{r}");
    let expected = json!({"info": {
        "userID": "alice", "nickName": "Alice", "faceUrl": "https://example.invalid/a.png",
        "selfSignature": "hello", "gender": 2, "allowType": 2,
        "customInfo": {"Tag_Profile_Custom_Team": "blue"}, "role": 3, "level": 7, "birthday": 19900101
    }});
    assert_eq!(a.expect_push("selfInfoUpdated", T), expected);
    assert_eq!(b.expect_push("selfInfoUpdated", T), expected);
    other.assert_no_pending_push();
    assert_eq!(a.request("getSelfInfo", json!({}))["body"], expected);

    // Male and Unknown; NeedConfirm and AllowAny.
    for (g, gn, at, an) in [
        ("Gender_Type_Male", 1, "AllowType_Type_NeedConfirm", 1),
        ("Gender_Type_Unknown", 0, "AllowType_Type_AllowAny", 0),
    ] {
        server.rest(
            "profile/portrait_set",
            json!({"From_Account": "alice", "ProfileItem": [
                {"Tag": "Tag_Profile_IM_Gender", "Value": g},
                {"Tag": "Tag_Profile_IM_AllowType", "Value": at}
            ]}),
        );
        let info = a.expect_push("selfInfoUpdated", T)["info"].clone();
        assert_eq!(
            (info["gender"].clone(), info["allowType"].clone()),
            (json!(gn), json!(an))
        );
        assert_eq!(info["nickName"], "Alice", "other fields are kept");
    }

    // A bad tag or value changes nothing and pushes nothing.
    for item in [
        json!({"Tag": "Tag_Profile_IM_Unknown", "Value": "x"}),
        json!({"Tag": "Tag_Profile_IM_Gender", "Value": "Gender_Type_Robot"}),
        json!({"Tag": "Tag_Profile_IM_Level", "Value": "high"}),
    ] {
        let r = server.rest(
            "profile/portrait_set",
            json!({"From_Account": "alice", "ProfileItem": [{"Tag": "Tag_Profile_IM_Nick", "Value": "Changed"}, item]}),
        );
        assert_eq!(r["ActionStatus"], "FAIL", "{r}");
    }
    a.assert_no_pending_push();
    assert_eq!(
        a.request("getSelfInfo", json!({}))["body"]["info"]["nickName"],
        "Alice"
    );
    let r = server.rest(
        "profile/portrait_set",
        json!({"From_Account": "nobody", "ProfileItem": []}),
    );
    assert_eq!(r["ErrorCode"], 70107);
}
