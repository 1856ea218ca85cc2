"""The boot loader's environment (hems-boot.env) and the slot state machine, over a boot partition directory."""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path

import pytest

from firmware import slots
from firmware.slots import BootEnv, SlotError

from .conftest import CONFIG_TXT, hems_update, loader_boot, run

ENV, BAK = slots.BOOT_ENV, slots.BOOT_ENV_BACKUP


@pytest.fixture
def boot(tmp_path: Path) -> Path:
    """A boot partition directory: both slots with kernel/initrd/boot.env/cmdline, env and state a@0.1.0."""
    b = tmp_path / "boot"
    b.mkdir()
    for s in "ab":
        (b / f"slot-{s}").mkdir()
        (b / f"slot-{s}" / "vmlinuz").write_text(f"kernel {s}")
        (b / f"slot-{s}" / "initrd.img").write_text(f"initrd {s}")
        slots.write_slot_cmdline(b, s, "console=ttyS0 root=/dev/sda2 rootwait")
    (b / "config.txt").write_text(CONFIG_TXT)
    slots.write_state(b, slots.initial_state("0.1.0", "arm64", "a"))
    slots.write_boot_env(b, "a")
    return b


def _pend(boot: Path, slot: str = "b", version: str = "0.2.0") -> dict:
    return slots.stage_pending(slots.DirBoot(boot), slot, version, "0" * 64, devices_ok_before=4)


def _env(boot) -> tuple[str, str | None, int]:
    env = slots.read_boot_env(boot)
    assert env is not None
    return env.slot, env.try_slot, env.try_left


def _both_copies_equal(boot: Path) -> bytes:
    primary = (boot / ENV).read_bytes()
    assert (boot / BAK).read_bytes() == primary
    assert len(primary) == slots.ENV_BLOCK_BYTES and primary.startswith(slots.GRUBENV_SIGNATURE)
    return primary


def _grub_block(text: str) -> bytes:
    """A GRUB environment block written out by hand (signature, lines, '#' padding to 1024 bytes)."""
    body = ("# GRUB Environment Block\n" + text).encode()
    return body + b"#" * (1024 - len(body))


# -- the environment's file format ----------------------------------------------------------------------------


def test_parse_env_reads_a_grub_block_and_uboot_env_export():
    grub = _grub_block("hems_slot=a\nhems_try=b\nhems_try_left=1\n")
    assert len(grub) == 1024
    assert slots.parse_env(grub) == {"hems_slot": "a", "hems_try": "b", "hems_try_left": "1"}
    # U-Boot's `env export -t`: plain lines, no header, a NUL at the end
    uboot = b"hems_slot=a\nhems_try=b\nhems_try_left=0\n\0"
    assert slots.parse_env(uboot) == {"hems_slot": "a", "hems_try": "b", "hems_try_left": "0"}
    # CRLF line ends, an empty value, a value holding '=' (a kernel command line), lines without '='
    assert slots.parse_env(
        b"hems_try=\r\nhems_cmdline=console=ttyS0 root=PARTLABEL=hems-root-b\r\njunk\n"
    ) == {
        "hems_try": "",
        "hems_cmdline": "console=ttyS0 root=PARTLABEL=hems-root-b",
    }
    assert slots.parse_env(b"") == {} and slots.parse_env(b"\0" * 1024) == {}


def test_both_env_forms_give_the_same_boot_decision(tmp_path):
    for data in (
        _grub_block("hems_slot=a\nhems_try=b\nhems_try_left=1\n"),
        b"hems_slot=a\nhems_try=b\nhems_try_left=1\n\0",
    ):
        (tmp_path / ENV).write_bytes(data)
        env = slots.read_boot_env(tmp_path)
        assert env == BootEnv("a", "b", 1, ENV)
        assert slots.next_boot(env) == ("b", True)


def test_format_env_is_one_1024_byte_grub_block():
    block = slots.format_env({"hems_slot": "b", "hems_try": "", "hems_try_left": "0"})
    assert len(block) == slots.ENV_BLOCK_BYTES == 1024
    body = b"# GRUB Environment Block\nhems_slot=b\nhems_try=\nhems_try_left=0\n"
    assert block == body + b"#" * (1024 - len(body))
    assert slots.parse_env(block) == {"hems_slot": "b", "hems_try": "", "hems_try_left": "0"}
    # the bound: 25 bytes of signature + "x=" + value + "\n" fills the block exactly at a 996-byte value
    full = slots.format_env({"x": "v" * 996})
    assert len(full) == 1024 and full.endswith(b"v\n")
    with pytest.raises(SlotError, match="the boot environment is 1025 bytes, more than a 1024-byte block"):
        slots.format_env({"x": "v" * 997})


@pytest.mark.parametrize("name", ["1slot", "hems-slot", "hems slot", "", "a=b", "slot\n"])
def test_format_env_refuses_bad_names(name):
    with pytest.raises(SlotError, match=r"invalid boot environment variable name"):
        slots.format_env({name: "a"})


@pytest.mark.parametrize("value", ["a\nhems_slot=b", "a\0", "\n"])
def test_format_env_refuses_newlines_and_nuls(value):
    with pytest.raises(SlotError, match="boot environment variable hems_cmdline holds a newline or NUL"):
        slots.format_env({"hems_cmdline": value})


def test_write_boot_env_refuses_unknown_slots(boot):
    before = _both_copies_equal(boot)
    with pytest.raises(SlotError, match="slot must be one of a, b, not 'c'"):
        slots.write_boot_env(boot, "c")
    with pytest.raises(SlotError, match="slot must be one of a, b, not 'x'"):
        slots.write_boot_env(boot, "a", "x", 1)
    assert _both_copies_equal(boot) == before


def test_next_boot_decisions():
    assert slots.next_boot(None) == ("a", False)  # both copies lost: the loaders default to slot a
    assert slots.next_boot(BootEnv("b", None, 0, ENV)) == ("b", False)
    assert slots.next_boot(BootEnv("b", None, 1, ENV)) == ("b", False)  # trial boots left but no trial slot
    assert slots.next_boot(BootEnv("a", "b", 0, ENV)) == ("a", False)  # staged, not armed
    assert slots.next_boot(BootEnv("a", "b", 1, ENV)) == ("b", True)


_ARMED = "hems_slot=a\nhems_try=b\nhems_try_left=1\n"


@pytest.mark.parametrize(
    ("primary", "backup", "want"),
    [
        (_grub_block("hems_slot=b\n"), None, ("b", False)),
        (_grub_block(_ARMED), _grub_block(_ARMED), ("b", True)),
        (_grub_block("hems_slot=a\nhems_try=b\nhems_try_left=0\n"), None, ("a", False)),
        (_grub_block("hems_slot=b\nhems_try=\nhems_try_left=1\n"), None, ("b", False)),
        (_grub_block("hems_slot=b\nhems_try=c\nhems_try_left=1\n"), None, ("b", False)),
        (_grub_block("hems_slot=a\nhems_try=b\nhems_try_left=-1\n"), None, ("a", False)),
        (b"\0" * 1024, _grub_block(_ARMED), ("b", True)),
        (None, (_ARMED + "\0").encode(), ("b", True)),
        ((_ARMED + "\0").encode(), None, ("b", True)),
        (_grub_block("hems_slot=c\n"), b"garbage", ("a", False)),
        (None, None, ("a", False)),
        pytest.param(_grub_block("hems_slot=a\nhems_try=b\nhems_try_left=2\n"), None, ("a", False)),
        pytest.param(_grub_block("hems_slot=a\nhems_try=b\nhems_try_left=01\n"), None, ("a", False)),
    ],
    ids=[
        "committed-only",
        "armed",
        "staged",
        "try-left-without-slot",
        "bad-try-slot",
        "negative-left",
        "primary-zeroed",
        "uboot-form-backup",
        "uboot-form-primary",
        "both-damaged",
        "both-missing",
        "try-left-2",
        "try-left-01",
    ],
)
def test_next_boot_agrees_with_the_loader_scripts(boot, primary, backup, want):
    for name, data in ((ENV, primary), (BAK, backup)):
        (boot / name).unlink()
        if data is not None:
            (boot / name).write_bytes(data)
    predicted = slots.next_boot(slots.read_boot_env(boot))
    booted = loader_boot(slots.DirBoot(boot))
    assert (booted.slot, booted.trial) == want
    assert predicted == want


def test_a_damaged_primary_falls_back_to_the_backup(boot):
    _pend(boot)
    slots.arm_trial(boot)
    armed = (boot / ENV).read_bytes()
    for damage in (b"", b"\0" * 1024, armed[:30], _grub_block("hems_slot=c\n"), b"garbage without lines"):
        (boot / ENV).write_bytes(damage)
        env = slots.read_boot_env(boot)
        assert env == BootEnv("a", "b", 1, BAK), damage
        assert slots.next_boot(env) == ("b", True)
    (boot / ENV).unlink()
    assert slots.read_boot_env(boot) == BootEnv("a", "b", 1, BAK)


def test_both_copies_damaged_means_slot_a(boot):
    slots.write_boot_env(boot, "b")
    (boot / ENV).write_bytes(b"\0" * 1024)
    (boot / BAK).write_bytes(_grub_block("hems_slot=\n"))
    assert slots.read_boot_env(boot) is None
    assert slots.next_boot(slots.read_boot_env(boot)) == ("a", False)
    (boot / ENV).unlink()
    (boot / BAK).unlink()
    assert slots.read_boot_env(boot) is None


def test_odd_try_values_are_read_as_no_trial(boot):
    (boot / ENV).write_bytes(_grub_block("hems_slot=b\nhems_try=c\nhems_try_left=1\n"))
    assert slots.read_boot_env(boot) == BootEnv("b", None, 1, ENV)
    assert slots.next_boot(slots.read_boot_env(boot)) == ("b", False)
    (boot / ENV).write_bytes(_grub_block("hems_slot=a\nhems_try=b\nhems_try_left=yes\n"))
    assert slots.read_boot_env(boot) == BootEnv("a", "b", 0, ENV)
    (boot / ENV).write_bytes(_grub_block("hems_slot=a\n"))
    assert slots.read_boot_env(boot) == BootEnv("a", None, 0, ENV)


def test_grub_editenv_reads_our_block_and_we_read_its(tmp_path):
    grub_editenv = shutil.which("grub-editenv")
    if grub_editenv is None:
        pytest.skip("grub-editenv is not installed (apt-get install grub-common)")
    ours = tmp_path / "ours.env"
    ours.write_bytes(slots.format_env({"hems_slot": "a", "hems_try": "b", "hems_try_left": "1"}))
    r = run([grub_editenv, str(ours), "list"])
    assert r.returncode == 0, r.stderr
    assert r.stdout.splitlines() == ["hems_slot=a", "hems_try=b", "hems_try_left=1"]
    # what GRUB's save_env does at boot: change hems_try_left in place, the block stays 1024 bytes
    assert run([grub_editenv, str(ours), "set", "hems_try_left=0"]).returncode == 0
    assert len(ours.read_bytes()) == 1024
    assert slots.parse_env(ours.read_bytes()) == {"hems_slot": "a", "hems_try": "b", "hems_try_left": "0"}
    theirs = tmp_path / "theirs.env"
    assert run([grub_editenv, str(theirs), "create"]).returncode == 0
    r = run([grub_editenv, str(theirs), "set", "hems_slot=b", "hems_try=a", "hems_try_left=1"])
    assert r.returncode == 0, r.stderr
    (tmp_path / ENV).write_bytes(theirs.read_bytes())
    assert slots.read_boot_env(tmp_path) == BootEnv("b", "a", 1, ENV)


def test_a_backslash_in_a_value_survives_grub_and_parse_env(tmp_path):
    value = r"console=ttyS0 dyndbg=file\nothing.c +p"  # a backslash followed by 'n', as typed
    block = slots.format_env({"hems_cmdline": value})
    assert slots.parse_env(block) == {"hems_cmdline": value}
    grub_editenv = shutil.which("grub-editenv")
    if grub_editenv:
        (tmp_path / "env").write_bytes(block)
        assert run([grub_editenv, str(tmp_path / "env"), "list"]).stdout == f"hems_cmdline={value}\n"


# -- slot command lines ----------------------------------------------------------------------------------------


def test_cmdline_root_is_set_per_slot():
    assert slots.cmdline_for_slot("console=ttyS0 root=/dev/sda2 rootwait root=x", "b") == (
        "console=ttyS0 root=PARTLABEL=hems-root-b rootwait"
    )
    assert slots.cmdline_for_slot("quiet", "a") == "quiet root=PARTLABEL=hems-root-a"


def test_write_slot_cmdline_writes_the_loader_env_and_the_text_file(boot):
    line = slots.write_slot_cmdline(boot, "b", "console=ttyAMA0  root=/dev/mmcblk0p2 rootwait\n")
    assert line == "console=ttyAMA0 root=PARTLABEL=hems-root-b rootwait"
    raw = (boot / "slot-b" / "boot.env").read_bytes()
    assert len(raw) == 1024 and raw.startswith(slots.GRUBENV_SIGNATURE)
    assert slots.parse_env(raw) == {"hems_cmdline": line}
    assert (boot / "slot-b" / "cmdline.txt").read_text() == line + "\n"
    with pytest.raises(SlotError, match="slot must be one of a, b"):
        slots.write_slot_cmdline(boot, "c", "quiet")


# -- the state machine through the environment -----------------------------------------------------------------


def test_staging_names_the_trial_and_only_reboot_arms_it(boot):
    assert slots.read_boot_env(boot) == BootEnv("a", None, 0, ENV)
    assert slots.next_boot(slots.read_boot_env(boot)) == ("a", False)
    state = _pend(boot)
    assert (state["trying"], state["trial_requested"]) == ("b", False)
    assert _env(boot) == ("a", "b", 0)
    assert slots.next_boot(slots.read_boot_env(boot)) == ("a", False)  # a plain reset never boots the trial
    _both_copies_equal(boot)
    state = slots.arm_trial(boot)  # what `hems-update reboot` does before `systemctl reboot`
    assert state["trial_requested"] is True
    assert json.loads((boot / "hems-slots.json").read_text())["trial_requested"] is True
    assert _env(boot) == ("a", "b", 1)
    assert slots.next_boot(slots.read_boot_env(boot)) == ("b", True)
    _both_copies_equal(boot)
    slots.arm_trial(boot)  # arming twice still means one trial
    assert _env(boot) == ("a", "b", 1)
    # the loader takes the trial and spends it before the kernel starts: one boot of b, then a again
    first = loader_boot(slots.DirBoot(boot))
    assert (first.slot, first.trial, first.kernel) == ("b", True, b"kernel b")
    assert first.cmdline == "console=ttyS0 root=PARTLABEL=hems-root-b rootwait hems.trial=1"
    assert _env(boot) == ("a", "b", 0)
    second = loader_boot(slots.DirBoot(boot))
    assert (second.slot, second.trial, second.kernel) == ("a", False, b"kernel a")
    assert second.cmdline == "console=ttyS0 root=PARTLABEL=hems-root-a rootwait"


def test_arm_trial_needs_a_pending_update(boot):
    before = _both_copies_equal(boot)
    with pytest.raises(SlotError, match="no update is pending: install a bundle first"):
        slots.arm_trial(boot)
    assert _both_copies_equal(boot) == before
    _pend(boot)
    slots.write_boot_env(boot, "a")  # the trial was taken out of the env (by hand, or a cut rollback)
    with pytest.raises(SlotError, match="no update is pending"):
        slots.arm_trial(boot)
    assert _env(boot) == ("a", None, 0)


def test_commit_from_the_trial_slot_switches_the_env(boot):
    _pend(boot)
    slots.arm_trial(boot)
    with pytest.raises(SlotError, match="only be committed from a boot of slot b"):
        slots.commit(boot, booted="a")
    assert _env(boot) == ("a", "b", 1)
    state = slots.commit(boot, booted="b")
    assert (state["committed"], state["trying"], state["slots"]["b"]["status"]) == ("b", None, "good")
    assert _env(boot) == ("b", None, 0)
    assert slots.next_boot(slots.read_boot_env(boot)) == ("b", False)
    _both_copies_equal(boot)
    on_disk = json.loads((boot / "hems-slots.json").read_text())
    assert on_disk["committed"] == "b" and on_disk["last"]["event"] == "committed"
    assert on_disk["trial_requested"] is False
    assert on_disk["slots"]["a"]["version"] == "0.1.0"  # the old slot stays as it was
    assert (boot / "config.txt").read_text() == CONFIG_TXT
    with pytest.raises(SlotError, match="nothing to commit"):
        slots.commit(boot, booted="b")


def test_rollback_keeps_the_committed_slot_and_forgets_the_trial(boot):
    _pend(boot)
    slots.arm_trial(boot)
    state = slots.rollback(boot, "health check failed: healthz: HTTP 503")
    assert _env(boot) == ("a", None, 0)
    assert slots.next_boot(slots.read_boot_env(boot)) == ("a", False)  # even though the trial was armed
    _both_copies_equal(boot)
    assert (boot / "config.txt").read_text() == CONFIG_TXT
    assert state["trying"] is None and state["committed"] == "a"
    assert state["slots"]["b"]["status"] == "bad"
    assert state["last"] == {**state["last"], "event": "rolled-back", "slot": "b", "version": "0.2.0"}
    assert state["last"]["reason"] == "health check failed: healthz: HTTP 503"
    with pytest.raises(SlotError, match="nothing to roll back"):
        slots.rollback(boot, "again")


def test_boot_check_counts_attempts_and_ends_a_boot_loop(boot):
    _pend(boot)
    slots.arm_trial(boot)
    assert loader_boot(slots.DirBoot(boot)).slot == "b"
    what, state = slots.boot_check(boot, booted="b", trial=True)
    assert what == "trial boot 1 of slot b" and state["attempts"] == 1
    assert state["slots"]["b"]["status"] == "trying"
    assert json.loads((boot / "hems-slots.json").read_text())["attempts"] == 1
    what, state = slots.boot_check(boot, booted="b", trial=True)  # booted b a second time: max_attempts 1
    assert what == "rolled back: too many attempts"
    assert state["trying"] is None and "booted 2 times" in state["last"]["reason"]
    assert _env(boot) == ("a", None, 0)


def test_boot_check_notices_the_loader_fell_back(boot):
    _pend(boot)
    slots.arm_trial(boot)  # `hems-update reboot` was run: the next boot should have been slot b
    (boot / "slot-b" / "vmlinuz").unlink()  # ... but its kernel does not load
    booted = loader_boot(slots.DirBoot(boot))
    assert (booted.slot, booted.trial) == ("a", False)
    assert _env(boot) == ("a", "b", 0)  # the trial is spent all the same
    what, state = slots.boot_check(boot, booted="a", trial=False)
    assert what == "rolled back: slot b did not boot (the boot loader fell back to slot a)"
    assert state["slots"]["b"]["status"] == "bad" and state["committed"] == "a"
    assert _env(boot) == ("a", None, 0)


def test_boot_check_notices_a_trial_that_restarted_before_commit(boot):
    _pend(boot)
    slots.arm_trial(boot)
    assert loader_boot(slots.DirBoot(boot)).trial is True
    slots.boot_check(boot, booted="b", trial=True)
    assert loader_boot(slots.DirBoot(boot)).slot == "a"  # power cut during the trial: the committed slot
    what, state = slots.boot_check(boot, booted="a", trial=False)
    assert "started but restarted before its health check passed; back on slot a" in what
    assert state["last"]["event"] == "rolled-back"
    assert _env(boot) == ("a", None, 0)


def test_boot_check_keeps_an_untried_update_pending_and_removes_a_stale_trial(boot):
    _pend(boot)
    what, state = slots.boot_check(boot, booted="a", trial=False)
    assert what == "update to slot b pending (not tried yet)" and state["trying"] == "b"
    assert _env(boot) == ("a", "b", 0)
    slots.rollback(boot, "changed my mind")
    slots.write_boot_env(boot, "a", "b", 1)  # an armed trial left over from somewhere
    what, _ = slots.boot_check(boot, booted="a", trial=False)
    assert what == "removed a stale trial of slot b from hems-boot.env"
    assert _env(boot) == ("a", None, 0)
    _both_copies_equal(boot)
    what, _ = slots.boot_check(boot, booted="a", trial=False)
    assert what == "no update pending"


def test_boot_check_rewrites_a_lost_env_from_the_state(boot):
    _pend(boot)
    (boot / ENV).unlink()
    (boot / BAK).write_bytes(b"\0" * 1024)
    assert slots.read_boot_env(boot) is None
    what, state = slots.boot_check(boot, booted="a", trial=False)
    assert what == "update to slot b pending (not tried yet)"
    assert "hems-boot.env was lost; written again from hems-slots.json" in state["warnings"]
    assert _env(boot) == ("a", "b", 0)  # the pending update stays staged, not armed
    _both_copies_equal(boot)
    # after a commit of b: losing both copies makes the loader start a; boot-check puts b back
    slots.arm_trial(boot)
    slots.commit(boot, booted="b")
    (boot / ENV).unlink()
    (boot / BAK).unlink()
    assert loader_boot(slots.DirBoot(boot)).slot == "a"
    what, state = slots.boot_check(boot, booted="a", trial=False)
    assert what == "no update pending" and state["committed"] == "b"
    assert _env(boot) == ("b", None, 0)
    assert loader_boot(slots.DirBoot(boot)).slot == "b"


def test_a_power_cut_between_the_backup_and_the_primary_write(boot):
    """write_boot_env writes the backup first: a cut after it leaves the old primary, whole, and it wins."""
    _pend(boot)
    old = (boot / ENV).read_bytes()
    armed = slots.format_env({"hems_slot": "a", "hems_try": "b", "hems_try_left": "1"})
    # arm_trial cut after the backup: the primary still says "not armed", and so does the state
    (boot / BAK).write_bytes(armed)
    assert (boot / ENV).read_bytes() == old
    assert slots.read_boot_env(boot) == BootEnv("a", "b", 0, ENV)
    assert slots.next_boot(slots.read_boot_env(boot)) == ("a", False)
    what, state = slots.boot_check(boot, booted="a", trial=False)
    assert what == "update to slot b pending (not tried yet)" and state["trying"] == "b"
    assert state["trial_requested"] is False
    # the same cut, but the primary was torn while being replaced: the backup (the new content) is used
    (boot / BAK).write_bytes(armed)
    (boot / ENV).write_bytes(armed[:20])
    assert slots.read_boot_env(boot) == BootEnv("a", "b", 1, BAK)
    assert slots.next_boot(slots.read_boot_env(boot)) == ("b", True)
    # torn after its hems_slot line: the primary is read (as GRUB's load_env would) and names no trial,
    # so the committed slot boots and boot-check gives the update up rather than leave it half-armed
    (boot / ENV).write_bytes(armed[:40])
    assert slots.parse_env(armed[:40]) == {"hems_slot": "a"}
    assert slots.read_boot_env(boot) == BootEnv("a", None, 0, ENV)
    assert loader_boot(slots.DirBoot(boot)).slot == "a"
    what, state = slots.boot_check(boot, booted="a", trial=False)
    assert what == "rolled back: the trial is gone from the boot environment"
    assert _env(boot) == ("a", None, 0)
    _both_copies_equal(boot)
    _pend(boot)
    # a commit cut after the backup: the primary still names a committed, b on trial; the state agrees
    slots.write_boot_env(boot, "a", "b", 0)
    slots.boot_check(boot, booted="b", trial=True)  # the trial boot of b counted
    (boot / BAK).write_bytes(slots.format_env({"hems_slot": "b", "hems_try": "", "hems_try_left": "0"}))
    state = slots.read_state(boot)
    assert (state["committed"], state["trying"]) == ("a", "b") and "warnings" not in state
    assert loader_boot(slots.DirBoot(boot)).slot == "a"
    what, state = slots.boot_check(boot, booted="a", trial=False)
    assert what.startswith("rolled back: slot b started but restarted before its health check passed")
    assert _env(boot) == ("a", None, 0)
    _both_copies_equal(boot)


def test_an_interrupted_commit_is_finished_and_an_interrupted_rollback_cleaned_up(boot):
    _pend(boot)
    slots.arm_trial(boot)
    # power cut inside commit: both env copies name b, hems-slots.json still says trying b
    slots.write_boot_env(boot, "b")
    state = slots.read_state(boot)
    assert (state["committed"], state["trying"], state["slots"]["b"]["status"]) == ("b", None, "good")
    assert "finished an interrupted commit of slot b" in state["warnings"]
    # power cut inside rollback: the env no longer names the trial, the state still says trying b
    slots.write_boot_env(boot, "a")
    slots.write_state(boot, slots.initial_state("0.1.0", "arm64", "a"))
    _pend(boot)
    slots.write_boot_env(boot, "a")
    what, state = slots.boot_check(boot, booted="a", trial=False)
    assert what == "rolled back: the trial is gone from the boot environment" and state["trying"] is None
    assert state["slots"]["b"]["status"] == "bad"
    assert "no longer names slot b for a trial" in state["last"]["reason"]


def test_running_system_detection(tmp_path):
    cmdline = tmp_path / "cmdline"
    cmdline.write_text("BOOT_IMAGE=/vmlinuz console=ttyS0 root=PARTLABEL=hems-root-b rootwait hems.trial=1\n")
    assert slots.booted_slot(cmdline) == "b"
    assert slots.booted_as_trial(cmdline) is True
    cmdline.write_text("root=PARTLABEL=hems-root-a hems.trial=0\n")
    assert slots.booted_slot(cmdline) == "a"
    assert slots.booted_as_trial(cmdline) is False
    cmdline.write_text("root=PARTLABEL=hems-root-a xhems.trial=1 hems.trial=10\n")
    assert slots.booted_as_trial(cmdline) is False
    cmdline.write_text("root=/dev/sda2\n")
    assert slots.booted_slot(cmdline) is None
    assert slots.booted_slot(tmp_path / "missing") is None
    assert slots.booted_as_trial(tmp_path / "missing") is False


def test_state_file_problems_are_named(boot):
    (boot / "hems-slots.json").write_text("{not json")
    with pytest.raises(SlotError, match=r"hems-slots.json on .* is not valid JSON"):
        slots.read_state(boot)
    (boot / "hems-slots.json").write_text('{"format": 99}')
    with pytest.raises(SlotError, match=r"hems-slots.json on .* has an unknown format \(want format 1\)"):
        slots.read_state(boot)
    (boot / "hems-slots.json").unlink()
    state = slots.read_state(boot)  # an image without a state file: the loader's env says which slot runs
    assert state["committed"] == "a" and state["trying"] is None
    slots.write_boot_env(boot, "b")
    assert slots.read_state(boot)["committed"] == "b"
    slots.write_state(boot, slots.initial_state("0.1.0", "arm64", "a"))
    state = slots.read_state(boot)
    assert state["committed"] == "b"  # what the boot loader boots wins
    assert state["warnings"] == ["hems-slots.json said slot a is committed but hems-boot.env boots slot b"]


def test_boot_paths_from_manifests_cannot_escape(boot):
    b = slots.DirBoot(boot)
    for bad in ("../etc/passwd", "slot-a/../../x", "", "a//b", "sp ace"):
        with pytest.raises(SlotError, match="invalid boot partition path"):
            b.write(bad, b"x")


def test_init_writes_state_env_and_the_slot_env(tmp_path):
    b = tmp_path / "bootfs"
    (b / "slot-b").mkdir(parents=True)
    (b / "slot-b" / "cmdline.txt").write_text("console=ttyS0 root=/dev/vda2 rootwait\n")
    r = hems_update("init", "--boot-dir", b, "--version", "1.0.0", "--arch", "arm64", "--slot", "b")
    assert r.returncode == 0, r.stderr
    assert "hems-slots.json and hems-boot.env on" in r.stdout and "slot b committed with 1.0.0" in r.stdout
    state = json.loads((b / "hems-slots.json").read_text())
    assert (state["committed"], state["arch"], state["slots"]["b"]["version"]) == ("b", "arm64", "1.0.0")
    assert state["slots"]["a"] == {"version": None, "status": "empty"}
    assert _env(b) == ("b", None, 0)
    _both_copies_equal(b)
    want = "console=ttyS0 root=PARTLABEL=hems-root-b rootwait"
    assert slots.parse_env((b / "slot-b" / "boot.env").read_bytes()) == {"hems_cmdline": want}
    assert (b / "slot-b" / "cmdline.txt").read_text() == want + "\n"
    assert not (b / "slot-a").exists()
    # without a cmdline.txt: state and env only
    c = tmp_path / "bare"
    c.mkdir()
    r = hems_update("init", "--boot-dir", c, "--version", "1.0.0", "--arch", "amd64")
    assert r.returncode == 0, r.stderr
    assert sorted(p.name for p in c.iterdir()) == [ENV, BAK, "hems-slots.json"]
    r = hems_update("init", "--boot-dir", tmp_path / "nope", "--version", "1", "--arch", "amd64")
    assert r.returncode == 1 and "boot partition directory" in r.stderr and "does not exist" in r.stderr


def _fake_systemctl(tmp_path: Path) -> tuple[dict, Path]:
    """A `systemctl` first on PATH that records its arguments (the machine running the tests must not reboot)."""
    bindir = tmp_path / "bin"
    bindir.mkdir()
    calls = tmp_path / "systemctl.calls"
    exe = bindir / "systemctl"
    exe.write_text(f'#!/bin/sh\necho "$@" >> {calls}\nexit 0\n')
    exe.chmod(0o755)
    return {"PATH": f"{bindir}:{os.environ['PATH']}"}, calls


def test_cli_reboot_arms_the_trial_then_reboots(boot, tmp_path):
    env, calls = _fake_systemctl(tmp_path)
    r = hems_update("reboot", "--boot-dir", boot, env=env)
    assert r.returncode == 1 and "no update is pending: install a bundle first" in r.stderr
    assert not calls.exists()  # nothing armed, no reboot
    assert _env(boot) == ("a", None, 0)
    _pend(boot)
    r = hems_update("reboot", "--boot-dir", boot, env=env)
    assert r.returncode == 0, r.stderr
    assert "rebooting for a trial boot of slot b: systemctl reboot" in r.stdout
    assert calls.read_text() == "reboot\n"
    assert _env(boot) == ("a", "b", 1)
    assert json.loads((boot / "hems-slots.json").read_text())["trial_requested"] is True
    booted = loader_boot(slots.DirBoot(boot))
    assert (booted.slot, booted.trial) == ("b", True)
    # the trial boots twice (no health check in between): the second boot-check gives up and reboots into a
    for _ in range(2):
        r = hems_update(
            "boot-check", "--boot-dir", boot, "--booted-slot", "b", "--trial", "--reboot", env=env
        )
        assert r.returncode == 0, r.stderr
    assert "boot-check: rolled back: too many attempts" in r.stdout
    assert "rebooting into the committed slot a" in r.stdout
    assert calls.read_text() == "reboot\nreboot\n"
    assert _env(boot) == ("a", None, 0)
