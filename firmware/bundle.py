"""Signed gateway update bundles: format, signing, verification, and installing one into the inactive slot.

A bundle is one file::

    b"HEMSUPD1"                  8 bytes, magic and format version
    manifest length              4 bytes, big-endian (at most 1 MiB)
    manifest                     UTF-8 JSON (below)
    signature length             2 bytes, big-endian (64)
    signature                    Ed25519 over b"HEMSUPD1" + manifest bytes
    payloads                     concatenated, in manifest order, nothing after the last

Manifest::

    {"format": 1, "product": "hems-gateway", "version": "0.2.0", "arch": "amd64" | "arm64",
     "created": "2026-01-01T00:00:00Z", "min_from_version": "0.1.0" | null, "key_id": "<16 hex>",
     "cmdline": "console=ttyS0 rootwait ..." | null,          # root= is set per slot at install
     "payloads": [
       {"name": "rootfs", "kind": "rootfs", "compression": "gzip" | "xz" | "none",
        "size_bytes": N, "sha256": "...",                      # of the payload as stored in the bundle
        "image_size_bytes": M, "image_sha256": "..."},         # of the ext4 image it expands to
       {"name": "boot/vmlinuz", "kind": "boot", "path": "vmlinuz", "size_bytes": N, "sha256": "..."},
       ...]}

Only the manifest is signed; it pins every payload by size and sha256, and payloads are hashed before a
single byte reaches the disk, so a bad signature, a wrong hash, a truncated file, a wrong arch or a downgrade
is refused with nothing changed.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import json
import lzma
import os
import platform
import re
import struct
import tempfile
import time
import zlib
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import BinaryIO

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey

from . import slots
from .slots import SlotError

MAGIC = b"HEMSUPD1"
FORMAT = 1
PRODUCT = "hems-gateway"
MAX_MANIFEST_BYTES = 1 << 20
SIGNATURE_BYTES = 64
CHUNK_BYTES = 1 << 20
ARCHES = ("amd64", "arm64")
COMPRESSIONS = ("gzip", "xz", "none")
DEFAULT_PUBKEY = "/etc/hems/update-key.pub"
_HEX64 = re.compile(r"[0-9a-f]{64}")


class BundleError(Exception):
    """A bundle refused or unusable; ``reason`` is one of: format, truncated, signature, hash, arch, downgrade, key."""

    def __init__(self, reason: str, message: str) -> None:
        super().__init__(message)
        self.reason = reason


# -- keys ---------------------------------------------------------------------------------------------------


def keygen(prefix: str | Path) -> tuple[Path, Path]:
    """Write PREFIX.key (private, PEM PKCS8, mode 0600) and PREFIX.pub (public, PEM); never overwrites."""
    key_path, pub_path = Path(f"{prefix}.key"), Path(f"{prefix}.pub")
    for p in (key_path, pub_path):
        if p.exists():
            raise BundleError("key", f"{p} exists already; not overwriting a key")
    key = Ed25519PrivateKey.generate()
    pem = key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    )
    fd = os.open(key_path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "wb") as f:
        f.write(pem)
    pub_path.write_bytes(
        key.public_key().public_bytes(
            serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
        )
    )
    return key_path, pub_path


def load_private_key(path: str | Path) -> Ed25519PrivateKey:
    try:
        key = serialization.load_pem_private_key(Path(path).read_bytes(), password=None)
    except FileNotFoundError:
        raise BundleError("key", f"signing key {path} does not exist") from None
    except (ValueError, TypeError) as exc:
        raise BundleError("key", f"{path} is not an unencrypted PEM private key: {exc}") from None
    if not isinstance(key, Ed25519PrivateKey):
        raise BundleError("key", f"{path} is not an Ed25519 key")
    return key


def load_public_keys(path: str | Path) -> list[Ed25519PublicKey]:
    """One or more PEM public keys in one file (several during a key rotation)."""
    try:
        text = Path(path).read_text()
    except FileNotFoundError:
        raise BundleError(
            "key", f"update public key {path} does not exist (the image bakes it in; or pass --pubkey)"
        ) from None
    blocks = re.findall(r"-----BEGIN PUBLIC KEY-----.*?-----END PUBLIC KEY-----", text, re.S)
    if not blocks:
        raise BundleError("key", f"{path} holds no PEM public key")
    keys = []
    for block in blocks:
        try:
            key = serialization.load_pem_public_key(block.encode())
        except ValueError as exc:
            raise BundleError("key", f"{path}: a public key does not parse: {exc}") from None
        if not isinstance(key, Ed25519PublicKey):
            raise BundleError("key", f"{path}: a public key is not Ed25519")
        keys.append(key)
    return keys


def key_id(key: Ed25519PublicKey | Ed25519PrivateKey) -> str:
    if isinstance(key, Ed25519PrivateKey):
        key = key.public_key()
    raw = key.public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)
    return hashlib.sha256(raw).hexdigest()[:16]


# -- versions -------------------------------------------------------------------------------------------------

_VERSION = re.compile(r"(\d+(?:\.\d+)*)(?:(a|b|rc)(\d+))?(?:\.post(\d+))?(?:\.dev(\d+))?(?:\+[A-Za-z0-9.]+)?")


def version_key(version: str) -> tuple:
    """Order of PEP 440 style versions (1.2.0.dev1 < 1.2.0a1 < 1.2.0rc1 < 1.2.0 < 1.2.0.post1 < 1.2.1)."""
    m = _VERSION.fullmatch(str(version).strip())
    if not m:
        raise BundleError("format", f"version {version!r} is not a version number like 1.2.3")
    release = [int(x) for x in m.group(1).split(".")]
    while len(release) > 1 and release[-1] == 0:
        release.pop()
    pre, pre_n, post, dev = m.group(2), m.group(3), m.group(4), m.group(5)
    if pre:
        pre_key = (0, {"a": 0, "b": 1, "rc": 2}[pre], int(pre_n))
    elif dev is not None and post is None:
        pre_key = (-1, 0, 0)
    else:
        pre_key = (1, 0, 0)
    return (tuple(release), pre_key, int(post) if post else -1, int(dev) if dev is not None else 1 << 62)


def machine_arch() -> str:
    m = platform.machine().lower()
    return {"x86_64": "amd64", "amd64": "amd64", "aarch64": "arm64", "arm64": "arm64"}.get(m, m)


# -- making a bundle --------------------------------------------------------------------------------------------


def _compress(src: Path, compression: str, out: BinaryIO) -> tuple[int, str, int, str]:
    """Write src compressed into out; returns (stored bytes, stored sha256, image bytes, image sha256)."""
    stored_h, image_h = hashlib.sha256(), hashlib.sha256()
    stored = image = 0
    comp = (
        zlib.compressobj(6, zlib.DEFLATED, 31)
        if compression == "gzip"
        else lzma.LZMACompressor(preset=6)
        if compression == "xz"
        else None
    )
    with open(src, "rb") as f:
        while chunk := f.read(CHUNK_BYTES):
            image_h.update(chunk)
            image += len(chunk)
            data = comp.compress(chunk) if comp else chunk
            if data:
                out.write(data)
                stored_h.update(data)
                stored += len(data)
    if comp:
        data = comp.flush()
        out.write(data)
        stored_h.update(data)
        stored += len(data)
    return stored, stored_h.hexdigest(), image, image_h.hexdigest()


def _hash_file(path: Path) -> tuple[int, str]:
    h, n = hashlib.sha256(), 0
    with open(path, "rb") as f:
        while chunk := f.read(CHUNK_BYTES):
            h.update(chunk)
            n += len(chunk)
    return n, h.hexdigest()


def boot_files_of_dir(boot_dir: str | Path) -> dict[str, Path]:
    """{relative path: file} of a slot's boot directory (what goes into slot-X/), cmdline.txt excluded."""
    base = Path(boot_dir)
    if not base.is_dir():
        raise BundleError("format", f"boot directory {base} does not exist")
    return {
        p.relative_to(base).as_posix(): p
        for p in sorted(base.rglob("*"))
        if p.is_file() and p.name not in ("cmdline.txt", slots.SLOT_ENV)
    }


def make_bundle(
    out: str | Path,
    *,
    key: Ed25519PrivateKey,
    rootfs: str | Path,
    version: str,
    arch: str,
    boot_files: dict[str, Path],
    cmdline: str | None = None,
    min_from_version: str | None = None,
    compression: str = "gzip",
    created: str | None = None,
) -> dict:
    """Build a signed bundle at `out` (written to out.partial, renamed when complete). Returns the manifest."""
    version_key(version)
    if min_from_version:
        version_key(min_from_version)
    if arch not in ARCHES:
        raise BundleError("arch", f"arch must be one of {', '.join(ARCHES)}, not {arch!r}")
    if compression not in COMPRESSIONS:
        raise BundleError(
            "format", f"compression must be one of {', '.join(COMPRESSIONS)}, not {compression!r}"
        )
    rootfs = Path(rootfs)
    if not rootfs.is_file():
        raise BundleError("format", f"root image {rootfs} does not exist")
    for rel in boot_files:
        try:
            slots._safe_rel(rel)
        except SlotError as exc:
            raise BundleError("format", str(exc)) from None
    out = Path(out)
    with tempfile.TemporaryDirectory(dir=out.parent) as tmp:
        stored = Path(tmp) / "rootfs"
        with open(stored, "wb") as f:
            size, sha, image_size, image_sha = _compress(rootfs, compression, f)
        payloads: list[dict] = [
            {
                "name": "rootfs",
                "kind": "rootfs",
                "compression": compression,
                "size_bytes": size,
                "sha256": sha,
                "image_size_bytes": image_size,
                "image_sha256": image_sha,
            }
        ]
        sources = [stored]
        for rel, path in sorted(boot_files.items()):
            n, h = _hash_file(path)
            payloads.append(
                {"name": f"boot/{rel}", "kind": "boot", "path": rel, "size_bytes": n, "sha256": h}
            )
            sources.append(path)
        manifest = {
            "format": FORMAT,
            "product": PRODUCT,
            "version": version,
            "arch": arch,
            "created": created
            or dt.datetime.now(dt.UTC).replace(microsecond=0).isoformat().replace("+00:00", "Z"),
            "min_from_version": min_from_version,
            "key_id": key_id(key),
            "cmdline": " ".join(cmdline.split()) if cmdline else None,
            "payloads": payloads,
        }
        body = json.dumps(manifest, indent=1, sort_keys=True).encode()
        signature = key.sign(MAGIC + body)
        partial = out.with_name(out.name + ".partial")
        with open(partial, "wb") as f:
            f.write(
                MAGIC + struct.pack(">I", len(body)) + body + struct.pack(">H", len(signature)) + signature
            )
            for src in sources:
                with open(src, "rb") as s:
                    while chunk := s.read(CHUNK_BYTES):
                        f.write(chunk)
        os.replace(partial, out)
    return manifest


# -- reading and verifying -----------------------------------------------------------------------------------------


def _check_manifest(m: object) -> dict:
    def bad(msg: str) -> BundleError:
        return BundleError("format", f"bundle manifest: {msg}")

    if not isinstance(m, dict):
        raise bad("not a JSON object")
    if m.get("format") != FORMAT:
        raise bad(f"format {m.get('format')!r} is not supported (this hems-update reads format {FORMAT})")
    if m.get("product") != PRODUCT:
        raise bad(f"product {m.get('product')!r} is not {PRODUCT!r}")
    for field in ("version", "arch", "created"):
        if not isinstance(m.get(field), str):
            raise bad(f"{field} is missing")
    version_key(m["version"])
    if m.get("min_from_version") is not None:
        version_key(m["min_from_version"])
    payloads = m.get("payloads")
    if not isinstance(payloads, list) or not payloads:
        raise bad("no payloads")
    names = set()
    for p in payloads:
        if not isinstance(p, dict) or not isinstance(p.get("name"), str):
            raise bad("a payload has no name")
        if p["name"] in names:
            raise bad(f"payload {p['name']} appears twice")
        names.add(p["name"])
        if not isinstance(p.get("size_bytes"), int) or p["size_bytes"] < 0:
            raise bad(f"payload {p['name']} has no size_bytes")
        if not isinstance(p.get("sha256"), str) or not _HEX64.fullmatch(p["sha256"]):
            raise bad(f"payload {p['name']} has no sha256")
        if p.get("kind") == "boot":
            try:
                slots._safe_rel(p.get("path", ""))
            except SlotError as exc:
                raise bad(f"payload {p['name']}: {exc}") from None
        elif p.get("kind") == "rootfs":
            if p.get("compression") not in COMPRESSIONS:
                raise bad(f"rootfs compression {p.get('compression')!r} is unknown")
            if not isinstance(p.get("image_size_bytes"), int) or not _HEX64.fullmatch(
                str(p.get("image_sha256"))
            ):
                raise bad("rootfs has no image_size_bytes/image_sha256")
        else:
            raise bad(f"payload {p['name']} has unknown kind {p.get('kind')!r}")
    if sum(1 for p in payloads if p["kind"] == "rootfs") != 1:
        raise bad("there must be exactly one rootfs payload")
    if m.get("cmdline") is not None and not isinstance(m["cmdline"], str):
        raise bad("cmdline must be a string")
    return m


class Bundle:
    """An opened bundle whose signature and structure were verified (payload hashes: :meth:`verify_payloads`)."""

    def __init__(self, path: Path, manifest: dict, payload_offset: int, signer: str) -> None:
        self.path = path
        self.manifest = manifest
        self.signer_key_id = signer
        self.offsets: dict[str, int] = {}
        offset = payload_offset
        for p in manifest["payloads"]:
            self.offsets[p["name"]] = offset
            offset += p["size_bytes"]
        self.end_offset = offset
        self.sha256: str | None = None  # of the whole file, after verify_payloads

    @property
    def version(self) -> str:
        return self.manifest["version"]

    @property
    def rootfs(self) -> dict:
        return next(p for p in self.manifest["payloads"] if p["kind"] == "rootfs")

    @property
    def boot_payloads(self) -> list[dict]:
        return [p for p in self.manifest["payloads"] if p["kind"] == "boot"]

    @classmethod
    def open(cls, path: str | Path, trusted: list[Ed25519PublicKey] | None) -> Bundle:
        """Read and verify header and signature (with trusted=None: only parse, for `inspect`)."""
        path = Path(path)
        try:
            f = open(path, "rb")
        except FileNotFoundError:
            raise BundleError("format", f"bundle {path} does not exist") from None
        with f:
            file_bytes = os.fstat(f.fileno()).st_size
            head = f.read(12)
            if len(head) < 12 or head[:8] != MAGIC:
                if MAGIC.startswith(head[:8]) and len(head) < 12:
                    raise BundleError(
                        "truncated", f"{path} is truncated: {file_bytes} bytes, not even a header"
                    )
                raise BundleError(
                    "format", f"{path} is not a HEMS update bundle (no {MAGIC.decode()} header)"
                )
            (mlen,) = struct.unpack(">I", head[8:])
            if mlen > MAX_MANIFEST_BYTES:
                raise BundleError("format", f"{path}: manifest length {mlen} is implausible (damaged file?)")
            body = f.read(mlen)
            sig_len_raw = f.read(2)
            if len(body) < mlen or len(sig_len_raw) < 2:
                raise BundleError(
                    "truncated", f"{path} is truncated inside its manifest ({file_bytes} bytes)"
                )
            (sig_len,) = struct.unpack(">H", sig_len_raw)
            if sig_len != SIGNATURE_BYTES:
                raise BundleError("format", f"{path}: signature length {sig_len} is not {SIGNATURE_BYTES}")
            signature = f.read(sig_len)
            if len(signature) < sig_len:
                raise BundleError("truncated", f"{path} is truncated inside its signature")
            payload_offset = 12 + mlen + 2 + sig_len
        signer = ""
        if trusted is not None:
            for key in trusted:
                try:
                    key.verify(signature, MAGIC + body)
                except InvalidSignature:
                    continue
                signer = key_id(key)
                break
            else:
                claimed = ""
                try:
                    claimed = str(json.loads(body).get("key_id", ""))
                except (ValueError, AttributeError):
                    pass
                trusted_ids = ", ".join(key_id(k) for k in trusted)
                hint = (
                    f"it claims key {claimed}, this gateway trusts {trusted_ids}"
                    if claimed and claimed not in trusted_ids
                    else "the manifest or signature was altered"
                )
                raise BundleError(
                    "signature",
                    f"{path}: bad signature: not signed by a trusted update key ({hint}); refusing",
                )
        try:
            manifest = json.loads(body)
        except ValueError as exc:
            raise BundleError("format", f"{path}: manifest is not JSON: {exc}") from None
        bundle = cls(path, _check_manifest(manifest), payload_offset, signer)
        if file_bytes < bundle.end_offset:
            raise BundleError(
                "truncated",
                f"{path} is truncated: {file_bytes} bytes of {bundle.end_offset} (incomplete download?); download it again",
            )
        if file_bytes > bundle.end_offset:
            raise BundleError(
                "format",
                f"{path} has {file_bytes - bundle.end_offset} bytes after its last payload (damaged file?)",
            )
        return bundle

    def iter_payload(self, name: str) -> Iterator[bytes]:
        """The payload's stored bytes in chunks; raises BundleError(truncated) when the file got shorter."""
        p = next(p for p in self.manifest["payloads"] if p["name"] == name)
        with open(self.path, "rb") as f:
            f.seek(self.offsets[name])
            left = p["size_bytes"]
            while left:
                chunk = f.read(min(left, CHUNK_BYTES))
                if not chunk:
                    raise BundleError("truncated", f"{self.path} ended inside payload {name}")
                left -= len(chunk)
                yield chunk

    def verify_payloads(self, progress: Callable[[int, int], None] | None = None) -> None:
        """Hash every payload against the signed manifest (read-only); sets self.sha256 of the whole file."""
        total = self.end_offset
        done = 0
        whole = hashlib.sha256()
        with open(self.path, "rb") as f:
            whole.update(f.read(self.offsets[self.manifest["payloads"][0]["name"]]))
        for p in self.manifest["payloads"]:
            h = hashlib.sha256()
            for chunk in self.iter_payload(p["name"]):
                h.update(chunk)
                whole.update(chunk)
                done += len(chunk)
                if progress:
                    progress(done, total)
            if h.hexdigest() != p["sha256"]:
                raise BundleError(
                    "hash",
                    f"{self.path}: payload {p['name']} has the wrong sha256 ({h.hexdigest()[:16]}…, the signed "
                    f"manifest says {p['sha256'][:16]}…): the file is damaged or was tampered with; refusing",
                )
        self.sha256 = whole.hexdigest()

    def iter_image(self) -> Iterator[bytes]:
        """The rootfs payload decompressed, in bounded chunks (a GiB of zeros never sits in memory)."""
        p = self.rootfs
        src = self.iter_payload(p["name"])
        if p["compression"] == "none":
            yield from src
        elif p["compression"] == "gzip":
            d = zlib.decompressobj(31)
            for chunk in src:
                buf = chunk
                while buf:
                    out = d.decompress(buf, CHUNK_BYTES)
                    if out:
                        yield out
                    buf = d.unconsumed_tail
                    if d.eof:
                        break
                if d.eof and (d.unused_data or buf):
                    raise BundleError("format", "rootfs payload has data after its gzip stream")
            if not d.eof:
                raise BundleError("format", "rootfs payload's gzip stream ends early")
        else:
            x = lzma.LZMADecompressor()
            for chunk in src:
                out = x.decompress(chunk, CHUNK_BYTES)
                if out:
                    yield out
                while not x.needs_input and not x.eof:
                    out = x.decompress(b"", CHUNK_BYTES)
                    if out:
                        yield out
            if not x.eof:
                raise BundleError("format", "rootfs payload's xz stream ends early")

    def extract_payload(self, name: str, dest: Path) -> str:
        h = hashlib.sha256()
        with open(dest, "wb") as f:
            for chunk in self.iter_payload(name):
                f.write(chunk)
                h.update(chunk)
        return h.hexdigest()


def check_compatible(manifest: dict, arch: str, current_version: str | None) -> None:
    """Refuse a wrong arch, a downgrade (or same version), or an update from a version too old."""
    if manifest["arch"] != arch:
        raise BundleError(
            "arch", f"bundle is for {manifest['arch']} but this gateway is {arch}; use the {arch} bundle"
        )
    if current_version is None:
        return
    new, cur = version_key(manifest["version"]), version_key(current_version)
    if new <= cur:
        what = "the same version" if new == cur else "a downgrade"
        raise BundleError(
            "downgrade",
            f"bundle version {manifest['version']} is {what}: the gateway runs {current_version}; "
            "only newer versions are installed",
        )
    floor = manifest.get("min_from_version")
    if floor and cur < version_key(floor):
        raise BundleError(
            "downgrade",
            f"bundle {manifest['version']} updates from {floor} or newer, but the gateway runs {current_version}; "
            "install the intermediate update first",
        )


# -- installing ---------------------------------------------------------------------------------------------------------


def install_bundle(
    bundle_path: str | Path,
    *,
    disk: str | Path,
    boot: slots.BootFiles,
    trusted: list[Ed25519PublicKey],
    booted: str | None,
    arch: str | None = None,
    current_version: str | None = None,
    devices_ok_before: int | None = None,
    log: Callable[[str], None] = lambda _msg: None,
) -> dict:
    """Verify a bundle fully, then write it into the inactive slot and stage the trial boot.

    Every refusal (BundleError, SlotError) raised before "writing slot" leaves disk and boot partition as they
    were. Returns {"slot", "version", "image_size_bytes", "verify_s", "write_s", "readback_s", ...}.
    """
    t0 = time.monotonic()
    bundle = Bundle.open(bundle_path, trusted)
    m = bundle.manifest
    state = slots.read_state(boot)
    arch = state.get("arch") or arch or machine_arch()
    committed = state["committed"]
    current = state["slots"][committed].get("version") or current_version
    check_compatible(m, arch, current)
    if state.get("trying") and booted == state["trying"]:
        raise SlotError(
            f"this boot is the trial of slot {state['trying']} (version {state['slots'][state['trying']].get('version')}); "
            "let its health check commit or roll it back first"
        )
    if booted is not None and booted != committed:
        raise SlotError(
            f"booted slot {booted} is not the committed slot {committed}; refusing to write a slot"
        )
    target = slots.other_slot(committed)
    parts = slots.slot_partitions(disk)
    part = parts[target]
    rootfs = bundle.rootfs
    if rootfs["image_size_bytes"] > part.size_bytes:
        raise BundleError(
            "format",
            f"the bundle's root image is {rootfs['image_size_bytes']} bytes but slot {target} "
            f"({part.label}) holds {part.size_bytes} bytes",
        )
    mounted = slots.partition_mounted(disk, part)
    if mounted:
        raise SlotError(f"slot {target} ({part.label}) is mounted at {mounted}; unmount it first")
    log(f"bundle {m['version']} ({m['arch']}) signed by key {bundle.signer_key_id}; checking payload hashes")
    bundle.verify_payloads()
    verify_s = time.monotonic() - t0
    cmdline = m.get("cmdline")
    if cmdline is None:
        current_cmdline = boot.read(f"slot-{committed}/cmdline.txt")
        if current_cmdline is None:
            raise BundleError(
                "format", f"the bundle has no cmdline and slot-{committed}/cmdline.txt is missing"
            )
        cmdline = current_cmdline.decode()
    cmdline = slots.cmdline_for_slot(cmdline, target)
    have_paths = {p["path"] for p in bundle.boot_payloads}
    if slots.SLOT_KERNEL not in have_paths:
        raise BundleError(
            "format",
            f"the bundle has no {slots.SLOT_KERNEL}, the kernel the boot loader starts; slot {target} could not "
            "boot: rebuild the bundle with the slot's boot files (--boot-dir)",
        )
    need = sum(p["size_bytes"] for p in bundle.boot_payloads) + len(cmdline) + 2 * slots.ENV_BLOCK_BYTES
    have = boot.free_bytes() + boot.tree_bytes(f"slot-{target}")
    if need > have:
        raise SlotError(
            f"the boot partition has {have} bytes for slot-{target}/ but the bundle's boot files need {need}"
        )

    # From here on the inactive slot changes: first make sure nothing can boot it half-written.
    if state.get("trying"):
        log(f"replacing the pending, untried update to slot {state['trying']}")
    env = slots.read_boot_env(boot)
    if env is None or env.try_slot is not None:
        slots.write_boot_env(boot, env.slot if env else committed)
    state["trying"] = None
    state["trial_requested"] = False
    state["slots"][target] = {"version": m["version"], "status": "writing", "started": slots.now_iso()}
    slots.write_state(boot, state)

    log(f"writing {rootfs['image_size_bytes']} bytes into slot {target} ({part.label} of {disk})")
    t1 = time.monotonic()
    try:
        written_sha = slots.write_slot(disk, part, bundle.iter_image(), rootfs["image_size_bytes"])
    except (OSError, SlotError, BundleError) as exc:
        _mark_bad(boot, target, f"writing the slot failed: {exc}")
        raise
    write_s = time.monotonic() - t1
    if written_sha != rootfs["image_sha256"]:
        _mark_bad(boot, target, "the decompressed root image does not match its signed hash")
        raise BundleError(
            "hash", f"the decompressed root image of {bundle.path} does not match its signed sha256"
        )
    t2 = time.monotonic()
    readback = slots.hash_slot(disk, part, rootfs["image_size_bytes"])
    readback_s = time.monotonic() - t2
    if readback != rootfs["image_sha256"]:
        _mark_bad(boot, target, "read-back of the slot does not match what was written")
        raise SlotError(
            f"slot {target} reads back different bytes than were written: the disk may be failing"
        )

    log(f"copying {len(bundle.boot_payloads)} boot files into slot-{target}/")
    boot.remove_tree(f"slot-{target}")
    with tempfile.TemporaryDirectory() as tmp:
        for p in bundle.boot_payloads:
            local = Path(tmp) / "payload"
            if bundle.extract_payload(p["name"], local) != p["sha256"]:
                raise BundleError("hash", f"{bundle.path}: payload {p['name']} changed while installing")
            boot.put(f"slot-{target}/{p['path']}", local)
        slots.write_slot_cmdline(boot, target, cmdline)
    for p in bundle.boot_payloads:
        data = boot.read(f"slot-{target}/{p['path']}")
        if data is None or hashlib.sha256(data).hexdigest() != p["sha256"]:
            _mark_bad(boot, target, f"boot file {p['path']} reads back wrong")
            raise SlotError(
                f"slot-{target}/{p['path']} reads back wrong from the boot partition {boot.label}"
            )

    state = slots.stage_pending(boot, target, m["version"], bundle.sha256 or "", devices_ok_before)
    env = slots.read_boot_env(boot)
    if env is None or env.try_slot != target:  # never leave a trial that points anywhere else
        slots.rollback(boot, f"{slots.BOOT_ENV} does not name slot {target} for its trial")
        raise SlotError(
            f"after the install {slots.BOOT_ENV} does not name slot {target} for a trial; rolled back"
        )
    log(f"slot {target} holds {m['version']}; the boot loader tries it on the next `hems-update reboot`")
    return {
        "slot": target,
        "version": m["version"],
        "previous_version": current,
        "image_size_bytes": rootfs["image_size_bytes"],
        "bundle_bytes": bundle.end_offset,
        "verify_s": round(verify_s, 3),
        "write_s": round(write_s, 3),
        "readback_s": round(readback_s, 3),
        "total_s": round(time.monotonic() - t0, 3),
        "state": state,
    }


def _mark_bad(boot: slots.BootFiles, slot: str, reason: str) -> None:
    state = slots.read_state(boot)
    state["slots"][slot]["status"] = "bad"
    state["slots"][slot]["reason"] = reason
    slots.write_state(boot, state)
