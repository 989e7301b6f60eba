"""Outbound Messages from Conflux to a real SOAP receiver built with spyne.

The receiver is down when the notifications are queued and comes up later (the server runs with a
shortened retry schedule, `--delivery-retry-base-ms`): every notification must then arrive, each
under the id it carried on its failed attempts, none lost, and spyne must accept the envelope as
Salesforce sends it (`xsi:type="sf:Account"` resolved against the declared sObject types). The
flow is created through the admin API with simple-salesforce's `restful`, and the Outbound
Message's WSDL must load in zeep."""

from __future__ import annotations

import threading
from wsgiref.simple_server import WSGIRequestHandler, make_server

import zeep
from spyne import Application, Boolean, ComplexModel, ServiceBase, Unicode, rpc
from spyne.protocol.soap import Soap11
from spyne.server.wsgi import WsgiApplication

from support import deliveries, free_port, wait_for

NS = "http://soap.sforce.com/2005/09/outbound"
SF = "urn:sobject.enterprise.soap.sforce.com"


class sObject(ComplexModel):  # noqa: N801 - Salesforce's type name
    __namespace__ = SF
    _type_info = [("Id", Unicode)]


class Account(sObject):
    __namespace__ = SF
    _type_info = [("Name", Unicode), ("Phone", Unicode)]


class Notification(ComplexModel):
    __namespace__ = NS
    _type_info = [("Id", Unicode), ("sObject", sObject)]


RECEIVED: list[dict] = []


class OutboundReceiver(ServiceBase):
    @rpc(
        Unicode,
        Unicode,
        Unicode,
        Unicode,
        Unicode,
        Notification.customize(max_occurs="unbounded"),
        _args=("OrganizationId", "ActionId", "SessionId", "EnterpriseUrl", "PartnerUrl", "Notification"),
        _returns=Boolean,
        _out_variable_name="Ack",
        _in_message_name="notifications",
        _out_message_name="notificationsResponse",
    )
    def notifications(ctx, org_id, action_id, session_id, enterprise_url, partner_url, notifications):  # noqa: N805
        for n in notifications or []:
            RECEIVED.append(
                {
                    "id": n.Id,
                    "record": n.sObject.Id,
                    "name": getattr(n.sObject, "Name", None),
                    "type": type(n.sObject).__name__,
                    "org": org_id,
                    "action": action_id,
                    "partner_url": partner_url,
                }
            )
        return True

    @rpc(Account, _returns=Boolean)
    def _types(ctx, account):  # noqa: N805 - keeps Account in the interface so xsi:type resolves
        return True


class Quiet(WSGIRequestHandler):
    def log_message(self, *args):  # noqa: D102
        pass


def test_outbound_messages_reach_spyne_after_it_recovers(sf, run_id, oauth_token):
    port = free_port()
    endpoint = f"http://127.0.0.1:{port}/om"
    flow = f"OM_{run_id}"
    action = f"Accounts_{run_id}"
    prefix = f"OM-{run_id}-"
    sf.restful(
        f"conflux/flows/{flow}",
        method="PUT",
        json={
            "object": "Account",
            "on": ["create", "update"],
            "condition": f'.Name | startswith("{prefix}")',
            "actions": [
                {"type": "outbound_message", "name": action, "endpoint": endpoint, "fields": ["Id", "Name", "Phone"]}
            ],
        },
    )
    try:
        ids = [sf.Account.create({"Name": f"{prefix}{i}"})["id"] for i in range(30)]

        # Nobody listens yet: every notification fails, waits, and keeps its id.
        failed = wait_for(
            "30 failed notifications",
            lambda: (lambda d: d if len(d) == 30 else None)(deliveries(sf, action=action, state="failed", limit=100)),
        )
        assert all("cannot connect" in d["lastError"] for d in failed), failed[0]
        queued_ids = {d["id"] for d in failed}
        assert {d["recordId"] for d in failed} == set(ids)
        assert all(d["id"].startswith("04l") and len(d["id"]) == 18 for d in failed)

        # The WSDL for receiver developers loads in a SOAP toolkit.
        wsdl = sf.session.get(
            f"{sf.base_url}conflux/outbound-messages/{action}/wsdl", headers=sf.headers
        )
        assert wsdl.status_code == 200, wsdl.text
        path = f"/tmp/conflux-{run_id}.wsdl"
        with open(path, "w") as f:
            f.write(wsdl.text)
        client = zeep.Client(path)
        assert "notifications" in [op for op in client.service._binding._operations]

        app = WsgiApplication(Application([OutboundReceiver], tns=NS, in_protocol=Soap11(), out_protocol=Soap11()))
        server = make_server("127.0.0.1", port, app, handler_class=Quiet)
        thread = threading.Thread(target=server.serve_forever, daemon=True)
        thread.start()
        try:
            wait_for(
                "every notification at the receiver and an empty queue",
                lambda: {r["id"] for r in RECEIVED} >= queued_ids and not deliveries(sf, action=action, state="all"),
            )
        finally:
            server.shutdown()
        got = [r for r in RECEIVED if r["id"] in queued_ids]
        assert {r["id"] for r in got} == queued_ids, "every notification arrived under its first id"
        assert {r["record"] for r in got} == set(ids)
        assert all(r["type"] == "Account" for r in got), "spyne resolved xsi:type to the Account type"
        assert {r["name"] for r in got} == {f"{prefix}{i}" for i in range(30)}
        assert all(r["action"].startswith("04k") for r in got)
        org15 = oauth_token["access_token"].split("!")[0]
        assert all(r["org"].startswith(org15) and len(r["org"]) == 18 for r in got)
        assert all(r["partner_url"].endswith(f"/services/Soap/u/60.0/{org15}") for r in got)
    finally:
        sf.restful(f"conflux/flows/{flow}", method="DELETE")
