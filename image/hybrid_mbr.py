#!/usr/bin/python3
"""Give a GPT disk a hybrid MBR that lists its FAT boot partition, so that every Raspberry Pi boots it.

The Pi 3 and Zero 2 W boot ROMs read only an MBR partition table; the Pi 4 reads either. A hybrid MBR keeps the
GPT (PARTLABELs for Linux and the A/B slots) and adds the boot partition as MBR entry 1 (type 0x0C, FAT32 LBA),
with a 0xEE entry protecting the GPT structures in front of it, which is what Linux expects of a hybrid MBR.

Standard library only: the build runs it on the host, and first boot runs it again after growing the data
partition (partitioning tools rewrite the protective MBR). ``--check`` only reports.
"""

from __future__ import annotations

import struct
import sys

SECTOR_BYTES = 512
BOOT_PARTLABEL = "hems-boot"


class HybridMbrError(Exception):
    pass


def find_partition(f, label: str) -> tuple[int, int]:
    """(first_lba, last_lba) of the GPT partition named ``label``."""
    f.seek(SECTOR_BYTES)
    header = f.read(92)
    if header[:8] != b"EFI PART":
        raise HybridMbrError("no GPT header at LBA 1: not a GPT disk")
    entries_lba, count, entry_size = struct.unpack_from("<QII", header, 72)
    f.seek(entries_lba * SECTOR_BYTES)
    table = f.read(count * entry_size)
    for i in range(count):
        entry = table[i * entry_size : (i + 1) * entry_size]
        if entry[:16] == bytes(16):
            continue
        first, last = struct.unpack_from("<QQ", entry, 32)
        name = entry[56:128].decode("utf-16-le").rstrip("\x00")
        if name == label:
            return first, last
    raise HybridMbrError(f"no GPT partition named {label!r}")


def mbr_entry(status: int, ptype: int, first_lba: int, sectors: int) -> bytes:
    chs = b"\xfe\xff\xff"  # beyond CHS range: LBA addressing
    return struct.pack("<B3sB3sII", status, chs, ptype, chs, first_lba, sectors)


def hybrid_table(first_lba: int, last_lba: int) -> bytes:
    if last_lba >= 2**32:
        raise HybridMbrError("the boot partition ends beyond what an MBR can address (2 TiB)")
    return (
        mbr_entry(0x80, 0x0C, first_lba, last_lba - first_lba + 1)
        + mbr_entry(0x00, 0xEE, 1, first_lba - 1)
        + bytes(32)
    )


def apply(path: str, check: bool = False) -> str:
    with open(path, "rb" if check else "r+b") as f:
        first, last = find_partition(f, BOOT_PARTLABEL)
        want = hybrid_table(first, last)
        f.seek(0)
        mbr = f.read(SECTOR_BYTES)
        if mbr[446:510] == want and mbr[510:512] == b"\x55\xaa":
            return f"{path}: hybrid MBR in place (boot partition at LBA {first}..{last})"
        if check:
            raise HybridMbrError(f"{path}: the MBR does not list the boot partition (LBA {first}..{last})")
        f.seek(446)
        f.write(want + b"\x55\xaa")
        f.flush()
    return f"{path}: hybrid MBR written (boot partition at LBA {first}..{last}, GPT protected)"


def main(argv: list[str]) -> int:
    args = [a for a in argv if a != "--check"]
    if len(args) != 1:
        print("usage: hybrid_mbr.py [--check] DISK", file=sys.stderr)
        return 2
    try:
        print(apply(args[0], check="--check" in argv))
    except (OSError, HybridMbrError) as exc:
        print(f"hybrid_mbr: {exc}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
