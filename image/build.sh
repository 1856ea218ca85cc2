#!/bin/bash
# Build the flashable gateway image: image/build.sh amd64|arm64   (make image ARCH=...)
#
#   1. base root: Debian bookworm with mmdebstrap, cached as a tarball keyed by the package list and hooks
#   2. wheels: the project's wheel and its dependencies for the target, downloaded on the host
#   3. root slot: the base root + /opt/hems/venv (pip --no-index in the chroot) + image/rootfs + users/units
#   4. disk: GPT (sfdisk) with hems-boot (FAT32, mtools), hems-root-a/b (mkfs.ext4 -d) and hems-data; no loop devices
#
# Output (var/image/): hems-<version>-<arch>.img (the disk), hems-<version>-<arch>.rootfs.ext4 and .slot-boot/
# (one root slot and its kernel files: what an update bundle carries, see firmware/README.md) and
# hems-<version>-<arch>.json (what was built, sizes and timings). Update bundles for the image must be signed
# with var/image-keys/hems-update.key (made on the first build) or the key named by HEMS_UPDATE_PUBKEY.
# Environment: HEMS_IMAGE_CACHE (default var/image-cache), HEMS_IMAGE_OUT (default var/image),
# HEMS_IMAGE_MIRROR (default http://deb.debian.org/debian), HEMS_IMAGE_REFRESH=1 rebuilds the cached base root.
set -euo pipefail

ARCH="${1:-amd64}"
case "$ARCH" in
amd64 | arm64) ;;
*)
    echo "image/build.sh: unknown ARCH '$ARCH': use amd64 or arm64" >&2
    exit 2
    ;;
esac
if [ "$(id -u)" != 0 ]; then
    echo "image/build.sh: must run as root (mmdebstrap's root mode, chroot, file ownership in the image)" >&2
    exit 2
fi

here="$(cd "$(dirname "$0")" && pwd)"
project="$(dirname "$here")"
CACHE="${HEMS_IMAGE_CACHE:-$project/var/image-cache}"
OUT="${HEMS_IMAGE_OUT:-$project/var/image}"
MIRROR="${HEMS_IMAGE_MIRROR:-http://deb.debian.org/debian}"
SECURITY_MIRROR="${HEMS_IMAGE_SECURITY_MIRROR:-http://deb.debian.org/debian-security}"
PY="${PYTHON:-$project/.venv/bin/python}"
SUITE=bookworm
COMPONENTS="main non-free-firmware"
# Partition sizes (MiB). The slots are fixed for the life of a gateway: leave room for future versions.
BOOT_MIB=256
SLOT_MIB="${HEMS_IMAGE_SLOT_MIB:-2048}"
DATA_MIB=256 # grown to fill the disk at first boot
WEB_PORT=8443

mkdir -p "$CACHE" "$OUT"
exec 9>"$CACHE/.lock-$ARCH"
flock 9 # one build per arch at a time (make image and the boot test may race)

t_start=$(date +%s)
declare -A took
stage() { # stage NAME: start timing a stage
    stage_name="$1"
    stage_t0=$(date +%s)
    echo "== image ($ARCH): $1"
}
stage_done() {
    local s=$(($(date +%s) - stage_t0))
    took[$stage_name]=$s
    echo "== image ($ARCH): $stage_name took ${s} s"
}

version="$("$PY" -c 'import hems; print(hems.__version__)')"
name="hems-$version-$ARCH"
work="$OUT/work-$ARCH"

# --- 1. base root (cached) ------------------------------------------------------------------------------------
packages="$(cat "$here/packages/common.txt" "$here/packages/$ARCH.txt" | sed 's/#.*//' | tr -s ' \t' '\n' |
    grep -v '^$' | sort -u)"
key="$({
    echo "$SUITE $ARCH $COMPONENTS $MIRROR"
    echo "$packages"
    cat "$here/hooks/essential.sh" "$here/hooks/customize.sh"
    mmdebstrap --version
} | sha256sum | cut -c1-16)"
base="$CACHE/base-$ARCH-$key.tar"

if [ "$ARCH" = arm64 ] && [ "$(dpkg --print-architecture)" != arm64 ]; then
    # foreign root: qemu-user through binfmt_misc (mounted by hand on machines without systemd's automount)
    if [ ! -e /proc/sys/fs/binfmt_misc/status ]; then
        mount -t binfmt_misc binfmt_misc /proc/sys/fs/binfmt_misc
    fi
    update-binfmts --enable qemu-aarch64 2>/dev/null || true
    if [ ! -e /proc/sys/fs/binfmt_misc/qemu-aarch64 ]; then
        echo "image/build.sh: arm64 needs qemu-user-static and binfmt-support (make image-deps)" >&2
        exit 2
    fi
fi

if [ -n "${HEMS_IMAGE_REFRESH:-}" ] || [ ! -s "$base" ]; then
    stage "base root (mmdebstrap, $(echo "$packages" | wc -l) packages)"
    rm -f "$CACHE/base-$ARCH-"*.tar "$CACHE/base-$ARCH-"*.tar.tmp
    mmdebstrap --mode=root --arch="$ARCH" --variant=apt --format=tar \
        --components="${COMPONENTS// /,}" \
        --include="$(echo "$packages" | paste -sd,)" \
        --essential-hook="$here/hooks/essential.sh \"\$1\"" \
        --customize-hook="$here/hooks/customize.sh \"\$1\"" \
        "$SUITE" "$base.tmp" \
        "deb $MIRROR $SUITE $COMPONENTS" \
        "deb $MIRROR $SUITE-updates $COMPONENTS" \
        "deb $SECURITY_MIRROR $SUITE-security $COMPONENTS"
    mv "$base.tmp" "$base"
    stage_done
else
    echo "== image ($ARCH): base root from cache $base"
    took["base root (cached)"]=0
fi
if [ -n "${HEMS_IMAGE_BASE_ONLY:-}" ]; then
    exit 0
fi

# --- the update signing key: bundles for this image must be signed by its private half -----------------------
KEYS="${HEMS_UPDATE_KEY_DIR:-$project/var/image-keys}"
update_pub="${HEMS_UPDATE_PUBKEY:-$KEYS/hems-update.pub}"
if [ ! -s "$update_pub" ]; then
    mkdir -p "$KEYS"
    (cd "$project" && "$PY" -m firmware.cli keygen "$KEYS/hems-update" >/dev/null)
    update_pub="$KEYS/hems-update.pub"
    echo "== image ($ARCH): made an update signing key $KEYS/hems-update.key: keep it safe and off the gateways"
fi

# --- 2. wheels -----------------------------------------------------------------------------------------------
stage "wheels"
wheels="$CACHE/wheels-$ARCH"
mkdir -p "$wheels"
rm -rf "$work"
mkdir -p "$work/wheels" "$work/rootfs"
rm -f "$wheels"/hems_gateway-*.whl
# build from a copy: setuptools writes build/ and *.egg-info beside the sources
tar -C "$project" --exclude=./.venv --exclude=./var --exclude=./.git --exclude=./build --exclude='*.egg-info' \
    --exclude=node_modules --exclude=__pycache__ -cf - . | (mkdir -p "$work/src" && tar -C "$work/src" -xf -)
"$PY" -m pip wheel -q --no-deps -w "$work/wheels" "$work/src"
project_wheel="$(ls "$work/wheels"/hems_gateway-*.whl)"
# the image runs the versions the tests ran: the dev venv's pins constrain the resolution
"$PY" -m pip freeze --exclude-editable | grep -v '^hems-gateway' >"$work/constraints.txt"
machine=$([ "$ARCH" = arm64 ] && echo aarch64 || echo x86_64)
platforms=(--platform "manylinux2014_$machine")
for minor in $(seq 17 36); do # bookworm has glibc 2.36
    platforms+=(--platform "manylinux_2_${minor}_$machine")
done
"$PY" -m pip download -q -d "$wheels" "${platforms[@]}" --python-version 3.11 --implementation cp \
    --abi cp311 --only-binary=:all: -c "$work/constraints.txt" "$project_wheel[zigbee-radios]"
cp "$wheels"/*.whl "$work/wheels/"
rm -f "$wheels"/hems_gateway-*.whl
stage_done

# --- 3. root slot --------------------------------------------------------------------------------------------
stage "root slot"
rootfs="$work/rootfs"
tar -C "$rootfs" --numeric-owner --xattrs --xattrs-include='*' -xpf "$base"
mkdir -p "$rootfs/tmp/wheels"
cp "$work/wheels"/*.whl "$rootfs/tmp/wheels/"
cp -a "$here/rootfs/." "$rootfs/"
install -m 0755 "$here/hybrid_mbr.py" "$rootfs/usr/lib/hems/hybrid-mbr"
# A/B updates (firmware/): the boot check, health check, commit and rollback units, and the trusted key
(cd "$project" && "$PY" -m firmware.cli install-units --dest "$rootfs/etc/systemd/system" \
    --exe /opt/hems/venv/bin/hems-update >/dev/null)
install -D -m 0644 "$update_pub" "$rootfs/etc/hems/update-key.pub"
cat >"$rootfs/usr/lib/hems/image.env" <<EOF
HEMS_VERSION=$version
HEMS_ARCH=$ARCH
HEMS_WEB_PORT=$WEB_PORT
HEMS_BUILT=$(date -u +%Y-%m-%dT%H:%M:%SZ)
EOF
mounts=()
cleanup_mounts() {
    for ((i = ${#mounts[@]} - 1; i >= 0; i--)); do umount "${mounts[i]}" 2>/dev/null || umount -l "${mounts[i]}" || true; done
    mounts=()
}
trap cleanup_mounts EXIT
for m in proc dev; do
    mkdir -p "$rootfs/$m"
done
mount -t proc proc "$rootfs/proc" && mounts+=("$rootfs/proc")
mount --bind /dev "$rootfs/dev" && mounts+=("$rootfs/dev")
chroot "$rootfs" /usr/bin/env -i PATH=/usr/sbin:/usr/bin:/sbin:/bin HOME=/root LC_ALL=C.UTF-8 \
    HEMS_ARCH="$ARCH" HEMS_VERSION="$version" /bin/sh /usr/lib/hems/image-customize
cleanup_mounts
trap - EXIT
rm -rf "$rootfs/tmp/wheels"
rootfs_mib=$(du -sm --apparent-size "$rootfs" | cut -f1)
if [ "$rootfs_mib" -gt $((SLOT_MIB * 90 / 100)) ]; then
    echo "image/build.sh: the root is ${rootfs_mib} MiB, over 90 % of a ${SLOT_MIB} MiB slot" >&2
    exit 1
fi
slot_img="$OUT/$name.rootfs.ext4"
rm -f "$slot_img"
# -m 0: no reserved blocks on a read-only root; the fixed hash seed and UUID-less label keep the slot reproducible
mkfs.ext4 -q -F -L hems-root -m 0 -d "$rootfs" "$slot_img" "${SLOT_MIB}M"
stage_done

# --- 4. boot partition ---------------------------------------------------------------------------------------
# The boot loader picks the slot (image/boot/, firmware/slots.py): GRUB as a UEFI binary on amd64; on the Pi
# the firmware starts U-Boot, which runs boot.scr. Each slot keeps its kernel files in slot-X/.
stage "boot partition"
boot="$work/boot"
mkdir -p "$boot/slot-a"
kernel="$(ls "$rootfs"/boot/vmlinuz-* | sort -V | tail -1)"
kversion="${kernel##*/vmlinuz-}"
cp "$kernel" "$boot/slot-a/vmlinuz"
cp "$rootfs/boot/initrd.img-$kversion" "$boot/slot-a/initrd.img"
common_args="root=PARTLABEL=hems-root-a ro rootwait fsck.repair=yes panic=10"
if [ "$ARCH" = arm64 ]; then
    # the Pi's boot firmware, U-Boot and its script at the top; the kernel's device trees at the top too (the
    # firmware hands one to U-Boot) and in each slot (U-Boot passes the slot's own to its kernel)
    cp -r "$rootfs"/usr/lib/raspi-firmware/* "$boot/"
    cp "$rootfs/usr/lib/u-boot/rpi_arm64/u-boot.bin" "$boot/u-boot.bin"
    "$PY" "$here/bootloader.py" uboot "$boot" >/dev/null
    mkdir -p "$boot/slot-a/broadcom"
    cp "$rootfs/usr/lib/linux-image-$kversion"/broadcom/bcm*rpi*.dtb "$boot/slot-a/broadcom/"
    cp "$rootfs/usr/lib/linux-image-$kversion"/broadcom/bcm*rpi*.dtb "$boot/"
    # no console=: the kernel takes the serial console from the device tree (ttyS1 on the Pi, ttyAMA0 on QEMU)
    echo "$common_args net.ifnames=0 cma=64M" >"$boot/slot-a/cmdline.txt"
    cat >"$boot/config.txt" <<'EOF'
# HEMS gateway boot configuration (Raspberry Pi 3, 4, Zero 2 W): the firmware starts U-Boot, whose boot.scr
# picks the A/B root slot from hems-boot.env. Do not point kernel= anywhere else: that would bypass the slots.
arm_64bit=1
enable_uart=1
upstream_kernel=1
kernel=u-boot.bin
EOF
else
    "$PY" "$here/bootloader.py" grub "$boot" --root "$rootfs" >/dev/null
    echo "console=tty0 console=ttyS0,115200 $common_args" >"$boot/slot-a/cmdline.txt"
fi
# what an update bundle carries as the slot's boot files
(cd "$project" && "$PY" -m firmware.cli init --boot-dir "$boot" --version "$version" --arch "$ARCH" --slot a)
rm -rf "$OUT/$name.slot-boot"
cp -r "$boot/slot-a" "$OUT/$name.slot-boot"
cat >"$boot/README.txt" <<EOF
HEMS gateway $version ($ARCH)

To enable SSH, put your public key(s) in a file named ssh-authorized-keys on this partition and boot the
gateway: it installs them for the user 'installer' (sudo, no password login) and starts SSH. Without the file
SSH stays off.

Wi-Fi (a Raspberry Pi Zero 2 W has no Ethernet): put a file named wifi.txt here with three lines,
    country=DE
    ssid=Your network's name
    psk=Your network's password
and boot the gateway: it takes the settings and removes the file (the console says so, or what is wrong). The dashboard is at https://hems.local:$WEB_PORT/ (or the gateway's address, port $WEB_PORT).
EOF
boot_img="$work/boot.vfat"
mkfs.vfat -F 32 -n HEMS-BOOT -C "$boot_img" $((BOOT_MIB * 1024)) >/dev/null
mcopy -s -i "$boot_img" "$boot"/* ::/
stage_done

# --- 5. data partition and the disk --------------------------------------------------------------------------
stage "disk"
data="$work/data"
mkdir -p "$data/system/systemd"
chmod 0755 "$data/system"
data_img="$work/data.ext4"
mkfs.ext4 -q -F -L hems-data -d "$data" "$data_img" "${DATA_MIB}M"
slot_b_img="$work/root-b.ext4"
mkfs.ext4 -q -F -L hems-root -m 0 "$slot_b_img" "${SLOT_MIB}M" # empty until the first update
disk="$OUT/$name.img"
rm -f "$disk"
total_mib=$((1 + BOOT_MIB + 2 * SLOT_MIB + DATA_MIB + 1))
truncate -s "${total_mib}M" "$disk"
sfdisk -q "$disk" <<EOF
label: gpt
unit: sectors
first-lba: 2048
start=1MiB, size=${BOOT_MIB}MiB, type=C12A7328-F81F-11D2-BA4B-00A0C93EC93B, name=hems-boot
size=${SLOT_MIB}MiB, type=0FC63DAF-8483-4772-8E79-3D69D8477DE4, name=hems-root-a
size=${SLOT_MIB}MiB, type=0FC63DAF-8483-4772-8E79-3D69D8477DE4, name=hems-root-b
size=${DATA_MIB}MiB, type=0FC63DAF-8483-4772-8E79-3D69D8477DE4, name=hems-data
EOF
offset=1
for part in "$boot_img:$BOOT_MIB" "$slot_img:$SLOT_MIB" "$slot_b_img:$SLOT_MIB" "$data_img:$DATA_MIB"; do
    dd if="${part%:*}" of="$disk" bs=1M seek="$offset" conv=notrunc,sparse status=none
    offset=$((offset + ${part##*:}))
done
if [ "$ARCH" = arm64 ]; then
    "$PY" "$here/hybrid_mbr.py" "$disk" # the Pi 3 and Zero 2 W boot ROMs read only MBR partitions
fi
stage_done

total_s=$(($(date +%s) - t_start))
{
    echo "{"
    echo "  \"version\": \"$version\", \"arch\": \"$ARCH\", \"kernel\": \"$kversion\","
    echo "  \"disk\": \"$disk\", \"rootfs\": \"$slot_img\", \"base\": \"$base\","
    echo "  \"disk_size_bytes\": $(stat -c %s "$disk"), \"rootfs_used_mib\": $rootfs_mib, \"slot_mib\": $SLOT_MIB,"
    echo "  \"web_port\": $WEB_PORT, \"build_s\": $total_s,"
    echo "  \"stages_s\": {$(for k in "${!took[@]}"; do printf '"%s": %s, ' "$k" "${took[$k]}"; done | sed 's/, $//')}"
    echo "}"
} >"$OUT/$name.json"
rm -rf "$work"
echo "== image ($ARCH): $disk ($(du -h --apparent-size "$disk" | cut -f1), root uses ${rootfs_mib} MiB) in ${total_s} s"
