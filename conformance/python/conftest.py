"""pytest fixtures for the simple-salesforce suite (plumbing lives in support.py)."""

from __future__ import annotations

import os
import secrets
import time
from urllib.parse import urlsplit

import pytest
import requests

from support import (
    BULK_QUERY_DELETED,
    BULK_QUERY_LIVE,
    PAGING_DELETED,
    PAGING_LIVE,
    START_HINT,
    BulkQueryDataset,
    CustomObject,
    PagingDataset,
    create_many,
    delete_many,
    direct_salesforce,
    env_problem,
    load_env,
    make_session,
    password_grant,
    soql_quote,
    tooling_create_field,
    tooling_create_object,
)


def pytest_sessionstart(session: pytest.Session) -> None:
    """Stop the whole run at once, loudly, when there is no server to talk to.

    Collection (`--collect-only`) works without one."""
    if session.config.option.collectonly:
        return
    problem = env_problem()
    if problem:
        pytest.exit(problem, returncode=3)
    url = os.environ["CONFLUX_HTTPS_URL"].rstrip("/") + "/services/data/"
    probe = requests.Session()
    probe.trust_env = False
    try:
        probe.get(url, verify=os.environ["CONFLUX_CA_FILE"], timeout=10)
    except requests.RequestException as exc:
        pytest.exit(f"Cannot reach the Conflux server at {url}: {exc}\n{START_HINT}", returncode=3)


@pytest.fixture(scope="session")
def conflux():
    problem = env_problem()
    if problem:
        pytest.fail(problem, pytrace=False)
    return load_env()


@pytest.fixture(scope="session")
def run_id() -> str:
    """Random token that makes this run's object names and record values unique."""
    return secrets.token_hex(4)


@pytest.fixture
def new_session(conflux):
    """Factory: a CA-verifying requests.Session, optionally rerouting *.salesforce.com."""

    def factory(reroute: bool = False):
        return make_session(conflux, reroute=reroute)

    return factory


@pytest.fixture(scope="session")
def oauth_token(conflux) -> dict:
    resp = password_grant(conflux)
    assert resp.status_code == 200, f"password grant failed: {resp.status_code} {resp.text}"
    return resp.json()


@pytest.fixture(scope="session")
def sf(conflux, oauth_token):
    """simple-salesforce on a session id + instance URL (login path (a))."""
    return direct_salesforce(conflux, oauth_token)


@pytest.fixture(scope="session")
def admin_user(sf, conflux) -> dict:
    res = sf.query(f"SELECT Id, Name, Username FROM User WHERE Username = {soql_quote(conflux.username)}")
    assert res["totalSize"] == 1, res
    return res["records"][0]


@pytest.fixture(scope="session")
def custom_object(sf, run_id) -> CustomObject:
    """Conf_<run>__c with External_Id__c (Text 80, external id, unique), Amount__c
    (Number 16,2) and Account__c (lookup to Account, child relationship Confs_<run>__r),
    created through the Tooling API and used straight away."""
    name = f"Conf_{run_id}__c"
    obj = tooling_create_object(sf, name, f"Conf {run_id}")
    child_rel = f"Confs_{run_id}"
    fields = {
        "External_Id__c": tooling_create_field(
            sf,
            name,
            "External_Id__c",
            {
                "type": "Text",
                "label": "External Id",
                "length": 80,
                "externalId": True,
                "unique": True,
                "required": False,
            },
        ),
        "Amount__c": tooling_create_field(
            sf,
            name,
            "Amount__c",
            {"type": "Number", "label": "Amount", "precision": 16, "scale": 2, "required": False},
        ),
        "Account__c": tooling_create_field(
            sf,
            name,
            "Account__c",
            {
                "type": "Lookup",
                "label": "Account",
                "referenceTo": "Account",
                "relationshipName": child_rel,
                "relationshipLabel": f"Confs {run_id}",
                "deleteConstraint": "SetNull",
                "required": False,
            },
        ),
    }
    return CustomObject(name=name, object_result=obj, field_results=fields, child_relationship=child_rel + "__r")


@pytest.fixture(scope="session")
def paging_dataset(sf, conflux, oauth_token, run_id) -> PagingDataset:
    """A fresh custom object holding 5,100 records, 50 of which are then deleted."""
    name = f"ConfPage_{run_id}__c"
    result = tooling_create_object(sf, name, f"ConfPage {run_id}")
    assert result.get("success") is True, result
    total = PAGING_LIVE + PAGING_DELETED
    started = time.monotonic()
    ids = create_many(conflux, oauth_token, name, [{"Name": f"page-{i:05d}"} for i in range(total)])
    assert len(set(ids)) == total
    deleted = ids[:PAGING_DELETED]
    delete_many(conflux, oauth_token, name, deleted)
    print(f"paging dataset: {total} creates + {PAGING_DELETED} deletes in {time.monotonic() - started:.1f}s")
    return PagingDataset(sobject=name, live_ids=set(ids[PAGING_DELETED:]), deleted_ids=set(deleted))


# --------------------------------------------------------------------------
# Bulk and composite suites (test_bulk.py, test_composite.py)
# --------------------------------------------------------------------------

BULK_TIME_LIMIT_S = 240  # per test: the clients' own polling has no (or a 24 h) limit


@pytest.fixture
def bulk_sf(conflux, oauth_token):
    """simple-salesforce on a fresh session that refuses requests after BULK_TIME_LIMIT_S.

    Also caps simple-salesforce's Bulk 2.0 job polling (`_Bulk2Client.wait_for_job`, whose
    limit is the class attribute DEFAULT_WAIT_TIMEOUT_SECONDS = 86400) at 120 s."""
    from simple_salesforce.bulk2 import _Bulk2Client

    saved = _Bulk2Client.DEFAULT_WAIT_TIMEOUT_SECONDS
    _Bulk2Client.DEFAULT_WAIT_TIMEOUT_SECONDS = 120
    try:
        yield direct_salesforce(conflux, oauth_token, time_limit=BULK_TIME_LIMIT_S)
    finally:
        _Bulk2Client.DEFAULT_WAIT_TIMEOUT_SECONDS = saved


@pytest.fixture(scope="session")
def bulk_query_dataset(sf, conflux, oauth_token, run_id) -> BulkQueryDataset:
    """A fresh custom object with 1,000 live records and 10 deleted ones, made over plain REST
    (single creates and deletes), so the Bulk query tests do not depend on Bulk ingest."""
    name = f"ConfBulkQ_{run_id}__c"
    result = tooling_create_object(sf, name, f"ConfBulkQ {run_id}")
    assert result.get("success") is True, result
    names = [f"bq-{run_id}-{i:04d}" for i in range(BULK_QUERY_LIVE + BULK_QUERY_DELETED)]
    ids = create_many(conflux, oauth_token, name, [{"Name": n} for n in names])
    by_id = dict(zip(ids, names))
    deleted = ids[:BULK_QUERY_DELETED]
    delete_many(conflux, oauth_token, name, deleted)
    return BulkQueryDataset(
        sobject=name,
        live={i: by_id[i] for i in ids[BULK_QUERY_DELETED:]},
        deleted={i: by_id[i] for i in deleted},
    )


@pytest.fixture
def salesforce_bulk_env(conflux, monkeypatch):
    """Environment for salesforce-bulk 2.2.0, which calls the module-level `requests.get/post`
    (no Session, no verify= and no timeout; salesforce_bulk.py): TLS trust can only come from
    the environment, so REQUESTS_CA_BUNDLE (read by requests' merge_environment_settings)
    points at the CA, and proxy variables are dropped so 127.0.0.1 is reached directly."""
    monkeypatch.setenv("REQUESTS_CA_BUNDLE", conflux.ca_file)
    monkeypatch.delenv("CURL_CA_BUNDLE", raising=False)
    for var in ("http_proxy", "https_proxy", "HTTP_PROXY", "HTTPS_PROXY", "all_proxy", "ALL_PROXY"):
        monkeypatch.delenv(var, raising=False)


@pytest.fixture
def salesforce_bulk(conflux, oauth_token, salesforce_bulk_env):
    """salesforce-bulk 2.2.0 on the session id + host form: `SalesforceBulk(sessionId=, host=)`.

    `host` is the host:port of CONFLUX_HTTPS_URL: a host without a scheme gets "https://"
    prepended and "/services/async/<API_version>" (default 40.0) appended
    (SalesforceBulk.__init__)."""
    from salesforce_bulk import SalesforceBulk

    host = urlsplit(conflux.https_url).netloc
    return SalesforceBulk(sessionId=oauth_token["access_token"], host=host)
