#!/bin/busybox sh
# /init of bootproof's tiny reference guest: busybox sh as PID 1.
# It reports what the machine offers on one serial line, leaves the same line in the
# `bootproof` share and the `scratch` partition, runs the test's hook, and powers off;
# unless the machine has a guest agent channel (a virtio console, a vsock device):
# then it serves a shell there and stays up until the power button.
# The runtime's tests match these lines exactly; change them only with those tests.

# The firmware's last screen clear (escape codes, no newline) may still be on the
# line; end it so the marker has a line of its own.
echo
echo "bootproof-tiny: init started"

/bin/busybox mount -t proc proc /proc
# --install needs /proc/self/exe, hence after mounting proc.
/bin/busybox --install -s /bin
export PATH=/bin
mount -t sysfs sysfs /sys
mount -t devtmpfs devtmpfs /dev
mount -t securityfs securityfs /sys/kernel/security

# Written at build time from depmod's modules.dep, dependencies first.
while read -r ko; do
    insmod "/lib/modules/$ko" || echo "bootproof-tiny: insmod $ko failed"
done < /etc/bootproof/modules

# QMP system_powerdown presses the ACPI power button; the button driver turns it into
# an input event. One read of a whole event (24 bytes on x86_64) is enough: nothing
# else drives that device.
for name in /sys/class/input/event*/device/name; do
    [ "$(cat "$name" 2>/dev/null)" = "Power Button" ] || continue
    event=${name#/sys/class/input/}
    event=${event%%/*}
    (dd if="/dev/input/$event" of=/dev/null bs=24 count=1 2>/dev/null \
        && echo "bootproof-tiny: power button" && poweroff -f) &
done

# Virtio device ids in sysfs: 0x0003 is a console (virtio-serial), 0x0013 vsock.
has_virtio() {
    grep -qx "$1" /sys/bus/virtio/devices/*/device 2>/dev/null
}

# The agent shell on the virtio console port: the tty raw and silent (opened once for
# the whole loop, as hvc resets its settings on the last close), and the shell reading
# a pipe so it never turns interactive (prompts, line editing).
agent=0
if has_virtio 0x0003; then
    # The console's ports appear shortly after the driver binds.
    for i in 1 2 3 4 5 6 7 8 9 10; do
        [ -e /dev/hvc0 ] && break
        sleep 0.2
    done
fi
if [ -e /dev/hvc0 ]; then
    while :; do
        stty raw -echo
        cat | sh
        sleep 1
    done <>/dev/hvc0 >&0 2>&0 &
    agent=1
    echo "bootproof-tiny: agent shell on hvc0"
fi
if has_virtio 0x0013; then
    vsock-shell 5000 &
    agent=1
    echo "bootproof-tiny: agent shell on vsock port 5000"
fi

# Shares come two ways. Under bootproof's p9 backend, fw_cfg's
# opt/org.bootproof/shares lists "tag:port" words: the share is 9P over TCP at
# 10.0.2.100:port (a guestfwd to bootproof's share server), reached through the NIC
# with a static address (QEMU's user network needs no DHCP for it). Otherwise it is
# virtio-9p by tag. Mount only tags QEMU offers: a failed 9p mount makes the kernel
# log an error on the console, which tests would have to ignore.
shares_cfg=/sys/firmware/qemu_fw_cfg/by_name/opt/org.bootproof/shares/raw
share_port() {
    for word in $(cat "$shares_cfg" 2>/dev/null); do
        [ "${word%%:*}" = "$1" ] && echo "${word##*:}" && return 0
    done
    return 1
}
has_9p_tag() {
    for tag in /sys/bus/virtio/drivers/9pnet_virtio/*/mount_tag; do
        [ "$(tr -d '\000' < "$tag" 2>/dev/null)" = "$1" ] && return 0
    done
    return 1
}
net_up=0
bring_net_up() {
    [ "$net_up" = 1 ] && return 0
    ip link set lo up
    ip link set eth0 up && ip addr add 10.0.2.15/24 dev eth0 && net_up=1
}
# mount_share TAG DIR [,ro]
mount_share() {
    mkdir -p "$2"
    if port=$(share_port "$1"); then
        bring_net_up && mount -t 9p -o "trans=tcp,port=$port,version=9p2000.L,msize=1048576$3" 10.0.2.100 "$2"
    else
        has_9p_tag "$1" && mount -t 9p -o "trans=virtio,version=9p2000.L,msize=262144$3" "$1" "$2"
    fi
}

efi=0
secureboot=0
tpm=0
share=none
if [ -d /sys/firmware/efi ]; then
    efi=1
    mount -t efivarfs efivarfs /sys/firmware/efi/efivars
    # Four bytes of attributes, then the value. efivarfs files cannot seek (od -j
    # silently reads from the start), so read the whole variable.
    set -- $(od -An -tu1 /sys/firmware/efi/efivars/SecureBoot-8be4df61-93ca-11d2-aa0d-00e098032b8c 2>/dev/null)
    [ "${5:-0}" = 1 ] && secureboot=1
fi
if [ -r /sys/class/tpm/tpm0/tpm_version_major ]; then
    tpm=$(cat /sys/class/tpm/tpm0/tpm_version_major)
fi
# "ok" means mounted and writable: creating report.txt proves both.
if mount_share bootproof /mnt/bootproof \
    && : > /mnt/bootproof/report.txt; then
    share=ok
fi

report="bootproof-tiny: efi=$efi secureboot=$secureboot tpm=$tpm share=$share"
echo "$report"
[ "$share" = ok ] && echo "$report" > /mnt/bootproof/report.txt

# Only a partition named "scratch" is ours to write: on the ISO booted as a disk,
# the second partition is the ESP.
for uevent in /sys/class/block/*/uevent; do
    grep -qx 'PARTNAME=scratch' "$uevent" || continue
    dev=${uevent#/sys/class/block/}
    dev=/dev/${dev%/uevent}
    echo "$report" | dd of="$dev" bs=512 count=1 conv=sync,fsync 2>/dev/null \
        || echo "bootproof-tiny: writing $dev failed"
done

if mount_share bootproof-input /mnt/input ,ro \
    && [ -f /mnt/input/hook.sh ]; then
    sh /mnt/input/hook.sh
    echo "bootproof-tiny: hook exit=$?"
fi

if [ "$agent" = 1 ]; then
    echo "bootproof-tiny: serving the agent until the power button"
    while :; do sleep 3600; done
fi

sync
poweroff -f
