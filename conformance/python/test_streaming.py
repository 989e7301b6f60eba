"""The Streaming API (CometD long polling) against the unmodified aiosfstream client, in its
maintained form aiosfstream-ng 0.7.5 (aiocometd-ng 0.5.6 underneath; the original aiosfstream
0.5.0 cannot run on Python >= 3.10); simple-salesforce defines and publishes the platform events.

aiosfstream authenticates against a hard-coded login.salesforce.com token URL; its documented
extension point for other servers is the authenticator's `_token_url`, which `ConfluxAuth`
overrides (nothing else in the library is changed). It then talks to
`{instance_url}/cometd/45.0`, the instance URL being what the token response says.

Expectations are Salesforce's documented behaviour: platform event messages carry
`data.payload.CreatedDate` (aiosfstream raises ReplayError without a creation date) and
`data.event.replayId`; replay -2 delivers the retained events; a stored replay marker delivers
exactly the events after it; an invalid replay id fails the subscribe with a 400 error, which is
what makes aiosfstream's `replay_fallback` retry.
"""

from __future__ import annotations

import asyncio
import secrets

import pytest
import requests
from aiosfstream_ng import Client, ReplayMarker, ReplayOption
from aiosfstream_ng.auth import PasswordAuthenticator

from support import direct_salesforce, tooling_create_field

RUN = secrets.token_hex(4)
EVENT = f"PyInk_{RUN}__e"
CHANNEL = f"/event/{EVENT}"
WAIT = 30  # seconds to wait for a message that must come


class ConfluxAuth(PasswordAuthenticator):
    """The password flow, sent to this server's token endpoint."""

    def __init__(self, env) -> None:
        super().__init__(
            consumer_key=env.client_id,
            consumer_secret=env.client_secret,
            username=env.username,
            password=env.password,
        )
        self._conflux_token_url = env.http_url + "/services/oauth2/token"

    @property
    def _token_url(self) -> str:
        return self._conflux_token_url


@pytest.fixture(scope="module")
def events_sf(conflux, oauth_token):
    """simple-salesforce on an admin session, with this module's platform event defined."""
    sf = direct_salesforce(conflux, oauth_token)
    created = sf.toolingexecute(
        "sobjects/CustomObject",
        method="POST",
        data={
            "FullName": EVENT,
            "Metadata": {"label": EVENT, "pluralLabel": EVENT, "publishBehavior": "PublishImmediately"},
        },
    )
    assert created["success"] is True, created
    tooling_create_field(sf, EVENT, "Printer_Model__c", {"type": "Text", "label": "Model", "length": 40})
    tooling_create_field(
        sf, EVENT, "Ink_Percentage__c", {"type": "Number", "label": "Ink", "precision": 16, "scale": 2}
    )
    return sf


def publish(sf, model: str) -> str:
    """Publishes one event through simple-salesforce; returns its EventUuid."""
    r = getattr(sf, EVENT).create({"Printer_Model__c": model, "Ink_Percentage__c": 0.75})
    assert r["success"] is True, r
    assert r["errors"][0]["statusCode"] == "OPERATION_ENQUEUED", r
    return r["errors"][0]["message"]


async def take(client: Client, n: int) -> list[dict]:
    got = []
    while len(got) < n:
        got.append(await asyncio.wait_for(client.receive(), WAIT))
    return got


async def nothing_more(client: Client) -> None:
    with pytest.raises(asyncio.TimeoutError):
        extra = await asyncio.wait_for(client.receive(), 1.5)
        pytest.fail(f"unexpected message {extra}")


def check(message: dict, model: str, uuid: str) -> int:
    assert message["channel"] == CHANNEL
    data = message["data"]
    assert data["payload"]["Printer_Model__c"] == model, message
    assert data["payload"]["Ink_Percentage__c"] == 0.75
    assert data["payload"]["CreatedDate"].endswith("Z")
    assert data["event"]["EventUuid"] == uuid
    assert isinstance(data["event"]["replayId"], int)
    return data["event"]["replayId"]


def test_all_events_then_live_ones_in_order(conflux, events_sf):
    sf = events_sf
    uuids = [publish(sf, f"A-{k}") for k in range(2)]

    async def scenario():
        async with Client(ConfluxAuth(conflux), replay=ReplayOption.ALL_EVENTS) as client:
            await client.subscribe(CHANNEL)
            first = await take(client, 2)
            ids = [check(m, f"A-{k}", uuids[k]) for k, m in enumerate(first)]
            live = await asyncio.get_running_loop().run_in_executor(None, publish, sf, "A-live")
            (m,) = await take(client, 1)
            ids.append(check(m, "A-live", live))
            assert ids == sorted(ids) and len(set(ids)) == 3

    asyncio.run(scenario())


def test_stored_replay_markers_resume_exactly_after_the_last_event(conflux, events_sf):
    sf = events_sf
    markers: dict[str, ReplayMarker] = {}

    async def first_run():
        async with Client(ConfluxAuth(conflux), replay=markers) as client:
            # No marker stored yet and no constant option: new events only.
            await client.subscribe(CHANNEL)
            uuid = await asyncio.get_running_loop().run_in_executor(None, publish, sf, "B-0")
            (m,) = await take(client, 1)
            check(m, "B-0", uuid)

    asyncio.run(first_run())
    assert CHANNEL in markers, "aiosfstream stored a replay marker (it needs a creation date)"
    missed = [publish(sf, "B-1"), publish(sf, "B-2")]

    async def second_run():
        async with Client(ConfluxAuth(conflux), replay=markers) as client:
            await client.subscribe(CHANNEL)
            got = await take(client, 2)
            check(got[0], "B-1", missed[0])
            check(got[1], "B-2", missed[1])
            await nothing_more(client)

    asyncio.run(second_run())


def test_an_invalid_replay_id_is_a_400_and_replay_fallback_recovers(conflux, events_sf):
    sf = events_sf
    uuid = publish(sf, "C-0")
    bogus = {CHANNEL: ReplayMarker(date="2099-01-01T00:00:00.000Z", replay_id=987654321)}

    async def scenario():
        async with Client(
            ConfluxAuth(conflux), replay=bogus, replay_fallback=ReplayOption.ALL_EVENTS
        ) as client:
            await client.subscribe(CHANNEL)
            seen = []
            while not seen or seen[-1]["data"]["event"]["EventUuid"] != uuid:
                seen.extend(await take(client, 1))
            check(seen[-1], "C-0", uuid)

    asyncio.run(scenario())


def test_the_endpoint_refuses_websocket_and_old_versions(conflux):
    s = requests.Session()
    s.trust_env = False
    probe = s.get(conflux.http_url + "/cometd/45.0", headers={"Upgrade": "websocket", "Connection": "Upgrade"})
    assert probe.status_code == 400
    old = s.post(conflux.http_url + "/cometd/36.0", json=[])
    assert old.status_code == 400
