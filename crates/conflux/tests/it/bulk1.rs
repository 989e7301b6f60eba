//! Bulk API 1.0 against a real server: XML jobs with XML batches (nils, `fieldsToNull`,
//! entities), JSON and XML query results, the refusals of bad sessions, documents, states and
//! sizes, and `kill -9` with batches queued and in progress (every record written once).

use std::collections::HashSet;
use std::time::{Duration, Instant};

use reqwest::Method;
use serde_json::{json, Value};

use crate::harness::{data_dir, Org, Raw};

const NS: &str = "http://www.force.com/2009/06/asyncapi/dataload";

impl Org {
    fn async_url(&self, rest: &str) -> String {
        self.url(&format!("/services/async/59.0/{rest}"))
    }

    /// A Bulk 1.0 request authenticated by `X-SFDC-Session`, as the Bulk clients send it.
    fn b1(&self, method: Method, rest: &str, content_type: &str, body: Option<Vec<u8>>) -> Raw {
        let mut req = self
            .http
            .request(method, self.async_url(rest))
            .header("X-SFDC-Session", &self.token);
        if !content_type.is_empty() {
            req = req.header("Content-Type", content_type);
        }
        if let Some(b) = body {
            req = req.body(b);
        }
        let resp = req.send().expect("request");
        Raw {
            status: resp.status().as_u16(),
            headers: resp.headers().clone(),
            text: resp.text().unwrap_or_default(),
        }
    }

    fn b1_get(&self, rest: &str) -> Raw {
        self.b1(Method::GET, rest, "", None)
    }

    pub(crate) fn b1_job_xml(&self, fields: &str) -> String {
        let r = self.b1(
            Method::POST,
            "job",
            "application/xml; charset=UTF-8",
            Some(
                format!("<?xml version=\"1.0\"?><jobInfo xmlns=\"{NS}\">{fields}</jobInfo>")
                    .into_bytes(),
            ),
        );
        assert_eq!(r.status, 201, "{}", r.text);
        assert_eq!(r.header("content-type"), Some("application/xml"));
        tag(&r.text, "id")
    }

    pub(crate) fn b1_batch(
        &self,
        job: &str,
        content_type: &str,
        body: impl Into<Vec<u8>>,
    ) -> String {
        let r = self.b1(
            Method::POST,
            &format!("job/{job}/batch"),
            content_type,
            Some(body.into()),
        );
        assert_eq!(r.status, 201, "{}", r.text);
        if r.header("content-type") == Some("application/json") {
            r.json()["id"].as_str().unwrap().to_string()
        } else {
            tag(&r.text, "id")
        }
    }

    /// Polls a batch until it is done; returns its batchInfo text.
    pub(crate) fn b1_wait(&self, job: &str, batch: &str) -> String {
        let t = Instant::now();
        loop {
            let r = self.b1_get(&format!("job/{job}/batch/{batch}"));
            assert_eq!(r.status, 200, "{}", r.text);
            let state = if r.header("content-type") == Some("application/json") {
                r.json()["state"].as_str().unwrap().to_string()
            } else {
                tag(&r.text, "state")
            };
            if matches!(state.as_str(), "Completed" | "Failed" | "NotProcessed") {
                return r.text;
            }
            assert!(
                t.elapsed() < Duration::from_secs(300),
                "batch {batch}: {}",
                r.text
            );
            std::thread::sleep(Duration::from_millis(30));
        }
    }
}

/// The text of the first `<name>` element.
fn tag(xml: &str, name: &str) -> String {
    let open = format!("<{name}>");
    let start = xml
        .find(&open)
        .unwrap_or_else(|| panic!("no <{name}> in {xml}"))
        + open.len();
    let end = xml[start..].find(&format!("</{name}>")).unwrap() + start;
    xml[start..end].to_string()
}

fn error_code(r: &Raw) -> String {
    assert!(
        r.text.contains(&format!("<error xmlns=\"{NS}\">")),
        "{}",
        r.text
    );
    tag(&r.text, "exceptionCode")
}

#[test]
fn xml_jobs_take_xml_batches_with_nils_and_entities() {
    let org = Org::start("bulk1-xml");
    let keep = org.create(
        "Account",
        json!({"Name": "keep", "Phone": "111", "Fax": "222"}),
    );
    let job = org.b1_job_xml(
        "<operation>insert</operation><object>Account</object><contentType>XML</contentType>",
    );
    let batch = org.b1_batch(
        &job,
        "application/xml",
        format!(
            r#"<sObjects xmlns="{NS}" xmlns:xsi="http://www.w3.org/2001/XMLSchema-instance">
<sObject><Name>A &amp; B &#x263A;</Name><NumberOfEmployees>3</NumberOfEmployees></sObject>
<sObject><NumberOfEmployees>4</NumberOfEmployees></sObject>
<sObject><Name><![CDATA[<cdata>]]></Name></sObject>
</sObjects>"#
        ),
    );
    let info = org.b1_wait(&job, &batch);
    assert_eq!(tag(&info, "state"), "Completed", "{info}");
    assert_eq!(tag(&info, "numberRecordsProcessed"), "3");
    assert_eq!(tag(&info, "numberRecordsFailed"), "1");
    let r = org.b1_get(&format!("job/{job}/batch/{batch}/result"));
    assert_eq!(r.header("content-type"), Some("application/xml"));
    let results: Vec<&str> = r.text.split("<result>").skip(1).collect();
    assert_eq!(results.len(), 3, "{}", r.text);
    assert!(results[0].contains("<success>true</success><created>true</created>"));
    assert!(
        results[1].contains("<statusCode>REQUIRED_FIELD_MISSING</statusCode>"),
        "{}",
        results[1]
    );
    assert!(results[1].contains("<fields>Name</fields>"));
    let first = tag(results[0], "id");
    assert_eq!(org.get("Account", &first)["Name"], "A & B \u{263A}");
    assert_eq!(
        org.get("Account", &tag(results[2], "id"))["Name"],
        "<cdata>"
    );

    // Update: xsi:nil and fieldsToNull clear, an absent field stays.
    let job = org.b1_job_xml(
        "<operation>update</operation><object>Account</object><contentType>XML</contentType>",
    );
    let batch = org.b1_batch(
        &job,
        "application/xml",
        format!(
            r#"<sObjects xmlns="{NS}" xmlns:xsi="http://www.w3.org/2001/XMLSchema-instance">
<sObject><Id>{keep}</Id><Phone xsi:nil="true"/><fieldsToNull>Fax</fieldsToNull><Description>d</Description></sObject>
</sObjects>"#
        ),
    );
    assert_eq!(tag(&org.b1_wait(&job, &batch), "state"), "Completed");
    let rec = org.get("Account", &keep);
    assert_eq!(
        (
            rec["Name"].clone(),
            rec["Phone"].clone(),
            rec["Fax"].clone(),
            rec["Description"].clone()
        ),
        (json!("keep"), Value::Null, Value::Null, json!("d"))
    );
    assert_eq!(
        org.b1_get(&format!("job/{job}/batch/{batch}/request"))
            .header("content-type"),
        Some("application/xml")
    );

    // Close: the job info counts the batches; another batch is refused.
    let r = org.b1(
        Method::POST,
        &format!("job/{job}"),
        "application/xml",
        Some(format!("<jobInfo xmlns=\"{NS}\"><state>Closed</state></jobInfo>").into_bytes()),
    );
    assert_eq!(r.status, 200, "{}", r.text);
    assert_eq!(tag(&r.text, "state"), "Closed");
    assert_eq!(tag(&r.text, "numberBatchesCompleted"), "1");
    assert_eq!(tag(&r.text, "numberBatchesTotal"), "1");
    assert_eq!(tag(&r.text, "apiVersion"), "59.0");
    assert!(
        tag(&r.text, "createdDate").ends_with(".000Z")
            || tag(&r.text, "createdDate").ends_with('Z')
    );
    let r = org.b1(
        Method::POST,
        &format!("job/{job}/batch"),
        "application/xml",
        Some(b"<sObjects/>".to_vec()),
    );
    assert_eq!(r.status, 400);
    assert_eq!(error_code(&r), "InvalidJobState");
}

#[test]
fn query_batches_answer_in_the_jobs_format() {
    let org = Org::start("bulk1-query");
    let a = org.create("Account", json!({"Name": "Q1", "NumberOfEmployees": 5}));
    let b = org.create("Account", json!({"Name": "Q2"}));
    let c = org.create("Contact", json!({"LastName": "QC", "AccountId": a}));

    // JSON: typed values, dates as epoch milliseconds, parents nested.
    let r = org.b1(
        Method::POST,
        "job",
        "application/json",
        Some(json!({"operation": "query", "object": "Contact", "contentType": "JSON", "concurrencyMode": 0}).to_string().into_bytes()),
    );
    assert_eq!(r.status, 201, "{}", r.text);
    let job = r.json();
    assert_eq!(
        (job["contentType"].clone(), job["concurrencyMode"].clone()),
        (json!("JSON"), json!("Parallel"))
    );
    let job = job["id"].as_str().unwrap().to_string();
    let batch = org.b1_batch(
        &job,
        "application/json",
        "SELECT Id, LastName, CreatedDate, Account.Name, Account.NumberOfEmployees FROM Contact",
    );
    org.b1_wait(&job, &batch);
    let r = org.b1_get(&format!("job/{job}/batch/{batch}/result"));
    assert_eq!(r.header("content-type"), Some("application/json"));
    let ids = r.json();
    let rid = ids[0].as_str().unwrap();
    assert!(rid.starts_with("752"), "{ids}");
    let r = org.b1_get(&format!("job/{job}/batch/{batch}/result/{rid}"));
    assert_eq!(r.header("content-type"), Some("application/json"));
    let recs = r.json();
    assert_eq!(recs.as_array().unwrap().len(), 1, "{recs}");
    assert_eq!(recs[0]["Id"], c.as_str());
    assert_eq!(recs[0]["attributes"]["type"], "Contact");
    assert!(recs[0]["CreatedDate"].is_i64(), "{recs}");
    assert_eq!(recs[0]["Account"]["Name"], "Q1");
    assert_eq!(recs[0]["Account"]["NumberOfEmployees"], 5);

    // XML: nulls are xsi:nil, rows are sObjects.
    let job = org.b1_job_xml(
        "<operation>query</operation><object>Account</object><contentType>XML</contentType>",
    );
    let batch = org.b1_batch(
        &job,
        "application/xml",
        "SELECT Id, Name, NumberOfEmployees FROM Account ORDER BY Name",
    );
    org.b1_wait(&job, &batch);
    let r = org.b1_get(&format!("job/{job}/batch/{batch}/result"));
    let rid = tag(&r.text, "result");
    let r = org.b1_get(&format!("job/{job}/batch/{batch}/result/{rid}"));
    assert_eq!(r.header("content-type"), Some("application/xml"));
    assert!(r.text.contains(&format!("<records xsi:type=\"sObject\"><type>Account</type><Id>{a}</Id><Name>Q1</Name><NumberOfEmployees>5</NumberOfEmployees></records>")), "{}", r.text);
    assert!(
        r.text.contains(&format!(
            "<Id>{b}</Id><Name>Q2</Name><NumberOfEmployees xsi:nil=\"true\"/>"
        )),
        "{}",
        r.text
    );

    // A query on another object than the job's fails the batch, with a message.
    let batch = org.b1_batch(&job, "application/xml", "SELECT Id FROM Contact");
    let info = org.b1_wait(&job, &batch);
    assert_eq!(tag(&info, "state"), "Failed");
    assert!(
        tag(&info, "stateMessage").starts_with("InvalidBatch"),
        "{info}"
    );
    let r = org.b1_get(&format!("job/{job}/batch/{rid}/result/{rid}"));
    assert_eq!(error_code(&r), "InvalidBatch");
}

#[test]
fn bad_sessions_documents_states_and_sizes_are_refused() {
    let org = Org::start("bulk1-refusals");
    // A bad or missing session: 400 InvalidSessionId (what jsforce re-logs in on).
    for token in [None, Some("00D000000000000!nope")] {
        let mut req = org
            .http
            .post(org.async_url("job"))
            .header("Content-Type", "application/xml");
        if let Some(t) = token {
            req = req.header("X-SFDC-Session", t);
        }
        let resp = req.body("<jobInfo/>").send().unwrap();
        assert_eq!(resp.status().as_u16(), 400);
        let text = resp.text().unwrap();
        assert!(
            text.contains("<exceptionCode>InvalidSessionId</exceptionCode>"),
            "{text}"
        );
    }
    // JSON callers get JSON errors.
    let r = org.b1(
        Method::POST,
        "job",
        "application/json",
        Some(b"{\"operation\":\"Insert\",\"object\":\"Account\"}".to_vec()),
    );
    assert_eq!(r.status, 400);
    assert_eq!(
        r.json()["exceptionCode"],
        "InvalidJob",
        "operation names are case-sensitive"
    );

    let job_doc =
        |inner: &str| Some(format!("<jobInfo xmlns=\"{NS}\">{inner}</jobInfo>").into_bytes());
    let cases: Vec<(Option<Vec<u8>>, &str)> = vec![
        (Some(b"<jobInfo><operation>insert</operation>".to_vec()), "InvalidXML"),
        (Some(b"<!DOCTYPE x [<!ENTITY a \"b\">]><jobInfo/>".to_vec()), "InvalidXML"),
        (Some(b"<batchInfo/>".to_vec()), "InvalidXML"),
        (job_doc("<operation>insert</operation><object>Nope__c</object>"), "InvalidJob"),
        (job_doc("<operation>upsert</operation><object>Account</object>"), "InvalidJob"),
        (job_doc("<operation>upsert</operation><object>Account</object><externalIdFieldName>Name</externalIdFieldName>"), "InvalidJob"),
        (job_doc("<operation>insert</operation><object>Account</object><contentType>ZIP_CSV</contentType>"), "FeatureNotEnabled"),
        (job_doc("<operation>insert</operation><object>Account</object><contentType>YAML</contentType>"), "InvalidJob"),
        (job_doc("<operation>insert</operation><object>Account</object><concurrencyMode>Fast</concurrencyMode>"), "InvalidJob"),
        (Some(vec![b'x'; 70 * 1024]), "ClientInputError"),
    ];
    for (body, code) in cases {
        let r = org.b1(Method::POST, "job", "application/xml", body);
        assert_eq!(r.status, 400, "{}", r.text);
        assert_eq!(error_code(&r), code, "{}", r.text);
    }
    // Unknown ids and resources.
    let r = org.b1_get("job/750000000000000AAA");
    assert_eq!(error_code(&r), "InvalidJob");
    let r = org.b1_get("jobs");
    assert_eq!((r.status, error_code(&r)), (404, "InvalidUrl".to_string()));
    let r = org
        .http
        .get(org.url("/services/async/v59.0/job"))
        .header("X-SFDC-Session", &org.token)
        .send()
        .unwrap();
    assert_eq!(r.status().as_u16(), 404);

    // Batches: a header naming an unknown field, too many records, too many bytes.
    let job = org.b1_job_xml(
        "<operation>insert</operation><object>Account</object><contentType>CSV</contentType>",
    );
    let batch = org.b1_batch(&job, "text/csv", "Name,Nope\nx,y\n");
    let info = org.b1_wait(&job, &batch);
    assert_eq!(tag(&info, "state"), "Failed");
    assert_eq!(
        tag(&info, "stateMessage"),
        "InvalidBatch : Field name not found : Nope"
    );
    let mut big = String::from("Name\n");
    for i in 0..10_001 {
        big.push_str(&format!("n{i}\n"));
    }
    let batch = org.b1_batch(&job, "text/csv", big);
    let info = org.b1_wait(&job, &batch);
    assert_eq!(tag(&info, "state"), "Failed");
    assert!(tag(&info, "stateMessage").contains("10000"), "{info}");
    let r = org.b1(
        Method::POST,
        &format!("job/{job}/batch"),
        "text/csv",
        Some(vec![b'a'; 10_000_001]),
    );
    assert_eq!(
        (r.status, error_code(&r)),
        (400, "ClientInputError".to_string())
    );
    let r = org.b1(
        Method::POST,
        &format!("job/{job}/batch"),
        "text/csv",
        Some(b"  \n".to_vec()),
    );
    assert_eq!(error_code(&r), "InvalidBatch");
    // Nothing of the refused batches was written.
    assert_eq!(
        org.count("SELECT COUNT() FROM Account WHERE Name LIKE 'n%'"),
        0
    );
    // Abort, then nothing more is accepted.
    let r = org.b1(
        Method::POST,
        &format!("job/{job}"),
        "application/json",
        Some(b"{\"state\":\"Aborted\"}".to_vec()),
    );
    assert_eq!(r.status, 200, "{}", r.text);
    assert_eq!(r.json()["state"], "Aborted");
    let r = org.b1(
        Method::POST,
        &format!("job/{job}"),
        "application/json",
        Some(b"{\"state\":\"Closed\"}".to_vec()),
    );
    assert_eq!(r.json()["exceptionCode"], "InvalidJobState");
    let r = org.b1(
        Method::POST,
        &format!("job/{job}/batch"),
        "text/csv",
        Some(b"Name\nlate\n".to_vec()),
    );
    assert_eq!(error_code(&r), "InvalidJobState");
}

#[test]
fn kill_9_with_batches_queued_and_in_progress_writes_every_record_once() {
    const BATCHES: usize = 24;
    const ROWS: usize = 4_000;
    let data = data_dir("bulk1-kill9");
    let org = Org::start_in(&data, &[], &[]);
    // Serial: batches run one at a time, so the uploads outpace the processing and the kill
    // finds batches completed, in progress and queued.
    let job = org.b1_job_xml(
        "<operation>insert</operation><object>Contact</object><concurrencyMode>Serial</concurrencyMode><contentType>CSV</contentType>",
    );
    let mut batches = Vec::new();
    for b in 0..BATCHES {
        let mut csv = String::from("LastName,Title\n");
        for i in 0..ROWS {
            // One row in a thousand fails (no LastName).
            if i % 1000 == 999 {
                csv.push_str(&format!(",B{b}-{i}\n"));
            } else {
                csv.push_str(&format!("K1-{b}-{i},B{b}-{i}\n"));
            }
        }
        batches.push(org.b1_batch(&job, "text/csv", csv));
    }
    let t = Instant::now();
    loop {
        let r = org.b1_get(&format!("job/{job}"));
        let done: usize = tag(&r.text, "numberBatchesCompleted").parse().unwrap();
        let running: usize = tag(&r.text, "numberBatchesInProgress").parse().unwrap();
        assert!(
            running <= 1,
            "a Serial job runs one batch at a time: {}",
            r.text
        );
        if done > 0 {
            assert!(
                done < BATCHES,
                "every batch finished before the kill: {}",
                r.text
            );
            break;
        }
        assert!(
            t.elapsed() < Duration::from_secs(120),
            "no batch finished: {}",
            r.text
        );
        std::thread::sleep(Duration::from_millis(10));
    }
    let Org { srv, .. } = org;
    srv.kill9();

    let org = Org::start_in(&data, &[], &[]);
    let mut seen = HashSet::new();
    let mut failed = 0;
    for batch in &batches {
        let info = org.b1_wait(&job, batch);
        assert_eq!(tag(&info, "state"), "Completed", "{info}");
        let r = org.b1_get(&format!("job/{job}/batch/{batch}/result"));
        assert_eq!(r.header("content-type"), Some("text/csv"));
        let lines: Vec<&str> = r.text.lines().skip(1).collect();
        assert_eq!(lines.len(), ROWS, "one result per record");
        for l in lines {
            if l.starts_with("\"\",\"false\"") {
                failed += 1;
            } else {
                assert!(
                    seen.insert(l.split(',').next().unwrap().to_string()),
                    "id reported twice: {l}"
                );
            }
        }
    }
    assert_eq!(failed, BATCHES * ROWS / 1000);
    let written = (BATCHES * ROWS - failed) as u64;
    assert_eq!(seen.len() as u64, written);
    assert_eq!(
        org.count("SELECT COUNT() FROM Contact WHERE LastName LIKE 'K1-%'"),
        written,
        "no record was written twice"
    );
    let r = org.b1_get(&format!("job/{job}"));
    assert_eq!(
        tag(&r.text, "numberRecordsProcessed"),
        (BATCHES * ROWS).to_string()
    );
    assert_eq!(tag(&r.text, "numberRecordsFailed"), failed.to_string());
}
