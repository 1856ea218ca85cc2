"""Boot selection as the Pi firmware does it, and the slot state machine, over a boot partition directory."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from firmware import slots
from firmware.slots import SlotError

from .conftest import CONFIG_TXT


@pytest.fixture
def boot(tmp_path: Path) -> Path:
    """A boot partition directory: config.txt on slot a, both slots with kernel/initrd/cmdline, state a@0.1.0."""
    b = tmp_path / "boot"
    for s in "ab":
        (b / f"slot-{s}").mkdir(parents=True)
        (b / f"slot-{s}" / "vmlinuz").write_text(f"kernel {s}")
        (b / f"slot-{s}" / "initrd.img").write_text(f"initrd {s}")
        (b / f"slot-{s}" / "cmdline.txt").write_text(f"console=ttyS0 root=PARTLABEL=hems-root-{s} rootwait\n")
    (b / "config.txt").write_text(CONFIG_TXT)
    slots.write_state(b, slots.initial_state("0.1.0", "arm64", "a"))
    return b


def _pend(boot: Path, slot: str = "b", version: str = "0.2.0") -> dict:
    return slots.stage_pending(slots.DirBoot(boot), slot, version, "0" * 64, devices_ok_before=4)


def test_select_boot_follows_config_and_tryboot(boot):
    assert slots.select_boot(boot, tryboot=False) == "a"
    assert slots.select_boot(boot, tryboot=True) == "a"  # flag set but no tryboot.txt: config.txt
    _pend(boot)
    assert slots.select_boot(boot, tryboot=False) == "a"  # a plain reset never boots the trial slot
    sel = slots.boot_selection(boot, tryboot=True)
    assert (sel.slot, sel.config_file, sel.kernel, sel.initrd, sel.cmdline_file) == (
        "b", "tryboot.txt", "slot-b/vmlinuz", "slot-b/initrd.img", "slot-b/cmdline.txt",
    )  # fmt: skip
    assert sel.cmdline == "console=ttyS0 root=PARTLABEL=hems-root-b rootwait"
    tryboot = (boot / "tryboot.txt").read_text()
    # tryboot.txt is config.txt with only os_prefix changed (the Pi reads it *instead of* config.txt)
    assert tryboot.replace("os_prefix=slot-b/", "os_prefix=slot-a/") == CONFIG_TXT


def test_config_txt_sections_and_filters():
    text = "kernel=k0\n[pi4]\nkernel=k4\n[all]\nos_prefix=slot-a/\n[tryboot]\nos_prefix=slot-b/\n[none]\nkernel=never\n"
    assert slots.parse_config_txt(text) == {"kernel": "k0", "os_prefix": "slot-a/"}
    assert slots.parse_config_txt(text, tryboot=True)["os_prefix"] == "slot-b/"
    assert slots.parse_config_txt(text, filters=frozenset({"pi4"}))["kernel"] == "k4"
    assert (
        slots.parse_config_txt("initramfs initrd.img followkernel # comment\n")["initramfs"] == "initrd.img"
    )


def test_a_prefix_without_its_kernel_is_ignored_like_the_firmware_does(boot):
    (boot / "slot-a" / "vmlinuz").unlink()
    with pytest.raises(SlotError, match="selects no slot"):
        slots.select_boot(boot, tryboot=False)
    (boot / "slot-a" / "initrd.img").unlink()
    (boot / "slot-a" / "vmlinuz").write_text("k")
    with pytest.raises(SlotError, match=r"slot-a/initrd.img .* is missing"):
        slots.select_boot(boot, tryboot=False)


def test_set_os_prefix_keeps_everything_else():
    assert slots.set_os_prefix(CONFIG_TXT, "b") == CONFIG_TXT.replace("slot-a/", "slot-b/")
    assert slots.set_os_prefix("kernel=vmlinuz\n", "a") == "kernel=vmlinuz\n[all]\nos_prefix=slot-a/\n"


def test_cmdline_root_is_set_per_slot():
    assert slots.cmdline_for_slot("console=ttyS0 root=/dev/sda2 rootwait root=x", "b") == (
        "console=ttyS0 root=PARTLABEL=hems-root-b rootwait"
    )
    assert slots.cmdline_for_slot("quiet", "a") == "quiet root=PARTLABEL=hems-root-a"


def test_commit_from_the_trial_slot_switches_config(boot):
    _pend(boot)
    with pytest.raises(SlotError, match="only be committed from a boot of slot b"):
        slots.commit(boot, booted="a")
    state = slots.commit(boot, booted="b")
    assert (state["committed"], state["trying"], state["slots"]["b"]["status"]) == ("b", None, "good")
    assert not (boot / "tryboot.txt").exists()
    assert slots.select_boot(boot, tryboot=False) == "b"
    assert slots.select_boot(boot, tryboot=True) == "b"
    on_disk = json.loads((boot / "hems-slots.json").read_text())
    assert on_disk["committed"] == "b" and on_disk["last"]["event"] == "committed"
    assert on_disk["slots"]["a"]["version"] == "0.1.0"  # the old slot stays as it was
    with pytest.raises(SlotError, match="nothing to commit"):
        slots.commit(boot, booted="b")


def test_rollback_leaves_config_untouched(boot):
    before = (boot / "config.txt").read_bytes()
    _pend(boot)
    state = slots.rollback(boot, "health check failed: healthz: HTTP 503")
    assert (boot / "config.txt").read_bytes() == before
    assert not (boot / "tryboot.txt").exists()
    assert state["trying"] is None and state["committed"] == "a"
    assert state["slots"]["b"]["status"] == "bad"
    assert state["last"] == {**state["last"], "event": "rolled-back", "slot": "b", "version": "0.2.0"}
    assert state["last"]["reason"] == "health check failed: healthz: HTTP 503"
    assert slots.select_boot(boot, tryboot=True) == "a"
    with pytest.raises(SlotError, match="nothing to roll back"):
        slots.rollback(boot, "again")


def test_boot_check_counts_attempts_and_ends_a_boot_loop(boot):
    _pend(boot)
    what, state = slots.boot_check(boot, booted="b", tryboot=True)
    assert what == "trial boot 1 of slot b" and state["attempts"] == 1
    assert state["slots"]["b"]["status"] == "trying"
    what, state = slots.boot_check(
        boot, booted="b", tryboot=True
    )  # booted b a second time: max_attempts is 1
    assert what == "rolled back: too many attempts"
    assert state["trying"] is None and "booted 2 times" in state["last"]["reason"]
    assert slots.select_boot(boot, tryboot=True) == "a"


def test_boot_check_notices_the_firmware_fell_back(boot):
    _pend(boot)
    slots.request_tryboot(boot)  # `hems-update reboot` was run: the next boot should have been slot b
    what, state = slots.boot_check(boot, booted="a", tryboot=False)
    assert what.startswith("rolled back: slot b did not boot")
    assert state["slots"]["b"]["status"] == "bad" and state["committed"] == "a"
    assert not (boot / "tryboot.txt").exists()


def test_boot_check_notices_a_trial_that_restarted_before_commit(boot):
    _pend(boot)
    slots.boot_check(boot, booted="b", tryboot=True)
    what, state = slots.boot_check(boot, booted="a", tryboot=False)  # power cut during the trial
    assert "started but restarted before its health check passed" in what
    assert state["last"]["event"] == "rolled-back"


def test_boot_check_keeps_an_untried_update_pending_and_removes_a_stale_switch(boot):
    _pend(boot)
    what, state = slots.boot_check(boot, booted="a", tryboot=False)
    assert what == "update to slot b pending (not tried yet)" and state["trying"] == "b"
    assert (boot / "tryboot.txt").exists()
    slots.rollback(boot, "changed my mind")
    (boot / "tryboot.txt").write_text("os_prefix=slot-b/\n")  # left over from somewhere
    what, _ = slots.boot_check(boot, booted="a", tryboot=False)
    assert what == "removed a stale tryboot.txt" and not (boot / "tryboot.txt").exists()


def test_take_tryboot_flag_is_one_shot(boot):
    assert slots.take_tryboot_flag(boot) is False
    (boot / slots.TRYBOOT_FLAG).write_text("1\n")
    assert slots.take_tryboot_flag(boot) is True
    assert slots.take_tryboot_flag(boot) is False


def test_running_system_detection(tmp_path):
    cmdline = tmp_path / "cmdline"
    cmdline.write_text(
        "BOOT_IMAGE=/vmlinuz console=ttyS0 root=PARTLABEL=hems-root-b rootwait hems.tryboot=1\n"
    )
    assert slots.booted_slot(cmdline) == "b"
    assert slots.booted_with_tryboot(cmdline, tmp_path / "missing") is True
    cmdline.write_text("root=PARTLABEL=hems-root-a\n")
    prop = tmp_path / "tryboot"
    prop.write_bytes((1).to_bytes(4, "big"))  # the Pi firmware's /chosen/bootloader/tryboot
    assert slots.booted_slot(cmdline) == "a"
    assert slots.booted_with_tryboot(cmdline, prop) is True
    prop.write_bytes((0).to_bytes(4, "big"))
    assert slots.booted_with_tryboot(cmdline, prop) is False
    cmdline.write_text("root=/dev/sda2\n")
    assert slots.booted_slot(cmdline) is None


def test_state_file_problems_are_named(boot):
    (boot / "hems-slots.json").write_text("{not json")
    with pytest.raises(SlotError, match=r"hems-slots.json on .* is not valid JSON"):
        slots.read_state(boot)
    (boot / "hems-slots.json").unlink()
    state = slots.read_state(boot)  # an image without a state file: config.txt says which slot runs
    assert state["committed"] == "a" and state["trying"] is None
    (boot / "config.txt").write_text(CONFIG_TXT.replace("slot-a/", "slot-b/"))
    slots.write_state(boot, slots.initial_state("0.1.0", "arm64", "a"))
    state = slots.read_state(boot)
    assert state["committed"] == "b"  # what the firmware boots wins
    assert "config.txt boots slot b" in state["warnings"][0]


def test_boot_paths_from_manifests_cannot_escape(boot):
    b = slots.DirBoot(boot)
    for bad in ("../etc/passwd", "slot-a/../../x", "", "a//b", "sp ace"):
        with pytest.raises(SlotError, match="invalid boot partition path"):
            b.write(bad, b"x")


def test_pi_tryboot_mailbox_message_layout():
    # what `vcmailbox 0x00038064 4 0 1` sends: 7 words, request code 0, one tag with a 4-byte value, end tag
    assert slots.mbox_buffer(slots.MBOX_SET_REBOOT_FLAGS, 1) == [28, 0, 0x00038064, 4, 0, 1, 0]
    assert slots._mbox_ioctl_number() in (0xC0086400, 0xC0046400)  # _IOWR(100, 0, char *), 64/32-bit


def test_an_interrupted_commit_is_finished_and_an_interrupted_rollback_cleaned_up(boot):
    _pend(boot)
    # power cut inside commit: config.txt already points at b, hems-slots.json still says trying b
    (boot / "config.txt").write_text(slots.set_os_prefix(CONFIG_TXT, "b"))
    state = slots.read_state(boot)
    assert (state["committed"], state["trying"], state["slots"]["b"]["status"]) == ("b", None, "good")
    assert "finished an interrupted commit of slot b" in state["warnings"]
    # power cut inside rollback: tryboot.txt is gone, the state still says trying a
    (boot / "config.txt").write_text(CONFIG_TXT)
    slots.write_state(boot, slots.initial_state("0.1.0", "arm64", "a"))
    _pend(boot)
    (boot / "tryboot.txt").unlink()
    what, state = slots.boot_check(boot, booted="a", tryboot=False)
    assert what == "rolled back: tryboot.txt is gone" and state["trying"] is None
