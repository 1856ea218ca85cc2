#!/bin/sh
# mmdebstrap --essential-hook: runs once the essential packages are in, before the kernel and the rest.
# $1 is the new root.
set -eu
root="$1"
# Build the initramfs once at the end (customize.sh), not on every kernel/hook trigger: under qemu-user
# each run costs minutes.
chroot "$root" dpkg-divert --quiet --local --rename --add /usr/sbin/update-initramfs
ln -s /bin/true "$root/usr/sbin/update-initramfs"
