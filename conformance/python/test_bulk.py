"""Bulk API 2.0 and 1.0 through unmodified Python clients.

* simple-salesforce 1.12.10: `sf.bulk2.T.insert|upsert|update|query|query_all` (CSV ingest and
  query jobs under /services/data/v59.0/jobs/) and `sf.bulk.T.insert|update|upsert|delete|query`
  (Bulk 1.0 JSON jobs under /services/async/59.0/).
* salesforce-bulk 2.2.0: Bulk 1.0 CSV and JSON jobs at its default API version 40.0, on the
  `SalesforceBulk(sessionId=, host=)` form (see conftest.salesforce_bulk for TLS).

Expectations come from Salesforce's Bulk API 2.0 / Bulk API developer guides and from what the
clients' source needs (paths below are inside the installed packages):

* Bulk 2.0 result files: `successfulResults` = "sf__Id","sf__Created",<original columns>,
  `failedResults` = "sf__Id","sf__Error",<original columns>; `sf__Error` is
  "STATUS_CODE:message:fields --"; `#N/A` sets a field to null, an empty value leaves it alone.
* simple-salesforce bulk2.py: the upload PUT must answer exactly 201 (upload_job_data); query
  jobs are created with `Accept: text/csv` but the reply is parsed as JSON (create_job); result
  pages need `Sforce-NumberOfRecords` and end at `Sforce-Locator: null` (get_query_results);
  unprocessed records are fetched as `unprocessedRecords` with a capital R (ResultsType);
  `delete_job` calls `.json()` on the DELETE reply, so the correct empty 204 makes it raise.
* simple-salesforce bulk.py: JSON jobs with `"concurrencyMode": 0|1` (_create_job).
* salesforce-bulk salesforce_bulk.py: job/batch documents are XML in the
  http://www.force.com/2009/06/asyncapi/dataload namespace; `parse_response` and
  `get_batch_results` dispatch on the *exact* Content-Type `application/json` / `text/csv` /
  `application/xml` (anything else: XML parse, or None for results); CSV results are the four
  columns Id,Success,Created,Error in request order.
"""

from __future__ import annotations

import json
import re
import secrets
from urllib.parse import parse_qs, urlsplit

import pytest
import requests
from simple_salesforce.bulk2 import ColumnDelimiter, LineEnding
from simple_salesforce.exceptions import (
    SalesforceMalformedRequest,
    SalesforceOperationError,
    SalesforceResourceNotFound,
)

from support import (
    BULK_QUERY_DELETED,
    BULK_QUERY_LIVE,
    assert_valid_id,
    csv_records,
    parse_bulk_error,
    soql_quote,
)

DATETIME_RE = re.compile(r"^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}\.\d{3}\+0000$")
WAIT_S = 1  # simple-salesforce's poll interval argument (its default is 5 s)


def in_list(ids) -> str:
    return "(" + ", ".join(soql_quote(i) for i in ids) + ")"


def record_responses(sf) -> list:
    """Record every response of this simple-salesforce session (a requests response hook)."""
    seen: list = []
    sf.session.hooks["response"].append(lambda resp, *args, **kwargs: seen.append(resp))
    return seen


def contact_rows(tag: str, run_id: str) -> tuple[list[dict], dict]:
    """Three good Contacts and one row for each of three documented per-record errors."""
    good = [
        {"FirstName": tag, "LastName": f"Good {i}", "Email": f"good{i}.{run_id}@example.com"}
        for i in range(3)
    ]
    bad = {
        # Contact.LastName is required ...
        "REQUIRED_FIELD_MISSING": {"FirstName": tag, "LastName": "", "Email": f"nolast.{run_id}@example.com"},
        # ... and 80 characters long
        "STRING_TOO_LONG": {"FirstName": tag, "LastName": "L" * 81, "Email": f"long.{run_id}@example.com"},
        "INVALID_EMAIL_ADDRESS": {"FirstName": tag, "LastName": "Bad Email", "Email": "not-an-email"},
    }
    return good, bad


def assert_contact_errors(failed: list[dict], bad: dict, error_column: str) -> None:
    """The three bad Contact rows failed with the documented code, message and fields."""
    by_email = {row["Email"]: row for row in failed}
    assert set(by_email) == {r["Email"] for r in bad.values()}, failed
    missing = parse_bulk_error(by_email[bad["REQUIRED_FIELD_MISSING"]["Email"]][error_column])
    assert missing.code == "REQUIRED_FIELD_MISSING"
    assert missing.message == "Required fields are missing: [LastName]"
    assert missing.fields == ["LastName"]
    too_long = parse_bulk_error(by_email[bad["STRING_TOO_LONG"]["Email"]][error_column])
    assert too_long.code == "STRING_TOO_LONG"
    assert "data value too large" in too_long.message and "(max length=80)" in too_long.message, too_long
    assert too_long.fields == ["LastName"]
    email = parse_bulk_error(by_email["not-an-email"][error_column])
    assert email.code == "INVALID_EMAIL_ADDRESS"
    assert email.message == "Email: invalid email address: not-an-email"
    assert email.fields == ["Email"]


# ==========================================================================
# Bulk API 2.0 through simple-salesforce (sf.bulk2)
# ==========================================================================


def test_bulk2_insert_reports_bad_rows_in_failed_results(bulk_sf, sf, run_id):
    tag = f"b2ins-{run_id}"
    good, bad = contact_rows(tag, run_id)
    [summary] = bulk_sf.bulk2.Contact.insert(records=good + list(bad.values()), wait=WAIT_S)
    assert summary["numberRecordsTotal"] == 6
    assert summary["numberRecordsProcessed"] == 6, "failed rows count as processed"
    assert summary["numberRecordsFailed"] == 3
    job_id = summary["job_id"]

    ok_text = bulk_sf.bulk2.Contact.get_successful_records(job_id)
    ok = csv_records(ok_text)
    assert list(ok[0])[:2] == ["sf__Id", "sf__Created"], ok_text
    assert sorted(r["LastName"] for r in ok) == sorted(r["LastName"] for r in good), "original columns echoed"
    for row in ok:
        assert_valid_id(row["sf__Id"], "003")
        assert row["sf__Created"] == "true"

    failed_text = bulk_sf.bulk2.Contact.get_failed_records(job_id)
    failed = csv_records(failed_text)
    assert list(failed[0])[:2] == ["sf__Id", "sf__Error"], failed_text
    assert [r["sf__Id"] for r in failed] == ["", "", ""], "nothing was created for a failed insert row"
    assert_contact_errors(failed, bad, "sf__Error")

    # GET .../unprocessedRecords (simple-salesforce's capital R): nothing left unprocessed
    assert csv_records(bulk_sf.bulk2.Contact.get_unprocessed_records(job_id)) == []

    res = sf.query(f"SELECT Id, LastName, Email FROM Contact WHERE FirstName = {soql_quote(tag)}")
    assert {r["Id"] for r in res["records"]} == {r["sf__Id"] for r in ok}, "exactly the good rows exist"


def test_bulk2_upsert_by_external_id(bulk_sf, sf, custom_object, run_id):
    obj = custom_object.name
    existing_ext = f"b2up-{run_id}-0"
    existing = getattr(sf, obj).create({"Name": "before", "External_Id__c": existing_ext, "Amount__c": 1})
    rows = [
        {"External_Id__c": existing_ext, "Name": "updated", "Amount__c": "2"},
        {"External_Id__c": f"b2up-{run_id}-1", "Name": "new one", "Amount__c": "3.5"},
        {"External_Id__c": f"b2up-{run_id}-2", "Name": "new two", "Amount__c": "4"},
        # the custom object's Name is Text(80)
        {"External_Id__c": f"b2up-{run_id}-3", "Name": "N" * 81, "Amount__c": "5"},
    ]
    [summary] = getattr(bulk_sf.bulk2, obj).upsert(records=rows, external_id_field="External_Id__c", wait=WAIT_S)
    assert (summary["numberRecordsProcessed"], summary["numberRecordsFailed"]) == (4, 1)

    results = getattr(bulk_sf.bulk2, obj).get_all_ingest_records(summary["job_id"])
    created = {r["External_Id__c"]: r for r in results["successfulRecords"]}
    assert set(created) == {r["External_Id__c"] for r in rows[:3]}
    assert created[existing_ext]["sf__Created"] == "false"
    assert created[existing_ext]["sf__Id"] == existing["id"]
    assert created[f"b2up-{run_id}-1"]["sf__Created"] == "true"
    [failure] = results["failedRecords"]
    assert failure["External_Id__c"] == f"b2up-{run_id}-3"
    err = parse_bulk_error(failure["sf__Error"])
    assert err.code == "STRING_TOO_LONG" and err.fields == ["Name"], err
    assert results["unprocessedRecords"] == []

    rec = getattr(sf, obj).get(existing["id"])
    assert (rec["Name"], rec["Amount__c"]) == ("updated", 2)
    res = sf.query(f"SELECT External_Id__c, Amount__c FROM {obj} WHERE External_Id__c LIKE {soql_quote(f'b2up-{run_id}-%')}")
    assert sorted((r["External_Id__c"], r["Amount__c"]) for r in res["records"]) == [
        (existing_ext, 2),
        (f"b2up-{run_id}-1", 3.5),
        (f"b2up-{run_id}-2", 4),
    ]


def test_bulk2_update_na_sets_null_and_empty_leaves_value(bulk_sf, sf, run_id):
    a = sf.Contact.create({"LastName": f"NA a {run_id}", "Title": "Title a", "Phone": "111"})["id"]
    b = sf.Contact.create({"LastName": f"NA b {run_id}", "Title": "Title b", "Phone": "222"})["id"]
    gone = sf.Contact.create({"LastName": f"NA gone {run_id}"})["id"]
    assert sf.Contact.delete(gone) == 204
    rows = [
        {"Id": a, "Title": "#N/A", "Phone": ""},
        {"Id": b, "Title": "Title b2", "Phone": "#N/A"},
        {"Id": gone, "Title": "x", "Phone": "y"},
    ]
    [summary] = bulk_sf.bulk2.Contact.update(records=rows, wait=WAIT_S)
    assert (summary["numberRecordsProcessed"], summary["numberRecordsFailed"]) == (3, 1)
    results = bulk_sf.bulk2.Contact.get_all_ingest_records(summary["job_id"])
    assert sorted(r["sf__Id"] for r in results["successfulRecords"]) == sorted([a, b])
    assert all(r["sf__Created"] == "false" for r in results["successfulRecords"])
    [failure] = results["failedRecords"]
    assert failure["Id"] == gone
    assert parse_bulk_error(failure["sf__Error"]).code == "ENTITY_IS_DELETED", failure

    ra = sf.Contact.get(a)
    rb = sf.Contact.get(b)
    assert (ra["Title"], ra["Phone"]) == (None, "111"), "#N/A nulls, an empty value changes nothing"
    assert (rb["Title"], rb["Phone"]) == ("Title b2", None)


def test_bulk2_semicolon_delimiter_and_crlf_line_endings(bulk_sf, sf, run_id):
    names = [
        f"Semi; colon {run_id}",
        f'Comma, and "quotes" {run_id}',
        f"Plain {run_id}",
    ]
    rows = [
        {"Name": names[0], "Description": "one;two"},
        {"Name": names[1], "Description": "line 1\nline 2"},
        {"Name": names[2], "Description": "#N/A"},
    ]
    seen = record_responses(bulk_sf)
    [summary] = bulk_sf.bulk2.Account.insert(
        records=rows,
        column_delimiter=ColumnDelimiter.SEMICOLON,
        line_ending=LineEnding.CRLF,
        wait=WAIT_S,
    )
    assert (summary["numberRecordsProcessed"], summary["numberRecordsFailed"]) == (3, 0)

    [upload] = [r for r in seen if r.request.method == "PUT"]
    assert upload.status_code == 201
    assert upload.request.headers["Content-Type"] == "text/csv; charset=UTF-8"
    body = upload.request.body.decode("utf-8")
    assert body.count("\r\n") == 4 and ";" in body.splitlines()[0], repr(body)

    info = bulk_sf.bulk2.Account._client.get_job(summary["job_id"], False)
    assert (info["columnDelimiter"], info["lineEnding"]) == ("SEMICOLON", "CRLF")

    res = sf.query(f"SELECT Name, Description FROM Account WHERE Name IN {in_list(names)}")
    stored = {r["Name"]: r["Description"] for r in res["records"]}
    assert stored == {names[0]: "one;two", names[1]: "line 1\nline 2", names[2]: None}


def test_bulk2_job_info_and_delete_job(bulk_sf, run_id):
    seen = record_responses(bulk_sf)
    [summary] = bulk_sf.bulk2.Account.insert(records=[{"Name": f"Job info {run_id}"}], wait=WAIT_S)
    job_id = summary["job_id"]
    assert_valid_id(job_id, "750")

    [create] = [r for r in seen if r.request.method == "POST"]
    created = create.json()
    assert created["state"] == "Open"
    assert created["contentUrl"] == f"services/data/v59.0/jobs/ingest/{job_id}/batches", "no leading slash"

    info = bulk_sf.bulk2.Account._client.get_job(job_id, False)
    expected = {
        "id": job_id,
        "operation": "insert",
        "object": "Account",
        "state": "JobComplete",
        "concurrencyMode": "Parallel",
        "contentType": "CSV",
        "apiVersion": 59.0,
        "jobType": "V2Ingest",
        "lineEnding": "LF",
        "columnDelimiter": "COMMA",
        "numberRecordsProcessed": 1,
        "numberRecordsFailed": 0,
    }
    assert {k: info.get(k) for k in expected} == expected, info
    assert_valid_id(info["createdById"], "005")
    assert DATETIME_RE.match(info["createdDate"]) and DATETIME_RE.match(info["systemModstamp"]), info

    # simple-salesforce's delete_job parses the DELETE reply as JSON: Salesforce answers an
    # empty 204, so the client raises after the job really was deleted.
    with pytest.raises(requests.exceptions.JSONDecodeError):
        bulk_sf.bulk2.Account._client.delete_job(job_id, False)
    assert seen[-1].request.method == "DELETE" and seen[-1].status_code == 204
    assert seen[-1].content == b""
    with pytest.raises(SalesforceResourceNotFound):
        bulk_sf.bulk2.Account._client.get_job(job_id, False)


def test_bulk2_unknown_column_fails_the_job(bulk_sf, sf, run_id):
    name = f"Unknown column {run_id}"
    # Salesforce fails the job ("InvalidBatch : Field name not found : NoSuch__c"), which
    # simple-salesforce raises from wait_for_job; rejecting the upload itself is accepted too.
    with pytest.raises((SalesforceOperationError, SalesforceMalformedRequest)) as exc:
        bulk_sf.bulk2.Account.insert(records=[{"Name": name, "NoSuch__c": "x"}], wait=WAIT_S)
    assert "NoSuch__c" in str(exc.value)
    assert sf.query(f"SELECT Id FROM Account WHERE Name = {soql_quote(name)}")["totalSize"] == 0


def test_bulk2_query_pages_until_locator_null(bulk_sf, bulk_query_dataset):
    obj = bulk_query_dataset.sobject
    seen = record_responses(bulk_sf)
    soql = f"SELECT Id, Name FROM {obj}"
    pages = list(getattr(bulk_sf.bulk2, obj).query(soql, max_records=300, wait=WAIT_S))

    [create] = [r for r in seen if r.request.method == "POST"]
    assert create.request.headers["ACCEPT"] == "text/csv; charset=UTF-8", "simple-salesforce asks for CSV ..."
    assert create.json()["operation"] == "query", "... and parses the job reply as JSON"
    result_calls = [r for r in seen if urlsplit(r.request.url).path.endswith("/results")]
    assert len(result_calls) == len(pages) >= 4
    locators = []
    for i, resp in enumerate(result_calls):
        params = parse_qs(urlsplit(resp.request.url).query)
        assert params["maxRecords"] == ["300"]
        assert params.get("locator") == (None if i == 0 else [locators[-1]]), "each page asks for the previous locator"
        locators.append(resp.headers["Sforce-Locator"])
        assert int(resp.headers["Sforce-NumberOfRecords"]) == len(csv_records(pages[i]))
        assert len(csv_records(pages[i])) <= 300
    assert locators[-1] == "null" and "null" not in locators[:-1], locators

    rows = [row for page in pages for row in csv_records(page)]
    assert [list(r) for r in rows[:1]] == [["Id", "Name"]], "columns in SELECT order"
    assert len(rows) == BULK_QUERY_LIVE
    assert {r["Id"]: r["Name"] for r in rows} == bulk_query_dataset.live


def test_bulk2_query_all_includes_deleted(bulk_sf, bulk_query_dataset):
    obj = bulk_query_dataset.sobject
    pages = list(getattr(bulk_sf.bulk2, obj).query_all(f"SELECT Id, Name, IsDeleted FROM {obj}", wait=WAIT_S))
    rows = [row for page in pages for row in csv_records(page)]
    assert len(rows) == BULK_QUERY_LIVE + BULK_QUERY_DELETED
    deleted = {r["Id"] for r in rows if r["IsDeleted"] == "true"}
    assert deleted == set(bulk_query_dataset.deleted)
    assert {r["IsDeleted"] for r in rows} == {"true", "false"}


# ==========================================================================
# Bulk API 1.0 (JSON jobs) through simple-salesforce (sf.bulk)
# ==========================================================================


def _job_posts(seen: list) -> list:
    return [r for r in seen if r.request.method == "POST" and urlsplit(r.request.url).path.endswith("/job")]


def job_creations(seen: list) -> list[dict]:
    """The jobInfo replies to `POST .../job` (JSON for a JSON job)."""
    return [r.json() for r in _job_posts(seen)]


def job_requests(seen: list) -> list[dict]:
    """The JSON bodies simple-salesforce sent to `POST .../job`."""
    return [json.loads(r.request.body) for r in _job_posts(seen)]


def test_bulk1_insert_parallel_in_several_batches(bulk_sf, sf, run_id):
    seen = record_responses(bulk_sf)
    tag = f"b1ins-{run_id}"
    data = [{"Name": f"{tag}-{i}", "NumberOfEmployees": i} for i in range(4)]
    data.insert(2, {"NumberOfEmployees": 99})  # no Name
    results = bulk_sf.bulk.Account.insert(data, batch_size=2)

    [job] = job_creations(seen)
    assert job_requests(seen)[0]["concurrencyMode"] == 0, "simple-salesforce sends 0 for parallel"
    assert job["concurrencyMode"] == "Parallel" and job["contentType"] == "JSON" and job["state"] == "Open"
    batches = [r for r in seen if r.request.method == "POST" and urlsplit(r.request.url).path.endswith("/batch")]
    assert len(batches) == 3 and all(r.status_code == 201 for r in batches)

    assert len(results) == 5, "one result per record, in request order"
    for i, res in enumerate(results):
        if i == 2:
            assert (res["success"], res["created"], res["id"]) == (False, False, None), res
            [err] = res["errors"]
            assert err["statusCode"] == "REQUIRED_FIELD_MISSING"
            assert err["message"] == "Required fields are missing: [Name]"
            assert err["fields"] == ["Name"]
        else:
            assert (res["success"], res["created"], res["errors"]) == (True, True, []), res
            assert_valid_id(res["id"], "001")
    stored = sf.query(f"SELECT Id, Name FROM Account WHERE Name LIKE {soql_quote(tag + '-%')}")
    assert {r["Id"] for r in stored["records"]} == {r["id"] for r in results if r["success"]}

    [close] = [r for r in seen if r.request.method == "POST" and re.search(r"/job/[^/]+$", r.request.url)]
    assert close.json()["state"] == "Closed"


def test_bulk1_update_serial(bulk_sf, sf, run_id):
    ids = [sf.Account.create({"Name": f"b1upd-{run_id}-{i}"})["id"] for i in range(3)]
    seen = record_responses(bulk_sf)
    results = bulk_sf.bulk.Account.update(
        [{"Id": i, "Name": f"b1upd-{run_id}-{n}-v2", "NumberOfEmployees": n} for n, i in enumerate(ids)],
        use_serial=True,
    )
    [job] = job_creations(seen)
    assert job_requests(seen)[0]["concurrencyMode"] == 1, "simple-salesforce sends 1 for use_serial"
    assert job["concurrencyMode"] == "Serial" and job["operation"] == "update"
    assert [(r["id"], r["success"], r["created"]) for r in results] == [(i, True, False) for i in ids]
    for n, i in enumerate(ids):
        rec = sf.Account.get(i)
        assert (rec["Name"], rec["NumberOfEmployees"]) == (f"b1upd-{run_id}-{n}-v2", n)


def test_bulk1_upsert_and_delete(bulk_sf, sf, custom_object, run_id):
    obj = custom_object.name
    existing = getattr(sf, obj).create({"Name": "before", "External_Id__c": f"b1up-{run_id}-0"})["id"]
    results = getattr(bulk_sf.bulk, obj).upsert(
        [
            {"External_Id__c": f"b1up-{run_id}-0", "Name": "after"},
            {"External_Id__c": f"b1up-{run_id}-1", "Name": "new"},
        ],
        "External_Id__c",
    )
    assert [(r["success"], r["created"]) for r in results] == [(True, False), (True, True)], results
    assert results[0]["id"] == existing
    assert getattr(sf, obj).get(existing)["Name"] == "after"

    deleted = getattr(bulk_sf.bulk, obj).delete([{"Id": r["id"]} for r in results])
    assert [(r["id"], r["success"]) for r in deleted] == [(r["id"], True) for r in results]
    res = sf.query(f"SELECT Id FROM {obj} WHERE External_Id__c LIKE {soql_quote(f'b1up-{run_id}-%')}")
    assert res["totalSize"] == 0


def test_bulk1_query_and_query_all(bulk_sf, bulk_query_dataset):
    obj = bulk_query_dataset.sobject
    records = getattr(bulk_sf.bulk, obj).query(f"SELECT Id, Name FROM {obj}", wait=WAIT_S)
    assert len(records) == BULK_QUERY_LIVE
    assert {r["Id"]: r["Name"] for r in records} == bulk_query_dataset.live
    assert records[0]["attributes"]["type"] == obj

    everything = getattr(bulk_sf.bulk, obj).query_all(f"SELECT Id, IsDeleted FROM {obj}", wait=WAIT_S)
    assert len(everything) == BULK_QUERY_LIVE + BULK_QUERY_DELETED
    assert {r["Id"] for r in everything if r["IsDeleted"] is True} == set(bulk_query_dataset.deleted)


# ==========================================================================
# Bulk API 1.0 through salesforce-bulk 2.2.0 (XML jobs, CSV / JSON batches, API 40.0)
# ==========================================================================


def wait_done(bulk, job, batch) -> None:
    bulk.wait_for_batch(job, batch, timeout=120, sleep_interval=0.5)
    assert bulk.is_batch_done(batch, job), bulk.batch_status(batch, job, reload=True)


def test_salesforce_bulk_csv_insert_with_bad_rows(salesforce_bulk, sf, run_id):
    from salesforce_bulk import CsvDictsAdapter

    bulk = salesforce_bulk
    assert bulk.endpoint.endswith("/services/async/40.0") and bulk.endpoint.startswith("https://")
    tag = f"sfb-{run_id}"
    good, bad = contact_rows(tag, run_id)
    rows = good + list(bad.values())

    job = bulk.create_insert_job("Contact", contentType="CSV")
    assert_valid_id(job, "750")
    # CsvDictsAdapter is a generator of rows: requests sends it with Transfer-Encoding: chunked
    batch = bulk.post_batch(job, CsvDictsAdapter(iter(rows)))
    assert_valid_id(batch, "751")
    wait_done(bulk, job, batch)
    bulk.close_job(job)

    results = bulk.get_batch_results(batch, job)
    assert results is not None, "get_batch_results needs Content-Type exactly 'text/csv' for a CSV job"
    assert len(results) == len(rows), "one result row per input row, in request order"
    for row, res in zip(good, results):
        assert (res.success, res.created, res.error) == ("true", "true", ""), res
        assert_valid_id(res.id, "003")
    failed = [dict(row, Error=res.error) for row, res in zip(rows[3:], results[3:])]
    assert all((res.id, res.success, res.created) == ("", "false", "false") for res in results[3:]), results
    assert_contact_errors(failed, bad, "Error")

    status = bulk.job_status(job)
    assert {k: status[k] for k in ("id", "operation", "object", "state", "contentType")} == {
        "id": job,
        "operation": "insert",
        "object": "Contact",
        "state": "Closed",
        "contentType": "CSV",
    }
    assert (status["numberBatchesTotal"], status["numberRecordsProcessed"], status["numberRecordsFailed"]) == ("1", "6", "3")
    [info] = bulk.get_batch_list(job)
    assert (info["id"], info["jobId"], info["state"]) == (batch, job, "Completed")

    res = sf.query(f"SELECT Id FROM Contact WHERE FirstName = {soql_quote(tag)}")
    assert {r["Id"] for r in res["records"]} == {r.id for r in results[:3]}


def test_salesforce_bulk_csv_upsert(salesforce_bulk, sf, custom_object, run_id):
    from salesforce_bulk import CsvDictsAdapter

    bulk = salesforce_bulk
    obj = custom_object.name
    existing = getattr(sf, obj).create({"Name": "before", "External_Id__c": f"sfbup-{run_id}-0"})["id"]
    job = bulk.create_upsert_job(obj, external_id_name="External_Id__c", contentType="CSV")
    rows = [
        {"External_Id__c": f"sfbup-{run_id}-0", "Name": "after", "Amount__c": 7},
        {"External_Id__c": f"sfbup-{run_id}-1", "Name": "new", "Amount__c": 8.25},
    ]
    batch = bulk.post_batch(job, CsvDictsAdapter(iter(rows)))
    wait_done(bulk, job, batch)
    bulk.close_job(job)
    results = bulk.get_batch_results(batch, job)
    assert results is not None, "get_batch_results needs Content-Type exactly 'text/csv'"
    assert [(r.success, r.created) for r in results] == [("true", "false"), ("true", "true")], results
    assert results[0].id == existing
    assert getattr(sf, obj).get(existing)["Amount__c"] == 7
    assert getattr(sf, obj).get(results[1].id)["Amount__c"] == 8.25


def test_salesforce_bulk_csv_query(salesforce_bulk, bulk_query_dataset):
    bulk = salesforce_bulk
    obj = bulk_query_dataset.sobject
    soql = f"SELECT Id, Name FROM {obj}"
    job = bulk.create_query_job(obj, contentType="CSV")
    batch = bulk.query(job, soql)
    bulk.close_job(job)
    wait_done(bulk, job, batch)
    assert bulk.get_query_batch_request(batch, job) == soql

    rows = []
    for result in bulk.get_all_results_for_query_batch(batch, job):
        rows.extend(csv_records(result.read().decode("utf-8")))
    assert len(rows) == BULK_QUERY_LIVE
    assert {r["Id"]: r["Name"] for r in rows} == bulk_query_dataset.live


def test_salesforce_bulk_json_insert(salesforce_bulk, sf, run_id):
    bulk = salesforce_bulk
    tag = f"sfbjson-{run_id}"
    job = bulk.create_insert_job("Account", contentType="JSON")
    # parse_response reads the batch id from JSON only if Content-Type is exactly application/json
    batch = bulk.post_batch(job, json.dumps([{"Name": f"{tag}-0"}, {"Description": "no name"}]))
    wait_done(bulk, job, batch)
    bulk.close_job(job)
    results = bulk.get_batch_results(batch, job)
    assert results is not None, "get_batch_results needs Content-Type exactly 'application/json' for a JSON job"
    ok, bad = results
    assert (ok.success, ok.created, ok.error) == (True, True, [])
    assert_valid_id(ok.id, "001")
    assert (bad.id, bad.success, bad.created) == (None, False, False)
    assert [e["statusCode"] for e in bad.error] == ["REQUIRED_FIELD_MISSING"]
    assert sf.query(f"SELECT Id FROM Account WHERE Name = {soql_quote(tag + '-0')}")["records"][0]["Id"] == ok.id


def test_salesforce_bulk_invalid_session(conflux, salesforce_bulk_env):
    from salesforce_bulk import BulkApiError, SalesforceBulk

    bulk = SalesforceBulk(sessionId="00D000000000000!" + secrets.token_hex(16), host=urlsplit(conflux.https_url).netloc)
    with pytest.raises(BulkApiError) as exc:
        bulk.create_insert_job("Account", contentType="CSV")
    # Bulk 1.0 reports a bad session as HTTP 400 with an XML <error> (jsforce re-logs in on
    # exactly that: status 400 and "<exceptionCode>InvalidSessionId</exceptionCode>")
    assert exc.value.status_code == 400
    assert "<exceptionCode>InvalidSessionId</exceptionCode>" in str(exc.value)
    assert "http://www.force.com/2009/06/asyncapi/dataload" in str(exc.value)
