#!/usr/bin/env python3
"""Boot a gateway disk image in QEMU (software emulation) through its own boot loader.

amd64: UEFI firmware (OVMF) starts GRUB from the boot partition; arm64: U-Boot (u-boot-qemu's qemu_arm64 build,
the same U-Boot version the Pi image carries) runs the image's boot.scr. Either picks the A/B slot from
hems-boot.env (image/boot/, firmware/slots.py). The image itself is never written: the gateway gets a sparse copy.

    python3 image/qemu.py var/image/hems-0.1.0-amd64.img [--port 8443] [--ssh-port 2222] [--ssh-key KEY.pub]

boots it with the serial console on this terminal and the dashboard forwarded to https://127.0.0.1:8443/.
The boot tests (image/tests/) use the Emulator class.
"""

from __future__ import annotations

import argparse
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

HERE = Path(__file__).resolve().parent
for _path in (HERE.parent, HERE):  # run as a script from a checkout: the project and image/
    if str(_path) not in sys.path:
        sys.path.insert(0, str(_path))

import bootloader  # noqa: E402

from firmware import slots  # noqa: E402


class BootError(Exception):
    pass


@dataclass(frozen=True)
class LoaderChoice:
    """What the boot loader said it starts (its "hems-boot: starting slot ..." console line)."""

    slot: str
    trial: bool
    env: str
    cmdline: str


LOADER_LINE = re.compile(r"hems-boot: starting slot ([ab]) \(trial ([01]), env /?([^)]*)\)")
LOADER_ARG = re.compile(r"hems-boot: arg (\S+)")


def parse_loader_choice(console: str, complete: bool = False) -> LoaderChoice | None:
    """The first "starting slot" line of a boot and the command line printed after it, one argument a line.

    With ``complete``, None until a line other than an argument follows (the loader may still be printing)."""
    m = LOADER_LINE.search(console)
    if m is None:
        return None
    args = []
    ended = False
    for line in console[m.end() :].splitlines()[1:]:
        if not line.strip():
            continue  # "\r\n" line ends (GRUB starts its lines with "\r")
        a = LOADER_ARG.search(line)
        if a is None:
            ended = True
            break
        args.append(a.group(1))
    if complete and not ended:
        return None
    return LoaderChoice(m.group(1), m.group(2) == "1", m.group(3), " ".join(args))


class Emulator:
    """A gateway in QEMU: its own sparse copy of the disk image (larger than the image, so that first boot has
    room to grow the data partition), booted as often as asked, serial console captured to a file.

    Each ``boot()`` runs the board's firmware and the image's boot loader, which picks the slot itself;
    ``loader_choice()`` reads its decision from the console. QEMU runs with -no-reboot, so a reboot of the
    gateway ends the run and the next ``boot()`` is the next boot."""

    def __init__(
        self,
        image: Path,
        arch: str,
        workdir: Path,
        *,
        forwards: dict[int, int] | None = None,
        extra_disk_bytes: int = 1 << 30,
        memory_mib: int = 1024,
    ) -> None:
        self.image = Path(image)
        self.arch = arch
        self.workdir = Path(workdir)
        self.forwards = forwards or {}
        self.extra_disk_bytes = extra_disk_bytes
        self.memory_mib = memory_mib
        self.disk = self.workdir / "disk.img"
        self.efi_vars = self.workdir / "efi-vars.fd"
        self.proc: subprocess.Popen | None = None
        self.boots = 0
        self.console_path = self.workdir / "console-0.log"
        self.started_monotonic = 0.0

    def prepare(self) -> None:
        """The gateway's disk: a sparse copy of the image, grown as a larger SD card would be."""
        self.workdir.mkdir(parents=True, exist_ok=True)
        subprocess.run(
            ["cp", "--sparse=always", "--reflink=auto", str(self.image), str(self.disk)], check=True
        )
        with open(self.disk, "r+b") as f:
            f.truncate(self.image.stat().st_size + self.extra_disk_bytes)

    def command(self) -> list[str]:
        return qemu_command(
            self.arch,
            self.disk,
            self.console_path,
            self.workdir,
            memory_mib=self.memory_mib,
            forwards=self.forwards,
        )

    def boot(self) -> Emulator:
        if self.proc is not None and self.proc.poll() is None:
            raise BootError("the gateway is still running: stop() it or wait for its reboot first")
        if self.boots == 0 and not self.disk.exists():
            self.prepare()
        self.console_path = self.workdir / f"console-{self.boots}.log"
        cmd = self.command()
        self.console_path.write_text("")
        self.boots += 1
        self.started_monotonic = time.monotonic()
        self.proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
        return self

    def loader_choice(self, timeout_s: float = 120) -> LoaderChoice:
        """The slot the boot loader starts on this boot (waits for its console lines)."""
        return self.wait_until(
            lambda text: parse_loader_choice(text, complete=True), "the boot loader's choice", timeout_s
        )

    def console(self) -> str:
        return self.console_path.read_text(errors="replace")

    def elapsed_s(self) -> float:
        return time.monotonic() - self.started_monotonic

    def wait_for(self, pattern: str, timeout_s: float) -> re.Match:
        """Wait until the console shows ``pattern`` (a regex); fail early if QEMU exits."""
        rx = re.compile(pattern)
        return self.wait_until(rx.search, repr(pattern), timeout_s)

    def wait_until(self, found, what: str, timeout_s: float):
        """Wait until ``found(console text)`` is truthy and return it; fail early if QEMU exits."""
        deadline = time.monotonic() + timeout_s
        while True:
            m = found(self.console())
            if m:
                return m
            if self.proc is not None and self.proc.poll() is not None:
                out = self.proc.stdout.read() if self.proc.stdout else ""
                raise BootError(f"QEMU exited ({self.proc.returncode}) before {what}: {out}\n{self.tail()}")
            if time.monotonic() > deadline:
                raise BootError(f"no {what} on the console after {timeout_s:.0f} s\n{self.tail()}")
            time.sleep(0.5)

    def wait_exit(self, timeout_s: float) -> int:
        """Wait for the gateway to power off or reboot (QEMU exits: -no-reboot)."""
        assert self.proc is not None
        try:
            return self.proc.wait(timeout=timeout_s)
        except subprocess.TimeoutExpired:
            raise BootError(
                f"the gateway did not reboot or power off in {timeout_s:.0f} s\n{self.tail()}"
            ) from None

    def tail(self, lines: int = 60) -> str:
        return "--- console (last lines) ---\n" + "\n".join(self.console().splitlines()[-lines:])

    def stop(self) -> None:
        if self.proc is None or self.proc.poll() is not None:
            return
        self.proc.send_signal(signal.SIGTERM)
        try:
            self.proc.wait(timeout=20)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()


def qemu_command(
    arch: str,
    disk: Path,
    console: Path,
    workdir: Path,
    *,
    memory_mib: int = 1024,
    forwards: dict[int, int] | None = None,
    network: bool = True,
) -> list[str]:
    """qemu-system for the arch's board and firmware, the disk as virtio, serial console into a file."""
    if arch == "amd64":
        for f in (bootloader.OVMF_CODE, bootloader.OVMF_VARS):
            if not f.exists():
                raise BootError(f"{f} is missing: apt-get install ovmf")
        efi_vars = Path(workdir) / "efi-vars.fd"
        if not efi_vars.exists():  # the board's own NVRAM, kept across its reboots
            shutil.copy(bootloader.OVMF_VARS, efi_vars)
        board = [
            *("qemu-system-x86_64", "-machine", "q35", "-cpu", "max"),
            *("-drive", f"if=pflash,format=raw,unit=0,readonly=on,file={bootloader.OVMF_CODE}"),
            *("-drive", f"if=pflash,format=raw,unit=1,file={efi_vars}"),
            *("-device", "i6300esb"),  # a hardware watchdog, as PCs have: systemd feeds it
        ]
    else:
        if not bootloader.QEMU_UBOOT_ARM64.exists():
            raise BootError(f"{bootloader.QEMU_UBOOT_ARM64} is missing: apt-get install u-boot-qemu")
        board = [
            *("qemu-system-aarch64", "-machine", "virt", "-cpu", "max"),
            *("-bios", str(bootloader.QEMU_UBOOT_ARM64)),
        ]
    fwd = "".join(f",hostfwd=tcp:127.0.0.1:{h}-:{g}" for h, g in (forwards or {}).items())
    net = (
        ["-netdev", f"user,id=net0{fwd}", "-device", "virtio-net-pci,netdev=net0"]
        if network
        else ["-nic", "none"]
    )
    return [
        *board,
        *("-accel", "tcg", "-smp", "2", "-m", str(memory_mib)),
        *("-display", "none", "-monitor", "none", "-serial", f"file:{console}"),
        "-no-reboot",
        *("-drive", f"file={disk},format=raw,if=virtio,cache=unsafe"),
        *net,
        *("-device", "virtio-rng-pci"),
    ]


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("disk", type=Path)
    p.add_argument("--arch", choices=("amd64", "arm64"), help="default: from the image's name")
    p.add_argument("--port", type=int, default=8443, help="host port for the dashboard (https)")
    p.add_argument("--ssh-port", type=int, default=2222, help="host port for SSH (on if a key is set)")
    p.add_argument(
        "--ssh-key", type=Path, metavar="PUB", help="put this public key on the boot partition (SSH on)"
    )
    args = p.parse_args(argv)
    arch = args.arch or ("arm64" if "arm64" in args.disk.name else "amd64")
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(0))  # stop QEMU too (the finally below)
    with tempfile.TemporaryDirectory(prefix="hems-qemu-") as tmp:
        emu = Emulator(args.disk, arch, Path(tmp), forwards={args.port: 8443, args.ssh_port: 22})
        emu.prepare()
        if args.ssh_key:
            slots.open_disk_boot(emu.disk).write("ssh-authorized-keys", args.ssh_key.read_bytes())
            print(f"ssh: ssh -p {args.ssh_port} installer@127.0.0.1")
        print(f"dashboard: https://127.0.0.1:{args.port}/  (Ctrl-C stops the emulator; a reboot boots again)")
        try:
            while True:
                emu.boot()
                print(f"booting {args.disk} ({arch}); its boot loader picks the slot")
                tail = subprocess.Popen(["tail", "-F", "-n", "+1", str(emu.console_path)])
                try:
                    emu.proc.wait()
                finally:
                    tail.terminate()
        except KeyboardInterrupt:
            pass
        finally:
            emu.stop()
    return 0


if __name__ == "__main__":
    if shutil.which("qemu-system-x86_64") is None:
        sys.exit("QEMU is needed: make image-deps")
    sys.exit(main())
