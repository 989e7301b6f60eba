//! Every sync connector against the one connector contract (`sync::contract`), each on the real
//! system it talks to: PostgreSQL, MariaDB, this org (in process), a second Conflux reached
//! through a named credential with the OAuth JWT bearer flow, JSON-lines files, and an HTTP
//! JSON API (a small axum server that pages its answers out of order and wants a bearer token).

use std::collections::BTreeMap;
use std::sync::Arc;

use serde_json::{json, Value};
use sync::connector::{FileSource, FileTarget, OrgTarget, RemoteSource, RemoteTarget};
use sync::contract::{check, Fixture};
use sync::job::Operation;
use sync::Record;

use crate::harness::{data_dir, Org, CLIENT_ID, USERNAME};

const PG_URL: &str = "host=127.0.0.1 port=5432 user=postgres dbname=test";
const MY_URL: &str = "mysql://root@127.0.0.1:3306/test";

fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("a runtime")
}

fn record(pairs: &[(&str, Value)]) -> Record {
    pairs
        .iter()
        .map(|(k, v)| (k.to_string(), v.clone()))
        .collect()
}

fn text(v: &Value) -> String {
    v.as_str().map_or_else(|| v.to_string(), str::to_string)
}

fn passes(rt: &tokio::runtime::Runtime, f: Fixture) {
    if let Err(m) = rt.block_on(check(&f)) {
        panic!("{m}");
    }
}

#[test]
fn postgres_keeps_the_connector_contract() {
    let table = format!("contract_pg_{}", std::process::id());
    let mut db = postgres::Client::connect(PG_URL, postgres::NoTls).unwrap_or_else(|e| {
        panic!("this test needs PostgreSQL on 127.0.0.1:5432 (start it: service postgresql start): {e}")
    });
    db.batch_execute(&format!(
        "DROP TABLE IF EXISTS {table};
         CREATE TABLE {table} (id text PRIMARY KEY, name text NOT NULL, at timestamptz NOT NULL);"
    ))
    .unwrap();
    let rt = runtime();
    let (source, target) = rt.block_on(async {
        (
            sync::postgres::Source::open(PG_URL, &table, "at", "id", 0)
                .await
                .unwrap(),
            sync::targets::Postgres::open(PG_URL, &table, "id")
                .await
                .unwrap(),
        )
    });
    passes(
        &rt,
        Fixture {
            name: "postgres".into(),
            source: Box::new(source),
            target: Box::new(target),
            record: Box::new(|k, name, tick| {
                record(&[
                    ("id", json!(k)),
                    ("name", json!(name)),
                    ("at", json!(format!("2026-11-01T10:{tick:02}:00Z"))),
                ])
            }),
            read: Box::new(|r| (text(&r.data["id"]), text(&r.data["name"]))),
            upserts: true,
            refused: Some(record(&[
                ("id", json!("bad")),
                ("name", Value::Null),
                ("at", json!("2026-11-01T11:00:00Z")),
            ])),
        },
    );
    db.batch_execute(&format!("DROP TABLE {table}")).unwrap();
}

#[test]
fn mariadb_keeps_the_connector_contract() {
    let table = format!("contract_my_{}", std::process::id());
    let rt = runtime();
    let (source, target) = rt.block_on(async {
        use mysql_async::prelude::Queryable;
        let mut conn = mysql_async::Conn::new(mysql_async::Opts::from_url(MY_URL).unwrap())
            .await
            .unwrap_or_else(|e| {
                panic!("this test needs MariaDB on 127.0.0.1:3306 (start it: service mariadb start): {e}")
            });
        conn.query_drop(format!("DROP TABLE IF EXISTS {table}"))
            .await
            .unwrap();
        conn.query_drop(format!(
            "CREATE TABLE {table} (id VARCHAR(20) PRIMARY KEY, name VARCHAR(40) NOT NULL,
                                   at DATETIME(6) NOT NULL)"
        ))
        .await
        .unwrap();
        (
            sync::mysql::Source::open(MY_URL, &table, "at", "id", 0)
                .await
                .unwrap(),
            sync::targets::Mysql::open(MY_URL, &table, "id")
                .await
                .unwrap(),
        )
    });
    passes(
        &rt,
        Fixture {
            name: "mariadb".into(),
            source: Box::new(source),
            target: Box::new(target),
            record: Box::new(|k, name, tick| {
                record(&[
                    ("id", json!(k)),
                    ("name", json!(name)),
                    ("at", json!(format!("2026-11-01 10:{tick:02}:00"))),
                ])
            }),
            read: Box::new(|r| (text(&r.data["id"]), text(&r.data["name"]))),
            upserts: true,
            refused: Some(record(&[
                ("id", json!("bad")),
                ("name", Value::Null),
                ("at", json!("2026-11-01 11:00:00")),
            ])),
        },
    );
}

/// What Accounts and Contacts need for the contract: an external id to upsert by.
fn customer_field(meta: &std::path::Path) {
    let objects = meta.join("objects");
    std::fs::create_dir_all(&objects).unwrap();
    for object in ["Account", "Contact"] {
        std::fs::write(
            objects.join(format!("{object}.yaml")),
            "fields:\n  - fullName: Customer_Id__c\n    type: Text\n    length: 40\n    externalId: true\n    unique: true\n",
        )
        .unwrap();
    }
}

#[test]
fn this_org_keeps_the_connector_contract() {
    let dir = tempfile::tempdir().unwrap();
    let rt = runtime();
    let (org, p) = rt.block_on(async {
        let store = store_sqlite::SqliteStore::open(
            &dir.path().join("org.db"),
            store_sqlite::Options {
                readers: 2,
                durable: false,
            },
        )
        .unwrap();
        let org = service::Org::new(store, service::OrgConfig::default());
        service::bootstrap::ensure(
            &org,
            service::bootstrap::BootstrapConfig {
                admin_username: Some("admin@contract.test".into()),
                admin_password: Some("Contract-Passw0rd".into()),
                ..Default::default()
            },
        )
        .await
        .unwrap();
        let meta = dir.path().join("metadata");
        customer_field(&meta);
        org.apply_metadata_dir(&meta).await.unwrap();
        let p = org.principal_for(1).unwrap();
        (org, p)
    });
    passes(
        &rt,
        Fixture {
            name: "org".into(),
            source: Box::new(
                sync::org_source::Source::open(org.clone(), p.clone(), "Account", 0).unwrap(),
            ),
            target: Box::new(OrgTarget {
                org,
                p,
                object: "Account".into(),
                operation: Operation::Upsert,
                external_id: Some("Customer_Id__c".into()),
            }),
            record: Box::new(|k, name, _| {
                record(&[("Customer_Id__c", json!(k)), ("Name", json!(name))])
            }),
            read: Box::new(|r| (text(&r.data["Customer_Id__c"]), text(&r.data["Name"]))),
            upserts: true,
            refused: Some(record(&[
                ("Customer_Id__c", json!("bad")),
                ("Name", Value::Null),
            ])),
        },
    );
}

#[test]
fn a_remote_org_through_jwt_bearer_keeps_the_connector_contract() {
    let keys = test_support::scratch_dir("contract-jwt").unwrap();
    let (key_path, cert_path) = test_support::jwt_key_pair(&keys).unwrap();
    let data = data_dir("contract-remote");
    customer_field(&data.join("metadata"));
    let cert = cert_path.display().to_string();
    let remote = Org::start_in(&data, &[("CONFLUX_CLIENT_CERT_FILE", cert.as_str())], &[]);
    let doc = json!({"url": remote.srv.http, "auth": {
        "type": "oauth_jwt_bearer",
        "tokenUrl": format!("{}/services/oauth2/token", remote.srv.http),
        "clientId": CLIENT_ID, "username": USERNAME,
        "privateKey": std::fs::read_to_string(&key_path).unwrap()}});
    // A key that is not the connected app's is refused with the token endpoint's answer.
    let stranger = {
        let dir = test_support::scratch_dir("contract-jwt-other").unwrap();
        let (k, _) = test_support::jwt_key_pair(&dir).unwrap();
        let mut d = doc.clone();
        d["auth"]["privateKey"] = json!(std::fs::read_to_string(k).unwrap());
        Arc::new(automation::credentials::build("Stranger", &d).unwrap())
    };
    let cred = Arc::new(automation::credentials::build("Remote", &doc).unwrap());
    let rt = runtime();
    let refused = rt
        .block_on(sync::remote::Remote::new(stranger, "60.0", "Account").values("Customer_Id__c"));
    assert!(
        refused.as_ref().is_err_and(|m| m.contains("token")),
        "{refused:?}"
    );
    // Through REST (sObject Collections and the query resource) on Accounts, through Bulk API
    // 2.0 (ingest and query jobs) on Contacts.
    passes(&rt, remote_fixture(&cred, "Account", "Name", false));
    passes(&rt, remote_fixture(&cred, "Contact", "LastName", true));
}

fn remote_fixture(
    cred: &Arc<automation::credentials::Credential>,
    object: &str,
    name_field: &'static str,
    bulk: bool,
) -> Fixture {
    let remote = || sync::remote::Remote::new(cred.clone(), "60.0", object);
    Fixture {
        name: format!("remote org ({object}, bulk: {bulk})"),
        source: Box::new(RemoteSource {
            remote: remote(),
            fields: vec!["Customer_Id__c".into(), name_field.into()],
            overlap: 0,
            bulk: bulk.then(sync::http::Held::default),
        }),
        target: Box::new(RemoteTarget {
            remote: remote(),
            operation: Operation::Upsert,
            external_id: Some("Customer_Id__c".into()),
            bulk,
            parallelism: 2,
        }),
        record: Box::new(move |k, name, _| {
            record(&[("Customer_Id__c", json!(k)), (name_field, json!(name))])
        }),
        read: Box::new(move |r| (text(&r.data["Customer_Id__c"]), text(&r.data[name_field]))),
        upserts: true,
        refused: Some(record(&[
            ("Customer_Id__c", json!("bad")),
            (name_field, Value::Null),
        ])),
    }
}

#[test]
fn json_lines_and_csv_files_keep_the_connector_contract() {
    let dir = tempfile::tempdir().unwrap();
    let rt = runtime();
    for (file, format) in [
        ("log.jsonl", sync::files::Format::JsonLines),
        ("log.csv", sync::files::Format::Csv),
    ] {
        let path = dir.path().join(file).display().to_string();
        std::fs::write(&path, "").unwrap();
        passes(
            &rt,
            Fixture {
                name: format!("files ({file})"),
                source: Box::new(FileSource {
                    path: path.clone(),
                    format,
                }),
                target: Box::new(FileTarget {
                    path,
                    format,
                    columns: vec!["id".into(), "name".into()],
                }),
                record: Box::new(|k, name, _| record(&[("id", json!(k)), ("name", json!(name))])),
                read: Box::new(|r| (text(&r.data["id"]), text(&r.data["name"]))),
                upserts: false,
                refused: None,
            },
        );
    }
}

/// The HTTP JSON API: items by id, each stamped with a change counter; lists are answered
/// newest key first (not in cursor order), four to a page, with a `links.next` URL.
#[derive(Default)]
struct Api {
    items: BTreeMap<String, (Value, u64)>,
    counter: u64,
    /// Writes being answered now, and the most there ever were at once.
    writing: usize,
    most_writing: usize,
}

type Shared = Arc<parking_lot::Mutex<Api>>;

fn authorized(headers: &axum::http::HeaderMap) -> bool {
    headers.get("authorization").and_then(|v| v.to_str().ok()) == Some("Bearer t0ken")
}

async fn list(
    axum::extract::State(api): axum::extract::State<Shared>,
    headers: axum::http::HeaderMap,
    axum::extract::Query(q): axum::extract::Query<BTreeMap<String, String>>,
) -> (axum::http::StatusCode, axum::Json<Value>) {
    if !authorized(&headers) {
        let status = axum::http::StatusCode::UNAUTHORIZED;
        return (status, axum::Json(json!({"error": "no"})));
    }
    list_page(&api, &q, "/items")
}

/// The same list without authentication, at `/public/items`.
async fn public_list(
    axum::extract::State(api): axum::extract::State<Shared>,
    axum::extract::Query(q): axum::extract::Query<BTreeMap<String, String>>,
) -> (axum::http::StatusCode, axum::Json<Value>) {
    list_page(&api, &q, "/public/items")
}

fn list_page(
    api: &Shared,
    q: &BTreeMap<String, String>,
    path: &str,
) -> (axum::http::StatusCode, axum::Json<Value>) {
    use axum::http::StatusCode;
    let since: u64 = q.get("since").and_then(|s| s.parse().ok()).unwrap_or(0);
    let page: usize = q.get("page").and_then(|s| s.parse().ok()).unwrap_or(0);
    let api = api.lock();
    let mut items: Vec<Value> = api
        .items
        .values()
        .filter(|(_, n)| *n >= since)
        .map(|(v, n)| {
            let mut v = v.clone();
            v["updated"] = json!(n);
            v
        })
        .collect();
    items.reverse();
    let chunk: Vec<Value> = items.iter().skip(page * 4).take(4).cloned().collect();
    let next =
        (items.len() > (page + 1) * 4).then(|| format!("{path}?since={since}&page={}", page + 1));
    (
        StatusCode::OK,
        axum::Json(json!({"data": chunk, "links": {"next": next}})),
    )
}

async fn put(
    axum::extract::State(api): axum::extract::State<Shared>,
    headers: axum::http::HeaderMap,
    axum::extract::Path(id): axum::extract::Path<String>,
    axum::Json(body): axum::Json<Value>,
) -> (axum::http::StatusCode, axum::Json<Value>) {
    use axum::http::StatusCode;
    if !authorized(&headers) {
        return (StatusCode::UNAUTHORIZED, axum::Json(json!({"error": "no"})));
    }
    if !body["name"].is_string() {
        return (
            StatusCode::UNPROCESSABLE_ENTITY,
            axum::Json(json!({"error": "name is required"})),
        );
    }
    {
        let mut a = api.lock();
        a.writing += 1;
        a.most_writing = a.most_writing.max(a.writing);
    }
    // Each write takes a while, so writes sent together are answered together.
    tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    let mut api = api.lock();
    api.writing -= 1;
    api.counter += 1;
    let n = api.counter;
    api.items
        .insert(id.clone(), (json!({"id": id, "name": body["name"]}), n));
    (StatusCode::OK, axum::Json(json!({"id": id})))
}

/// Starts the API on loopback; its base URL and its items.
fn api_server(rt: &tokio::runtime::Runtime) -> (String, Shared) {
    let items = Shared::default();
    let state = items.clone();
    let base = rt.block_on(async {
        let app = axum::Router::new()
            .route("/items", axum::routing::get(list))
            .route("/public/items", axum::routing::get(public_list))
            .route("/items/{id}", axum::routing::put(put))
            .with_state(state);
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        tokio::spawn(async move { axum::serve(listener, app).await });
        format!("http://{addr}")
    });
    (base, items)
}

#[test]
fn an_http_json_api_keeps_the_connector_contract() {
    let rt = runtime();
    let (base, _) = api_server(&rt);
    let cred = Arc::new(
        automation::credentials::build(
            "Api",
            &json!({"url": base, "auth": {"type": "bearer", "token": "t0ken"}}),
        )
        .unwrap(),
    );
    let source = sync::http::HttpSource::new(
        cred.clone(),
        sync::http::HttpSourceDef {
            url: "/items",
            records: Some(".data"),
            next: Some(".links.next"),
            since: Some("since"),
            cursor: ".updated",
            key: ".id",
            overlap_secs: 0,
        },
    )
    .unwrap();
    let target = sync::http::HttpTarget::new(cred, "/items/{id}", "PUT", 4).unwrap();
    passes(
        &rt,
        Fixture {
            name: "http".into(),
            source: Box::new(source),
            target: Box::new(target),
            record: Box::new(|k, name, _| record(&[("id", json!(k)), ("name", json!(name))])),
            read: Box::new(|r| (text(&r.data["id"]), text(&r.data["name"]))),
            upserts: true,
            refused: Some(record(&[("id", json!("bad")), ("name", Value::Null)])),
        },
    );
}

#[test]
fn an_http_target_sends_up_to_parallelism_requests_at_once() {
    let rt = runtime();
    let (base, items) = api_server(&rt);
    let cred = Arc::new(
        automation::credentials::build(
            "Api",
            &json!({"url": base, "auth": {"type": "bearer", "token": "t0ken"}}),
        )
        .unwrap(),
    );
    let rows: Vec<sync::Record> = (0..12)
        .map(|i| record(&[("id", json!(format!("P{i:02}"))), ("name", json!("x"))]))
        .collect();
    let refs: Vec<&sync::Record> = rows.iter().collect();
    for (parallelism, least) in [(1, 1), (4, 2)] {
        let target =
            sync::http::HttpTarget::new(cred.clone(), "/items/{id}", "PUT", parallelism).unwrap();
        items.lock().most_writing = 0;
        let outcomes = rt
            .block_on(sync::connector::Target::write(&target, &refs))
            .unwrap();
        assert_eq!(outcomes.len(), 12);
        assert!(outcomes.iter().all(|o| o.is_ok()), "{outcomes:?}");
        let most = items.lock().most_writing;
        assert!(
            (least..=parallelism).contains(&most),
            "{most} requests in flight at once with parallelism {parallelism}"
        );
    }
}

#[test]
fn a_sync_job_reads_an_http_json_api_into_the_org() {
    use reqwest::Method;
    let rt = runtime();
    let (base, items) = api_server(&rt);
    let add = |ids: std::ops::Range<u32>| {
        let mut api = items.lock();
        for i in ids {
            api.counter += 1;
            let n = api.counter;
            let id = format!("H{i:03}");
            api.items.insert(
                id.clone(),
                (json!({"id": id, "name": format!("Item {i}")}), n),
            );
        }
    };
    add(0..30);
    let data = data_dir("sync-http");
    customer_field(&data.join("metadata"));
    let org = Org::start_in(&data, &[], &[]);
    let (s, b) = org.call(
        Method::PUT,
        &org.data("/conflux/named-credentials/Api"),
        Some(json!({"url": base, "auth": {"type": "bearer", "token": "t0ken"}})),
    );
    assert_eq!(s, 201, "{b}");
    let (s, b) = org.call(
        Method::PUT,
        &org.data("/conflux/sync-jobs/Items"),
        Some(json!({
            "source": {"type": "http", "url": "/items", "credential": "Api",
                       "records": ".data", "next": ".links.next", "since_param": "since",
                       "cursor": ".updated", "key": ".id"},
            "target": {"type": "org", "object": "Account", "operation": "upsert",
                       "external_id": "Customer_Id__c"},
            "mapping": {"Customer_Id__c": ".id", "Name": ".name"},
            "batch_size": 7,
            "parallelism": 4
        })),
    );
    assert_eq!(s, 201, "{b}");
    let run = |org: &Org| -> Value {
        let (s, b) = org.call(
            Method::POST,
            &org.data("/conflux/sync-jobs/Items/run"),
            None,
        );
        assert_eq!(s, 202, "{b}");
        let t = std::time::Instant::now();
        loop {
            let (_, b) = org.call(
                Method::GET,
                &org.data("/conflux/sync-jobs/Items/runs?limit=1"),
                None,
            );
            let r = b["runs"][0].clone();
            if r["status"] != "running" {
                return r;
            }
            assert!(t.elapsed() < std::time::Duration::from_secs(60), "{r}");
            std::thread::sleep(std::time::Duration::from_millis(50));
        }
    };
    let r = run(&org);
    assert_eq!(
        (r["status"].as_str(), r["written"].as_u64()),
        (Some("succeeded"), Some(30)),
        "{r}"
    );
    add(30..35);
    let r = run(&org);
    assert_eq!(
        (
            r["status"].as_str(),
            r["read"].as_u64(),
            r["written"].as_u64()
        ),
        (Some("succeeded"), Some(5), Some(5)),
        "only the new items: {r}"
    );
    let page = org.query("SELECT Customer_Id__c, Name FROM Account WHERE Customer_Id__c LIKE 'H%'");
    assert_eq!(page["totalSize"], 35, "{page}");
    // A wrong token is an error of the run that says what the API answered.
    let (s, _) = org.call(
        Method::PUT,
        &org.data("/conflux/named-credentials/Api"),
        Some(json!({"url": base, "auth": {"type": "bearer", "token": "wrong"}})),
    );
    assert_eq!(s, 200);
    let r = run(&org);
    assert_eq!(r["status"], "failed", "{r}");
    assert!(r["message"].as_str().unwrap().contains("HTTP 401"), "{r}");
    // Without a credential the URL must be absolute, and requests carry no authentication.
    let open = |url: &str| {
        json!({
            "source": {"type": "http", "url": url, "records": ".data", "next": ".links.next",
                       "cursor": ".updated", "key": ".id"},
            "target": {"type": "org", "object": "Account", "operation": "upsert",
                       "external_id": "Customer_Id__c"},
            "mapping": {"Customer_Id__c": ".id", "Name": ".name"}
        })
    };
    let path = org.data("/conflux/sync-jobs/Open");
    let (s, b) = org.call(Method::PUT, &path, Some(open("/public/items")));
    assert_eq!(s, 400, "{b}");
    assert!(b.to_string().contains("absolute URL"), "{b}");
    let (s, b) = org.call(
        Method::PUT,
        &path,
        Some(open(&format!("{base}/public/items"))),
    );
    assert_eq!(s, 201, "{b}");
    let (s, b) = org.call(Method::POST, &format!("{path}/run"), None);
    assert_eq!(s, 202, "{b}");
    let t = std::time::Instant::now();
    let r = loop {
        let (_, b) = org.call(Method::GET, &format!("{path}/runs?limit=1"), None);
        let r = b["runs"][0].clone();
        if r["status"] != "running" {
            break r;
        }
        assert!(t.elapsed() < std::time::Duration::from_secs(60), "{r}");
        std::thread::sleep(std::time::Duration::from_millis(50));
    };
    assert_eq!(
        (r["status"].as_str(), r["read"].as_u64()),
        (Some("succeeded"), Some(35)),
        "{r}"
    );
    // The authenticated list refuses a request without the token.
    let plain = reqwest::blocking::get(format!("{base}/items")).unwrap();
    assert_eq!(plain.status(), 401);
}
