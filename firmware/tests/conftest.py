"""Fixtures: a real GPT gateway disk image (sfdisk, mkfs.vfat, mkfs.ext4 -d, dd), signing keys, bundles,
a small real HTTP server standing in for the gateway's /healthz and dashboard, and :func:`loader_boot`,
the boot loaders' decision (image/boot/'s U-Boot and GRUB scripts) played out on a boot partition."""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import subprocess
import sys
import threading
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest

from firmware import bundle, slots

MIB = 1 << 20
BOOT_MIB, SLOT_MIB, DATA_MIB = 16, 8, 4
TOOLS = {
    "sfdisk": "fdisk",
    "mkfs.vfat": "dosfstools",
    "mcopy": "mtools",
    "mkfs.ext4": "e2fsprogs",
    "debugfs": "e2fsprogs",
}
# the Raspberry Pi firmware's config.txt only starts U-Boot now; no update step may touch it
CONFIG_TXT = "# HEMS gateway: the Pi firmware starts U-Boot\narm_64bit=1\nkernel=u-boot.bin\nenable_uart=1\n"
CMDLINE = "console=ttyS0,115200 root=PARTLABEL=hems-root-a rootwait ro quiet"
HEMS_UPDATE = [sys.executable, "-m", "firmware.cli"]


def _tool(name: str) -> str:
    exe = shutil.which(name) or next(
        (p for p in (f"/usr/sbin/{name}", f"/sbin/{name}") if Path(p).exists()), None
    )
    if exe is None:
        pytest.fail(f"{name} is not installed: run `make test`, or `sudo apt-get install {TOOLS[name]}`")
    return exe


def run(cmd: list[str], env: dict | None = None, **kw) -> subprocess.CompletedProcess:
    env = {**os.environ, "MTOOLS_SKIP_CHECK": "1", **(env or {})}
    return subprocess.run(cmd, capture_output=True, text=True, env=env, check=False, timeout=120, **kw)


def hems_update(*args: str, env: dict | None = None) -> subprocess.CompletedProcess:
    """The real CLI in a subprocess (exit codes and messages as a person sees them)."""
    return run([*HEMS_UPDATE, *map(str, args)], env=env, cwd=Path(__file__).resolve().parents[2])


def sha256_file(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        while chunk := f.read(MIB):
            h.update(chunk)
    return h.hexdigest()


def read_region(path: Path, offset: int, size: int) -> bytes:
    with open(path, "rb") as f:
        f.seek(offset)
        return f.read(size)


def mtools_read(disk: Path, offset: int, name: str) -> bytes | None:
    """Read a file of the FAT partition with mtools directly (independent of firmware.slots)."""
    out = Path(str(disk) + ".mread")
    proc = run([_tool("mcopy"), "-n", "-i", f"{disk}@@{offset}", f"::/{name}", str(out)])
    if proc.returncode != 0:
        return None
    data = out.read_bytes()
    out.unlink()
    return data


def make_rootfs(tmp: Path, version: str, size_mib: int = 6, extra: bytes = b"") -> Path:
    """A real ext4 root image (mkfs.ext4 -d) holding /etc/hems-version."""
    root = tmp / f"root-{version}"
    (root / "etc").mkdir(parents=True, exist_ok=True)
    (root / "etc" / "hems-version").write_text(version + "\n")
    (root / "usr" / "lib").mkdir(parents=True, exist_ok=True)
    (root / "usr" / "lib" / "payload.bin").write_bytes(extra or os.urandom(256 * 1024))
    image = tmp / f"root-{version}.ext4"
    proc = run(
        [_tool("mkfs.ext4"), "-q", "-F", "-L", "hems-root", "-d", str(root), str(image), f"{size_mib}M"]
    )
    assert proc.returncode == 0, proc.stderr
    return image


def make_boot_dir(tmp: Path, version: str) -> Path:
    d = tmp / f"boot-{version}"
    (d / "overlays").mkdir(parents=True, exist_ok=True)
    (d / "vmlinuz").write_bytes(b"KERNEL " + version.encode() + os.urandom(64 * 1024))
    (d / "initrd.img").write_bytes(b"INITRD " + version.encode() + os.urandom(32 * 1024))
    (d / "bcm2711-rpi-4-b.dtb").write_bytes(b"DTB " + version.encode())
    (d / "overlays" / "vc4-kms-v3d.dtbo").write_bytes(b"OVERLAY " + version.encode())
    (d / "cmdline.txt").write_text(CMDLINE + "\n")
    return d


@dataclass(frozen=True)
class LoaderBoot:
    slot: str
    trial: bool
    kernel: bytes
    cmdline: str


def _loader_vars(data: bytes | None) -> dict[str, str]:
    """What `load_env` / `env import -t` take from a file: name=value lines, '#' lines and NULs skipped."""
    out: dict[str, str] = {}
    for line in (data or b"").replace(b"\0", b"\n").decode(errors="replace").splitlines():
        if line and not line.startswith("#") and "=" in line:
            name, value = line.split("=", 1)
            out[name] = value
    return out


def loader_boot(boot: slots.BootFiles) -> LoaderBoot:
    """One run of the boot loader on this boot partition, written from image/boot/'s GRUB and U-Boot scripts
    (not from firmware.slots, so that the tests can hold slots.next_boot against it).

    The first of hems-boot.env, hems-boot.env.bak whose hems_slot is a or b is used (none: slot a). A trial
    (hems_try a or b, hems_try_left exactly "1") is spent first: hems_try_left=0 written to the backup, then
    the primary; then that slot starts with hems.trial=1. A slot without a kernel is skipped for the other one,
    without the trial. The command line is the slot's boot.env hems_cmdline (or the scripts' default).
    Both file forms are read, as U-Boot's `env import -t` does (GRUB's load_env also wants the block's
    signature line, which every copy written for GRUB has).
    """
    env: dict[str, str] = {}
    for name in (slots.BOOT_ENV, slots.BOOT_ENV_BACKUP):
        env = _loader_vars(boot.read(name))
        if env.get("hems_slot") in ("a", "b"):
            break
    else:
        env = {"hems_slot": "a"}
    slot, trial = env["hems_slot"], False
    if env.get("hems_try") in ("a", "b") and env.get("hems_try_left") == "1":
        block = slots.format_env(
            {"hems_slot": env["hems_slot"], "hems_try": env["hems_try"], "hems_try_left": "0"}
        )
        boot.write(slots.BOOT_ENV_BACKUP, block)
        boot.write(slots.BOOT_ENV, block)
        slot, trial = env["hems_try"], True
    for candidate in (slot, "b" if slot == "a" else "a"):
        kernel = boot.read(f"slot-{candidate}/vmlinuz")
        if kernel is None:
            trial = False  # the trial slot's kernel did not load: the loader starts the other slot
            continue
        cmdline = _loader_vars(boot.read(f"slot-{candidate}/boot.env")).get("hems_cmdline")
        cmdline = cmdline or f"root=PARTLABEL=hems-root-{candidate} ro rootwait panic=10"
        if trial:
            cmdline += " hems.trial=1"
        return LoaderBoot(candidate, trial, kernel, cmdline)
    raise AssertionError("neither slot has a kernel: the loader would stop")


@dataclass
class Disk:
    path: Path
    parts: dict[str, dict]  # from sfdisk --json: label -> {"offset", "size"}

    def offset(self, label: str) -> int:
        return self.parts[label]["offset"]

    def size(self, label: str) -> int:
        return self.parts[label]["size"]

    def slot_bytes(self, slot: str, n: int | None = None) -> bytes:
        label = f"hems-root-{slot}"
        return read_region(self.path, self.offset(label), n or self.size(label))

    def slot_sha(self, slot: str) -> str:
        return hashlib.sha256(self.slot_bytes(slot)).hexdigest()

    def boot_file(self, name: str) -> bytes | None:
        return mtools_read(self.path, self.offset("hems-boot"), name)

    def boot(self) -> slots.ImageBoot:
        return slots.ImageBoot(self.path, self.offset("hems-boot"))

    def sha(self) -> str:
        return sha256_file(self.path)


def _build_disk(tmp: Path) -> Disk:
    for t in TOOLS:
        _tool(t)
    disk = tmp / "gateway.img"
    total_mib = 1 + BOOT_MIB + 2 * SLOT_MIB + DATA_MIB + 1
    with open(disk, "wb") as f:
        f.truncate(total_mib * MIB)
    table = (
        "label: gpt\nunit: sectors\n"
        f'size={BOOT_MIB}MiB, type=C12A7328-F81F-11D2-BA4B-00A0C93EC93B, name="hems-boot"\n'
        f'size={SLOT_MIB}MiB, type=0FC63DAF-8483-4772-8E79-3D69D8477DE4, name="hems-root-a"\n'
        f'size={SLOT_MIB}MiB, type=0FC63DAF-8483-4772-8E79-3D69D8477DE4, name="hems-root-b"\n'
        f'size={DATA_MIB}MiB, type=0FC63DAF-8483-4772-8E79-3D69D8477DE4, name="hems-data"\n'
    )
    proc = run([_tool("sfdisk"), "-q", str(disk)], input=table)
    assert proc.returncode == 0, proc.stderr
    info = json.loads(run([_tool("sfdisk"), "--json", str(disk)]).stdout)["partitiontable"]
    sector = info.get("sectorsize", 512)
    parts = {
        p["name"]: {"offset": p["start"] * sector, "size": p["size"] * sector, "number": int(p["node"][-1])}
        for p in info["partitions"]
    }
    # boot partition: the Pi firmware and U-Boot (untouched by updates), slot-a/ with kernel, initrd, dtb,
    # overlays and cmdline.txt; then `hems-update init` as image/build.sh runs it: hems-slots.json,
    # hems-boot.env (+ .bak) and slot-a/boot.env
    staging = tmp / "bootfs"
    (staging / "slot-a" / "overlays").mkdir(parents=True)
    (staging / "config.txt").write_text(CONFIG_TXT)
    (staging / "start4.elf").write_bytes(b"PI FIRMWARE")
    (staging / "u-boot.bin").write_bytes(b"U-BOOT")
    src = make_boot_dir(tmp, "0.1.0")
    for f in src.rglob("*"):
        if f.is_file():
            shutil.copy(f, staging / "slot-a" / f.relative_to(src))
    r = hems_update("init", "--boot-dir", staging, "--version", "0.1.0", "--arch", "amd64", "--slot", "a")
    assert r.returncode == 0, r.stderr
    fat = tmp / "boot.vfat"
    proc = run([_tool("mkfs.vfat"), "-n", "HEMS-BOOT", "-C", str(fat), str(BOOT_MIB * 1024)])
    assert proc.returncode == 0, proc.stderr
    names = [str(p) for p in staging.iterdir()]
    proc = run([_tool("mcopy"), "-s", "-i", str(fat), *names, "::/"])
    assert proc.returncode == 0, proc.stderr
    root_a = make_rootfs(tmp, "0.1.0", SLOT_MIB)
    data = tmp / "data.ext4"
    (tmp / "datadir").mkdir()
    assert (
        run([_tool("mkfs.ext4"), "-q", "-d", str(tmp / "datadir"), str(data), f"{DATA_MIB}M"]).returncode == 0
    )
    for image, label in ((fat, "hems-boot"), (root_a, "hems-root-a"), (data, "hems-data")):
        proc = run(
            [
                "dd",
                f"if={image}",
                f"of={disk}",
                "bs=512",
                f"seek={parts[label]['offset'] // 512}",
                "conv=notrunc,sparse",
            ]
        )
        assert proc.returncode == 0, proc.stderr
    # slot b: something recognisable that an install must overwrite, and nothing else may touch
    with open(disk, "r+b") as f:
        f.seek(parts["hems-root-b"]["offset"])
        f.write(b"OLD-B" * (SLOT_MIB * MIB // 5))
    return Disk(disk, parts)


@pytest.fixture(scope="session")
def disk_template(tmp_path_factory) -> Disk:
    return _build_disk(tmp_path_factory.mktemp("disk"))


@pytest.fixture
def disk(disk_template: Disk, tmp_path: Path) -> Disk:
    """A fresh copy of the gateway disk image: slot a committed with 0.1.0 (amd64), slot b filled with old bytes."""
    path = tmp_path / "gateway.img"
    shutil.copyfile(disk_template.path, path)
    return Disk(path, disk_template.parts)


@dataclass
class Keys:
    key: Path
    pub: Path
    other_key: Path
    other_pub: Path


@pytest.fixture(scope="session")
def keys(tmp_path_factory) -> Keys:
    d = tmp_path_factory.mktemp("keys")
    k, p = bundle.keygen(d / "release")
    ok, op = bundle.keygen(d / "stranger")
    return Keys(k, p, ok, op)


@pytest.fixture(scope="session")
def bundles(tmp_path_factory, keys: Keys) -> dict[str, Path]:
    """Good bundles: 0.2.0 and 0.3.0 (amd64), their root images alongside ("0.2.0.ext4")."""
    d = tmp_path_factory.mktemp("bundles")
    out = {}
    for version in ("0.2.0", "0.3.0"):
        rootfs = make_rootfs(d, version, 6)
        boot = make_boot_dir(d, version)
        path = d / f"hems-{version}-amd64.hemsu"
        bundle.make_bundle(
            path,
            key=bundle.load_private_key(keys.key),
            rootfs=rootfs,
            version=version,
            arch="amd64",
            boot_files=bundle.boot_files_of_dir(boot),
            cmdline=(boot / "cmdline.txt").read_text(),
        )
        out[version] = path
        out[f"{version}.ext4"] = rootfs
        out[f"{version}.boot"] = boot
    return out


class _GatewayHandler(BaseHTTPRequestHandler):
    server: StandInGateway

    def do_GET(self):
        gw = self.server
        with gw.lock:
            gw.requests += 1
            healthz = gw.healthz_sequence[min(gw.requests_healthz, len(gw.healthz_sequence) - 1)]
            if self.path == "/healthz":
                gw.requests_healthz += 1
        if self.path == "/healthz":
            status, body = healthz
            data = json.dumps(body).encode()
            self.send_response(status)
            self.send_header("Content-Type", "application/json")
        elif self.path == "/":
            self.send_response(302)
            self.send_header("Location", "/setup")
            self.send_header("Content-Length", "0")
            self.end_headers()
            return
        elif self.path == "/setup":
            data = b"<!doctype html><title>Set up your gateway</title>"
            self.send_response(200 if gw.dashboard_ok else 500)
            self.send_header("Content-Type", "text/html; charset=utf-8")
        else:
            data = b"not found"
            self.send_response(404)
            self.send_header("Content-Type", "text/plain")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def log_message(self, *args):
        pass


class StandInGateway(ThreadingHTTPServer):
    """A real HTTP server answering /healthz from a scripted sequence (503 while starting, then ok) and a dashboard."""

    def __init__(self, healthz_sequence: list[tuple[int, dict]], dashboard_ok: bool = True):
        super().__init__(("127.0.0.1", 0), _GatewayHandler)
        self.healthz_sequence = healthz_sequence
        self.dashboard_ok = dashboard_ok
        self.requests = 0
        self.requests_healthz = 0
        self.lock = threading.Lock()
        self.thread = threading.Thread(target=self.serve_forever, daemon=True)
        self.thread.start()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.server_address[1]}"

    def stop(self) -> None:
        self.shutdown()
        self.server_close()


def healthz(status: str = "ok", ok: int = 5, offline: int = 0, code: int | None = None) -> tuple[int, dict]:
    body = {
        "status": status,
        "version": "0.2.0",
        "uptime_s": 3.0,
        "devices": {"ok": ok, "offline": offline, "faulty": 0},
    }
    return (code or (200 if status == "ok" else 503), body)


@pytest.fixture
def gateway():
    servers: list[StandInGateway] = []

    def start(sequence: list[tuple[int, dict]], dashboard_ok: bool = True) -> StandInGateway:
        s = StandInGateway(sequence, dashboard_ok)
        servers.append(s)
        return s

    yield start
    for s in servers:
        s.stop()
