"""Conformance of Conflux with simple-salesforce 1.12.10 (unmodified, public API only).

Raw `requests` calls appear only for out-of-band work the library cannot do itself
(token revocation) and for wire facts the library relies on without exposing them
(the shape of the OAuth token response and of the 401 body). See conftest.py for how
the library's hard-coded https://{domain}.salesforce.com login URLs reach the server.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import re
import secrets
import string
import time
from datetime import datetime, timedelta, timezone
from urllib.parse import urlsplit

import pytest
from simple_salesforce import Salesforce, SalesforceLogin
from simple_salesforce.exceptions import (
    SalesforceAuthenticationFailed,
    SalesforceExpiredSession,
    SalesforceMalformedRequest,
    SalesforceResourceNotFound,
)

from support import (
    API_VERSION,
    PAGING_DELETED,
    PAGING_LIVE,
    assert_valid_id,
    direct_salesforce,
    id18,
    make_session,
    password_grant,
    rerouted_urls,
    revoke,
    soql_quote,
)

# "2013-05-20T20:49:32.000+0000" (REST dateTime output format)
DATETIME_RE = re.compile(r"^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}\.\d{3}\+0000$")

STANDARD_KEY_PREFIXES = {
    "Account": "001",
    "Contact": "003",
    "Lead": "00Q",
    "Opportunity": "006",
    "Case": "500",
    "Order": "801",
    "Asset": "02i",
    "Product2": "01t",
    "User": "005",
    "Organization": "00D",
}


def error_code(exc) -> str:
    """errorCode of the first REST error in a simple-salesforce exception."""
    content = exc.content
    assert isinstance(content, list) and content, f"REST error body is not a JSON array: {content!r}"
    return content[0]["errorCode"]


def looks_like_jwt(token: str) -> bool:
    return len(token.split(".")) == 3


def ids_of(records) -> list[str]:
    return [r["Id"] for r in records]


def no_next_page(result) -> bool:
    return result["done"] is True and result.get("nextRecordsUrl") is None


def random_id(prefix: str) -> str:
    """A well-formed 18-char id with the given key prefix that no server will have issued."""
    alphabet = string.ascii_letters + string.digits
    return id18(prefix + "Zz" + "".join(secrets.choice(alphabet) for _ in range(10)))


# ==========================================================================
# Login paths
# ==========================================================================

LOGIN_URL = "https://login.salesforce.com"
CLIENT_CREDENTIALS_DOMAIN = "conflux-conformance.my"  # must not be 'login'/'test' (login.py)


def soap_login(env, session):
    return Salesforce(username=env.username, password=env.password, security_token="", session=session)


def oauth_password_login(env, session):
    return Salesforce(
        username=env.username,
        password=env.password,
        consumer_key=env.client_id,
        consumer_secret=env.client_secret,
        session=session,
    )


def client_credentials_login(env, session):
    return Salesforce(
        consumer_key=env.client_id,
        consumer_secret=env.client_secret,
        domain=CLIENT_CREDENTIALS_DOMAIN,
        session=session,
    )


def jwt_bearer_login(env, session):
    return Salesforce(
        username=env.username,
        consumer_key=env.client_id,
        privatekey_file=env.jwt_key_file,
        session=session,
    )


# login kind -> (builder, the URL simple-salesforce itself posts to)
LOGIN_KINDS = {
    "soap": (soap_login, f"{LOGIN_URL}/services/Soap/u/{API_VERSION}"),
    "oauth_password": (oauth_password_login, f"{LOGIN_URL}/services/oauth2/token"),
    "client_credentials": (
        client_credentials_login,
        f"https://{CLIENT_CREDENTIALS_DOMAIN}.salesforce.com/services/oauth2/token",
    ),
    "jwt_bearer": (jwt_bearer_login, f"{LOGIN_URL}/services/oauth2/token"),
}


def whoami(sf: Salesforce, username: str) -> dict:
    res = sf.query(f"SELECT Id, Username FROM User WHERE Username = {soql_quote(username)}")
    assert res["totalSize"] == 1, res
    return res["records"][0]


def test_oauth_password_grant_response_shape(conflux, oauth_token):
    """What simple-salesforce (token_login) and jsforce read from /services/oauth2/token."""
    tok = oauth_token
    for key in ("access_token", "instance_url", "id", "token_type", "issued_at", "signature"):
        assert key in tok, f"missing {key!r} in token response {tok}"
    assert tok["token_type"] == "Bearer"
    assert "refresh_token" not in tok, "the password flow never returns a refresh token"
    assert not looks_like_jwt(tok["access_token"]), "access tokens must be opaque (jsforce blocks SOAP for JWTs)"
    inst = urlsplit(tok["instance_url"])
    assert inst.scheme == "https", "asked over HTTPS, so the instance URL must be https"
    assert inst.path == "" and not inst.query, f"instance_url must be scheme://host[:port]: {tok['instance_url']!r}"
    m = re.search(r"/id/([0-9A-Za-z]{18})/([0-9A-Za-z]{18})$", tok["id"])
    assert m, f"id must end in /id/{{orgId}}/{{userId}}: {tok['id']!r}"
    assert_valid_id(m.group(1), "00D")
    assert_valid_id(m.group(2), "005")
    assert isinstance(tok["issued_at"], str) and tok["issued_at"].isdigit()
    assert abs(int(tok["issued_at"]) / 1000 - time.time()) < 600, "issued_at is epoch milliseconds"
    expected = base64.b64encode(
        hmac.new(conflux.client_secret.encode(), (tok["id"] + tok["issued_at"]).encode(), hashlib.sha256).digest()
    ).decode()
    assert tok["signature"] == expected, "signature = base64(HMAC-SHA256(client_secret, id + issued_at))"


def test_identity_url(conflux, oauth_token, admin_user):
    session = make_session(conflux, reroute=True)
    resp = session.get(oauth_token["id"], headers={"Authorization": "Bearer " + oauth_token["access_token"]})
    assert resp.status_code == 200, resp.text
    ident = resp.json()
    assert ident["user_id"] == admin_user["Id"]
    assert ident["username"] == conflux.username
    assert oauth_token["id"].endswith(f"/id/{ident['organization_id']}/{ident['user_id']}")


def test_login_with_session_id_and_instance_url(sf, oauth_token, admin_user, conflux):
    """Path (a): token from the OAuth password grant, then Salesforce(instance_url, session_id)."""
    inst = urlsplit(oauth_token["instance_url"])
    assert sf.sf_instance == (inst.hostname if inst.port in (None, 443) else f"{inst.hostname}:{inst.port}")
    assert sf.base_url == f"https://{sf.sf_instance}/services/data/v{API_VERSION}/"
    assert whoami(sf, conflux.username)["Id"] == admin_user["Id"]
    resources = sf.restful("")  # GET /services/data/v59.0/
    for key in ("sobjects", "query", "queryAll", "limits", "tooling"):
        assert key in resources, f"resource {key!r} missing from {list(resources)}"
    assert resources["identity"].endswith("/id/" + "/".join(oauth_token["id"].split("/")[-2:]))


def test_soap_login_through_constructor(conflux, new_session, admin_user):
    """Path (c): Salesforce(username, password, security_token='') posts SOAP login to login.salesforce.com."""
    session = new_session(reroute=True)
    sf = soap_login(conflux, session)
    assert rerouted_urls(session) == [f"{LOGIN_URL}/services/Soap/u/{API_VERSION}"]
    assert sf.auth_type == "password"
    assert not looks_like_jwt(sf.session_id)
    assert "/" not in sf.sf_instance, "serverUrl host (+port) only"
    assert whoami(sf, conflux.username)["Id"] == admin_user["Id"]
    assert rerouted_urls(session) == [f"{LOGIN_URL}/services/Soap/u/{API_VERSION}"], (
        "after login every call must go to the host from <serverUrl>, not the login host"
    )


@pytest.mark.parametrize("version", ["31.0", API_VERSION])
def test_soap_login_with_scratch_url(conflux, new_session, admin_user, version):
    """SalesforceLogin(scratch_url=...) is the library's own way to aim SOAP login elsewhere."""
    session_id, instance = SalesforceLogin(
        username=conflux.username,
        password=conflux.password,
        security_token="",
        sf_version=version,
        scratch_url=conflux.https_url,
        session=new_session(),
    )
    assert session_id and not looks_like_jwt(session_id)
    assert instance and "/" not in instance
    sf = Salesforce(session_id=session_id, instance=instance, session=new_session(), version=version)
    assert whoami(sf, conflux.username)["Id"] == admin_user["Id"]


def test_soap_login_with_organization_id(conflux, new_session, oauth_token, admin_user):
    """The IP-filter variant: LoginScopeHeader/organizationId instead of a security token."""
    org_id = oauth_token["id"].split("/")[-2]
    session = new_session(reroute=True)
    sf = Salesforce(username=conflux.username, password=conflux.password, organizationId=org_id, session=session)
    assert sf.auth_type == "ipfilter"
    assert rerouted_urls(session) == [f"{LOGIN_URL}/services/Soap/u/{API_VERSION}"]
    assert whoami(sf, conflux.username)["Id"] == admin_user["Id"]


def test_oauth_password_login_through_constructor(conflux, new_session, admin_user):
    session = new_session(reroute=True)
    sf = oauth_password_login(conflux, session)
    assert rerouted_urls(session) == [f"{LOGIN_URL}/services/oauth2/token"]
    assert whoami(sf, conflux.username)["Id"] == admin_user["Id"]


def test_client_credentials_login(conflux, new_session, admin_user):
    """Path (b): client_credentials with HTTP Basic client auth; runs as the admin user."""
    session = new_session(reroute=True)
    sf = client_credentials_login(conflux, session)
    assert sf.auth_type == "client-credentials"
    assert rerouted_urls(session) == [LOGIN_KINDS["client_credentials"][1]]
    assert sf.restful("")["identity"].endswith("/" + admin_user["Id"]), "client_credentials runs as the run-as user"
    assert whoami(sf, conflux.username)["Id"] == admin_user["Id"]


def test_jwt_bearer_login(conflux, new_session, admin_user):
    """Path (d): JWT bearer; aud=https://login.salesforce.com, exp sent as a string (login.py)."""
    session = new_session(reroute=True)
    sf = jwt_bearer_login(conflux, session)
    assert sf.auth_type == "jwt-bearer"
    assert rerouted_urls(session) == [f"{LOGIN_URL}/services/oauth2/token"]
    assert whoami(sf, conflux.username)["Id"] == admin_user["Id"]


def test_soap_login_bad_password(conflux, new_session):
    with pytest.raises(SalesforceAuthenticationFailed) as err:
        Salesforce(
            username=conflux.username,
            password=conflux.password + "-wrong",
            security_token="",
            session=new_session(reroute=True),
        )
    assert err.value.code == "INVALID_LOGIN", str(err.value)


def test_oauth_password_login_bad_password(conflux, new_session):
    with pytest.raises(SalesforceAuthenticationFailed) as err:
        Salesforce(
            username=conflux.username,
            password=conflux.password + "-wrong",
            consumer_key=conflux.client_id,
            consumer_secret=conflux.client_secret,
            session=new_session(reroute=True),
        )
    assert err.value.code == "invalid_grant", str(err.value)
    assert err.value.auth_message == "authentication failure"


def test_client_credentials_bad_secret(conflux, new_session):
    with pytest.raises(SalesforceAuthenticationFailed) as err:
        Salesforce(
            consumer_key=conflux.client_id,
            consumer_secret=conflux.client_secret + "-wrong",
            domain=CLIENT_CREDENTIALS_DOMAIN,
            session=new_session(reroute=True),
        )
    assert err.value.code == "invalid_client", str(err.value)


def test_jwt_bearer_with_unregistered_key(conflux, new_session):
    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric import rsa

    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    pem = key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    ).decode()
    with pytest.raises(SalesforceAuthenticationFailed) as err:
        Salesforce(
            username=conflux.username,
            consumer_key=conflux.client_id,
            privatekey=pem,
            session=new_session(reroute=True),
        )
    assert err.value.code == "invalid_grant", str(err.value)


# ==========================================================================
# Invalidated sessions
# ==========================================================================


def assert_invalid_session_response(conflux, instance: str, token: str) -> None:
    """The 401 body simple-salesforce parses with resp.json()[0]['errorCode'] (api.py)."""
    raw = make_session(conflux).get(
        f"https://{instance}/services/data/v{API_VERSION}/limits/",
        headers={"Authorization": "Bearer " + token},
    )
    assert raw.status_code == 401, raw.text
    assert raw.headers.get("Content-Type", "").startswith("application/json")
    body = raw.json()
    assert isinstance(body, list) and len(body) == 1, body
    assert body[0]["errorCode"] == "INVALID_SESSION_ID"
    assert body[0]["message"] == "Session expired or invalid"


@pytest.mark.parametrize("kind", list(LOGIN_KINDS))
def test_revoked_session_logs_in_again(conflux, new_session, admin_user, kind):
    build, login_url = LOGIN_KINDS[kind]
    session = new_session(reroute=True)
    sf = build(conflux, session)
    whoami(sf, conflux.username)
    assert rerouted_urls(session) == [login_url]

    # Salesforce._call_salesforce path (query)
    first = sf.session_id
    assert revoke(conflux, first).status_code == 200
    assert_invalid_session_response(conflux, sf.sf_instance, first)
    session.request_count, session.max_requests = 0, 10
    assert whoami(sf, conflux.username)["Id"] == admin_user["Id"]
    assert sf.session_id != first
    assert rerouted_urls(session) == [login_url, login_url], "exactly one new login"

    # SFType._call_salesforce path (sf.User.get)
    second = sf.session_id
    assert revoke(conflux, second).status_code == 200
    session.request_count = 0
    assert sf.User.get(admin_user["Id"])["Id"] == admin_user["Id"]
    assert sf.session_id not in (first, second)
    assert rerouted_urls(session) == [login_url] * 3


def test_revoked_session_without_credentials_raises(conflux):
    tok = password_grant(conflux).json()
    sf = direct_salesforce(conflux, tok)
    assert sf.limits()["DailyApiRequests"]
    assert revoke(conflux, tok["access_token"]).status_code == 200
    with pytest.raises(SalesforceExpiredSession) as err:
        sf.query("SELECT Id FROM User LIMIT 1")
    assert err.value.status == 401
    assert error_code(err.value) == "INVALID_SESSION_ID"


# ==========================================================================
# Tooling API and describe
# ==========================================================================


def test_tooling_creates_custom_object_and_fields(custom_object):
    results = {"CustomObject": custom_object.object_result, **custom_object.field_results}
    for what, result in results.items():
        assert result["success"] is True, f"{what}: {result}"
        assert result["errors"] == [], f"{what}: {result}"
        assert_valid_id(result["id"])


def test_describe_global(sf, custom_object):
    g = sf.describe()
    assert g["encoding"] == "UTF-8"
    assert g["maxBatchSize"] == 200
    by_name = {s["name"]: s for s in g["sobjects"]}
    for name, prefix in STANDARD_KEY_PREFIXES.items():
        assert name in by_name, f"{name} missing from describe global"
        assert by_name[name]["keyPrefix"] == prefix, name
        assert by_name[name]["custom"] is False, name
    acc = by_name["Account"]
    assert acc["label"] == "Account" and acc["labelPlural"] == "Accounts"
    for flag in ("queryable", "createable", "updateable", "deletable", "retrieveable", "searchable"):
        assert acc[flag] is True, flag
    assert acc["urls"]["sobject"] == f"/services/data/v{API_VERSION}/sobjects/Account"
    assert acc["urls"]["describe"] == f"/services/data/v{API_VERSION}/sobjects/Account/describe"
    assert acc["urls"]["rowTemplate"] == f"/services/data/v{API_VERSION}/sobjects/Account/{{ID}}"

    co = by_name.get(custom_object.name)
    assert co is not None, f"new custom object {custom_object.name} missing from describe global"
    assert co["custom"] is True
    assert co["queryable"] is True and co["createable"] is True
    assert isinstance(co["keyPrefix"], str) and len(co["keyPrefix"]) == 3
    assert co["keyPrefix"] not in STANDARD_KEY_PREFIXES.values()


def fields_by_name(describe: dict) -> dict:
    return {f["name"]: f for f in describe["fields"]}


FIELD_KEYS = (
    "name", "label", "type", "soapType", "length", "precision", "scale", "nillable", "createable",
    "updateable", "custom", "externalId", "unique", "idLookup", "nameField", "referenceTo",
    "relationshipName", "filterable", "sortable", "defaultedOnCreate", "calculated", "picklistValues",
)  # fmt: skip


def assert_field(fields: dict, name: str, type_: str, soap_type: str | None = None, **expected) -> dict:
    assert name in fields, f"field {name} missing; have {sorted(fields)}"
    f = fields[name]
    missing = [k for k in FIELD_KEYS if k not in f]
    assert not missing, f"{name}: describe keys missing {missing}"
    assert f["type"] == type_, f"{name}: type {f['type']!r} != {type_!r}"
    if soap_type:
        assert f["soapType"] == soap_type, f"{name}: soapType {f['soapType']!r}"
    for key, value in expected.items():
        assert f[key] == value, f"{name}.{key} = {f[key]!r}, expected {value!r}"
    return f


def test_describe_account(sf, custom_object):
    d = sf.Account.describe()
    assert d["name"] == "Account" and d["keyPrefix"] == "001" and d["custom"] is False
    fields = fields_by_name(d)
    assert_field(fields, "Id", "id", "tns:ID", createable=False, updateable=False, referenceTo=[])
    assert_field(fields, "Name", "string", "xsd:string", nameField=True, createable=True, nillable=False, length=255)
    assert_field(fields, "NumberOfEmployees", "int", "xsd:int")
    assert_field(fields, "AnnualRevenue", "currency", "xsd:double")
    assert_field(fields, "OwnerId", "reference", "tns:ID", referenceTo=["User"], relationshipName="Owner")
    assert_field(fields, "IsDeleted", "boolean", "xsd:boolean")
    for name in ("CreatedDate", "LastModifiedDate", "SystemModstamp"):
        assert_field(fields, name, "datetime", "xsd:dateTime", createable=False)
    rels = {(r["childSObject"], r["field"]): r for r in d["childRelationships"]}
    contacts = rels.get(("Contact", "AccountId"))
    assert contacts is not None and contacts["relationshipName"] == "Contacts"
    for key in ("cascadeDelete", "restrictedDelete", "deprecatedAndHidden"):
        assert key in contacts
    mine = rels.get((custom_object.name, "Account__c"))
    assert mine is not None, "the new lookup must add a child relationship on Account"
    assert mine["relationshipName"] == custom_object.child_relationship


def test_describe_contact(sf):
    d = sf.Contact.describe()
    assert d["keyPrefix"] == "003"
    fields = fields_by_name(d)
    assert_field(fields, "AccountId", "reference", "tns:ID", referenceTo=["Account"], relationshipName="Account")
    assert_field(fields, "LastName", "string", "xsd:string", nillable=False, createable=True)
    assert_field(fields, "Name", "string", "xsd:string", nameField=True, createable=False)
    assert_field(fields, "Email", "email", "xsd:string")
    assert_field(fields, "Birthdate", "date", "xsd:date")


def test_describe_custom_object(sf, custom_object):
    d = getattr(sf, custom_object.name).describe()
    assert d["name"] == custom_object.name and d["custom"] is True
    assert isinstance(d["keyPrefix"], str) and len(d["keyPrefix"]) == 3
    fields = fields_by_name(d)
    for std in ("Id", "OwnerId", "IsDeleted", "CreatedDate", "CreatedById", "LastModifiedDate", "SystemModstamp"):
        assert std in fields, f"standard field {std} missing on a custom object"
    assert_field(fields, "Name", "string", "xsd:string", nameField=True, createable=True, custom=False)
    assert_field(
        fields, "External_Id__c", "string", "xsd:string",
        length=80, externalId=True, unique=True, idLookup=True, custom=True, nillable=True,
    )  # fmt: skip
    assert_field(fields, "Amount__c", "double", "xsd:double", precision=16, scale=2, custom=True)
    assert_field(
        fields, "Account__c", "reference", "tns:ID",
        referenceTo=["Account"], relationshipName="Account__r", custom=True,
    )  # fmt: skip


def test_sobject_metadata(sf):
    meta = sf.Account.metadata()  # GET sobjects/Account/
    assert meta["objectDescribe"]["name"] == "Account"
    assert meta["objectDescribe"]["keyPrefix"] == "001"
    assert isinstance(meta["recentItems"], list)


def test_describe_unknown_object(sf, run_id):
    with pytest.raises(SalesforceResourceNotFound) as err:
        getattr(sf, f"NoSuch_{run_id}__c").describe()
    assert err.value.status == 404
    assert error_code(err.value) == "NOT_FOUND"


def test_is_sandbox(sf):
    assert sf.is_sandbox() is False  # SELECT IsSandbox FROM Organization LIMIT 1


# ==========================================================================
# CRUD
# ==========================================================================


def assert_save_result(result: dict, prefix: str | None = None) -> str:
    assert result["success"] is True, result
    assert result["errors"] == [], result
    assert_valid_id(result["id"], prefix)
    return result["id"]


def test_account_crud(sf, run_id, admin_user):
    name = f"Conformance Account {run_id}"
    acc_id = assert_save_result(
        sf.Account.create({"Name": name, "NumberOfEmployees": 42, "AnnualRevenue": 1000}), "001"
    )

    rec = sf.Account.get(acc_id)
    assert rec["attributes"] == {"type": "Account", "url": f"/services/data/v{API_VERSION}/sobjects/Account/{acc_id}"}
    assert rec["Id"] == acc_id
    assert rec["Name"] == name
    assert rec["NumberOfEmployees"] == 42
    assert rec["AnnualRevenue"] == 1000  # Currency(18,0): whole units
    assert rec["OwnerId"] == admin_user["Id"]
    assert rec["IsDeleted"] is False
    for ts in ("CreatedDate", "LastModifiedDate", "SystemModstamp"):
        assert DATETIME_RE.match(rec[ts]), f"{ts}={rec[ts]!r}"

    part = sf.Account.get(acc_id, params={"fields": "Name,NumberOfEmployees"})
    assert part["Name"] == name and part["NumberOfEmployees"] == 42
    assert "AnnualRevenue" not in part and "CreatedDate" not in part, "fields= must restrict the record"

    assert sf.Account.get(acc_id[:15])["Id"] == acc_id, "15-char ids are accepted; responses use 18"

    assert sf.Account.update(acc_id, {"Name": name + " v2", "NumberOfEmployees": None}) == 204
    rec2 = sf.Account.get(acc_id)
    assert rec2["Name"] == name + " v2"
    assert rec2["NumberOfEmployees"] is None, "null clears a field on PATCH"
    assert rec2["AnnualRevenue"] == 1000, "fields not in the PATCH body stay unchanged"
    assert rec2["LastModifiedDate"] >= rec["LastModifiedDate"]

    assert sf.Account.delete(acc_id) == 204
    with pytest.raises(SalesforceResourceNotFound) as err:
        sf.Account.get(acc_id)
    assert err.value.status == 404
    assert error_code(err.value) in ("ENTITY_IS_DELETED", "NOT_FOUND")
    with pytest.raises(SalesforceResourceNotFound):
        sf.Account.delete(acc_id)


def test_get_unknown_id(sf):
    with pytest.raises(SalesforceResourceNotFound) as err:
        sf.Account.get(random_id("001"))
    assert err.value.status == 404
    assert error_code(err.value) == "NOT_FOUND"


def test_contact_crud_with_account_lookup(sf, run_id):
    acc_id = assert_save_result(sf.Account.create({"Name": f"Contact Parent {run_id}"}), "001")
    last = f"Lovelace {run_id}"
    con_id = assert_save_result(
        sf.Contact.create(
            {
                "FirstName": "Ada",
                "LastName": last,
                "Email": f"ada.{run_id}@example.com",
                "Birthdate": "1815-12-10",
                "AccountId": acc_id,
            }
        ),
        "003",
    )
    rec = sf.Contact.get(con_id)
    assert rec["Name"] == f"Ada {last}"
    assert rec["Email"] == f"ada.{run_id}@example.com"
    assert rec["Birthdate"] == "1815-12-10"
    assert rec["AccountId"] == acc_id
    assert sf.Contact.update(con_id, {"AccountId": None, "FirstName": "Augusta"}) == 204
    rec = sf.Contact.get(con_id, params={"fields": "FirstName,AccountId"})
    assert rec["FirstName"] == "Augusta" and rec["AccountId"] is None
    assert sf.Contact.delete(con_id) == 204
    with pytest.raises(SalesforceResourceNotFound):
        sf.Contact.get(con_id)


def key_prefix(sf, sobject: str) -> str:
    return getattr(sf, sobject).describe()["keyPrefix"]


def test_custom_object_crud(sf, custom_object, run_id):
    obj = getattr(sf, custom_object.name)
    acc_id = assert_save_result(sf.Account.create({"Name": f"Conf Parent {run_id}"}), "001")
    rec_id = assert_save_result(
        obj.create({"Name": f"crud {run_id}", "External_Id__c": f"crud-{run_id}", "Amount__c": 12.5, "Account__c": acc_id}),
        key_prefix(sf, custom_object.name),
    )
    rec = obj.get(rec_id)
    assert rec["attributes"]["type"] == custom_object.name
    assert rec["attributes"]["url"] == f"/services/data/v{API_VERSION}/sobjects/{custom_object.name}/{rec_id}"
    assert rec["Name"] == f"crud {run_id}"
    assert rec["External_Id__c"] == f"crud-{run_id}"
    assert rec["Amount__c"] == 12.5
    assert rec["Account__c"] == acc_id
    assert obj.update(rec_id, {"Amount__c": 99.25}) == 204
    assert obj.get(rec_id, params={"fields": "Amount__c"})["Amount__c"] == 99.25
    assert obj.delete(rec_id) == 204
    with pytest.raises(SalesforceResourceNotFound):
        obj.get(rec_id)


def test_get_by_external_id(sf, custom_object, run_id):
    obj = getattr(sf, custom_object.name)
    ext = f"byext-{run_id}"
    rec_id = assert_save_result(obj.create({"Name": "by external id", "External_Id__c": ext}))
    rec = obj.get_by_custom_id("External_Id__c", ext)
    assert rec["Id"] == rec_id and rec["External_Id__c"] == ext
    with pytest.raises(SalesforceResourceNotFound):
        obj.get_by_custom_id("External_Id__c", f"missing-{run_id}")


def test_upsert_by_external_id(sf, custom_object, run_id):
    """API 59.0 (>= 46): insert -> 201 {created: true}; update -> 200 {created: false}.

    simple-salesforce's upsert() returns only the status code (SFType._raw_response)."""
    obj = getattr(sf, custom_object.name)
    ext = f"up-{run_id}"
    first = obj.upsert(f"External_Id__c/{ext}", {"Name": "first", "Amount__c": 1}, raw_response=True)
    assert first.status_code == 201, first.text
    body = first.json()
    rec_id = assert_save_result(body, key_prefix(sf, custom_object.name))
    assert body["created"] is True

    second = obj.upsert(f"External_Id__c/{ext}", {"Name": "second", "Amount__c": 2}, raw_response=True)
    assert second.status_code == 200, second.text
    body = second.json()
    assert body["id"] == rec_id and body["success"] is True and body["errors"] == []
    assert body["created"] is False

    assert obj.upsert(f"External_Id__c/{ext}", {"Name": "third"}) == 200
    rec = obj.get(rec_id)
    assert rec["Name"] == "third" and rec["Amount__c"] == 2
    count = sf.query(f"SELECT COUNT() FROM {custom_object.name} WHERE External_Id__c = {soql_quote(ext)}")
    assert count["totalSize"] == 1 and count["records"] == []


def test_upsert_by_external_id_api_45(conflux, oauth_token, custom_object, run_id):
    """API 45.0: insert -> 201, update -> 204 with no body."""
    sf45 = direct_salesforce(conflux, oauth_token, version="45.0")
    obj = getattr(sf45, custom_object.name)
    ext = f"up45-{run_id}"
    first = obj.upsert(f"External_Id__c/{ext}", {"Name": "first"}, raw_response=True)
    assert first.status_code == 201, first.text
    rec_id = assert_save_result(first.json())
    second = obj.upsert(f"External_Id__c/{ext}", {"Name": "second"}, raw_response=True)
    assert second.status_code == 204, second.text
    assert second.content == b""
    assert obj.get(rec_id)["Name"] == "second"


def test_unique_external_id_rejects_duplicates(sf, custom_object, run_id):
    obj = getattr(sf, custom_object.name)
    ext = f"dup-{run_id}"
    assert_save_result(obj.create({"Name": "one", "External_Id__c": ext}))
    with pytest.raises(SalesforceMalformedRequest) as err:
        obj.create({"Name": "two", "External_Id__c": ext})
    assert err.value.status == 400
    assert error_code(err.value) == "DUPLICATE_VALUE"


# ==========================================================================
# Queries
# ==========================================================================


def test_query_parent_fields(sf, run_id, admin_user):
    acc_name = f"Query Parent {run_id}"
    acc_id = assert_save_result(sf.Account.create({"Name": acc_name}))
    with_parent = assert_save_result(sf.Contact.create({"FirstName": "Grace", "LastName": f"Hopper {run_id}", "AccountId": acc_id}))
    orphan = assert_save_result(sf.Contact.create({"LastName": f"Orphan {run_id}"}))

    res = sf.query(
        "SELECT Id, Name, Account.Name, Account.Owner.Name FROM Contact "
        f"WHERE Id IN ('{with_parent}', '{orphan}') ORDER BY LastName"
    )
    assert res["totalSize"] == 2 and no_next_page(res)
    first, second = res["records"]
    assert [first["Id"], second["Id"]] == [with_parent, orphan]
    assert list(first) == ["attributes", "Id", "Name", "Account"], "keys follow the SELECT list"
    assert first["attributes"] == {
        "type": "Contact",
        "url": f"/services/data/v{API_VERSION}/sobjects/Contact/{with_parent}",
    }
    assert first["Name"] == f"Grace Hopper {run_id}"
    parent = first["Account"]
    assert parent["attributes"] == {"type": "Account", "url": f"/services/data/v{API_VERSION}/sobjects/Account/{acc_id}"}
    assert list(parent) == ["attributes", "Name", "Owner"]
    assert parent["Name"] == acc_name
    assert parent["Owner"]["attributes"]["type"] == "User"
    assert parent["Owner"]["attributes"]["url"] == f"/services/data/v{API_VERSION}/sobjects/User/{admin_user['Id']}"
    assert parent["Owner"]["Name"] == admin_user["Name"]
    assert second["Account"] is None, "an empty lookup is null, not an object of nulls"


def test_query_child_subquery(sf, run_id):
    with_kids = assert_save_result(sf.Account.create({"Name": f"Child Query A {run_id}"}))
    no_kids = assert_save_result(sf.Account.create({"Name": f"Child Query B {run_id}"}))
    kid_b = assert_save_result(sf.Contact.create({"LastName": f"Beta {run_id}", "AccountId": with_kids}))
    kid_a = assert_save_result(sf.Contact.create({"LastName": f"Alpha {run_id}", "AccountId": with_kids}))

    res = sf.query(
        "SELECT Id, Name, (SELECT Id, LastName FROM Contacts ORDER BY LastName) FROM Account "
        f"WHERE Id IN ('{with_kids}', '{no_kids}') ORDER BY Name"
    )
    assert res["totalSize"] == 2 and no_next_page(res)
    a, b = res["records"]
    assert list(a) == ["attributes", "Id", "Name", "Contacts"]
    kids = a["Contacts"]
    assert kids["totalSize"] == 2 and kids["done"] is True
    assert kids.get("nextRecordsUrl") is None
    assert ids_of(kids["records"]) == [kid_a, kid_b]
    assert kids["records"][0]["attributes"]["type"] == "Contact"
    assert kids["records"][0]["LastName"] == f"Alpha {run_id}"
    assert b["Contacts"] is None, "no children -> null"


def test_query_custom_relationships(sf, custom_object, run_id):
    acc_name = f"Custom Rel {run_id}"
    acc_id = assert_save_result(sf.Account.create({"Name": acc_name}))
    obj = getattr(sf, custom_object.name)
    rec_id = assert_save_result(obj.create({"Name": f"rel {run_id}", "Amount__c": 10.5, "Account__c": acc_id}))
    loose = assert_save_result(obj.create({"Name": f"loose {run_id}", "Amount__c": 3}))

    res = sf.query(
        f"SELECT Id, Name, Amount__c, Account__r.Name FROM {custom_object.name} "
        f"WHERE Id IN ('{rec_id}', '{loose}') ORDER BY Amount__c DESC"
    )
    assert ids_of(res["records"]) == [rec_id, loose]
    assert res["records"][0]["Account__r"]["attributes"]["type"] == "Account"
    assert res["records"][0]["Account__r"]["Name"] == acc_name
    assert res["records"][0]["Amount__c"] == 10.5
    assert res["records"][1]["Account__r"] is None

    res = sf.query(f"SELECT Id FROM {custom_object.name} WHERE Account__c = '{acc_id}' AND Amount__c > 10")
    assert ids_of(res["records"]) == [rec_id]

    res = sf.query(f"SELECT Id, (SELECT Id, Name FROM {custom_object.child_relationship}) FROM Account WHERE Id = '{acc_id}'")
    child = res["records"][0][custom_object.child_relationship]
    assert child["totalSize"] == 1 and ids_of(child["records"]) == [rec_id]
    assert child["records"][0]["attributes"]["type"] == custom_object.name


def test_query_first_page_and_query_more(sf, paging_dataset):
    soql = f"SELECT Id, Name FROM {paging_dataset.sobject}"
    page1 = sf.query(soql)
    assert page1["totalSize"] == PAGING_LIVE
    assert page1["done"] is False
    assert len(page1["records"]) == 2000
    next_url = page1["nextRecordsUrl"]
    assert next_url.startswith(f"/services/data/v{API_VERSION}/query/"), f"nextRecordsUrl must be a path: {next_url!r}"
    assert next_url.rsplit("/", 1)[1], "locator must be one non-empty path segment"

    page2 = sf.query_more(next_url, identifier_is_url=True)  # GET https://{instance}{nextRecordsUrl}
    assert page2["totalSize"] == PAGING_LIVE and page2["done"] is False
    assert len(page2["records"]) == 2000

    locator = page2["nextRecordsUrl"].rsplit("/", 1)[1]
    page3 = sf.query_more(locator)  # GET {base}query/{locator}
    assert page3["totalSize"] == PAGING_LIVE
    assert no_next_page(page3), "done:true comes without nextRecordsUrl"
    assert len(page3["records"]) == PAGING_LIVE - 4000

    ids = ids_of(page1["records"]) + ids_of(page2["records"]) + ids_of(page3["records"])
    assert len(ids) == len(set(ids)), "a record appeared on two pages"
    assert set(ids) == paging_dataset.live_ids


def test_query_all_returns_every_record_once(sf, paging_dataset):
    res = sf.query_all(f"SELECT Id, Name FROM {paging_dataset.sobject}")
    ids = ids_of(res["records"])
    assert len(ids) == PAGING_LIVE and set(ids) == paging_dataset.live_ids
    count = sf.query(f"SELECT COUNT() FROM {paging_dataset.sobject}")
    assert count["totalSize"] == PAGING_LIVE and count["records"] == [] and count["done"] is True


def test_query_all_include_deleted(sf, paging_dataset):
    soql = f"SELECT Id, IsDeleted FROM {paging_dataset.sobject}"
    page1 = sf.query(soql, include_deleted=True)  # GET queryAll/?q=
    assert page1["totalSize"] == PAGING_LIVE + PAGING_DELETED
    assert page1["done"] is False and len(page1["records"]) == 2000
    assert page1["nextRecordsUrl"].startswith(f"/services/data/v{API_VERSION}/")

    res = sf.query_all(soql, include_deleted=True)
    records = res["records"]
    assert len(records) == PAGING_LIVE + PAGING_DELETED
    assert len({r["Id"] for r in records}) == len(records)
    deleted = {r["Id"] for r in records if r["IsDeleted"] is True}
    live = {r["Id"] for r in records if r["IsDeleted"] is False}
    assert deleted == paging_dataset.deleted_ids
    assert live == paging_dataset.live_ids


def test_updated_and_deleted_windows(sf, custom_object, run_id):
    # start/end are truncated to the minute by the API, so the window is widened on both sides;
    # simple-salesforce needs tz-aware datetimes (util.date_to_iso8601 uses %z).
    start = datetime.now(timezone.utc) - timedelta(minutes=2)
    kept = assert_save_result(sf.Account.create({"Name": f"Replicated {run_id}"}))
    gone = assert_save_result(sf.Account.create({"Name": f"Replicated gone {run_id}"}))
    assert sf.Account.update(kept, {"Name": f"Replicated {run_id} v2"}) == 204
    assert sf.Account.delete(gone) == 204
    obj = getattr(sf, custom_object.name)
    conf_gone = assert_save_result(obj.create({"Name": f"gone {run_id}"}))
    assert obj.delete(conf_gone) == 204
    end = datetime.now(timezone.utc) + timedelta(minutes=2)

    updated = sf.Account.updated(start, end)
    assert kept in updated["ids"]
    assert DATETIME_RE.match(updated["latestDateCovered"])

    deleted = sf.Account.deleted(start, end)
    by_id = {d["id"]: d for d in deleted["deletedRecords"]}
    assert gone in by_id and kept not in by_id
    assert DATETIME_RE.match(by_id[gone]["deletedDate"])
    assert DATETIME_RE.match(deleted["earliestDateAvailable"])
    assert DATETIME_RE.match(deleted["latestDateCovered"])

    assert conf_gone in {d["id"] for d in obj.deleted(start, end)["deletedRecords"]}


# ==========================================================================
# Limits
# ==========================================================================


def test_limits_and_api_usage_header(sf):
    limits = sf.limits()
    daily = limits["DailyApiRequests"]
    assert isinstance(daily["Max"], int) and daily["Max"] > 0
    assert isinstance(daily["Remaining"], int) and 0 <= daily["Remaining"] <= daily["Max"]
    for name, value in limits.items():
        if isinstance(value, dict) and "Max" in value:
            assert isinstance(value["Max"], int) and isinstance(value["Remaining"], int), name

    sf.api_usage = {}
    sf.query("SELECT Id FROM User LIMIT 1")
    usage = sf.api_usage.get("api-usage")
    assert usage is not None, "Sforce-Limit-Info: api-usage=N/M missing on a REST response"
    assert usage.total == daily["Max"]
    assert 1 <= usage.used <= usage.total


# ==========================================================================
# Errors the client surfaces
# ==========================================================================


def test_malformed_soql(sf):
    with pytest.raises(SalesforceMalformedRequest) as err:
        sf.query("SELECT Id FROM Account WHERE")
    assert err.value.status == 400
    assert error_code(err.value) == "MALFORMED_QUERY"
    assert isinstance(err.value.content[0]["message"], str) and err.value.content[0]["message"]


def test_unknown_field_in_soql(sf):
    with pytest.raises(SalesforceMalformedRequest) as err:
        sf.query("SELECT Idd FROM Account")
    assert error_code(err.value) == "INVALID_FIELD"


def test_unknown_object_in_soql(sf, run_id):
    with pytest.raises(SalesforceMalformedRequest) as err:
        sf.query(f"SELECT Id FROM NoSuch_{run_id}__c")
    assert error_code(err.value) == "INVALID_TYPE"


def test_create_on_unknown_object(sf, run_id):
    with pytest.raises(SalesforceResourceNotFound) as err:
        getattr(sf, f"NoSuch_{run_id}__c").create({"Name": "x"})
    assert error_code(err.value) == "NOT_FOUND"


def test_wrong_field_type_creates_nothing(sf, run_id):
    """{"NumberOfEmployees": "abc"}: real orgs answer JSON_PARSER_ERROR ("Cannot deserialize
    instance of int from VALUE_STRING value abc ..."); INVALID_TYPE_ON_FIELD_IN_RECORD is the
    SOAP/Bulk spelling of the same failure. Either is a 400 SalesforceMalformedRequest."""
    name = f"Wrong Type {run_id}"
    with pytest.raises(SalesforceMalformedRequest) as err:
        sf.Account.create({"Name": name, "NumberOfEmployees": "abc"})
    assert err.value.status == 400
    assert error_code(err.value) in ("JSON_PARSER_ERROR", "INVALID_TYPE_ON_FIELD_IN_RECORD")
    assert sf.query(f"SELECT Id FROM Account WHERE Name = {soql_quote(name)}")["totalSize"] == 0


def test_required_field_missing(sf):
    with pytest.raises(SalesforceMalformedRequest) as err:
        sf.Account.create({"NumberOfEmployees": 5})
    assert error_code(err.value) == "REQUIRED_FIELD_MISSING"
    assert err.value.content[0].get("fields") == ["Name"]


def test_unknown_field_on_create(sf, run_id):
    name = f"Unknown Field {run_id}"
    with pytest.raises(SalesforceMalformedRequest) as err:
        sf.Account.create({"Name": name, f"NoSuch_{run_id}__c": 1})
    assert error_code(err.value) == "INVALID_FIELD"
    assert sf.query(f"SELECT Id FROM Account WHERE Name = {soql_quote(name)}")["totalSize"] == 0
