"""Firmware and updates: signed A/B gateway update bundles (``hems-update``), and device firmware.

Gateway updates: :mod:`firmware.bundle` (bundle format, signing, verification, install into the inactive slot),
:mod:`firmware.slots` (boot selection as the Pi firmware does it, hems-slots.json, GPT, commit/rollback),
:mod:`firmware.health` (post-boot health check), :mod:`firmware.cli` (the ``hems-update`` command) and
``firmware/units/`` (systemd units). See firmware/README.md.
"""
