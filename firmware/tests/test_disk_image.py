"""The whole update against a real GPT disk image file: install → trial boot → health → commit, or → rollback.

Everything runs through the real ``hems-update`` CLI; the disk image is checked independently (sfdisk's view
of the table, mtools reads of the FAT partition, raw slot bytes, debugfs on the written ext4).
"""

from __future__ import annotations

import json
import os
import re
import struct
from pathlib import Path

import pytest

from firmware import slots

from .conftest import CMDLINE, CONFIG_TXT, Disk, _tool, healthz, hems_update, loader_boot, make_rootfs, run


def _status(disk: Disk, *extra: str) -> dict:
    r = hems_update("status", "--disk", disk.path, *extra)
    assert r.returncode == 0, r.stderr
    return json.loads(r.stdout)


def _install(disk: Disk, bundle: Path, keys, *extra: str):
    return hems_update("install", bundle, "--disk", disk.path, "--pubkey", keys.pub, *extra)


def _ext4_file(disk: Disk, slot: str, size: int, path: str, tmp: Path) -> str:
    """Read a file out of the ext4 file system written into the slot (debugfs on the extracted bytes)."""
    img = tmp / f"slot-{slot}.ext4"
    img.write_bytes(disk.slot_bytes(slot, size))
    r = run([_tool("debugfs"), "-R", f"cat {path}", str(img)])
    assert r.returncode == 0, r.stderr
    return r.stdout


def test_gpt_is_read_like_sfdisk_does(disk: Disk):
    parts = slots.read_gpt(disk.path)
    assert sorted(parts) == ["hems-boot", "hems-data", "hems-root-a", "hems-root-b"]
    for label, p in parts.items():
        assert (p.offset_bytes, p.size_bytes, p.number) == (
            disk.offset(label), disk.size(label), disk.parts[label]["number"],
        )  # fmt: skip
    assert parts["hems-root-a"].size_bytes == parts["hems-root-b"].size_bytes == 8 << 20


def _disk_env(disk: Disk) -> tuple[str, str | None, int]:
    """The loader's environment read out of the FAT partition with mtools; both copies must be the same block."""
    primary = disk.boot_file(slots.BOOT_ENV)
    assert primary is not None and len(primary) == 1024 and primary.startswith(b"# GRUB Environment Block\n")
    assert disk.boot_file(slots.BOOT_ENV_BACKUP) == primary
    env = slots.parse_env(primary)
    return env["hems_slot"], env["hems_try"] or None, int(env["hems_try_left"])


def _next_boot_json(slot: str, trial: bool, env_slot: str, try_slot: str | None, left: int) -> dict:
    env = {"slot": env_slot, "try": try_slot, "try_left": left, "source": slots.BOOT_ENV}
    return {"slot": slot, "trial": trial, "env": env}


def test_the_fixture_disk_is_initialised_like_the_image_build(disk: Disk):
    assert _disk_env(disk) == ("a", None, 0)
    assert slots.parse_env(disk.boot_file("slot-a/boot.env")) == {"hems_cmdline": CMDLINE}
    assert disk.boot_file("slot-a/cmdline.txt") == (CMDLINE + "\n").encode()
    assert disk.boot_file("config.txt") == CONFIG_TXT.encode()
    booted = loader_boot(disk.boot())
    assert (booted.slot, booted.trial, booted.cmdline) == ("a", False, CMDLINE)
    assert booted.kernel.startswith(b"KERNEL 0.1.0")
    r = hems_update("select-boot", "--disk", disk.path)
    assert r.returncode == 0 and json.loads(r.stdout) == _next_boot_json("a", False, "a", None, 0)


def test_update_commits_after_a_healthy_trial_boot(disk: Disk, bundles, keys, gateway, tmp_path):
    slot_a = disk.slot_sha("a")
    untouched = {name: disk.boot_file(name) for name in ("config.txt", "start4.elf", "u-boot.bin")}
    # the gateway is up with 5 devices ok before the update: the trial must reach 5 again
    before = gateway([healthz(ok=5)])
    r = _install(disk, bundles["0.2.0"], keys, "--health-url", before.url)
    assert r.returncode == 0, r.stderr
    assert "installed 0.2.0 into slot b (was 0.1.0)" in r.stdout
    assert "run `hems-update reboot` to try it" in r.stdout

    image = bundles["0.2.0.ext4"].read_bytes()
    assert disk.slot_bytes("b", len(image)) == image  # the slot holds exactly the signed image
    assert disk.slot_sha("a") == slot_a  # the running slot is untouched
    assert _ext4_file(disk, "b", len(image), "/etc/hems-version", tmp_path) == "0.2.0\n"
    src = bundles["0.2.0.boot"]
    for name in ("vmlinuz", "initrd.img", "bcm2711-rpi-4-b.dtb", "overlays/vc4-kms-v3d.dtbo"):
        assert disk.boot_file(f"slot-b/{name}") == (src / name).read_bytes(), name
    cmdline_b = CMDLINE.replace("hems-root-a", "hems-root-b")
    assert disk.boot_file("slot-b/cmdline.txt") == (cmdline_b + "\n").encode()
    assert slots.parse_env(disk.boot_file("slot-b/boot.env")) == {"hems_cmdline": cmdline_b}
    assert {name: disk.boot_file(name) for name in untouched} == untouched
    assert _disk_env(disk) == ("a", "b", 0)  # the trial is named, not armed: a reset still boots a

    st = _status(disk)
    assert (st["committed"], st["trying"], st["trial_requested"]) == ("a", "b", False)
    assert st["next_boot"] == _next_boot_json("a", False, "a", "b", 0)
    assert st["slots"]["b"]["status"] == "pending" and st["devices_ok_before"] == 5
    assert loader_boot(disk.boot()).slot == "a"  # an unplanned reset before `reboot`: nothing changes
    assert _disk_env(disk) == ("a", "b", 0)

    # `hems-update reboot` arms the trial (then reboots, which a disk image file refuses to do)
    slots.arm_trial(disk.boot())
    assert _disk_env(disk) == ("a", "b", 1)
    assert _status(disk)["next_boot"] == _next_boot_json("b", True, "a", "b", 1)
    # the trial boot, as the boot loader does it: spend the trial, then start slot b's kernel
    booted = loader_boot(disk.boot())
    assert (booted.slot, booted.trial) == ("b", True)
    assert booted.kernel == (src / "vmlinuz").read_bytes()
    assert booted.cmdline == cmdline_b + " hems.trial=1"
    assert _disk_env(disk) == ("a", "b", 0)
    proc_cmdline = tmp_path / "cmdline"
    proc_cmdline.write_text(booted.cmdline + "\n")
    assert slots.booted_slot(proc_cmdline) == "b" and slots.booted_as_trial(proc_cmdline) is True

    r = hems_update("boot-check", "--disk", disk.path, "--booted-slot", "b", "--trial")
    assert r.returncode == 0 and "trial boot 1 of slot b" in r.stdout
    # the new gateway starts (503), then is ok but with devices still reconnecting, then all 5 are back
    after = gateway([healthz("starting", ok=0), healthz(ok=3, offline=2), healthz(ok=5)])
    r = hems_update(
        "health-check", "--disk", disk.path, "--booted-slot", "b", "--url", after.url, "--service", "",
        "--interval", "0.1", "--timeout", "60",
    )  # fmt: skip
    assert r.returncode == 0, r.stdout + r.stderr
    assert "healthy after" in r.stdout and "devices: 5 ok of 5, 5 needed" in r.stdout
    assert after.requests_healthz >= 3
    r = hems_update("commit", "--disk", disk.path, "--booted-slot", "b")
    assert r.returncode == 0 and "committed slot b (version 0.2.0)" in r.stdout

    assert _disk_env(disk) == ("b", None, 0)
    assert {name: disk.boot_file(name) for name in untouched} == untouched
    for _ in range(2):  # every later boot is slot b, not a trial
        booted = loader_boot(disk.boot())
        assert (booted.slot, booted.trial, booted.cmdline) == ("b", False, cmdline_b)
    r = hems_update("select-boot", "--disk", disk.path)
    assert r.returncode == 0 and json.loads(r.stdout) == _next_boot_json("b", False, "b", None, 0)
    st = _status(disk)
    assert (st["committed"], st["trying"], st["slots"]["b"]["status"]) == ("b", None, "good")
    assert st["last_health"]["ok"] is True and st["attempts"] == 1
    assert [h["event"] for h in st["history"]] == ["installed", "committed"]
    assert disk.slot_sha("a") == slot_a

    # the next update goes to the other slot, a; the now-old 0.2.0 cannot come back
    r = _install(disk, bundles["0.2.0"], keys)
    assert r.returncode == 3 and "is the same version: the gateway runs 0.2.0" in r.stderr
    r = _install(disk, bundles["0.3.0"], keys)
    assert r.returncode == 0, r.stderr
    assert "into slot a (was 0.2.0)" in r.stdout
    image3 = bundles["0.3.0.ext4"].read_bytes()
    assert disk.slot_bytes("a", len(image3)) == image3
    assert disk.slot_bytes("b", len(image)) == image
    assert _disk_env(disk) == ("b", "a", 0)
    assert slots.parse_env(disk.boot_file("slot-a/boot.env")) == {"hems_cmdline": CMDLINE}
    assert disk.boot_file("slot-a/vmlinuz") == (bundles["0.3.0.boot"] / "vmlinuz").read_bytes()


def test_failed_health_check_rolls_back_to_the_old_slot(disk: Disk, bundles, keys, gateway):
    slot_a = disk.slot_sha("a")
    config_before = disk.boot_file("config.txt")
    r = _install(disk, bundles["0.2.0"], keys)
    assert r.returncode == 0, r.stderr
    slots.arm_trial(disk.boot())
    assert loader_boot(disk.boot()).slot == "b"
    r = hems_update("boot-check", "--disk", disk.path, "--booted-slot", "b", "--trial")
    assert r.returncode == 0 and "trial boot 1 of slot b" in r.stdout
    broken = gateway([healthz("starting", ok=0)], dashboard_ok=False)  # the new version never gets up
    r = hems_update(
        "health-check", "--disk", disk.path, "--booted-slot", "b", "--url", broken.url, "--service", "",
        "--interval", "0.1", "--timeout", "1",
    )  # fmt: skip
    assert r.returncode == 4
    assert "NOT healthy" in r.stdout and "healthz: HTTP 503, status 'starting'" in r.stdout
    assert "dashboard: HTTP 500" in r.stdout
    r = hems_update("rollback", "--disk", disk.path, "--booted-slot", "b")
    assert r.returncode == 0, r.stderr
    assert "rolled back slot b: health check failed: healthz: HTTP 503" in r.stdout

    assert disk.boot_file("config.txt") == config_before  # config.txt untouched
    assert _disk_env(disk) == ("a", None, 0)
    booted = loader_boot(disk.boot())
    assert (booted.slot, booted.trial) == ("a", False)
    assert disk.slot_sha("a") == slot_a
    st = _status(disk)
    assert (st["committed"], st["trying"], st["slots"]["b"]["status"]) == ("a", None, "bad")
    assert st["next_boot"] == _next_boot_json("a", False, "a", None, 0)
    assert st["last"]["event"] == "rolled-back" and st["last"]["version"] == "0.2.0"
    assert "dashboard: HTTP 500" in st["last"]["reason"]
    # back on slot a the boot-check has nothing to do, and the same update can be tried again later
    r = hems_update("boot-check", "--disk", disk.path, "--booted-slot", "a")
    assert r.returncode == 0 and "no update pending" in r.stdout
    r = _install(disk, bundles["0.2.0"], keys)
    assert r.returncode == 0, r.stderr
    assert _disk_env(disk) == ("a", "b", 0)


def test_a_new_slot_that_never_boots_falls_back(disk: Disk, bundles, keys):
    assert _install(disk, bundles["0.2.0"], keys).returncode == 0
    slots.arm_trial(disk.boot())  # what `hems-update reboot` records before rebooting
    assert _status(disk)["trial_requested"] is True
    booted = loader_boot(disk.boot())
    assert (booted.slot, booted.trial) == ("b", True)
    # the trial kernel panics before boot-check runs; the board resets and the loader starts slot a
    booted = loader_boot(disk.boot())
    assert (booted.slot, booted.trial) == ("a", False)
    r = hems_update("boot-check", "--disk", disk.path, "--booted-slot", "a")
    assert r.returncode == 0
    assert "rolled back: slot b did not boot (the boot loader fell back to slot a)" in r.stdout
    st = _status(disk)
    assert st["trying"] is None and st["slots"]["b"]["status"] == "bad"
    assert _disk_env(disk) == ("a", None, 0)


def test_a_lost_or_torn_env_on_the_fat_partition(disk: Disk, bundles, keys):
    assert _install(disk, bundles["0.2.0"], keys).returncode == 0
    boot = disk.boot()
    slots.arm_trial(boot)
    armed = disk.boot_file(slots.BOOT_ENV)
    # a power cut tore the primary copy inside its header: the loader and hems-update both take the backup
    boot.write(slots.BOOT_ENV, armed[:20])
    st = _status(disk)
    assert st["next_boot"]["env"]["source"] == slots.BOOT_ENV_BACKUP
    assert (st["next_boot"]["slot"], st["next_boot"]["trial"]) == ("b", True)
    # both copies gone: the loader starts slot a, status says so, boot-check writes the env again
    boot.delete(slots.BOOT_ENV)
    boot.delete(slots.BOOT_ENV_BACKUP)
    assert disk.boot_file(slots.BOOT_ENV) is None and disk.boot_file(slots.BOOT_ENV_BACKUP) is None
    st = _status(disk)
    assert st["next_boot"] == {"slot": "a", "trial": False, "env": None}
    assert f"{slots.BOOT_ENV} is missing or damaged: the boot loader falls back to slot a" in st["warnings"]
    r = hems_update("select-boot", "--disk", disk.path)
    assert json.loads(r.stdout) == {"slot": "a", "trial": False, "env": None}
    assert loader_boot(boot).slot == "a"
    r = hems_update("boot-check", "--disk", disk.path, "--booted-slot", "a")
    assert r.returncode == 0, r.stderr
    # the state says hems-update reboot armed a trial that the lost env never started: slot b failed
    assert "rolled back: slot b did not boot" in r.stdout
    assert _disk_env(disk) == ("a", None, 0)
    assert _status(disk)["slots"]["b"]["status"] == "bad"


def test_replacing_a_pending_update_and_an_optional_initrd(disk: Disk, bundles, keys, tmp_path):
    from firmware import bundle

    assert _install(disk, bundles["0.2.0"], keys).returncode == 0
    assert disk.boot_file("slot-b/initrd.img") is not None
    kernel = tmp_path / "vmlinuz"
    kernel.write_bytes(b"KERNEL ONLY 0.3.0")
    path = tmp_path / "kernel-only.hemsu"
    bundle.make_bundle(
        path, key=bundle.load_private_key(keys.key), rootfs=make_rootfs(tmp_path, "0.3.0", 4), version="0.3.0",
        arch="amd64", boot_files={"vmlinuz": kernel}, cmdline="console=ttyS0 root=/dev/sda2 panic=10",
    )  # fmt: skip
    r = _install(disk, path, keys)
    assert r.returncode == 0, r.stderr
    assert "replacing the pending, untried update to slot b" in r.stderr
    assert disk.boot_file("slot-b/vmlinuz") == b"KERNEL ONLY 0.3.0"
    for gone in ("initrd.img", "bcm2711-rpi-4-b.dtb", "overlays/vc4-kms-v3d.dtbo"):
        assert disk.boot_file(f"slot-b/{gone}") is None, gone  # nothing of the replaced update is left
    want = "console=ttyS0 root=PARTLABEL=hems-root-b panic=10"
    assert slots.parse_env(disk.boot_file("slot-b/boot.env")) == {"hems_cmdline": want}
    assert _disk_env(disk) == ("a", "b", 0)
    st = _status(disk)
    assert (st["trying"], st["slots"]["b"]["version"], st["slots"]["b"]["status"]) == (
        "b",
        "0.3.0",
        "pending",
    )
    slots.arm_trial(disk.boot())
    booted = loader_boot(disk.boot())
    assert (booted.slot, booted.kernel, booted.cmdline) == ("b", b"KERNEL ONLY 0.3.0", want + " hems.trial=1")


def _truncated(src: Path, tmp: Path) -> Path:
    p = tmp / "truncated.hemsu"
    p.write_bytes(src.read_bytes()[: src.stat().st_size * 2 // 3])
    return p


def _tampered(src: Path, tmp: Path) -> Path:
    raw = bytearray(src.read_bytes())
    (mlen,) = struct.unpack(">I", raw[8:12])
    raw[12 + mlen + 66 + 500] ^= 0x40  # inside the rootfs payload
    p = tmp / "tampered.hemsu"
    p.write_bytes(raw)
    return p


def _bad_sig(src: Path, tmp: Path) -> Path:
    raw = bytearray(src.read_bytes())
    (mlen,) = struct.unpack(">I", raw[8:12])
    raw[12 + mlen + 2] ^= 0x01
    p = tmp / "badsig.hemsu"
    p.write_bytes(raw)
    return p


def _arm64(src: Path, tmp: Path, keys) -> Path:
    from firmware import bundle

    p = tmp / "arm64.hemsu"
    bundle.make_bundle(
        p, key=bundle.load_private_key(keys.key), rootfs=make_rootfs(tmp, "0.2.0", 4), version="0.2.0",
        arch="arm64", boot_files={},
    )  # fmt: skip
    return p


def _too_big(src: Path, tmp: Path, keys) -> Path:
    from firmware import bundle

    p = tmp / "big.hemsu"
    bundle.make_bundle(
        p, key=bundle.load_private_key(keys.key), rootfs=make_rootfs(tmp, "0.9.0", 9), version="0.9.0",
        arch="amd64", boot_files={},
    )  # fmt: skip
    return p


def _old(src: Path, tmp: Path, keys) -> Path:
    from firmware import bundle

    p = tmp / "old.hemsu"
    bundle.make_bundle(
        p, key=bundle.load_private_key(keys.key), rootfs=make_rootfs(tmp, "0.0.9", 4), version="0.0.9",
        arch="amd64", boot_files={},
    )  # fmt: skip
    return p


REFUSALS = {
    "bad signature": (lambda s, t, k: _bad_sig(s, t), "bad signature: not signed by a trusted update key"),
    "wrong key": (None, "it claims key"),
    "tampered payload": (lambda s, t, k: _tampered(s, t), "payload rootfs has the wrong sha256"),
    "truncated": (lambda s, t, k: _truncated(s, t), "is truncated"),
    "wrong arch": (_arm64, "bundle is for arm64 but this gateway is amd64"),
    "downgrade": (_old, "bundle version 0.0.9 is a downgrade: the gateway runs 0.1.0"),
    "too big for the slot": (_too_big, "holds 8388608 bytes"),
}


@pytest.mark.parametrize("case", list(REFUSALS))
def test_refused_bundles_change_nothing(case, disk: Disk, bundles, keys, tmp_path):
    make, message = REFUSALS[case]
    path = make(bundles["0.2.0"], tmp_path, keys) if make else bundles["0.2.0"]
    pub = keys.other_pub if case == "wrong key" else keys.pub
    before = disk.sha()
    r = hems_update("install", path, "--disk", disk.path, "--pubkey", pub)
    assert r.returncode == 3, (r.stdout, r.stderr)
    last = r.stderr.strip().splitlines()[-1]  # progress lines may come first
    assert last.startswith("hems-update: refused: ") and message in last, r.stderr
    assert disk.sha() == before  # not one byte of the disk image changed


def test_cli_errors_name_the_problem(disk: Disk, bundles, keys, tmp_path):
    r = hems_update("commit", "--disk", disk.path, "--booted-slot", "a")
    assert r.returncode == 1 and "nothing to commit" in r.stderr
    r = hems_update("commit", "--disk", disk.path, "--booted-slot", "a", "--if-trying")
    assert r.returncode == 0 and "nothing to commit" in r.stdout
    r = hems_update("rollback", "--disk", disk.path, "--if-trying")
    assert r.returncode == 0 and "nothing to roll back" in r.stdout
    r = hems_update("reboot", "--disk", disk.path)
    assert r.returncode == 1 and "not a disk image file" in r.stderr
    r = hems_update("boot-check", "--disk", disk.path, "--tryboot")  # the Pi tryboot option is gone
    assert r.returncode == 2 and "unrecognized arguments: --tryboot" in r.stderr
    r = hems_update("health-check", "--disk", disk.path, "--booted-slot", "a")
    assert r.returncode == 0 and "not a trial" in r.stdout
    r = hems_update("install", bundles["0.2.0"], "--disk", tmp_path / "nope.img", "--pubkey", keys.pub)
    assert r.returncode == 1 and "does not exist" in r.stderr
    not_gpt = tmp_path / "blank.img"
    not_gpt.write_bytes(b"\0" * 8192)
    r = hems_update("install", bundles["0.2.0"], "--disk", not_gpt, "--pubkey", keys.pub)
    assert r.returncode == 1 and "has no GPT partition table" in r.stderr
    assert _install(disk, bundles["0.2.0"], keys).returncode == 0
    r = hems_update("commit", "--disk", disk.path)
    assert r.returncode == 1 and "can only be committed from a boot of slot b" in r.stderr
    r = _install(disk, bundles["0.3.0"], keys, "--booted-slot", "b")
    assert r.returncode == 1 and "this boot is the trial of slot b" in r.stderr
    r = hems_update("select-boot", "--disk", disk.path)
    assert json.loads(r.stdout) == _next_boot_json("a", False, "a", "b", 0)
    r = hems_update("reboot", "--disk", disk.path)  # refused before anything is armed
    assert r.returncode == 1 and _disk_env(disk) == ("a", "b", 0)


def test_boot_files_that_do_not_fit_are_refused_before_writing(disk: Disk, keys, tmp_path):
    from firmware import bundle

    kernel = tmp_path / "vmlinuz"
    kernel.write_bytes(os.urandom(10 << 20))  # boot files are stored as they are: 2 × 10 MiB > the 16 MiB FAT
    path = tmp_path / "fat.hemsu"
    bundle.make_bundle(
        path, key=bundle.load_private_key(keys.key), rootfs=make_rootfs(tmp_path, "0.2.0", 4), version="0.2.0",
        arch="amd64", boot_files={"vmlinuz": kernel, "initrd.img": kernel},
    )  # fmt: skip
    before = disk.sha()
    r = _install(disk, path, keys)
    assert r.returncode == 1
    m = re.search(
        r"the boot partition has (\d+) bytes for slot-b/ but the bundle's boot files need (\d+)", r.stderr
    )
    assert m, r.stderr
    # two 10 MiB files, the slot's command line, and the two copies of the loader's 1024-byte environment
    cmdline = slots.cmdline_for_slot(CMDLINE, "b")
    assert int(m.group(2)) == 2 * (10 << 20) + len(cmdline) + 2 * 1024
    assert int(m.group(1)) < 16 << 20
    assert disk.sha() == before


def test_a_bundle_without_the_kernel_the_loader_starts_is_refused(disk: Disk, keys, tmp_path):
    from firmware import bundle

    initrd = tmp_path / "initrd.img"
    initrd.write_bytes(b"initrd")
    path = tmp_path / "nokernel.hemsu"
    bundle.make_bundle(
        path, key=bundle.load_private_key(keys.key), rootfs=make_rootfs(tmp_path, "0.2.0", 4), version="0.2.0",
        arch="amd64", boot_files={"initrd.img": initrd},
    )  # fmt: skip
    before = disk.sha()
    r = _install(disk, path, keys)
    assert r.returncode == 3
    assert "the bundle has no vmlinuz, the kernel the boot loader starts; slot b could not boot" in r.stderr
    assert disk.sha() == before


def test_two_installs_at_once_do_not_interleave(disk: Disk, bundles, keys):
    import fcntl

    with open(disk.path, "rb") as held:
        fcntl.flock(held, fcntl.LOCK_EX)  # another hems-update holds the disk
        r = _install(disk, bundles["0.2.0"], keys)
    assert r.returncode == 1 and "another hems-update is working on" in r.stderr
    assert _install(disk, bundles["0.2.0"], keys).returncode == 0


def test_a_mounted_boot_partition_is_locked_too(tmp_path):
    import fcntl

    boot = tmp_path / "boot"
    boot.mkdir()
    (boot / "config.txt").write_text(CONFIG_TXT)
    fd = os.open(boot, os.O_RDONLY)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        r = hems_update("rollback", "--boot-dir", boot, "--booted-slot", "a")
        assert r.returncode == 1 and f"another hems-update is working on {boot}" in r.stderr
    finally:
        os.close(fd)
    r = hems_update("rollback", "--boot-dir", boot, "--booted-slot", "a")
    assert r.returncode == 1 and "nothing to roll back" in r.stderr


def test_install_units_renders_paths(tmp_path):
    r = hems_update("install-units", "--dest", tmp_path, "--exe", "/opt/hems/venv/bin/hems-update")
    assert r.returncode == 0, r.stderr
    units = sorted(p.name for p in tmp_path.iterdir())
    assert units == [
        "hems-update-boot-check.service", "hems-update-commit.service", "hems-update-health.service",
        "hems-update-rollback.service",
    ]  # fmt: skip
    health = (tmp_path / "hems-update-health.service").read_text()
    assert "ExecStart=/opt/hems/venv/bin/hems-update health-check" in health
    assert (
        "OnSuccess=hems-update-commit.service" in health
        and "OnFailure=hems-update-rollback.service" in health
    )
    assert "/usr/local/bin" not in "".join(p.read_text() for p in tmp_path.iterdir())
