"""OCPP integration: a CSMS for the home's EV charger(s) (OCPP 1.6J, 2.0.1 and 2.1) and a simulated charge point.

Entry points: ``create`` (hems.integrations), ``dev_peer`` (hems.dev_peers), ``sim.main`` (hems.simulators),
``bench.main`` (hems.benchmarks). Configuration: see ``integrations.ocpp.config``.
"""

from __future__ import annotations

from .csms import ChargerDevice, OcppIntegration, create
from .devpeer import OcppDevPeer, dev_peer

__all__ = ["ChargerDevice", "OcppDevPeer", "OcppIntegration", "create", "dev_peer"]
