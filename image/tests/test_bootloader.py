"""The image's real boot loaders pick the A/B slot from hems-boot.env: U-Boot with the image's boot.scr on QEMU's
arm64 virt board, and GRUB (standalone EFI binary with the image's grub.cfg) under OVMF on q35.

Each boot runs the real firmware and loader against a small GPT disk image with a FAT boot partition laid out as
the gateway's (image/boot/, firmware/slots.py). The "kernels" are test stand-ins: on arm64 a 100-byte arm64 Image
that prints which slot's file it is on the virt board's UART and powers off through PSCI (so U-Boot's `booti`
really starts it); on amd64 a file GRUB cannot start, so GRUB's own fallback path runs after its decision (the
amd64 image boot test starts a real kernel through the same GRUB). The loader's decision is read from its console
line and from the environment files it leaves behind.
"""

from __future__ import annotations

import os
import re
import shutil
import struct
import subprocess
import sys
import time
from pathlib import Path

import pytest

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent))
import bootloader  # noqa: E402
from qemu import LOADER_LINE, parse_loader_choice, qemu_command  # noqa: E402

from firmware import slots  # noqa: E402

CMDLINE = "console=ttyS0,115200 ro rootwait panic=10"
ARM64_UART = 0x09000000  # PL011 of QEMU's virt board
PSCI_SYSTEM_OFF = 0x84000008


def arm64_test_kernel(slot: str) -> bytes:
    """An arm64 Linux Image (header per the kernel's booting.rst) whose code writes a line and powers off."""
    code = [0xD2A00000 | ((ARM64_UART >> 16) << 5) | 1]  # movz x1, #0x0900, lsl #16
    for ch in f"hems-test-kernel slot-{slot}\n".encode():
        code += [0x52800000 | (ch << 5) | 2, 0x39000022]  # movz w2, #ch; strb w2, [x1]
    code += [
        0xD2800000 | ((PSCI_SYSTEM_OFF & 0xFFFF) << 5),  # movz x0, #low
        0xF2A00000 | ((PSCI_SYSTEM_OFF >> 16) << 5),  # movk x0, #high, lsl #16
        0xD4000002,  # hvc #0 (the virt board's PSCI conduit without EL2)
        0x14000000,  # b .
    ]
    body = b"".join(struct.pack("<I", c) for c in code)
    image_size = 4096
    # b +64 (past the header), text_offset 0, image_size, flags: LE, 4K pages, anywhere in RAM; "ARM\x64"
    header = struct.pack("<IIQQQQQQII", 0x14000010, 0, 0, image_size, 0xA, 0, 0, 0, 0x644D5241, 0)
    return (header + body).ljust(image_size, b"\0")


LOADERS = {
    "uboot": {
        "arch": "arm64",
        "tools": ("qemu-system-aarch64", "mkimage", "mcopy", "mkfs.vfat", "sfdisk"),
        "files": (bootloader.QEMU_UBOOT_ARM64,),
        "packages": "qemu-system-arm u-boot-qemu u-boot-tools",
    },
    "grub": {
        "arch": "amd64",
        "tools": ("qemu-system-x86_64", "grub-mkstandalone", "mcopy", "mkfs.vfat", "sfdisk"),
        "files": (bootloader.OVMF_CODE, bootloader.OVMF_VARS, Path("/usr/lib/grub/x86_64-efi")),
        "packages": "qemu-system-x86 ovmf grub-efi-amd64-bin",
    },
}


class Board:
    """One disk, booted as often as asked; each run ends when the stand-in kernel powers off (arm64) or once the
    loader has made its decision and said what followed (amd64)."""

    def __init__(self, loader: str, workdir: Path) -> None:
        self.loader = loader
        self.arch = LOADERS[loader]["arch"]
        self.workdir = workdir
        self.disk = workdir / "disk.img"
        self.runs = 0
        self.console = ""

    def make_disk(self) -> None:
        files = self.workdir / "boot"
        files.mkdir()
        if self.loader == "uboot":
            bootloader.build_uboot_script(files)
        else:
            bootloader.build_grub_efi(files)
        for slot in slots.SLOTS:
            (files / f"slot-{slot}").mkdir()
            kernel = arm64_test_kernel(slot) if self.arch == "arm64" else b"not a kernel " * 100
            (files / f"slot-{slot}" / "vmlinuz").write_bytes(kernel)
        vfat = self.workdir / "boot.vfat"
        subprocess.run(
            ["mkfs.vfat", "-F", "32", "-n", "HEMS-BOOT", "-C", str(vfat), str(64 * 1024)], check=True
        )
        subprocess.run(["mcopy", "-s", "-i", str(vfat), *map(str, files.iterdir()), "::/"], check=True)
        with open(self.disk, "wb") as f:
            f.truncate(70 << 20)
        table = (
            "label: gpt\n"
            "start=1MiB, size=64MiB, type=C12A7328-F81F-11D2-BA4B-00A0C93EC93B, name=hems-boot\n"
            "size=2MiB, type=0FC63DAF-8483-4772-8E79-3D69D8477DE4, name=hems-root-a\n"
            "size=2MiB, type=0FC63DAF-8483-4772-8E79-3D69D8477DE4, name=hems-root-b\n"
        )
        subprocess.run(["sfdisk", "-q", str(self.disk)], input=table, text=True, check=True)
        subprocess.run(
            ["dd", f"if={vfat}", f"of={self.disk}", "bs=1M", "seek=1", "conv=notrunc", "status=none"],
            check=True,
        )
        boot = self.boot_files()
        for slot in slots.SLOTS:
            slots.write_slot_cmdline(boot, slot, CMDLINE)
        slots.write_boot_env(boot, "a")

    def boot_files(self) -> slots.ImageBoot:
        return slots.open_disk_boot(self.disk)

    def run(self, timeout_s: float = 90) -> tuple[str, bool, str]:
        """Boot once: (slot, trial, kernel command line) the loader started."""
        console = self.workdir / f"console-{self.runs}.log"
        console.write_text("")
        self.runs += 1
        cmd = qemu_command(self.arch, self.disk, console, self.workdir, memory_mib=512, network=False)
        proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
        deadline = time.monotonic() + timeout_s
        try:
            while True:
                self.console = console.read_text(errors="replace")
                choice = LOADER_LINE.search(self.console)
                done = proc.poll() is not None
                if self.arch == "arm64" and done:
                    break  # the stand-in kernel powered the board off
                if self.arch == "amd64" and choice and "did not start" in self.console[choice.end() :]:
                    break  # GRUB refused the stand-in kernel after its decision: that is all this test reads
                if done:
                    pytest.fail(f"QEMU exited before the loader chose a slot:\n{self.console[-3000:]}")
                if time.monotonic() > deadline:
                    pytest.fail(f"no decision from the loader in {timeout_s:.0f} s:\n{self.console[-3000:]}")
                time.sleep(0.2)
        finally:
            if proc.poll() is None:
                proc.terminate()
                proc.wait(timeout=20)
        choice = parse_loader_choice(self.console)
        assert choice, self.console[-3000:]
        slot, trial, cmdline = choice.slot, choice.trial, choice.cmdline
        if self.arch == "arm64":
            # the kernel file of that slot really ran
            assert f"hems-test-kernel slot-{slot}" in self.console, self.console[-3000:]
        return slot, trial, cmdline

    def env(self, name: str = slots.BOOT_ENV) -> dict[str, str]:
        raw = self.boot_files().read(name)
        assert raw is not None, f"{name} is gone"
        return slots.parse_env(raw)


@pytest.fixture(params=sorted(LOADERS))
def board(request, tmp_path) -> Board:
    spec = LOADERS[request.param]
    missing = [t for t in spec["tools"] if shutil.which(t) is None] + [
        str(f) for f in spec["files"] if not Path(f).exists()
    ]
    if missing:
        why = f"needs {', '.join(missing)} (apt-get install {spec['packages']}; make test installs them)"
        if os.environ.get("CI"):
            pytest.fail(
                f"CI runs `make test`, which installs them: {why}"
            )  # a skip would hide a lost install
        pytest.skip(why)
    b = Board(request.param, tmp_path)
    b.make_disk()
    return b


def test_the_loader_boots_the_committed_slot_and_tries_a_new_one_once(board: Board):
    slot, trial, cmdline = board.run()
    assert (slot, trial) == ("a", False)
    assert cmdline.split() == [*CMDLINE.split(), "root=PARTLABEL=hems-root-a"]  # slot-a/boot.env
    assert board.env()["hems_slot"] == "a"

    # an installed update, armed by `hems-update reboot`: one trial boot of b, spent before b starts
    slots.write_boot_env(board.boot_files(), "a", "b", 1)
    slot, trial, cmdline = board.run()
    assert (slot, trial) == ("b", True)
    assert "root=PARTLABEL=hems-root-b" in cmdline.split() and "hems.trial=1" in cmdline.split()
    for name in (slots.BOOT_ENV, slots.BOOT_ENV_BACKUP):
        env = board.env(name)
        assert (env["hems_slot"], env.get("hems_try"), env["hems_try_left"]) == ("a", "b", "0"), name
    assert slots.next_boot(slots.read_boot_env(board.boot_files())) == ("a", False)

    # b never committed (it crashed, hung, or failed its health check): the next boot is a again
    slot, trial, _ = board.run()
    assert (slot, trial) == ("a", False)

    # committed from b (what `hems-update commit` writes): b from now on
    slots.write_boot_env(board.boot_files(), "b")
    slot, trial, cmdline = board.run()
    assert (slot, trial) == ("b", False)
    assert "hems.trial=1" not in cmdline.split()


def test_a_trial_slot_without_a_kernel_falls_back_in_the_same_boot(board: Board):
    board.boot_files().delete("slot-b/vmlinuz")
    slots.write_boot_env(board.boot_files(), "a", "b", 1)
    slot, trial, cmdline = board.run()
    assert "slot b has no kernel" in board.console
    assert (slot, trial) == ("a", False)
    assert "root=PARTLABEL=hems-root-a" in cmdline.split()
    assert board.env()["hems_try_left"] == "0"  # the trial is spent: the next boot will not try b again


def test_a_damaged_environment_uses_its_backup_and_neither_means_slot_a(board: Board):
    boot = board.boot_files()
    slots.write_boot_env(boot, "b", "a", 1)
    boot.write(slots.BOOT_ENV, b"\x00garbage from a cut write" * 10)
    slot, trial, _ = board.run()
    assert (slot, trial) == ("a", True)  # the backup's trial
    env = slots.read_boot_env(board.boot_files())
    assert (env.slot, env.try_slot, env.try_left) == ("b", "a", 0)
    slot, trial, _ = board.run()
    assert (slot, trial) == ("b", False)

    boot.delete(slots.BOOT_ENV)
    boot.delete(slots.BOOT_ENV_BACKUP)
    slot, trial, _ = board.run()
    assert "no usable hems-boot.env" in board.console
    assert (slot, trial) == ("a", False)
    assert slots.next_boot(slots.read_boot_env(board.boot_files())) == ("a", False)


def pi_addresses() -> dict[str, int]:
    """The load addresses boot.scr sets on the Raspberry Pi (its `if test "${board}" = rpi` block)."""
    script = bootloader.UBOOT_SCRIPT.read_text()
    block = re.search(r'if test "\$\{board\}" = rpi; then\n(.*?)\nfi\n', script, re.S)
    assert block, "u-boot.cmd has no rpi address block"
    return {m[1]: int(m[2], 16) for m in re.finditer(r"setenv (\w+) (0x[0-9a-fA-F]+)", block.group(1))}


def test_small_files_are_loaded_before_the_kernel_that_may_cover_their_address():
    # On the Pi, U-Boot's ${loadaddr} (16 MiB) lies inside the room the kernel gets (2-64 MiB): a file loaded
    # there after the kernel would overwrite the kernel (QEMU's virt board, whose loadaddr sits below its
    # kernel_addr_r, cannot show this). Every ${loadaddr} load in hems_start must come before the kernel's.
    script = bootloader.UBOOT_SCRIPT.read_text()
    start = re.search(r"^setenv hems_start '(.*)'$", script, re.M)
    assert start, "u-boot.cmd defines no hems_start"
    body = start.group(1)
    kernel_load = body.index("${kernel_addr_r} slot-${s}/vmlinuz")
    small_loads = [m.start() for m in re.finditer(r"load \S+ \S+ \$\{loadaddr\}", body)]
    assert small_loads and max(small_loads) < kernel_load
    assert "${loadaddr}" not in body[kernel_load:]
    # and the whole script reaches `run hems_start` only after its own ${loadaddr} work
    assert script.rindex("${loadaddr}", 0, script.index("run hems_start")) < script.index("run hems_start")

    pi = pi_addresses()
    mib = 1 << 20
    assert pi["kernel_addr_r"] % (2 * mib) == 0  # booti starts an arm64 Image in place only 2 MiB aligned
    assert pi["fdt_addr_r"] - pi["kernel_addr_r"] >= 48 * mib  # Debian's arm64 kernel needs ~33 MB
    assert pi["ramdisk_addr_r"] - pi["fdt_addr_r"] >= mib // 2  # the device trees are ~60 KB
