"""wifi-setup (image/rootfs/usr/lib/hems/wifi-setup), run as hems-boot-setup runs it at boot, on files here."""

from __future__ import annotations

import stat
import subprocess
import sys
from pathlib import Path

import pytest

SCRIPT = Path(__file__).resolve().parent.parent / "rootfs" / "usr" / "lib" / "hems" / "wifi-setup"


def run(boot_file: Path, out: Path) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, str(SCRIPT), "--boot-file", str(boot_file), "--out", str(out)],
        capture_output=True,
        text=True,
        timeout=30,
    )


@pytest.fixture
def paths(tmp_path) -> tuple[Path, Path]:
    return tmp_path / "boot" / "wifi.txt", tmp_path / "data" / "wifi" / "wpa_supplicant-wlan0.conf"


def test_a_wifi_file_becomes_the_supplicant_config_and_leaves_the_boot_partition(paths):
    boot_file, out = paths
    boot_file.parent.mkdir()
    boot_file.write_bytes(
        b"\xef\xbb\xbf# typed on Windows\r\ncountry=gb\r\nSSID = Flat 4 \r\npsk=pa ss word 1\r\n"
    )
    r = run(boot_file, out)
    assert r.returncode == 0, r.stderr
    assert "Wi-Fi configured for network 'Flat 4'" in r.stdout
    assert not boot_file.exists()  # the password no longer on the FAT partition
    assert stat.S_IMODE(out.stat().st_mode) == 0o600 and stat.S_IMODE(out.parent.stat().st_mode) == 0o700
    lines = [line.strip() for line in out.read_text().splitlines()]
    assert "country=GB" in lines and 'ssid="Flat 4"' in lines and 'psk="pa ss word 1"' in lines
    assert lines.count("network={") == 1 and lines[-1] == "}"


def test_hex_key_and_open_network(paths):
    boot_file, out = paths
    boot_file.parent.mkdir()
    key = "0123456789ABCDEF" * 4
    boot_file.write_text(f"country=US\nssid=Shop\npsk={key}\n")
    assert run(boot_file, out).returncode == 0
    assert f"psk={key.lower()}" in out.read_text().split()  # a precomputed key goes unquoted
    boot_file.write_text("country=US\nssid=Cafe\n")
    assert run(boot_file, out).returncode == 0
    text = out.read_text()
    assert 'ssid="Cafe"' in text and "key_mgmt=NONE" in text and "psk" not in text


def test_no_file_is_nothing_to_do(paths):
    boot_file, out = paths
    r = run(boot_file, out)
    assert r.returncode == 0 and r.stdout == "" and not out.exists()


@pytest.mark.parametrize(
    ("content", "says"),
    [
        ("ssid=Home\npsk=password123\n", "country= must be the two-letter country code"),
        ("country=DE\npsk=password123\n", "ssid= must be the network's name"),
        ("country=DE\nssid=Home\npsk=short\n", "psk= must be the password, 8 to 63 characters"),
        ("country=DE\nssid=" + "x" * 33 + "\n", "ssid= must be the network's name, 1 to 32 bytes"),
        ("country=DE\nssid=Home\npassword=secret123\n", "line 3: expected one of country=, ssid=, psk="),
        ("country=DE\nssid=Home\nssid=Other\n", "line 3: ssid is given twice"),
        ('country=DE\nssid=Home "5G"\npsk=password123\n', "ssid= holds a quote or backslash"),
    ],
)
def test_a_wrong_file_says_what_is_wrong_and_changes_nothing(paths, content, says):
    boot_file, out = paths
    boot_file.parent.mkdir()
    out.parent.mkdir(parents=True)
    out.write_text("previous configuration\n")
    boot_file.write_text(content)
    r = run(boot_file, out)
    assert r.returncode == 1
    assert says in r.stderr and r.stderr.startswith(f"Wi-Fi not changed: {boot_file}: "), r.stderr
    assert boot_file.read_text() == content  # left for the installer to fix
    assert out.read_text() == "previous configuration\n"
