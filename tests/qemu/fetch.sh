#!/usr/bin/env bash
# Fetch what the guest needs from Debian, through apt only, and extract it under $CACHE:
#   $CACHE/root/usr/bin/qemu-system-x86_64 (+ its TCG accelerator module),
#   $CACHE/root/boot/vmlinuz-$KVER and the kernel modules the guest loads (dm-crypt, virtio,
#   ext4, e1000), listed in load order in $CACHE/modules.list.
# QEMU is extracted, not installed: the machine's backported qemu-utils 10 breaks apt's
# qemu-system-x86 7.2 (recipes/qemu-ima-vtpm.md, pitfall 2). Idempotent: a second run is a no-op.
set -euo pipefail
CACHE=${1:?usage: fetch.sh CACHE_DIR}
mkdir -p "$CACHE/debs" "$CACHE/root"
if [ -x "$CACHE/root/usr/bin/qemu-system-x86_64" ] && [ -s "$CACHE/modules.list" ]; then
    exit 0
fi
cd "$CACHE/debs"
if ! ls qemu-system-x86_*.deb >/dev/null 2>&1 || ! ls linux-image-[0-9]*.deb >/dev/null 2>&1; then
    apt-get update -qq
    apt-get download -qq qemu-system-x86 qemu-system-common
    apt-get download -qq "$(apt-cache depends linux-image-amd64 | awk '/Depends: linux-image-[0-9]/{print $2; exit}')"
fi
dpkg -x qemu-system-x86_*.deb "$CACHE/root"
dpkg -x qemu-system-common_*.deb "$CACHE/root"
D=$(ls linux-image-[0-9]*.deb | head -n1)
KVER=$(dpkg-deb -f "$D" Package | sed 's/^linux-image-//')
# Load order matters: busybox insmod resolves no dependencies, and softdeps (ecb for xts,
# crc32c for ext4/jbd2) are not in modules.dep.
MODULES=(
    kernel/drivers/virtio/virtio_ring.ko kernel/drivers/virtio/virtio.ko
    kernel/drivers/virtio/virtio_pci_modern_dev.ko kernel/drivers/virtio/virtio_pci_legacy_dev.ko
    kernel/drivers/virtio/virtio_pci.ko kernel/drivers/block/virtio_blk.ko
    kernel/drivers/md/dm-mod.ko kernel/drivers/md/dm-crypt.ko
    kernel/crypto/ecb.ko kernel/crypto/xts.ko kernel/crypto/crc32c_generic.ko
    kernel/fs/jbd2/jbd2.ko kernel/fs/mbcache.ko kernel/lib/crc16.ko kernel/fs/ext4/ext4.ko
    kernel/drivers/net/ethernet/intel/e1000/e1000.ko
)
dpkg-deb --fsys-tarfile "$D" | tar -x -C "$CACHE/root" "./boot/vmlinuz-$KVER" "./boot/config-$KVER" \
    "${MODULES[@]/#/./lib/modules/$KVER/}"
grep -q '^CONFIG_IMA=y' "$CACHE/root/boot/config-$KVER" || { echo "fetch: kernel $KVER has no IMA" >&2; exit 1; }
printf '%s\n' "${MODULES[@]/#/$CACHE/root/lib/modules/$KVER/}" > "$CACHE/modules.list.tmp"
echo "$KVER" > "$CACHE/kver"
mv "$CACHE/modules.list.tmp" "$CACHE/modules.list"
