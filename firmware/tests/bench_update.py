"""Benchmark: make a bundle, verify it, install it into a disk image file; prints JSON with seconds and MB/s.

    .venv/bin/python -m firmware.tests.bench_update [--image-mib 512] [--random-mib 128] [--compression gzip]

The root image is --image-mib big with --random-mib of incompressible data (the rest zeros, like a real
ext4 image's free space), so compression and write speed are both in the picture.
"""

from __future__ import annotations

import argparse
import json
import os
import tempfile
import time
from pathlib import Path

from firmware import bundle, slots
from firmware.tests.conftest import _build_disk

MIB = 1 << 20


def main() -> None:
    p = argparse.ArgumentParser()
    p.add_argument("--image-mib", type=int, default=512)
    p.add_argument("--random-mib", type=int, default=128)
    p.add_argument("--compression", choices=bundle.COMPRESSIONS, default="gzip")
    args = p.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        rootfs = tmp / "root.img"
        with open(rootfs, "wb") as f:
            for _ in range(args.random_mib):
                f.write(os.urandom(MIB))
            f.truncate(args.image_mib * MIB)
        key, pub = bundle.keygen(tmp / "k")
        boot_files = {}
        for name, size_mib in (("vmlinuz", 8), ("initrd.img", 24)):  # about a Debian arm64 kernel and initrd
            boot_files[name] = tmp / name
            boot_files[name].write_bytes(os.urandom(size_mib * MIB))
        out = tmp / "u.hemsu"
        t = time.perf_counter()
        bundle.make_bundle(
            out, key=bundle.load_private_key(key), rootfs=rootfs, version="0.2.0", arch="amd64",
            boot_files=boot_files, cmdline="console=ttyS0 root=PARTLABEL=hems-root-a", compression=args.compression,
        )  # fmt: skip
        make_s = time.perf_counter() - t
        t = time.perf_counter()
        b = bundle.Bundle.open(out, bundle.load_public_keys(pub))
        b.verify_payloads()
        verify_s = time.perf_counter() - t

        # a disk whose slots fit the image
        import firmware.tests.conftest as c

        c.SLOT_MIB = args.image_mib
        c.BOOT_MIB = 128
        (tmp / "disk").mkdir()
        disk = _build_disk(tmp / "disk")
        result = bundle.install_bundle(
            out, disk=disk.path, boot=disk.boot(), trusted=bundle.load_public_keys(pub), booted=None
        )
        env = slots.read_boot_env(disk.boot())
        assert (env.slot, env.try_slot, env.try_left) == ("a", "b", 0)
        assert slots.next_boot(env) == ("a", False)
        image_mb = args.image_mib * MIB / 1e6
        print(
            json.dumps(
                {
                    "image_mib": args.image_mib,
                    "random_mib": args.random_mib,
                    "compression": args.compression,
                    "bundle_bytes": out.stat().st_size,
                    "make_s": round(make_s, 2),
                    "verify_s": round(verify_s, 2),
                    "verify_mb_per_s": round(out.stat().st_size / 1e6 / verify_s, 1),
                    "install_total_s": result["total_s"],
                    "write_s": result["write_s"],
                    "write_mb_per_s": round(image_mb / result["write_s"], 1),
                    "readback_s": result["readback_s"],
                    "readback_mb_per_s": round(image_mb / result["readback_s"], 1),
                },
                indent=1,
            )
        )


if __name__ == "__main__":
    main()
