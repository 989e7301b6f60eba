//! Change Data Capture and PushTopics over the wire: entity selection through the Tooling API,
//! change events for committed creates, updates, deletes and undeletes (none for rolled-back
//! ones), merged identical changes, the headers Salesforce sends, gap events for changes too
//! large for one event, who may subscribe to which channel; PushTopics defined by SOQL, notified
//! for matching records only, as their `NotifyForFields` says, with checked names.

use reqwest::Method;
use serde_json::{json, Value};

use crate::events::{assert_bayeux_error, replay_id, Bayeux};
use crate::harness::{login, Org};

const POST: Method = Method::POST;

/// Selects `entity` for change events; returns the member id.
fn select(org: &Org, entity: &str) -> String {
    let (s, b) = org.tooling(
        "PlatformEventChannelMember",
        &format!("ChangeEvents_{entity}"),
        json!({"eventChannel": "ChangeEvents", "selectedEntity": entity}),
    );
    assert_eq!(s, 201, "{b}");
    let id = b["id"].as_str().unwrap().to_string();
    assert!(id.starts_with("0v8"), "{b}");
    id
}

/// A client subscribed to `channel` from now on.
fn subscriber(org: &Org, channel: &str) -> Bayeux {
    let mut c = Bayeux::new(org);
    c.handshake();
    let r = c.subscribe(channel, Some(-1));
    assert_eq!(r["successful"], true, "{r}");
    let (data, _) = c.connect(true);
    assert!(data.is_empty(), "{data:?}");
    c
}

/// Nothing more is waiting for `c`.
fn assert_quiet(c: &mut Bayeux) {
    let (data, reply) = c.connect(true);
    assert_eq!(reply["successful"], true, "{reply}");
    assert!(data.is_empty(), "unexpected messages: {data:?}");
}

fn header(m: &Value) -> &Value {
    &m["data"]["payload"]["ChangeEventHeader"]
}

fn names(v: &Value) -> Vec<String> {
    let mut n: Vec<String> = v
        .as_array()
        .unwrap_or_else(|| panic!("an array: {v}"))
        .iter()
        .map(|x| x.as_str().unwrap().to_string())
        .collect();
    n.sort();
    n
}

/// A Composite request that must answer 200; its body.
fn composite(org: &Org, all_or_none: bool, subs: Vec<Value>) -> Value {
    let (s, b) = crate::composite::composite(org, all_or_none, subs);
    assert_eq!(s, 200, "{b}");
    b
}

#[test]
fn committed_changes_publish_change_events_and_rolled_back_ones_never_do() {
    let org = Org::start("cdc");
    let member = select(&org, "AccountChangeEvent");
    // Selecting twice answers the same member; unknown entities and channels are refused.
    assert_eq!(select(&org, "AccountChangeEvent"), member);
    let (s, b) = org.tooling(
        "PlatformEventChannelMember",
        "ChangeEvents_NopeChangeEvent",
        json!({"eventChannel": "ChangeEvents", "selectedEntity": "NopeChangeEvent"}),
    );
    assert_eq!(s, 400, "{b}");
    let (s, b) = org.call(
        Method::GET,
        &org.data(&format!(
            "/tooling/sobjects/PlatformEventChannelMember/{member}"
        )),
        None,
    );
    assert_eq!(s, 200, "{b}");
    assert_eq!(b["SelectedEntity"], "AccountChangeEvent");

    let mut account = subscriber(&org, "/data/AccountChangeEvent");
    let mut every = subscriber(&org, "/data/ChangeEvents");

    // A create inside a rolled-back allOrNone Composite request publishes nothing.
    let b = composite(
        &org,
        true,
        vec![
            json!({"method": "POST", "url": "/services/data/v59.0/sobjects/Account",
                   "referenceId": "ok", "body": {"Name": "Rolled back"}}),
            json!({"method": "POST", "url": "/services/data/v59.0/sobjects/Account",
                   "referenceId": "bad", "body": {"NoSuchField__c": 1}}),
        ],
    );
    assert_eq!(b["compositeResponse"][1]["httpStatusCode"], 400, "{b}");
    assert_quiet(&mut account);
    assert_quiet(&mut every);

    // A committed one always does: one transaction, two creates, numbered in order.
    let b = composite(
        &org,
        true,
        vec![
            json!({"method": "POST", "url": "/services/data/v59.0/sobjects/Account",
                   "referenceId": "a", "body": {"Name": "Acme", "Phone": "555-0100",
                   "NumberOfEmployees": 12}}),
            json!({"method": "POST", "url": "/services/data/v59.0/sobjects/Account",
                   "referenceId": "b", "body": {"Name": "Globex"}}),
        ],
    );
    let a = b["compositeResponse"][0]["body"]["id"]
        .as_str()
        .unwrap()
        .to_string();
    let g = b["compositeResponse"][1]["body"]["id"]
        .as_str()
        .unwrap()
        .to_string();
    let got = account.receive(2);
    let all: Vec<Value> = every.receive(2).iter().map(|m| m["data"].clone()).collect();
    let data: Vec<Value> = got.iter().map(|m| m["data"].clone()).collect();
    assert_eq!(all, data, "both channels carry the same events");
    for (k, (m, id, name)) in [(&got[0], &a, "Acme"), (&got[1], &g, "Globex")]
        .into_iter()
        .enumerate()
    {
        assert_eq!(m["channel"], "/data/AccountChangeEvent");
        let h = header(m);
        assert_eq!(h["entityName"], "Account", "{m}");
        assert_eq!(h["changeType"], "CREATE");
        assert_eq!(h["recordIds"], json!([id]));
        assert_eq!(h["changedFields"], json!([]));
        assert_eq!(h["sequenceNumber"], k + 1);
        assert_eq!(h["changeOrigin"], "com/salesforce/api/rest/59.0", "{h}");
        assert!(h["commitUser"].as_str().unwrap().starts_with("005"));
        assert!(h["commitTimestamp"].as_i64().unwrap() > 1_700_000_000_000);
        let p = &m["data"]["payload"];
        assert_eq!(p["Name"], name);
        assert!(p["CreatedDate"].as_str().unwrap().ends_with('Z'), "{p}");
        for absent in ["Id", "IsDeleted", "SystemModstamp", "Fax"] {
            assert!(p.get(absent).is_none(), "{absent} in {p}");
        }
        assert!(m["data"]["schema"].as_str().unwrap().len() >= 20);
    }
    assert_eq!(got[0]["data"]["payload"]["NumberOfEmployees"], 12);
    let (h0, h1) = (header(&got[0]), header(&got[1]));
    assert_eq!(h0["transactionKey"], h1["transactionKey"]);
    assert_eq!(h0["commitNumber"], h1["commitNumber"]);
    assert!(replay_id(&got[1]) > replay_id(&got[0]));

    // An update reports the fields whose values changed (nulled ones as null), and
    // LastModifiedDate; the origin names the client of Sforce-Call-Options.
    let r = org.send(
        Method::PATCH,
        &org.data(&format!("/sobjects/Account/{a}")),
        &[
            ("Content-Type", "application/json"),
            ("Sforce-Call-Options", "client=ledger-sync"),
        ],
        Some(
            json!({"Name": "Acme", "Phone": null, "Industry": "Banking"})
                .to_string()
                .into_bytes(),
        ),
    );
    assert_eq!(r.status, 204, "{}", r.text);
    let m = &account.receive(1)[0];
    let h = header(m);
    assert_eq!(h["changeType"], "UPDATE", "{m}");
    assert_eq!(
        names(&h["changedFields"]),
        ["Industry", "LastModifiedDate", "Phone"]
    );
    assert_eq!(
        h["changeOrigin"],
        "com/salesforce/api/rest/59.0;client=ledger-sync"
    );
    let p = &m["data"]["payload"];
    assert_eq!(p["Industry"], "Banking");
    assert_eq!(p["Phone"], Value::Null);
    assert!(
        p.get("Name").is_none(),
        "unchanged fields are left out: {p}"
    );
    assert!(p["LastModifiedDate"].is_string());
    assert!(header(&every.receive(1)[0])["changeType"] == "UPDATE");

    // Contacts are not selected: their changes publish nothing.
    org.create("Contact", json!({"LastName": "Unselected"}));
    assert_quiet(&mut every);

    // The same change to several records in one request is one event listing them all;
    // so is a delete of several records.
    let ids: Vec<String> = (0..3)
        .map(|k| org.create("Account", json!({"Name": format!("Bulk {k}")})))
        .collect();
    assert_eq!(account.receive(3).len(), 3);
    let records: Vec<Value> = ids
        .iter()
        .map(|id| json!({"attributes": {"type": "Account"}, "id": id, "Rating": "Hot"}))
        .collect();
    org.collection(Method::PATCH, records);
    let m = &account.receive(1)[0];
    let h = header(m);
    assert_eq!(h["changeType"], "UPDATE", "{m}");
    assert_eq!(names(&h["recordIds"]), {
        let mut v = ids.clone();
        v.sort();
        v
    });
    assert_eq!(h["sequenceNumber"], 1);
    assert_eq!(names(&h["changedFields"]), ["LastModifiedDate", "Rating"]);
    // Different values are different changes: one event each.
    let records: Vec<Value> = ids
        .iter()
        .enumerate()
        .map(
            |(k, id)| json!({"attributes": {"type": "Account"}, "id": id, "Site": format!("S{k}")}),
        )
        .collect();
    org.collection(Method::PATCH, records);
    let got = account.receive(3);
    let seqs: Vec<u64> = got
        .iter()
        .map(|m| header(m)["sequenceNumber"].as_u64().unwrap())
        .collect();
    assert_eq!(seqs, [1, 2, 3]);
    let (s, b) = org.call(
        Method::DELETE,
        &org.data(&format!("/composite/sobjects?ids={}", ids.join(","))),
        None,
    );
    assert_eq!(s, 200, "{b}");
    let m = &account.receive(1)[0];
    let h = header(m);
    assert_eq!(h["changeType"], "DELETE", "{m}");
    assert_eq!(h["recordIds"].as_array().unwrap().len(), 3);
    assert_eq!(
        m["data"]["payload"].as_object().unwrap().len(),
        1,
        "a delete event is its header: {m}"
    );

    // Undelete (SOAP) restores the record's fields.
    let xml = crate::records::soap_undelete(&org, &[&ids[0]]);
    assert!(xml.contains("<success>true</success>"), "{xml}");
    let m = &account.receive(1)[0];
    let h = header(m);
    assert_eq!(h["changeType"], "UNDELETE", "{m}");
    assert_eq!(h["recordIds"], json!([ids[0]]));
    assert_eq!(m["data"]["payload"]["Name"], "Bulk 0");
    assert_eq!(m["data"]["payload"]["Site"], "S0");
    assert!(h["changeOrigin"]
        .as_str()
        .unwrap()
        .starts_with("com/salesforce/api/soap/59.0"));

    // Replay: a new subscriber asking for -2 gets every retained change event, in order.
    let mut replayer = Bayeux::new(&org);
    replayer.handshake();
    assert_eq!(
        replayer.subscribe("/data/AccountChangeEvent", Some(-2))["successful"],
        true
    );
    let all = replayer.receive(2 + 1 + 3 + 1 + 3 + 1 + 1);
    assert!(all.windows(2).all(|w| replay_id(&w[0]) < replay_id(&w[1])));

    // The all-entities channel saw the same: 3 creates, the merged update, 3 updates, the
    // merged delete, the undelete.
    assert_eq!(every.receive(9).len(), 9);

    // Deselecting ends the events.
    let (s, b) = org.call(
        Method::DELETE,
        &org.data(&format!(
            "/tooling/sobjects/PlatformEventChannelMember/{member}"
        )),
        None,
    );
    assert_eq!(s, 204, "{b}");
    org.create("Account", json!({"Name": "After"}));
    assert_quiet(&mut account);
    assert_quiet(&mut every);
    // Unknown change event channels are refused the way Salesforce refuses them.
    let mut c = Bayeux::new(&org);
    c.handshake();
    assert_bayeux_error(&c.subscribe("/data/NopeChangeEvent", None), "400");
}

#[test]
fn custom_objects_and_bulk_loads_publish_change_events() {
    let org = Org::start("cdc-bulk");
    let (s, b) = org.tooling(
        "CustomObject",
        "Invoice__c",
        json!({"label": "Invoice", "pluralLabel": "Invoices",
               "nameField": {"type": "Text", "label": "Invoice Name"}}),
    );
    assert_eq!(s, 201, "{b}");
    select(&org, "Invoice__ChangeEvent");
    let mut c = subscriber(&org, "/data/Invoice__ChangeEvent");
    // A Bulk API 2.0 insert job: one CREATE per row, changeOrigin bulkapi.
    let info = org.ingest(
        json!({"object": "Invoice__c", "operation": "insert"}),
        "Name\nINV-1\nINV-2\nINV-3\n",
    );
    assert_eq!(info["state"], "JobComplete", "{info}");
    let got = c.receive(3);
    let mut seen: Vec<String> = got
        .iter()
        .map(|m| {
            assert_eq!(m["channel"], "/data/Invoice__ChangeEvent");
            let h = header(m);
            assert_eq!(h["entityName"], "Invoice__c");
            assert_eq!(h["changeType"], "CREATE");
            assert!(
                h["changeOrigin"]
                    .as_str()
                    .unwrap()
                    .starts_with("com/salesforce/api/bulkapi/"),
                "{h}"
            );
            m["data"]["payload"]["Name"].as_str().unwrap().to_string()
        })
        .collect();
    seen.sort();
    assert_eq!(seen, ["INV-1", "INV-2", "INV-3"]);
    // Bulk API 1.0 as well.
    let job = org.b1_job_xml(
        "<operation>insert</operation><object>Invoice__c</object><contentType>CSV</contentType>",
    );
    let batch = org.b1_batch(&job, "text/csv", "Name\nINV-4\n");
    org.b1_wait(&job, &batch);
    let m = &c.receive(1)[0];
    assert_eq!(m["data"]["payload"]["Name"], "INV-4", "{m}");
    assert_eq!(
        header(m)["changeOrigin"],
        "com/salesforce/api/bulkapi/59.0",
        "{m}"
    );
}

#[test]
fn push_topics_notify_matching_records() {
    let org = Org::start("pushtopic");
    let topic = |name: &str, query: &str| {
        org.call(
            POST,
            &org.data("/sobjects/PushTopic"),
            Some(json!({"Name": name, "Query": query, "ApiVersion": 59.0})),
        )
    };
    // Queries PushTopics cannot serve are refused when the topic is saved.
    for bad in [
        "SELECT Name FROM Account",
        "SELECT Id FROM Account ORDER BY Name",
        "SELECT Id, Owner.Name FROM Account",
        "SELECT COUNT() FROM Account",
        "SELECT Id FROM Nope",
        "SELEKT Id FROM Account",
    ] {
        let (s, b) = topic("Bad", bad);
        assert_eq!(s, 400, "{bad}: {b}");
    }
    assert_eq!(org.count("SELECT COUNT() FROM PushTopic"), 0);
    let (s, b) = topic(
        "BigAccounts",
        "SELECT Id, Name, NumberOfEmployees FROM Account WHERE NumberOfEmployees > 100",
    );
    assert_eq!(s, 201, "{b}");
    let (s, b) = topic("BigAccounts", "SELECT Id FROM Account");
    assert_eq!(s, 400, "topic names are unique: {b}");
    let q = org.query("SELECT Name, IsActive, NotifyForFields FROM PushTopic");
    assert_eq!(q["records"][0]["NotifyForFields"], "Referenced", "{q}");
    assert_eq!(q["records"][0]["IsActive"], true);

    let mut c = subscriber(&org, "/topic/BigAccounts");
    let big = org.create("Account", json!({"Name": "Big", "NumberOfEmployees": 500}));
    let small = org.create("Account", json!({"Name": "Small", "NumberOfEmployees": 5}));
    let m = &c.receive(1)[0];
    assert_eq!(m["channel"], "/topic/BigAccounts");
    assert_eq!(m["data"]["event"]["type"], "created", "{m}");
    assert!(m["data"]["event"]["createdDate"].is_string());
    assert!(replay_id(m) > 0);
    assert_eq!(
        m["data"]["sobject"],
        json!({"Id": big, "Name": "Big", "NumberOfEmployees": 500})
    );
    assert_quiet(&mut c);
    // The small account grows into the topic: updated.
    let (s, _) = org.call(
        Method::PATCH,
        &org.data(&format!("/sobjects/Account/{small}")),
        Some(json!({"NumberOfEmployees": 200})),
    );
    assert_eq!(s, 204);
    let m = &c.receive(1)[0];
    assert_eq!(m["data"]["event"]["type"], "updated");
    assert_eq!(m["data"]["sobject"]["Id"], small);
    // A change to a field the query does not reference notifies nobody (Referenced).
    let (s, _) = org.call(
        Method::PATCH,
        &org.data(&format!("/sobjects/Account/{big}")),
        Some(json!({"Phone": "555"})),
    );
    assert_eq!(s, 204);
    assert_quiet(&mut c);
    // Deleted and undeleted.
    let (s, _) = org.call(
        Method::DELETE,
        &org.data(&format!("/sobjects/Account/{big}")),
        None,
    );
    assert_eq!(s, 204);
    assert_eq!(c.receive(1)[0]["data"]["event"]["type"], "deleted");
    crate::records::soap_undelete(&org, &[&big]);
    assert_eq!(c.receive(1)[0]["data"]["event"]["type"], "undeleted");
    // Bulk API (2.0 and 1.0) changes are not reported: only the REST create after the jobs
    // arrives.
    let info = org.ingest(
        json!({"object": "Account", "operation": "insert"}),
        "Name,NumberOfEmployees\nBulky,900\n",
    );
    assert_eq!(info["state"], "JobComplete", "{info}");
    let job = org.b1_job_xml(
        "<operation>insert</operation><object>Account</object><contentType>CSV</contentType>",
    );
    let batch = org.b1_batch(&job, "text/csv", "Name,NumberOfEmployees\nBulky,950\n");
    org.b1_wait(&job, &batch);
    assert_eq!(
        org.count("SELECT COUNT() FROM Account WHERE Name = 'Bulky'"),
        2
    );
    org.create(
        "Account",
        json!({"Name": "Marker", "NumberOfEmployees": 101}),
    );
    let m = &c.receive(1)[0];
    assert_eq!(m["data"]["sobject"]["Name"], "Marker", "{m}");
    // Deactivated topics stop notifying; unknown topics cannot be subscribed to.
    let tid = b_id(&org, "BigAccounts");
    let (s, _) = org.call(
        Method::PATCH,
        &org.data(&format!("/sobjects/PushTopic/{tid}")),
        Some(json!({"IsActive": false})),
    );
    assert_eq!(s, 204);
    org.create(
        "Account",
        json!({"Name": "Quiet", "NumberOfEmployees": 1000}),
    );
    assert_quiet(&mut c);
    let mut d = Bayeux::new(&org);
    d.handshake();
    assert_bayeux_error(&d.subscribe("/topic/BigAccounts", None), "400");
    assert_bayeux_error(&d.subscribe("/topic/Nope", None), "400");
}

fn b_id(org: &Org, topic: &str) -> String {
    let q = org.query(&format!("SELECT Id FROM PushTopic WHERE Name = '{topic}'"));
    q["records"][0]["Id"].as_str().unwrap().to_string()
}

/// PATCHes a record (asserting 204).
fn patch(org: &Org, object: &str, id: &str, body: Value) {
    let (s, b) = org.call(
        Method::PATCH,
        &org.data(&format!("/sobjects/{object}/{id}")),
        Some(body),
    );
    assert_eq!(s, 204, "PATCH {object}/{id}: {b}");
}

/// The notification type and the record's `Name` of a PushTopic message.
fn notice(m: &Value) -> (String, String) {
    let text = |v: &Value| {
        v.as_str()
            .unwrap_or_else(|| panic!("text: {m}"))
            .to_string()
    };
    (
        text(&m["data"]["event"]["type"]),
        text(&m["data"]["sobject"]["Name"]),
    )
}

/// After one write: the subscribers in `subs` (one per topic in `names`) whose `expect` is true
/// each got one notification `(kind, name)`, appended to their `log`; the others got nothing.
/// Returns the notifications.
fn expect_notices(
    subs: &mut [Bayeux],
    names: &[&str],
    log: &mut [Vec<(String, String)>],
    what: &str,
    expect: [bool; 4],
    (kind, name): (&str, &str),
) -> Vec<Value> {
    let mut out = Vec::new();
    for (k, c) in subs.iter_mut().enumerate() {
        let topic = names[k];
        if expect[k] {
            let m = &c.receive(1)[0];
            assert_eq!(m["channel"], format!("/topic/{topic}"), "{what}: {m}");
            let got = notice(m);
            assert_eq!(
                got,
                (kind.to_string(), name.to_string()),
                "{what}: {topic}: {m}"
            );
            log[k].push(got);
            out.push(m.clone());
        } else {
            let (data, reply) = c.connect(true);
            assert_eq!(reply["successful"], true, "{reply}");
            assert!(
                data.is_empty(),
                "{what}: {topic} must not be notified: {data:?}"
            );
        }
    }
    out
}

/// Salesforce's NotifyForFields: an update is evaluated when a field the setting names changed
/// (All: any field; Select: a SELECT field; Where: a WHERE field; Referenced: either), and
/// notifies only when the record then matches the WHERE clause. Creates and deletes of matching
/// records notify whatever the setting.
#[test]
fn push_topics_notify_for_all_select_or_where_fields() {
    let org = Org::start("pushtopic-fields");
    // One query for four topics: Name is selected, NumberOfEmployees filtered, Phone neither.
    let query = "SELECT Id, Name FROM Account WHERE NumberOfEmployees > 100";
    let topics = [
        ("AllFields", "All"),
        ("SelectFields", "Select"),
        ("WhereFields", "Where"),
        ("ReferencedFields", "Referenced"),
    ];
    for (name, setting) in topics {
        let (s, b) = org.call(
            POST,
            &org.data("/sobjects/PushTopic"),
            Some(json!({"Name": name, "Query": query, "ApiVersion": 59.0,
                        "NotifyForFields": setting})),
        );
        assert_eq!(s, 201, "{name}: {b}");
    }
    let q = org.query("SELECT Name, NotifyForFields FROM PushTopic");
    let mut stored: Vec<(String, String)> = q["records"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| {
            (
                r["Name"].as_str().unwrap().to_string(),
                r["NotifyForFields"].as_str().unwrap().to_string(),
            )
        })
        .collect();
    stored.sort();
    let mut want: Vec<(String, String)> = topics
        .iter()
        .map(|(n, s)| (n.to_string(), s.to_string()))
        .collect();
    want.sort();
    assert_eq!(stored, want);

    let names: Vec<&str> = topics.iter().map(|(n, _)| *n).collect();
    let mut subs: Vec<Bayeux> = names
        .iter()
        .map(|n| subscriber(&org, &format!("/topic/{n}")))
        .collect();
    let mut log: Vec<Vec<(String, String)>> = vec![Vec::new(); 4];
    // Columns: All, Select, Where, Referenced.
    let big = org.create(
        "Account",
        json!({"Name": "Big", "NumberOfEmployees": 500, "Phone": "555-0100"}),
    );
    let created = expect_notices(
        &mut subs,
        &names,
        &mut log,
        "a matching create",
        [true; 4],
        ("created", "Big"),
    );
    for m in &created {
        assert_eq!(
            m["data"]["sobject"],
            json!({"Id": big, "Name": "Big"}),
            "the SELECT list, nothing more: {m}"
        );
    }
    let small = org.create("Account", json!({"Name": "Small", "NumberOfEmployees": 5}));
    expect_notices(
        &mut subs,
        &names,
        &mut log,
        "a create outside the WHERE clause",
        [false; 4],
        ("", ""),
    );

    // A field the query does not mention: All only.
    patch(&org, "Account", &big, json!({"Phone": "555-0199"}));
    expect_notices(
        &mut subs,
        &names,
        &mut log,
        "Phone changed",
        [true, false, false, false],
        ("updated", "Big"),
    );
    // A SELECT field: everyone but Where.
    patch(&org, "Account", &big, json!({"Name": "Bigger"}));
    expect_notices(
        &mut subs,
        &names,
        &mut log,
        "Name changed",
        [true, true, false, true],
        ("updated", "Bigger"),
    );
    // A WHERE field, the record still matching: everyone but Select.
    patch(&org, "Account", &big, json!({"NumberOfEmployees": 600}));
    expect_notices(
        &mut subs,
        &names,
        &mut log,
        "NumberOfEmployees changed",
        [true, false, true, true],
        ("updated", "Bigger"),
    );
    // Changes to a record outside the WHERE clause notify nobody, All and Select included.
    patch(
        &org,
        "Account",
        &small,
        json!({"Phone": "555-0142", "Name": "Smaller"}),
    );
    expect_notices(
        &mut subs,
        &names,
        &mut log,
        "a non-matching record changed",
        [false; 4],
        ("", ""),
    );
    // The record grows into the WHERE clause: a WHERE field changed, so not Select.
    patch(&org, "Account", &small, json!({"NumberOfEmployees": 200}));
    expect_notices(
        &mut subs,
        &names,
        &mut log,
        "a record entering the WHERE clause",
        [true, false, true, true],
        ("updated", "Smaller"),
    );
    // And leaves it: it no longer matches, so nobody, Where included.
    patch(&org, "Account", &small, json!({"NumberOfEmployees": 50}));
    expect_notices(
        &mut subs,
        &names,
        &mut log,
        "a record leaving the WHERE clause",
        [false; 4],
        ("", ""),
    );
    // NotifyForFields is about updates: a matching delete notifies every topic.
    let (s, _) = org.call(
        Method::DELETE,
        &org.data(&format!("/sobjects/Account/{big}")),
        None,
    );
    assert_eq!(s, 204);
    expect_notices(
        &mut subs,
        &names,
        &mut log,
        "a matching delete",
        [true; 4],
        ("deleted", "Bigger"),
    );

    // Each channel retained exactly what its subscriber saw: nothing arrived late.
    for (k, name) in names.iter().enumerate() {
        let mut r = Bayeux::new(&org);
        r.handshake();
        let reply = r.subscribe(&format!("/topic/{name}"), Some(-2));
        assert_eq!(reply["successful"], true, "{reply}");
        let replayed: Vec<(String, String)> = r.receive(log[k].len()).iter().map(notice).collect();
        assert_eq!(replayed, log[k], "{name}");
        assert_quiet(&mut r);
    }
    assert_eq!(log.iter().map(Vec::len).collect::<Vec<_>>(), [6, 3, 4, 5]);
}

/// The names of a change event payload's top-level keys, sorted.
fn payload_keys(m: &Value) -> Vec<String> {
    let mut k: Vec<String> = m["data"]["payload"]
        .as_object()
        .unwrap_or_else(|| panic!("a payload: {m}"))
        .keys()
        .cloned()
        .collect();
    k.sort();
    k
}

/// A change whose event would exceed 1 MB is reported by a gap event: the header (change type
/// `GAP_…`, the record id) and no fields; changes whose events fit keep their bodies.
#[test]
fn changes_too_large_for_one_event_publish_gap_events() {
    let org = Org::start("cdc-gap");
    let (s, b) = org.tooling(
        "CustomObject",
        "Dossier__c",
        json!({"label": "Dossier", "pluralLabel": "Dossiers",
               "nameField": {"type": "Text", "label": "Dossier Name"}}),
    );
    assert_eq!(s, 201, "{b}");
    // A LongTextArea holds at most 131,072 characters: eight full ones make over 1 MB, seven
    // (917,504 characters) do not.
    const MAX: usize = 131_072;
    let (s, b) = org.tooling(
        "CustomField",
        "Dossier__c.Too_Long__c",
        json!({"type": "LongTextArea", "length": MAX + 1, "label": "Too long"}),
    );
    assert_eq!(s, 400, "{b}");
    let parts: Vec<String> = (1..=8).map(|k| format!("Part{k}__c")).collect();
    for p in &parts {
        let (s, b) = org.tooling(
            "CustomField",
            &format!("Dossier__c.{p}"),
            json!({"type": "LongTextArea", "length": MAX, "label": p}),
        );
        assert_eq!(s, 201, "{b}");
    }
    select(&org, "Dossier__ChangeEvent");
    let mut c = subscriber(&org, "/data/Dossier__ChangeEvent");
    let filled = |name: &str, fill: char, n: usize| {
        let mut body = json!({ "Name": name });
        for p in &parts[..n] {
            body[p] = json!(fill.to_string().repeat(MAX));
        }
        body
    };
    let part_len = |m: &Value, p: &str| m["data"]["payload"][p].as_str().map_or(0, str::len);

    // Seven full fields still fit: a CREATE with every field.
    let seven = org.create("Dossier__c", filled("Seven", 'a', 7));
    let m = &c.receive(1)[0];
    let h = header(m);
    assert_eq!(h["changeType"], "CREATE", "{h}");
    assert_eq!(h["recordIds"], json!([seven]));
    assert_eq!(part_len(m, "Part7__c"), MAX);
    assert_eq!(m["data"]["payload"]["Name"], "Seven");

    // Eight do not: a GAP_CREATE, the header alone. The record itself is stored whole.
    let eight = org.create("Dossier__c", filled("Eight", 'a', 8));
    let m = &c.receive(1)[0];
    assert_eq!(m["channel"], "/data/Dossier__ChangeEvent");
    let h = header(m);
    assert_eq!(h["changeType"], "GAP_CREATE", "{h}");
    assert_eq!(h["entityName"], "Dossier__c");
    assert_eq!(h["recordIds"], json!([eight]));
    assert_eq!(h["changedFields"], json!([]));
    assert_eq!(h["changeOrigin"], "com/salesforce/api/rest/59.0");
    assert!(h["commitUser"].as_str().unwrap().starts_with("005"), "{h}");
    assert_eq!(payload_keys(m), ["ChangeEventHeader"], "no body: {m}");
    assert!(m.to_string().len() < 10_000);
    let rec = org.get("Dossier__c", &eight);
    assert_eq!(rec["Part8__c"].as_str().unwrap().len(), MAX);

    // A small change to that record is an ordinary UPDATE: only what changed is sent.
    patch(&org, "Dossier__c", &eight, json!({"Name": "Eight renamed"}));
    let m = &c.receive(1)[0];
    let h = header(m);
    assert_eq!(h["changeType"], "UPDATE", "{h}");
    assert_eq!(names(&h["changedFields"]), ["LastModifiedDate", "Name"]);
    assert_eq!(m["data"]["payload"]["Name"], "Eight renamed");
    assert!(m["data"]["payload"].get("Part1__c").is_none(), "{h}");
    // Changing all eight fields at once is too large: GAP_UPDATE.
    let mut all = filled("Eight renamed", 'b', 8);
    all.as_object_mut().unwrap().remove("Name");
    patch(&org, "Dossier__c", &eight, all);
    let m = &c.receive(1)[0];
    let h = header(m);
    assert_eq!(h["changeType"], "GAP_UPDATE", "{h}");
    assert_eq!(h["recordIds"], json!([eight]));
    assert_eq!(h["changedFields"], json!([]));
    assert_eq!(payload_keys(m), ["ChangeEventHeader"], "no body: {m}");
    assert!(org.get("Dossier__c", &eight)["Part8__c"]
        .as_str()
        .unwrap()
        .starts_with('b'));
    // What counts is the event, not the record: filling the eighth field of the first record
    // makes that record over 1 MB, but its UPDATE carries one field.
    patch(
        &org,
        "Dossier__c",
        &seven,
        json!({"Part8__c": "c".repeat(MAX)}),
    );
    let m = &c.receive(1)[0];
    let h = header(m);
    assert_eq!(h["changeType"], "UPDATE", "{h}");
    assert_eq!(names(&h["changedFields"]), ["LastModifiedDate", "Part8__c"]);
    assert_eq!(part_len(m, "Part8__c"), MAX);

    // A delete is a header anyway; the undelete restores (and would report) every field: gap.
    let (s, _) = org.call(
        Method::DELETE,
        &org.data(&format!("/sobjects/Dossier__c/{eight}")),
        None,
    );
    assert_eq!(s, 204);
    assert_eq!(header(&c.receive(1)[0])["changeType"], "DELETE");
    let xml = crate::records::soap_undelete(&org, &[&eight]);
    assert!(xml.contains("<success>true</success>"), "{xml}");
    let m = &c.receive(1)[0];
    let h = header(m);
    assert_eq!(h["changeType"], "GAP_UNDELETE", "{h}");
    assert_eq!(h["recordIds"], json!([eight]));
    assert_eq!(payload_keys(m), ["ChangeEventHeader"], "no body: {m}");
    assert_quiet(&mut c);
}

/// The first record `soql` finds; its id.
fn first_id(org: &Org, soql: &str) -> String {
    let q = org.query(soql);
    q["records"][0]["Id"]
        .as_str()
        .unwrap_or_else(|| panic!("no record for {soql}: {q}"))
        .to_string()
}

/// Creates an active user with the named profile and a password; returns its id.
fn create_user(org: &Org, username: &str, profile: &str, password: &str) -> String {
    let profile_id = first_id(
        org,
        &format!("SELECT Id FROM Profile WHERE Name = '{profile}'"),
    );
    let id = org.create(
        "User",
        json!({"Username": username, "FirstName": "Change", "LastName": "Reader",
               "Email": "reader@example.com", "Alias": "creader", "ProfileId": profile_id}),
    );
    let (s, b) = org.call(
        POST,
        &org.data(&format!("/sobjects/User/{id}/password")),
        Some(json!({"NewPassword": password})),
    );
    assert_eq!(s, 204, "{b}");
    id
}

/// A Bayeux long-polling client with any user's token ([`Bayeux`] speaks as the admin).
struct UserBayeux {
    http: reqwest::blocking::Client,
    url: String,
    token: String,
    client_id: String,
}

impl UserBayeux {
    fn handshake(org: &Org, token: &str) -> UserBayeux {
        let mut c = UserBayeux {
            http: crate::harness::client(),
            url: org.url("/cometd/59.0"),
            token: token.to_string(),
            client_id: String::new(),
        };
        let r = c.send(json!({"channel": "/meta/handshake", "version": "1.0",
                              "supportedConnectionTypes": ["long-polling"], "id": "1"}));
        assert_eq!(r[0]["successful"], true, "{}", r[0]);
        c.client_id = r[0]["clientId"].as_str().unwrap().to_string();
        c
    }

    fn send(&self, message: Value) -> Vec<Value> {
        let resp = self
            .http
            .post(&self.url)
            .header("Authorization", format!("OAuth {}", self.token))
            .json(&json!([message]))
            .send()
            .expect("cometd request");
        assert_eq!(resp.status().as_u16(), 200);
        let v: Value = resp.json().expect("JSON reply");
        v.as_array().expect("a JSON array").clone()
    }

    /// Subscribes to `channel` from the start of the retained events (-2).
    fn subscribe(&self, channel: &str) -> Value {
        self.send(
            json!({"channel": "/meta/subscribe", "clientId": self.client_id,
                         "subscription": channel, "ext": {"replay": {channel: -2}}, "id": "s"}),
        )[0]
        .clone()
    }

    /// Connects until `n` data messages arrived.
    fn receive(&self, n: usize) -> Vec<Value> {
        let mut got = Vec::new();
        while got.len() < n {
            let mut r = self.send(
                json!({"channel": "/meta/connect", "clientId": self.client_id,
                                         "connectionType": "long-polling", "id": "c"}),
            );
            let reply = r.pop().expect("a connect reply");
            assert_eq!(reply["successful"], true, "{reply}");
            got.extend(r);
        }
        assert_eq!(got.len(), n, "more messages than expected: {got:?}");
        got
    }
}

/// `/data/ChangeEvents` (every entity) takes View All Data; one object's channel takes read
/// access to the object. A Standard User reads Account but not a new custom object. (Conflux's
/// rule, see ARCHITECTURE: Salesforce asks View All for the object on its channel, and now lets
/// anyone subscribe to `/data/ChangeEvents`, filtering what it delivers by entity.)
#[test]
fn change_event_channels_check_the_subscribers_permissions() {
    let org = Org::start("cdc-perms");
    select(&org, "AccountChangeEvent");
    let (s, b) = org.tooling(
        "CustomObject",
        "Vault__c",
        json!({"label": "Vault", "pluralLabel": "Vaults",
               "nameField": {"type": "Text", "label": "Vault Name"}}),
    );
    assert_eq!(s, 201, "{b}");
    select(&org, "Vault__ChangeEvent");
    let account = org.create("Account", json!({"Name": "Visible"}));
    let vault = org.create("Vault__c", json!({"Name": "Hidden"}));

    let (user, pw) = ("cdc-reader@example.com", "Cdc-passw0rd1");
    let user_id = create_user(&org, user, "Standard User", pw);
    let token = login(&org.http, &org.srv.http, user, pw).expect("user login");
    let c = UserBayeux::handshake(&org, &token);
    assert_bayeux_error(&c.subscribe("/data/ChangeEvents"), "403");
    assert_bayeux_error(&c.subscribe("/data/Vault__ChangeEvent"), "403");
    // The readable object's channel is open, and delivers.
    let r = c.subscribe("/data/AccountChangeEvent");
    assert_eq!(r["successful"], true, "{r}");
    let m = &c.receive(1)[0];
    assert_eq!(m["channel"], "/data/AccountChangeEvent", "{m}");
    assert_eq!(header(m)["recordIds"], json!([account]));
    assert_eq!(header(m)["changeType"], "CREATE");

    // View All Data (a permission set, not the admin profile) opens both refused channels.
    let set = org.create(
        "PermissionSet",
        json!({"Name": "Cdc_View_All", "Label": "CDC View All", "PermissionsViewAllData": true}),
    );
    org.create(
        "PermissionSetAssignment",
        json!({"AssigneeId": user_id, "PermissionSetId": set}),
    );
    let d = UserBayeux::handshake(&org, &token);
    let r = d.subscribe("/data/ChangeEvents");
    assert_eq!(r["successful"], true, "{r}");
    let got = d.receive(2);
    let mut seen: Vec<(String, String)> = got
        .iter()
        .map(|m| {
            assert_eq!(m["channel"], "/data/ChangeEvents", "{m}");
            let h = header(m);
            (
                h["entityName"].as_str().unwrap().to_string(),
                h["recordIds"][0].as_str().unwrap().to_string(),
            )
        })
        .collect();
    seen.sort();
    assert_eq!(
        seen,
        [
            ("Account".to_string(), account.clone()),
            ("Vault__c".to_string(), vault.clone())
        ]
    );
    let e = UserBayeux::handshake(&org, &token);
    let r = e.subscribe("/data/Vault__ChangeEvent");
    assert_eq!(r["successful"], true, "{r}");
    assert_eq!(header(&e.receive(1)[0])["recordIds"], json!([vault]));
}

/// A PushTopic's `Name` is its channel: required, at most 25 characters, no slashes or
/// surrounding spaces, checked on create and on rename; the query at most 1,300 characters.
#[test]
fn push_topic_names_are_checked_when_saved() {
    let org = Org::start("pushtopic-names");
    let save = |name: Value, query: &str| {
        org.call(
            POST,
            &org.data("/sobjects/PushTopic"),
            Some(json!({"Name": name, "Query": query, "ApiVersion": 59.0})),
        )
    };
    let query = "SELECT Id, Name FROM Account";
    let longest = "Accounts_Changed_In_Euro1";
    assert_eq!(longest.len(), 25);
    let too_long = format!("{longest}2");
    for (name, code) in [
        (json!(too_long), "STRING_TOO_LONG"),
        (json!("Big/Accounts"), "FIELD_INTEGRITY_EXCEPTION"),
        (json!("/topic"), "FIELD_INTEGRITY_EXCEPTION"),
        (json!(" Padded"), "FIELD_INTEGRITY_EXCEPTION"),
        (json!("Padded "), "FIELD_INTEGRITY_EXCEPTION"),
        (json!(""), "REQUIRED_FIELD_MISSING"),
        (Value::Null, "REQUIRED_FIELD_MISSING"),
    ] {
        let (s, b) = save(name.clone(), query);
        assert_eq!(s, 400, "{name}: {b}");
        assert_eq!(b[0]["errorCode"], code, "{name}: {b}");
        assert_eq!(b[0]["fields"], json!(["Name"]), "{name}: {b}");
    }
    let long_query = format!("{query} WHERE Name != '{}'", "x".repeat(1300));
    let (s, b) = save(json!("LongQuery"), &long_query);
    assert_eq!(s, 400, "{b}");
    assert_eq!(b[0]["errorCode"], "STRING_TOO_LONG", "{b}");
    assert_eq!(org.count("SELECT COUNT() FROM PushTopic"), 0);

    // Exactly 25 characters is a name, and a channel.
    let (s, b) = save(json!(longest), query);
    assert_eq!(s, 201, "{b}");
    let topic = b["id"].as_str().unwrap().to_string();
    assert!(topic.starts_with("0IF"), "{b}");
    let mut c = subscriber(&org, &format!("/topic/{longest}"));
    org.create("Account", json!({"Name": "First"}));
    let m = &c.receive(1)[0];
    assert_eq!(m["channel"], format!("/topic/{longest}"));
    assert_eq!(m["data"]["sobject"]["Name"], "First", "{m}");

    // A rename is checked the same way; refused ones leave the topic as it was.
    for (name, code) in [
        (json!(too_long), "STRING_TOO_LONG"),
        (json!("Europe/Accounts"), "FIELD_INTEGRITY_EXCEPTION"),
        (json!("Europe "), "FIELD_INTEGRITY_EXCEPTION"),
        (Value::Null, "REQUIRED_FIELD_MISSING"),
    ] {
        let (s, b) = org.call(
            Method::PATCH,
            &org.data(&format!("/sobjects/PushTopic/{topic}")),
            Some(json!({ "Name": name })),
        );
        assert_eq!(s, 400, "{name}: {b}");
        assert_eq!(b[0]["errorCode"], code, "{name}: {b}");
    }
    assert_eq!(b_id(&org, longest), topic);
    org.create("Account", json!({"Name": "Second"}));
    let m = &c.receive(1)[0];
    assert_eq!(m["channel"], format!("/topic/{longest}"));
    assert_eq!(m["data"]["sobject"]["Name"], "Second", "{m}");
}

#[test]
fn push_topic_queries_must_suit_their_notify_for_fields() {
    let org = Org::start("pushtopic-notify-fields");
    let save = |name: &str, query: &str, notify: Value| {
        let mut body = json!({"Name": name, "Query": query, "ApiVersion": 59.0});
        if !notify.is_null() {
            body["NotifyForFields"] = notify;
        }
        org.call(POST, &org.data("/sobjects/PushTopic"), Some(body))
    };
    // Select needs a selected field besides Id, Where a WHERE clause on one, Referenced either.
    for (name, query, notify) in [
        (
            "SelectOnlyId",
            "SELECT Id FROM Account WHERE Name = 'x'",
            "Select",
        ),
        ("WhereNone", "SELECT Id, Name FROM Account", "Where"),
        (
            "WhereOnlyId",
            "SELECT Id, Name FROM Account WHERE Id != null",
            "Where",
        ),
        ("RefNothing", "SELECT Id FROM Account", "Referenced"),
        (
            "DefaultNothing",
            "SELECT Id FROM Account WHERE Id != null",
            "",
        ),
    ] {
        let notify = if notify.is_empty() {
            Value::Null
        } else {
            json!(notify)
        };
        let (s, b) = save(name, query, notify);
        assert_eq!(s, 400, "{name}: {b}");
        assert_eq!(b[0]["errorCode"], "INVALID_FIELD", "{name}: {b}");
    }
    for (name, query, notify) in [
        ("SelectName", "SELECT Id, Name FROM Account", "Select"),
        (
            "WhereName",
            "SELECT Id FROM Account WHERE Name != null",
            "Where",
        ),
        (
            "RefWhere",
            "SELECT Id FROM Account WHERE Name != null",
            "Referenced",
        ),
        ("AllOnlyId", "SELECT Id FROM Account", "All"),
    ] {
        let (s, b) = save(name, query, json!(notify));
        assert_eq!(s, 201, "{name}: {b}");
    }
    // NotifyForFields is a restricted picklist.
    for bad in ["Bogus", "Everything"] {
        let (s, b) = save("BadNotify", "SELECT Id, Name FROM Account", json!(bad));
        assert_eq!(s, 400, "{bad}: {b}");
        assert_eq!(
            b[0]["errorCode"], "INVALID_OR_NULL_FOR_RESTRICTED_PICKLIST",
            "{b}"
        );
    }
    // Changing the setting is checked against the stored query.
    let id = b_id(&org, "SelectName");
    let (s, b) = org.call(
        Method::PATCH,
        &org.data(&format!("/sobjects/PushTopic/{id}")),
        Some(json!({"NotifyForFields": "Where"})),
    );
    assert_eq!(s, 400, "{b}");
    assert_eq!(b[0]["errorCode"], "INVALID_FIELD", "{b}");
}
