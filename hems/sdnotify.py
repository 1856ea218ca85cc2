"""systemd's service notifications (sd_notify) with the standard library only.

Under systemd with ``Type=notify`` the service manager passes ``$NOTIFY_SOCKET`` (a datagram socket path, or
an abstract one starting with ``@``); ``READY=1`` says start-up is done, ``WATCHDOG=1`` feeds the watchdog
(``$WATCHDOG_USEC``, set from the unit's ``WatchdogSec=``) and ``STATUS=...`` is the line ``systemctl status``
shows. Outside systemd (no ``$NOTIFY_SOCKET``) every call does nothing, so dev mode and tests run unchanged.
"""

from __future__ import annotations

import logging
import os
import socket

log = logging.getLogger("hems.sdnotify")


class Notifier:
    """Sends notifications to ``$NOTIFY_SOCKET`` (read once, when made)."""

    def __init__(self, environ: dict[str, str] | None = None) -> None:
        env = os.environ if environ is None else environ
        self.address = self._address(env.get("NOTIFY_SOCKET", ""))
        self.watchdog_usec = self._watchdog_usec(env)
        self._warned = False

    @staticmethod
    def _address(value: str) -> str | bytes | None:
        if not value:
            return None
        if value.startswith("@"):  # abstract namespace: a leading NUL byte
            return b"\0" + value[1:].encode()
        if value.startswith("/"):
            return value
        log.warning("NOTIFY_SOCKET=%r is neither a path nor an abstract socket: notifications off", value)
        return None

    @staticmethod
    def _watchdog_usec(env) -> int | None:
        """The watchdog interval, if systemd asked this process (``WATCHDOG_PID``, when set, must be us)."""
        try:
            usec = int(env.get("WATCHDOG_USEC", ""))
        except ValueError:
            return None
        pid = env.get("WATCHDOG_PID")
        if pid and pid != str(os.getpid()):
            return None
        return usec if usec > 0 else None

    @property
    def enabled(self) -> bool:
        return self.address is not None

    @property
    def watchdog_interval_s(self) -> float | None:
        """How often to ping: half the watchdog timeout, as systemd recommends."""
        return self.watchdog_usec / 2e6 if self.watchdog_usec else None

    def notify(self, *fields: str) -> bool:
        """Send ``fields`` (e.g. ``"READY=1"``, ``"STATUS=..."``) as one message; False if it could not go."""
        if self.address is None:
            return False
        message = "\n".join(f.replace("\n", " ") for f in fields).encode()
        try:
            with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM | socket.SOCK_CLOEXEC) as sock:
                sock.sendto(message, self.address)
        except OSError as exc:
            if not self._warned:  # once: a missing manager must not flood the log every watchdog tick
                log.warning("sd_notify to %r failed: %s", self.address, exc)
                self._warned = True
            return False
        return True

    def ready(self, status: str = "") -> bool:
        return self.notify("READY=1", *([f"STATUS={status}"] if status else []))

    def watchdog(self) -> bool:
        return self.notify("WATCHDOG=1")

    def status(self, status: str) -> bool:
        return self.notify(f"STATUS={status}")

    def stopping(self, status: str = "") -> bool:
        return self.notify("STOPPING=1", *([f"STATUS={status}"] if status else []))
