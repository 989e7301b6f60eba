"""After-save flow actions and platform-event flows, driven by simple-salesforce.

A record created through simple-salesforce triggers a flow that publishes a platform event; a
second flow, triggered by that event, creates a Case. An event published directly with
simple-salesforce runs the second flow too. Both flows are managed through the admin API with
simple-salesforce's `restful`."""

from __future__ import annotations

import time

from support import soql_quote, wait_for


def cases(sf, subject: str) -> list[dict]:
    return sf.query(f"SELECT Id, Subject, Origin FROM Case WHERE Subject = {soql_quote(subject)}")["records"]


def test_a_record_publishes_an_event_whose_flow_creates_a_case(sf, run_id):
    event = f"Flow_Ping_{run_id}__e"
    created = sf.toolingexecute(
        "sobjects/CustomObject",
        method="POST",
        data={"FullName": event, "Metadata": {"label": event, "pluralLabel": event, "publishBehavior": "PublishAfterCommit"}},
    )
    assert created["success"] is True, created
    field = sf.toolingexecute(
        "sobjects/CustomField",
        method="POST",
        data={"FullName": f"{event}.Note__c", "Metadata": {"type": "Text", "label": "Note", "length": 80}},
    )
    assert field["success"] is True, field
    prefix = f"FA-{run_id}-"
    publisher, on_event = f"Publish_{run_id}", f"Ping_{run_id}"
    sf.restful(
        f"conflux/flows/{on_event}",
        method="PUT",
        json={
            "object": event,
            "actions": [
                {"type": "create_record", "object": "Case", "fields": {"Subject": '"ping " + .Note__c', "Origin": '"Web"'}}
            ],
        },
    )
    sf.restful(
        f"conflux/flows/{publisher}",
        method="PUT",
        json={
            "object": "Account",
            "on": ["create"],
            "condition": f'.Name | startswith("{prefix}")',
            "actions": [{"type": "publish_event", "event": event, "fields": {"Note__c": "$new.Name"}}],
        },
    )
    try:
        sf.Account.create({"Name": f"{prefix}one"})
        found = wait_for("the Case made by the event's flow", lambda: cases(sf, f"ping {prefix}one"), timeout=60.0)
        assert len(found) == 1 and found[0]["Origin"] == "Web", found

        # An event published by the client runs the same flow.
        published = getattr(sf, event).create({"Note__c": f"{prefix}direct"})
        assert published["success"] is True, published
        wait_for("the Case for the published event", lambda: cases(sf, f"ping {prefix}direct"), timeout=60.0)

        # Nothing is left queued, and each event made exactly one Case.
        queued = sf.restful("conflux/deliveries?state=all")["deliveries"]
        assert not [d for d in queued if d["action"] in (publisher, on_event)], queued
        time.sleep(0.5)
        assert len(cases(sf, f"ping {prefix}one")) == 1
        assert len(cases(sf, f"ping {prefix}direct")) == 1
    finally:
        sf.restful(f"conflux/flows/{publisher}", method="DELETE")
        sf.restful(f"conflux/flows/{on_event}", method="DELETE")
