"""A/B root slots on the gateway's disk: boot selection, the slot state file, GPT lookup and slot writing.

Disk layout (GPT, partitions found by PARTLABEL)::

    1 hems-boot    FAT, mounted at /boot/firmware on the gateway (both arches)
    2 hems-root-a  ext4, root slot a
    3 hems-root-b  ext4, root slot b (same size)
    4 hems-data    ext4, /var/lib/hems

Boot partition files this module reads and writes::

    hems-boot.env     the boot loader's environment: committed slot, trial slot, trial boots left (see
    hems-boot.env.bak   "the boot loader's environment" below); the loaders write it too
    slot-a/, slot-b/  each slot's ``vmlinuz``, ``initrd.img``, ``boot.env`` (``hems_cmdline``, what the loaders
                      pass the kernel: ``root=PARTLABEL=hems-root-a ...``) and ``cmdline.txt`` (the same line,
                      for people); on arm64 the kernel's device trees in ``broadcom/``
    hems-slots.json   committed slot, trying slot, versions, attempts, last result (see :func:`initial_state`)

The boot loaders are real: GRUB (amd64, UEFI) and U-Boot started by the Raspberry Pi firmware (arm64), each
running its script from image/boot/; :func:`next_boot` states their decision in Python. A trial boot of a new
slot is one boot: the loader spends the trial before it starts the new kernel, so any failure (panic, hang
ended by the watchdog, power cut, failed health check) comes back to the committed slot.

Public API (used by hems-update, the image build and its qemu boot tests)::

    read_boot_env(boot) -> BootEnv | None;  write_boot_env(boot, slot, try_slot, try_left);  next_boot(env)
    initial_state(version, arch, slot="a") -> dict;  write_state(boot, state);  read_state(boot)
    stage_pending / arm_trial / commit / rollback / boot_check (each leaves a consistent boot partition)
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
STATE_FILE = "hems-slots.json"
BOOT_ENV = "hems-boot.env"
BOOT_ENV_BACKUP = "hems-boot.env.bak"
SLOT_ENV = "boot.env"
SLOT_KERNEL = "vmlinuz"
SLOT_INITRD = "initrd.img"
GRUBENV_SIGNATURE = b"# GRUB Environment Block\n"
ENV_BLOCK_BYTES = 1024
DEFAULT_BOOT_DIR = "/boot/firmware"
STATE_FORMAT = 1
HISTORY_LEN = 20
# what the boot loaders add to a trial boot's kernel command line (image/boot/)
TRIAL_ARG = "hems.trial=1"


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
        _replace_durably(tmp, path)

    def put(self, name: str, src: Path) -> None:
        path = self._path(name)
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_name(path.name + ".new")
        with open(src, "rb") as fin, open(tmp, "wb") as fout:
            shutil.copyfileobj(fin, fout, 1 << 20)
            fout.flush()
            os.fsync(fout.fileno())
        _replace_durably(tmp, path)

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


def _replace_durably(tmp: Path, path: Path) -> None:
    """Rename tmp over path so that the new name survives a power cut once this returns.

    On vfat a rename over an existing file moves the new file's directory entry into the old one's slot, and
    that slot is written only with the file's inode: fsyncing the directory does not write it, while the old
    file's clusters are freed at once. Without the second fsync, a power cut within the kernel's writeback
    delay (~30 s) leaves the name pointing at freed clusters: a damaged hems-boot.env."""
    os.replace(tmp, path)
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)
    _fsync_dir(path.parent)


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


# -- the boot loader's environment (hems-boot.env) ---------------------------------------------------------
#
# Both boot loaders (image/boot/: U-Boot's script on the Pi, GRUB on amd64) read three variables from
# hems-boot.env on the boot partition, falling back to hems-boot.env.bak when it is unreadable:
#
#   hems_slot       the committed slot, booted normally
#   hems_try        the slot to try, or empty
#   hems_try_left   trial boots left: when hems_try is set and this is 1, the loader writes 0 back to both
#                   files *before* it starts the trial slot's kernel, then boots it with hems.trial=1 on the
#                   command line. Any later boot (the trial slot crashed, hung until the watchdog or a power
#                   cut, or its health check failed) boots hems_slot again: one try.
#
# A slot whose kernel does not load is skipped in the same boot (the other slot is started).
# The file is a GRUB environment block (1024 bytes, '#'-padded): GRUB's load_env/save_env need that form;
# U-Boot's `env import -t` skips the '#' lines and its `env export -t` writes plain "name=value" lines,
# which read_boot_env accepts too.


def parse_env(data: bytes) -> dict[str, str]:
    """name=value lines of a GRUB environment block or of U-Boot's `env export -t` ('#' lines and NULs skipped).

    GRUB escapes a backslash or newline in a value with a backslash: "\\x" reads as "x"."""
    out: dict[str, str] = {}
    text = data.replace(b"\0", b"\n").decode("utf-8", errors="replace")
    lines = text.split("\n")
    i = 0
    while i < len(lines):
        line = lines[i].rstrip("\r")
        i += 1
        if not line or line.startswith("#") or "=" not in line:
            continue
        name, raw = line.split("=", 1)
        while raw.endswith("\\") and (len(raw) - len(raw.rstrip("\\"))) % 2 == 1 and i < len(lines):
            raw = raw + "\n" + lines[i]  # an escaped newline continues the value
            i += 1
        value, escaped = [], False
        for ch in raw:
            if escaped:
                value.append(ch)
                escaped = False
            elif ch == "\\":
                escaped = True
            else:
                value.append(ch)
        out[name.strip()] = "".join(value)
    return out


def format_env(values: dict[str, str]) -> bytes:
    """A GRUB environment block: signature, name=value lines, padded with '#' to 1024 bytes."""
    body = bytearray(GRUBENV_SIGNATURE)
    for name, value in values.items():
        if not re.fullmatch(r"[A-Za-z_][A-Za-z0-9_]*", name):
            raise SlotError(f"invalid boot environment variable name {name!r}")
        value = str(value)
        if "\n" in value or "\0" in value:
            raise SlotError(f"boot environment variable {name} holds a newline or NUL")
        value = value.replace("\\", "\\\\")  # GRUB's escape for a backslash
        body += f"{name}={value}\n".encode()
    if len(body) > ENV_BLOCK_BYTES:
        raise SlotError(
            f"the boot environment is {len(body)} bytes, more than a {ENV_BLOCK_BYTES}-byte block"
        )
    return bytes(body) + b"#" * (ENV_BLOCK_BYTES - len(body))


@dataclass(frozen=True, slots=True)
class BootEnv:
    slot: str  # committed
    try_slot: str | None
    try_left: int
    source: str  # which file it came from ("hems-boot.env", "hems-boot.env.bak", or "" when made up)

    def to_json(self) -> dict:
        return {"slot": self.slot, "try": self.try_slot, "try_left": self.try_left, "source": self.source}


def read_boot_env(boot: str | Path | BootFiles) -> BootEnv | None:
    """What the boot loader will read; None when neither copy is there or usable."""
    b = open_boot(boot)
    for name in (BOOT_ENV, BOOT_ENV_BACKUP):
        raw = b.read(name)
        if raw is None:
            continue
        env = parse_env(raw)
        slot = env.get("hems_slot")
        if slot not in SLOTS:
            continue  # damaged: the loader takes the other copy too
        try_slot = env.get("hems_try") or None
        if try_slot not in (None, *SLOTS):
            try_slot = None
        # the loaders compare the text with "1": anything else is no trial
        left = 1 if env.get("hems_try_left") == "1" else 0
        return BootEnv(slot, try_slot, left, name)
    return None


def write_boot_env(
    boot: str | Path | BootFiles, slot: str, try_slot: str | None = None, try_left: int = 0
) -> None:
    """Both copies; the backup first, so that a cut during either write leaves one consistent copy."""
    check_slot(slot)
    if try_slot is not None:
        check_slot(try_slot)
    block = format_env({"hems_slot": slot, "hems_try": try_slot or "", "hems_try_left": str(int(try_left))})
    b = open_boot(boot)
    b.write(BOOT_ENV_BACKUP, block)
    b.write(BOOT_ENV, block)


def next_boot(env: BootEnv | None) -> tuple[str, bool]:
    """(slot, trial) the boot loader picks on its next run: the same decision as image/boot/'s scripts."""
    if env is None:
        return "a", False  # both copies lost: the loaders default to slot a
    if env.try_slot is not None and env.try_left == 1:
        return env.try_slot, True
    return env.slot, False


def write_slot_cmdline(boot: str | Path | BootFiles, slot: str, cmdline: str) -> str:
    """slot-X/cmdline.txt (for people) and slot-X/boot.env (hems_cmdline, what the loaders read), root= set."""
    b = open_boot(boot)
    line = cmdline_for_slot(cmdline, slot)
    b.write(f"slot-{slot}/{SLOT_ENV}", format_env({"hems_cmdline": line}))
    b.write(f"slot-{slot}/cmdline.txt", (line + "\n").encode())
    return line


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


def booted_as_trial(cmdline_path: str | Path = "/proc/cmdline") -> bool:
    """True when the boot loader started this system as the trial of a new slot (hems.trial=1)."""
    try:
        return TRIAL_ARG in Path(cmdline_path).read_text().split()
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
        "trial_requested": False,
        "slots": {
            slot: {"version": version, "status": "good", "installed": now_iso()},
            other_slot(slot): {"version": None, "status": "empty"},
        },
        "last": None,
        "history": [],
    }


def read_state(boot: str | Path | BootFiles) -> dict:
    """hems-slots.json, made consistent with hems-boot.env (what the boot loader really boots wins)."""
    b = open_boot(boot)
    raw = b.read(STATE_FILE)
    env = read_boot_env(b)
    env_slot = env.slot if env else None
    state: dict
    if raw is None:
        # an image built without hems-slots.json: the loader's slot is committed, versions unknown
        state = initial_state("", "", env_slot or "a")
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
    if env_slot and env_slot == state.get("trying"):
        # a commit was cut short after the loader's env was rewritten: that is what boots, so finish it
        state = commit_state(state, env_slot)
        state.setdefault("warnings", []).append(f"finished an interrupted commit of slot {env_slot}")
    elif env_slot and env_slot != state.get("committed"):
        state.setdefault("warnings", []).append(
            f"{STATE_FILE} said slot {state.get('committed')} is committed but {BOOT_ENV} boots slot {env_slot}"
        )
        state["committed"] = env_slot
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
    state["trial_requested"] = False
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
    state["trial_requested"] = False
    state["slots"][slot]["status"] = "good"
    state["slots"][slot]["committed"] = now_iso()
    _record(state, "committed", slot)
    return state


def rollback_state(state: dict, reason: str) -> dict:
    state = json.loads(json.dumps(state))
    slot = state["trying"]
    state["trying"] = None
    state["trial_requested"] = False
    state["slots"][slot]["status"] = "bad"
    _record(state, "rolled-back", slot, reason)
    return state


# -- operations on a boot partition (used by hems-update; each leaves a consistent partition) ----------------


def _env_or_state(b: BootFiles, state: dict) -> BootEnv:
    env = read_boot_env(b)
    if env is None:
        # both copies gone (the loaders then boot slot a): put back what the state file says
        write_boot_env(b, state["committed"])
        env = BootEnv(state["committed"], None, 0, "")
    return env


def stage_pending(
    boot: BootFiles, slot: str, version: str, bundle_sha256: str, devices_ok_before: int | None = None
) -> dict:
    """Last step of an install: hems-slots.json says slot is being tried, then the loader's env names it (not armed)."""
    state = read_state(boot)
    env = _env_or_state(boot, state)
    state = begin_state(state, slot, version, bundle_sha256, devices_ok_before)
    write_state(boot, state)
    write_boot_env(boot, env.slot, slot, 0)
    return state


def commit(boot: str | Path | BootFiles, booted: str | None) -> dict:
    """Make the trial slot the committed one: the loader's env boots it from now on. Only from that slot."""
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
    write_boot_env(b, slot)
    state = commit_state(state, slot)
    write_state(b, state)
    return state


def rollback(boot: str | Path | BootFiles, reason: str) -> dict:
    """Give up the trial slot: the loader's env keeps the committed slot and forgets the trial; reason recorded."""
    b = open_boot(boot)
    state = read_state(b)
    if state.get("trying") is None:
        raise SlotError("no update is being tried: nothing to roll back")
    write_boot_env(b, state["committed"])
    state = rollback_state(state, reason)
    write_state(b, state)
    return state


def arm_trial(boot: str | Path | BootFiles) -> dict:
    """Before `hems-update reboot`: the next boot (one only) starts the pending slot."""
    b = open_boot(boot)
    state = read_state(b)
    slot = state.get("trying")
    env = read_boot_env(b)
    if slot is None or env is None or env.try_slot != slot:
        raise SlotError("no update is pending: install a bundle first")
    write_boot_env(b, env.slot, slot, 1)
    state["trial_requested"] = True
    write_state(b, state)
    return state


def boot_check(boot: str | Path | BootFiles, booted: str | None, trial: bool) -> tuple[str, dict]:
    """Run once per boot, early. Returns (what happened, state).

    - booted the trial slot: count the attempt; past max_attempts roll back (a boot loop must end).
    - booted the committed slot while a trial was requested or had started: the new slot did not come up
      (kernel panic, hang and watchdog, power cut before commit); record the failure and clean up.
    - an install that was never rebooted into stays pending.
    """
    b = open_boot(boot)
    state = read_state(b)
    env = read_boot_env(b)
    slot = state.get("trying")
    if env is None:
        write_boot_env(b, state["committed"], slot, 0)
        env = read_boot_env(b)
        state.setdefault("warnings", []).append(f"{BOOT_ENV} was lost; written again from {STATE_FILE}")
    if slot is None:
        if env.try_slot is not None:
            write_boot_env(b, env.slot)  # a stale trial without a pending update: never boot an unknown slot
            return f"removed a stale trial of slot {env.try_slot} from {BOOT_ENV}", state
        return "no update pending", state
    if booted != slot and env.try_slot != slot:
        # a rollback cut short after the env was rewritten, or the trial removed by hand: nothing can boot it
        state = rollback(
            b, f"{BOOT_ENV} no longer names slot {slot} for a trial; the update can no longer be tried"
        )
        return "rolled back: the trial is gone from the boot environment", state
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
        state.get("trial_requested") or state.get("attempts", 0) > 0 or trial
    ):
        if state.get("attempts", 0) > 0:
            reason = (
                f"slot {slot} started but restarted before its health check passed; back on slot {booted}"
            )
        else:
            reason = f"slot {slot} did not boot (the boot loader fell back to slot {booted})"
        state = rollback(b, reason)
        return "rolled back: " + reason, state
    return f"update to slot {slot} pending (not tried yet)", state
