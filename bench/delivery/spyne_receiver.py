"""Outbound Message receiver for `cargo xtask bench delivery`: spyne on wsgiref (the peer of the
performance anchors), counting the notifications and messages it acknowledges.

Usage: spyne_receiver.py PORT. `GET /stats` answers {"messages", "notifications", "first", "last"}
(times in seconds since the epoch, of the first and last acknowledged message)."""

from __future__ import annotations

import json
import sys
import time
from wsgiref.simple_server import WSGIRequestHandler, make_server

from spyne import Application, Boolean, ComplexModel, ServiceBase, Unicode, rpc
from spyne.protocol.soap import Soap11
from spyne.server.wsgi import WsgiApplication

NS = "http://soap.sforce.com/2005/09/outbound"
SF = "urn:sobject.enterprise.soap.sforce.com"
STATS = {"messages": 0, "notifications": 0, "first": None, "last": None}


class sObject(ComplexModel):  # noqa: N801 - Salesforce's type name
    __namespace__ = SF
    _type_info = [("Id", Unicode)]


class Account(sObject):
    __namespace__ = SF
    _type_info = [("Name", Unicode)]


class Notification(ComplexModel):
    __namespace__ = NS
    _type_info = [("Id", Unicode), ("sObject", sObject)]


class Receiver(ServiceBase):
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
        now = time.time()
        STATS["messages"] += 1
        STATS["notifications"] += len(notifications or [])
        if STATS["first"] is None:
            STATS["first"] = now
        STATS["last"] = now
        return True

    @rpc(Account, _returns=Boolean)
    def _types(ctx, account):  # noqa: N805 - keeps Account in the interface so xsi:type resolves
        return True


SOAP = WsgiApplication(Application([Receiver], tns=NS, in_protocol=Soap11(), out_protocol=Soap11()))


def app(environ, start_response):
    if environ.get("PATH_INFO") == "/stats":
        body = json.dumps(STATS).encode()
        start_response("200 OK", [("Content-Type", "application/json"), ("Content-Length", str(len(body)))])
        return [body]
    return SOAP(environ, start_response)


class Quiet(WSGIRequestHandler):
    def log_message(self, *args):  # noqa: D102
        pass


if __name__ == "__main__":
    server = make_server("127.0.0.1", int(sys.argv[1]), app, handler_class=Quiet)
    print(f"listening {server.server_port}", flush=True)
    server.serve_forever()
