"""Signed JSON webhooks from Conflux to two real, widely used HTTP servers.

One receiver is Python's own `http.server` (HTTP/1.1, keep-alive), the other an aiohttp web
application. A flow created through the admin API with simple-salesforce's `restful` sends a
webhook for each of 200 Accounts created in one sObject Collections call. Every webhook must
arrive exactly once, on its first attempt, with an `X-Conflux-Signature` that Python's `hmac`
verifies over `<t>.<body>` and an `Idempotency-Key` equal to its notification id. Conflux
pipelines webhooks to receivers that answer a probe of two pipelined requests; `http.server`
does (it reads each request off the connection in turn), and it is read unbuffered here so
that a request with another already waiting behind it on the socket shows that they were
written together."""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import json
import select
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

from aiohttp import web

from support import deliveries, free_port, wait_for

SECRET = "conformance-webhook-secret"
COUNT = 200


def received(headers, body: bytes, behind: bool | None, connection: int) -> dict:
    return {
        "headers": {k.lower(): v for k, v in headers.items()},
        "body": body,
        "behind": behind,
        "connection": connection,
    }


def start_http_server(port: int, got: list[dict]):
    class Hook(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"
        # Unbuffered: the bytes of a request written behind this one stay in the socket,
        # where select() sees them.
        rbufsize = 0

        def do_POST(self):  # noqa: N802 - http.server's naming
            length = int(self.headers["Content-Length"])
            body = b""
            while len(body) < length:
                chunk = self.rfile.read(length - len(body))
                if not chunk:
                    return
                body += chunk
            behind = bool(select.select([self.connection], [], [], 0)[0])
            got.append(received(self.headers, body, behind, id(self.connection)))
            self.send_response(200)
            self.send_header("Content-Length", "2")
            self.end_headers()
            self.wfile.write(b"ok")

        def log_message(self, *args):  # noqa: D102
            pass

    server = ThreadingHTTPServer(("127.0.0.1", port), Hook)
    server.daemon_threads = True
    threading.Thread(target=server.serve_forever, daemon=True).start()

    def stop():
        server.shutdown()
        server.server_close()

    return stop


def start_aiohttp(port: int, got: list[dict]):
    loop = asyncio.new_event_loop()

    async def hook(request: web.Request) -> web.Response:
        body = await request.read()
        got.append(received(request.headers, body, None, id(request.transport)))
        return web.Response(text="ok")

    app = web.Application()
    app.router.add_post("/hook", hook)
    runner = web.AppRunner(app, access_log=None)
    started = threading.Event()

    def run():
        asyncio.set_event_loop(loop)
        loop.run_until_complete(runner.setup())
        loop.run_until_complete(web.TCPSite(runner, "127.0.0.1", port).start())
        started.set()
        loop.run_forever()

    threading.Thread(target=run, daemon=True).start()
    assert started.wait(10), "aiohttp did not start"

    def stop():
        asyncio.run_coroutine_threadsafe(runner.cleanup(), loop).result(10)
        loop.call_soon_threadsafe(loop.stop)

    return stop


def check_webhooks(got: list[dict], names: dict[str, str], receiver: str) -> None:
    assert len(got) == COUNT, f"{receiver}: {len(got)} requests for {COUNT} webhooks"
    now = time.time()
    seen = set()
    for r in got:
        h = r["headers"]
        assert h["content-type"] == "application/json", (receiver, h)
        stamp, v1 = (part.split("=", 1)[1] for part in h["x-conflux-signature"].split(","))
        want = hmac.new(SECRET.encode(), stamp.encode() + b"." + r["body"], hashlib.sha256).hexdigest()
        assert hmac.compare_digest(v1, want), f"{receiver}: bad signature {h['x-conflux-signature']}"
        assert abs(now - int(stamp)) < 600, f"{receiver}: stale timestamp {stamp}"
        key = h["idempotency-key"]
        assert key == h["x-conflux-notification-id"] and key.startswith("04l") and len(key) == 18
        assert h["x-conflux-attempt"] == "1", f"{receiver}: attempt {h['x-conflux-attempt']}"
        seen.add(key)
        body = json.loads(r["body"])
        assert names.get(body["id"]) == body["name"], (receiver, body)
    assert len(seen) == COUNT, f"{receiver}: one notification id per webhook"
    assert {json.loads(r["body"])["id"] for r in got} == set(names), f"{receiver}: every record's webhook"


def test_signed_webhooks_reach_http_server_and_aiohttp_once_each(sf, run_id):
    plain_port, aio_port = free_port(), free_port()
    plain_got: list[dict] = []
    aio_got: list[dict] = []
    stop_plain = start_http_server(plain_port, plain_got)
    stop_aio = start_aiohttp(aio_port, aio_got)
    flow = f"Hooks_{run_id}"
    prefix = f"WH-{run_id}-"
    hook = lambda name, port: {  # noqa: E731
        "type": "webhook",
        "name": f"{name}_{run_id}",
        "url": f"http://127.0.0.1:{port}/hook",
        "secret": SECRET,
        "body": "{id: .Id, name: .Name}",
    }
    sf.restful(
        f"conflux/flows/{flow}",
        method="PUT",
        json={
            "object": "Account",
            "on": ["create"],
            "condition": f'.Name | startswith("{prefix}")',
            "actions": [hook("Plain", plain_port), hook("Aio", aio_port)],
        },
    )
    try:
        records = [{"attributes": {"type": "Account"}, "Name": f"{prefix}{i}"} for i in range(COUNT)]
        results = sf.restful("composite/sobjects", method="POST", json={"allOrNone": True, "records": records})
        assert all(r["success"] for r in results), results
        names = {r["id"]: f"{prefix}{i}" for i, r in enumerate(results)}
        actions = [f"Plain_{run_id}", f"Aio_{run_id}"]
        wait_for(
            "every webhook at both receivers and an empty queue",
            lambda: len(plain_got) >= COUNT
            and len(aio_got) >= COUNT
            and not any(deliveries(sf, action=a, state="all") for a in actions),
        )
        time.sleep(0.5)  # anything sent twice would show up now
        check_webhooks(plain_got, names, "http.server")
        check_webhooks(aio_got, names, "aiohttp")
        assert any(r["behind"] for r in plain_got), "http.server got pipelined webhooks"
        for got, receiver in ((plain_got, "http.server"), (aio_got, "aiohttp")):
            connections = len({r["connection"] for r in got})
            assert connections <= 8, f"{receiver}: {connections} connections (concurrency 8)"
    finally:
        sf.restful(f"conflux/flows/{flow}", method="DELETE")
        stop_plain()
        stop_aio()
