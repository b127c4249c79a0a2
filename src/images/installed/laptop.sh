#!/bin/sh
# mmdebstrap customize hook of reference:installed-laptop (after configure.sh): the
# system as a laptop suspends and resumes it, for `suspend-resume`. Input
# (environment): BOOTPROOF_BREAK=modules for installed-broken-modules.
#  - The NIC (the stand-in for a wifi card): systemd-networkd asks for DHCP on any
#    wired interface; its driver is loaded with the other early modules, as a laptop's
#    wifi driver is before any hardening sysctl applies.
#  - A sleep hook that unbinds the NIC and unloads its driver before suspend and loads
#    it again after resume (loading binds the device anew): the kind of quirk laptops
#    carry for wifi cards that do not survive S3.
#  - A sleep hook for bootproof's share: Linux's 9pnet_virtio has no suspend support
#    (no freeze/restore), so after S3 the share hangs; the hook unmounts it (the
#    journal export writes the journal so far) and unbinds the device before suspend,
#    and binds and mounts it again after resume (the export at shutdown then writes
#    the whole boot's journal).
#  - installed-broken-modules: `kernel.modules_disabled=1` once the system is up. The
#    kernel then refuses loading and unloading alike: the hook's unload is refused,
#    its load finds the driver loaded and does nothing, and the NIC it unbound stays
#    gone after resume.
set -eu
root=$1

mkdir -p "$root/etc/systemd/network"
cat >"$root/etc/systemd/network/20-bootproof-wired.network" <<'NET'
[Match]
Name=en*

[Network]
DHCP=ipv4
NET
chroot "$root" systemctl enable systemd-networkd.service
echo virtio_net >>"$root/etc/modules-load.d/bootproof.conf"

hooks="$root/usr/lib/systemd/system-sleep"
mkdir -p "$hooks"
cat >"$hooks/bootproof-nic" <<'HOOK'
#!/bin/sh
# $1: pre or post; $2: suspend, hibernate, ...
drv=/sys/bus/virtio/drivers/virtio_net
case "$1" in
pre)
    for dev in "$drv"/virtio*; do
        [ -e "$dev" ] || continue
        echo "bootproof-nic: unbinding $(basename "$dev") from virtio_net"
        basename "$dev" >"$drv/unbind"
    done
    modprobe -r virtio_net
    ;;
post)
    modprobe virtio_net
    ;;
esac
HOOK
cat >"$hooks/bootproof-share" <<'HOOK'
#!/bin/sh
drv=/sys/bus/virtio/drivers/9pnet_virtio
state=/run/bootproof-share-device
case "$1" in
pre)
    systemctl stop mnt-bootproof.mount
    for dev in "$drv"/virtio*; do
        [ -e "$dev" ] || continue
        basename "$dev" >"$state"
        basename "$dev" >"$drv/unbind"
    done
    ;;
post)
    if [ -s "$state" ]; then
        cat "$state" >"$drv/bind"
        systemctl start bootproof-journal-export.service
    fi
    ;;
esac
HOOK
chmod 0755 "$hooks/bootproof-nic" "$hooks/bootproof-share"

if [ "${BOOTPROOF_BREAK:-}" = modules ]; then
    # Once the system is up, as hardening guides advise (in sysctl.d, systemd-sysctl
    # would apply it before udev loaded the drivers the boot needs: measured, the
    # agent's virtio_console and the share's 9p never load).
    cat >"$root/etc/systemd/system/bootproof-lock-modules.service" <<'UNIT'
[Unit]
Description=Lock kernel modules once the system is up (kernel.modules_disabled=1)
After=multi-user.target

[Service]
Type=oneshot
RemainAfterExit=yes
ExecStart=/sbin/sysctl -w kernel.modules_disabled=1

[Install]
WantedBy=multi-user.target
UNIT
    chroot "$root" systemctl enable bootproof-lock-modules.service
fi
