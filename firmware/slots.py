"""A/B root slots on the gateway's disk: boot selection, the slot state file, GPT lookup and slot writing.

Disk layout (GPT, partitions found by PARTLABEL)::

    1 hems-boot    FAT, mounted at /boot/firmware on the gateway (both arches)
    2 hems-root-a  ext4, root slot a
    3 hems-root-b  ext4, root slot b (same size)
    4 hems-data    ext4, /var/lib/hems

Boot partition files this module reads and writes::

    config.txt        the committed slot: ``os_prefix=slot-a/`` (plus ``kernel=vmlinuz``,
                      ``initramfs initrd.img followkernel`` and whatever else the image puts there)
    tryboot.txt       only while an update is pending: config.txt with ``os_prefix=slot-b/``
    slot-a/, slot-b/  each slot's ``vmlinuz``, ``initrd.img``, ``cmdline.txt`` (``root=PARTLABEL=hems-root-a ...``)
                      and on arm64 the Pi's dtbs and ``overlays/``
    hems-slots.json   committed slot, trying slot, versions, attempts, last result (see :func:`initial_state`)
    tryboot.flag      amd64 emulator only: stands in for the Pi's one-shot tryboot flag (see below)

What the Raspberry Pi firmware does, and :func:`select_boot` does the same in Python: when the one-shot
tryboot flag is set (``reboot "0 tryboot"``) and ``tryboot.txt`` exists it reads ``tryboot.txt``, else
``config.txt``; it prepends ``os_prefix`` to the kernel, initramfs and cmdline.txt names, and ignores a prefix
whose kernel is missing. A boot that fails never reaches the health check, the flag is gone after one boot,
so the next boot reads config.txt again: the old slot.

The amd64 emulator equivalent: there is no Pi firmware, so ``hems-update reboot`` on a non-Pi machine writes
``tryboot.flag`` on the boot partition and reboots normally; the qemu launcher calls
:func:`take_tryboot_flag` (reads and removes it: one-shot), then :func:`extract_boot_files` (disk image file)
or :func:`boot_selection` (directory) and boots with ``-kernel/-initrd/-append`` from the result. It appends
``hems.tryboot=1`` to a tryboot's command line, the way the Pi firmware sets
``/proc/device-tree/chosen/bootloader/tryboot``, so the booted system knows it is a trial boot.

Public API (used by the image build and its qemu boot test)::

    select_boot(boot, tryboot) -> "a" | "b"
    boot_selection(boot, tryboot) -> BootSelection(slot, config_file, prefix, kernel, initrd, cmdline_file, cmdline)
    extract_boot_files(disk_image, tryboot, out_dir) -> BootSelection  (kernel/initrd copied out as files)
    take_tryboot_flag(boot) -> bool
    initial_state(version, arch, slot="a") -> dict;  write_state(boot, state)
    read_gpt(disk) -> {partlabel: Partition};  open_disk_boot(disk_image) -> ImageBoot

``boot`` is a directory (str/Path, e.g. the mounted /boot/firmware or a staging dir) or a :class:`BootFiles`
(:class:`DirBoot`, or :class:`ImageBoot` for the FAT partition inside a disk image file, through mtools).
"""

from __future__ import annotations

import contextlib
import datetime as dt
import hashlib
import json
import os
import re
import shutil
import struct
import subprocess
import tempfile
import uuid
import zlib
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any, BinaryIO, Protocol

SLOTS = ("a", "b")
PARTLABEL_BOOT = "hems-boot"
PARTLABEL_DATA = "hems-data"
CONFIG_TXT = "config.txt"
TRYBOOT_TXT = "tryboot.txt"
STATE_FILE = "hems-slots.json"
TRYBOOT_FLAG = "tryboot.flag"
DEFAULT_BOOT_DIR = "/boot/firmware"
STATE_FORMAT = 1
HISTORY_LEN = 20
# The Pi firmware's own chosen/bootloader property, set to 1 on a tryboot (read by boot-check).
PI_TRYBOOT_PROPERTY = "/proc/device-tree/chosen/bootloader/tryboot"
EMULATOR_TRYBOOT_ARG = "hems.tryboot=1"


class SlotError(Exception):
    """Something about the slots, the disk or the boot partition that a person must act on."""


def partlabel(slot: str) -> str:
    check_slot(slot)
    return f"hems-root-{slot}"


def other_slot(slot: str) -> str:
    check_slot(slot)
    return "b" if slot == "a" else "a"


def check_slot(slot: Any) -> str:
    if slot not in SLOTS:
        raise SlotError(f"slot must be one of {', '.join(SLOTS)}, not {slot!r}")
    return slot


def now_iso() -> str:
    return dt.datetime.now(dt.UTC).replace(microsecond=0).isoformat().replace("+00:00", "Z")


# -- boot partition access ------------------------------------------------------------------------------


class BootFiles(Protocol):
    """The boot partition's files, by path relative to its root ("slot-a/vmlinuz")."""

    label: str

    def read(self, name: str) -> bytes | None: ...
    def write(self, name: str, data: bytes) -> None: ...
    def put(self, name: str, src: Path) -> None: ...
    def delete(self, name: str) -> None: ...
    def remove_tree(self, name: str) -> None: ...
    def exists(self, name: str) -> bool: ...
    def free_bytes(self) -> int: ...
    def tree_bytes(self, name: str) -> int: ...


class DirBoot:
    """A mounted boot partition (or a staging directory). Writes go to a temp file, are fsynced, then renamed."""

    def __init__(self, root: str | Path) -> None:
        self.root = Path(root)
        if not self.root.is_dir():
            raise SlotError(
                f"boot partition directory {self.root} does not exist (is the boot partition mounted?)"
            )
        self.label = str(self.root)

    def _path(self, name: str) -> Path:
        return self.root / _safe_rel(name)

    def read(self, name: str) -> bytes | None:
        try:
            return self._path(name).read_bytes()
        except FileNotFoundError:
            return None

    def exists(self, name: str) -> bool:
        return self._path(name).exists()

    def write(self, name: str, data: bytes) -> None:
        path = self._path(name)
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_name(path.name + ".new")
        with open(tmp, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
        _fsync_dir(path.parent)

    def put(self, name: str, src: Path) -> None:
        path = self._path(name)
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_name(path.name + ".new")
        with open(src, "rb") as fin, open(tmp, "wb") as fout:
            shutil.copyfileobj(fin, fout, 1 << 20)
            fout.flush()
            os.fsync(fout.fileno())
        os.replace(tmp, path)
        _fsync_dir(path.parent)

    def delete(self, name: str) -> None:
        with contextlib.suppress(FileNotFoundError):
            self._path(name).unlink()
            _fsync_dir(self._path(name).parent)

    def remove_tree(self, name: str) -> None:
        shutil.rmtree(self._path(name), ignore_errors=True)

    def free_bytes(self) -> int:
        return shutil.disk_usage(self.root).free

    def tree_bytes(self, name: str) -> int:
        base = self._path(name)
        if not base.exists():
            return 0
        return sum(p.stat().st_size for p in base.rglob("*") if p.is_file())


def _fsync_dir(path: Path) -> None:
    # vfat ignores directory fsync on some kernels; harmless where unsupported
    with contextlib.suppress(OSError):
        fd = os.open(path, os.O_RDONLY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)


class ImageBoot:
    """The FAT boot partition inside a disk image FILE, read and written with mtools (no loop device, no mount)."""

    def __init__(self, image: str | Path, offset_bytes: int) -> None:
        for tool in ("mcopy", "mdir", "mmd", "mdel", "mdeltree"):
            if shutil.which(tool) is None:
                raise SlotError(f"{tool} is not installed: install mtools (apt-get install mtools)")
        self.image = Path(image)
        self.offset_bytes = offset_bytes
        self.label = f"{self.image}@@{offset_bytes}"

    def _run(self, *args: str, check: bool = True) -> subprocess.CompletedProcess:
        env = {**os.environ, "MTOOLS_SKIP_CHECK": "1", "MTOOLS_NO_VFAT": "0"}
        proc = subprocess.run(
            [args[0], "-i", f"{self.image}@@{self.offset_bytes}", *args[1:]],
            capture_output=True,
            env=env,
            check=False,
        )
        if check and proc.returncode != 0:
            raise SlotError(
                f"{' '.join(args)} on the boot partition of {self.image} failed: "
                f"{proc.stderr.decode(errors='replace').strip()}"
            )
        return proc

    @staticmethod
    def _m(name: str) -> str:
        return "::/" + _safe_rel(name)

    def exists(self, name: str) -> bool:
        return self._run("mdir", "-b", self._m(name), check=False).returncode == 0

    def read(self, name: str) -> bytes | None:
        with tempfile.TemporaryDirectory() as tmp:
            out = Path(tmp) / "f"
            proc = self._run("mcopy", "-n", self._m(name), str(out), check=False)
            if proc.returncode != 0 or not out.exists():
                return None
            return out.read_bytes()

    def _mkdirs(self, name: str) -> None:
        parts = _safe_rel(name).split("/")[:-1]
        for i in range(1, len(parts) + 1):
            d = "/".join(parts[:i])
            if not self.exists(d):
                self._run("mmd", self._m(d))

    def put(self, name: str, src: Path) -> None:
        self._mkdirs(name)
        self._run("mcopy", "-o", str(src), self._m(name))

    def write(self, name: str, data: bytes) -> None:
        with tempfile.TemporaryDirectory() as tmp:
            src = Path(tmp) / "f"
            src.write_bytes(data)
            self.put(name, src)

    def delete(self, name: str) -> None:
        if self.exists(name):
            self._run("mdel", self._m(name))

    def remove_tree(self, name: str) -> None:
        if self.exists(name):
            self._run("mdeltree", self._m(name))

    def free_bytes(self) -> int:
        out = self._run("mdir", "::/").stdout.decode(errors="replace")
        m = re.search(r"([\d ]+) bytes free", out)
        if not m:
            raise SlotError(f"cannot read the free space of the boot partition of {self.image}")
        return int(m.group(1).replace(" ", ""))

    def tree_bytes(self, name: str) -> int:
        if not self.exists(name):
            return 0
        out = self._run("mdir", "-/", self._m(name)).stdout.decode(errors="replace")
        # "N files   SIZE bytes" summary lines: the last one is the total of the listing
        totals = re.findall(r"files?\s+([\d ]+) bytes", out)
        return int(totals[-1].replace(" ", "")) if totals else 0


def _safe_rel(name: str) -> str:
    """Boot partition paths are relative, '/'-separated, without '..' (they come from signed manifests too)."""
    name = str(name).strip("/")
    parts = name.split("/")
    if not name or any(p in ("", ".", "..") for p in parts) or not re.fullmatch(r"[A-Za-z0-9._+/,-]+", name):
        raise SlotError(f"invalid boot partition path {name!r}")
    return name


def open_boot(boot: str | Path | BootFiles) -> BootFiles:
    if isinstance(boot, str | Path):
        return DirBoot(boot)
    return boot


# -- GPT --------------------------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Partition:
    number: int
    label: str
    first_lba: int
    last_lba: int
    sector_bytes: int
    type_guid: str
    guid: str

    @property
    def offset_bytes(self) -> int:
        return self.first_lba * self.sector_bytes

    @property
    def size_bytes(self) -> int:
        return (self.last_lba - self.first_lba + 1) * self.sector_bytes


def read_gpt(disk: str | Path) -> dict[str, Partition]:
    """Partitions of a GPT disk (block device or image file) by PARTLABEL; the primary header and its CRCs are checked."""
    try:
        with open(disk, "rb") as f:
            return _read_gpt(f, str(disk))
    except FileNotFoundError:
        raise SlotError(f"disk {disk} does not exist") from None
    except PermissionError:
        raise SlotError(f"no permission to read disk {disk} (run as root)") from None


def _read_gpt(f: BinaryIO, name: str) -> dict[str, Partition]:
    for sector in (512, 4096):
        f.seek(sector)
        header = f.read(92)
        if header[:8] == b"EFI PART":
            break
    else:
        raise SlotError(f"{name} has no GPT partition table (no 'EFI PART' header at LBA 1)")
    (hsize,) = struct.unpack_from("<I", header, 12)
    f.seek(sector)
    raw = bytearray(f.read(hsize))
    (crc,) = struct.unpack_from("<I", raw, 16)
    raw[16:20] = b"\0\0\0\0"
    if zlib.crc32(raw) != crc:
        raise SlotError(f"{name}: the GPT header's CRC is wrong (damaged partition table)")
    entries_lba, count, esize, ecrc = struct.unpack_from("<QIII", raw, 72)
    if not (0 < count <= 1024 and 128 <= esize <= 4096):
        raise SlotError(f"{name}: implausible GPT entry table ({count} entries of {esize} bytes)")
    f.seek(entries_lba * sector)
    table = f.read(count * esize)
    if len(table) != count * esize or zlib.crc32(table) != ecrc:
        raise SlotError(f"{name}: the GPT partition entries' CRC is wrong (damaged partition table)")
    parts: dict[str, Partition] = {}
    for i in range(count):
        e = table[i * esize : (i + 1) * esize]
        type_guid = uuid.UUID(bytes_le=e[:16])
        if type_guid.int == 0:
            continue
        first, last = struct.unpack_from("<QQ", e, 32)
        label = e[56:128].decode("utf-16-le").split("\0", 1)[0]
        part = Partition(i + 1, label, first, last, sector, str(type_guid), str(uuid.UUID(bytes_le=e[16:32])))
        if label in parts:
            raise SlotError(f"{name}: two partitions are labelled {label!r}")
        parts[label] = part
    return parts


def slot_partitions(disk: str | Path) -> dict[str, Partition]:
    """{"a": Partition, "b": Partition, "boot": Partition} of a gateway disk, with clear errors when one is missing."""
    parts = read_gpt(disk)
    out = {}
    for key, label in (("boot", PARTLABEL_BOOT), ("a", partlabel("a")), ("b", partlabel("b"))):
        if label not in parts:
            raise SlotError(
                f"{disk} has no partition labelled {label!r} (found: {', '.join(sorted(parts)) or 'none'}); "
                "is this a HEMS gateway disk?"
            )
        out[key] = parts[label]
    return out


def open_disk_boot(disk_image: str | Path) -> ImageBoot:
    """The boot partition of a disk image file, through mtools at its GPT offset."""
    return ImageBoot(disk_image, slot_partitions(disk_image)["boot"].offset_bytes)


def find_root_disk(partlabel_name: str = "hems-root-a") -> Path:
    """The whole-disk device holding the slot partitions (on a running gateway)."""
    link = Path("/dev/disk/by-partlabel") / partlabel_name
    if not link.exists():
        raise SlotError(f"{link} does not exist: not running on a HEMS gateway disk? pass --disk")
    part = link.resolve().name  # e.g. mmcblk0p2
    parent = Path("/sys/class/block", part).resolve().parent.name  # e.g. mmcblk0
    disk = Path("/dev", parent)
    if not disk.exists():
        raise SlotError(f"cannot find the disk holding {link} ({part}); pass --disk")
    return disk


def partition_mounted(disk: str | Path, part: Partition) -> str | None:
    """Mount point when the partition (of a block device) is mounted, else None."""
    disk = Path(disk)
    try:
        if not disk.is_block_device():
            return None
        major_minor = None
        for sysname in Path("/sys/class/block").iterdir():
            if (sysname / "partition").exists() and (sysname / "partition").read_text().strip() == str(
                part.number
            ):
                if (sysname.resolve().parent.name) == disk.resolve().name:
                    major_minor = (sysname / "dev").read_text().strip()
        if major_minor is None:
            return None
        for line in Path("/proc/self/mountinfo").read_text().splitlines():
            fields = line.split()
            if fields[2] == major_minor:
                return fields[4]
    except OSError:
        return None
    return None


# -- writing and reading a slot ----------------------------------------------------------------------------


def write_slot(
    disk: str | Path, part: Partition, chunks: Iterator[bytes], expected_size_bytes: int, progress=None
) -> str:
    """Stream bytes into the partition from its start; never past its end. Returns the sha256 of what was written.

    The caller has verified the source already; this checks size bounds, fsyncs, and drops the written
    range from the page cache so that :func:`hash_slot` re-reads the medium.
    """
    if expected_size_bytes > part.size_bytes:
        raise SlotError(
            f"the root image is {expected_size_bytes} bytes but slot partition {part.label} holds only "
            f"{part.size_bytes} bytes"
        )
    h = hashlib.sha256()
    written = 0
    fd = os.open(disk, os.O_WRONLY)  # no O_TRUNC, no O_CREAT: an image file keeps its size, a device its data
    try:
        os.lseek(fd, part.offset_bytes, os.SEEK_SET)
        for chunk in chunks:
            if written + len(chunk) > expected_size_bytes:
                raise SlotError(
                    f"the root image is longer than its manifest says ({expected_size_bytes} bytes)"
                )
            view = memoryview(chunk)
            while view:
                n = os.write(fd, view)
                view = view[n:]
            h.update(chunk)
            written += len(chunk)
            if progress:
                progress(written)
        os.fsync(fd)
        with contextlib.suppress(OSError, AttributeError):
            os.posix_fadvise(fd, part.offset_bytes, written, os.POSIX_FADV_DONTNEED)
    finally:
        os.close(fd)
    if written != expected_size_bytes:
        raise SlotError(
            f"wrote {written} bytes of the root image but its manifest says {expected_size_bytes}"
        )
    return h.hexdigest()


def hash_slot(disk: str | Path, part: Partition, size_bytes: int) -> str:
    """sha256 of the first size_bytes of the partition, read back from the disk."""
    h = hashlib.sha256()
    with open(disk, "rb", buffering=0) as f:
        with contextlib.suppress(OSError, AttributeError):
            os.posix_fadvise(f.fileno(), part.offset_bytes, size_bytes, os.POSIX_FADV_DONTNEED)
        f.seek(part.offset_bytes)
        left = size_bytes
        while left:
            chunk = f.read(min(left, 1 << 20))
            if not chunk:
                raise SlotError(f"{disk} ended while re-reading slot {part.label}")
            h.update(chunk)
            left -= len(chunk)
    return h.hexdigest()


# -- config.txt (what the Pi firmware reads) --------------------------------------------------------------


def parse_config_txt(
    text: str, tryboot: bool = False, filters: frozenset[str] = frozenset()
) -> dict[str, str]:
    """The boot settings of a config.txt: os_prefix, kernel, initramfs, cmdline (last one wins, as on the Pi).

    Conditional sections: ``[all]`` resets, ``[none]`` skips, ``[tryboot]`` passes on a tryboot; any other
    filter (``[pi4]``, ``[cm4]`` ...) passes only when named in ``filters``. Filters of one section header
    line apply until the next ``[all]``.
    """
    settings: dict[str, str] = {}
    conditions: dict[str, bool] = {}
    for raw in text.splitlines():
        line = raw.split("#", 1)[0].strip()
        if not line:
            continue
        if line.startswith("[") and line.endswith("]"):
            name = line[1:-1].strip().lower()
            if name == "all":
                conditions = {}
            elif name == "none":
                conditions["none"] = False
            elif name == "tryboot":
                conditions["tryboot"] = tryboot
            else:
                # model-type filters replace each other; others stack
                kind = "model" if re.fullmatch(r"(pi|cm)\w*|board-type=.*", name) else name
                conditions[kind] = name in filters
            continue
        if not all(conditions.values()):
            continue
        if line.startswith("initramfs ") or line.startswith("initramfs\t"):
            settings["initramfs"] = line.split()[1]
            continue
        if "=" in line:
            key, value = (s.strip() for s in line.split("=", 1))
            if key in ("os_prefix", "kernel", "cmdline", "arm_64bit", "auto_initramfs"):
                settings[key] = value
    return settings


def set_os_prefix(text: str, slot: str) -> str:
    """config.txt text with every os_prefix line pointing at the slot (added under [all] when absent)."""
    check_slot(slot)
    lines = text.splitlines()
    found = False
    for i, raw in enumerate(lines):
        if re.match(r"\s*os_prefix\s*=", raw):
            lines[i] = f"os_prefix=slot-{slot}/"
            found = True
    if not found:
        lines = [*lines, "[all]", f"os_prefix=slot-{slot}/"]
    return "\n".join(lines) + "\n"


def slot_of_prefix(prefix: str) -> str | None:
    m = re.fullmatch(r"slot-([ab])/", prefix or "")
    return m.group(1) if m else None


@dataclass(frozen=True, slots=True)
class BootSelection:
    """What the firmware would load: paths relative to the boot partition (or local files after extraction)."""

    slot: str
    config_file: str  # "config.txt" or "tryboot.txt"
    prefix: str
    kernel: str
    initrd: str | None
    cmdline_file: str
    cmdline: str

    def to_json(self) -> dict:
        return {
            "slot": self.slot,
            "config_file": self.config_file,
            "prefix": self.prefix,
            "kernel": self.kernel,
            "initrd": self.initrd,
            "cmdline_file": self.cmdline_file,
            "cmdline": self.cmdline,
        }


def boot_selection(
    boot: str | Path | BootFiles, tryboot: bool, filters: frozenset[str] = frozenset()
) -> BootSelection:
    """Exactly what the Pi firmware picks (see the module doc); raises SlotError when that boot would fail."""
    b = open_boot(boot)
    config_file = CONFIG_TXT
    text = None
    if tryboot:
        text = b.read(TRYBOOT_TXT)
        if text is not None:
            config_file = TRYBOOT_TXT
    if text is None:
        text = b.read(CONFIG_TXT)
    if text is None:
        raise SlotError(f"the boot partition {b.label} has no config.txt: nothing would boot")
    s = parse_config_txt(text.decode("utf-8", errors="replace"), tryboot=tryboot, filters=filters)
    kernel = s.get("kernel") or ("kernel8.img" if s.get("arm_64bit") == "1" else "kernel7l.img")
    prefix = s.get("os_prefix", "")
    if prefix and not b.exists(prefix + kernel):
        prefix = ""  # the firmware ignores a prefix whose kernel is missing
    slot = slot_of_prefix(prefix)
    if slot is None:
        raise SlotError(
            f"{config_file} on {b.label} selects no slot: os_prefix={s.get('os_prefix', '')!r} and "
            f"{s.get('os_prefix', '')}{kernel} {'is missing' if s.get('os_prefix') else 'is not slot-a/ or slot-b/'}"
        )
    cmdline_file = prefix + s.get("cmdline", "cmdline.txt")
    cmdline_raw = b.read(cmdline_file)
    if cmdline_raw is None:
        raise SlotError(f"{cmdline_file} is missing on {b.label}")
    initrd = prefix + s["initramfs"] if s.get("initramfs") else None
    if initrd is not None and not b.exists(initrd):
        raise SlotError(f"{initrd} (the initramfs of {config_file}) is missing on {b.label}")
    return BootSelection(
        slot=slot,
        config_file=config_file,
        prefix=prefix,
        kernel=prefix + kernel,
        initrd=initrd,
        cmdline_file=cmdline_file,
        cmdline=" ".join(cmdline_raw.decode("utf-8", errors="replace").split()),
    )


def select_boot(boot: str | Path | BootFiles, tryboot: bool) -> str:
    """The slot ("a"/"b") the Pi firmware boots from these boot partition files with the tryboot flag set or not."""
    return boot_selection(boot, tryboot).slot


def take_tryboot_flag(boot: str | Path | BootFiles) -> bool:
    """Emulator launchers: True once after ``hems-update reboot`` asked for a trial boot (the flag is removed)."""
    b = open_boot(boot)
    if b.exists(TRYBOOT_FLAG):
        b.delete(TRYBOOT_FLAG)
        return True
    return False


def extract_boot_files(
    disk_image: str | Path, tryboot: bool, out_dir: str | Path, filters: frozenset[str] = frozenset()
) -> BootSelection:
    """For qemu ``-kernel/-initrd/-append``: the selection with kernel and initrd copied to out_dir as local files.

    The returned cmdline carries ``hems.tryboot=1`` on a tryboot (see the module doc).
    """
    boot = open_disk_boot(disk_image)
    sel = boot_selection(boot, tryboot, filters)
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    kernel = out / "vmlinuz"
    data = boot.read(sel.kernel)
    if data is None:
        raise SlotError(f"{sel.kernel} vanished from {boot.label}")
    kernel.write_bytes(data)
    initrd = None
    if sel.initrd:
        initrd = out / "initrd.img"
        data = boot.read(sel.initrd)
        if data is None:
            raise SlotError(f"{sel.initrd} vanished from {boot.label}")
        initrd.write_bytes(data)
    cmdline = sel.cmdline + (" " + EMULATOR_TRYBOOT_ARG if tryboot and sel.config_file == TRYBOOT_TXT else "")
    return BootSelection(
        sel.slot,
        sel.config_file,
        sel.prefix,
        str(kernel),
        str(initrd) if initrd else None,
        sel.cmdline_file,
        cmdline,
    )


def cmdline_for_slot(cmdline: str, slot: str) -> str:
    """A kernel command line with its root= pointing at the slot's partition (in place, or appended)."""
    root = f"root=PARTLABEL={partlabel(slot)}"
    out: list[str] = []
    for word in cmdline.split():
        if word.startswith("root="):
            if root not in out:  # the first root= becomes the slot's, any further one goes
                out.append(root)
        else:
            out.append(word)
    if root not in out:
        out.append(root)
    return " ".join(out)


# -- the running system ------------------------------------------------------------------------------------


def booted_slot(cmdline_path: str | Path = "/proc/cmdline") -> str | None:
    """The slot the running system booted from (root=PARTLABEL=hems-root-X on its command line), or None."""
    try:
        text = Path(cmdline_path).read_text()
    except OSError:
        return None
    m = re.search(r"(?:^|\s)root=PARTLABEL=hems-root-([ab])(?:\s|$)", text)
    return m.group(1) if m else None


def booted_with_tryboot(
    cmdline_path: str | Path = "/proc/cmdline", property_path: str | Path = PI_TRYBOOT_PROPERTY
) -> bool:
    """True when this boot was a trial boot (Pi firmware property, or the emulator's command-line flag)."""
    with contextlib.suppress(OSError):
        raw = Path(property_path).read_bytes()
        if len(raw) >= 4 and int.from_bytes(raw[:4], "big") == 1:
            return True
    with contextlib.suppress(OSError):
        return EMULATOR_TRYBOOT_ARG in Path(cmdline_path).read_text().split()
    return False


# The firmware's one-shot tryboot flag through its mailbox (what `vcmailbox 0x00038064 4 0 1` does). Needed
# because only the Raspberry Pi kernel turns `reboot "0 tryboot"` into this call; a mainline kernel (Debian's
# linux-image-arm64) ignores the word, so the flag is set here where /dev/vcio exists.
VCIO = "/dev/vcio"
MBOX_SET_REBOOT_FLAGS = 0x00038064
MBOX_GET_REBOOT_FLAGS = 0x00030064
MBOX_OK = 0x80000000


def mbox_buffer(tag: int, value: int) -> list[int]:
    """A one-tag firmware property message: size, request, tag, value size, request code, value, end tag."""
    return [7 * 4, 0, tag, 4, 0, value, 0]


def _mbox_ioctl_number() -> int:
    # _IOWR(100, 0, char *): the vcio driver's IOCTL_MBOX_PROPERTY; the size field is a pointer's
    return (3 << 30) | (struct.calcsize("P") << 16) | (100 << 8) | 0


def firmware_mailbox(tag: int, value: int, device: str = VCIO) -> int:
    import array
    import fcntl

    buf = array.array("I", mbox_buffer(tag, value))
    fd = os.open(device, os.O_RDWR)
    try:
        fcntl.ioctl(fd, _mbox_ioctl_number(), buf, True)
    finally:
        os.close(fd)
    if buf[1] != MBOX_OK:
        raise SlotError(f"the Raspberry Pi firmware refused mailbox tag {tag:#x} (answer {buf[1]:#x})")
    return buf[5]


def set_pi_tryboot_flag() -> bool:
    """Set the one-shot tryboot flag through /dev/vcio; False when this kernel has no /dev/vcio."""
    if not Path(VCIO).exists():
        return False
    firmware_mailbox(MBOX_SET_REBOOT_FLAGS, 1)
    if not firmware_mailbox(MBOX_GET_REBOOT_FLAGS, 0) & 1:
        raise SlotError("the Raspberry Pi firmware did not keep the tryboot flag")
    return True


def is_raspberry_pi(model_path: str | Path = "/proc/device-tree/model") -> bool:
    try:
        return b"Raspberry Pi" in Path(model_path).read_bytes()
    except OSError:
        return False


# -- hems-slots.json ----------------------------------------------------------------------------------------


def initial_state(version: str, arch: str, slot: str = "a") -> dict:
    """hems-slots.json of a freshly built image: `slot` committed with `version`, the other slot empty."""
    check_slot(slot)
    return {
        "format": STATE_FORMAT,
        "arch": arch,
        "committed": slot,
        "trying": None,
        "attempts": 0,
        "max_attempts": 1,
        "tryboot_requested": False,
        "slots": {
            slot: {"version": version, "status": "good", "installed": now_iso()},
            other_slot(slot): {"version": None, "status": "empty"},
        },
        "last": None,
        "history": [],
    }


def read_state(boot: str | Path | BootFiles) -> dict:
    """hems-slots.json, made consistent with config.txt (what the firmware really boots wins)."""
    b = open_boot(boot)
    raw = b.read(STATE_FILE)
    config = b.read(CONFIG_TXT)
    config_slot = None
    if config is not None:
        config_slot = slot_of_prefix(
            parse_config_txt(config.decode("utf-8", errors="replace")).get("os_prefix", "")
        )
    state: dict
    if raw is None:
        # an image built without hems-slots.json: config.txt's slot is committed, versions unknown
        state = initial_state("", "", config_slot or "a")
        state["arch"] = None
        state["slots"][state["committed"]]["version"] = None
    else:
        try:
            state = json.loads(raw)
        except ValueError as exc:
            raise SlotError(
                f"{STATE_FILE} on {b.label} is not valid JSON ({exc}); fix or remove it"
            ) from None
        if not isinstance(state, dict) or state.get("format") != STATE_FORMAT:
            raise SlotError(f"{STATE_FILE} on {b.label} has an unknown format (want format {STATE_FORMAT})")
    if config_slot and config_slot == state.get("trying"):
        # a commit was cut short after config.txt was rewritten: config.txt is what boots, so finish it
        state = commit_state(state, config_slot)
        state.setdefault("warnings", []).append(f"finished an interrupted commit of slot {config_slot}")
    elif config_slot and config_slot != state.get("committed"):
        state.setdefault("warnings", []).append(
            f"{STATE_FILE} said slot {state.get('committed')} is committed but config.txt boots slot {config_slot}"
        )
        state["committed"] = config_slot
    for s in SLOTS:
        state.setdefault("slots", {}).setdefault(s, {"version": None, "status": "empty"})
    return state


def write_state(boot: str | Path | BootFiles, state: dict) -> None:
    state = {k: v for k, v in state.items() if k != "warnings"}
    open_boot(boot).write(STATE_FILE, (json.dumps(state, indent=2, sort_keys=True) + "\n").encode())


def _record(state: dict, event: str, slot: str, reason: str = "") -> None:
    entry = {"event": event, "slot": slot, "version": state["slots"][slot].get("version"), "ts": now_iso()}
    if reason:
        entry["reason"] = reason
    state["last"] = entry
    state["history"] = [*state.get("history", []), entry][-HISTORY_LEN:]


# Pure transitions over the state dict (the file I/O around them is in the functions below).


def begin_state(
    state: dict, slot: str, version: str, bundle_sha256: str, devices_ok_before: int | None = None
) -> dict:
    state = json.loads(json.dumps(state))
    state["trying"] = slot
    state["devices_ok_before"] = devices_ok_before
    state["attempts"] = 0
    state["tryboot_requested"] = False
    state["slots"][slot] = {
        "version": version,
        "status": "pending",
        "installed": now_iso(),
        "bundle_sha256": bundle_sha256,
    }
    _record(state, "installed", slot)
    return state


def commit_state(state: dict, slot: str) -> dict:
    state = json.loads(json.dumps(state))
    state["committed"] = slot
    state["trying"] = None
    state["tryboot_requested"] = False
    state["slots"][slot]["status"] = "good"
    state["slots"][slot]["committed"] = now_iso()
    _record(state, "committed", slot)
    return state


def rollback_state(state: dict, reason: str) -> dict:
    state = json.loads(json.dumps(state))
    slot = state["trying"]
    state["trying"] = None
    state["tryboot_requested"] = False
    state["slots"][slot]["status"] = "bad"
    _record(state, "rolled-back", slot, reason)
    return state


# -- operations on a boot partition (used by hems-update; each leaves a consistent partition) ----------------


def stage_pending(
    boot: BootFiles, slot: str, version: str, bundle_sha256: str, devices_ok_before: int | None = None
) -> dict:
    """Last step of an install: hems-slots.json says slot is being tried, then tryboot.txt (the switch) appears."""
    state = read_state(boot)
    config = boot.read(CONFIG_TXT)
    if config is None:
        raise SlotError(f"the boot partition {boot.label} has no config.txt")
    state = begin_state(state, slot, version, bundle_sha256, devices_ok_before)
    write_state(boot, state)
    boot.write(TRYBOOT_TXT, set_os_prefix(config.decode(), slot).encode())
    return state


def commit(boot: str | Path | BootFiles, booted: str | None) -> dict:
    """Make the trial slot the committed one: config.txt points at it, tryboot.txt goes. Only from that slot."""
    b = open_boot(boot)
    state = read_state(b)
    slot = state.get("trying")
    if slot is None:
        raise SlotError("no update is being tried: nothing to commit")
    if booted != slot:
        raise SlotError(
            f"the update in slot {slot} can only be committed from a boot of slot {slot} "
            f"(this system booted {'slot ' + booted if booted else 'an unknown slot'}); reboot into it first"
        )
    config = b.read(CONFIG_TXT)
    if config is None:
        raise SlotError(f"the boot partition {b.label} has no config.txt")
    b.write(CONFIG_TXT, set_os_prefix(config.decode(), slot).encode())
    state = commit_state(state, slot)
    write_state(b, state)
    b.delete(TRYBOOT_TXT)
    b.delete(TRYBOOT_FLAG)
    return state


def rollback(boot: str | Path | BootFiles, reason: str) -> dict:
    """Give up the trial slot: config.txt untouched, tryboot.txt removed, the failure and reason recorded."""
    b = open_boot(boot)
    state = read_state(b)
    if state.get("trying") is None:
        raise SlotError("no update is being tried: nothing to roll back")
    b.delete(TRYBOOT_TXT)
    b.delete(TRYBOOT_FLAG)
    state = rollback_state(state, reason)
    write_state(b, state)
    return state


def request_tryboot(boot: str | Path | BootFiles) -> dict:
    """Note that a trial reboot is on its way (boot-check then knows a boot of the old slot means it failed)."""
    b = open_boot(boot)
    state = read_state(b)
    if state.get("trying") is None or not b.exists(TRYBOOT_TXT):
        raise SlotError("no update is pending: install a bundle first")
    state["tryboot_requested"] = True
    write_state(b, state)
    return state


def boot_check(boot: str | Path | BootFiles, booted: str | None, tryboot: bool) -> tuple[str, dict]:
    """Run once per boot, early. Returns (what happened, state).

    - booted the trial slot: count the attempt; past max_attempts roll back (a boot loop must end).
    - booted the committed slot while a trial was requested or had started: the new slot did not come up
      (kernel panic, hang and watchdog, power cut before commit); record the failure and clean up.
    - an install that was never rebooted into stays pending.
    """
    b = open_boot(boot)
    state = read_state(b)
    slot = state.get("trying")
    if slot is None:
        if b.exists(TRYBOOT_TXT):
            b.delete(TRYBOOT_TXT)  # stale switch without a pending update: never boot an unknown slot
            return "removed a stale tryboot.txt", state
        return "no update pending", state
    if booted != slot and not b.exists(TRYBOOT_TXT):
        # a rollback cut short after tryboot.txt went, or the switch was removed by hand: nothing can boot it
        state = rollback(b, f"tryboot.txt for slot {slot} is gone; the update can no longer be tried")
        return "rolled back: tryboot.txt is gone", state
    if booted == slot:
        state["attempts"] = int(state.get("attempts", 0)) + 1
        state["slots"][slot]["status"] = "trying"
        write_state(b, state)
        if state["attempts"] > int(state.get("max_attempts", 1)):
            state = rollback(
                b, f"slot {slot} booted {state['attempts']} times without passing the health check"
            )
            return "rolled back: too many attempts", state
        return f"trial boot {state['attempts']} of slot {slot}", state
    if booted == state.get("committed") and (
        state.get("tryboot_requested") or state.get("attempts", 0) > 0 or tryboot
    ):
        if state.get("attempts", 0) > 0:
            reason = (
                f"slot {slot} started but restarted before its health check passed; back on slot {booted}"
            )
        else:
            reason = (
                f"slot {slot} did not boot (the firmware fell back to slot {booted}; on a Pi this also happens "
                "when the kernel could not set the tryboot flag)"
            )
        state = rollback(b, reason)
        return "rolled back: " + reason, state
    return f"update to slot {slot} pending (not tried yet)", state
