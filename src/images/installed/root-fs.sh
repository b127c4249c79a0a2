#!/bin/sh
# Writes the btrfs file system of reference:installed: subvolume `root` holds the
# tree "$1" except /home, subvolume `home` holds its /home. Usage:
#   root-fs.sh TREE IMAGE MIB MOUNTPOINT
# mkfs.btrfs --rootdir cannot make subvolumes, so this loop-mounts the image (the
# build needs root anyway for the chroot). With BOOTPROOF_BREAK=home (a broken
# variant) /home stays a plain directory of subvolume `root`.
# Every xattr is copied: GNU tar archives all of them but by default restores only
# `user.*`, which would drop file capabilities and installed-selinux's
# `security.selinux` labels.
set -eu
tree=$1 image=$2 mib=$3 mnt=$4

rm -f "$image"
truncate -s "${mib}M" "$image"
mkfs.btrfs -q -L bootproof-root "$image"
mkdir -p "$mnt"
mount -o loop,compress=zstd:1 "$image" "$mnt"
trap 'umount "$mnt"' EXIT
btrfs -q subvolume create "$mnt/root"
home="$mnt/home"
if [ "${BOOTPROOF_BREAK:-}" = home ]; then
    home="$mnt/root/home"
else
    btrfs -q subvolume create "$home"
fi
tar -C "$tree" --xattrs --acls --numeric-owner \
    --exclude=./home/* --exclude=./proc/* --exclude=./sys/* --exclude=./dev/* -cf - . |
    tar -C "$mnt/root" --xattrs --xattrs-include='*' --acls --numeric-owner -xpf -
tar -C "$tree/home" --xattrs --acls --numeric-owner -cf - . |
    tar -C "$home" --xattrs --xattrs-include='*' --acls --numeric-owner -xpf -
