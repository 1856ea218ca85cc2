"""MQTT cloud / VPP / Home Assistant link (paho-mqtt): telemetry out, commands in, HA discovery.

Configuration: one or more ``[[integrations.mqtt.links]]`` (see ``config.py``): ``name``, ``host``, ``port``
(1883), ``protocol`` ("5" or "3.1.1"), ``tls`` with ``ca_file`` / ``cert_file`` + ``key_file``, ``username`` /
``password``, ``client_id`` (default ``hems-<gateway id>-<link name>``), ``keepalive_s`` (60), ``telemetry``
(true), ``commands`` (true), ``home_assistant`` (false), ``discovery_prefix`` ("homeassistant"),
``telemetry_interval_s`` (10; 0 = every reading), ``command_token`` (shared secret commands must carry),
``reconnect_min_s`` / ``reconnect_max_s`` (1 / 60: reconnect backoff). Sessions are persistent (MQTT 5
``clean_start = false`` with a 7-day session expiry; 3.1.1 ``clean_session = false``).

Topic layout (``<gw>`` is ``[gateway] id``; every message QoS 1):

| topic | payload | retained | direction |
|---|---|---|---|
| ``hems/<gw>/status`` | ``online`` / ``offline`` (last will) | yes | out |
| ``hems/<gw>/<device_id>/<quantity>`` | ``{"value", "unit", "ts"}`` per reading, at most one per ``telemetry_interval_s`` per topic (latest wins) | no | out |
| ``hems/<gw>/plan`` | plan summary: ``start_ts, step_s, status, reason, cost``, first 12 steps of ``grid_w, battery_w, battery_soc_pct, ev_w``, first step's ``reasons`` | yes | out |
| ``hems/<gw>/dr/<source:event_id>`` | DR event state: ``key, event_id, source, state, opt, notice, start_ts, end_ts, objective, reason, ts`` | yes | out |
| ``hems/<gw>/link/<link>`` | ``{"connected", "primary", "outbox_size", "outbox_dropped_total", "outbox_max_rows", "ts"}`` | yes | out |
| ``hems/<gw>/mqtt/outbox_dropped`` | telemetry of the bus reading ``mqtt / outbox_dropped`` (messages dropped from a full outbox) | no | out |
| ``hems/<gw>/cmd`` | ``{"id", "type", "value_w"?, "duration_s"?, "token"?, "event"?}`` | no | in |
| ``hems/<gw>/cmd/response`` | ``{"id", "status": "accepted" / "rejected" / "completed", "reason", "ts"}`` | no | out |
| ``hems/<gw>/ha/<device_id>/<control>/set`` | Home Assistant controls (``battery_setpoint_w``, ``hvac_mode``, ``switch_on``; ``gateway/return_to_plan``) | no | in |
| ``<discovery_prefix>/<component>/<gw>/<object_id>/config`` | Home Assistant discovery | yes | out |

Device ids ``status``, ``plan``, ``dr``, ``cmd``, ``ha`` and ``link`` are reserved. Characters ``/ + #`` in a
device id, quantity or event key become ``_``.

Command types: ``battery_power`` (``value_w``: +charge / −discharge, ``duration_s``), ``load_shed``
(``value_w`` to shed, ``duration_s``: water heater off, then EV paused, then the battery covers the rest),
``ev_pause`` (``duration_s``), ``return_to_plan`` (ends every dispatch). The answer comes within 2 s; an accepted
dispatch is reported ``completed`` when its duration is over (or when replaced / ended by return_to_plan).
A command is rejected with the reason when it is malformed, lacks the link's ``command_token``, or would break a
limit: the battery reserve (outside a DR event), the battery's power range, the service limit or an active DR
import cap (charging), or a DR event the homeowner opted out of (a dispatch naming it with ``event``, or any
downward dispatch during its window).

Store-and-forward: telemetry on the first link with ``telemetry = true`` goes through the store's outbox (see
``client.py``); while its broker is unreachable it is kept there (bounded: the oldest are dropped and counted),
and delivered in order after the reconnect or after a gateway restart.

The dispatch override for the controller is ``integration.dispatch`` (``integrations.mqtt.dispatch.Dispatch``):
``active_override(now) -> dict | None``; see ``dispatch.py`` for how the controller applies it.
"""

from __future__ import annotations

from hems.integration import IntegrationContext

from .client import MqttIntegration

name = "mqtt"

__all__ = ["MqttIntegration", "create", "name"]


def create(ctx: IntegrationContext) -> MqttIntegration:
    return MqttIntegration(ctx)
