"""Malformed and hostile XML is refused without crashing, on the VEN and on the simulated VTN.

Without the guard, openleadr's schema-validating parse of a message with a DTD that declares an internal entity
crashes the Python process (lxml 6.1 / libxml2 2.14) — surviving these tests is part of what they check.
"""

from __future__ import annotations

import time

import aiohttp
import pytest
from aiohttp import web
from openleadr.messaging import create_message

from hems.store import Store
from integrations.openadr import create, xmlguard
from integrations.openadr.vtn import PREFIX, SimVTN

from .conftest import context
from .test_openadr_loopback import FAST, until


def distribute(vtn: SimVTN, ven_id: str, event_id: str) -> str:
    ev = vtn.add_event(start_ts=time.time() - 1, duration_s=3600, level=3, event_id=event_id)
    del vtn.events[event_id]  # only its XML is wanted
    return create_message(
        "oadrDistributeEvent",
        request_id="req-evil",
        vtn_id=vtn.vtn_id,
        response={"response_code": 200, "response_description": "OK", "request_id": None},
        events=[vtn._build(ev, ven_id, time.time())],
    )


def hostile_answers(vtn: SimVTN, ven_id: str) -> dict[str, bytes]:
    msg = distribute(vtn, ven_id, "evil")
    body = msg.split("?>", 1)[1]
    laughs = '<!ENTITY lol0 "lol">' + "".join(
        f'<!ENTITY lol{i} "{f"&lol{i - 1};" * 10}">' for i in range(1, 10)
    )
    bomb = f'<?xml version="1.0"?><!DOCTYPE oadrPayload [{laughs}]>' + body.replace(
        "http://hems.example/dr-program", "&lol9;"
    )
    xxe = (
        '<?xml version="1.0"?><!DOCTYPE oadrPayload [<!ENTITY x SYSTEM "file:///etc/hostname">]>'
        + body.replace("http://hems.example/dr-program", "&x;")
    )
    one_entity = '<?xml version="1.0"?><!DOCTYPE oadrPayload [<!ENTITY a "x">]>' + body.replace(
        "http://hems.example/dr-program", "&a;"
    )
    return {
        "billion laughs": bomb.encode(),
        "external entity": xxe.encode(),
        "one internal entity": one_entity.encode(),
        "oversized": msg.replace("</oadr:oadrPayload>", " " * (2 << 20) + "</oadr:oadrPayload>").encode(),
        "not xml": b"\x00\xff garbage \x01",
        "wrong schema": b'<?xml version="1.0"?><oadrPayload><oadrSignedObject><x/></oadrSignedObject></oadrPayload>',
        "deep": b'<?xml version="1.0"?>' + b"<a>" * 50_000 + b"</a>" * 50_000,
        "utf-16": msg.encode("utf-16"),
    }


class EvilProxy:
    """Forwards to the real VTN; answers polls from ``answers`` while it has any."""

    def __init__(self, target: str) -> None:
        self.target = target
        self.answers: list[bytes] = []
        self.sent = 0
        app = web.Application(client_max_size=4 << 20)
        app.router.add_post("/{tail:.*}", self.forward)
        self.runner = web.AppRunner(app, access_log=None)
        self.url = ""

    async def start(self) -> None:
        await self.runner.setup()
        site = web.TCPSite(self.runner, "127.0.0.1", 0)
        await site.start()
        self.url = f"http://127.0.0.1:{self.runner.addresses[0][1]}{PREFIX}"

    async def forward(self, request: web.Request) -> web.Response:
        body = await request.read()
        if request.path.endswith("/OadrPoll") and self.answers:
            self.sent += 1
            return web.Response(body=self.answers.pop(0), content_type="application/xml")
        tail = request.path.removeprefix(PREFIX)
        async with (
            aiohttp.ClientSession() as s,
            s.post(self.target + tail, data=body, headers={"content-type": "application/xml"}) as r,
        ):
            return web.Response(body=await r.read(), status=r.status, content_type="application/xml")

    async def stop(self) -> None:
        await self.runner.cleanup()


async def test_ven_refuses_hostile_answers_and_keeps_working(vtn, tmp_path):
    proxy = EvilProxy(vtn.url)
    await proxy.start()
    store = Store(tmp_path / "hems.sqlite")
    integration = create(context({"vtn_url": proxy.url, "ven_name": "home-1", **FAST}, store=store))
    await integration.start()
    try:
        ven = integration.ven
        await until(lambda: ven.registered)
        answers = hostile_answers(vtn, ven.ven_id)
        proxy.answers = list(answers.values())
        await until(
            lambda: proxy.sent == len(answers) and ven.client.refused >= len(answers), what="all refused"
        )
        assert ven.client.refused == len(answers)
        assert integration.dr.get("openadr:evil") is None and integration.dr.events() == []
        # still registered and polling: a real event comes through afterwards
        assert ven.registered
        vtn.add_event(start_ts=time.time() - 1, duration_s=600, level=1, event_id="fine")
        ev = await until(lambda: integration.dr.get("openadr:fine"))
        assert ev.level == 1
    finally:
        await integration.stop()
        await proxy.stop()
        store.close()


@pytest.mark.parametrize(
    "name",
    [
        "billion laughs",
        "external entity",
        "one internal entity",
        "oversized",
        "not xml",
        "wrong schema",
        "deep",
        "utf-16",
    ],
)
def test_guard_refuses_each_with_a_reason(vtn, name):
    payload = hostile_answers(vtn, "ven-x")[name]
    with pytest.raises(xmlguard.RefusedXML) as info:
        xmlguard.parse(payload)
    assert str(info.value)


def test_guard_accepts_a_real_message(vtn):
    tree = xmlguard.parse(distribute(vtn, "ven-x", "ok"))
    assert tree.tag.endswith("oadrPayload")


async def test_simulated_vtn_refuses_hostile_posts_and_keeps_serving(vtn):
    url = vtn.url + "/EiEvent"
    async with aiohttp.ClientSession(headers={"content-type": "application/xml"}) as s:
        for name, payload in hostile_answers(vtn, "ven-x").items():
            if name == "oversized":
                continue  # aiohttp's own 1 MiB request limit answers 413 before the guard
            async with s.post(url, data=payload) as r:
                assert r.status == 400, name
        async with s.post(url, data=hostile_answers(vtn, "ven-x")["oversized"]) as r:
            assert r.status == 413
        assert len(vtn.refused) == 5  # 3 DTDs, 2 not UTF-8; the schema-invalid ones get openleadr's own 400
        async with s.get(vtn.base_url + "/hems/state") as r:
            assert r.status == 200 and (await r.json())["vtn_id"] == vtn.vtn_id
