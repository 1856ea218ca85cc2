"""The Raspberry Pi (arm64) image: built under qemu-user emulation and booted on QEMU's arm64 virt board with
Debian's arm64 kernel from the image's boot partition. Slow (the build's base root takes ~15 min emulated, the
boot several minutes), so `make image-arm64` runs it (HEMS_IMAGE_ARM64=1), not `make test`.

Also the other half of the SSH switch: without ssh-authorized-keys on the boot partition, SSH stays off.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

HERE = Path(__file__).resolve().parent
sys.path[:0] = [str(HERE), str(HERE.parent)]  # the boot test's helpers and image/qemu.py

from qemu import Emulator  # noqa: E402
from test_image_boot import (  # noqa: E402
    BANNER_RUNNING,
    SSH_OPTIONS,
    Dashboard,
    build_image,
    free_port,
    report,
)

from firmware import slots  # noqa: E402

pytestmark = [
    pytest.mark.timeout(3600),
    pytest.mark.skipif(
        not os.environ.get("HEMS_IMAGE_ARM64"), reason="arm64 image: `make image-arm64` (HEMS_IMAGE_ARM64=1)"
    ),
]


@pytest.fixture(scope="module")
def arm64_image(pytestconfig) -> Path:
    given = os.environ.get("HEMS_BOOT_TEST_IMAGE_ARM64")
    return Path(given) if given else build_image("arm64", pytestconfig)


def test_pi_boot_partition(arm64_image):
    boot = slots.open_disk_boot(arm64_image)
    config = boot.read("config.txt").decode()
    for line in ("arm_64bit=1", "kernel=vmlinuz", "initramfs initrd.img followkernel", "os_prefix=slot-a/"):
        assert line in config.splitlines()
    # the Pi's boot firmware at the top, the device trees beside the slot's kernel
    for name in (
        "start4.elf",
        "fixup4.dat",
        "bootcode.bin",
        "slot-a/bcm2711-rpi-4-b.dtb",
        "slot-a/bcm2837-rpi-3-b.dtb",
    ):
        assert boot.exists(name), name
    sel = slots.boot_selection(boot, tryboot=False)
    assert sel.slot == "a" and "root=PARTLABEL=hems-root-a" in sel.cmdline.split()
    assert json.loads(boot.read("hems-slots.json"))["committed"] == "a"


def test_boots_on_the_arm64_virt_board_with_ssh_off(arm64_image, tmp_path, pytestconfig):
    web_port, ssh_port = free_port(), free_port()
    emu = Emulator(arm64_image, "arm64", tmp_path / "gateway", forwards={web_port: 8443, ssh_port: 22})
    try:
        emu.boot()
        emu.wait_for(r"data partition /dev/vda4: 256 MiB -> 1280 MiB", timeout_s=1800)
        emu.wait_for(BANNER_RUNNING, timeout_s=1800)
        report(pytestconfig, f"arm64 first boot to the dashboard banner: {emu.elapsed_s():.0f} s")
        fingerprint = emu.wait_for(r"Certificate SHA-256: ([0-9A-F:]{95})", timeout_s=60).group(1)
        web = Dashboard(web_port)
        assert web.fingerprint() == fingerprint
        status, text = web.request("GET", "/healthz")
        assert status == 200 and json.loads(text)["status"] == "ok", text
        status, text = web.request("GET", "/setup")
        assert status == 200 and "Set up your gateway" in text
        # no key file on the boot partition: nothing answers SSH
        out = subprocess.run(
            [*SSH_OPTIONS, "-p", str(ssh_port), "installer@127.0.0.1", "true"],
            capture_output=True,
            timeout=60,
        )
        assert out.returncode != 0
        assert "SSH on" not in emu.console()
    finally:
        emu.stop()
