//! Change Data Capture and PushTopics over the wire: entity selection through the Tooling API,
//! change events for committed creates, updates, deletes and undeletes (none for rolled-back
//! ones), merged identical changes, the headers Salesforce sends; PushTopics defined by SOQL,
//! notified for matching records only.

use reqwest::Method;
use serde_json::{json, Value};

use crate::events::{assert_bayeux_error, replay_id, Bayeux};
use crate::harness::Org;

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
    let (s, b) = org.call(
        Method::PATCH,
        &org.data("/composite/sobjects"),
        Some(json!({"allOrNone": true, "records": records})),
    );
    assert_eq!(s, 200, "{b}");
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
    let (s, _) = org.call(
        Method::PATCH,
        &org.data("/composite/sobjects"),
        Some(json!({"allOrNone": true, "records": records})),
    );
    assert_eq!(s, 200);
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
