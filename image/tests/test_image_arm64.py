"""The Raspberry Pi (arm64) image: built under qemu-user emulation and booted on QEMU's arm64 virt board through
U-Boot (the same U-Boot release the image carries for the Pi) running the image's own boot.scr, which starts
Debian's arm64 kernel from the slot hems-boot.env names. Slow (the build's base root takes ~15 min emulated, each
boot several minutes), so `make image-arm64` runs it (HEMS_IMAGE_ARM64=1), not `make test`.

Also a trial boot of the other slot end to end on arm64: U-Boot spends the trial and starts slot b with
hems.trial=1, the gateway's boot check, health check and commit run, and slot b is committed. And the other half
of the SSH switch: without ssh-authorized-keys on the boot partition, SSH stays off.
"""

from __future__ import annotations

import json
import os
import struct
import subprocess
import sys
from pathlib import Path

import pytest

HERE = Path(__file__).resolve().parent
sys.path[:0] = [str(HERE), str(HERE.parent)]  # the boot test's helpers and image/qemu.py

from qemu import Emulator  # noqa: E402
from test_bootloader import pi_addresses  # noqa: E402
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
    for line in ("arm_64bit=1", "kernel=u-boot.bin", "enable_uart=1"):
        assert line in config.splitlines()
    assert "os_prefix" not in config  # the slots are U-Boot's business, not the firmware's
    # the Pi's boot firmware, U-Boot and its script at the top; device trees at the top and in the slot
    for name in (
        "start4.elf",
        "fixup4.dat",
        "bootcode.bin",
        "u-boot.bin",
        "boot.scr",
        "bcm2711-rpi-4-b.dtb",
        "bcm2837-rpi-zero-2-w.dtb",
        "slot-a/vmlinuz",
        "slot-a/initrd.img",
        "slot-a/broadcom/bcm2711-rpi-4-b.dtb",
        "slot-a/broadcom/bcm2837-rpi-3-b.dtb",
    ):
        assert boot.exists(name), name
    assert boot.read("boot.scr")[:4] == bytes.fromhex("27051956")  # a U-Boot image (mkimage)
    env = slots.read_boot_env(boot)
    assert slots.next_boot(env) == ("a", False)
    cmdline = slots.parse_env(boot.read("slot-a/boot.env"))["hems_cmdline"].split()
    assert "root=PARTLABEL=hems-root-a" in cmdline
    assert not any(w.startswith("console=") for w in cmdline)  # the device tree's serial port: Pi and virt
    assert json.loads(boot.read("hems-slots.json"))["committed"] == "a"

    # the Pi's memory map with the real files: the kernel (booti's image_size, BSS included) ends before the
    # device tree and the initrd (test_bootloader checks that nothing is loaded into the kernel's room after it)
    pi = pi_addresses()
    kernel = boot.read("slot-a/vmlinuz")
    assert kernel[56:60] == b"ARM\x64"  # an uncompressed arm64 Image: booti starts it in place
    image_size = struct.unpack_from("<Q", kernel, 16)[0]
    assert pi["kernel_addr_r"] + image_size <= pi["fdt_addr_r"], (hex(image_size), pi)
    uboot = boot.read("u-boot.bin")
    assert b"fatwrite" in uboot and b"distro_bootcmd" in uboot  # finds boot.scr; can spend a trial on FAT


def copy_slot_a_to_b(disk: Path) -> None:
    """What an install of the same version would leave: slot b = slot a, its boot files, a trial armed."""
    parts = slots.slot_partitions(disk)
    a, b = parts["a"], parts["b"]
    # every block: slot b's old contents must not show through where slot a has zeros
    blocks = [f"skip={a.offset_bytes >> 20}", f"seek={b.offset_bytes >> 20}", f"count={a.size_bytes >> 20}"]
    subprocess.run(
        ["dd", f"if={disk}", f"of={disk}", "bs=1M", *blocks, "conv=notrunc", "status=none"], check=True
    )
    boot = slots.open_disk_boot(disk)
    for name in ("vmlinuz", "initrd.img"):
        with_tmp = disk.with_name(name)
        with_tmp.write_bytes(boot.read(f"slot-a/{name}"))
        boot.put(f"slot-b/{name}", with_tmp)
        with_tmp.unlink()
    cmdline = slots.parse_env(boot.read("slot-a/boot.env"))["hems_cmdline"]
    slots.write_slot_cmdline(boot, "b", cmdline)
    state = slots.read_state(boot)
    version = state["slots"]["a"]["version"]
    slots.write_state(boot, slots.begin_state(state, "b", version, "copy of slot a"))
    slots.write_boot_env(boot, "a", "b", 1)  # what `hems-update reboot` arms


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
        choice = emu.loader_choice(timeout_s=10)
        assert (choice.slot, choice.trial) == ("a", False), choice
        emu.stop()

        # a trial boot of slot b through U-Boot, then the gateway's own boot check, health check and commit
        copy_slot_a_to_b(emu.disk)
        emu.boot()
        choice = emu.loader_choice(timeout_s=300)
        assert (choice.slot, choice.trial) == ("b", True), choice
        assert {"root=PARTLABEL=hems-root-b", "hems.trial=1"} <= set(choice.cmdline.split())
        emu.wait_for(BANNER_RUNNING, timeout_s=1800)
        emu.wait_for(r"committed slot b \(version ", timeout_s=1200)  # hems-update commit, on the console
        report(pytestconfig, f"arm64 trial boot of slot b to its commit: {emu.elapsed_s():.0f} s")
        emu.stop()
        boot = slots.open_disk_boot(emu.disk)
        assert slots.next_boot(slots.read_boot_env(boot)) == ("b", False)
        state = slots.read_state(boot)
        assert state["committed"] == "b" and state["trying"] is None, state
        assert state["slots"]["b"]["status"] == "good", state
    finally:
        emu.stop()
