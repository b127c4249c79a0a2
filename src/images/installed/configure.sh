#!/bin/sh
# mmdebstrap customize hook of reference:installed: turns the unpacked bookworm tree
# "$1" into the installed system. mmdebstrap has /proc, /sys and /dev mounted in the
# tree while hooks run, so chroot commands behave as on a real system.
# Inputs (environment): BOOTPROOF_OVERLAY (files copied over the tree as they are),
# BOOTPROOF_LUKS_UUID, BOOTPROOF_ROOT_PASSWORD, BOOTPROOF_ADMIN_PASSWORD,
# BOOTPROOF_VARIANT (the image's name), BOOTPROOF_BREAK (empty, or the one property a
# broken variant lacks: sysctl, home, sddm, cmdline (no script change) or skel).
# installed-tpm has dracut instead of initramfs-tools: its initramfs was built while
# the packages were installed, from /etc/dracut.conf.d/10-bootproof.conf (put there
# before them), and learns what to unlock from the kernel command line.
set -eu
root=$1
broken=${BOOTPROOF_BREAK:-}
variant=${BOOTPROOF_VARIANT:-installed}

cp -a "$BOOTPROOF_OVERLAY"/. "$root"/
echo bootproof-installed >"$root/etc/hostname"

echo "/dev/mapper/root / btrfs subvol=/root,compress=zstd:1 0 0" >"$root/etc/fstab"
if [ "$broken" != home ]; then
    echo "/dev/mapper/root /home btrfs subvol=/home,compress=zstd:1 0 0" >>"$root/etc/fstab"
fi

if [ "$variant" = installed-tpm ]; then
    # The same entry as the kernel command line's rd.luks.* gives the initramfs, so
    # systemd-cryptsetup@root.service of the running system agrees with it.
    echo "root UUID=$BOOTPROOF_LUKS_UUID none luks,tpm2-device=auto,discard" >"$root/etc/crypttab"
else
    # The initramfs unlocks `root` (the name is what askpass prints: "Please unlock
    # disk root:"). The build host has no device-mapper, so the cryptsetup hook cannot
    # see the device; `initramfs` makes it include the entry anyway.
    echo "root UUID=$BOOTPROOF_LUKS_UUID none luks,discard,initramfs" >"$root/etc/crypttab"
    echo CRYPTSETUP=y >>"$root/etc/cryptsetup-initramfs/conf-hook"
    # MODULES=list: an 8 MB initramfs instead of 32 MB (the UKI is read by OVMF under
    # TCG), holding what a virtio disk with LUKS and btrfs needs.
    echo MODULES=list >"$root/etc/initramfs-tools/conf.d/bootproof"
    printf '%s\n' virtio_pci virtio_blk virtio_scsi btrfs dm_crypt xts aesni_intel \
        aes_generic sha256_generic >>"$root/etc/initramfs-tools/modules"
fi

chroot "$root" useradd --create-home --shell /bin/bash admin
printf 'root:%s\nadmin:%s\n' "$BOOTPROOF_ROOT_PASSWORD" "$BOOTPROOF_ADMIN_PASSWORD" |
    chroot "$root" chpasswd
chroot "$root" systemctl enable mnt-bootproof.mount bootproof-journal-export.service

# SDDM is the display manager (sddm.service's Alias= makes display-manager.service)
# and the system boots to the graphical target. Bookworm's sddm 0.19 ignores
# GreeterEnvironment=, so the greeter's Qt settings come through pam_env, which the
# sddm-greeter PAM stack runs.
chmod 0755 "$root/usr/local/bin/bootproof-session"
echo /usr/sbin/sddm >"$root/etc/X11/default-display-manager"
echo 'session required pam_env.so readenv=1 envfile=/etc/default/bootproof-greeter-env' \
    >>"$root/etc/pam.d/sddm-greeter"
chroot "$root" systemctl enable sddm.service
chroot "$root" systemctl set-default graphical.target

# The broken variants: each lacks one property, and nothing else changes.
case "$broken" in
sysctl) rm "$root/etc/sysctl.d/99-zz-bootproof-hardening.conf" ;;
sddm) chroot "$root" systemctl disable sddm.service ;;
skel) find "$root/etc/skel" -mindepth 1 -delete ;;
esac
if [ "$variant" != installed-tpm ]; then
    chroot "$root" update-initramfs -u -k all
fi
