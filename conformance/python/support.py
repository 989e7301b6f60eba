"""Test plumbing for driving simple-salesforce against a running Conflux server.

Environment (set by `cargo xtask conformance`, or by hand for a server you started):

    CONFLUX_HTTP_URL        plain-HTTP base URL, e.g. http://127.0.0.1:40123
    CONFLUX_HTTPS_URL       TLS base URL, e.g. https://127.0.0.1:40124
    CONFLUX_CA_FILE         PEM of the private CA that signed the server certificate
    CONFLUX_USERNAME        admin username
    CONFLUX_PASSWORD        admin password (no security token needed)
    CONFLUX_CLIENT_ID       connected app consumer key
    CONFLUX_CLIENT_SECRET   connected app consumer secret
    CONFLUX_JWT_KEY_FILE    PEM RSA private key registered on that connected app

How the login endpoints are reached
-----------------------------------
simple-salesforce 1.12.10 only ever speaks HTTPS and hard-codes the *login* host:
login.py builds `https://{domain}.salesforce.com/services/Soap/u/{version}` for SOAP
login and `https://{domain}.salesforce.com/services/oauth2/token` for the OAuth
password, client-credentials and JWT flows. Only `SalesforceLogin(..., scratch_url=...)`
can change the SOAP URL, and `Salesforce(...)` does not pass it through. Every one of
those requests goes through the `requests.Session` given as `Salesforce(session=...)`,
so the tests hand it a session whose https transport adapter (`ConfluxAdapter`)
rewrites scheme+host+port of any `*.salesforce.com` URL to CONFLUX_HTTPS_URL and keeps
path and query. The library is not modified, and the original URLs are recorded so
the tests can assert what the client asked for. After login simple-salesforce uses
the host from the login response (`<serverUrl>` / `instance_url`), i.e. the Conflux
server itself, so nothing else is rewritten.

TLS: every session verifies against CONFLUX_CA_FILE and has `trust_env = False`.
The latter matters: with `trust_env` on, requests lets REQUESTS_CA_BUNDLE /
CURL_CA_BUNDLE from the environment replace `Session.verify` on every request
(requests/sessions.py, `Session.merge_environment_settings`), and honours proxy
variables for 127.0.0.1 too.
"""

from __future__ import annotations

import csv
import io
import os
import re
import socket
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any

import pytest
from urllib.parse import urlsplit, urlunsplit

import requests
from requests.adapters import HTTPAdapter
from simple_salesforce import Salesforce

REQUIRED_ENV = (
    "CONFLUX_HTTP_URL",
    "CONFLUX_HTTPS_URL",
    "CONFLUX_CA_FILE",
    "CONFLUX_USERNAME",
    "CONFLUX_PASSWORD",
    "CONFLUX_CLIENT_ID",
    "CONFLUX_CLIENT_SECRET",
    "CONFLUX_JWT_KEY_FILE",
)

START_HINT = (
    "These suites need a running Conflux server; they never start one.\n"
    "Run them through `cargo xtask conformance`, or start a server yourself, e.g.\n"
    "    conflux serve --data \"$(mktemp -d)\" --http 127.0.0.1:0 --https 127.0.0.1:0\n"
    "and export CONFLUX_HTTP_URL, CONFLUX_HTTPS_URL, CONFLUX_CA_FILE, CONFLUX_USERNAME,\n"
    "CONFLUX_PASSWORD, CONFLUX_CLIENT_ID, CONFLUX_CLIENT_SECRET and CONFLUX_JWT_KEY_FILE\n"
    "for it before running conformance/run.sh."
)

DEFAULT_TIMEOUT_S = 120
API_VERSION = "59.0"  # simple-salesforce 1.12.10 DEFAULT_API_VERSION (api.py)


# --------------------------------------------------------------------------
# Environment
# --------------------------------------------------------------------------


@dataclass(frozen=True)
class ConfluxEnv:
    http_url: str
    https_url: str
    ca_file: str
    username: str
    password: str
    client_id: str
    client_secret: str
    jwt_key_file: str


def missing_env() -> list[str]:
    return [name for name in REQUIRED_ENV if not os.environ.get(name)]


def env_problem() -> str | None:
    """A readable reason the environment is unusable, or None."""
    missing = missing_env()
    if missing:
        return "Missing environment variables: " + ", ".join(missing) + "\n" + START_HINT
    for var in ("CONFLUX_CA_FILE", "CONFLUX_JWT_KEY_FILE"):
        if not os.path.isfile(os.environ[var]):
            return f"{var}={os.environ[var]} is not a file.\n" + START_HINT
    return None


def load_env() -> ConfluxEnv:
    e = os.environ
    return ConfluxEnv(
        http_url=e["CONFLUX_HTTP_URL"].rstrip("/"),
        https_url=e["CONFLUX_HTTPS_URL"].rstrip("/"),
        ca_file=e["CONFLUX_CA_FILE"],
        username=e["CONFLUX_USERNAME"],
        password=e["CONFLUX_PASSWORD"],
        client_id=e["CONFLUX_CLIENT_ID"],
        client_secret=e["CONFLUX_CLIENT_SECRET"],
        jwt_key_file=e["CONFLUX_JWT_KEY_FILE"],
    )


# --------------------------------------------------------------------------
# HTTP plumbing
# --------------------------------------------------------------------------


class ConfluxAdapter(HTTPAdapter):
    """Transport adapter with a default timeout that can reroute *.salesforce.com.

    With `reroute_to` set, a request for https://<anything>.salesforce.com/... is sent
    to `reroute_to` with the same path and query, and its original URL is appended to
    `rerouted`. Other URLs pass through untouched.
    """

    def __init__(self, reroute_to: str | None = None, timeout: float = DEFAULT_TIMEOUT_S):
        super().__init__()
        self.reroute_to = urlsplit(reroute_to) if reroute_to else None
        self.timeout = timeout
        self.rerouted: list[str] = []

    def send(self, request, **kwargs):  # type: ignore[override]
        if kwargs.get("timeout") is None:
            kwargs["timeout"] = self.timeout
        if self.reroute_to is not None:
            parts = urlsplit(request.url)
            host = (parts.hostname or "").lower()
            if host == "salesforce.com" or host.endswith(".salesforce.com"):
                self.rerouted.append(request.url)
                request.url = urlunsplit(
                    (self.reroute_to.scheme, self.reroute_to.netloc, parts.path, parts.query, parts.fragment)
                )
        return super().send(request, **kwargs)


class CountingSession(requests.Session):
    """A requests.Session that counts requests and can enforce a ceiling.

    simple-salesforce's SFType._call_salesforce retries after a re-login without passing
    its retry counter on (api.py, SFType._call_salesforce), so a server that kept
    answering 401 would make it recurse until RecursionError. The ceiling turns that
    into a quick, readable failure.
    """

    def __init__(self) -> None:
        super().__init__()
        self.request_count = 0
        self.max_requests: int | None = None
        # time.monotonic() after which no new request may start: simple-salesforce's Bulk 1.0
        # helpers poll a batch with no time limit at all (bulk.py SFBulkType.worker and
        # _bulk_operation), so a batch that never completes would hang the run.
        self.deadline: float | None = None

    def request(self, method, url, *args, **kwargs):  # type: ignore[override]
        self.request_count += 1
        if self.max_requests is not None and self.request_count > self.max_requests:
            raise AssertionError(
                f"more than {self.max_requests} HTTP requests on this session "
                f"(last: {method} {url}); is the client stuck in a re-login loop?"
            )
        if self.deadline is not None and time.monotonic() > self.deadline:
            raise AssertionError(f"time limit of this session passed (last: {method} {url}); is a job stuck?")
        return super().request(method, url, *args, **kwargs)


def make_session(env: ConfluxEnv, reroute: bool = False) -> CountingSession:
    session = CountingSession()
    session.trust_env = False
    session.verify = env.ca_file
    adapter = ConfluxAdapter(reroute_to=env.https_url if reroute else None)
    session.mount("https://", adapter)
    session.mount("http://", ConfluxAdapter())
    session.conflux_adapter = adapter  # type: ignore[attr-defined]
    return session


def rerouted_urls(session: requests.Session) -> list[str]:
    return session.conflux_adapter.rerouted  # type: ignore[attr-defined]


def password_grant(env: ConfluxEnv) -> requests.Response:
    return make_session(env).post(
        env.https_url + "/services/oauth2/token",
        data={
            "grant_type": "password",
            "client_id": env.client_id,
            "client_secret": env.client_secret,
            "username": env.username,
            "password": env.password,
        },
    )


def revoke(env: ConfluxEnv, token: str) -> requests.Response:
    """Invalidate a token out-of-band with a raw client (not through simple-salesforce)."""
    return make_session(env).post(env.https_url + "/services/oauth2/revoke", data={"token": token})


def direct_salesforce(
    env: ConfluxEnv, token: dict, version: str = API_VERSION, time_limit: float | None = None
) -> Salesforce:
    """Login path (a): Salesforce(instance_url=..., session_id=...) on a CA-verifying session.

    With `time_limit` (seconds), the session refuses to start requests after that long."""
    session = make_session(env)
    if time_limit is not None:
        session.deadline = time.monotonic() + time_limit
    return Salesforce(
        instance_url=token["instance_url"],
        session_id=token["access_token"],
        session=session,
        version=version,
    )


# --------------------------------------------------------------------------
# Record ids and SOQL
# --------------------------------------------------------------------------

_ID_SUFFIX_ALPHABET = "ABCDEFGHIJKLMNOPQRSTUVWXYZ012345"


def id18(id15: str) -> str:
    """Salesforce's case-insensitive 18-character form of a 15-character id."""
    assert len(id15) == 15, id15
    suffix = ""
    for chunk in range(3):
        bits = 0
        for j in range(5):
            c = id15[chunk * 5 + j]
            if "A" <= c <= "Z":
                bits |= 1 << j
        suffix += _ID_SUFFIX_ALPHABET[bits]
    return id15 + suffix


def assert_valid_id(value: Any, prefix: str | None = None) -> None:
    assert isinstance(value, str) and len(value) == 18, f"not an 18-char id: {value!r}"
    assert value.isascii() and value.isalnum(), value
    assert id18(value[:15]) == value, f"bad checksum suffix in {value!r}"
    if prefix is not None:
        assert value.startswith(prefix), f"{value!r} does not start with key prefix {prefix!r}"


def soql_quote(value: str) -> str:
    return "'" + value.replace("\\", "\\\\").replace("'", "\\'") + "'"


# --------------------------------------------------------------------------
# Tooling API
# --------------------------------------------------------------------------


@dataclass
class CustomObject:
    name: str  # e.g. Conf_1a2b3c4d__c
    object_result: dict
    field_results: dict  # field API name -> Tooling create result
    child_relationship: str | None = None  # e.g. Confs_1a2b3c4d__r (on Account)


def tooling_create_object(sf: Salesforce, api_name: str, label: str) -> dict:
    body = {
        "FullName": api_name,
        "Metadata": {
            "label": label,
            "pluralLabel": label + "s",
            "nameField": {"type": "Text", "label": label + " Name"},
            "deploymentStatus": "Deployed",
            "sharingModel": "ReadWrite",
        },
    }
    # toolingexecute: POST {base}tooling/sobjects/CustomObject with data=json.dumps(body)
    return sf.toolingexecute("sobjects/CustomObject", method="POST", data=body)


def tooling_create_field(sf: Salesforce, object_name: str, field_name: str, metadata: dict) -> dict:
    body = {"FullName": f"{object_name}.{field_name}", "Metadata": metadata}
    # restful: POST {base}tooling/sobjects/CustomField (the other public route)
    return sf.restful("tooling/sobjects/CustomField", method="POST", json=body)


# --------------------------------------------------------------------------
# Many records
# --------------------------------------------------------------------------


def create_many(env: ConfluxEnv, token: dict, sobject: str, records: list[dict], workers: int = 16) -> list[str]:
    """Single-record creates from a thread pool; one client (and HTTP session) per thread."""
    local = threading.local()

    def create(rec: dict) -> str:
        if not hasattr(local, "sf"):
            local.sf = direct_salesforce(env, token)
        result = getattr(local.sf, sobject).create(rec)
        assert result["success"] is True, result
        return result["id"]

    with ThreadPoolExecutor(max_workers=workers) as pool:
        return list(pool.map(create, records))


def delete_many(env: ConfluxEnv, token: dict, sobject: str, ids: list[str], workers: int = 8) -> None:
    local = threading.local()

    def delete(record_id: str) -> None:
        if not hasattr(local, "sf"):
            local.sf = direct_salesforce(env, token)
        status = getattr(local.sf, sobject).delete(record_id)
        assert status == 204, status

    with ThreadPoolExecutor(max_workers=workers) as pool:
        list(pool.map(delete, ids))


PAGING_LIVE = 5050
PAGING_DELETED = 50


@dataclass
class PagingDataset:
    sobject: str
    live_ids: set
    deleted_ids: set


BULK_QUERY_LIVE = 1000
BULK_QUERY_DELETED = 10


@dataclass
class BulkQueryDataset:
    sobject: str
    live: dict  # id -> Name
    deleted: dict  # id -> Name


# --------------------------------------------------------------------------
# Bulk results
# --------------------------------------------------------------------------

# Bulk API 2.0 `sf__Error` / Bulk API 1.0 `Error`: "STATUS_CODE:message:fields --", e.g.
# "REQUIRED_FIELD_MISSING:Required fields are missing: [LastName]:LastName --". The message
# may itself contain colons, the field list never does.
_SF_ERROR_RE = re.compile(r"^([A-Z_]+):(.*):([^:]*) --$", re.S)


@dataclass(frozen=True)
class BulkError:
    code: str
    message: str
    fields: list


def parse_bulk_error(text: str) -> BulkError:
    m = _SF_ERROR_RE.match(text or "")
    assert m, f"not a Bulk error string 'CODE:message:fields --': {text!r}"
    fields = [f for f in m.group(3).split(",") if f]
    return BulkError(code=m.group(1), message=m.group(2), fields=fields)


def csv_records(text: str, delimiter: str = ",") -> list[dict]:
    """Rows of a CSV document (first line = header) as dicts."""
    return list(csv.DictReader(io.StringIO(text), delimiter=delimiter))


# ---------------------------------------------------------------- receivers and waiting


def free_port() -> int:
    """A loopback port nothing listens on right now (for a receiver a test starts later)."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_for(what: str, check, timeout: float = 90.0):
    """Polls `check` every 0.2 s until it returns something truthy; fails the test after `timeout`."""
    deadline = time.monotonic() + timeout
    while True:
        value = check()
        if value:
            return value
        if time.monotonic() > deadline:
            pytest.fail(f"timed out waiting for {what}")
        time.sleep(0.2)


def deliveries(sf, **params) -> list[dict]:
    """The delivery queue's entries matching `params`, through the admin API."""
    query = "&".join(f"{k}={v}" for k, v in params.items())
    return sf.restful(f"conflux/deliveries?{query}")["deliveries"]
