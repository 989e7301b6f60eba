//! Composite, batch, tree and sObject collections: transactions, references, all-or-none, limits.

use reqwest::Method;
use serde_json::{json, Value};

use crate::harness::Org;

const POST: Method = Method::POST;

fn sub(method: &str, url: &str, reference: &str, body: Option<Value>) -> Value {
    let mut v = json!({"method": method, "url": format!("/services/data/v59.0{url}"), "referenceId": reference});
    if let Some(b) = body {
        v["body"] = b;
    }
    v
}

pub(crate) fn composite(org: &Org, all_or_none: bool, subs: Vec<Value>) -> (u16, Value) {
    org.call(
        POST,
        &org.data("/composite"),
        Some(json!({"allOrNone": all_or_none, "compositeRequest": subs})),
    )
}

fn api_usage(org: &Org) -> u64 {
    let resp = org
        .http
        .get(org.data("/limits"))
        .bearer_auth(&org.token)
        .send()
        .unwrap();
    let info = resp
        .headers()
        .get("Sforce-Limit-Info")
        .unwrap()
        .to_str()
        .unwrap()
        .to_string();
    info.trim_start_matches("api-usage=")
        .split('/')
        .next()
        .unwrap()
        .parse()
        .unwrap()
}

#[test]
fn all_or_none_leaves_no_trace() {
    let org = Org::start("composite-aon");
    let before = (
        org.count("SELECT COUNT() FROM Account"),
        org.count("SELECT COUNT() FROM Contact"),
    );
    let (s, b) = composite(
        &org,
        true,
        vec![
            sub(
                "POST",
                "/sobjects/Account",
                "acc",
                Some(json!({"Name": "Rolled Back Co"})),
            ),
            sub(
                "POST",
                "/sobjects/Contact",
                "con",
                Some(json!({"LastName": "Smith", "AccountId": "@{acc.id}"})),
            ),
            sub(
                "POST",
                "/sobjects/Contact",
                "bad",
                Some(json!({"LastName": "Bad", "Email": "not-an-email"})),
            ),
            sub("GET", "/sobjects/Account/@{acc.id}", "read", None),
        ],
    );
    assert_eq!(s, 200, "{b}");
    let r = b["compositeResponse"].as_array().unwrap();
    assert_eq!(r.len(), 4);
    for i in [0, 1, 3] {
        assert_eq!(r[i]["httpStatusCode"], json!(400), "{b}");
        assert_eq!(
            r[i]["body"][0]["errorCode"],
            json!("PROCESSING_HALTED"),
            "{b}"
        );
    }
    assert_eq!(r[2]["httpStatusCode"], json!(400));
    assert_eq!(
        r[2]["body"][0]["errorCode"],
        json!("INVALID_EMAIL_ADDRESS"),
        "the failing subrequest keeps its own error: {b}"
    );
    assert_eq!(r[0]["referenceId"], json!("acc"));
    // No trace in the store: not the account, not the contact, not even in the recycle bin.
    assert_eq!(
        (
            org.count("SELECT COUNT() FROM Account"),
            org.count("SELECT COUNT() FROM Contact")
        ),
        before
    );
    let all = org.query_all("SELECT Id FROM Account WHERE Name = 'Rolled Back Co'");
    assert_eq!(all["totalSize"], json!(0), "{all}");
}

#[test]
fn references_chain_and_partial_success_without_all_or_none() {
    let org = Org::start("composite-refs");
    let usage = api_usage(&org);
    let (s, b) = composite(
        &org,
        false,
        vec![
            sub(
                "POST",
                "/sobjects/Account",
                "acc",
                Some(json!({"Name": "Chained", "NumberOfEmployees": 7})),
            ),
            sub(
                "POST",
                "/sobjects/Contact",
                "con",
                Some(json!({"LastName": "Doe", "AccountId": "@{acc.id}"})),
            ),
            sub(
                "GET",
                "/query?q=SELECT+Id,LastName+FROM+Contact+WHERE+AccountId='@{acc.id}'",
                "q",
                None,
            ),
            sub(
                "PATCH",
                "/sobjects/Account/@{acc.id}",
                "upd",
                Some(json!({"NumberOfEmployees": "@{q.totalSize}"})),
            ),
            sub(
                "POST",
                "/sobjects/Contact",
                "bad",
                Some(json!({"FirstName": "No last name"})),
            ),
            sub(
                "POST",
                "/sobjects/Contact",
                "dep",
                Some(json!({"LastName": "Orphan", "ReportsToId": "@{bad.id}"})),
            ),
            sub(
                "GET",
                "/sobjects/Contact/@{q.records[0].Id}?fields=LastName,AccountId",
                "get",
                None,
            ),
        ],
    );
    assert_eq!(s, 200, "{b}");
    assert_eq!(
        api_usage(&org),
        usage + 2,
        "the composite counts as one API call (plus this /limits call)"
    );
    let r = b["compositeResponse"].as_array().unwrap();
    let status: Vec<u64> = r
        .iter()
        .map(|x| x["httpStatusCode"].as_u64().unwrap())
        .collect();
    assert_eq!(status, vec![201, 201, 200, 204, 400, 400, 200], "{b}");
    assert!(r[0]["httpHeaders"]["Location"]
        .as_str()
        .unwrap()
        .starts_with("/services/data/v59.0/sobjects/Account/"));
    assert_eq!(
        r[2]["body"]["totalSize"],
        json!(1),
        "the query sees the contact created earlier in the same request: {b}"
    );
    assert_eq!(
        r[3]["body"],
        Value::Null,
        "a 204 subresponse has a null body"
    );
    assert_eq!(
        r[4]["body"][0]["errorCode"],
        json!("REQUIRED_FIELD_MISSING")
    );
    assert_eq!(
        r[5]["body"][0]["errorCode"],
        json!("PROCESSING_HALTED"),
        "a reference to a failed subrequest: {b}"
    );
    assert_eq!(r[6]["body"]["LastName"], json!("Doe"));
    let acc = r[0]["body"]["id"].as_str().unwrap();
    assert_eq!(
        org.get("Account", acc)["NumberOfEmployees"],
        json!(1),
        "a reference to a number stays a number"
    );
    assert_eq!(
        org.count("SELECT COUNT() FROM Contact WHERE LastName IN ('Doe', 'Orphan')"),
        1
    );
}

#[test]
fn malformed_composite_requests_run_nothing() {
    let org = Org::start("composite-bad");
    let before = org.count("SELECT COUNT() FROM Account");
    let create = |r: &str| {
        sub(
            "POST",
            "/sobjects/Account",
            r,
            Some(json!({"Name": "Should not exist"})),
        )
    };
    let too_many: Vec<Value> = (0..26).map(|i| create(&format!("r{i}"))).collect();
    let mut with_header = create("h");
    with_header["httpHeaders"] = json!({"Authorization": "Bearer stolen"});
    let queries: Vec<Value> = (0..6)
        .map(|i| {
            sub(
                "GET",
                "/query?q=SELECT+Id+FROM+Account",
                &format!("q{i}"),
                None,
            )
        })
        .collect();
    let mut bad_url = create("u");
    bad_url["url"] = json!("/services/apexrest/x");
    for (what, subs) in [
        ("26 subrequests", too_many),
        ("a bad referenceId", vec![create("_bad-ref")]),
        (
            "duplicate referenceIds",
            vec![create("same"), create("same")],
        ),
        ("a forbidden header", vec![with_header]),
        ("six queries", queries),
        (
            "a lower-case method",
            vec![
                json!({"method": "post", "url": "/services/data/v59.0/sobjects/Account", "referenceId": "m", "body": {"Name": "x"}}),
            ],
        ),
        ("a URL outside /services/data", vec![bad_url]),
    ] {
        let (s, b) = composite(&org, false, subs);
        assert_eq!(s, 400, "{what}: {b}");
        assert!(b[0]["errorCode"].is_string(), "{what}: {b}");
    }
    let (s, _) = org.call(
        POST,
        &org.data("/composite"),
        Some(json!({"compositeRequest": "nope"})),
    );
    assert_eq!(s, 400);
    for flag in ["allOrNone", "collateSubrequests"] {
        let mut body = json!({"compositeRequest": [create("f")]});
        body[flag] = json!("yes");
        let (s, b) = org.call(POST, &org.data("/composite"), Some(body));
        assert_eq!(
            (s, b[0]["errorCode"].clone()),
            (400, json!("JSON_PARSER_ERROR")),
            "{flag}: {b}"
        );
    }
    assert_eq!(
        org.count("SELECT COUNT() FROM Account"),
        before,
        "nothing ran"
    );
    // collateSubrequests either way: results come back in request order, references resolve.
    for collate in [true, false] {
        let (s, b) = org.call(
            POST,
            &org.data("/composite"),
            Some(json!({"collateSubrequests": collate, "compositeRequest": [
                sub("POST", "/sobjects/Account", "acc", Some(json!({"Name": format!("Collate {collate}")}))),
                sub("POST", "/sobjects/Contact", "con", Some(json!({"LastName": "C", "AccountId": "@{acc.id}"}))),
                sub("GET", "/sobjects/Contact/@{con.id}?fields=AccountId", "get", None),
            ]})),
        );
        assert_eq!(s, 200, "{b}");
        let r = &b["compositeResponse"];
        let refs: Vec<&str> = (0..3)
            .map(|i| r[i]["referenceId"].as_str().unwrap())
            .collect();
        assert_eq!(refs, ["acc", "con", "get"]);
        assert_eq!(r[2]["body"]["AccountId"], r[0]["body"]["id"], "{b}");
    }
}

#[test]
fn batch_halts_on_error_when_asked() {
    let org = Org::start("composite-batch");
    let acc = org.create("Account", json!({"Name": "Batch Co"}));
    let body = |halt: bool| {
        json!({"haltOnError": halt, "batchRequests": [
            {"method": "PATCH", "url": format!("v59.0/sobjects/Account/{acc}"), "richInput": {"Name": "Renamed"}},
            {"method": "GET", "url": format!("/services/data/v59.0/sobjects/Account/{acc}?fields=Name")},
            {"method": "POST", "url": "v59.0/sobjects/Contact", "richInput": {"FirstName": "x"}},
            {"method": "POST", "url": "v59.0/sobjects/Contact", "richInput": {"LastName": "After"}},
        ]})
    };
    let (s, b) = org.call(POST, &org.data("/composite/batch"), Some(body(true)));
    assert_eq!(s, 200, "{b}");
    assert_eq!(b["hasErrors"], json!(true));
    let codes: Vec<u64> = b["results"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r["statusCode"].as_u64().unwrap())
        .collect();
    assert_eq!(codes, vec![204, 200, 400, 412], "{b}");
    assert_eq!(b["results"][1]["result"]["Name"], json!("Renamed"));
    assert_eq!(
        b["results"][3]["result"][0]["errorCode"],
        json!("BATCH_PROCESSING_HALTED")
    );
    assert_eq!(
        org.count("SELECT COUNT() FROM Contact WHERE LastName = 'After'"),
        0,
        "halted subrequests did not run"
    );
    let (_, b) = org.call(POST, &org.data("/composite/batch"), Some(body(false)));
    let codes: Vec<u64> = b["results"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r["statusCode"].as_u64().unwrap())
        .collect();
    assert_eq!(codes, vec![204, 200, 400, 201], "{b}");
    assert_eq!(
        org.count("SELECT COUNT() FROM Contact WHERE LastName = 'After'"),
        1,
        "independent subrequests commit on their own"
    );
}

#[test]
fn tree_inserts_parents_and_children_all_or_nothing() {
    let org = Org::start("composite-tree");
    let tree = |email: &str| {
        json!({"records": [
            {"attributes": {"type": "Account", "referenceId": "ref1"}, "Name": "Tree Co",
             "Contacts": {"records": [
                 {"attributes": {"type": "Contact", "referenceId": "ref2"}, "LastName": "Leaf", "Email": email},
                 {"attributes": {"type": "Contact", "referenceId": "ref3"}, "LastName": "Leaf2"}]}},
            {"attributes": {"type": "Account", "referenceId": "ref4"}, "Name": "Tree Two"}
        ]})
    };
    let (s, b) = org.call(
        POST,
        &org.data("/composite/tree/Account"),
        Some(tree("bad email")),
    );
    assert_eq!(s, 400, "{b}");
    assert_eq!(b["hasErrors"], json!(true));
    assert_eq!(
        b["results"].as_array().unwrap().len(),
        1,
        "only the failing record is listed: {b}"
    );
    assert_eq!(b["results"][0]["referenceId"], json!("ref2"));
    assert_eq!(
        b["results"][0]["errors"][0]["statusCode"],
        json!("INVALID_EMAIL_ADDRESS")
    );
    assert_eq!(
        org.count("SELECT COUNT() FROM Account WHERE Name LIKE 'Tree%'"),
        0,
        "all or nothing"
    );

    let (s, b) = org.call(
        POST,
        &org.data("/composite/tree/Account"),
        Some(tree("leaf@example.com")),
    );
    assert_eq!(s, 201, "{b}");
    let refs: Vec<&str> = b["results"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r["referenceId"].as_str().unwrap())
        .collect();
    assert_eq!(
        refs,
        vec!["ref1", "ref4", "ref2", "ref3"],
        "roots first, then level 2: {b}"
    );
    let q = org.query("SELECT Name, (SELECT LastName FROM Contacts ORDER BY LastName) FROM Account WHERE Name = 'Tree Co'");
    assert_eq!(q["records"][0]["Contacts"]["totalSize"], json!(2), "{q}");

    let (s, b) = org.call(POST, &org.data("/composite/tree/Contact"), Some(json!({"records": [{"attributes": {"type": "Account", "referenceId": "x"}, "Name": "Wrong"}]})));
    assert_eq!(s, 400, "the root type must match the URL: {b}");
}

#[test]
fn collections_create_update_upsert_delete_retrieve() {
    let org = Org::start("composite-collections");
    let (s, _) = org.call(
        POST,
        &org.data("/tooling/sobjects/CustomField"),
        Some(json!({"FullName": "Account.Ext__c", "Metadata": {"type": "Text", "length": 20, "externalId": true, "unique": true, "label": "Ext"}})),
    );
    assert_eq!(s, 201);
    let url = org.data("/composite/sobjects");
    // allOrNone: one bad record rolls everything back.
    let (s, b) = org.call(
        POST,
        &url,
        Some(json!({"allOrNone": true, "records": [
            {"attributes": {"type": "Account"}, "Name": "C1"},
            {"attributes": {"type": "Contact"}, "FirstName": "missing last name"},
            {"attributes": {"type": "Account"}, "Name": "C3"}]})),
    );
    assert_eq!(s, 200, "{b}");
    assert_eq!(
        b[0]["errors"][0]["statusCode"],
        json!("ALL_OR_NONE_OPERATION_ROLLED_BACK"),
        "{b}"
    );
    assert_eq!(
        b[1]["errors"][0]["statusCode"],
        json!("REQUIRED_FIELD_MISSING")
    );
    assert_eq!(b[2]["success"], json!(false));
    assert_eq!(
        org.count("SELECT COUNT() FROM Account WHERE Name IN ('C1','C3')"),
        0
    );
    // Without allOrNone the good ones stay, in input order, mixed types.
    let (_, b) = org.call(
        POST,
        &url,
        Some(json!({"allOrNone": false, "records": [
            {"attributes": {"type": "Account"}, "Name": "C1"},
            {"attributes": {"type": "Contact"}, "FirstName": "missing last name"},
            {"attributes": {"type": "Contact"}, "LastName": "Kept"}]})),
    );
    assert_eq!(
        (
            b[0]["success"].clone(),
            b[1]["success"].clone(),
            b[2]["success"].clone()
        ),
        (json!(true), json!(false), json!(true)),
        "{b}"
    );
    let a1 = b[0]["id"].as_str().unwrap().to_string();
    let c1 = b[2]["id"].as_str().unwrap().to_string();
    // Update with jsforce's lower-case `id`.
    let (_, b) = org.call(Method::PATCH, &url, Some(json!({"records": [{"attributes": {"type": "Account"}, "id": a1, "Industry": "Retail"}]})));
    assert_eq!(b[0]["success"], json!(true), "{b}");
    // Upsert by external id: created, then updated.
    let up = org.data("/composite/sobjects/Account/Ext__c");
    let body = json!({"records": [{"attributes": {"type": "Account"}, "Ext__c": "E-1", "Name": "Upserted"}]});
    let (_, b) = org.call(Method::PATCH, &up, Some(body.clone()));
    assert_eq!(
        (b[0]["success"].clone(), b[0]["created"].clone()),
        (json!(true), json!(true)),
        "{b}"
    );
    let (_, b) = org.call(Method::PATCH, &up, Some(body));
    assert_eq!(b[0]["created"], json!(false), "{b}");
    // Retrieve by GET and POST; unknown ids come back as null.
    let bogus = "001000000000000AAA";
    let (s, b) = org.call(
        Method::GET,
        &format!(
            "{}?ids={a1},{bogus}&fields=Name,Industry",
            org.data("/composite/sobjects/Account")
        ),
        None,
    );
    assert_eq!(s, 200, "{b}");
    assert_eq!(
        (b[0]["Industry"].clone(), b[1].clone()),
        (json!("Retail"), Value::Null),
        "{b}"
    );
    let (_, b) = org.call(
        POST,
        &org.data("/composite/sobjects/Contact"),
        Some(json!({"ids": [c1], "fields": ["LastName"]})),
    );
    assert_eq!(b[0]["LastName"], json!("Kept"));
    // Delete several, one of them bogus.
    let (_, b) = org.call(
        Method::DELETE,
        &format!("{url}?ids={a1},{c1},{bogus}&allOrNone=false"),
        None,
    );
    let ok: Vec<bool> = b
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r["success"].as_bool().unwrap())
        .collect();
    assert_eq!(ok, vec![true, true, false], "{b}");
    // Over 200 records is refused whole.
    let many: Vec<Value> = (0..201)
        .map(|i| json!({"attributes": {"type": "Account"}, "Name": format!("M{i}")}))
        .collect();
    let (s, _) = org.call(POST, &url, Some(json!({"records": many})));
    assert_eq!(s, 400);
    assert_eq!(
        org.count("SELECT COUNT() FROM Account WHERE Name LIKE 'M%'"),
        0
    );
}
