//! `conflux bulk load|export` and `conflux events publish|tail` against a running server, as an
//! operator runs them.

use std::path::Path;
use std::process::{Command, Output};

use serde_json::json;

use crate::harness::{data_dir, Org, CLIENT_ID, CLIENT_SECRET, PASSWORD, USERNAME};

fn conflux(args: &[&str], conn: &[&str]) -> Output {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_conflux"));
    cmd.args(args).args(conn);
    for (k, _) in std::env::vars() {
        if k.starts_with("CONFLUX_") {
            cmd.env_remove(k);
        }
    }
    cmd.output().expect("run conflux")
}

fn text(o: &Output) -> String {
    format!(
        "{}{}",
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    )
}

/// Connection flags for the OAuth password flow as the admin of `org`.
fn password_login(org: &Org) -> [&str; 10] {
    [
        "--url",
        &org.srv.http,
        "--username",
        USERNAME,
        "--password",
        PASSWORD,
        "--client-id",
        CLIENT_ID,
        "--client-secret",
        CLIENT_SECRET,
    ]
}

fn lines(path: &Path) -> usize {
    std::fs::read_to_string(path).unwrap().lines().count()
}

#[test]
fn bulk_load_and_export_with_failures_reported() {
    let org = Org::start("cli-bulk");
    let (s, _) = org.call(
        reqwest::Method::POST,
        &org.data("/tooling/sobjects/CustomField"),
        Some(json!({"FullName": "Account.Code__c", "Metadata": {"type": "Text", "length": 20, "externalId": true, "unique": true, "label": "Code"}})),
    );
    assert_eq!(s, 201);
    let dir = data_dir("cli-files");
    std::fs::create_dir_all(&dir).unwrap();
    let csv = dir.join("accounts.csv");
    let mut body = String::from("Name,Code__c,NumberOfEmployees\n");
    for i in 0..50 {
        body.push_str(&format!("CLI Account {i},C-{i},{i}\n"));
    }
    body.push_str(",C-missing-name,1\n");
    body.push_str(&format!("Too long,{},2\n", "x".repeat(30)));
    std::fs::write(&csv, body).unwrap();
    let results = dir.join("results");
    let password_login = password_login(&org);
    let out = conflux(
        &[
            "bulk",
            "load",
            "--object",
            "Account",
            "--operation",
            "insert",
            "--file",
            csv.to_str().unwrap(),
            "--results-dir",
            results.to_str().unwrap(),
        ],
        &password_login,
    );
    let t = text(&out);
    assert_eq!(out.status.code(), Some(2), "some rows failed: {t}");
    assert!(t.contains("50 rows succeeded, 2 failed"), "{t}");
    assert!(
        t.contains("REQUIRED_FIELD_MISSING"),
        "the summary names the errors: {t}"
    );
    assert_eq!(lines(&results.join("success.csv")), 51);
    assert_eq!(lines(&results.join("failed.csv")), 3);
    assert_eq!(
        org.count("SELECT COUNT() FROM Account WHERE Name LIKE 'CLI Account%'"),
        50
    );

    // Upsert through HTTPS with the generated CA and client-credentials login.
    let upsert = dir.join("upsert.csv");
    std::fs::write(&upsert, "Code__c;Name\nC-1;Renamed One\nC-new;Brand New\n").unwrap();
    let ca = org.srv.ca.to_str().unwrap().to_string();
    let out = conflux(
        &[
            "bulk",
            "load",
            "--object",
            "Account",
            "--operation",
            "upsert",
            "--external-id",
            "Code__c",
            "--delimiter",
            "semicolon",
            "--file",
            upsert.to_str().unwrap(),
            "--results-dir",
            dir.join("r2").to_str().unwrap(),
        ],
        &[
            "--url",
            &org.srv.https,
            "--ca-file",
            &ca,
            "--client-id",
            CLIENT_ID,
            "--client-secret",
            CLIENT_SECRET,
        ],
    );
    assert!(out.status.success(), "{}", text(&out));
    assert_eq!(
        org.count("SELECT COUNT() FROM Account WHERE Name IN ('Renamed One', 'Brand New')"),
        2
    );

    // Export with a session token, over several result pages.
    let exported = dir.join("export.csv");
    let out = conflux(
        &[
            "bulk",
            "export",
            "--query",
            "SELECT Name, Code__c FROM Account WHERE Code__c != null",
            "--out",
            exported.to_str().unwrap(),
            "--page-size",
            "20",
        ],
        &["--url", &org.srv.http, "--session-id", &org.token],
    );
    assert!(out.status.success(), "{}", text(&out));
    assert!(text(&out).contains("exported 51 rows"), "{}", text(&out));
    assert_eq!(
        lines(&exported),
        52,
        "one header and 51 rows, though the pages each had a header"
    );

    // Bad credentials fail with a clear message and exit status 1.
    let out = conflux(
        &[
            "bulk",
            "export",
            "--query",
            "SELECT Id FROM Account",
            "--out",
            "/dev/null",
        ],
        &["--url", &org.srv.http, "--session-id", "garbage"],
    );
    assert_eq!(out.status.code(), Some(1));
    assert!(text(&out).contains("INVALID_SESSION_ID"), "{}", text(&out));
}

#[test]
fn events_publish_and_tail_with_replay() {
    let org = Org::start("cli-events");
    let (s, b) = org.tooling(
        "CustomObject",
        "Cli_Ping__e",
        json!({"label": "Ping", "pluralLabel": "Pings"}),
    );
    assert_eq!(s, 201, "{b}");
    let (s, b) = org.tooling(
        "CustomField",
        "Cli_Ping__e.Note__c",
        json!({"type": "Text", "length": 40, "label": "Note"}),
    );
    assert_eq!(s, 201, "{b}");
    let login = password_login(&org);
    for note in ["one", "two", "three"] {
        let payload = format!("{{\"Note__c\": \"{note}\"}}");
        let out = conflux(
            &["events", "publish", "Cli_Ping__e", "--json", &payload],
            &login,
        );
        assert!(out.status.success(), "{}", text(&out));
        assert!(text(&out).contains("EventUuid"), "{}", text(&out));
    }
    // Bad input: a clear error, nothing published.
    let out = conflux(
        &["events", "publish", "Cli_Ping__e", "--json", "[1]"],
        &login,
    );
    assert!(!out.status.success());
    assert!(text(&out).contains("JSON object"), "{}", text(&out));
    // -2 replays the retained events; one JSON line each.
    let out = conflux(
        &[
            "events",
            "tail",
            "Cli_Ping__e",
            "--replay",
            "-2",
            "--count",
            "3",
        ],
        &login,
    );
    assert!(out.status.success(), "{}", text(&out));
    let events: Vec<serde_json::Value> = String::from_utf8_lossy(&out.stdout)
        .lines()
        .map(|l| serde_json::from_str(l).expect("a JSON line"))
        .collect();
    let notes: Vec<&str> = events
        .iter()
        .map(|e| e["payload"]["Note__c"].as_str().unwrap())
        .collect();
    assert_eq!(notes, ["one", "two", "three"]);
    // From a replay id: what came after it.
    let first = events[0]["event"]["replayId"].as_i64().unwrap().to_string();
    let out = conflux(
        &[
            "events",
            "tail",
            "/event/Cli_Ping__e",
            "--replay",
            &first,
            "--count",
            "2",
        ],
        &login,
    );
    assert!(out.status.success(), "{}", text(&out));
    let after: Vec<String> = String::from_utf8_lossy(&out.stdout)
        .lines()
        .map(|l| {
            let v: serde_json::Value = serde_json::from_str(l).unwrap();
            v["payload"]["Note__c"].as_str().unwrap().to_string()
        })
        .collect();
    assert_eq!(after, ["two", "three"]);
    // An unknown channel is refused with the server's reason.
    let out = conflux(&["events", "tail", "Nope__e"], &login);
    assert!(!out.status.success());
    assert!(text(&out).contains("does not exist"), "{}", text(&out));
}

#[test]
fn delivery_list_requeue_and_purge() {
    // A webhook to a port nobody listens on: its notifications fail and expire at once.
    let closed = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let url = format!("http://{}/nobody", closed.local_addr().unwrap());
    drop(closed);
    let data = data_dir("cli-delivery");
    let flows = data.join("metadata/flows");
    std::fs::create_dir_all(&flows).unwrap();
    std::fs::write(
        flows.join("f.yaml"),
        format!("name: Nobody\nobject: Account\non: [create]\nactions:\n  - type: webhook\n    name: Nobody_Hook\n    url: {url}\n"),
    )
    .unwrap();
    let org = Org::start_in(
        &data,
        &[],
        &[
            "--delivery-retry-base-ms",
            "50",
            "--delivery-expiry-secs",
            "1",
        ],
    );
    for i in 0..3 {
        org.create("Account", json!({"Name": format!("N{i}")}));
    }
    let conn = password_login(&org);
    let start = std::time::Instant::now();
    loop {
        let out = conflux(&["delivery", "list", "--state", "dead", "--json"], &conn);
        assert!(out.status.success(), "{}", text(&out));
        if String::from_utf8_lossy(&out.stdout).lines().count() == 3 {
            break;
        }
        assert!(
            start.elapsed().as_secs() < 60,
            "no dead letters: {}",
            text(&out)
        );
        std::thread::sleep(std::time::Duration::from_millis(200));
    }
    let out = conflux(&["delivery", "list", "--state", "dead"], &conn);
    let table = text(&out);
    assert!(
        table.contains("Nobody_Hook") && table.contains("cannot connect to"),
        "{table}"
    );
    assert!(table.starts_with("ID"), "{table}");

    let out = conflux(&["delivery", "requeue"], &conn);
    assert!(
        text(&out).contains("3 notifications requeued"),
        "{}",
        text(&out)
    );
    let out = conflux(&["delivery", "purge", "--action", "Nobody_Hook"], &conn);
    assert!(
        text(&out).contains("3 notifications purged"),
        "{}",
        text(&out)
    );
    let out = conflux(&["delivery", "list", "--json"], &conn);
    assert_eq!(String::from_utf8_lossy(&out.stdout).trim(), "");

    let out = conflux(&["delivery", "purge"], &conn);
    assert!(!out.status.success());
    assert!(
        text(&out).contains("say which notifications"),
        "{}",
        text(&out)
    );
    let out = conflux(&["delivery", "retry", "not-an-id"], &conn);
    assert!(!out.status.success());
    assert!(text(&out).contains("MALFORMED_ID"), "{}", text(&out));
}
