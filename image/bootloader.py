#!/usr/bin/env python3
"""Build the gateway's boot loader files from image/boot/ with Debian's own tools.

    python3 image/bootloader.py uboot OUT_DIR            # OUT_DIR/boot.scr (mkimage, u-boot-tools)
    python3 image/bootloader.py grub OUT_DIR [--root R]  # OUT_DIR/EFI/BOOT/BOOTX64.EFI (grub-mkstandalone)

The arm64 image puts boot.scr and U-Boot itself (u-boot-rpi's rpi_arm64/u-boot.bin, started by the Pi firmware
through config.txt) on the boot partition; the amd64 image puts GRUB's standalone EFI binary at the UEFI removable
media path. With ``--root`` GRUB is built inside that root (chroot) from its own grub-efi-amd64-bin, so the image
carries the boot loader of its own Debian release; without it the host's GRUB is used (the tests).
"""

from __future__ import annotations

import argparse
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

HERE = Path(__file__).resolve().parent
UBOOT_SCRIPT = HERE / "boot" / "u-boot.cmd"
GRUB_CFG = HERE / "boot" / "grub.cfg"
GRUB_EFI_PATH = "EFI/BOOT/BOOTX64.EFI"
UBOOT_SCRIPT_NAME = "boot.scr"
# what the embedded grub.cfg uses; everything else stays out of the binary
GRUB_MODULES = "part_gpt part_msdos fat regexp loadenv echo test linux halt reboot sleep"
QEMU_UBOOT_ARM64 = Path("/usr/lib/u-boot/qemu_arm64/u-boot.bin")
OVMF_CODE = Path("/usr/share/OVMF/OVMF_CODE_4M.fd")
OVMF_VARS = Path("/usr/share/OVMF/OVMF_VARS_4M.fd")


class BootloaderError(Exception):
    pass


def _need(tool: str, package: str) -> str:
    path = shutil.which(tool)
    if path is None:
        raise BootloaderError(f"{tool} is not installed: apt-get install {package}")
    return path


def build_uboot_script(out_dir: str | Path) -> Path:
    """boot.scr: image/boot/u-boot.cmd wrapped as a U-Boot script image."""
    out = Path(out_dir) / UBOOT_SCRIPT_NAME
    out.parent.mkdir(parents=True, exist_ok=True)
    mkimage = _need("mkimage", "u-boot-tools")
    cmd = [mkimage, "-A", "arm64", "-O", "linux", "-T", "script", "-C", "none", "-n", "HEMS A/B boot"]
    proc = subprocess.run(
        [*cmd, "-d", str(UBOOT_SCRIPT), str(out)],
        capture_output=True,
        text=True,
    )
    if proc.returncode != 0:
        raise BootloaderError(f"mkimage failed: {proc.stderr.strip() or proc.stdout.strip()}")
    return out


def build_grub_efi(out_dir: str | Path, root: str | Path | None = None) -> Path:
    """EFI/BOOT/BOOTX64.EFI: a standalone GRUB with image/boot/grub.cfg built in."""
    out = Path(out_dir) / GRUB_EFI_PATH
    out.parent.mkdir(parents=True, exist_ok=True)
    args = ["-O", "x86_64-efi", "--modules", GRUB_MODULES, "--locales=", "--fonts=", "--themes="]
    if root is None:
        tool = _need("grub-mkstandalone", "grub-efi-amd64-bin")
        if not Path("/usr/lib/grub/x86_64-efi").is_dir():
            raise BootloaderError("GRUB's x86_64-efi modules are missing: apt-get install grub-efi-amd64-bin")
        cmd = [tool, *args, "-o", str(out), f"boot/grub/grub.cfg={GRUB_CFG}"]
        proc = subprocess.run(cmd, capture_output=True, text=True)
    else:
        root = Path(root)
        if not (root / "usr/bin/grub-mkstandalone").exists():
            raise BootloaderError(f"{root} has no grub-mkstandalone: add grub-efi-amd64-bin to its packages")
        with tempfile.TemporaryDirectory(dir=root / "tmp") as tmp:
            inside = "/" + str(Path(tmp).relative_to(root))
            shutil.copy(GRUB_CFG, Path(tmp) / "grub.cfg")
            cmd = ["chroot", str(root), "grub-mkstandalone", *args, "-o", f"{inside}/BOOTX64.EFI"]
            cmd.append(f"boot/grub/grub.cfg={inside}/grub.cfg")
            proc = subprocess.run(cmd, capture_output=True, text=True)
            if proc.returncode == 0:
                shutil.copy(Path(tmp) / "BOOTX64.EFI", out)
    if proc.returncode != 0:
        raise BootloaderError(f"grub-mkstandalone failed: {proc.stderr.strip() or proc.stdout.strip()}")
    return out


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = p.add_subparsers(dest="loader", required=True)
    u = sub.add_parser("uboot", help="boot.scr for U-Boot (arm64)")
    u.add_argument("out_dir", type=Path)
    g = sub.add_parser("grub", help="EFI/BOOT/BOOTX64.EFI (amd64)")
    g.add_argument("out_dir", type=Path)
    g.add_argument("--root", type=Path, help="build inside this root (chroot) with its own GRUB")
    args = p.parse_args(argv)
    try:
        if args.loader == "uboot":
            out = build_uboot_script(args.out_dir)
        else:
            out = build_grub_efi(args.out_dir, args.root)
    except BootloaderError as exc:
        print(f"bootloader: {exc}", file=sys.stderr)
        return 1
    print(out)
    return 0


if __name__ == "__main__":
    sys.exit(main())
