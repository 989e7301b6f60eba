"""Change Data Capture and PushTopic channels against the unmodified aiosfstream client
(aiosfstream-ng 0.7.5, as in test_streaming.py); simple-salesforce defines the object, selects
it for change events (Tooling API PlatformEventChannelMember) and creates the PushTopic record.

aiosfstream needs a creation date on every message it replays from: for change events it reads
`data.payload.ChangeEventHeader.commitTimestamp`, for PushTopics `data.event.createdDate`
(Salesforce sends both). Expectations are Salesforce's documented behaviour: CREATE events
carry the record's non-null fields, UPDATE events only the changed ones; PushTopic
notifications carry `event.type` and the selected fields of matching records only.
"""

from __future__ import annotations

import asyncio
import secrets

import pytest
from aiosfstream_ng import Client, ReplayMarker, ReplayOption

from support import direct_salesforce, tooling_create_field, tooling_create_object
from test_streaming import ConfluxAuth, nothing_more, take

RUN = secrets.token_hex(4)
OBJECT = f"PyCdc_{RUN}__c"
CDC = f"/data/PyCdc_{RUN}__ChangeEvent"
TOPIC_NAME = f"PyBig{RUN}"
TOPIC = f"/topic/{TOPIC_NAME}"


@pytest.fixture(scope="module")
def cdc_sf(conflux, oauth_token):
    sf = direct_salesforce(conflux, oauth_token)
    assert tooling_create_object(sf, OBJECT, f"PyCdc {RUN}")["success"] is True
    tooling_create_field(sf, OBJECT, "Amount__c", {"type": "Number", "label": "Amount", "precision": 16, "scale": 2})
    member = sf.toolingexecute(
        "sobjects/PlatformEventChannelMember",
        method="POST",
        data={
            "FullName": f"ChangeEvents_PyCdc_{RUN}__ChangeEvent",
            "Metadata": {"eventChannel": "ChangeEvents", "selectedEntity": f"PyCdc_{RUN}__ChangeEvent"},
        },
    )
    assert member["success"] is True, member
    topic = sf.PushTopic.create(
        {
            "Name": TOPIC_NAME,
            "Query": f"SELECT Id, Name, Amount__c FROM {OBJECT} WHERE Amount__c > 100",
            "ApiVersion": 59.0,
        }
    )
    assert topic["success"] is True, topic
    return sf


def create(sf, name: str, amount: float) -> str:
    r = getattr(sf, OBJECT).create({"Name": name, "Amount__c": amount})
    assert r["success"] is True, r
    return r["id"]


def check_create(message: dict, record_id: str, name: str, amount: float) -> int:
    assert message["channel"] == CDC, message
    payload = message["data"]["payload"]
    header = payload["ChangeEventHeader"]
    assert header["entityName"] == OBJECT
    assert header["changeType"] == "CREATE"
    assert [i[:15] for i in header["recordIds"]] == [record_id[:15]]
    assert header["changedFields"] == []
    assert isinstance(header["commitTimestamp"], int)
    assert payload["Name"] == name and payload["Amount__c"] == amount
    return message["data"]["event"]["replayId"]


def test_change_events_and_topic_notifications_arrive_in_order(conflux, cdc_sf):
    sf = cdc_sf
    loop_run = asyncio.get_running_loop

    async def scenario():
        async with Client(ConfluxAuth(conflux), replay=ReplayOption.NEW_EVENTS) as client:
            await client.subscribe(CDC)
            await client.subscribe(TOPIC)
            big = await loop_run().run_in_executor(None, create, sf, "Big", 500)
            small = await loop_run().run_in_executor(None, create, sf, "Small", 5)
            got = await take(client, 3)
            changes = [m for m in got if m["channel"] == CDC]
            notes = [m for m in got if m["channel"] == TOPIC]
            assert len(changes) == 2 and len(notes) == 1, got
            ids = [check_create(changes[0], big, "Big", 500), check_create(changes[1], small, "Small", 5)]
            assert ids[0] < ids[1]
            note = notes[0]["data"]
            assert note["event"]["type"] == "created"
            assert note["event"]["createdDate"].endswith("Z")
            assert note["sobject"] == {"Id": big, "Name": "Big", "Amount__c": 500}

            await loop_run().run_in_executor(None, lambda: getattr(sf, OBJECT).update(small, {"Amount__c": 250}))
            got = await take(client, 2)
            update = next(m for m in got if m["channel"] == CDC)["data"]["payload"]
            assert update["ChangeEventHeader"]["changeType"] == "UPDATE"
            assert sorted(update["ChangeEventHeader"]["changedFields"]) == ["Amount__c", "LastModifiedDate"]
            assert update["Amount__c"] == 250 and "Name" not in update
            note = next(m for m in got if m["channel"] == TOPIC)["data"]
            assert note["event"]["type"] == "updated" and note["sobject"]["Id"] == small
            await nothing_more(client)

    asyncio.run(scenario())


def test_replay_all_and_resume_from_stored_markers(conflux, cdc_sf):
    sf = cdc_sf
    markers: dict[str, ReplayMarker] = {}

    async def everything():
        async with Client(ConfluxAuth(conflux), replay=ReplayOption.ALL_EVENTS) as client:
            await client.subscribe(CDC)
            got = await take(client, 3)
            kinds = [m["data"]["payload"]["ChangeEventHeader"]["changeType"] for m in got]
            assert kinds == ["CREATE", "CREATE", "UPDATE"]

    asyncio.run(everything())

    async def first_run():
        async with Client(ConfluxAuth(conflux), replay=markers) as client:
            await client.subscribe(CDC)
            await client.subscribe(TOPIC)
            rid = await asyncio.get_running_loop().run_in_executor(None, create, sf, "Marked", 900)
            got = await take(client, 2)
            check_create(next(m for m in got if m["channel"] == CDC), rid, "Marked", 900)

    asyncio.run(first_run())
    assert CDC in markers and TOPIC in markers, "aiosfstream stored markers (it needs creation dates)"
    missed = [create(sf, "Missed", 1000), create(sf, "Quiet", 1)]

    async def second_run():
        async with Client(ConfluxAuth(conflux), replay=markers) as client:
            await client.subscribe(CDC)
            await client.subscribe(TOPIC)
            got = await take(client, 3)
            changes = [m for m in got if m["channel"] == CDC]
            notes = [m for m in got if m["channel"] == TOPIC]
            check_create(changes[0], missed[0], "Missed", 1000)
            check_create(changes[1], missed[1], "Quiet", 1)
            assert [n["data"]["sobject"]["Id"] for n in notes] == [missed[0]]
            await nothing_more(client)

    asyncio.run(second_run())
