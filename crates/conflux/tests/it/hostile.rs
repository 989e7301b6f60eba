//! Hostile input: malformed and oversized bodies, wrong field values, SOQL abuse, path abuse, bad
//! credentials and exhausted limits. Every case checks the Salesforce-shaped error (status, JSON
//! content type, `[{"message","errorCode"}]`) and that nothing was written.

use reqwest::Method;
use serde_json::{json, Value};

use crate::harness::{assert_sf_error, data_dir, raw_http, raw_send, Org, Raw};

/// Account ids look like `001` + marker + sequence; this is a well-formed id of the same org that
/// no record has (sequence `zzzzzzzzz`), in its 15-character form.
fn unused_id(like: &str) -> String {
    format!("{}zzzzzzzzz", &like[..6])
}

/// Asserts a SOQL error message carries Salesforce's caret diagram pointing into `soql`.
#[track_caller]
fn assert_caret(message: &str, soql: &str) {
    let lines: Vec<&str> = message.split('\n').collect();
    assert!(
        lines.len() >= 5 && lines[0].is_empty(),
        "no caret diagram: {message:?}"
    );
    let caret = lines[2];
    assert!(
        caret.ends_with('^') && caret.trim_start() == "^",
        "caret line: {caret:?}"
    );
    assert!(
        lines[3].starts_with("ERROR at Row:") && lines[3].contains(":Column:"),
        "position line: {:?}",
        lines[3]
    );
    let col: usize = lines[3]
        .rsplit(':')
        .next()
        .and_then(|c| c.parse().ok())
        .expect("column");
    // Short single-line queries are shown whole, with the caret under the reported column.
    if soql.len() < 1000 && !soql.contains('\n') {
        assert_eq!(lines[1], soql, "echoed query");
        assert_eq!(caret.len(), col, "caret under column {col}: {message:?}");
    }
}

/// A request over a raw connection (the server may answer before the request is fully sent).
fn raw_request(org: &Org, method: &str, url: &str) -> (u16, Vec<(String, String)>, Vec<u8>) {
    let path = url.strip_prefix(&org.srv.http).expect("local url");
    let req = format!(
        "{method} {path} HTTP/1.1\r\nHost: localhost\r\nAuthorization: Bearer {}\r\nConnection: close\r\n\r\n",
        org.token
    );
    raw_http(&org.srv.http, req.as_bytes())
}

fn raw_get(org: &Org, url: &str) -> (u16, Vec<(String, String)>, Vec<u8>) {
    raw_request(org, "GET", url)
}

fn count(org: &Org, object: &str) -> u64 {
    org.count(&format!("SELECT COUNT() FROM {object}"))
}

#[test]
fn malformed_json_is_a_parser_error_and_writes_nothing() {
    let org = Org::start("hostile-json");
    let acc = org.create("Account", json!({"Name": "Original"}));
    org.create("Product2", json!({"Name": "Prod", "ExternalId": "P1"}));
    let deep_array = format!("{}{}", "[".repeat(10_000), "]".repeat(10_000));
    let deep_object = format!(
        "{{\"Name\":{}1{}}}",
        "{\"a\":".repeat(10_000),
        "}".repeat(10_000)
    );
    let bodies: Vec<(&str, Vec<u8>)> = vec![
        ("truncated", br#"{"Name":"Truncated""#.to_vec()),
        ("truncated key", br#"{"Na"#.to_vec()),
        (
            "trailing garbage",
            br#"{"Name":"Trailing"} garbage"#.to_vec(),
        ),
        ("two objects", br#"{"Name":"A"}{"Name":"B"}"#.to_vec()),
        ("string", br#""Name""#.to_vec()),
        ("number", b"42".to_vec()),
        ("null", b"null".to_vec()),
        ("true", b"true".to_vec()),
        ("array", br#"[{"Name":"In an array"}]"#.to_vec()),
        ("empty array", b"[]".to_vec()),
        ("empty", Vec::new()),
        ("whitespace", b"  \r\n\t ".to_vec()),
        ("invalid UTF-8", b"{\"Name\":\"\xff\xfe\xc3\"}".to_vec()),
        ("lone surrogate", br#"{"Name":"\ud800"}"#.to_vec()),
        ("single quotes", b"{'Name':'Quoted'}".to_vec()),
        ("bare word", br#"{"Name":NaN}"#.to_vec()),
        ("comment", br#"{"Name":"C" /* c */}"#.to_vec()),
        ("trailing comma", br#"{"Name":"Comma",}"#.to_vec()),
        ("deep arrays", deep_array.into_bytes()),
        ("deep objects", deep_object.into_bytes()),
    ];
    let targets = [
        (Method::POST, org.data("/sobjects/Account")),
        (Method::PATCH, org.data(&format!("/sobjects/Account/{acc}"))),
        (
            Method::PATCH,
            org.data("/sobjects/Product2/ExternalId/NEW-1"),
        ),
        (Method::PATCH, org.data("/sobjects/Product2/ExternalId/P1")),
        (Method::POST, org.data("/sobjects/Account/Id")),
    ];
    for (what, body) in &bodies {
        for (m, url) in &targets {
            let r = org.send_body(m.clone(), url, body.clone());
            let msg = assert_sf_error(&r, 400, "JSON_PARSER_ERROR");
            assert!(!msg.is_empty(), "{what} on {m} {url}: empty message");
        }
    }
    assert_eq!(count(&org, "Account"), 1, "no account was created");
    assert_eq!(count(&org, "Product2"), 1, "no product was created");
    assert_eq!(org.get("Account", &acc)["Name"], "Original");
    let p = org.query("SELECT Name, ExternalId FROM Product2");
    assert_eq!(p["records"][0]["Name"], "Prod");
    assert_eq!(p["records"][0]["ExternalId"], "P1");
    // Control: a well-formed body, even behind a UTF-8 byte order mark, is accepted.
    let r = org.send_body(
        Method::POST,
        &org.data("/sobjects/Account"),
        b"\xEF\xBB\xBF{\"Name\":\"With BOM\"}".to_vec(),
    );
    assert_eq!(r.status, 201, "{}", r.text);
    assert_eq!(count(&org, "Account"), 2);
}

#[test]
fn unknown_objects_are_not_found() {
    let org = Org::start("hostile-object");
    let acc = org.create("Account", json!({"Name": "Only"}));
    let good = br#"{"Name":"x"}"#.to_vec();
    let cases: Vec<(Method, String, Option<Vec<u8>>)> = vec![
        (Method::GET, "/sobjects/Nope__c".into(), None),
        (Method::GET, "/sobjects/Nope__c/describe".into(), None),
        (Method::POST, "/sobjects/Nope__c".into(), Some(good.clone())),
        // The object is resolved before the body is looked at.
        (
            Method::POST,
            "/sobjects/Nope__c".into(),
            Some(b"{not json".to_vec()),
        ),
        (Method::GET, format!("/sobjects/Nope__c/{acc}"), None),
        (
            Method::PATCH,
            format!("/sobjects/Nope__c/{acc}"),
            Some(good.clone()),
        ),
        (Method::DELETE, format!("/sobjects/Nope__c/{acc}"), None),
        (
            Method::PATCH,
            "/sobjects/Nope__c/Ext__c/1".into(),
            Some(good.clone()),
        ),
        (Method::GET, "/sobjects/Nope__c/Ext__c/1".into(), None),
        (
            Method::GET,
            "/sobjects/Nope__c/updated?start=2030-01-01T00:00:00Z&end=2030-01-02T00:00:00Z".into(),
            None,
        ),
        // Not an object at all, and an sObject name that is an object of another API.
        (Method::GET, "/sobjects/Account__c".into(), None),
        (Method::GET, "/sobjects/CustomObject".into(), None),
    ];
    for (m, path, body) in cases {
        let headers: &[(&str, &str)] = &[("Content-Type", "application/json")];
        let r = org.send(m.clone(), &org.data(&path), headers, body);
        assert_sf_error(&r, 404, "NOT_FOUND");
    }
    assert_eq!(count(&org, "Account"), 1);
    // Unknown objects in SOQL are INVALID_TYPE with a caret diagram.
    let q = "SELECT Id FROM Nope__c";
    let msg = assert_sf_error(&org.query_raw(q), 400, "INVALID_TYPE");
    assert_caret(&msg, q);
}

/// One create that must be refused.
struct Bad {
    object: &'static str,
    body: Value,
    status: u16,
    code: &'static str,
    field: Option<&'static str>,
}

fn bad(object: &'static str, body: Value, code: &'static str, field: Option<&'static str>) -> Bad {
    Bad {
        object,
        body,
        status: 400,
        code,
        field,
    }
}

#[test]
fn bad_field_values_are_refused_on_create_and_update() {
    let org = Org::start("hostile-fields");
    // A custom object with the field types standard objects lack (datetime, unique text,
    // restricted picklist).
    let (s, b) = org.tooling(
        "CustomObject",
        "Gadget__c",
        json!({"label": "Gadget", "pluralLabel": "Gadgets", "nameField": {"type": "Text", "label": "Gadget Name"}}),
    );
    assert_eq!(s, 201, "{b}");
    for (name, meta) in [
        (
            "Code__c",
            json!({"type": "Text", "length": 10, "unique": true, "externalId": true}),
        ),
        ("Seen__c", json!({"type": "DateTime"})),
        (
            "Tint__c",
            json!({"type": "Picklist", "valueSet": {"restricted": true, "valueSetDefinition": {"value": [{"fullName": "Red"}, {"fullName": "Blue"}]}}}),
        ),
        (
            "Owner_Account__c",
            json!({"type": "Lookup", "referenceTo": "Account", "relationshipName": "Gadgets"}),
        ),
        (
            "Ratio__c",
            json!({"type": "Number", "precision": 5, "scale": 2}),
        ),
    ] {
        let (s, b) = org.tooling("CustomField", &format!("Gadget__c.{name}"), meta);
        assert_eq!(s, 201, "{name}: {b}");
    }

    let acc = org.create("Account", json!({"Name": "Base", "NumberOfEmployees": 5}));
    let con = org.create("Contact", json!({"LastName": "Keep", "AccountId": acc}));
    let gadget = org.create("Gadget__c", json!({"Name": "G1", "Code__c": "E-1"}));
    let gone = org.create("Account", json!({"Name": "Gone"}));
    let (s, _) = org.call(
        Method::DELETE,
        &org.data(&format!("/sobjects/Account/{gone}")),
        None,
    );
    assert_eq!(s, 204);
    let nowhere = unused_id(&acc);
    let long = "x".repeat(256);

    let cases = vec![
        bad(
            "Account",
            json!({"Name": "x", "Bogus__c": 1}),
            "INVALID_FIELD",
            None,
        ),
        bad(
            "Account",
            json!({"Name": "x", "NumberOfEmployees": "many"}),
            "JSON_PARSER_ERROR",
            None,
        ),
        bad(
            "Account",
            json!({"Name": "x", "NumberOfEmployees": 1.5}),
            "JSON_PARSER_ERROR",
            None,
        ),
        bad(
            "Account",
            json!({"Name": "x", "NumberOfEmployees": true}),
            "JSON_PARSER_ERROR",
            None,
        ),
        bad(
            "Account",
            json!({"Name": "x", "NumberOfEmployees": 123_456_789}),
            "NUMBER_OUTSIDE_VALID_RANGE",
            Some("NumberOfEmployees"),
        ),
        bad(
            "Account",
            json!({"Name": "x", "AnnualRevenue": "lots"}),
            "JSON_PARSER_ERROR",
            None,
        ),
        bad(
            "Account",
            json!({"Name": "x", "AnnualRevenue": [1]}),
            "JSON_PARSER_ERROR",
            None,
        ),
        bad(
            "Account",
            json!({"Name": {"first": "x"}}),
            "JSON_PARSER_ERROR",
            None,
        ),
        bad("Account", json!({"Name": ["x"]}), "JSON_PARSER_ERROR", None),
        bad(
            "Account",
            json!({"Name": "x", "Description": {"a": [1, 2]}}),
            "JSON_PARSER_ERROR",
            None,
        ),
        bad(
            "Account",
            json!({"Name": "x", "ParentId": "not-an-id"}),
            "MALFORMED_ID",
            Some("ParentId"),
        ),
        bad(
            "Account",
            json!({"Name": "x", "ParentId": "001"}),
            "MALFORMED_ID",
            Some("ParentId"),
        ),
        bad(
            "Account",
            json!({"Name": "x", "ParentId": 12}),
            "JSON_PARSER_ERROR",
            None,
        ),
        bad(
            "Account",
            json!({"Name": "x", "ParentId": con}),
            "FIELD_INTEGRITY_EXCEPTION",
            Some("ParentId"),
        ),
        bad(
            "Account",
            json!({"Name": "x", "ParentId": nowhere}),
            "INVALID_CROSS_REFERENCE_KEY",
            Some("ParentId"),
        ),
        bad(
            "Account",
            json!({"Name": "x", "ParentId": gone}),
            "ENTITY_IS_DELETED",
            Some("ParentId"),
        ),
        bad(
            "Account",
            json!({"Name": long}),
            "STRING_TOO_LONG",
            Some("Name"),
        ),
        bad(
            "Account",
            json!({"Name": "x", "CreatedDate": "2020-01-01T00:00:00Z"}),
            "INVALID_FIELD_FOR_INSERT_UPDATE",
            Some("CreatedDate"),
        ),
        bad(
            "Account",
            json!({"Name": "x", "Id": acc}),
            "INVALID_FIELD_FOR_INSERT_UPDATE",
            Some("Id"),
        ),
        bad(
            "Account",
            json!({"Name": "x", "IsDeleted": true}),
            "INVALID_FIELD_FOR_INSERT_UPDATE",
            Some("IsDeleted"),
        ),
        bad(
            "Account",
            json!({"Name": "x", "LastModifiedById": con}),
            "INVALID_FIELD_FOR_INSERT_UPDATE",
            Some("LastModifiedById"),
        ),
        bad(
            "Contact",
            json!({"LastName": "x", "Birthdate": "yesterday"}),
            "JSON_PARSER_ERROR",
            None,
        ),
        bad(
            "Contact",
            json!({"LastName": "x", "Birthdate": "2023-02-29"}),
            "JSON_PARSER_ERROR",
            None,
        ),
        bad(
            "Contact",
            json!({"LastName": "x", "Birthdate": 20230101}),
            "JSON_PARSER_ERROR",
            None,
        ),
        bad(
            "Contact",
            json!({"LastName": "x", "DoNotCall": "maybe"}),
            "JSON_PARSER_ERROR",
            None,
        ),
        bad(
            "Contact",
            json!({"LastName": "x", "DoNotCall": 1}),
            "JSON_PARSER_ERROR",
            None,
        ),
        bad(
            "Contact",
            json!({"LastName": "x", "Email": "not an email"}),
            "INVALID_EMAIL_ADDRESS",
            Some("Email"),
        ),
        bad(
            "Contact",
            json!({"LastName": "x", "Email": "a@b"}),
            "INVALID_EMAIL_ADDRESS",
            Some("Email"),
        ),
        bad(
            "Contact",
            json!({"LastName": "x", "Email": "@example.com"}),
            "INVALID_EMAIL_ADDRESS",
            Some("Email"),
        ),
        bad(
            "Contact",
            json!({"LastName": "x", "Name": "Full Name"}),
            "INVALID_FIELD_FOR_INSERT_UPDATE",
            Some("Name"),
        ),
        bad(
            "Contact",
            json!({"LastName": "x", "AccountId": gadget}),
            "FIELD_INTEGRITY_EXCEPTION",
            Some("AccountId"),
        ),
        bad(
            "Contact",
            json!({"FirstName": "x"}),
            "REQUIRED_FIELD_MISSING",
            Some("LastName"),
        ),
        bad("Account", json!({}), "REQUIRED_FIELD_MISSING", Some("Name")),
        bad(
            "Account",
            json!({"Name": null}),
            "REQUIRED_FIELD_MISSING",
            Some("Name"),
        ),
        bad(
            "Account",
            json!({"Name": ""}),
            "REQUIRED_FIELD_MISSING",
            Some("Name"),
        ),
        bad(
            "Opportunity",
            json!({"Name": "o", "CloseDate": "2024-01-01"}),
            "REQUIRED_FIELD_MISSING",
            Some("StageName"),
        ),
        bad(
            "Order",
            json!({"Status": "Draft", "EffectiveDate": "2024-01-01"}),
            "REQUIRED_FIELD_MISSING",
            Some("AccountId"),
        ),
        bad(
            "Case",
            json!({"Subject": "s", "CaseNumber": "123"}),
            "INVALID_FIELD_FOR_INSERT_UPDATE",
            Some("CaseNumber"),
        ),
        bad(
            "Opportunity",
            json!({"Name": "o", "StageName": "Prospecting", "CloseDate": "2024-01-01", "IsWon": true}),
            "INVALID_FIELD_FOR_INSERT_UPDATE",
            Some("IsWon"),
        ),
        bad(
            "Gadget__c",
            json!({"Name": "g", "Seen__c": "tomorrow"}),
            "JSON_PARSER_ERROR",
            None,
        ),
        bad(
            "Gadget__c",
            json!({"Name": "g", "Seen__c": 1_700_000_000}),
            "JSON_PARSER_ERROR",
            None,
        ),
        bad(
            "Gadget__c",
            json!({"Name": "g", "Seen__c": "2024-01-01T25:00:00Z"}),
            "JSON_PARSER_ERROR",
            None,
        ),
        bad(
            "Gadget__c",
            json!({"Name": "g", "Tint__c": "Green"}),
            "INVALID_OR_NULL_FOR_RESTRICTED_PICKLIST",
            Some("Tint__c"),
        ),
        bad(
            "Gadget__c",
            json!({"Name": "g", "Tint__c": "red"}),
            "INVALID_OR_NULL_FOR_RESTRICTED_PICKLIST",
            Some("Tint__c"),
        ),
        bad(
            "Gadget__c",
            json!({"Name": "g", "Code__c": "E-1"}),
            "DUPLICATE_VALUE",
            Some("Code__c"),
        ),
        bad(
            "Gadget__c",
            json!({"Name": "g", "Code__c": "e-1"}),
            "DUPLICATE_VALUE",
            Some("Code__c"),
        ),
        bad(
            "Gadget__c",
            json!({"Name": "g", "Code__c": "12345678901"}),
            "STRING_TOO_LONG",
            Some("Code__c"),
        ),
        bad(
            "Gadget__c",
            json!({"Name": "g", "Ratio__c": 1000}),
            "NUMBER_OUTSIDE_VALID_RANGE",
            Some("Ratio__c"),
        ),
        bad(
            "Gadget__c",
            json!({"Name": "g", "Ratio__c": "1,5"}),
            "JSON_PARSER_ERROR",
            None,
        ),
        bad(
            "Gadget__c",
            json!({"Name": "g", "Owner_Account__c": con}),
            "FIELD_INTEGRITY_EXCEPTION",
            Some("Owner_Account__c"),
        ),
        bad(
            "Gadget__c",
            json!({"Name": "g", "Owner_Account__c": "001XYZ"}),
            "MALFORMED_ID",
            Some("Owner_Account__c"),
        ),
        bad(
            "Gadget__c",
            json!({"Name": "g", "Owner_Account__r": {"Nope__c": "Base"}}),
            "INVALID_FIELD",
            None,
        ),
    ];

    let before: Vec<(&str, u64)> = [
        "Account",
        "Contact",
        "Opportunity",
        "Order",
        "Case",
        "Gadget__c",
    ]
    .into_iter()
    .map(|o| (o, count(&org, o)))
    .collect();
    for c in &cases {
        let r = org.send_body(
            Method::POST,
            &org.data(&format!("/sobjects/{}", c.object)),
            c.body.to_string(),
        );
        assert_sf_error(&r, c.status, c.code);
        if let Some(f) = c.field {
            assert_eq!(r.json()[0]["fields"], json!([f]), "fields of {}", r.text);
        }
    }
    for (o, n) in &before {
        assert_eq!(count(&org, o), *n, "a refused create wrote a {o}");
    }

    // The same refusals on update leave the records exactly as they were.
    let targets = [
        ("Account", acc.as_str()),
        ("Contact", con.as_str()),
        ("Gadget__c", gadget.as_str()),
    ];
    let snapshot: Vec<Value> = targets.iter().map(|(o, id)| org.get(o, id)).collect();
    let mut updates: Vec<(&str, Value, &str)> = cases
        .iter()
        .filter(|c| c.code != "REQUIRED_FIELD_MISSING" && c.code != "DUPLICATE_VALUE")
        .filter(|c| c.body.get("Id").is_none())
        .filter_map(|c| {
            let obj = targets.iter().find(|(o, _)| *o == c.object)?.0;
            let mut body = c.body.clone();
            // Updates send only the offending field.
            let m = body.as_object_mut()?;
            let base = if obj == "Contact" { "LastName" } else { "Name" };
            if m.len() > 1 {
                m.remove(base);
            }
            Some((obj, body, c.code))
        })
        .collect();
    updates.extend([
        ("Account", json!({"Name": null}), "REQUIRED_FIELD_MISSING"),
        ("Account", json!({"Name": ""}), "REQUIRED_FIELD_MISSING"),
        (
            "Contact",
            json!({"LastName": null}),
            "REQUIRED_FIELD_MISSING",
        ),
        (
            "Account",
            json!({"Name": "Changed", "NumberOfEmployees": "bad"}),
            "JSON_PARSER_ERROR",
        ),
        (
            "Account",
            json!({"Name": "Changed", "Bogus__c": 1}),
            "INVALID_FIELD",
        ),
    ]);
    assert!(updates.len() > 30, "{} update cases", updates.len());
    for (obj, body, code) in &updates {
        let id = targets.iter().find(|(o, _)| o == obj).expect("target").1;
        let r = org.send_body(
            Method::PATCH,
            &org.data(&format!("/sobjects/{obj}/{id}")),
            body.to_string(),
        );
        if r.status != 400 {
            panic!("PATCH {obj} {body}: {} {}", r.status, r.text);
        }
        assert_sf_error(&r, 400, code);
    }
    // A unique value taken by another record.
    let other = org.create("Gadget__c", json!({"Name": "G2", "Code__c": "E-2"}));
    for code in ["E-1", "e-1"] {
        let r = org.send_body(
            Method::PATCH,
            &org.data(&format!("/sobjects/Gadget__c/{other}")),
            json!({"Code__c": code}).to_string(),
        );
        assert_sf_error(&r, 400, "DUPLICATE_VALUE");
    }
    assert_eq!(org.get("Gadget__c", &other)["Code__c"], "E-2");
    for ((o, id), before) in targets.iter().zip(&snapshot) {
        assert_eq!(&org.get(o, id), before, "a refused update changed {o} {id}");
    }
}

#[test]
fn oversized_bodies_and_urls_are_refused() {
    let data = data_dir("hostile-size");
    let org = Org::start_in(&data, &[], &["--max-body", "65536"]);
    let acc = org.create("Account", json!({"Name": "Small"}));
    let big = json!({"Name": "Big", "Description": "x".repeat(100 * 1024)}).to_string();
    assert!(big.len() > 100 * 1024);
    for (m, path) in [
        (Method::POST, "/sobjects/Account".to_string()),
        (Method::PATCH, format!("/sobjects/Account/{acc}")),
        (
            Method::PATCH,
            "/sobjects/Product2/ExternalId/BIG-1".to_string(),
        ),
        (Method::POST, "/tooling/sobjects/CustomObject".to_string()),
    ] {
        let r = org.send_body(m, &org.data(&path), big.clone());
        assert_sf_error(&r, 413, "REQUEST_ENTITY_TOO_LARGE");
        assert!(
            r.header("sforce-limit-info")
                .is_some_and(|v| v.starts_with("api-usage=")),
            "413 without Sforce-Limit-Info"
        );
    }
    // The same body without a Content-Length (chunked). The server answers before reading it all,
    // so send it over a raw connection that tolerates the early close.
    let path = org.data("/sobjects/Account");
    let path = path.strip_prefix(&org.srv.http).expect("local");
    let mut req = format!(
        "POST {path} HTTP/1.1\r\nHost: localhost\r\nAuthorization: Bearer {}\r\nContent-Type: application/json\r\nTransfer-Encoding: chunked\r\nConnection: close\r\n\r\n",
        org.token
    )
    .into_bytes();
    for chunk in big.as_bytes().chunks(8192) {
        req.extend_from_slice(format!("{:x}\r\n", chunk.len()).as_bytes());
        req.extend_from_slice(chunk);
        req.extend_from_slice(b"\r\n");
    }
    req.extend_from_slice(b"0\r\n\r\n");
    let r = raw_send(&org.srv.http, &req);
    assert_sf_error(&r, 413, "REQUEST_ENTITY_TOO_LARGE");
    // Just under the limit the body is read and judged on its content.
    let near = json!({"Name": "Near", "Description": "y".repeat(40_000)}).to_string();
    assert!(near.len() < 65536);
    let r = org.send_body(Method::POST, &org.data("/sobjects/Account"), near);
    assert_sf_error(&r, 400, "STRING_TOO_LONG");
    assert_eq!(count(&org, "Account"), 1);
    assert_eq!(count(&org, "Product2"), 0);
    assert_eq!(org.get("Account", &acc)["Name"], "Small");
    assert_eq!(org.get("Account", &acc)["Description"], Value::Null);

    // A 1 MB query string is refused before any work is done (the HTTP layer answers 414).
    let url = format!(
        "{}?q=SELECT+Id+FROM+Account&pad={}",
        org.data("/query"),
        "a".repeat(1024 * 1024)
    );
    let (status, _, _) = raw_get(&org, &url);
    assert!(matches!(status, 414 | 431), "1 MB query string: {status}");
    // A 1 MB path segment too, on a DELETE.
    let (status, _, _) = raw_request(
        &org,
        "DELETE",
        &org.data(&format!("/sobjects/Account/{}", "0".repeat(1024 * 1024))),
    );
    assert!(matches!(status, 414 | 431), "1 MB path: {status}");
    // The server is still serving and nothing changed.
    assert_eq!(count(&org, "Account"), 1);
}

#[test]
fn soql_literals_cannot_inject() {
    let org = Org::start("hostile-soql-literals");
    let tricky = "x' OR '1'='1";
    let id = org.create("Account", json!({"Name": tricky}));
    org.create("Account", json!({"Name": "x"}));
    org.create("Account", json!({"Name": "1"}));
    org.create("Account", json!({"Name": "back\\slash"}));

    // The SQL-looking name matches itself, literally, and nothing else.
    let q = org.query("SELECT Id, Name FROM Account WHERE Name = 'x\\' OR \\'1\\'=\\'1'");
    assert_eq!(q["totalSize"], 1, "{q}");
    assert_eq!(q["records"][0]["Id"], id.as_str());
    assert_eq!(q["records"][0]["Name"], tricky);
    let q = org.query("SELECT Id FROM Account WHERE Name LIKE '%\\' OR \\'%'");
    assert_eq!(q["totalSize"], 1, "{q}");
    let q = org.query("SELECT Name FROM Account WHERE Name = 'back\\\\slash'");
    assert_eq!(q["records"][0]["Name"], "back\\slash");

    // Escaped injection attempts are plain strings that match nothing.
    for literal in [
        "\\' OR Name != \\'",
        "\\' OR 1=1 --",
        "x\\'; DELETE FROM Account; --",
        "%\\' OR \\'\\'=\\'",
        "x\\' UNION SELECT Id FROM User --",
    ] {
        let q = org.query(&format!("SELECT Id FROM Account WHERE Name = '{literal}'"));
        assert_eq!(q["totalSize"], 0, "{literal}: {q}");
    }

    // Unescaped ones are syntax errors, with the caret on the offending token.
    for soql in [
        "SELECT Id FROM Account WHERE Name = '' OR Name != ''' OR ''",
        "SELECT Id FROM Account WHERE Name = 'x' OR '1'='1'",
        "SELECT Id FROM Account WHERE Name = '' OR 1=1 --'",
        "SELECT Id FROM Account WHERE Name = 'x'; DELETE FROM Account",
        "SELECT Id FROM Account WHERE Name = 'x'; DELETE FROM Account --'",
        "SELECT Id FROM Account WHERE Name = 'x' -- comment",
        "SELECT Id FROM Account /* comment */",
        "SELECT Id FROM Account UNION SELECT Id FROM User",
        "SELECT Id FROM Account WHERE Name = 'unterminated",
        "SELECT Id FROM Account WHERE Name = 'x\\'",
        "SELECT Id FROM Account WHERE Name = \"double\"",
        "SELECT Id FROM Account WHERE Name = 'bad \\q escape'",
        "SELECT Id FROM Account WHERE 1=1",
        "SELECT Id FROM Account WHERE 'a'='a'",
        "SELECT Id FROM Account WHERE Name = Name",
        "SELECT Id FROM Account WHERE Name = 'x' OR 1=1",
        "SELECT Id FROM Account WHERE TRUE",
        "SELECT * FROM Account",
        "DELETE FROM Account",
        "SELECT Id FROM Account; SELECT Id FROM User",
    ] {
        let msg = assert_sf_error(&org.query_raw(soql), 400, "MALFORMED_QUERY");
        assert_caret(&msg, soql);
    }
    assert_eq!(count(&org, "Account"), 4, "the data is untouched");
    assert_eq!(org.get("Account", &id)["Name"], tricky);
}

#[test]
fn soql_structure_abuse_is_refused() {
    let org = Org::start("hostile-soql-structure");
    let acc = org.create("Account", json!({"Name": "Acme"}));
    org.create("Contact", json!({"LastName": "Smith", "AccountId": acc}));

    let deep = format!(
        "SELECT Id FROM Account WHERE {}Name = 'a'{}",
        "(".repeat(5000),
        ")".repeat(5000)
    );
    let msg = assert_sf_error(&org.query_raw(&deep), 400, "MALFORMED_QUERY");
    assert_caret(&msg, &deep);
    let nots = format!(
        "SELECT Id FROM Account WHERE {}Name = 'a'",
        "NOT ".repeat(5000)
    );
    assert_sf_error(&org.query_raw(&nots), 400, "MALFORMED_QUERY");
    let unbalanced = format!("SELECT Id FROM Account WHERE {}Name = 'a'", "(".repeat(40));
    let msg = assert_sf_error(&org.query_raw(&unbalanced), 400, "MALFORMED_QUERY");
    assert_caret(&msg, &unbalanced);
    // A long but legal statement is answered (long lines are windowed in diagrams, not here).
    let long = format!(
        "SELECT Id FROM Account WHERE Name = '{}'",
        "n".repeat(50_000)
    );
    assert_eq!(org.query(&long)["totalSize"], 0);
    let long_bad = format!("{long} AND");
    let msg = assert_sf_error(&org.query_raw(&long_bad), 400, "MALFORMED_QUERY");
    assert!(msg.len() < 5_000, "the diagram of a long line is windowed");
    assert!(
        msg.contains(&format!("Column:{}", long_bad.len() + 1)),
        "{}",
        &msg[msg.len() - 200..]
    );
    // Over 100,000 characters cannot even be sent as a GET URL: the HTTP layer answers 414.
    let huge = format!(
        "SELECT Id FROM Account WHERE Name = '{}'",
        "n".repeat(100_001)
    );
    let (status, _, _) = raw_get(&org, &org.query_url("query", &huge));
    assert!(
        matches!(status, 414 | 431),
        "100,001-character query: {status}"
    );

    let cases: &[(&str, &str)] = &[
        ("SELECT Idd FROM Account", "INVALID_FIELD"),
        ("SELECT Id FROM Account WHERE Nope__c = 1", "INVALID_FIELD"),
        ("SELECT Id FROM Account ORDER BY Nope", "INVALID_FIELD"),
        ("SELECT Id, Nope.Name FROM Contact", "INVALID_FIELD"),
        ("SELECT Id, Account.Nope FROM Contact", "INVALID_FIELD"),
        ("SELECT Id, Account.Owner.Nope FROM Contact", "INVALID_FIELD"),
        ("SELECT Id FROM Contact WHERE Account.Nope = 'x'", "INVALID_FIELD"),
        ("SELECT Id, (SELECT Id FROM Nopes) FROM Account", "INVALID_TYPE"),
        ("SELECT Id FROM Nope__c", "INVALID_TYPE"),
        ("SELECT Id FROM Account WHERE Id IN (SELECT AccountId FROM Nope__c)", "INVALID_TYPE"),
        ("SELECT Id FROM Account WHERE NumberOfEmployees = 'abc'", "INVALID_FIELD"),
        ("SELECT Id FROM Account WHERE Name = 5", "INVALID_FIELD"),
        ("SELECT Id FROM Account WHERE CreatedDate > 2020-01-01", "INVALID_FIELD"),
        ("SELECT Id FROM Contact WHERE Birthdate = 2020-02-30", "MALFORMED_QUERY"),
        ("SELECT Id FROM Contact WHERE Birthdate = 2020-13-01", "MALFORMED_QUERY"),
        ("SELECT Id FROM Account WHERE CreatedDate > 2020-01-01T25:00:00Z", "MALFORMED_QUERY"),
        ("SELECT Id FROM Account WHERE CreatedDate > 2020-01-01T00:00:00", "MALFORMED_QUERY"),
        ("SELECT Id FROM Account WHERE CreatedDate > NEXT_DECADE", "MALFORMED_QUERY"),
        ("SELECT Id FROM Account WHERE CreatedDate > LAST_N_DAYS", "MALFORMED_QUERY"),
        ("SELECT Id FROM Account WHERE CreatedDate > LAST_N_DAYS:abc", "MALFORMED_QUERY"),
        ("SELECT Id FROM Account WHERE CreatedDate > TODAY:3", "MALFORMED_QUERY"),
        ("SELECT Id FROM Account LIMIT -1", "MALFORMED_QUERY"),
        ("SELECT Id FROM Account LIMIT 99999999999999999999", "MALFORMED_QUERY"),
        ("SELECT COUNT(), Id FROM Account", "MALFORMED_QUERY"),
        ("SELECT FROM Account", "MALFORMED_QUERY"),
        ("SELECT Id FROM", "MALFORMED_QUERY"),
        // Semi-join abuse.
        ("SELECT Id FROM Account WHERE Id IN (SELECT AccountId FROM Contact WHERE AccountId IN (SELECT Id FROM Account))", "MALFORMED_QUERY"),
        ("SELECT Id FROM Account WHERE Id IN (SELECT AccountId, Id FROM Contact)", "MALFORMED_QUERY"),
        ("SELECT Id FROM Account WHERE Id IN (SELECT LastName FROM Contact)", "MALFORMED_QUERY"),
        ("SELECT Id FROM Account WHERE Id IN (SELECT COUNT() FROM Contact)", "MALFORMED_QUERY"),
        ("SELECT Id FROM Account WHERE Name IN (SELECT LastName FROM Contact)", "MALFORMED_QUERY"),
        ("SELECT Id FROM Account WHERE ParentId IN (SELECT Id FROM Contact)", "MALFORMED_QUERY"),
        ("SELECT Id FROM Account WHERE Id IN (SELECT AccountId FROM Contact", "MALFORMED_QUERY"),
    ];
    for (soql, code) in cases {
        let msg = assert_sf_error(&org.query_raw(soql), 400, code);
        assert_caret(&msg, soql);
    }
    // No query string at all.
    let r = org.send(Method::GET, &org.data("/query"), &[], None);
    assert_sf_error(&r, 400, "MALFORMED_QUERY");
    let r = org.send(Method::GET, &org.data("/query?q="), &[], None);
    assert_sf_error(&r, 400, "MALFORMED_QUERY");
    assert_eq!(count(&org, "Account"), 1);
    assert_eq!(count(&org, "Contact"), 1);
}

#[test]
fn path_abuse_is_contained() {
    let org = Org::start("hostile-paths");
    let acc = org.create("Account", json!({"Name": "Target"}));
    let base = org.srv.http.clone();
    let token = org.token.clone();
    let raw = |method: &str, path: &str, body: &str| -> Raw {
        let req = format!(
            "{method} {path} HTTP/1.1\r\nHost: localhost\r\nAuthorization: Bearer {token}\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
            body.len()
        );
        raw_send(&base, req.as_bytes())
    };
    let v = crate::harness::V;
    // `..` segments are never resolved against the file system or other resources.
    for path in [
        format!("/services/data/{v}/sobjects/Account/../../../../etc/passwd"),
        format!("/services/data/{v}/sobjects/Account/{acc}/.."),
        format!("/services/data/{v}/sobjects/../sobjects/Account/{acc}"),
        format!("/services/data/{v}/sobjects/Account/%2e%2e/%2e%2e/limits"),
        "/services/data/../../etc/passwd".to_string(),
        "/services/../../../etc/passwd".to_string(),
    ] {
        let r = raw("GET", &path, "");
        assert_sf_error(&r, 404, "NOT_FOUND");
        let r = raw("PATCH", &path, r#"{"Name":"Hacked"}"#);
        assert_sf_error(&r, 404, "NOT_FOUND");
        let r = raw("DELETE", &path, "");
        assert_sf_error(&r, 404, "NOT_FOUND");
    }
    // Odd ids: an escaped slash, very long, non-ASCII, NUL, an id of another object.
    let odd = [
        format!("{}%2F{}", &acc[..6], &acc[6..]),
        format!("{}%2f..%2f{}", &acc[..6], &acc[6..]),
        "0".repeat(10_000),
        format!("{}é", &acc[..17]),
        "%C3%A9%C3%A9%C3%A9%C3%A9%C3%A9%C3%A9%C3%A9%C3%A9%C3%A9%C3%A9%C3%A9%C3%A9%C3%A9%C3%A9%C3%A9"
            .to_string(),
        format!("{}%00", &acc[..15]),
        format!("003{}", &acc[3..]),
        "%FF%FE".to_string(),
    ];
    for id in &odd {
        let url = org.data(&format!("/sobjects/Account/{id}"));
        let r = org.send(Method::GET, &url, &[], None);
        assert_sf_error(&r, 404, "NOT_FOUND");
        let r = org.send_body(Method::PATCH, &url, r#"{"Name":"Hacked"}"#);
        assert_sf_error(&r, 404, "NOT_FOUND");
        let r = org.send(Method::DELETE, &url, &[], None);
        assert_sf_error(&r, 404, "NOT_FOUND");
    }
    // Versions: unknown, retired, malformed.
    for (ver, status, code) in [
        ("v99.0", 404, "NOT_FOUND"),
        ("v20.0", 410, "GONE"),
        ("v30.0", 410, "GONE"),
        ("v59", 404, "NOT_FOUND"),
        ("59.0", 404, "NOT_FOUND"),
        ("vABC", 404, "NOT_FOUND"),
        ("v59.0.1", 404, "NOT_FOUND"),
    ] {
        for path in ["/limits", &format!("/sobjects/Account/{acc}")] {
            let r = org.send(Method::GET, &org.data_at(ver, path), &[], None);
            assert_sf_error(&r, status, code);
            let r = org.send_body(
                Method::PATCH,
                &org.data_at(ver, path),
                r#"{"Name":"Hacked"}"#,
            );
            assert_sf_error(&r, status, code);
        }
    }
    // Methods a resource does not support.
    for (m, path) in [
        (Method::PUT, format!("/sobjects/Account/{acc}")),
        (Method::POST, format!("/sobjects/Account/{acc}")),
        (Method::PUT, "/sobjects/Account".to_string()),
        (Method::DELETE, "/sobjects/Account".to_string()),
        (Method::POST, "/query?q=SELECT+Id+FROM+Account".to_string()),
        (Method::DELETE, "/sobjects".to_string()),
        (Method::POST, "/limits".to_string()),
        (Method::PATCH, "/sobjects/Account/describe".to_string()),
    ] {
        let r = org.send_body(m.clone(), &org.data(&path), r#"{"Name":"Hacked"}"#);
        let msg = assert_sf_error(&r, 405, "METHOD_NOT_ALLOWED");
        assert!(msg.contains(&format!("'{m}'")), "{msg}");
    }
    // Nothing anywhere was written.
    assert_eq!(count(&org, "Account"), 1);
    let a = org.get("Account", &acc);
    assert_eq!(a["Name"], "Target");
    assert_eq!(a["CreatedDate"], a["LastModifiedDate"]);
}

#[test]
fn bad_credentials_are_invalid_session_id() {
    let org = Org::start("hostile-auth");
    let url = org.data("/sobjects/Account");
    let tampered = format!("{}x", org.token);
    let cases: Vec<Option<String>> = vec![
        None,
        Some("garbage".into()),
        Some("Bearer".into()),
        Some("Bearer ".into()),
        Some("Bearer    ".into()),
        Some("OAuth ".into()),
        Some(format!("Bearer {tampered}")),
        Some(format!("Bearer {}", &org.token[..org.token.len() - 1])),
        Some("Bearer a.b.c".into()),
        Some("Basic YWRtaW46cGFzc3dvcmQ=".into()),
        Some(format!("Basic {}", org.token)),
        Some(format!("{} Bearer", org.token)),
    ];
    for auth in &cases {
        for m in [Method::GET, Method::POST] {
            let mut req = org.http.request(m.clone(), &url);
            if let Some(a) = auth {
                req = req.header("Authorization", a.as_str());
            }
            if m == Method::POST {
                req = req
                    .header("Content-Type", "application/json")
                    .body(r#"{"Name":"Sneaky"}"#);
            }
            let resp = req.send().expect("request");
            let r = Raw {
                status: resp.status().as_u16(),
                headers: resp.headers().clone(),
                text: resp.text().unwrap_or_default(),
            };
            assert_sf_error(&r, 401, "INVALID_SESSION_ID");
        }
    }
    // Other resources answer the same way, queries included.
    for path in [
        "/limits",
        "/query?q=SELECT+Id+FROM+Account",
        "/sobjects",
        "/tooling/sobjects",
    ] {
        let resp = org
            .http
            .get(org.data(path))
            .header("Authorization", "Bearer nope")
            .send()
            .expect("request");
        let r = Raw {
            status: resp.status().as_u16(),
            headers: resp.headers().clone(),
            text: resp.text().unwrap_or_default(),
        };
        assert_sf_error(&r, 401, "INVALID_SESSION_ID");
    }
    assert_eq!(
        count(&org, "Account"),
        0,
        "no unauthenticated create went through"
    );
}

#[test]
fn daily_api_limit_refuses_requests_and_reports_usage() {
    let data = data_dir("hostile-limit");
    let org = Org::start_in(&data, &[], &["--daily-api-requests", "5"]);
    for n in 1..=5 {
        let r = if n == 3 {
            org.send_body(
                Method::POST,
                &org.data("/sobjects/Account"),
                r#"{"Name":"Counted"}"#,
            )
        } else {
            org.send(Method::GET, &org.data("/limits"), &[], None)
        };
        assert!(r.status == 200 || r.status == 201, "call {n}: {}", r.text);
        assert_eq!(
            r.header("sforce-limit-info"),
            Some(format!("api-usage={n}/5").as_str()),
            "call {n}"
        );
        if n == 4 {
            let l = r.json();
            assert_eq!(l["DailyApiRequests"]["Max"], 5);
            assert_eq!(l["DailyApiRequests"]["Remaining"], 1);
        }
    }
    // The sixth call and every later one is refused, writes included.
    for (m, path, body) in [
        (Method::GET, "/limits", None),
        (
            Method::POST,
            "/sobjects/Account",
            Some(br#"{"Name":"Over the limit"}"#.to_vec()),
        ),
        (Method::GET, "/query?q=SELECT+Id+FROM+Account", None),
    ] {
        let r = org.send(
            m,
            &org.data(path),
            &[("Content-Type", "application/json")],
            body,
        );
        assert_sf_error(&r, 403, "REQUEST_LIMIT_EXCEEDED");
        assert_eq!(r.header("sforce-limit-info"), Some("api-usage=5/5"));
    }
    // The versions list is not counted and still answers.
    let (s, _) = org.call(Method::GET, &org.url("/services/data/"), None);
    assert_eq!(s, 200);

    // After a restart (usage is per process) only the one counted create is there.
    let Org { srv, .. } = org;
    srv.stop().expect("clean stop");
    let org = Org::start_in(&data, &[], &["--daily-api-requests", "5"]);
    let q = org.query("SELECT Name FROM Account");
    assert_eq!(q["totalSize"], 1, "{q}");
    assert_eq!(q["records"][0]["Name"], "Counted");
}
