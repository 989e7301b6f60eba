//! `conflux serve` itself: generated first-start credentials, operator-supplied TLS certificates,
//! the metadata folder, and clean shutdown on SIGINT.

use std::io::{BufRead, BufReader};
use std::path::Path;
use std::process::{Child, Command, Stdio};

use reqwest::Method;
use serde_json::{json, Value};

use crate::harness::{client, data_dir, Org};

/// A server started with no CONFLUX_* variables, and the lines it printed up to `ready`.
struct Bare {
    child: Child,
    lines: Vec<String>,
}

impl Bare {
    fn start(data: &Path, args: &[&str]) -> Bare {
        let mut cmd = Command::new(env!("CARGO_BIN_EXE_conflux"));
        cmd.args(["serve", "--data"])
            .arg(data)
            .args(["--http", "127.0.0.1:0", "--https", "127.0.0.1:0"])
            .args(["--grpc", "127.0.0.1:0"])
            .args(args);
        for (k, _) in std::env::vars() {
            if k.starts_with("CONFLUX_") {
                cmd.env_remove(k);
            }
        }
        let mut child = cmd
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .expect("spawn conflux");
        let mut lines = Vec::new();
        let mut out = BufReader::new(child.stdout.take().unwrap());
        loop {
            let mut l = String::new();
            assert!(
                out.read_line(&mut l).unwrap() > 0,
                "the server exited early: {lines:?}"
            );
            let l = l.trim_end().to_string();
            let ready = l == "conflux: ready";
            lines.push(l);
            if ready {
                break;
            }
        }
        Bare { child, lines }
    }

    fn value(&self, prefix: &str) -> Option<String> {
        self.lines.iter().find_map(|l| {
            l.strip_prefix(prefix)
                .map(|v| v.split("  (").next().unwrap_or(v).trim().to_string())
        })
    }

    /// Sends `signal` and asserts a clean exit.
    fn stop(mut self, signal: &str) {
        let pid = self.child.id().to_string();
        assert!(Command::new("kill")
            .args([signal, &pid])
            .status()
            .unwrap()
            .success());
        let status = self.child.wait().unwrap();
        assert!(status.success(), "exit after {signal}: {status}");
    }
}

#[test]
fn generated_credentials_are_printed_once_and_work() {
    let data = data_dir("server-bootstrap");
    let srv = Bare::start(&data, &[]);
    let password = srv
        .value("conflux: admin password: ")
        .expect("a generated password is printed");
    let client_id = srv
        .value("conflux: connected app client id: ")
        .expect("client id");
    let secret = srv
        .value("conflux: connected app client secret: ")
        .expect("a generated secret is printed");
    let http = srv.value("http: ").expect("http address");
    assert!(
        srv.value("https: ").is_some(),
        "each bound address is printed: {:?}",
        srv.lines
    );
    let resp = client()
        .post(format!("{http}/services/oauth2/token"))
        .form(&[
            ("grant_type", "password"),
            ("client_id", &client_id),
            ("client_secret", &secret),
            ("username", "admin@conflux.local"),
            ("password", &password),
        ])
        .send()
        .unwrap();
    let body: Value = resp.json().unwrap();
    assert!(
        body["access_token"]
            .as_str()
            .is_some_and(|t| t.contains('!')),
        "{body}"
    );
    srv.stop("-INT");

    let again = Bare::start(&data, &[]);
    assert!(
        again.value("conflux: admin password: ").is_none(),
        "secrets are shown only on the first start: {:?}",
        again.lines
    );
    assert!(again
        .value("conflux: connected app client secret: ")
        .is_none());
    again.stop("-TERM");
}

#[test]
fn operator_supplied_certificates_are_used() {
    // A first server generates a CA and a certificate; a second one is given them explicitly.
    let first = data_dir("server-tls-a");
    Bare::start(&first, &[]).stop("-TERM");
    let tls = first.join("tls");
    let second = data_dir("server-tls-b");
    let srv = Bare::start(
        &second,
        &[
            "--tls-cert",
            tls.join("server.pem").to_str().unwrap(),
            "--tls-key",
            tls.join("server-key.pem").to_str().unwrap(),
        ],
    );
    assert!(
        srv.value("conflux: CA certificate ").is_none(),
        "no CA is generated when certificates are supplied"
    );
    assert!(!second.join("tls").exists());
    let https = srv.value("https: ").unwrap();
    let ca = reqwest::Certificate::from_pem(&std::fs::read(tls.join("ca.pem")).unwrap()).unwrap();
    let c = reqwest::blocking::Client::builder()
        .no_proxy()
        .add_root_certificate(ca)
        .tls_built_in_root_certs(false)
        .build()
        .unwrap();
    let resp = c
        .get(format!("{https}/services/data"))
        .send()
        .expect("TLS with the operator's certificate");
    assert_eq!(resp.status().as_u16(), 200);
    // Without trusting that CA, the handshake fails.
    let untrusting = reqwest::blocking::Client::builder()
        .no_proxy()
        .tls_built_in_root_certs(true)
        .build()
        .unwrap();
    assert!(untrusting
        .get(format!("{https}/services/data"))
        .send()
        .is_err());
    srv.stop("-TERM");
}

#[test]
fn metadata_folder_declares_objects_fields_and_apps() {
    let data = data_dir("server-metadata");
    let md = data.join("metadata");
    std::fs::create_dir_all(md.join("objects")).unwrap();
    std::fs::create_dir_all(md.join("connectedApps")).unwrap();
    std::fs::write(
        md.join("objects/Invoice__c.yaml"),
        r#"label: Invoice
pluralLabel: Invoices
nameField: { type: AutoNumber, label: Invoice Number, displayFormat: "INV-{0000}" }
fields:
  - fullName: External_Id__c
    type: Text
    length: 40
    externalId: true
    unique: true
  - fullName: Amount__c
    type: Currency
    precision: 16
    scale: 2
  - fullName: Account__c
    type: Lookup
    referenceTo: Account
    relationshipName: Invoices
  - fullName: Status__c
    type: Picklist
    valueSet:
      restricted: true
      valueSetDefinition:
        value: [{ fullName: Draft, default: true }, { fullName: Sent }, { fullName: Paid }]
"#,
    )
    .unwrap();
    std::fs::write(
        md.join("objects/Account.yaml"),
        "fields:\n  - fullName: Region__c\n    type: Text\n    length: 20\n",
    )
    .unwrap();
    std::fs::write(
        md.join("connectedApps/billing.yaml"),
        "clientId: billing-app\nclientSecret: billing-s3cret\nrunAs: admin@conformance.conflux\n",
    )
    .unwrap();
    let org = Org::start_in(&data, &[], &[]);
    let acc = org.create("Account", json!({"Name": "Declared", "Region__c": "EMEA"}));
    let (s, b) = org.call(
        Method::PATCH,
        &org.data("/sobjects/Invoice__c/External_Id__c/INV-EXT-1"),
        Some(json!({"Amount__c": 12.5, "Account__c": acc})),
    );
    assert_eq!(s, 201, "{b}");
    let (s, b) = org.call(
        Method::POST,
        &org.data("/sobjects/Invoice__c"),
        Some(json!({"Status__c": "Lost"})),
    );
    assert_eq!(
        (s, b[0]["errorCode"].as_str()),
        (400, Some("INVALID_OR_NULL_FOR_RESTRICTED_PICKLIST")),
        "{b}"
    );
    let q = org.query(&format!("SELECT Name, Region__c, (SELECT Name, Amount__c, Status__c FROM Invoices__r) FROM Account WHERE Id = '{acc}'"));
    let inv = &q["records"][0]["Invoices__r"]["records"][0];
    assert_eq!(inv["Name"], json!("INV-0001"), "{q}");
    assert_eq!(
        inv["Status__c"],
        json!("Draft"),
        "the picklist default applies: {q}"
    );
    assert_eq!(q["records"][0]["Region__c"], json!("EMEA"));
    // The declared connected app works for client credentials.
    let tok: Value = org
        .http
        .post(org.url("/services/oauth2/token"))
        .basic_auth("billing-app", Some("billing-s3cret"))
        .form(&[("grant_type", "client_credentials")])
        .send()
        .unwrap()
        .json()
        .unwrap();
    assert!(tok["access_token"].is_string(), "{tok}");
    // Applying the folder again on restart changes nothing and keeps the data.
    let Org { srv, .. } = org;
    srv.stop().unwrap();
    let org = Org::start_in(&data, &[], &[]);
    assert_eq!(org.count("SELECT COUNT() FROM Invoice__c"), 1);
}

/// A request answered before its body was read (a path nobody serves answers at once) gets
/// `Connection: close`: the server will not read the rest, so clients must not reuse the socket.
#[test]
fn early_answers_close_the_connection_explicitly() {
    let org = Org::start("server-early-close");
    let body = "x".repeat(100_000);
    let req = format!(
        "POST /nowhere/at/all HTTP/1.1\r\nHost: 127.0.0.1\r\nAuthorization: Bearer {}\r\nContent-Type: application/json\r\nContent-Length: {}\r\n\r\n{body}",
        org.token,
        body.len()
    );
    let (status, headers, _) = crate::harness::raw_http(&org.srv.http, req.as_bytes());
    assert_eq!(status, 404);
    let close = headers
        .iter()
        .any(|(k, v)| k.eq_ignore_ascii_case("connection") && v.eq_ignore_ascii_case("close"));
    assert!(
        close,
        "an unread body must come with Connection: close: {headers:?}"
    );
    // A request whose body was read keeps the connection reusable.
    let resp = org
        .http
        .post(org.data("/sobjects/Account"))
        .bearer_auth(&org.token)
        .json(&json!({"Name": "keep"}))
        .send()
        .unwrap();
    assert_eq!(resp.status().as_u16(), 201);
    assert!(resp
        .headers()
        .get("connection")
        .is_none_or(|v| v != "close"));
}
