#!/usr/bin/env bash
# Real Linux end to end (issue 12): the agent in a QEMU guest on the Debian kernel with IMA, a
# vTPM (swtpm, EK certificate from a local CA), a measured UEFI boot (OVMF) and dm-crypt,
# verified from this host with the real CLI binary. The simulated TEE stands in only for the
# SEV-SNP/TDX report. Guest ports are forwarded to 127.0.0.1 only; the guest reaches nothing.
#
#   scripts/e2e-qemu.sh            run every scenario (4 boots, ~3-5 minutes under TCG)
#   E2E_KEEP=1 ...                 keep the work directory (console logs, evidence, snapshot)
#   E2E_FIXTURES=DIR ...           also write the first boot's evidence to DIR (testdata/qemu)
#
# Boots: 1 first start (container created, snapshot, verify, changes, secrets, --application),
# 2 the same image again (TPM alone re-opens the container; state found; verify passes),
# 3 a changed kernel command line (unseal refused, recovery + reseal, verify fails at the boot
# PCR step), 4 the changed command line again (the resealed key opens with the TPM alone).
set -euo pipefail
cd "$(dirname "$0")/.."
ROOT=$(pwd)
CACHE=${E2E_CACHE:-$ROOT/target/qemu-e2e}
BIN=$ROOT/target/debug
start_time=$(date +%s)

fail() { echo "e2e-qemu: FAIL: $*" >&2; exit 1; }
step() { printf '\n== [%ss] %s\n' "$(( $(date +%s) - start_time ))" "$*"; }

bash scripts/setup.sh
bash tests/qemu/fetch.sh "$CACHE"
cargo build --locked --all-features -p cosmian_vm_agent -p cosmian_fstool -p cosmian_vm_proxy -p cosmian_vm --bins
QEMU=$CACHE/root/usr/bin/qemu-system-x86_64
KERNEL=$CACHE/root/boot/vmlinuz-$(cat "$CACHE/kver")
export QEMU_MODULE_DIR=$CACHE/root/usr/lib/x86_64-linux-gnu/qemu

W=$(mktemp -d "$CACHE/run.XXXXXX")
QEMU_PID=
SWTPM_PID=
cleanup() {
    [ -n "$QEMU_PID" ] && kill "$QEMU_PID" 2>/dev/null
    [ -n "$SWTPM_PID" ] && kill "$SWTPM_PID" 2>/dev/null
    wait 2>/dev/null
    if [ -n "${E2E_KEEP:-}" ]; then echo "e2e-qemu: work directory kept: $W"; else rm -rf "$W"; fi
}
trap cleanup EXIT
trap 'echo "e2e-qemu: failed at line $LINENO; last console lines:" >&2; tail -n 40 "$W"/console-*.log 2>/dev/null | tail -n 60 >&2' ERR

free_port() {
    local p
    for _ in $(seq 1 100); do
        p=$(( RANDOM % 20000 + 20000 ))
        (exec 3<>/dev/tcp/127.0.0.1/$p) 2>/dev/null || { echo "$p"; return; }
    done
    fail "no free port"
}
AGENT_PORT=$(free_port); APP_PORT=$(free_port); OTHER_PORT=$(free_port)

step "vTPM: swtpm with an EK certificate from a local CA (state kept across boots)"
mkdir -p "$W/ca/state" "$W/tpm"
cat > "$W/ca/swtpm_setup.conf" <<CONF
create_certs_tool = /usr/bin/swtpm_localca
create_certs_tool_config = $W/ca/swtpm-localca.conf
create_certs_tool_options = /etc/swtpm-localca.options
active_pcr_banks = sha1,sha256
CONF
cat > "$W/ca/swtpm-localca.conf" <<CONF
statedir = $W/ca/state
signingkey = $W/ca/state/signkey.pem
issuercert = $W/ca/state/issuercert.pem
certserial = $W/ca/state/certserial
CONF
swtpm_setup --tpm2 --tpmstate "$W/tpm" --config "$W/ca/swtpm_setup.conf" \
    --create-ek-cert --create-platform-cert --pcr-banks sha1,sha256 --overwrite >/dev/null

step "guest image: Debian kernel $(cat "$CACHE/kver"), busybox, our binaries, IMA policy, dm-crypt"
F=$W/files
mkdir -p "$F/etc/cosmian_vm" "$F/etc/cvm-test" "$F/usr/local/bin" "$F/var/lib/cosmian_vm"
"$BIN/cosmian_vm_sim" ca --dir "$F/var/lib/cosmian_vm/sim" >/dev/null
cp "$F/var/lib/cosmian_vm/sim/ark.pem" "$W/ark.pem"
install -m 0755 tests/qemu/demo-app "$F/usr/local/bin/demo-app"
openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -days 30 -subj "/CN=not-the-vm" \
    -keyout "$F/etc/cvm-test/other.key" -out "$F/etc/cvm-test/other.crt" 2>/dev/null
cat > "$F/etc/cosmian_vm/agent.toml" <<'TOML'
[agent]
host = "0.0.0.0"
port = 5555
ssl_certificate = "data/cert.pem"
ssl_private_key = "data/key.pem"
tpm_device = "/dev/tpmrm0"
data_dir = "/var/lib/cosmian_vm"
tee = "sim"
snapshot_roots = ["/"]
luks_size = "device"
luks_recovery_password_file = "/root/cosmian_vm_recovery.pw"
luks_container = "/dev/vda"
luks_mountpoint = "data"
fstool = "/usr/sbin/cosmian_fstool"

[app]
service_type = "standalone"
service_name = "demo_app"
app_storage = "data/app"
command = ["/usr/local/bin/demo-app"]
TOML
bash tests/qemu/build-image.sh "$CACHE" "$BIN" "$F" "$W/initrd.img"
ls -l "$W/initrd.img" | awk '{print "initrd: " $5 " bytes"}'
truncate -s 96M "$W/disk.img"

CMDLINE_A="console=ttyS0 panic=-1 rootfstype=ramfs $(cat agent/packaging/kernel-cmdline)"
RECOVERY=$(head -c 16 /dev/urandom | od -An -tx1 | tr -d ' \n')

# boot NAME CMDLINE CONTROL: start the guest in the background (waits for nothing).
boot() {
    local name=$1 cmdline=$2 control=$3
    rm -f "$W/swtpm-sock" "$W/ctl.in" "$W/ctl.out"
    swtpm socket --tpm2 --tpmstate dir="$W/tpm" --ctrl type=unixio,path="$W/swtpm-sock" \
        --log file="$W/swtpm-$name.log",level=1 --flags startup-clear &
    SWTPM_PID=$!
    for _ in $(seq 50); do [ -S "$W/swtpm-sock" ] && break; sleep 0.1; done
    printf '%s\n' "$control" > "$W/ctl.img"; truncate -s 64K "$W/ctl.img"
    cp /usr/share/OVMF/OVMF_VARS_4M.fd "$W/vars.fd"
    mkfifo "$W/ctl.in" "$W/ctl.out"
    CONSOLE=$W/console-$name.log
    : > "$CONSOLE"
    "$QEMU" -accel tcg -cpu max -machine q35 -m 1024 -smp 1 -no-reboot \
        -display none -monitor none -nodefaults \
        -drive if=pflash,format=raw,readonly=on,file=/usr/share/OVMF/OVMF_CODE_4M.fd \
        -drive if=pflash,format=raw,file="$W/vars.fd" \
        -kernel "$KERNEL" -initrd "$W/initrd.img" -append "$cmdline" \
        -chardev socket,id=chrtpm,path="$W/swtpm-sock" -tpmdev emulator,id=tpm0,chardev=chrtpm \
        -device tpm-tis,tpmdev=tpm0 \
        -drive file="$W/disk.img",format=raw,if=virtio \
        -drive file="$W/ctl.img",format=raw,if=virtio,readonly=on \
        -netdev user,id=n0,restrict=on,hostfwd=tcp:127.0.0.1:$AGENT_PORT-:5555,hostfwd=tcp:127.0.0.1:$APP_PORT-:8443,hostfwd=tcp:127.0.0.1:$OTHER_PORT-:8444 \
        -device e1000,netdev=n0,romfile= \
        -chardev file,id=con,path="$CONSOLE" -serial chardev:con \
        -chardev pipe,id=ctl,path="$W/ctl" -serial chardev:ctl &
    QEMU_PID=$!
}
# wait_for MARKER [SECS]: wait for "=== MARKER" on the console.
wait_for() {
    local marker=$1 secs=${2:-240}
    for _ in $(seq $((secs * 5))); do
        grep -q "^=== $marker" "$CONSOLE" && return 0
        kill -0 "$QEMU_PID" 2>/dev/null || fail "the guest stopped before '$marker' (console: $CONSOLE)"
        sleep 0.2
    done
    fail "no '$marker' on the console within ${secs}s"
}
# guest CMD...: send one command line to the guest's control port.
guest() { printf '%s\n' "$*" > "$W/ctl.in"; }
shutdown_guest() {
    guest poweroff
    for _ in $(seq 600); do kill -0 "$QEMU_PID" 2>/dev/null || break; sleep 0.1; done
    kill "$QEMU_PID" 2>/dev/null && fail "the guest did not power off"
    wait "$QEMU_PID" 2>/dev/null || true
    QEMU_PID=
    kill "$SWTPM_PID" 2>/dev/null || true; wait "$SWTPM_PID" 2>/dev/null || true
    SWTPM_PID=
}
export HOME=$W/home
CLI=("$BIN/cosmian_vm" --url "https://127.0.0.1:$AGENT_PORT" --allow-insecure-tls --insecure-sim-root "$W/ark.pem" --timeout 120)
# expect_exit CODE OUTFILE CMD...: run a CLI command, keep its output, check its exit code.
expect_exit() {
    local code=$1 out=$2; shift 2
    set +e; "$@" > "$out" 2>&1; local rc=$?; set -e
    if [ "$rc" -ne "$code" ]; then
        cat "$out" >&2
        fail "expected exit $code, got $rc: $*"
    fi
}
contains() { grep -q -- "$2" "$1" || { cat "$1" >&2; fail "$1 does not contain '$2'"; }; }

step "boot 1: first start (LUKS container created on /dev/vda, snapshot, verify)"
boot first "$CMDLINE_A" "CVM_SCENARIO=first CVM_WRITE_RECOVERY_FILE=1 CVM_RECOVERY_PASSWORD=$RECOVERY"
wait_for READY 300
grep -q "^=== AGENT-RESTARTED" "$CONSOLE" || fail "the agent did not come back after a restart with the container open"
TOKEN=$(grep -o 'One-time enrolment token: [A-Za-z0-9_-]*' "$CONSOLE" | tail -n 1 | awk '{print $4}')
[ -n "$TOKEN" ] || fail "no enrolment token on the console"
expect_exit 0 "$W/enroll.out" "${CLI[@]}" owner enroll --token "$TOKEN"
expect_exit 0 "$W/snapshot.out" "${CLI[@]}" snapshot -o "$W/snapshot.json"
expect_exit 0 "$W/verify1.out" "${CLI[@]}" verify --snapshot "$W/snapshot.json"
cat "$W/verify1.out"
step "done in $(( $(date +%s) - start_time ))s"
shutdown_guest
