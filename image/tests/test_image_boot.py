"""The gateway image, built and booted: `make image ARCH=amd64`, then QEMU (software emulation) boots it as
the gateway's firmware would, and everything is checked from outside, as an installer would see it: the serial
console, the dashboard over the forwarded HTTPS port, and SSH (switched on by a key file on the boot partition).

Needs root and the image tools (`make image-deps`; `make test` installs them). The build reuses the cached base
root (var/image-cache/); HEMS_BOOT_TEST_IMAGE=path boots an image already built instead.
"""

from __future__ import annotations

import hashlib
import http.cookiejar
import json
import os
import re
import shutil
import socket
import ssl
import subprocess
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path

import pytest

PROJECT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(PROJECT / "image"))

import hybrid_mbr  # noqa: E402
from qemu import Emulator  # noqa: E402

from firmware import slots  # noqa: E402

pytestmark = pytest.mark.timeout(2400)

TOOLS = ("mmdebstrap", "qemu-system-x86_64", "mkfs.vfat", "mcopy", "mkfs.ext4", "sfdisk", "debugfs", "ssh")
OWNER_PASSWORD = "solar-panel-roof-2026"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def report(config, line: str) -> None:
    """Measured numbers go to the terminal even when pytest captures output."""
    with config.pluginmanager.getplugin("capturemanager").global_and_fixture_disabled():
        print(f"\n[image] {line}", flush=True)


def build_image(arch: str, config) -> Path:
    if os.geteuid() != 0:
        pytest.skip("building the gateway image needs root (mmdebstrap, chroot)")
    missing = [t for t in TOOLS if shutil.which(t) is None]
    if missing:
        pytest.fail(f"missing {', '.join(missing)}: run `make image-deps` (make test installs them)")
    t0 = time.monotonic()
    env = {**os.environ, "PYTHON": sys.executable}
    proc = subprocess.run(
        ["bash", str(PROJECT / "image" / "build.sh"), arch], env=env, capture_output=True, text=True
    )
    if proc.returncode != 0:
        pytest.fail(
            f"image/build.sh {arch} failed ({proc.returncode}):\n{proc.stdout[-6000:]}\n{proc.stderr[-6000:]}"
        )
    for line in proc.stdout.splitlines():
        if line.startswith("== image") and " took " in line:
            report(config, line[3:])
    report(config, f"build {arch}: {time.monotonic() - t0:.0f} s")
    m = re.search(r"== image \(\w+\): (\S+\.img) ", proc.stdout)
    assert m, proc.stdout[-2000:]
    return Path(m.group(1))


@pytest.fixture(scope="module")
def amd64_image(pytestconfig) -> Path:
    given = os.environ.get("HEMS_BOOT_TEST_IMAGE")
    return Path(given) if given else build_image("amd64", pytestconfig)


def debugfs_cat(ext4: Path, path: str) -> str:
    """A file of an ext4 image, read without mounting it."""
    out = subprocess.run(["debugfs", "-R", f"cat {path}", str(ext4)], capture_output=True, text=True)
    return out.stdout


def debugfs_exists(ext4: Path, path: str) -> bool:
    out = subprocess.run(["debugfs", "-R", f"stat {path}", str(ext4)], capture_output=True, text=True)
    return "Inode:" in out.stdout


# ---- the disk as built -------------------------------------------------------------------------------------


def test_disk_layout_boot_files_and_root_slot(amd64_image):
    parts = slots.read_gpt(amd64_image)
    assert {"hems-boot", "hems-root-a", "hems-root-b", "hems-data"} <= set(parts)
    mib = 1 << 20
    assert parts["hems-boot"].size_bytes == 256 * mib
    assert parts["hems-root-a"].size_bytes == parts["hems-root-b"].size_bytes >= 2048 * mib
    assert parts["hems-data"].offset_bytes > parts["hems-root-b"].offset_bytes  # last: it grows at first boot
    # UEFI: the boot partition is the EFI system partition, the MBR only GPT's protective one (no hybrid)
    assert parts["hems-boot"].type_guid.upper() == "C12A7328-F81F-11D2-BA4B-00A0C93EC93B"
    with pytest.raises(hybrid_mbr.HybridMbrError):
        hybrid_mbr.apply(str(amd64_image), check=True)

    boot = slots.open_disk_boot(amd64_image)
    efi = boot.read("EFI/BOOT/BOOTX64.EFI")
    assert efi is not None and efi[:2] == b"MZ"  # GRUB at the UEFI removable-media path
    env = slots.read_boot_env(boot)
    assert (env.slot, env.try_slot) == ("a", None) and slots.next_boot(env) == ("a", False)
    cmdline = slots.parse_env(boot.read("slot-a/boot.env"))["hems_cmdline"]
    assert "root=PARTLABEL=hems-root-a" in cmdline.split() and "ro" in cmdline.split()
    assert boot.exists("slot-a/vmlinuz") and boot.exists("slot-a/initrd.img")
    assert not boot.exists("config.txt") and not boot.exists("tryboot.txt")
    state = json.loads(boot.read("hems-slots.json"))
    assert state["committed"] == "a"

    rootfs = amd64_image.with_name(amd64_image.name.replace(".img", ".rootfs.ext4"))
    unit = debugfs_cat(rootfs, "/etc/systemd/system/hems.service")
    for line in (
        "Type=notify",
        "ExecStart=/opt/hems/venv/bin/hems run --config /etc/hems/hems.toml",
        "User=hems",
        "ProtectSystem=strict",
        "ReadWritePaths=/var/lib/hems",
        "NoNewPrivileges=yes",
        "CapabilityBoundingSet=",
        "RestrictAddressFamilies=AF_UNIX AF_INET AF_INET6 AF_NETLINK",
        "SystemCallFilter=@system-service",
        "Restart=on-failure",
    ):
        assert line in unit.splitlines(), line
    assert re.search(r"^WatchdogSec=\d+", unit, re.M)
    assert "Storage=volatile" in debugfs_cat(rootfs, "/etc/systemd/journald.conf.d/hems.conf")
    # one card, one machine: no SSH host keys or machine id baked in; no passwords
    assert not debugfs_exists(rootfs, "/etc/ssh/ssh_host_ed25519_key")
    assert debugfs_cat(rootfs, "/etc/machine-id").strip() == ""
    shadow = {
        line.split(":")[0]: line.split(":")[1] for line in debugfs_cat(rootfs, "/etc/shadow").splitlines()
    }
    assert shadow["root"].startswith(("!", "*")) and shadow["installer"].startswith(("!", "*"))
    assert debugfs_exists(rootfs, "/opt/hems/venv/bin/hems")
    assert debugfs_exists(rootfs, "/etc/hems/update-key.pub")


# ---- booted --------------------------------------------------------------------------------------------------


class Dashboard:
    """The gateway's dashboard over the forwarded port, as a browser that accepts the self-signed certificate
    after comparing its fingerprint with the one on the console."""

    def __init__(self, port: int) -> None:
        self.base = f"https://127.0.0.1:{port}"
        self.ctx = ssl.create_default_context()
        self.ctx.check_hostname = False
        self.ctx.verify_mode = ssl.CERT_NONE
        self.cookies = http.cookiejar.CookieJar()
        self.opener = urllib.request.build_opener(
            urllib.request.HTTPSHandler(context=self.ctx), urllib.request.HTTPCookieProcessor(self.cookies)
        )
        self.csrf = ""

    def fingerprint(self) -> str:
        host, port = self.base.removeprefix("https://").split(":")
        with socket.create_connection((host, int(port)), timeout=30) as raw:
            with self.ctx.wrap_socket(raw) as tls:
                der = tls.getpeercert(binary_form=True)
        return hashlib.sha256(der).digest().hex(":").upper()

    def request(self, method: str, path: str, body: dict | None = None) -> tuple[int, str]:
        data = json.dumps(body).encode() if body is not None else None
        req = urllib.request.Request(self.base + path, data=data, method=method)
        if data is not None:
            req.add_header("Content-Type", "application/json")
        if self.csrf:
            req.add_header("X-CSRF-Token", self.csrf)
        try:
            with self.opener.open(req, timeout=60) as resp:
                return resp.status, resp.read().decode()
        except urllib.error.HTTPError as exc:
            return exc.code, exc.read().decode()

    def login(self, password: str) -> dict:
        status, text = self.request("POST", "/api/login", {"username": "owner", "password": password})
        assert status == 200, text
        me = json.loads(text)
        self.csrf = me["csrf_token"]
        return me


SSH_OPTIONS = (
    "ssh",
    "-o",
    "BatchMode=yes",
    "-o",
    "StrictHostKeyChecking=no",
    "-o",
    "UserKnownHostsFile=/dev/null",
)
SSH_OPTIONS += ("-o", "LogLevel=ERROR", "-o", "ConnectTimeout=20")


def ssh(port: int, key: Path, command: str, timeout_s: float = 60, check: bool = True) -> str:
    out = subprocess.run(
        [*SSH_OPTIONS, "-i", str(key), "-p", str(port), "installer@127.0.0.1", command],
        capture_output=True,
        text=True,
        timeout=timeout_s,
    )
    if check and out.returncode != 0:
        raise AssertionError(f"ssh {command!r} failed ({out.returncode}): {out.stdout}{out.stderr}")
    return out.stdout


def wait_ssh(port: int, key: Path, timeout_s: float = 180) -> None:
    deadline = time.monotonic() + timeout_s
    while True:
        try:
            ssh(port, key, "true", timeout_s=60)
            return
        except (AssertionError, subprocess.TimeoutExpired):
            if time.monotonic() > deadline:
                raise
            time.sleep(3)


BANNER_RUNNING = r"HEMS gateway (hems-[0-9a-f]{8}) \(version [\d.]+\) is running\."


def test_boots_to_the_setup_page_and_keeps_its_state_across_a_reboot(amd64_image, tmp_path, pytestconfig):
    web_port, ssh_port = free_port(), free_port()
    emu = Emulator(amd64_image, "amd64", tmp_path / "gateway", forwards={web_port: 8443, ssh_port: 22})
    emu.prepare()
    key = tmp_path / "installer_key"
    subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", str(key)], check=True)
    # the installer's way to get SSH: a key file on the boot partition (Windows line endings and all)
    slots.open_disk_boot(emu.disk).write(
        "ssh-authorized-keys", key.with_suffix(".pub").read_bytes().replace(b"\n", b"\r\n")
    )
    # Wi-Fi for a board without Ethernet: wifi.txt on the boot partition (taken at boot, then removed)
    slots.open_disk_boot(emu.disk).write(
        "wifi.txt", b"country=de\r\nssid=Home Net 5G\r\npsk=correct horse battery\r\n"
    )
    try:
        emu.boot()
        # UEFI firmware -> GRUB from the boot partition -> slot a's kernel, as hems-boot.env says
        choice = emu.loader_choice(timeout_s=300)
        assert (choice.slot, choice.trial) == ("a", False), choice
        assert "root=PARTLABEL=hems-root-a" in choice.cmdline.split()
        m = emu.wait_for(r"data partition /dev/vda4: (\d+) MiB -> (\d+) MiB", timeout_s=600)
        assert int(m.group(1)) == 256 and int(m.group(2)) == 256 + 1024  # grown into the larger disk
        running = emu.wait_for(BANNER_RUNNING, timeout_s=600)
        first_boot_s = emu.elapsed_s()
        gateway_id = running.group(1)
        code = emu.wait_for(r"Setup code: (\S+)", timeout_s=60).group(1)
        fingerprint = emu.wait_for(r"Certificate SHA-256: ([0-9A-F:]{95})", timeout_s=60).group(1)
        assert re.search(r"https://10\.0\.2\.15:8443/", emu.console())  # the address DHCP gave it
        # the setup code is also in the journal's first-boot lines on the console
        assert f"asks for the setup code {code}" in emu.console()
        report(pytestconfig, f"amd64 first boot to the dashboard banner: {first_boot_s:.0f} s")

        web = Dashboard(web_port)
        assert web.fingerprint() == fingerprint  # the certificate the console vouches for
        status, text = web.request("GET", "/healthz")
        assert status == 200 and json.loads(text)["status"] == "ok", text
        status, text = web.request("GET", "/setup")
        assert status == 200 and "Set up your gateway" in text
        assert web.request("GET", "/api/status")[0] == 401  # nothing else without a login
        status, text = web.request(
            "POST",
            "/api/setup",
            {"setup_code": "WRONG-CODE0", "username": "owner", "password": OWNER_PASSWORD},
        )
        assert status in (400, 401, 403), text
        status, text = web.request(
            "POST", "/api/setup", {"setup_code": code, "username": "owner", "password": OWNER_PASSWORD}
        )
        assert status in (200, 201), text
        assert web.login(OWNER_PASSWORD)["role"] == "owner"
        status, text = web.request("GET", "/api/status")
        assert status == 200 and json.loads(text)["gateway"]["id"] == gateway_id

        # inside, through the installer's SSH (on because of the key file)
        wait_ssh(ssh_port, key)
        facts = ssh(
            ssh_port,
            key,
            "systemctl is-active hems.service; findmnt -no OPTIONS /; sudo -n stat -c '%a %U' "
            "/var/lib/hems/tls/gateway.key; systemctl show -p WatchdogUSec --value hems.service; "
            "systemctl show -p User --value hems.service; systemctl list-units --failed --no-legend --plain | wc -l; "
            "sudo -n systemd-analyze security hems.service --no-pager | tail -1; "
            "systemctl show -p RuntimeWatchdogUSec --value; ls /dev/watchdog0; "
            "sudo -n stat -L -c '%a %U' /etc/wpa_supplicant/wpa_supplicant-wlan0.conf; ls /boot/firmware",
        ).splitlines()
        assert facts[0] == "active"
        assert facts[1].split(",")[0] == "ro"  # the root slot is read-only
        assert facts[2] == "400 hems"  # the TLS key: the service's user only
        assert facts[3] not in ("0", "infinity", "")  # the watchdog is armed
        assert facts[4] == "hems"
        assert facts[5] == "0", ssh(ssh_port, key, "systemctl list-units --failed --no-legend --plain")
        assert facts[7] == "1min" and facts[8] == "/dev/watchdog0"  # systemd feeds the hardware watchdog
        assert facts[9] == "600 root"  # the Wi-Fi password: root only, on the data partition
        assert "wifi.txt" not in facts[10:] and "hems-boot.env" in facts[10:]  # and no longer on the FAT
        supplicant = ssh(ssh_port, key, "sudo -n cat /etc/wpa_supplicant/wpa_supplicant-wlan0.conf")
        for line in ("country=DE", 'ssid="Home Net 5G"', 'psk="correct horse battery"'):
            assert line in [w.strip() for w in supplicant.splitlines()], supplicant
        assert "Wi-Fi configured for network 'Home Net 5G'" in emu.console()
        exposure = re.search(r"exposure level for hems\.service:\s+([\d.]+)", facts[6])
        assert exposure, facts[6]
        report(
            pytestconfig,
            f"systemd-analyze security hems.service: exposure {exposure.group(1)} (0 safest, 10 unsafe)",
        )
        # the A/B update tool in the image sees the slots the build made
        state = json.loads(ssh(ssh_port, key, "sudo -n /opt/hems/venv/bin/hems-update status"))
        assert state["committed"] == "a" and state["trying"] is None, state

        # a power cut right after the boot loader's environment is rewritten (what `hems-update commit` and
        # `reboot` do): once the write returns, the new file is on the disk (vfat keeps a renamed file's directory
        # entry with its inode, so it needs its own fsync; the old file's clusters are freed at once)
        ssh(
            ssh_port,
            key,
            'sudo -n /opt/hems/venv/bin/python -c "from firmware import slots; '
            "slots.write_boot_env(slots.DirBoot('/boot/firmware'), 'a', 'b', 0)\"",
        )
        emu.stop()  # QEMU ends at once: no shutdown, no writeback
        cut = slots.open_disk_boot(emu.disk)
        for name in (slots.BOOT_ENV, slots.BOOT_ENV_BACKUP):
            env = slots.parse_env(cut.read(name) or b"")
            assert (env.get("hems_slot"), env.get("hems_try")) == ("a", "b"), (name, env)

        # and after it everything made at first boot is kept on the data partition
        emu.boot()
        running = emu.wait_for(BANNER_RUNNING, timeout_s=600)
        report(pytestconfig, f"amd64 second boot to the dashboard banner: {emu.elapsed_s():.0f} s")
        assert running.group(1) == gateway_id
        console = emu.console()
        assert "Setup code:" not in console and "data partition" not in console
        assert Dashboard(web_port).fingerprint() == fingerprint
        web = Dashboard(web_port)
        assert web.login(OWNER_PASSWORD)["role"] == "owner"
    finally:
        emu.stop()
