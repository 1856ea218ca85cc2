#!/usr/bin/env python3
"""Boot a gateway disk image in QEMU (software emulation), the way the gateway's boot firmware would.

The kernel, initrd and command line come from the image's boot partition, chosen as the Pi firmware chooses
them (config.txt's os_prefix, or tryboot.txt on a trial boot of an update: firmware.slots), and QEMU boots
them with -kernel/-initrd/-append. The image itself is never written: the gateway gets a sparse copy.

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
from pathlib import Path

PROJECT = Path(__file__).resolve().parent.parent
if str(PROJECT) not in sys.path:  # run as a script from a checkout
    sys.path.insert(0, str(PROJECT))

from firmware import slots  # noqa: E402  (the A/B boot selection the Pi firmware makes)


class BootError(Exception):
    pass


class Emulator:
    """A gateway in QEMU: its own sparse copy of the disk image (larger than the image, so that first boot has
    room to grow the data partition), booted as often as asked, serial console captured to a file.

    ``boot()`` picks the kernel as the Pi firmware would from the copy's boot partition: the one-shot tryboot
    flag that ``hems-update reboot`` leaves is taken (and cleared) here, as the firmware clears it. QEMU runs
    with -no-reboot, so a reboot of the gateway ends the run and the next ``boot()`` is the next boot."""

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
        self.proc: subprocess.Popen | None = None
        self.boots = 0
        self.console_path = self.workdir / "console-0.log"
        self.selection: slots.BootSelection | None = None
        self.started_monotonic = 0.0

    def prepare(self) -> None:
        """The gateway's disk: a sparse copy of the image, grown as a larger SD card would be."""
        self.workdir.mkdir(parents=True, exist_ok=True)
        subprocess.run(
            ["cp", "--sparse=always", "--reflink=auto", str(self.image), str(self.disk)], check=True
        )
        with open(self.disk, "r+b") as f:
            f.truncate(self.image.stat().st_size + self.extra_disk_bytes)

    def command(self, tryboot: bool) -> list[str]:
        sel = slots.extract_boot_files(self.disk, tryboot, self.workdir / f"boot-{self.boots}")
        self.selection = sel
        fwd = "".join(f",hostfwd=tcp:127.0.0.1:{h}-:{g}" for h, g in self.forwards.items())
        cmdline = sel.cmdline
        if self.arch == "amd64":
            qemu = ["qemu-system-x86_64", "-machine", "q35", "-cpu", "max"]
        else:
            # the Pi's serial console does not exist on QEMU's virt board: its serial port is ttyAMA0
            qemu = ["qemu-system-aarch64", "-machine", "virt", "-cpu", "max"]
            cmdline = re.sub(r"console=ttyS\d+(,\S*)?", "", cmdline).strip() + " console=ttyAMA0"
        return [
            *qemu,
            *("-accel", "tcg", "-smp", "2", "-m", str(self.memory_mib)),
            *("-display", "none", "-monitor", "none", "-serial", f"file:{self.console_path}"),
            "-no-reboot",
            *("-kernel", sel.kernel, "-append", cmdline),
            *(("-initrd", sel.initrd) if sel.initrd else ()),
            *("-drive", f"file={self.disk},format=raw,if=virtio,cache=unsafe"),
            *("-netdev", f"user,id=net0{fwd}", "-device", "virtio-net-pci,netdev=net0"),
            *("-device", "virtio-rng-pci"),
        ]

    def boot(self) -> Emulator:
        if self.proc is not None and self.proc.poll() is None:
            raise BootError("the gateway is still running: stop() it or wait for its reboot first")
        if self.boots == 0 and not self.disk.exists():
            self.prepare()
        tryboot = slots.take_tryboot_flag(slots.open_disk_boot(self.disk))
        self.console_path = self.workdir / f"console-{self.boots}.log"
        cmd = self.command(tryboot)
        self.console_path.write_text("")
        self.boots += 1
        self.started_monotonic = time.monotonic()
        self.proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
        return self

    def console(self) -> str:
        return self.console_path.read_text(errors="replace")

    def elapsed_s(self) -> float:
        return time.monotonic() - self.started_monotonic

    def wait_for(self, pattern: str, timeout_s: float) -> re.Match:
        """Wait until the console shows ``pattern`` (a regex); fail early if QEMU exits."""
        rx = re.compile(pattern)
        deadline = time.monotonic() + timeout_s
        while True:
            m = rx.search(self.console())
            if m:
                return m
            if self.proc is not None and self.proc.poll() is not None:
                out = self.proc.stdout.read() if self.proc.stdout else ""
                raise BootError(
                    f"QEMU exited ({self.proc.returncode}) before {pattern!r}: {out}\n{self.tail()}"
                )
            if time.monotonic() > deadline:
                raise BootError(f"no {pattern!r} on the console after {timeout_s:.0f} s\n{self.tail()}")
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
                print(f"booting {args.disk} ({arch}) from slot {emu.selection.slot}: {emu.selection.cmdline}")
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
