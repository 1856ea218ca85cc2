"""``hems-update``: make, verify and install signed gateway update bundles; switch, commit and roll back slots.

Exit codes: 0 done (or nothing to do), 1 error (disk, boot partition, state), 2 usage, 3 bundle refused
(signature, hash, truncated, arch, downgrade, format, key), 4 health check failed.
"""

from __future__ import annotations

import argparse
import contextlib
import fcntl
import json
import os
import subprocess
import sys
from importlib import resources
from pathlib import Path

from . import bundle as bundlemod
from . import health, slots
from .bundle import BundleError
from .slots import SlotError

EXIT_ERROR, EXIT_USAGE, EXIT_REFUSED, EXIT_UNHEALTHY = 1, 2, 3, 4
DEFAULT_EXE = "/usr/local/bin/hems-update"


def _err(msg: str) -> None:
    print(f"hems-update: {msg}", file=sys.stderr, flush=True)


def _where(p: argparse.ArgumentParser, disk: bool = True) -> None:
    if disk:
        p.add_argument(
            "--disk",
            metavar="DEV_OR_IMAGE",
            help="the gateway disk: a block device, or a disk image FILE (its boot partition is then reached with mtools)",
        )
    p.add_argument(
        "--boot-dir", metavar="DIR", help=f"the mounted boot partition (default {slots.DEFAULT_BOOT_DIR})"
    )
    p.add_argument(
        "--booted-slot",
        choices=slots.SLOTS,
        help="the slot the running system booted (default: from /proc/cmdline; none for a disk image file)",
    )


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="hems-update", description="Signed A/B updates of the HEMS gateway")
    sub = p.add_subparsers(dest="command", required=True, metavar="COMMAND")

    k = sub.add_parser("keygen", help="make an Ed25519 update signing key pair: PREFIX.key and PREFIX.pub")
    k.add_argument("prefix", metavar="PREFIX")

    mb = sub.add_parser("make-bundle", help="build a signed update bundle (on the build machine)")
    mb.add_argument("--key", required=True, metavar="FILE", help="the private signing key (PREFIX.key)")
    mb.add_argument("--rootfs", required=True, metavar="IMG", help="the new root slot's ext4 image")
    mb.add_argument("--version", required=True, help="the gateway version the image holds, e.g. 0.2.0")
    mb.add_argument("--arch", default=bundlemod.machine_arch(), choices=bundlemod.ARCHES)
    mb.add_argument(
        "--boot-dir", metavar="DIR", help="the slot's boot files (vmlinuz, initrd.img, dtbs, overlays/)"
    )
    mb.add_argument(
        "--boot-file",
        action="append",
        default=[],
        metavar="NAME=FILE",
        help="one more boot file (repeatable)",
    )
    mb.add_argument(
        "--cmdline", help="kernel command line (root= is set per slot); default: boot dir's cmdline.txt"
    )
    mb.add_argument("--min-from-version", metavar="V", help="refuse to install over versions older than V")
    mb.add_argument("--compression", choices=bundlemod.COMPRESSIONS, default="gzip")
    mb.add_argument("-o", "--output", required=True, metavar="BUNDLE")

    ins = sub.add_parser("inspect", help="print a bundle's manifest and whether its signature is good")
    ins.add_argument("bundle")
    ins.add_argument(
        "--pubkey", metavar="FILE", help=f"trusted public key(s) (default {bundlemod.DEFAULT_PUBKEY})"
    )

    ver = sub.add_parser("verify", help="check a bundle's signature and every payload hash; writes nothing")
    ver.add_argument("bundle")
    ver.add_argument("--pubkey", metavar="FILE", default=bundlemod.DEFAULT_PUBKEY)

    inst = sub.add_parser(
        "install", help="verify a bundle, write it into the inactive slot, stage a trial boot"
    )
    inst.add_argument("bundle")
    _where(inst)
    inst.add_argument("--pubkey", metavar="FILE", default=bundlemod.DEFAULT_PUBKEY)
    inst.add_argument(
        "--health-url", help="gateway URL to count ok devices before the update (default: from the config)"
    )
    inst.add_argument("--reboot", action="store_true", help="reboot into the new slot (trial boot) when done")
    inst.add_argument("--json", action="store_true", help="print the result as JSON")

    rb = sub.add_parser("reboot", help="reboot into the pending slot once (a trial boot)")
    _where(rb)

    bc = sub.add_parser(
        "boot-check", help="at boot: count a trial boot, or record that the new slot failed to boot"
    )
    _where(bc)
    bc.add_argument("--trial", action="store_true", default=None, help="treat this boot as a trial boot")
    bc.add_argument(
        "--reboot", action="store_true", help="reboot when it rolled back the slot this system runs"
    )

    hc = sub.add_parser("health-check", help="after a trial boot: is the gateway up? (exit 0 yes, 4 no)")
    _where(hc)
    hc.add_argument("--url", help=f"gateway URL (default: from --config, else {health.DEFAULT_URL})")
    hc.add_argument("--config", default=health.DEFAULT_CONFIG, help="gateway config for the URL")
    hc.add_argument(
        "--service", default=health.DEFAULT_SERVICE, help="systemd unit that must be active ('' = none)"
    )
    hc.add_argument("--timeout", type=float, default=300.0, metavar="S", help="give up after S seconds (300)")
    hc.add_argument("--interval", type=float, default=2.0, metavar="S", help=argparse.SUPPRESS)
    hc.add_argument(
        "--min-devices",
        type=int,
        metavar="N",
        help="devices that must be ok (default: as many as before the update)",
    )
    hc.add_argument("--always", action="store_true", help="check even when this boot is not a trial boot")

    cm = sub.add_parser("commit", help="make the trial slot the committed one (from a boot of that slot)")
    _where(cm)
    cm.add_argument("--if-trying", action="store_true", help="exit 0 quietly when this boot is not a trial")

    ro = sub.add_parser("rollback", help="abandon the trial slot: the committed slot keeps booting")
    _where(ro)
    ro.add_argument("--reason", help="why (default: the last health check's failures)")
    ro.add_argument(
        "--reboot", action="store_true", help="reboot into the committed slot if not booted from it"
    )
    ro.add_argument("--if-trying", action="store_true", help="exit 0 quietly when no update is being tried")

    st = sub.add_parser("status", help="print the slot state as JSON")
    _where(st)

    sb = sub.add_parser("select-boot", help="what the boot loader boots next from this boot partition (JSON)")
    _where(sb)

    ini = sub.add_parser(
        "init", help="write the initial hems-slots.json, hems-boot.env and the slot's boot.env (image build)"
    )
    _where(ini)
    ini.add_argument("--version", required=True)
    ini.add_argument("--arch", required=True, choices=bundlemod.ARCHES)
    ini.add_argument("--slot", choices=slots.SLOTS, default="a")

    iu = sub.add_parser("install-units", help="copy the boot-check/health/commit/rollback systemd units")
    iu.add_argument("--dest", default="/etc/systemd/system", metavar="DIR")
    iu.add_argument("--exe", default=DEFAULT_EXE, help=f"path of hems-update on the gateway ({DEFAULT_EXE})")
    iu.add_argument("--boot-dir", default=slots.DEFAULT_BOOT_DIR)
    return p


def _is_image_file(disk: str | None) -> bool:
    return bool(disk) and Path(disk).is_file()


def _boot(args) -> slots.BootFiles:
    if getattr(args, "boot_dir", None):
        return slots.DirBoot(args.boot_dir)
    if _is_image_file(getattr(args, "disk", None)):
        return slots.open_disk_boot(args.disk)
    return slots.DirBoot(slots.DEFAULT_BOOT_DIR)


def _booted(args) -> str | None:
    if args.booted_slot:
        return args.booted_slot
    if _is_image_file(getattr(args, "disk", None)):
        return None  # nothing runs from an image file
    return slots.booted_slot()


def _print_json(obj) -> None:
    print(json.dumps(obj, indent=2, sort_keys=True))


def cmd_keygen(args) -> int:
    key, pub = bundlemod.keygen(args.prefix)
    kid = bundlemod.key_id(bundlemod.load_public_keys(pub)[0])
    print(f"private key: {key} (keep it off the gateways; mode 0600)\npublic key:  {pub} (key id {kid})")
    print(f"bake {pub} into the image as {bundlemod.DEFAULT_PUBKEY}")
    return 0


def cmd_make_bundle(args) -> int:
    boot_files: dict[str, Path] = {}
    cmdline = args.cmdline
    if args.boot_dir:
        boot_files.update(bundlemod.boot_files_of_dir(args.boot_dir))
        cmdline_file = Path(args.boot_dir) / "cmdline.txt"
        if cmdline is None and cmdline_file.exists():
            cmdline = cmdline_file.read_text()
    for spec in args.boot_file:
        name, sep, path = spec.partition("=")
        if not sep or not Path(path).is_file():
            raise BundleError("format", f"--boot-file {spec!r}: want NAME=FILE with an existing FILE")
        boot_files[name] = Path(path)
    if not any(Path(n).name == "vmlinuz" for n in boot_files):
        _err("warning: the bundle has no vmlinuz; the slot will keep no kernel of its own")
    manifest = bundlemod.make_bundle(
        args.output,
        key=bundlemod.load_private_key(args.key),
        rootfs=args.rootfs,
        version=args.version,
        arch=args.arch,
        boot_files=boot_files,
        cmdline=cmdline,
        min_from_version=args.min_from_version,
        compression=args.compression,
    )
    size = Path(args.output).stat().st_size
    rootfs = manifest["payloads"][0]
    print(
        f"{args.output}: version {manifest['version']} ({manifest['arch']}), {size} bytes, root image "
        f"{rootfs['image_size_bytes']} bytes ({rootfs['compression']}), {len(manifest['payloads']) - 1} boot files, "
        f"key {manifest['key_id']}"
    )
    return 0


def cmd_inspect(args) -> int:
    pub = args.pubkey or bundlemod.DEFAULT_PUBKEY
    trusted = bundlemod.load_public_keys(pub) if (args.pubkey or Path(pub).exists()) else None
    b = bundlemod.Bundle.open(args.bundle, trusted)
    out = {"manifest": b.manifest, "signature": f"good (key {b.signer_key_id})" if trusted else "not checked"}
    _print_json(out)
    return 0


def cmd_verify(args) -> int:
    b = bundlemod.Bundle.open(args.bundle, bundlemod.load_public_keys(args.pubkey))
    b.verify_payloads()
    print(
        f"{args.bundle}: good: version {b.version} ({b.manifest['arch']}), signed by key {b.signer_key_id}, "
        f"{len(b.manifest['payloads'])} payloads match, sha256 {b.sha256}"
    )
    return 0


def _reboot_trial(boot: slots.BootFiles) -> int:
    state = slots.arm_trial(boot)
    cmd = ["systemctl", "reboot"]
    print(f"rebooting for a trial boot of slot {state['trying']}: {' '.join(cmd)}", flush=True)
    return subprocess.run(cmd, check=False).returncode


def _refuse_reboot_on_image(args) -> None:
    if _is_image_file(getattr(args, "disk", None)):
        raise SlotError("rebooting is for a running gateway, not a disk image file")


def cmd_install(args) -> int:
    if args.reboot:
        _refuse_reboot_on_image(args)
    image = _is_image_file(args.disk)
    disk = args.disk or str(slots.find_root_disk())
    boot = _boot(args)
    devices_before = None
    if args.health_url or not image:
        devices_before = health.devices_ok_now(args.health_url or health.url_from_config())
    current = None
    if not image:
        from hems import __version__  # the running gateway's version when the state file does not say

        current = __version__
    result = bundlemod.install_bundle(
        args.bundle,
        disk=disk,
        boot=boot,
        trusted=bundlemod.load_public_keys(args.pubkey),
        booted=_booted(args),
        current_version=current,
        devices_ok_before=devices_before,
        log=lambda m: _err(m) if not args.json else None,
    )
    if args.json:
        _print_json(result)
    else:
        print(
            f"installed {result['version']} into slot {result['slot']} (was {result['previous_version']}): "
            f"{result['image_size_bytes']} bytes, verify {result['verify_s']} s, write {result['write_s']} s, "
            f"read-back {result['readback_s']} s"
        )
        if not args.reboot:
            print(
                "run `hems-update reboot` to try it; it becomes permanent only after the health check passes"
            )
    if args.reboot:
        return _reboot_trial(boot)
    return 0


def cmd_reboot(args) -> int:
    _refuse_reboot_on_image(args)
    return _reboot_trial(_boot(args))


def cmd_boot_check(args) -> int:
    if args.trial is not None:
        trial = args.trial
    else:  # a disk image file has no kernel command line of its own
        trial = False if _is_image_file(getattr(args, "disk", None)) else slots.booted_as_trial()
    booted = _booted(args)
    what, state = slots.boot_check(_boot(args), booted, trial)
    print(f"boot-check: {what}")
    if args.reboot and booted is not None and state.get("trying") is None and booted != state["committed"]:
        _refuse_reboot_on_image(args)
        print(f"rebooting into the committed slot {state['committed']}", flush=True)
        return subprocess.run(["systemctl", "reboot"], check=False).returncode
    return 0


def cmd_health_check(args) -> int:
    boot = _boot(args)
    state = slots.read_state(boot)
    booted = _booted(args)
    trial = state.get("trying") is not None and booted == state["trying"]
    if not trial and not args.always:
        print("health-check: this boot is not a trial of a new slot; nothing to check")
        return 0
    url = args.url or health.url_from_config(args.config)
    need = args.min_devices if args.min_devices is not None else int(state.get("devices_ok_before") or 0)
    report = health.check_health(
        url,
        service=args.service or None,
        min_devices_ok=need,
        timeout_s=args.timeout,
        interval_s=args.interval,
        log=_err,
    )
    if trial:
        state = slots.read_state(boot)
        state["last_health"] = {**report.to_json(), "slot": booted, "ts": slots.now_iso()}
        slots.write_state(boot, state)
    for c in report.checks:
        print(f"  {'ok  ' if c.ok else 'FAIL'} {c.name}: {c.detail}")
    if report.ok:
        print(f"health-check: healthy after {report.elapsed_s:.1f} s")
        return 0
    print(f"health-check: NOT healthy after {report.elapsed_s:.1f} s: {report.failures()}")
    return EXIT_UNHEALTHY


def cmd_commit(args) -> int:
    boot = _boot(args)
    booted = _booted(args)
    if args.if_trying:
        state = slots.read_state(boot)
        if state.get("trying") is None or booted != state["trying"]:
            print("commit: this boot is not a trial; nothing to commit")
            return 0
    state = slots.commit(boot, booted)
    print(
        f"committed slot {state['committed']} (version {state['slots'][state['committed']].get('version')})"
    )
    return 0


def cmd_rollback(args) -> int:
    boot = _boot(args)
    state = slots.read_state(boot)
    if state.get("trying") is None and args.if_trying:
        print("rollback: no update is being tried; nothing to roll back")
        return 0
    reason = args.reason
    if not reason:
        last = state.get("last_health") or {}
        failed = [f"{c['name']}: {c['detail']}" for c in last.get("checks", []) if not c.get("ok")]
        reason = "health check failed: " + "; ".join(failed) if failed else "rolled back by hand"
    state = slots.rollback(boot, reason)
    committed = state["committed"]
    print(f"rolled back slot {state['last']['slot']}: {reason}; slot {committed} stays committed")
    booted = _booted(args)
    if args.reboot and booted is not None and booted != committed:
        _refuse_reboot_on_image(args)
        print(f"rebooting into slot {committed}", flush=True)
        return subprocess.run(["systemctl", "reboot"], check=False).returncode
    return 0


def _next_boot(boot: slots.BootFiles) -> dict:
    env = slots.read_boot_env(boot)
    slot, trial = slots.next_boot(env)
    return {"slot": slot, "trial": trial, "env": env.to_json() if env else None}


def cmd_status(args) -> int:
    boot = _boot(args)
    state = slots.read_state(boot)
    state["booted"] = _booted(args)
    state["boot_partition"] = boot.label
    state["next_boot"] = _next_boot(boot)
    if state["next_boot"]["env"] is None:
        state.setdefault("warnings", []).append(
            f"{slots.BOOT_ENV} is missing or damaged: the boot loader falls back to slot a"
        )
    _print_json(state)
    return 0


def cmd_select_boot(args) -> int:
    _print_json(_next_boot(_boot(args)))
    return 0


def cmd_init(args) -> int:
    boot = _boot(args)
    slots.write_state(boot, slots.initial_state(args.version, args.arch, args.slot))
    slots.write_boot_env(boot, args.slot)
    cmdline = boot.read(f"slot-{args.slot}/cmdline.txt")
    if cmdline is not None:
        slots.write_slot_cmdline(boot, args.slot, cmdline.decode())
    print(
        f"{slots.STATE_FILE} and {slots.BOOT_ENV} on {boot.label}: slot {args.slot} committed with "
        f"{args.version} ({args.arch})"
    )
    return 0


def cmd_install_units(args) -> int:
    dest = Path(args.dest)
    dest.mkdir(parents=True, exist_ok=True)
    names = []
    for unit in sorted(resources.files("firmware").joinpath("units").iterdir(), key=lambda u: u.name):
        if not unit.name.endswith((".service", ".timer")):
            continue
        text = unit.read_text().replace(DEFAULT_EXE, args.exe).replace(slots.DEFAULT_BOOT_DIR, args.boot_dir)
        (dest / unit.name).write_text(text)
        names.append(unit.name)
    print(f"installed {', '.join(names)} into {dest}")
    print("enable with: systemctl enable hems-update-boot-check.service hems-update-health.service")
    return 0


COMMANDS = {
    "keygen": cmd_keygen,
    "make-bundle": cmd_make_bundle,
    "inspect": cmd_inspect,
    "verify": cmd_verify,
    "install": cmd_install,
    "reboot": cmd_reboot,
    "boot-check": cmd_boot_check,
    "health-check": cmd_health_check,
    "commit": cmd_commit,
    "rollback": cmd_rollback,
    "status": cmd_status,
    "select-boot": cmd_select_boot,
    "init": cmd_init,
    "install-units": cmd_install_units,
}


# commands that change the disk or the boot partition take the lock: one hems-update at a time
LOCKED = {"install", "reboot", "boot-check", "health-check", "commit", "rollback", "init"}


@contextlib.contextmanager
def _lock(args):
    # a disk image file locks itself; a gateway locks its boot partition's directory (writable in the units'
    # sandbox, unlike /run under ProtectSystem=strict)
    if _is_image_file(getattr(args, "disk", None)):
        path = args.disk
    else:
        path = getattr(args, "boot_dir", None) or slots.DEFAULT_BOOT_DIR
        if not os.path.isdir(path):
            yield  # the command itself says that the boot partition is missing
            return
    fd = os.open(path, os.O_RDONLY)
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            raise SlotError(f"another hems-update is working on {path}; try again later") from None
        yield
    finally:
        os.close(fd)


def main(argv: list[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    try:
        with _lock(args) if args.command in LOCKED else contextlib.nullcontext():
            return COMMANDS[args.command](args)
    except BundleError as exc:
        _err(f"refused: {exc}")
        return EXIT_REFUSED
    except SlotError as exc:
        _err(str(exc))
        return EXIT_ERROR
    except PermissionError as exc:
        _err(f"{exc.filename}: permission denied (run as root)")
        return EXIT_ERROR
    except OSError as exc:
        _err(f"{exc}")
        return EXIT_ERROR
    except KeyboardInterrupt:
        _err("interrupted")
        return 130


if __name__ == "__main__":
    sys.exit(main())
