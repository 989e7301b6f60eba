"""Composite, sObject Collections and sObject Tree through simple-salesforce 1.12.10.

simple-salesforce has no composite helpers: users call `sf.restful(path, method=, json=|params=)`,
which sends `https://{instance}/services/data/v59.0/{path}` with the session's JSON headers,
returns the parsed JSON (None for 204), and raises on any status >= 300 (util.exception_handler:
400 -> SalesforceMalformedRequest with the parsed body in `.content`).

Expectations are Salesforce's documented behaviour (REST API Developer Guide, "Composite",
"sObject Collections", "sObject Tree"):

* POST /composite answers 200 whenever the request parsed; each subresponse carries
  `body`, `httpHeaders`, `httpStatusCode`, `referenceId`; `@{ref.field}` resolves in url and body.
* allOrNone true + a failure: everything is rolled back, the failing subrequest keeps its own
  error and every other one reports 400 PROCESSING_HALTED "The transaction was rolled back since
  another operation in the same transaction failed."
* Collections answer 200 with one result per item in input order; per-record errors use
  `statusCode`; allOrNone true + a failure commits nothing and marks the other items
  ALL_OR_NONE_OPERATION_ROLLED_BACK.
* Tree: 201 `{"hasErrors": false, "results": [{"referenceId", "id"}]}`; on failure 400 with only
  the failing records' errors and nothing saved.
"""

from __future__ import annotations

import pytest
from simple_salesforce.exceptions import SalesforceMalformedRequest

from support import API_VERSION, assert_valid_id, soql_quote

V = f"/services/data/v{API_VERSION}"
ROLLED_BACK = "The transaction was rolled back since another operation in the same transaction failed."


def composite(sf, all_or_none: bool, subrequests: list[dict]) -> list[dict]:
    res = sf.restful("composite", method="POST", json={"allOrNone": all_or_none, "compositeRequest": subrequests})
    assert set(res) == {"compositeResponse"}, res
    out = res["compositeResponse"]
    assert [r["referenceId"] for r in out] == [s["referenceId"] for s in subrequests], "one subresponse per subrequest, in order"
    return out


def count(sf, soql: str) -> int:
    return sf.query(soql)["totalSize"]


def in_list(ids) -> str:
    return "(" + ", ".join(soql_quote(i) for i in ids) + ")"


# ==========================================================================
# /composite
# ==========================================================================


def test_composite_resource_lists_its_children(sf):
    res = sf.restful("composite")
    for name in ("tree", "batch", "sobjects"):
        assert res[name] == f"{V}/composite/{name}", res


def test_composite_references_between_subrequests(sf, run_id):
    name = f"Cmp refs {run_id}"
    out = composite(
        sf,
        False,
        [
            {"method": "POST", "url": f"{V}/sobjects/Account", "referenceId": "refAccount", "body": {"Name": name}},
            {
                "method": "POST",
                "url": f"{V}/sobjects/Contact",
                "referenceId": "refContact",
                "body": {"LastName": f"Cmp {run_id}", "AccountId": "@{refAccount.id}"},
            },
            {"method": "GET", "url": f"{V}/sobjects/Account/@{{refAccount.id}}?fields=Name,NumberOfEmployees", "referenceId": "refGet"},
            {"method": "PATCH", "url": f"{V}/sobjects/Account/@{{refAccount.id}}", "referenceId": "refPatch", "body": {"NumberOfEmployees": 5}},
            {
                "method": "GET",
                "url": f"{V}/query/?q=SELECT+Id,AccountId+FROM+Contact+WHERE+AccountId='@{{refAccount.id}}'",
                "referenceId": "refQuery",
            },
        ],
    )
    acc, con, get, patch, query = out
    assert acc["httpStatusCode"] == 201
    account_id = acc["body"]["id"]
    assert_valid_id(account_id, "001")
    assert acc["body"] == {"id": account_id, "success": True, "errors": []}
    assert acc["httpHeaders"]["Location"] == f"{V}/sobjects/Account/{account_id}"
    assert con["httpStatusCode"] == 201
    contact_id = con["body"]["id"]
    assert_valid_id(contact_id, "003")
    assert get["httpStatusCode"] == 200
    assert (get["body"]["attributes"]["type"], get["body"]["Name"], get["body"]["NumberOfEmployees"]) == ("Account", name, None)
    assert (patch["httpStatusCode"], patch["body"]) == (204, None)
    assert query["httpStatusCode"] == 200
    assert [(r["Id"], r["AccountId"]) for r in query["body"]["records"]] == [(contact_id, account_id)]

    assert sf.Contact.get(contact_id)["AccountId"] == account_id
    assert sf.Account.get(account_id)["NumberOfEmployees"] == 5


def test_composite_without_all_or_none_commits_the_rest(sf, run_id):
    ok_name = f"Cmp partial ok {run_id}"
    dep_name = f"Cmp partial dep {run_id}"
    out = composite(
        sf,
        False,
        [
            {"method": "POST", "url": f"{V}/sobjects/Account", "referenceId": "refOk", "body": {"Name": ok_name}},
            {"method": "POST", "url": f"{V}/sobjects/Contact", "referenceId": "refBad", "body": {"FirstName": "no last name"}},
            {
                "method": "POST",
                "url": f"{V}/sobjects/Contact",
                "referenceId": "refDependent",
                "body": {"LastName": dep_name, "Description": "@{refBad.id}"},
            },
        ],
    )
    ok, bad, dependent = out
    assert ok["httpStatusCode"] == 201
    assert bad["httpStatusCode"] == 400
    assert bad["body"] == [
        {"errorCode": "REQUIRED_FIELD_MISSING", "message": "Required fields are missing: [LastName]", "fields": ["LastName"]}
    ]
    assert dependent["httpStatusCode"] == 400
    assert [e["errorCode"] for e in dependent["body"]] == ["PROCESSING_HALTED"], dependent

    assert sf.Account.get(ok["body"]["id"])["Name"] == ok_name, "the independent subrequest was committed"
    assert count(sf, f"SELECT Id FROM Contact WHERE LastName = {soql_quote(dep_name)}") == 0


def test_composite_all_or_none_leaves_no_trace(sf, run_id):
    kept = sf.Account.create({"Name": f"Cmp keep {run_id}", "NumberOfEmployees": 1})["id"]
    survivor = sf.Account.create({"Name": f"Cmp survivor {run_id}"})["id"]
    new_name = f"Cmp rolled back {run_id}"
    contact_name = f"Cmp rolled back {run_id}"
    out = composite(
        sf,
        True,
        [
            {"method": "POST", "url": f"{V}/sobjects/Account", "referenceId": "refNew", "body": {"Name": new_name}},
            {"method": "PATCH", "url": f"{V}/sobjects/Account/{kept}", "referenceId": "refUpdate", "body": {"NumberOfEmployees": 99}},
            {"method": "DELETE", "url": f"{V}/sobjects/Account/{survivor}", "referenceId": "refDelete"},
            {
                "method": "POST",
                "url": f"{V}/sobjects/Contact",
                "referenceId": "refBad",
                "body": {"LastName": contact_name, "AccountId": "@{refNew.id}", "Email": "not-an-email"},
            },
        ],
    )
    for sub in out[:3]:
        assert sub["httpStatusCode"] == 400, sub
        assert sub["body"] == [{"errorCode": "PROCESSING_HALTED", "message": ROLLED_BACK}], sub
    bad = out[3]
    assert bad["httpStatusCode"] == 400
    [err] = bad["body"]
    assert (err["errorCode"], err["message"], err["fields"]) == (
        "INVALID_EMAIL_ADDRESS",
        "Email: invalid email address: not-an-email",
        ["Email"],
    )

    # no trace: no new Account or Contact, the update and the delete were undone
    assert count(sf, f"SELECT Id FROM Account WHERE Name = {soql_quote(new_name)}") == 0
    assert count(sf, f"SELECT Id FROM Contact WHERE LastName = {soql_quote(contact_name)}") == 0
    assert sf.Account.get(kept)["NumberOfEmployees"] == 1
    res = sf.query(f"SELECT Id, IsDeleted FROM Account WHERE Id = {soql_quote(survivor)}")
    assert [(r["Id"], r["IsDeleted"]) for r in res["records"]] == [(survivor, False)]


def test_composite_over_25_subrequests_is_rejected_whole(sf, run_id):
    name = f"Cmp too many {run_id}"
    subrequests = [
        {"method": "POST", "url": f"{V}/sobjects/Account", "referenceId": f"ref{i}", "body": {"Name": name}} for i in range(26)
    ]
    with pytest.raises(SalesforceMalformedRequest) as exc:
        sf.restful("composite", method="POST", json={"allOrNone": False, "compositeRequest": subrequests})
    content = exc.value.content
    assert isinstance(content, list) and content and "errorCode" in content[0], content
    assert count(sf, f"SELECT Id FROM Account WHERE Name = {soql_quote(name)}") == 0


# ==========================================================================
# sObject Collections /composite/sobjects
# ==========================================================================


def test_collections_create_mixed_types_partial_success(sf, run_id):
    names = [f"Coll create {run_id} a", f"Coll create {run_id} c"]
    res = sf.restful(
        "composite/sobjects",
        method="POST",
        json={
            "allOrNone": False,
            "records": [
                {"attributes": {"type": "Account"}, "Name": names[0]},
                {"attributes": {"type": "Contact"}, "LastName": names[1]},
                {"attributes": {"type": "Account"}, "NumberOfEmployees": 3},
            ],
        },
    )
    assert len(res) == 3
    assert (res[0]["success"], res[0]["errors"]) == (True, [])
    assert_valid_id(res[0]["id"], "001")
    assert (res[1]["success"], res[1]["errors"]) == (True, [])
    assert_valid_id(res[1]["id"], "003")
    assert res[2]["success"] is False and res[2].get("id") is None
    assert res[2]["errors"] == [
        {"statusCode": "REQUIRED_FIELD_MISSING", "message": "Required fields are missing: [Name]", "fields": ["Name"]}
    ]
    assert sf.Account.get(res[0]["id"])["Name"] == names[0]
    assert sf.Contact.get(res[1]["id"])["LastName"] == names[1]


def test_collections_create_all_or_none_commits_nothing(sf, run_id):
    name = f"Coll aon {run_id}"
    res = sf.restful(
        "composite/sobjects",
        method="POST",
        json={
            "allOrNone": True,
            "records": [
                {"attributes": {"type": "Account"}, "Name": name},
                {"attributes": {"type": "Account"}, "Description": "no name"},
            ],
        },
    )
    assert [r["success"] for r in res] == [False, False]
    assert [e["statusCode"] for e in res[0]["errors"]] == ["ALL_OR_NONE_OPERATION_ROLLED_BACK"]
    assert [e["statusCode"] for e in res[1]["errors"]] == ["REQUIRED_FIELD_MISSING"]
    assert count(sf, f"SELECT Id FROM Account WHERE Name = {soql_quote(name)}") == 0


def test_collections_update(sf, run_id):
    a = sf.Account.create({"Name": f"Coll upd a {run_id}"})["id"]
    b = sf.Account.create({"Name": f"Coll upd b {run_id}"})["id"]
    records = [
        {"attributes": {"type": "Account"}, "id": a, "Name": f"Coll upd a2 {run_id}"},
        {"attributes": {"type": "Account"}, "id": b, "Name": ""},  # a required field set to empty
    ]
    res = sf.restful("composite/sobjects", method="PATCH", json={"allOrNone": True, "records": records})
    assert [r["success"] for r in res] == [False, False], res
    assert [e["statusCode"] for e in res[0]["errors"]] == ["ALL_OR_NONE_OPERATION_ROLLED_BACK"]
    assert [e["statusCode"] for e in res[1]["errors"]] == ["REQUIRED_FIELD_MISSING"]
    assert sf.Account.get(a)["Name"] == f"Coll upd a {run_id}", "nothing committed"

    res = sf.restful("composite/sobjects", method="PATCH", json={"allOrNone": False, "records": records})
    assert res[0] == {"id": a, "success": True, "errors": []}
    # like SOAP's SaveResult, a failed item has no id (the key is absent or null)
    assert res[1]["success"] is False and res[1].get("id") is None, res[1]
    assert [e["statusCode"] for e in res[1]["errors"]] == ["REQUIRED_FIELD_MISSING"]
    assert sf.Account.get(a)["Name"] == f"Coll upd a2 {run_id}"
    assert sf.Account.get(b)["Name"] == f"Coll upd b {run_id}"


def test_collections_upsert_by_external_id(sf, custom_object, run_id):
    obj = custom_object.name
    existing = getattr(sf, obj).create({"Name": "before", "External_Id__c": f"coll-up-{run_id}-0"})["id"]
    res = sf.restful(
        f"composite/sobjects/{obj}/External_Id__c",
        method="PATCH",
        json={
            "allOrNone": False,
            "records": [
                {"attributes": {"type": obj}, "External_Id__c": f"coll-up-{run_id}-0", "Name": "after"},
                {"attributes": {"type": obj}, "External_Id__c": f"coll-up-{run_id}-1", "Name": "new"},
            ],
        },
    )
    assert res[0] == {"id": existing, "success": True, "errors": [], "created": False}
    assert (res[1]["success"], res[1]["created"], res[1]["errors"]) == (True, True, [])
    assert getattr(sf, obj).get(existing)["Name"] == "after"
    assert getattr(sf, obj).get(res[1]["id"])["External_Id__c"] == f"coll-up-{run_id}-1"


def test_collections_retrieve_get_and_post(sf, run_id):
    a = sf.Account.create({"Name": f"Coll get a {run_id}", "NumberOfEmployees": 1})["id"]
    b = sf.Account.create({"Name": f"Coll get b {run_id}", "NumberOfEmployees": 2})["id"]
    gone = sf.Account.create({"Name": f"Coll get gone {run_id}"})["id"]
    assert sf.Account.delete(gone) == 204

    res = sf.restful("composite/sobjects/Account", params={"ids": f"{a},{b},{gone}", "fields": "Id,Name,NumberOfEmployees"})
    assert len(res) == 3
    for rec, (rid, name, n) in zip(res, [(a, f"Coll get a {run_id}", 1), (b, f"Coll get b {run_id}", 2)]):
        assert rec["attributes"] == {"type": "Account", "url": f"{V}/sobjects/Account/{rid}"}
        assert (rec["Id"], rec["Name"], rec["NumberOfEmployees"]) == (rid, name, n)
    assert res[2] is None, "an id that is not found gives null"

    posted = sf.restful("composite/sobjects/Account", method="POST", json={"ids": [b, a], "fields": ["Name"]})
    assert [r["Name"] for r in posted] == [f"Coll get b {run_id}", f"Coll get a {run_id}"]


def test_collections_delete(sf, run_id):
    ids = [sf.Account.create({"Name": f"Coll del {i} {run_id}"})["id"] for i in range(3)]
    gone = sf.Account.create({"Name": f"Coll del gone {run_id}"})["id"]
    assert sf.Account.delete(gone) == 204

    res = sf.restful("composite/sobjects", method="DELETE", params={"ids": ",".join([ids[0], gone]), "allOrNone": "true"})
    assert [r["success"] for r in res] == [False, False], res
    assert [e["statusCode"] for e in res[0]["errors"]] == ["ALL_OR_NONE_OPERATION_ROLLED_BACK"]
    assert [e["statusCode"] for e in res[1]["errors"]] == ["ENTITY_IS_DELETED"]
    assert count(sf, f"SELECT Id FROM Account WHERE Id = {soql_quote(ids[0])}") == 1, "nothing deleted"

    res = sf.restful("composite/sobjects", method="DELETE", params={"ids": ",".join(ids), "allOrNone": "false"})
    assert res == [{"id": i, "success": True, "errors": []} for i in ids]
    assert count(sf, f"SELECT Id FROM Account WHERE Id IN {in_list(ids)}") == 0


# ==========================================================================
# sObject Tree /composite/tree/{T}
# ==========================================================================


def tree_body(run_id: str, email: str) -> dict:
    return {
        "records": [
            {
                "attributes": {"type": "Account", "referenceId": "acc1"},
                "Name": f"Tree one {run_id}",
                "Contacts": {
                    "records": [
                        {"attributes": {"type": "Contact", "referenceId": "con1"}, "LastName": f"Tree a {run_id}"},
                        {"attributes": {"type": "Contact", "referenceId": "con2"}, "LastName": f"Tree b {run_id}", "Email": email},
                    ]
                },
            },
            {"attributes": {"type": "Account", "referenceId": "acc2"}, "Name": f"Tree two {run_id}"},
        ]
    }


def test_tree_creates_nested_records(sf, run_id):
    res = sf.restful("composite/tree/Account", method="POST", json=tree_body(run_id, f"tree.{run_id}@example.com"))
    assert res["hasErrors"] is False
    ids = {r["referenceId"]: r["id"] for r in res["results"]}
    assert set(ids) == {"acc1", "acc2", "con1", "con2"}
    for ref in ("acc1", "acc2"):
        assert_valid_id(ids[ref], "001")
    for ref in ("con1", "con2"):
        assert_valid_id(ids[ref], "003")
    contacts = sf.query(f"SELECT Id, AccountId FROM Contact WHERE Id IN {in_list([ids['con1'], ids['con2']])}")
    assert {r["AccountId"] for r in contacts["records"]} == {ids["acc1"]}, "children are linked to their parent"


def test_tree_failure_saves_nothing(sf, run_id):
    tag = f"{run_id}x"
    with pytest.raises(SalesforceMalformedRequest) as exc:
        sf.restful("composite/tree/Account", method="POST", json=tree_body(tag, "not-an-email"))
    content = exc.value.content
    assert content["hasErrors"] is True
    assert content["results"] == [
        {
            "referenceId": "con2",
            "errors": [
                {"statusCode": "INVALID_EMAIL_ADDRESS", "message": "Email: invalid email address: not-an-email", "fields": ["Email"]}
            ],
        }
    ]
    assert count(sf, f"SELECT Id FROM Account WHERE Name IN {in_list([f'Tree one {tag}', f'Tree two {tag}'])}") == 0
    assert count(sf, f"SELECT Id FROM Contact WHERE LastName = {soql_quote(f'Tree a {tag}')}") == 0
