"""Bundle format: sign, verify, and every refusal (bad signature, tampered, wrong hash, truncated, wrong key)."""

from __future__ import annotations

import hashlib
import json
import shutil
import struct
from pathlib import Path

import pytest

from firmware import bundle
from firmware.bundle import Bundle, BundleError

from .conftest import hems_update, make_rootfs


def _trusted(keys) -> list:
    return bundle.load_public_keys(keys.pub)


def _copy(src: Path, tmp: Path, name: str = "b.hemsu") -> Path:
    dst = tmp / name
    shutil.copyfile(src, dst)
    return dst


def _layout(path: Path) -> tuple[int, int, dict]:
    """(manifest offset, manifest length, manifest) of a bundle file, read independently of firmware.bundle."""
    raw = path.read_bytes()
    assert raw[:8] == b"HEMSUPD1"
    (mlen,) = struct.unpack(">I", raw[8:12])
    return 12, mlen, json.loads(raw[12 : 12 + mlen])


@pytest.mark.parametrize("compression", ["gzip", "xz", "none"])
def test_round_trip_restores_the_exact_image(tmp_path, keys, compression):
    rootfs = make_rootfs(tmp_path, "0.2.0", 6)
    vmlinuz = tmp_path / "vmlinuz"
    vmlinuz.write_bytes(b"K" * 5000)
    out = tmp_path / "x.hemsu"
    manifest = bundle.make_bundle(
        out,
        key=bundle.load_private_key(keys.key),
        rootfs=rootfs,
        version="0.2.0",
        arch="arm64",
        boot_files={"vmlinuz": vmlinuz},
        cmdline="console=ttyAMA0  root=PARTLABEL=hems-root-a   rootwait",
        min_from_version="0.1.0",
        compression=compression,
    )
    b = Bundle.open(out, _trusted(keys))
    b.verify_payloads()
    image = rootfs.read_bytes()
    assert b"".join(b.iter_image()) == image
    root = b.rootfs
    assert root["image_size_bytes"] == len(image) == 6 << 20
    assert root["image_sha256"] == hashlib.sha256(image).hexdigest()
    assert root["compression"] == compression
    if compression != "none":
        assert root["size_bytes"] < len(image) // 4  # a mostly empty ext4 image shrinks a lot
    assert [p["path"] for p in b.boot_payloads] == ["vmlinuz"]
    assert manifest["cmdline"] == "console=ttyAMA0 root=PARTLABEL=hems-root-a rootwait"
    assert (b.version, b.manifest["arch"], b.manifest["min_from_version"]) == ("0.2.0", "arm64", "0.1.0")
    assert b.signer_key_id == bundle.key_id(bundle.load_public_keys(keys.pub)[0]) == manifest["key_id"]
    assert b.sha256 == hashlib.sha256(out.read_bytes()).hexdigest()
    assert not out.with_name("x.hemsu.partial").exists()


def test_a_large_zero_image_expands_in_bounded_chunks(tmp_path, keys):
    zeros = tmp_path / "zeros.img"
    with open(zeros, "wb") as f:
        f.truncate(64 << 20)
    out = tmp_path / "z.hemsu"
    bundle.make_bundle(
        out, key=bundle.load_private_key(keys.key), rootfs=zeros, version="1.0", arch="amd64", boot_files={},
        compression="xz",
    )  # fmt: skip
    assert out.stat().st_size < 50_000  # 64 MiB of zeros
    b = Bundle.open(out, _trusted(keys))
    total, biggest = 0, 0
    for chunk in b.iter_image():
        total += len(chunk)
        biggest = max(biggest, len(chunk))
    assert total == 64 << 20
    assert biggest <= bundle.CHUNK_BYTES


def test_bad_signature_is_refused(tmp_path, keys, bundles):
    path = _copy(bundles["0.2.0"], tmp_path)
    off, mlen, _ = _layout(path)
    raw = bytearray(path.read_bytes())
    raw[off + mlen + 2 + 10] ^= 0x01  # one bit of the signature
    path.write_bytes(raw)
    with pytest.raises(BundleError) as e:
        Bundle.open(path, _trusted(keys))
    assert e.value.reason == "signature"
    assert "bad signature" in str(e.value)


def test_tampered_manifest_is_refused(tmp_path, keys, bundles):
    path = _copy(bundles["0.2.0"], tmp_path)
    raw = path.read_bytes()
    assert raw.count(b'"version": "0.2.0"') == 1
    path.write_bytes(raw.replace(b'"version": "0.2.0"', b'"version": "9.2.0"'))  # same length, still JSON
    with pytest.raises(BundleError) as e:
        Bundle.open(path, _trusted(keys))
    assert e.value.reason == "signature"
    assert "altered" in str(e.value)


def test_tampered_payload_is_refused_by_hash(tmp_path, keys, bundles):
    path = _copy(bundles["0.2.0"], tmp_path)
    b = Bundle.open(path, _trusted(keys))
    raw = bytearray(path.read_bytes())
    raw[b.offsets["rootfs"] + 100] ^= 0xFF
    path.write_bytes(raw)
    b = Bundle.open(path, _trusted(keys))  # the manifest and its signature are still good
    with pytest.raises(BundleError) as e:
        b.verify_payloads()
    assert e.value.reason == "hash"
    assert "payload rootfs has the wrong sha256" in str(e.value)


def test_signed_manifest_with_a_wrong_hash_is_refused(tmp_path, keys):
    """A build-machine mistake: the key signs a manifest whose hash does not match its payload."""
    rootfs = make_rootfs(tmp_path, "0.2.0", 4)
    kernel = tmp_path / "vmlinuz"
    kernel.write_bytes(b"kernel")
    good = tmp_path / "good.hemsu"
    bundle.make_bundle(
        good, key=bundle.load_private_key(keys.key), rootfs=rootfs, version="0.2.0", arch="amd64",
        boot_files={"vmlinuz": kernel},
    )  # fmt: skip
    off, mlen, manifest = _layout(good)
    manifest["payloads"][1]["sha256"] = hashlib.sha256(b"something else").hexdigest()
    body = json.dumps(manifest).encode()
    sig = bundle.load_private_key(keys.key).sign(bundle.MAGIC + body)
    raw = good.read_bytes()
    bad = tmp_path / "bad.hemsu"
    bad.write_bytes(
        raw[:8] + struct.pack(">I", len(body)) + body + struct.pack(">H", 64) + sig + raw[off + mlen + 66 :]
    )
    b = Bundle.open(bad, _trusted(keys))
    with pytest.raises(BundleError) as e:
        b.verify_payloads()
    assert e.value.reason == "hash"
    assert "boot/vmlinuz" in str(e.value)


def test_wrong_key_is_refused_and_named(tmp_path, keys, bundles):
    with pytest.raises(BundleError) as e:
        Bundle.open(bundles["0.2.0"], bundle.load_public_keys(keys.other_pub))
    assert e.value.reason == "signature"
    signer = bundle.key_id(bundle.load_public_keys(keys.pub)[0])
    stranger = bundle.key_id(bundle.load_public_keys(keys.other_pub)[0])
    assert f"it claims key {signer}, this gateway trusts {stranger}" in str(e.value)


def test_any_of_several_trusted_keys_verifies(tmp_path, keys, bundles):
    both = tmp_path / "trusted.pub"
    both.write_text(keys.other_pub.read_text() + keys.pub.read_text())
    trusted = bundle.load_public_keys(both)
    assert len(trusted) == 2
    assert Bundle.open(bundles["0.2.0"], trusted).signer_key_id == bundle.key_id(trusted[1])


def test_truncated_downloads_are_refused_wherever_they_stop(tmp_path, keys, bundles):
    raw = bundles["0.2.0"].read_bytes()
    off, mlen, _ = _layout(bundles["0.2.0"])
    for cut in (
        0,
        5,
        10,
        off + mlen // 2,
        off + mlen + 40,
        off + mlen + 66 + 1000,
        len(raw) // 2,
        len(raw) - 1,
    ):
        path = tmp_path / f"cut-{cut}.hemsu"
        path.write_bytes(raw[:cut])
        with pytest.raises(BundleError) as e:
            Bundle.open(path, _trusted(keys))
        assert e.value.reason == "truncated", (cut, str(e.value))
        assert "truncated" in str(e.value)
    path = tmp_path / "last.hemsu"
    path.write_bytes(raw[:-1])
    with pytest.raises(BundleError, match=rf"{len(raw) - 1} bytes of {len(raw)}"):
        Bundle.open(path, _trusted(keys))


def test_trailing_bytes_and_foreign_files_are_refused(tmp_path, keys, bundles):
    path = tmp_path / "long.hemsu"
    path.write_bytes(bundles["0.2.0"].read_bytes() + b"extra")
    with pytest.raises(BundleError, match="5 bytes after its last payload"):
        Bundle.open(path, _trusted(keys))
    other = tmp_path / "notes.txt"
    other.write_text("hello, this is not a bundle")
    with pytest.raises(BundleError, match="not a HEMS update bundle") as e:
        Bundle.open(other, _trusted(keys))
    assert e.value.reason == "format"


def test_versions_order_like_pep440():
    order = [
        "0.1",
        "0.1.1.dev1",
        "0.1.1a1",
        "0.1.1b2",
        "0.1.1rc1",
        "0.1.1",
        "0.1.1.post1",
        "0.2.0",
        "0.10.0",
        "1.0",
    ]
    keys_ = [bundle.version_key(v) for v in order]
    assert keys_ == sorted(keys_)
    assert len(set(keys_)) == len(keys_)
    assert bundle.version_key("1.0") == bundle.version_key("1.0.0")
    with pytest.raises(BundleError, match="not a version number"):
        bundle.version_key("latest")


def test_compatibility_checks():
    m = {"version": "0.3.0", "arch": "arm64", "min_from_version": "0.2.0"}
    bundle.check_compatible(m, "arm64", "0.2.5")
    cases = [
        ("amd64", "0.2.5", "arch", "bundle is for arm64 but this gateway is amd64"),
        ("arm64", "0.3.0", "downgrade", "is the same version"),
        ("arm64", "0.4.0", "downgrade", "is a downgrade: the gateway runs 0.4.0"),
        ("arm64", "0.1.9", "downgrade", "updates from 0.2.0 or newer"),
    ]
    for arch, current, reason, text in cases:
        with pytest.raises(BundleError) as e:
            bundle.check_compatible(m, arch, current)
        assert e.value.reason == reason
        assert text in str(e.value)


def test_cli_keygen_make_verify_inspect(tmp_path, keys):
    r = hems_update("keygen", tmp_path / "k")
    assert r.returncode == 0, r.stderr
    assert (tmp_path / "k.key").stat().st_mode & 0o777 == 0o600
    r = hems_update("keygen", tmp_path / "k")
    assert r.returncode == 3 and "exists already" in r.stderr
    rootfs = make_rootfs(tmp_path, "2.0.0", 4)
    boot = tmp_path / "boot"
    boot.mkdir()
    (boot / "vmlinuz").write_bytes(b"kernel")
    (boot / "cmdline.txt").write_text("console=ttyS0 root=PARTLABEL=hems-root-a\n")
    out = tmp_path / "u.hemsu"
    r = hems_update(
        "make-bundle", "--key", tmp_path / "k.key", "--rootfs", rootfs, "--version", "2.0.0", "--arch", "amd64",
        "--boot-dir", boot, "--boot-file", f"initrd.img={boot / 'vmlinuz'}", "-o", out,
    )  # fmt: skip
    assert r.returncode == 0, r.stderr
    assert "version 2.0.0 (amd64)" in r.stdout and "2 boot files" in r.stdout
    r = hems_update("verify", out, "--pubkey", tmp_path / "k.pub")
    assert r.returncode == 0, r.stderr
    assert "good: version 2.0.0" in r.stdout and "3 payloads match" in r.stdout
    r = hems_update("inspect", out, "--pubkey", tmp_path / "k.pub")
    info = json.loads(r.stdout)
    assert info["manifest"]["cmdline"] == "console=ttyS0 root=PARTLABEL=hems-root-a"
    assert info["signature"].startswith("good")
    r = hems_update("verify", out, "--pubkey", keys.pub)
    assert r.returncode == 3 and "refused" in r.stderr and "bad signature" in r.stderr
    r = hems_update("verify", out, "--pubkey", tmp_path / "missing.pub")
    assert r.returncode == 3 and "missing.pub does not exist" in r.stderr
    r = hems_update(
        "make-bundle", "--key", tmp_path / "k.key", "--rootfs", rootfs, "--version", "two", "-o", out
    )
    assert r.returncode == 3 and "'two' is not a version number" in r.stderr
    r = hems_update("frobnicate")
    assert r.returncode == 2


def test_boot_files_of_dir_leaves_out_what_the_gateway_writes_per_slot(tmp_path):
    boot = tmp_path / "boot"
    (boot / "broadcom").mkdir(parents=True)
    (boot / "vmlinuz").write_bytes(b"kernel")
    (boot / "initrd.img").write_bytes(b"initrd")
    (boot / "broadcom" / "bcm2711-rpi-4-b.dtb").write_bytes(b"dtb")
    (boot / "cmdline.txt").write_text("console=ttyS0 root=PARTLABEL=hems-root-a\n")  # per slot: root= differs
    (boot / "boot.env").write_bytes(b"# GRUB Environment Block\nhems_cmdline=x\n")
    (boot / "broadcom" / "boot.env").write_bytes(b"nested too")
    files = bundle.boot_files_of_dir(boot)
    assert sorted(files) == ["broadcom/bcm2711-rpi-4-b.dtb", "initrd.img", "vmlinuz"]
    assert files["vmlinuz"] == boot / "vmlinuz"


def test_every_command_has_help(capsys):
    from firmware import cli

    r = hems_update("--help")
    assert r.returncode == 0, r.stderr
    assert r.stdout.startswith("usage: hems-update") and "Signed A/B updates of the HEMS gateway" in r.stdout
    listed = {line.split()[0] for line in r.stdout.splitlines() if line.startswith("    ") and line.strip()}
    assert set(cli.COMMANDS) <= listed
    helps = {}
    for name in cli.COMMANDS:
        with pytest.raises(SystemExit) as e:
            cli.main([name, "--help"])
        assert e.value.code == 0, name
        helps[name] = capsys.readouterr().out
        assert helps[name].startswith(f"usage: hems-update {name}"), name
        for gone in ("tryboot", "os_prefix", "config.txt", "--extract"):
            assert gone not in helps[name], (name, gone)
    assert "--trial" in helps["boot-check"]
    for name in ("reboot", "boot-check", "select-boot", "init"):  # the changed ones, in a real process too
        r = hems_update(name, "--help")
        assert r.returncode == 0 and r.stdout.startswith(f"usage: hems-update {name}"), (name, r.stderr)
        assert "tryboot" not in r.stdout
