//! Bulk API 2.0 against a real server: ingest jobs (every operation, delimiter and line ending,
//! result files), query jobs (locator paging), the job lifecycle, and `kill -9` in the middle of
//! a 200,000-row upsert (the job resumes and every row is processed exactly once).

use std::collections::HashSet;
use std::time::{Duration, Instant};

use reqwest::Method;
use serde_json::{json, Value};

use crate::harness::{assert_sf_error, data_dir, Org, Raw};

const CSV: (&str, &str) = ("Content-Type", "text/csv");
const JSON: (&str, &str) = ("Content-Type", "application/json");

impl Org {
    fn jobs(&self, rest: &str) -> String {
        self.data(&format!("/jobs/{rest}"))
    }

    /// `POST /jobs/{kind}` with a JSON body; asserts 200 and returns the job.
    fn create_job(&self, kind: &str, spec: Value) -> Value {
        let r = self.send(
            Method::POST,
            &self.jobs(kind),
            &[JSON],
            Some(spec.to_string().into_bytes()),
        );
        assert_eq!(r.status, 200, "create {kind} job: {}", r.text);
        r.json()
    }

    fn upload(&self, id: &str, csv: &str) -> Raw {
        self.send(
            Method::PUT,
            &self.jobs(&format!("ingest/{id}/batches")),
            &[CSV],
            Some(csv.as_bytes().to_vec()),
        )
    }

    fn set_state(&self, kind: &str, id: &str, state: &str) -> Raw {
        self.send(
            Method::PATCH,
            &self.jobs(&format!("{kind}/{id}")),
            &[JSON],
            Some(json!({ "state": state }).to_string().into_bytes()),
        )
    }

    fn job_info(&self, kind: &str, id: &str) -> Value {
        let r = self.send(Method::GET, &self.jobs(&format!("{kind}/{id}")), &[], None);
        assert_eq!(r.status, 200, "{}", r.text);
        r.json()
    }

    /// Polls until the job is terminal.
    fn wait(&self, kind: &str, id: &str) -> Value {
        let t = Instant::now();
        loop {
            let info = self.job_info(kind, id);
            if matches!(
                info["state"].as_str(),
                Some("JobComplete" | "Failed" | "Aborted")
            ) {
                return info;
            }
            assert!(
                t.elapsed() < Duration::from_secs(300),
                "job {id} did not finish: {info}"
            );
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// Creates, uploads, closes and waits for an ingest job.
    pub(crate) fn ingest(&self, spec: Value, csv: &str) -> Value {
        let job = self.create_job("ingest", spec);
        let id = job["id"].as_str().unwrap().to_string();
        let up = self.upload(&id, csv);
        assert_eq!(up.status, 201, "{}", up.text);
        let r = self.set_state("ingest", &id, "UploadComplete");
        assert_eq!(r.status, 200, "{}", r.text);
        self.wait("ingest", &id)
    }

    pub(crate) fn results(&self, id: &str, which: &str) -> Raw {
        let r = self.send(
            Method::GET,
            &self.jobs(&format!("ingest/{id}/{which}")),
            &[],
            None,
        );
        assert_eq!(r.status, 200, "{which}: {}", r.text);
        assert_eq!(r.header("content-type"), Some("text/csv"));
        r
    }
}

/// A small CSV reader for the tests (quotes, `""`, any delimiter, LF or CRLF).
fn parse_csv(text: &str, delim: char) -> Vec<Vec<String>> {
    let mut rows = Vec::new();
    let mut row = Vec::new();
    let mut field = String::new();
    let mut quoted = false;
    let mut chars = text.chars().peekable();
    while let Some(c) = chars.next() {
        if quoted {
            if c == '"' {
                if chars.peek() == Some(&'"') {
                    field.push('"');
                    chars.next();
                } else {
                    quoted = false;
                }
            } else {
                field.push(c);
            }
        } else if c == '"' {
            quoted = true;
        } else if c == delim {
            row.push(std::mem::take(&mut field));
        } else if c == '\n' || c == '\r' {
            if c == '\r' && chars.peek() == Some(&'\n') {
                chars.next();
            }
            row.push(std::mem::take(&mut field));
            rows.push(std::mem::take(&mut row));
        } else {
            field.push(c);
        }
    }
    if !field.is_empty() || !row.is_empty() {
        row.push(field);
        rows.push(row);
    }
    rows
}

fn is_job_date(v: &Value) -> bool {
    let s = v.as_str().unwrap_or("");
    s.len() == 28 && s.ends_with(".000+0000") && s.as_bytes()[10] == b'T'
}

#[test]
fn ingest_job_lifecycle_and_result_files() {
    let org = Org::start("bulk-lifecycle");
    let job = org.create_job(
        "ingest",
        json!({"object": "Account", "operation": "insert"}),
    );
    let id = job["id"].as_str().unwrap().to_string();
    assert!(id.starts_with("750") && id.len() == 18, "{job}");
    assert_eq!(job["state"], "Open");
    assert_eq!(job["object"], "Account");
    assert_eq!(job["apiVersion"], json!(59.0));
    assert!(job["apiVersion"].is_f64());
    assert_eq!(
        job["contentUrl"],
        format!("services/data/v59.0/jobs/ingest/{id}/batches")
    );
    assert_eq!(job["jobType"], "V2Ingest");
    assert_eq!(job["columnDelimiter"], "COMMA");
    assert_eq!(job["lineEnding"], "LF");
    assert!(
        is_job_date(&job["createdDate"]) && is_job_date(&job["systemModstamp"]),
        "{job}"
    );

    // Job info is JSON whatever Accept says, and carries no locator.
    let r = org.send(
        Method::GET,
        &org.jobs(&format!("ingest/{id}")),
        &[("Accept", "text/csv")],
        None,
    );
    assert_eq!(r.status, 200);
    assert_eq!(
        r.header("content-type"),
        Some("application/json;charset=UTF-8")
    );
    assert!(r.header("sforce-locator").is_none());
    assert_eq!(r.json()["numberRecordsProcessed"], 0);

    let csv = "Name,NumberOfEmployees,Industry\nAcme Bulk,10,Banking\n\"Quote, \"\"Inc\"\"\",abc,\n,5,Energy\nNull Bulk,#N/A,\n";
    let up = org.upload(&id, csv);
    assert_eq!(up.status, 201, "{}", up.text);
    assert!(up.text.is_empty());
    let again = org.upload(&id, csv);
    let msg = assert_sf_error(&again, 400, "INVALIDJOB");
    assert!(msg.contains("Found multiple contents for job"), "{msg}");

    let r = org.set_state("ingest", &id, "UploadComplete");
    assert_eq!(r.status, 200, "{}", r.text);
    assert_eq!(r.json()["state"], "UploadComplete");
    let info = org.wait("ingest", &id);
    assert_eq!(info["state"], "JobComplete", "{info}");
    assert_eq!(info["numberRecordsProcessed"], 4);
    assert_eq!(info["numberRecordsFailed"], 2);
    assert_eq!(info["errorMessage"], Value::Null);
    for k in [
        "retries",
        "totalProcessingTime",
        "apiActiveProcessingTime",
        "apexProcessingTime",
    ] {
        assert!(info[k].is_u64(), "{k}: {info}");
    }

    let ok = org.results(&id, "successfulResults");
    let rows = parse_csv(&ok.text, ',');
    assert!(
        ok.text
            .starts_with("\"sf__Id\",\"sf__Created\",Name,NumberOfEmployees,Industry\n"),
        "{}",
        ok.text
    );
    assert_eq!(rows.len(), 3, "{}", ok.text);
    assert_eq!(rows[1][1], "true");
    assert_eq!(&rows[1][2..], ["Acme Bulk", "10", "Banking"]);
    let acme = org.get("Account", &rows[1][0]);
    assert_eq!(acme["Name"], "Acme Bulk");
    assert_eq!(acme["NumberOfEmployees"], 10);
    let null = org.get("Account", &rows[2][0]);
    assert_eq!(null["NumberOfEmployees"], Value::Null);

    let bad = org.results(&id, "failedResults");
    let rows = parse_csv(&bad.text, ',');
    assert_eq!(
        rows[0],
        [
            "sf__Id",
            "sf__Error",
            "Name",
            "NumberOfEmployees",
            "Industry"
        ]
    );
    assert_eq!(rows.len(), 3, "{}", bad.text);
    assert_eq!(rows[1][0], "");
    assert!(
        rows[1][1].starts_with("JSON_PARSER_ERROR:"),
        "{}",
        rows[1][1]
    );
    assert_eq!(rows[1][2], "Quote, \"Inc\"");
    assert_eq!(
        rows[2][1],
        "REQUIRED_FIELD_MISSING:Required fields are missing: [Name]:Name --"
    );

    for which in [
        "unprocessedrecords",
        "unprocessedRecords",
        "UnprocessedRecords",
    ] {
        let r = org.results(&id, which);
        assert_eq!(r.text, "Name,NumberOfEmployees,Industry\n");
    }

    let r = org.set_state("ingest", &id, "UploadComplete");
    assert_sf_error(&r, 400, "INVALIDJOBSTATE");
    let r = org.set_state("ingest", &id, "Closed");
    assert_sf_error(&r, 400, "INVALIDJOBSTATE");

    let list = org.send(Method::GET, &org.jobs("ingest"), &[], None).json();
    assert_eq!(list["done"], true);
    assert_eq!(list["nextRecordsUrl"], Value::Null);
    assert!(list["records"]
        .as_array()
        .unwrap()
        .iter()
        .any(|j| j["id"] == id.as_str()));
    let none = org
        .send(Method::GET, &org.jobs("ingest?jobType=Classic"), &[], None)
        .json();
    assert_eq!(none["records"], json!([]));

    let r = org.send(
        Method::DELETE,
        &org.jobs(&format!("ingest/{id}")),
        &[],
        None,
    );
    assert_eq!(r.status, 204, "{}", r.text);
    let r = org.send(Method::GET, &org.jobs(&format!("ingest/{id}")), &[], None);
    assert_sf_error(&r, 404, "NOT_FOUND");
    let r = org.send(
        Method::GET,
        &org.jobs(&format!("ingest/{id}/successfulResults")),
        &[],
        None,
    );
    assert_sf_error(&r, 404, "NOT_FOUND");
    // Only the job's files were removed; the records stay.
    assert_eq!(
        org.count("SELECT COUNT() FROM Account WHERE Name = 'Acme Bulk'"),
        1
    );
}

#[test]
fn every_column_delimiter_and_line_ending() {
    let org = Org::start("bulk-dialects");
    let delimiters = [
        ("BACKQUOTE", '`'),
        ("CARET", '^'),
        ("COMMA", ','),
        ("PIPE", '|'),
        ("SEMICOLON", ';'),
        ("TAB", '\t'),
    ];
    for (name, d) in delimiters {
        for le in ["LF", "CRLF"] {
            let nl = if le == "LF" { "\n" } else { "\r\n" };
            let tag = format!("{name}-{le}");
            let csv = format!(
                "Name{d}Description{d}NumberOfEmployees{nl}{tag} one{d}\"has {d} and{nl}a line\"{d}7{nl}{tag} two{d}plain{d}{nl}"
            );
            let info = org.ingest(
                json!({"object": "Account", "operation": "insert", "columnDelimiter": name, "lineEnding": le}),
                &csv,
            );
            assert_eq!(info["state"], "JobComplete", "{tag}: {info}");
            assert_eq!(info["numberRecordsProcessed"], 2, "{tag}: {info}");
            assert_eq!(info["numberRecordsFailed"], 0, "{tag}: {info}");
            let q = org.query(&format!(
                "SELECT Description, NumberOfEmployees FROM Account WHERE Name = '{tag} one'"
            ));
            assert_eq!(
                q["records"][0]["Description"],
                format!("has {d} and{nl}a line"),
                "{tag}"
            );
            assert_eq!(q["records"][0]["NumberOfEmployees"], 7);
            let id = info["id"].as_str().unwrap();
            let ok = org.results(id, "successfulResults");
            assert!(ok.text.contains(nl), "{tag}");
            let rows = parse_csv(&ok.text, d);
            assert_eq!(
                rows[0][0..2],
                ["sf__Id", "sf__Created"],
                "{tag}: {}",
                ok.text
            );
            assert_eq!(rows.len(), 3, "{tag}: {}", ok.text);
        }
    }
    // Data whose line endings contradict the job's fails the job.
    let info = org.ingest(
        json!({"object": "Account", "operation": "insert"}),
        "Name\r\nX\r\n",
    );
    assert_eq!(info["state"], "Failed");
    assert!(
        info["errorMessage"]
            .as_str()
            .unwrap()
            .contains("LineEnding"),
        "{info}"
    );
}

#[test]
fn update_upsert_relationships_and_deletes() {
    let org = Org::start("bulk-operations");
    let (s, b) = org.tooling(
        "CustomField",
        "Account.Ext__c",
        json!({"label": "Ext", "type": "Text", "length": 20, "externalId": true, "unique": true}),
    );
    assert_eq!(s, 201, "{b}");
    let info = org.ingest(
        json!({"object": "Account", "operation": "insert"}),
        "Name,Ext__c,Industry,NumberOfEmployees\nOps A,A-1,Banking,1\nOps B,B-1,Energy,2\nOps Dup,a-1,,\n",
    );
    assert_eq!(info["numberRecordsFailed"], 1, "{info}");
    let bad = org.results(info["id"].as_str().unwrap(), "failedResults");
    assert!(
        bad.text.contains(
            "DUPLICATE_VALUE:duplicate value found: Ext__c duplicates value on record with id: 001"
        ),
        "{}",
        bad.text
    );
    let a = org.query("SELECT Id FROM Account WHERE Ext__c = 'A-1'")["records"][0]["Id"]
        .as_str()
        .unwrap()
        .to_string();

    // A relationship column sets the lookup through the parent's external id.
    let info = org.ingest(
        json!({"object": "Contact", "operation": "insert"}),
        "LastName,Account.Ext__c\nKid,A-1\nOrphan,NOPE\n",
    );
    assert_eq!(info["numberRecordsFailed"], 1, "{info}");
    let kid = org.query("SELECT AccountId FROM Contact WHERE LastName = 'Kid'");
    assert_eq!(kid["records"][0]["AccountId"], a.as_str());
    let bad = org.results(info["id"].as_str().unwrap(), "failedResults");
    assert!(
        bad.text
            .contains("Foreign key external ID: NOPE not found for field Ext__c in entity Account"),
        "{}",
        bad.text
    );

    // Update: empty leaves a field alone, #N/A clears it.
    let info = org.ingest(
        json!({"object": "Account", "operation": "update"}),
        &format!("Id,Name,Industry,NumberOfEmployees\n{a},Ops A2,#N/A,\n001000000000000AAA,X,,\n"),
    );
    assert_eq!(info["numberRecordsFailed"], 1, "{info}");
    let rec = org.get("Account", &a);
    assert_eq!(rec["Name"], "Ops A2");
    assert_eq!(rec["Industry"], Value::Null);
    assert_eq!(rec["NumberOfEmployees"], 1);
    let bad = org.results(info["id"].as_str().unwrap(), "failedResults");
    let rows = parse_csv(&bad.text, ',');
    assert_eq!(rows[1][0], "001000000000000AAA", "{}", bad.text);

    // Upsert on the external id: update one, create one.
    let info = org.ingest(
        json!({"object": "Account", "operation": "upsert", "externalIdFieldName": "Ext__c"}),
        "Ext__c,Name\nb-1,Ops B2\nC-1,Ops C\n",
    );
    assert_eq!(info["numberRecordsFailed"], 0, "{info}");
    assert_eq!(info["externalIdFieldName"], "Ext__c");
    let ok = org.results(info["id"].as_str().unwrap(), "successfulResults");
    let rows = parse_csv(&ok.text, ',');
    assert_eq!(rows[1][1], "false");
    assert_eq!(rows[2][1], "true");
    assert_eq!(org.get("Account", &rows[1][0])["Name"], "Ops B2");

    // Delete to the recycle bin, and hard delete.
    let b = rows[1][0].clone();
    let c = rows[2][0].clone();
    let info = org.ingest(
        json!({"object": "Account", "operation": "delete"}),
        &format!("Id\n{b}\n"),
    );
    assert_eq!(info["numberRecordsFailed"], 0, "{info}");
    let info = org.ingest(
        json!({"object": "Account", "operation": "hardDelete"}),
        &format!("Id\n{c}\n"),
    );
    assert_eq!(info["numberRecordsFailed"], 0, "{info}");
    let all = org.query_all(&format!(
        "SELECT Id, IsDeleted FROM Account WHERE Id IN ('{b}', '{c}')"
    ));
    assert_eq!(all["totalSize"], 1, "{all}");
    assert_eq!(all["records"][0]["IsDeleted"], true);
}

#[test]
fn multipart_creation_and_refusals() {
    let org = Org::start("bulk-multipart");
    let body = "--B0undary\r\nContent-Disposition: form-data; name=\"job\"\r\nContent-Type: application/json\r\n\r\n{\"object\":\"Account\",\"contentType\":\"CSV\",\"operation\":\"insert\"}\r\n--B0undary\r\nContent-Disposition: form-data; name=\"content\"; filename=\"content\"\r\nContent-Type: text/csv\r\n\r\nName\nMultipart One\nMultipart Two\n\r\n--B0undary--\r\n";
    let r = org.send(
        Method::POST,
        &org.jobs("ingest"),
        &[("Content-Type", "multipart/form-data; boundary=B0undary")],
        Some(body.as_bytes().to_vec()),
    );
    assert_eq!(r.status, 200, "{}", r.text);
    let job = r.json();
    assert_eq!(job["state"], "UploadComplete");
    let info = org.wait("ingest", job["id"].as_str().unwrap());
    assert_eq!(info["numberRecordsProcessed"], 2, "{info}");
    assert_eq!(
        org.count("SELECT COUNT() FROM Account WHERE Name LIKE 'Multipart%'"),
        2
    );

    for (spec, status, code) in [
        (
            json!({"object": "Nope__c", "operation": "insert"}),
            404,
            "NOT_FOUND",
        ),
        (
            json!({"object": "Account", "operation": "merge"}),
            400,
            "INVALIDJOB",
        ),
        (
            json!({"object": "Account", "operation": "upsert"}),
            400,
            "INVALIDJOB",
        ),
        (
            json!({"object": "Account", "operation": "upsert", "externalIdFieldName": "Name"}),
            400,
            "INVALIDJOB",
        ),
        (
            json!({"object": "Account", "operation": "insert", "columnDelimiter": "COLON"}),
            400,
            "INVALIDJOB",
        ),
        (
            json!({"object": "Account", "operation": "insert", "lineEnding": "CR"}),
            400,
            "INVALIDJOB",
        ),
    ] {
        let r = org.send(
            Method::POST,
            &org.jobs("ingest"),
            &[JSON],
            Some(spec.to_string().into_bytes()),
        );
        assert_sf_error(&r, status, code);
    }
    let r = org.send(
        Method::POST,
        &org.jobs("ingest"),
        &[JSON],
        Some(b"{".to_vec()),
    );
    assert_sf_error(&r, 400, "JSON_PARSER_ERROR");

    // An unknown column fails the whole job.
    let info = org.ingest(
        json!({"object": "Account", "operation": "insert"}),
        "Name,Nope__c\nX,1\n",
    );
    assert_eq!(info["state"], "Failed");
    assert_eq!(
        info["errorMessage"],
        "InvalidBatch : Field name not found : Nope__c"
    );

    // Aborting: no more data, nothing processed, every row unprocessed.
    let job = org.create_job(
        "ingest",
        json!({"object": "Account", "operation": "insert"}),
    );
    let id = job["id"].as_str().unwrap();
    assert_eq!(org.upload(id, "Name\nNever 1\nNever 2\n").status, 201);
    let r = org.set_state("ingest", id, "Aborted");
    assert_eq!(r.json()["state"], "Aborted", "{}", r.text);
    assert_sf_error(
        &org.set_state("ingest", id, "UploadComplete"),
        400,
        "INVALIDJOBSTATE",
    );
    assert_eq!(
        org.results(id, "unprocessedrecords").text,
        "Name\nNever 1\nNever 2\n"
    );
    assert_eq!(
        org.count("SELECT COUNT() FROM Account WHERE Name LIKE 'Never%'"),
        0
    );
    let open = org.create_job(
        "ingest",
        json!({"object": "Account", "operation": "insert"}),
    );
    let open_id = open["id"].as_str().unwrap();
    let r = org.send(
        Method::DELETE,
        &org.jobs(&format!("ingest/{open_id}")),
        &[],
        None,
    );
    assert_sf_error(&r, 400, "API_ERROR");
    assert_eq!(org.set_state("ingest", open_id, "Aborted").status, 200);
    assert_sf_error(&org.upload(open_id, "Name\nLate\n"), 409, "INVALIDJOBSTATE");
    let r = org.send(
        Method::DELETE,
        &org.jobs(&format!("ingest/{open_id}")),
        &[],
        None,
    );
    assert_eq!(r.status, 204);
}

#[test]
fn query_jobs_page_with_locators() {
    let org = Org::start("bulk-query");
    let mut csv = String::from("Name,NumberOfEmployees\n");
    for i in 0..25 {
        csv.push_str(&format!("Q Account {i:02},{i}\n"));
    }
    let info = org.ingest(json!({"object": "Account", "operation": "insert"}), &csv);
    assert_eq!(info["numberRecordsProcessed"], 25);
    let gone = org.create("Account", json!({"Name": "Q Account deleted"}));
    let r = org.send(
        Method::DELETE,
        &org.data(&format!("/sobjects/Account/{gone}")),
        &[],
        None,
    );
    assert_eq!(r.status, 204);

    let r = org.send(
        Method::POST,
        &org.jobs("query"),
        &[JSON, ("Accept", "text/csv")],
        Some(json!({"operation": "query", "query": "SELECT Name, Owner.Name, NumberOfEmployees FROM Account WHERE Name LIKE 'Q Account%' ORDER BY Name"}).to_string().into_bytes()),
    );
    assert_eq!(r.status, 200, "{}", r.text);
    assert_eq!(
        r.header("content-type"),
        Some("application/json;charset=UTF-8")
    );
    assert!(r.header("sforce-locator").is_none());
    let job = r.json();
    assert_eq!(job["operation"], "query");
    assert_eq!(job["object"], "Account");
    let id = job["id"].as_str().unwrap().to_string();
    let info = org.wait("query", &id);
    assert_eq!(info["state"], "JobComplete", "{info}");
    assert_eq!(info["jobType"], "V2Query");
    assert_eq!(info["numberRecordsProcessed"], 25);

    let page = |locator: Option<&str>| {
        let mut url = format!("{}?maxRecords=10", org.jobs(&format!("query/{id}/results")));
        if let Some(l) = locator {
            url.push_str(&format!("&locator={l}"));
        }
        let r = org.send(Method::GET, &url, &[], None);
        assert_eq!(r.status, 200, "{}", r.text);
        assert_eq!(r.header("content-type"), Some("text/csv"));
        let n: usize = r.header("sforce-numberofrecords").unwrap().parse().unwrap();
        (
            r.header("sforce-locator").unwrap().to_string(),
            n,
            parse_csv(&r.text, ','),
        )
    };
    let (l1, n1, rows1) = page(None);
    assert_eq!(n1, 10);
    assert_eq!(rows1[0], ["Name", "Owner.Name", "NumberOfEmployees"]);
    assert_eq!(rows1[1], ["Q Account 00", "Conflux Admin", "0"]);
    assert_eq!(rows1.len(), 11);
    let (l2, n2, rows2) = page(Some(&l1));
    assert_eq!((n2, rows2[1][0].as_str()), (10, "Q Account 10"));
    let (l3, n3, rows3) = page(Some(&l2));
    assert_eq!((l3.as_str(), n3, rows3.len()), ("null", 5, 6));
    assert_eq!(rows3[5][0], "Q Account 24");
    // Locators can be read again while the job exists.
    assert_eq!(page(Some(&l1)).2, rows2);
    let r = org.send(
        Method::GET,
        &format!(
            "{}?locator=bogus!",
            org.jobs(&format!("query/{id}/results"))
        ),
        &[],
        None,
    );
    assert_eq!(r.status, 400, "{}", r.text);
    // Whole result without maxRecords.
    let r = org.send(
        Method::GET,
        &org.jobs(&format!("query/{id}/results")),
        &[],
        None,
    );
    assert_eq!(r.header("sforce-locator"), Some("null"));
    assert_eq!(r.header("sforce-numberofrecords"), Some("25"));

    let all = org.create_job("query", json!({"operation": "queryAll", "query": "SELECT Id, IsDeleted FROM Account WHERE Name = 'Q Account deleted'", "columnDelimiter": "PIPE", "lineEnding": "CRLF"}));
    let all_id = all["id"].as_str().unwrap();
    assert_eq!(org.wait("query", all_id)["numberRecordsProcessed"], 1);
    let r = org.send(
        Method::GET,
        &org.jobs(&format!("query/{all_id}/results")),
        &[],
        None,
    );
    assert_eq!(
        r.text,
        format!("\"Id\"|\"IsDeleted\"\r\n\"{gone}\"|\"true\"\r\n")
    );

    for (q, code) in [
        ("SELECT COUNT() FROM Account", "API_ERROR"),
        (
            "SELECT Name, (SELECT LastName FROM Contacts) FROM Account",
            "API_ERROR",
        ),
        (
            "SELECT Industry, COUNT(Id) FROM Account GROUP BY Industry",
            "API_ERROR",
        ),
        ("SELECT Name FROM Account LIMIT 5 OFFSET 2", "API_ERROR"),
        ("SELECT Nope FROM Account", "INVALID_FIELD"),
        ("SELEKT Name FROM Account", "MALFORMED_QUERY"),
    ] {
        let r = org.send(
            Method::POST,
            &org.jobs("query"),
            &[JSON],
            Some(
                json!({"operation": "query", "query": q})
                    .to_string()
                    .into_bytes(),
            ),
        );
        assert_sf_error(&r, 400, code);
    }
    let r = org.send(Method::GET, &org.jobs("query"), &[], None);
    assert!(r.json()["records"]
        .as_array()
        .unwrap()
        .iter()
        .any(|j| j["id"] == id.as_str()));
    let r = org.send(Method::DELETE, &org.jobs(&format!("query/{id}")), &[], None);
    assert_eq!(r.status, 204);
    let r = org.send(
        Method::GET,
        &org.jobs(&format!("query/{id}/results")),
        &[],
        None,
    );
    assert_sf_error(&r, 404, "NOT_FOUND");
    // An ingest id is not a query job.
    let r = org.send(
        Method::GET,
        &org.jobs(&format!("ingest/{all_id}")),
        &[],
        None,
    );
    assert_sf_error(&r, 404, "NOT_FOUND");
}

/// `kill -9` while a 200,000-row upsert is InProgress: after the restart the job completes,
/// successes and failures add up to the rows, and no row was written twice (the external id is
/// not unique, so a row applied twice would leave two records).
#[test]
fn kill_9_during_an_upsert_job_resumes_exactly_once() {
    const ROWS: usize = 200_000;
    let data = data_dir("bulk-kill9");
    let org = Org::start_in(&data, &[], &[]);
    let (s, b) = org.tooling("CustomObject", "Item__c", json!({"label": "Item"}));
    assert_eq!(s, 201, "{b}");
    let (s, b) = org.tooling(
        "CustomField",
        "Item__c.Key__c",
        json!({"label": "Key", "type": "Text", "length": 20, "externalId": true}),
    );
    assert_eq!(s, 201, "{b}");
    let (s, b) = org.tooling(
        "CustomField",
        "Item__c.Qty__c",
        json!({"label": "Qty", "type": "Number", "precision": 9, "scale": 0}),
    );
    assert_eq!(s, 201, "{b}");
    let mut csv = String::with_capacity(ROWS * 32);
    csv.push_str("Key__c,Name,Qty__c\n");
    let mut expected_failures = 0;
    for i in 0..ROWS {
        if i % 1000 == 999 {
            csv.push_str(&format!("K{i},Item {i},not-a-number\n"));
            expected_failures += 1;
        } else {
            csv.push_str(&format!("K{i},Item {i},{}\n", i % 500));
        }
    }
    let job = org.create_job(
        "ingest",
        json!({"object": "Item__c", "operation": "upsert", "externalIdFieldName": "Key__c"}),
    );
    let id = job["id"].as_str().unwrap().to_string();
    assert_eq!(org.upload(&id, &csv).status, 201);
    assert_eq!(org.set_state("ingest", &id, "UploadComplete").status, 200);
    let t = Instant::now();
    loop {
        let info = org.job_info("ingest", &id);
        let processed = info["numberRecordsProcessed"].as_u64().unwrap();
        if info["state"] == "InProgress" && processed > 0 {
            assert!(
                processed < ROWS as u64,
                "the job finished before the kill: {info}"
            );
            break;
        }
        assert!(
            t.elapsed() < Duration::from_secs(120),
            "the job did not start: {info}"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
    let Org { srv, .. } = org;
    srv.kill9();

    let org = Org::start_in(&data, &[], &[]);
    let info = org.wait("ingest", &id);
    assert_eq!(info["state"], "JobComplete", "{info}");
    assert_eq!(info["numberRecordsProcessed"], ROWS as u64, "{info}");
    assert_eq!(info["numberRecordsFailed"], expected_failures, "{info}");

    let ok = org.results(&id, "successfulResults");
    let bad = org.results(&id, "failedResults");
    let ok_rows = parse_csv(&ok.text, ',');
    let bad_rows = parse_csv(&bad.text, ',');
    assert_eq!(ok_rows.len() - 1 + bad_rows.len() - 1, ROWS);
    assert_eq!(bad_rows.len() - 1, expected_failures as usize);
    let keys: HashSet<&str> = ok_rows[1..]
        .iter()
        .chain(&bad_rows[1..])
        .map(|r| r[2].as_str())
        .collect();
    assert_eq!(keys.len(), ROWS, "every row is reported exactly once");
    assert!(ok_rows[1..].iter().all(|r| r[1] == "true"));
    let ids: HashSet<&str> = ok_rows[1..].iter().map(|r| r[0].as_str()).collect();
    assert_eq!(ids.len(), ROWS - expected_failures as usize);

    let successes = (ROWS - expected_failures as usize) as u64;
    assert_eq!(
        org.count("SELECT COUNT() FROM Item__c"),
        successes,
        "no row was written twice"
    );
    // And by key, through a Bulk query job: every key once.
    let q = org.create_job(
        "query",
        json!({"operation": "query", "query": "SELECT Key__c FROM Item__c"}),
    );
    let qid = q["id"].as_str().unwrap();
    assert_eq!(org.wait("query", qid)["numberRecordsProcessed"], successes);
    let mut stored: HashSet<String> = HashSet::new();
    let mut total = 0;
    let mut locator = String::new();
    loop {
        let mut url = org.jobs(&format!("query/{qid}/results"));
        if !locator.is_empty() {
            url.push_str(&format!("?locator={locator}"));
        }
        let r = org.send(Method::GET, &url, &[], None);
        let rows = parse_csv(&r.text, ',');
        assert_eq!(rows[0], ["Key__c"]);
        total += rows.len() - 1;
        stored.extend(rows.into_iter().skip(1).map(|mut r| r.remove(0)));
        locator = r.header("sforce-locator").unwrap().to_string();
        if locator == "null" {
            break;
        }
    }
    assert_eq!(total, successes as usize);
    assert_eq!(
        stored.len(),
        successes as usize,
        "the external-id keys are unique"
    );
}
