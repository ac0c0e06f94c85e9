#!/usr/bin/env bash
# Build the guest's initramfs (cpio.gz) from Debian packages already on this machine and our
# binaries:
#   busybox (static), the init (tests/qemu/init), the kernel modules fetch.sh extracted,
#   cosmian_vm_agent, cosmian_fstool, cosmian_vm_proxy (debug info stripped), cryptsetup and
#   mke2fs, every shared library they link plus the ones loaded with dlopen() (the TPM device
#   TCTI, libgcc_s for argon2's threads), the IMA policy we ship (agent/packaging/ima-policy),
#   and the files of $FILES (a directory copied over the image root: agent.toml, the demo app,
#   the simulated TEE's CA, test certificates).
# usage: build-image.sh CACHE BIN_DIR FILES_DIR OUT
# The output is byte-for-byte reproducible for the same inputs (sorted, mtime 0), so two builds
# boot to the same PCR 9.
set -euo pipefail
CACHE=$1 BIN=$2 FILES=$3 OUT=$4
HERE=$(cd "$(dirname "$0")" && pwd)
REPO=$(cd "$HERE/../.." && pwd)
W=$(mktemp -d "${TMPDIR:-/tmp}/cvm-image.XXXXXX")
trap 'rm -rf "$W"' EXIT
mkdir -p "$W"/{bin,sbin,usr/bin,usr/sbin,lib/x86_64-linux-gnu,lib64,lib/modules,etc/cosmian_vm,root,var/lib/cosmian_vm,proc,sys,dev,run,tmp,mnt}
chmod 0700 "$W/root" "$W/var/lib/cosmian_vm"
cp /bin/busybox "$W/bin/busybox"
install -m 0755 "$HERE/init" "$W/init"
while read -r ko; do cp "$ko" "$W/lib/modules/"; basename "$ko"; done < "$CACHE/modules.list" > "$W/lib/modules/load-order"
for b in cosmian_vm_agent cosmian_fstool; do
    objcopy --strip-debug "$BIN/$b" "$W/usr/sbin/$b"
done
objcopy --strip-debug "$BIN/cosmian_vm_proxy" "$W/usr/bin/cosmian_vm_proxy"
cp -L /sbin/cryptsetup "$W/sbin/cryptsetup"
cp -L /sbin/mke2fs "$W/sbin/mke2fs"
ln -s mke2fs "$W/sbin/mkfs.ext4"
cp /etc/mke2fs.conf "$W/etc/mke2fs.conf"
install -m 0644 "$REPO/agent/packaging/ima-policy" "$W/etc/cosmian_vm/ima-policy"
libs() { ldd "$@" | awk '/=>/ && $3 ~ /^\// {print $3}'; }
for lib in $(libs "$W/usr/sbin/cosmian_vm_agent" "$W/usr/sbin/cosmian_fstool" "$W/usr/bin/cosmian_vm_proxy" \
        /sbin/cryptsetup /sbin/mke2fs | sort -u) \
        /lib/x86_64-linux-gnu/libtss2-tcti-device.so.0 /lib/x86_64-linux-gnu/libgcc_s.so.1; do
    cp -L "$lib" "$W/lib/x86_64-linux-gnu/"
done
cp -L /lib64/ld-linux-x86-64.so.2 "$W/lib64/"
echo "root:x:0:0:root:/root:/bin/sh" > "$W/etc/passwd"
echo "root:x:0:" > "$W/etc/group"
cp -a "$FILES/." "$W/"
(cd "$W" && find . -mindepth 1 -print0 | LC_ALL=C sort -z | xargs -0 touch -h -d @0 && \
    find . -mindepth 1 | LC_ALL=C sort | cpio -o -H newc --quiet --reproducible | gzip -1 -n) > "$OUT.tmp"
mv "$OUT.tmp" "$OUT"
