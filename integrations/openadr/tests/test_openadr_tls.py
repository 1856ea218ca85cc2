"""Mutual TLS and XML signatures, both ways, with certificates made by ``cryptography`` (see conftest)."""

from __future__ import annotations

import time

import pytest

from hems.dr import DRState
from hems.store import Store
from integrations.openadr import create
from integrations.openadr.vtn import SimVTN

from .conftest import context
from .test_openadr_loopback import FAST, until


@pytest.fixture
async def tls_vtn(pki):
    vtn = SimVTN(
        port=0,
        poll_freq_s=1,
        report_sampling_s=1.0,
        cert=pki["vtn_cert"],
        key=pki["vtn_key"],
        http_cert=pki["vtn_cert"],
        http_key=pki["vtn_key"],
        ca_file=pki["ca_file"],
        enrolled={"home-tls": pki["ven_fingerprint"]},
    )
    await vtn.start()
    yield vtn
    await vtn.stop()


def section(vtn: SimVTN, pki: dict, **over) -> dict:
    return {
        "vtn_url": vtn.url,
        "ven_name": "home-tls",
        "cert": pki["ven_cert"],
        "key": pki["ven_key"],
        "ca_file": pki["ca_file"],
        "vtn_fingerprint": pki["vtn_fingerprint"],
        **FAST,
        **over,
    }


async def test_tls_with_client_certificates_and_signatures(tls_vtn, pki, tmp_path):
    assert tls_vtn.url.startswith("https://127.0.0.1:")
    store = Store(tmp_path / "hems.sqlite")
    integration = create(context(section(tls_vtn, pki), store=store))
    await integration.start()
    try:
        ven = integration.ven
        await until(lambda: ven.registered, timeout_s=8, what="registration over TLS")
        assert ven.status()["tls"] and ven.status()["signing"]
        rec = tls_vtn.vens[ven.ven_id]
        assert rec.fingerprint == pki["ven_fingerprint"]  # the VTN saw the VEN's client certificate
        tls_vtn.add_event(start_ts=time.time() - 1, duration_s=3600, shed_w=1200.0, event_id="tls-1")
        ev = await until(lambda: integration.dr.get("openadr:tls-1"), what="the signed event")
        assert ev.state is DRState.ACTIVE and ev.shed_w == 1200.0
        # signed answers travel back and are verified by the VTN (openleadr checks signature and fingerprint)
        await integration.dr.opt_out("openadr:tls-1", "test")
        opts = await tls_vtn.wait_for(
            lambda: [o for o in tls_vtn.opts if o.via == "oadrCreateOpt"], timeout_s=8
        )
        assert opts[0].event_id == "tls-1" and opts[0].opt_type == "optOut"
        assert ven.client.refused == 0 and tls_vtn.refused == []
    finally:
        await integration.stop()
        store.close()


async def test_wrong_vtn_fingerprint_refuses_every_answer(tls_vtn, pki):
    wrong = "00:11:22:33:44:55:66:77:88:99"
    integration = create(context(section(tls_vtn, pki, vtn_fingerprint=wrong), store=None))
    integration.ven.backoff_initial_s = integration.ven.backoff_max_s = 0.05
    await integration.start()
    try:
        await until(lambda: integration.ven.client.refused >= 2, what="refusals")
        assert not integration.ven.registered
        assert "FingerprintMismatch" in integration.ven.client.last_refusal
    finally:
        await integration.stop()


async def test_untrusted_server_certificate_and_unenrolled_ven_fail(tls_vtn, pki):
    rogue = create(context(section(tls_vtn, pki, ca_file=pki["rogue_ca_file"]), store=None))
    rogue.ven.backoff_initial_s = rogue.ven.backoff_max_s = 0.05
    await rogue.start()
    try:
        await until(lambda: rogue.ven.failures >= 2, what="TLS failures")
        assert not rogue.ven.registered and "certificate" in rogue.ven.last_error.lower()
    finally:
        await rogue.stop()
    tls_vtn.enrolled.clear()
    tls_vtn.enrolled["someone-else"] = pki["vtn_fingerprint"]
    stranger = create(context(section(tls_vtn, pki), store=None))
    stranger.ven.backoff_initial_s = stranger.ven.backoff_max_s = 0.05
    await stranger.start()
    try:
        await until(lambda: stranger.ven.failures >= 2, what="registration refusals")
        assert not stranger.ven.registered and tls_vtn.vens == {}
    finally:
        await stranger.stop()
