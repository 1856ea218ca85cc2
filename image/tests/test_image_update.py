"""A/B updates of the real image in the emulator: a signed bundle moves the gateway to the other slot (trial
boot, health check, commit), and a bundle whose root cannot boot leaves it on the slot it had.

The bundles are served to the gateway over HTTP from this machine's loopback (QEMU's user network shows it to
the guest as 10.0.2.2), installed with `hems-update install --reboot` over SSH, and each reboot boots again
through the image's own GRUB under UEFI firmware, which picks the slot from hems-boot.env (the new slot once
after `hems-update reboot`, the committed slot otherwise).
Slow (four emulated boots and two slot writes under emulation, ~13 min): `make image-update-test` runs it
(HEMS_IMAGE_UPDATE_TEST=1), not `make test`.
"""

from __future__ import annotations

import functools
import http.server
import json
import os
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

HERE = Path(__file__).resolve().parent
sys.path[:0] = [str(HERE), str(HERE.parent)]  # the boot test's helpers and image/qemu.py

from qemu import Emulator  # noqa: E402
from test_image_boot import (  # noqa: E402
    BANNER_RUNNING,
    PROJECT,
    build_image,
    free_port,
    report,
    ssh,
    wait_ssh,
)

from firmware import slots  # noqa: E402

pytestmark = [
    pytest.mark.timeout(3600),
    pytest.mark.skipif(
        not os.environ.get("HEMS_IMAGE_UPDATE_TEST"),
        reason="update in the emulator: `make image-update-test` (HEMS_IMAGE_UPDATE_TEST=1)",
    ),
]


@pytest.fixture(scope="module")
def amd64_image(pytestconfig) -> Path:
    given = os.environ.get("HEMS_BOOT_TEST_IMAGE")
    return Path(given) if given else build_image("amd64", pytestconfig)


MAKE_BUNDLE = (sys.executable, "-m", "firmware.cli", "make-bundle")


def make_bundle(out: Path, version: str, rootfs: Path, boot_dir: Path, key: Path) -> Path:
    subprocess.run(
        [
            *MAKE_BUNDLE,
            "--key",
            str(key),
            "--version",
            version,
            "--arch",
            "amd64",
            "--rootfs",
            str(rootfs),
            "--boot-dir",
            str(boot_dir),
            "-o",
            str(out),
        ],
        check=True,
        cwd=PROJECT,
        capture_output=True,
    )
    return out


@pytest.fixture
def bundle_server(tmp_path):
    """Serves tmp_path/bundles on loopback; the guest reaches it at 10.0.2.2."""
    root = tmp_path / "bundles"
    root.mkdir()
    handler = functools.partial(http.server.SimpleHTTPRequestHandler, directory=str(root))
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield root, server.server_address[1]
    server.shutdown()
    server.server_close()


def status(port: int, key: Path) -> dict:
    return json.loads(ssh(port, key, "sudo -n /opt/hems/venv/bin/hems-update status"))


def wait_status(port: int, key: Path, predicate, timeout_s: float = 900) -> dict:
    deadline = time.monotonic() + timeout_s
    while True:
        state = status(port, key)
        if predicate(state):
            return state
        if time.monotonic() > deadline:
            raise AssertionError(f"hems-update status never got there: {state}")
        time.sleep(5)


def install(port: int, key: Path, http_port: int, name: str) -> None:
    """Download the bundle onto the data partition and install it; the gateway reboots into the trial."""
    fetch = (
        'sudo -n /opt/hems/venv/bin/python -c "import urllib.request as u; '
        f"u.urlretrieve('http://10.0.2.2:{http_port}/{name}', '/var/lib/hems/{name}')\""
    )
    ssh(port, key, fetch, timeout_s=900)
    # the connection drops when it reboots: the exit status is not the install's
    ssh(
        port,
        key,
        f"sudo -n /opt/hems/venv/bin/hems-update install /var/lib/hems/{name} --reboot",
        timeout_s=1800,
        check=False,
    )


def test_a_bundle_moves_the_gateway_to_the_other_slot_and_a_broken_one_rolls_back(
    amd64_image, tmp_path, bundle_server, pytestconfig
):
    bundles, http_port = bundle_server
    keys = Path(os.environ.get("HEMS_UPDATE_KEY_DIR", PROJECT / "var" / "image-keys"))
    rootfs = amd64_image.with_name(amd64_image.name.replace(".img", ".rootfs.ext4"))
    slot_boot = amd64_image.with_name(amd64_image.name.replace(".img", ".slot-boot"))
    t0 = time.monotonic()
    make_bundle(bundles / "good.hemsu", "0.1.1", rootfs, slot_boot, keys / "hems-update.key")
    # a root that cannot boot: an empty file system (no init): the kernel panics and the board resets
    empty = tmp_path / "empty.ext4"
    subprocess.run(["mkfs.ext4", "-q", "-F", str(empty), "64M"], check=True)
    make_bundle(bundles / "broken.hemsu", "0.1.2", empty, slot_boot, keys / "hems-update.key")
    report(pytestconfig, f"two update bundles made in {time.monotonic() - t0:.0f} s")

    web_port, ssh_port = free_port(), free_port()
    emu = Emulator(amd64_image, "amd64", tmp_path / "gateway", forwards={web_port: 8443, ssh_port: 22})
    emu.prepare()
    key = tmp_path / "installer_key"
    subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", str(key)], check=True)
    slots.open_disk_boot(emu.disk).write("ssh-authorized-keys", key.with_suffix(".pub").read_bytes())
    try:
        emu.boot()
        emu.wait_for(BANNER_RUNNING, timeout_s=900)
        wait_ssh(ssh_port, key)
        assert status(ssh_port, key)["committed"] == "a"

        # the good bundle: written into slot b, trial boot, health check, commit
        t0 = time.monotonic()
        install(ssh_port, key, http_port, "good.hemsu")
        emu.wait_exit(timeout_s=1800)
        report(pytestconfig, f"download and install of the good bundle: {time.monotonic() - t0:.0f} s")
        emu.boot()
        choice = emu.loader_choice(timeout_s=300)
        assert (choice.slot, choice.trial) == ("b", True) and "hems.trial=1" in choice.cmdline.split(), choice
        emu.wait_for(BANNER_RUNNING, timeout_s=900)
        wait_ssh(ssh_port, key)
        state = wait_status(ssh_port, key, lambda s: s["committed"] == "b")
        report(pytestconfig, f"trial boot of slot b to its commit: {emu.elapsed_s():.0f} s")
        assert state["slots"]["b"]["version"] == "0.1.1", state
        assert "root=PARTLABEL=hems-root-b" in ssh(ssh_port, key, "cat /proc/cmdline").split()
        # committed: the boot loader's environment now names slot b (read inside: the guest has it mounted)
        env = slots.parse_env(ssh(ssh_port, key, "cat /boot/firmware/hems-boot.env").encode())
        assert (env["hems_slot"], env["hems_try"]) == ("b", ""), env

        # the broken bundle: written into slot a; its trial boot panics; the reset comes back on slot b
        install(ssh_port, key, http_port, "broken.hemsu")
        emu.wait_exit(timeout_s=1800)
        emu.boot()
        choice = emu.loader_choice(timeout_s=300)
        assert (choice.slot, choice.trial) == ("a", True), choice
        emu.wait_for(r"No init found|Kernel panic|not syncing", timeout_s=900)
        emu.wait_exit(timeout_s=300)  # panic=10: the board resets; GRUB spent the trial before starting a
        emu.boot()
        choice = emu.loader_choice(timeout_s=300)
        assert (choice.slot, choice.trial) == ("b", False) and "hems.trial=1" not in choice.cmdline.split()
        emu.wait_for(BANNER_RUNNING, timeout_s=900)
        wait_ssh(ssh_port, key)
        state = wait_status(ssh_port, key, lambda s: s["trying"] is None)
        assert state["committed"] == "b" and state["slots"]["b"]["version"] == "0.1.1", state
        assert state["slots"]["a"]["status"] == "bad", state
    finally:
        emu.stop()
