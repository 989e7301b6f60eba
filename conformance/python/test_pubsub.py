"""The Pub/Sub API (gRPC eventbus.v1.PubSub at CONFLUX_GRPC_ADDR, TLS signed by CONFLUX_CA_FILE)
against the unmodified pysfpubsub 0.1.2 (grpcio + protobuf + avro + requests + certifi underneath,
none of them declared by the package); simple-salesforce defines the platform event and the CDC
entity and publishes over REST.

How the client reaches this server without changing its code:

* Login: `Client.auth()` POSTs a SOAP login to `{url}/services/Soap/u/{api_version}/` with the
  module-level `requests.post` (no `verify=`), so TLS trust comes from REQUESTS_CA_BUNDLE. It reads
  the reply *by position* (`Envelope[0][0][0]` = result; result[3] serverUrl, [4] sessionId,
  [6] userInfo, userInfo[8] organizationId).
* gRPC: `Client.__init__` opens `grpc.secure_channel(f"{grpc_host}:{grpc_port}",
  secure_channel_credentials)`, where `secure_channel_credentials` is a module global built at
  import time from certifi's bundle (pysfpubsub/pubsub.py:19-20, 44). GRPC_DEFAULT_SSL_ROOTS_FILE_PATH
  does not apply (explicit roots are passed), so the test replaces that module global with
  credentials for CONFLUX_CA_FILE before creating a client. Proxy variables are dropped: gRPC
  core honours grpc_proxy / https_proxy / http_proxy for 127.0.0.1 too.
* Streams: `Client.subscribe()` blocks forever iterating the Subscribe call. Each subscription
  runs it in a daemon thread; the test wraps `client.stub.Subscribe` on that one client to keep
  the call (to cancel it) and to record each FetchRequest the client sends. One Client per
  subscription: the client's release semaphore (Semaphore(1)) is per instance, and a cancelled
  subscription's request thread stays blocked on it.

Expectations are Salesforce's documented behaviour: as in the Node suite (pubsub.test.mjs), plus
what this client relies on: every FetchResponse carries `pending_num_requested` (the client's
documented loop sends the next FetchRequest when it reaches 0) and the client re-sends the *whole*
first FetchRequest (topic, preset, replay id, count) each time, which must only add to the count.
"""

from __future__ import annotations

import json
import os
import queue
import re
import secrets
import threading
import time
import uuid

import avro.schema
import grpc
import pytest

import pysfpubsub.pubsub
from pysfpubsub import Client

from support import direct_salesforce, tooling_create_field, tooling_create_object

RUN = secrets.token_hex(4)
EVENT = f"PyPs_{RUN}__e"
PE = f"/event/{EVENT}"
OBJECT = f"PyPsCdc_{RUN}__c"
CDC = f"/data/PyPsCdc_{RUN}__ChangeEvent"
API_VERSION = "57.0"  # pysfpubsub's default
WAIT = 30  # seconds for something that must come
QUIET = 1.5  # seconds of "nothing more"
BITMAP_RE = re.compile(r"^0x(?:[0-9A-F]{2})+$")
ERROR_CODE_PREFIX = "sfdc.platform.eventbus.grpc."


# --------------------------------------------------------------------------
# Plumbing
# --------------------------------------------------------------------------


def grpc_target() -> tuple[str, int]:
    addr = os.environ.get("CONFLUX_GRPC_ADDR")
    if not addr:
        pytest.fail("CONFLUX_GRPC_ADDR (host:port of the TLS gRPC listener) is not set", pytrace=False)
    host, _, port = addr.rpartition(":")
    return host.strip("[]"), int(port)


@pytest.fixture
def pubsub(conflux, monkeypatch):
    """Factory for logged-in pysfpubsub clients that reach Conflux over verified TLS."""
    monkeypatch.setenv("REQUESTS_CA_BUNDLE", conflux.ca_file)
    monkeypatch.delenv("CURL_CA_BUNDLE", raising=False)
    for var in ("grpc_proxy", "https_proxy", "http_proxy", "HTTPS_PROXY", "HTTP_PROXY", "all_proxy", "ALL_PROXY"):
        monkeypatch.delenv(var, raising=False)
    with open(conflux.ca_file, "rb") as f:
        monkeypatch.setattr(pysfpubsub.pubsub, "secure_channel_credentials", grpc.ssl_channel_credentials(f.read()))
    host, port = grpc_target()
    subscriptions: list[Subscription] = []

    def make() -> Client:
        client = Client(
            url=conflux.https_url,
            username=conflux.username,
            password=conflux.password,
            grpc_host=host,
            grpc_port=port,
            api_version=API_VERSION,
        )
        client.auth()
        client.conflux_subscriptions = subscriptions  # type: ignore[attr-defined]
        return client

    yield make
    for s in subscriptions:
        s.stop()


class Subscription:
    """`client.subscribe(...)` in a daemon thread; FetchResponses (or the final RpcError) are
    queued for the test. With `auto_release`, the callback follows the client's documented loop:
    release the semaphore (= send the next FetchRequest) when pending_num_requested hits 0."""

    def __init__(self, client: Client, topic: str, replay_type: str, replay_id: bytes | None,
                 num_requested: int, auto_release: bool = False) -> None:
        self.client = client
        self.auto_release = auto_release
        self.responses: queue.Queue = queue.Queue()
        self.sent: list = []  # FetchRequests, as the client sent them
        self.seen: list = []  # FetchResponses taken so far
        self.call = None
        original = client.stub.Subscribe

        def spy(request_iterator, **kwargs):
            def recorded():
                for request in request_iterator:
                    self.sent.append(request)
                    yield request

            self.call = original(recorded(), **kwargs)
            return self.call

        client.stub.Subscribe = spy  # this client's stub only; the call itself is unchanged
        client.conflux_subscriptions.append(self)  # type: ignore[attr-defined]
        self.thread = threading.Thread(
            target=self._run, args=(topic, replay_type, replay_id or b"", num_requested), daemon=True
        )
        self.thread.start()

    def _run(self, *args) -> None:
        try:
            self.client.subscribe(*args, self._callback)
        except grpc.RpcError as err:
            self.responses.put(err)

    def _callback(self, response, client) -> None:
        self.responses.put(response)
        if self.auto_release and response.events and response.pending_num_requested == 0:
            client.release_subscription_semaphore()

    def _next(self, timeout: float):
        item = self.responses.get(timeout=timeout)
        if isinstance(item, grpc.RpcError):
            raise item
        self.seen.append(item)
        return item

    def take(self, n: int, timeout: float = WAIT) -> list:
        """The next n ConsumerEvents (keepalives skipped)."""
        events: list = []
        deadline = time.monotonic() + timeout
        while len(events) < n:
            left = deadline - time.monotonic()
            if left <= 0:
                pytest.fail(f"only {len(events)} of {n} events within {timeout}s")
            try:
                events.extend(self._next(left).events)
            except queue.Empty:
                continue
        assert len(events) == n, f"{len(events)} events arrived where {n} were expected"
        return events

    def nothing_more(self, seconds: float = QUIET) -> None:
        deadline = time.monotonic() + seconds
        while (left := deadline - time.monotonic()) > 0:
            try:
                response = self._next(left)
            except queue.Empty:
                return
            assert not response.events, f"unrequested events arrived: {len(response.events)}"

    def error(self, timeout: float = WAIT) -> grpc.RpcError:
        deadline = time.monotonic() + timeout
        while (left := deadline - time.monotonic()) > 0:
            try:
                self._next(left)
            except grpc.RpcError as err:
                return err
            except queue.Empty:
                break
        pytest.fail("the stream did not fail")

    def stop(self) -> None:
        if self.call is not None:
            self.call.cancel()
        self.client.release_subscription_semaphore()  # wakes the request thread so it can end


def rid(raw: bytes) -> int:
    assert isinstance(raw, bytes) and len(raw) == 8, f"replay id must be 8 bytes: {raw!r}"
    return int.from_bytes(raw, "big")


def decode(client: Client, event) -> dict:
    return client.decode(client.get_schema_json(event.event.schema_id), event.event.payload)


def bitmap_names(schema_json: str, bitmaps: list[str]) -> list[str]:
    """Field names of a changedFields / nulledFields / diffFields list (our own reading of the
    documented encoding: bit i of element 0 = top-level field i; "p-0x.." = fields of the record
    inside top-level field p)."""
    fields = json.loads(schema_json)["fields"]
    names: list[str] = []
    for entry in bitmaps:
        parent, sep, hexpart = entry.partition("-")
        if not sep:
            assert BITMAP_RE.match(entry), f"bitmap {entry!r}: 0x + uppercase hex, whole bytes"
            bits = int(entry, 16)
            names += [f["name"] for i, f in enumerate(fields) if bits >> i & 1]
            continue
        assert BITMAP_RE.match(hexpart), entry
        p = fields[int(parent)]
        branches = p["type"] if isinstance(p["type"], list) else [p["type"]]
        record = next(t for t in branches if isinstance(t, dict) and t.get("type") == "record")
        bits = int(hexpart, 16)
        names += [f'{p["name"]}.{f["name"]}' for i, f in enumerate(record["fields"]) if bits >> i & 1]
    return names


# --------------------------------------------------------------------------
# Set-up: one platform event and one CDC-enabled object per run
# --------------------------------------------------------------------------

published: list[tuple[str, str]] = []  # (model, event id) in publication order on PE


@pytest.fixture(scope="module")
def sf(conflux, oauth_token):
    sf = direct_salesforce(conflux, oauth_token)
    created = sf.toolingexecute(
        "sobjects/CustomObject",
        method="POST",
        data={"FullName": EVENT, "Metadata": {"label": EVENT, "pluralLabel": EVENT, "publishBehavior": "PublishImmediately"}},
    )
    assert created["success"] is True, created
    tooling_create_field(sf, EVENT, "Printer_Model__c", {"type": "Text", "label": "Model", "length": 40})
    tooling_create_field(sf, EVENT, "Ink_Percentage__c", {"type": "Number", "label": "Ink", "precision": 16, "scale": 2})
    assert tooling_create_object(sf, OBJECT, f"PyPsCdc {RUN}")["success"] is True
    tooling_create_field(sf, OBJECT, "Amount__c", {"type": "Number", "label": "Amount", "precision": 16, "scale": 2})
    member = sf.toolingexecute(
        "sobjects/PlatformEventChannelMember",
        method="POST",
        data={
            "FullName": f"ChangeEvents_PyPsCdc_{RUN}__ChangeEvent",
            "Metadata": {"eventChannel": "ChangeEvents", "selectedEntity": f"PyPsCdc_{RUN}__ChangeEvent"},
        },
    )
    assert member["success"] is True, member
    return sf


def rest_publish(sf, model: str) -> str:
    r = getattr(sf, EVENT).create({"Printer_Model__c": model, "Ink_Percentage__c": 0.75})
    assert r["success"] is True, r
    assert r["errors"][0]["statusCode"] == "OPERATION_ENQUEUED", r
    published.append((model, r["errors"][0]["message"]))
    return r["errors"][0]["message"]


def check_pe(client: Client, event, model: str, event_id: str) -> dict:
    payload = decode(client, event)
    assert event.event.id == event_id
    assert payload["Printer_Model__c"] == model, payload
    assert isinstance(payload["CreatedDate"], int) and abs(payload["CreatedDate"] / 1000 - time.time()) < 3600
    assert payload["CreatedById"].startswith("005")
    rid(event.replay_id)
    return payload


# --------------------------------------------------------------------------
# Tests
# --------------------------------------------------------------------------


def test_soap_login_gives_the_grpc_metadata(pubsub, conflux):
    client = pubsub()
    meta = dict(client.metadata)
    assert set(meta) == {"accesstoken", "instanceurl", "tenantid"}
    assert meta["instanceurl"] == conflux.https_url, "scheme://host:port of <serverUrl>"
    assert re.fullmatch(r"00D[0-9A-Za-z]{15}", meta["tenantid"]), meta
    assert meta["accesstoken"].startswith(meta["tenantid"][:15] + "!")


def test_get_topic_and_schema(pubsub, sf):
    client = pubsub()
    topic = client.get_topic(PE)
    assert topic.topic_name == PE
    assert topic.tenant_guid == dict(client.metadata)["tenantid"]
    assert topic.can_publish and topic.can_subscribe
    schema_json = client.get_schema_json(topic.schema_id)
    schema = avro.schema.parse(schema_json)  # strict: the same parser decode() uses
    assert schema.name == EVENT and schema.namespace == "com.sforce.eventbus"
    names = [f.name for f in schema.fields]
    assert names[:2] == ["CreatedDate", "CreatedById"] and {"Printer_Model__c", "Ink_Percentage__c"} <= set(names)
    cdc = client.get_topic(CDC)
    assert cdc.can_subscribe and not cdc.can_publish


def test_publish_single_and_several(pubsub, sf):
    client = pubsub()
    topic = client.get_topic(PE)
    schema_json = client.get_schema_json(topic.schema_id)

    def event(model: str, with_id: bool) -> dict:
        body = {"CreatedDate": int(time.time() * 1000), "CreatedById": "005000000000000AAA",
                "Printer_Model__c": model, "Ink_Percentage__c": None}
        ev = client.format_payload(schema_json, topic.schema_id, body)  # {"schema_id", "payload"}: no id
        if with_id:
            ev["id"] = str(uuid.uuid4())
        return ev

    res = client.publish(PE, [event("PY-1", with_id=False)])
    (r,) = res.results
    assert not r.HasField("error"), r
    rid(r.replay_id)
    assert re.fullmatch(r"[0-9a-f-]{36}", r.correlation_key), "the server generates the id when none is sent"
    published.append(("PY-1", r.correlation_key))

    batch = [event(f"PY-{k}", with_id=True) for k in (2, 3)]
    res = client.publish(PE, batch)
    assert [x.correlation_key for x in res.results] == [e["id"] for e in batch]
    ids = [rid(x.replay_id) for x in res.results]
    assert ids == sorted(ids) and len(set(ids)) == 2
    published.extend((f"PY-{k}", e["id"]) for k, e in zip((2, 3), batch))
    for model in ("R-1", "R-2"):
        rest_publish(sf, model)


def test_published_events_reach_a_cometd_subscriber(pubsub, sf, conflux):
    """An event published over Pub/Sub is delivered over the Streaming API too (aiosfstream-ng),
    with the Pub/Sub id as its EventUuid and the same replay id."""
    import asyncio

    from aiosfstream_ng import Client as StreamingClient

    from test_streaming import ConfluxAuth

    client = pubsub()
    topic = client.get_topic(PE)
    schema_json = client.get_schema_json(topic.schema_id)
    body = {"CreatedDate": int(time.time() * 1000), "CreatedById": "005000000000000AAA",
            "Printer_Model__c": "PY-CometD", "Ink_Percentage__c": 0.5}
    ev = client.format_payload(schema_json, topic.schema_id, body)
    ev["id"] = str(uuid.uuid4())

    async def scenario():
        async with StreamingClient(ConfluxAuth(conflux)) as streaming:
            await streaming.subscribe(PE)
            res = await asyncio.to_thread(client.publish, PE, [ev])
            (r,) = res.results
            assert not r.HasField("error"), r
            message = await asyncio.wait_for(streaming.receive(), WAIT)
            return rid(r.replay_id), message

    replay_id, message = asyncio.run(scenario())
    published.append(("PY-CometD", ev["id"]))
    assert message["channel"] == PE
    data = message["data"]
    assert data["event"]["EventUuid"] == ev["id"]
    assert data["event"]["replayId"] == replay_id
    assert data["payload"]["Printer_Model__c"] == "PY-CometD"
    assert data["payload"]["Ink_Percentage__c"] == 0.5


def test_earliest_replays_the_retained_events(pubsub, sf):
    client = pubsub()
    sub = Subscription(client, PE, "EARLIEST", None, len(published))
    events = sub.take(len(published))
    for ev, (model, event_id) in zip(events, published):
        check_pe(client, ev, model, event_id)
    ids = [rid(e.replay_id) for e in events]
    assert ids == sorted(ids)
    for resp in sub.seen:
        rid(resp.latest_replay_id)  # present and 8 bytes on every response, keepalives too
    assert sub.seen[-1].pending_num_requested == 0
    (req,) = sub.sent
    assert (req.topic_name, req.replay_preset, req.num_requested) == (PE, 1, len(published))


def test_custom_resumes_after_a_replay_id(pubsub, sf):
    client = pubsub()
    all_ids = [rid(e.replay_id) for e in Subscription(client, PE, "EARLIEST", None, 3).take(3)]
    other = pubsub()
    sub = Subscription(other, PE, "CUSTOM", all_ids[1].to_bytes(8, "big"), 2)
    events = sub.take(2)
    assert rid(events[0].replay_id) == all_ids[2]
    for ev, (model, event_id) in zip(events, published[2:4]):
        check_pe(other, ev, model, event_id)


def test_latest_sees_only_new_events(pubsub, sf):
    before = len(published)
    client = pubsub()
    sub = Subscription(client, PE, "LATEST", None, 3)
    first = None
    for k in range(20):  # no subscribe acknowledgement exists: publish until one arrives
        rest_publish(sf, f"L-{k}")
        try:
            first = sub.take(1, timeout=1.5)[0]
            break
        except pytest.fail.Exception:
            continue
    assert first is not None, "a LATEST subscription received an event published after it"
    at = next(i for i, (_, eid) in enumerate(published) if eid == first.event.id)
    assert at >= before
    rest_publish(sf, "L-last")
    (last,) = sub.take(1)
    check_pe(client, last, "L-last", published[-1][1])


def test_flow_control_and_resent_fetch_requests(pubsub, sf):
    while len(published) < 6:
        rest_publish(sf, f"F-{len(published)}")
    client = pubsub()
    sub = Subscription(client, PE, "EARLIEST", None, 2)
    first = sub.take(2)
    assert sub.seen[-1].pending_num_requested == 0
    sub.nothing_more()
    assert len(sub.sent) == 1
    client.release_subscription_semaphore()  # the client re-sends its whole FetchRequest
    second = sub.take(2)
    sub.nothing_more()
    assert len(sub.sent) == 2 and sub.sent[1] == sub.sent[0], "an identical EARLIEST request"
    # ...which only added 2 to the count: the replay did not start again.
    for ev, (model, event_id) in zip(first + second, published[:4]):
        check_pe(client, ev, model, event_id)
    pending = [r.pending_num_requested for r in sub.seen if r.events]
    assert pending[-1] == 0 and all(p >= 0 for p in pending)


def test_auto_release_loop_keeps_the_subscription_going(pubsub, sf):
    client = pubsub()
    sub = Subscription(client, PE, "EARLIEST", None, 1, auto_release=True)
    events = sub.take(5)
    assert [e.event.id for e in events] == [eid for _, eid in published[:5]]
    assert len(sub.sent) >= 5 and all(r.num_requested == 1 for r in sub.sent)


def test_an_unknown_replay_id_is_invalid_argument(pubsub, sf):
    client = pubsub()
    sub = Subscription(client, PE, "CUSTOM", (2**63 - 1).to_bytes(8, "big"), 1)
    err = sub.error()
    assert err.code() == grpc.StatusCode.INVALID_ARGUMENT, err
    trailers = dict(err.trailing_metadata() or ())
    assert trailers.get("error-code") == ERROR_CODE_PREFIX + "subscription.fetch.replayid.corrupted", trailers


def test_change_events_carry_bitmaps(pubsub, sf):
    obj = getattr(sf, OBJECT)
    a = obj.create({"Name": "C-1", "Amount__c": 10})["id"]
    obj.update(a, {"Amount__c": 15})
    obj.update(a, {"Amount__c": None})

    client = pubsub()
    sub = Subscription(client, CDC, "EARLIEST", None, 3)
    created, updated, nulled = sub.take(3)
    schema_json = client.get_schema_json(created.event.schema_id)
    assert json.loads(schema_json)["fields"][0]["name"] == "ChangeEventHeader"

    p = decode(client, created)
    h = p["ChangeEventHeader"]
    assert (h["entityName"], h["changeType"]) == (OBJECT, "CREATE")
    assert [x[:15] for x in h["recordIds"]] == [a[:15]]
    assert h["changedFields"] == [] and h["nulledFields"] == [] and h["diffFields"] == []
    assert isinstance(h["commitTimestamp"], int) and h["commitUser"].startswith("005")
    assert (p["Name"], p["Amount__c"]) == ("C-1", 10)

    p = decode(client, updated)
    h = p["ChangeEventHeader"]
    assert h["changeType"] == "UPDATE"
    assert sorted(bitmap_names(schema_json, h["changedFields"])) == ["Amount__c", "LastModifiedDate"]
    assert h["nulledFields"] == []
    assert p["Amount__c"] == 15 and p["Name"] is None

    p = decode(client, nulled)
    h = p["ChangeEventHeader"]
    assert bitmap_names(schema_json, h["nulledFields"]) == ["Amount__c"]
    assert {"Amount__c", "LastModifiedDate"} <= set(bitmap_names(schema_json, h["changedFields"]))
    ids = [rid(e.replay_id) for e in (created, updated, nulled)]
    assert ids == sorted(ids)

    # CUSTOM from the CREATE: exactly the two updates.
    other = pubsub()
    resumed = Subscription(other, CDC, "CUSTOM", created.replay_id, 2).take(2)
    assert [rid(e.replay_id) for e in resumed] == ids[1:]

    # LATEST: only a change made afterwards.
    latest = Subscription(pubsub(), CDC, "LATEST", None, 1)
    seen = None
    for k in range(20):
        obj.create({"Name": f"Live-{k}", "Amount__c": k})
        try:
            (seen,) = latest.take(1, timeout=1.5)
            break
        except pytest.fail.Exception:
            continue
    assert seen is not None and rid(seen.replay_id) > ids[-1]
