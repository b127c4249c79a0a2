#!/bin/sh
# Labels the finished tree "$1" of reference:installed-selinux as its SELinux policy's
# file contexts say, so the booted system is labelled as a relabelled install is.
# Runs after mmdebstrap rather than in its customize hook: mmdebstrap's clean-up comes
# after the hooks and replaces /etc/machine-id with a new, unlabelled file.
# setfiles runs in the chroot (the host has none and no policy); it needs /proc there.
# -m: /proc/mounts lists the host's mounts, not the image's.
set -eu
tree=$1

mount -t proc proc "$tree/proc"
trap 'umount "$tree/proc"' EXIT
chroot "$tree" setfiles -m -F -e /proc /etc/selinux/default/contexts/files/file_contexts /
