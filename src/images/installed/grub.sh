#!/bin/sh
# mmdebstrap customize hook of reference:installed-grub (after configure.sh): the
# system boots through a grub it manages itself, as Debian's installer leaves it.
# The ESP is /boot (vfat, which grub reads; the root is LUKS2 with argon2id, which
# bookworm's grub cannot open), so the kernel packages, update-initramfs and
# update-grub write where the firmware and grub read. Inputs (environment):
# BOOTPROOF_GRUB_CMDLINE (GRUB_CMDLINE_LINUX, which update-grub puts on every kernel's
# line) and BOOTPROOF_BOOT_CMDLINE (the kernel line of the first grub.cfg, which an
# installer wrote and update-grub replaces at the first kernel upgrade).
set -eu
root=$1

echo "LABEL=ESP /boot vfat umask=0077 0 2" >>"$root/etc/fstab"
cat >"$root/etc/default/grub" <<CONF
# update-grub (grub-mkconfig) reads this whenever a kernel package changes.
GRUB_DEFAULT=0
GRUB_TIMEOUT=0
GRUB_DISTRIBUTOR=Debian
GRUB_CMDLINE_LINUX_DEFAULT=""
GRUB_CMDLINE_LINUX="$BOOTPROOF_GRUB_CMDLINE"
GRUB_TERMINAL=console
GRUB_DISABLE_OS_PROBER=true
CONF

kernel=$(cd "$root/boot" && ls vmlinuz-* | sed 's/^vmlinuz-//')
[ "$(echo "$kernel" | wc -l)" = 1 ] || { echo "expected one kernel in /boot: $kernel" >&2; exit 1; }

# grub's EFI image as grub-install makes it (grub-install itself would probe the
# build host's disks): a core that reads GPT and FAT, its prefix /grub on the device
# it was loaded from, the modules beside it.
mkdir -p "$root/boot/EFI/BOOT" "$root/boot/grub"
cp -r "$root/usr/lib/grub/x86_64-efi" "$root/boot/grub/x86_64-efi"
chroot "$root" grub-mkimage -O x86_64-efi -p /grub -o /boot/EFI/BOOT/BOOTX64.EFI part_gpt fat normal

cat >"$root/boot/grub/grub.cfg" <<CFG
# Written at install time, as an installer does; update-grub replaces it from
# /etc/default/grub when a kernel package is installed or removed.
set default=0
set timeout=0
menuentry 'Debian GNU/Linux, with Linux $kernel' {
	linux /vmlinuz-$kernel $BOOTPROOF_BOOT_CMDLINE
	initrd /initrd.img-$kernel
}
CFG
