#!/bin/sh
# mmdebstrap --customize-hook for the cached base root: undo the initramfs diversion and build it once.
# $1 is the new root.
set -eu
root="$1"
rm -f "$root/usr/sbin/update-initramfs"
chroot "$root" dpkg-divert --quiet --local --rename --remove /usr/sbin/update-initramfs
# Raspberry Pi: Debian's raspi-firmware writes its own cmdline.txt from these when the initramfs is made. The
# image writes its own per-slot cmdline.txt (build.sh), but keep the package's view consistent with it.
if [ -f "$root/etc/default/raspi-firmware" ]; then
    sed -i -e 's/^#\?ROOTPART=.*/ROOTPART=PARTLABEL=hems-root-a/' \
        -e 's/^#\?CONSOLES=.*/CONSOLES="ttyS1,115200 tty0"/' "$root/etc/default/raspi-firmware"
fi
for dir in "$root"/lib/modules/*; do
    version="$(basename "$dir")"
    chroot "$root" update-initramfs -c -k "$version"
done
ls -l "$root"/boot
