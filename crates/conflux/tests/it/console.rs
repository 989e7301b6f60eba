//! The web console's server side over HTTP: the page and its assets at `/`, login with the org's
//! users (an `HttpOnly`, `SameSite=Strict` session cookie that only works together with the
//! session's CSRF token), logout, the live change stream of a record, and field permissions
//! applying to everything the console reads. (Browser tests of the pages themselves: issue 8.)

use std::io::{BufRead, BufReader};
use std::time::Duration;

use reqwest::blocking::Client;
use reqwest::Method;
use serde_json::{json, Value};

use crate::harness::{data_dir, Org, PASSWORD, USERNAME};

fn client() -> Client {
    Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .unwrap()
}

/// Logs in to the console: (cookie header value, CSRF token).
fn console_login(org: &Org, username: &str, password: &str) -> (String, String) {
    let r = client()
        .post(org.url("/console/login"))
        .json(&json!({"username": username, "password": password}))
        .send()
        .unwrap();
    assert_eq!(r.status(), 200);
    let cookie = r
        .headers()
        .get("set-cookie")
        .unwrap()
        .to_str()
        .unwrap()
        .to_string();
    for attr in ["HttpOnly", "SameSite=Strict", "Path=/"] {
        assert!(cookie.contains(attr), "{cookie}");
    }
    let body: Value = r.json().unwrap();
    let pair = cookie.split(';').next().unwrap().to_string();
    (pair, body["csrf"].as_str().unwrap().to_string())
}

#[test]
fn the_console_is_served_and_logs_users_in_and_out_with_csrf_protection() {
    let org = Org::start("console-login");
    let http = client();
    // `conflux serve` says where the console is, and that address serves it.
    let said = format!("conflux: console at {}/ ", org.srv.http);
    assert!(
        org.srv.startup.iter().any(|l| l.starts_with(&said)),
        "{:?}",
        org.srv.startup
    );
    let page = http.get(format!("{}/", org.srv.http)).send().unwrap();
    assert_eq!(page.status(), 200);
    assert!(page.headers()["content-type"]
        .to_str()
        .unwrap()
        .starts_with("text/html"));
    assert!(page.headers().contains_key("content-security-policy"));
    let html = page.text().unwrap();
    assert!(
        html.contains("/console/app.js") && html.contains("lang=\"en\""),
        "{html}"
    );
    for (path, kind) in [
        ("/console/app.js", "text/javascript"),
        ("/console/app.css", "text/css"),
    ] {
        let r = http.get(org.url(path)).send().unwrap();
        assert_eq!(r.status(), 200, "{path}");
        assert!(r.headers()["content-type"]
            .to_str()
            .unwrap()
            .starts_with(kind));
    }

    // Wrong password, missing fields, a hostile body: refused, nothing set.
    for body in [
        json!({"username": USERNAME, "password": "wrong"}),
        json!({"username": USERNAME}),
        json!("not an object"),
    ] {
        let r = http
            .post(org.url("/console/login"))
            .json(&body)
            .send()
            .unwrap();
        assert!(
            r.status() == 401 || r.status() == 400,
            "{body}: {}",
            r.status()
        );
        assert!(r.headers().get("set-cookie").is_none());
        let b: Value = r.json().unwrap();
        assert!(b["error"].as_str().is_some(), "{b}");
    }
    // A form post works too (the page works without JSON).
    let r = http
        .post(org.url("/console/login"))
        .form(&[("username", USERNAME), ("password", PASSWORD)])
        .send()
        .unwrap();
    assert_eq!(r.status(), 200);

    let (cookie, csrf) = console_login(&org, USERNAME, PASSWORD);
    let me: Value = http
        .get(org.url("/console/session"))
        .header("cookie", &cookie)
        .send()
        .unwrap()
        .json()
        .unwrap();
    assert_eq!(
        (me["username"].as_str(), me["csrf"].as_str()),
        (Some(USERNAME), Some(csrf.as_str()))
    );

    // The cookie alone does not authenticate API calls: a page on another site could send it.
    let url = org.data("/sobjects/Account/describe");
    let r = http.get(&url).header("cookie", &cookie).send().unwrap();
    assert_eq!(r.status(), 401);
    let r = http
        .get(&url)
        .header("cookie", &cookie)
        .header("x-conflux-csrf", "0123456789abcdef0123456789abcdef")
        .send()
        .unwrap();
    assert_eq!(r.status(), 401);
    let r = http
        .get(&url)
        .header("cookie", &cookie)
        .header("x-conflux-csrf", &csrf)
        .send()
        .unwrap();
    assert_eq!(r.status(), 200);
    // Writes go through the same API, validated as the API validates.
    let r = http
        .post(org.data("/sobjects/Account"))
        .header("cookie", &cookie)
        .header("x-conflux-csrf", &csrf)
        .json(&json!({"Name": ""}))
        .send()
        .unwrap();
    assert_eq!(r.status(), 400);
    let b: Value = r.json().unwrap();
    assert_eq!(b[0]["errorCode"], "REQUIRED_FIELD_MISSING", "{b}");

    // Logout needs the CSRF token, then ends the session for good.
    let r = http
        .post(org.url("/console/logout"))
        .header("cookie", &cookie)
        .send()
        .unwrap();
    assert_eq!(r.status(), 403);
    let r = http
        .post(org.url("/console/logout"))
        .header("cookie", &cookie)
        .header("x-conflux-csrf", &csrf)
        .send()
        .unwrap();
    assert_eq!(r.status(), 204);
    assert!(r.headers()["set-cookie"]
        .to_str()
        .unwrap()
        .contains("Max-Age=0"));
    let r = http
        .get(&url)
        .header("cookie", &cookie)
        .header("x-conflux-csrf", &csrf)
        .send()
        .unwrap();
    assert_eq!(r.status(), 401);
    let r = http
        .get(org.url("/console/session"))
        .header("cookie", &cookie)
        .send()
        .unwrap();
    assert_eq!(r.status(), 401);
}

/// Reads server-sent events from `/console/watch` in a thread; events arrive on the channel.
fn watch(org: &Org, cookie: &str, csrf: &str, id: &str) -> std::sync::mpsc::Receiver<Value> {
    let r = Client::builder()
        .timeout(None)
        .build()
        .unwrap()
        .get(org.url(&format!(
            "/console/watch?object=Account&id={id}&csrf={csrf}"
        )))
        .header("cookie", cookie)
        .send()
        .unwrap();
    assert_eq!(r.status(), 200);
    assert!(r.headers()["content-type"]
        .to_str()
        .unwrap()
        .starts_with("text/event-stream"));
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        let mut event = String::new();
        for line in BufReader::new(r).lines() {
            let Ok(line) = line else { break };
            if let Some(e) = line.strip_prefix("event: ") {
                event = e.to_string();
            } else if let Some(d) = line.strip_prefix("data: ") {
                if event == "change" && tx.send(serde_json::from_str(d).unwrap()).is_err() {
                    break;
                }
            }
        }
    });
    rx
}

#[test]
fn the_record_on_screen_streams_its_changes_and_fields_stay_hidden_without_access() {
    let data = data_dir("console-live");
    let objects = data.join("metadata/objects");
    std::fs::create_dir_all(&objects).unwrap();
    std::fs::write(
        objects.join("Account.yaml"),
        "fields:\n  - fullName: Secret__c\n    type: Text\n    length: 40\n",
    )
    .unwrap();
    let org = Org::start_in(&data, &[], &[]);
    let id = org.create("Account", json!({"Name": "Live Co", "Secret__c": "s3cr3t"}));

    // A Standard User, who has no access to Secret__c.
    let profile = org.query("SELECT Id FROM Profile WHERE Name = 'Standard User'")["records"][0]
        ["Id"]
        .as_str()
        .unwrap()
        .to_string();
    let user = org.create(
        "User",
        json!({"Username": "console.user@example.com", "LastName": "Viewer",
               "Email": "viewer@example.com", "Alias": "viewer", "ProfileId": profile}),
    );
    let (s, b) = org.call(
        Method::POST,
        &org.data(&format!("/sobjects/User/{user}/password")),
        Some(json!({"NewPassword": "Console-passw0rd1"})),
    );
    assert_eq!(s, 204, "{b}");

    let (admin_cookie, admin_csrf) = console_login(&org, USERNAME, PASSWORD);
    let (cookie, csrf) = console_login(&org, "console.user@example.com", "Console-passw0rd1");
    let http = client();
    let get = |cookie: &str, csrf: &str, path: &str| -> Value {
        http.get(org.data(path))
            .header("cookie", cookie)
            .header("x-conflux-csrf", csrf)
            .send()
            .unwrap()
            .json()
            .unwrap()
    };
    let as_admin = get(
        &admin_cookie,
        &admin_csrf,
        &format!("/sobjects/Account/{id}"),
    );
    assert_eq!(as_admin["Secret__c"], "s3cr3t", "{as_admin}");
    let as_user = get(&cookie, &csrf, &format!("/sobjects/Account/{id}"));
    assert_eq!(as_user["Name"], "Live Co", "{as_user}");
    assert!(as_user.get("Secret__c").is_none(), "{as_user}");
    let described = get(&cookie, &csrf, "/sobjects/Account/describe");
    assert!(
        !described.to_string().contains("Secret__c"),
        "the user's describe lists no Secret__c"
    );

    // The watch stream: a change through the REST API arrives, naming who made it and nothing
    // of the record's fields.
    let events = watch(&org, &cookie, &csrf, &id);
    let (s, _) = org.call(
        Method::PATCH,
        &org.data(&format!("/sobjects/Account/{id}")),
        Some(json!({"Secret__c": "changed"})),
    );
    assert_eq!(s, 204);
    let e = events
        .recv_timeout(Duration::from_secs(30))
        .expect("a change event");
    assert_eq!(e["id"], id.as_str(), "{e}");
    assert!(e["by"].as_str().is_some_and(|b| !b.is_empty()), "{e}");
    assert!(!e.to_string().contains("changed"), "no field values: {e}");
    let (s, _) = org.call(
        Method::PATCH,
        &org.data(&format!("/sobjects/Account/{id}")),
        Some(json!({"Name": "Live Co 2"})),
    );
    assert_eq!(s, 204);
    events
        .recv_timeout(Duration::from_secs(30))
        .expect("a second change event");

    // The charts' samples: API calls counted as they happen; only for those who may see all data.
    let t = std::time::Instant::now();
    loop {
        let (s, b) = org.call(Method::GET, &org.data("/conflux/metrics"), None);
        assert_eq!(s, 200, "{b}");
        assert_eq!(b["intervalSeconds"], 2, "{b}");
        let samples = b["samples"].as_array().unwrap();
        if samples.iter().any(|m| m["apiCalls"].as_u64().unwrap() > 0) {
            assert!(
                samples
                    .iter()
                    .all(|m| m["eventsPerSecond"].is_number() && m["date"].is_string()),
                "{b}"
            );
            break;
        }
        assert!(
            t.elapsed() < Duration::from_secs(30),
            "no sample counted API calls: {b}"
        );
        std::thread::sleep(Duration::from_millis(200));
    }
    let r = http
        .get(org.data("/conflux/metrics"))
        .header("cookie", &cookie)
        .header("x-conflux-csrf", &csrf)
        .send()
        .unwrap();
    assert_eq!(r.status(), 403);

    // Without the CSRF token, or for a record that is not there, no stream.
    let r = http
        .get(org.url(&format!("/console/watch?object=Account&id={id}")))
        .header("cookie", &cookie)
        .send()
        .unwrap();
    assert_eq!(r.status(), 401);
    let r = http
        .get(org.url(&format!(
            "/console/watch?object=Account&id=001000000000000AAA&csrf={csrf}"
        )))
        .header("cookie", &cookie)
        .send()
        .unwrap();
    assert_eq!(r.status(), 404);
    let r = http
        .get(org.url(&format!(
            "/console/watch?object=Account&id=x'%20OR%20Name!%3D'&csrf={csrf}"
        )))
        .header("cookie", &cookie)
        .send()
        .unwrap();
    assert_eq!(r.status(), 400);
}
