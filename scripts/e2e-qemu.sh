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
# scripts/test.sh has built every target already (E2E_SKIP_BUILD=1): building again here with
# another feature set would rebuild, and wait on the lock of the build running beside us.
if [ -z "${E2E_SKIP_BUILD:-}" ]; then
    cargo build --locked --workspace --all-features --bins
fi
for b in cosmian_vm_agent cosmian_fstool cosmian_vm_proxy cosmian_vm cosmian_vm_sim; do
    [ -x "$BIN/$b" ] || fail "$BIN/$b is missing (build the workspace first)"
done
QEMU=$CACHE/root/usr/bin/qemu-system-x86_64
KERNEL=$CACHE/root/boot/vmlinuz-$(cat "$CACHE/kver")
export QEMU_MODULE_DIR=$CACHE/root/usr/lib/x86_64-linux-gnu/qemu

W=$(mktemp -d "$CACHE/run.XXXXXX")
QEMU_PID=
SWTPM_PID=
cleanup() {
    set +e # a process already gone must not stop the rest of the clean-up
    [ -n "$QEMU_PID" ] && kill "$QEMU_PID" 2>/dev/null
    [ -n "$SWTPM_PID" ] && kill "$SWTPM_PID" 2>/dev/null
    wait 2>/dev/null
    if [ -n "${E2E_KEEP:-}" ]; then echo "e2e-qemu: work directory kept: $W"; else rm -rf "$W"; fi
}
trap cleanup EXIT
# Killed (e.g. by scripts/test.sh when a step beside us fails): still stop QEMU and swtpm.
trap 'exit 143' TERM INT
trap 'echo "e2e-qemu: failed at line $LINENO; last console lines:" >&2; tail -n 40 "$W"/console-*.log 2>/dev/null | tail -n 60 >&2' ERR

# Ports below Linux's ephemeral range (32768-60999), so no outgoing connection holds one; a
# port another process grabs anyway makes QEMU fail at start, and boot() retries with others.
free_port() {
    local p
    for _ in $(seq 1 100); do
        p=$(( RANDOM % 12000 + 20000 ))
        (exec 3<>/dev/tcp/127.0.0.1/$p) 2>/dev/null || { echo "$p"; return; }
    done
    fail "no free port"
}
pick_ports() { AGENT_PORT=$(free_port); APP_PORT=$(free_port); OTHER_PORT=$(free_port); }
pick_ports

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

# boot NAME CMDLINE CONTROL: start the guest in the background (waits only for QEMU to be up;
# picks other ports when one of ours was taken in the meantime).
boot() {
    local attempt
    for attempt in 1 2 3 4 5; do
        start_guest "$@"
        sleep 2
        if kill -0 "$QEMU_PID" 2>/dev/null; then return 0; fi
        wait "$QEMU_PID" 2>/dev/null || true
        kill "$SWTPM_PID" 2>/dev/null || true; wait "$SWTPM_PID" 2>/dev/null || true
        grep -q "Could not set up host forwarding" "$W/qemu-$1.err" || { cat "$W/qemu-$1.err" >&2; fail "QEMU did not start"; }
        echo "port taken ($(cat "$W/qemu-$1.err")); new ports, attempt $((attempt + 1))"
        pick_ports
    done
    fail "QEMU could not forward its ports after 5 attempts"
}
start_guest() {
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
        -display none -monitor none -nodefaults -L "$CACHE/root/usr/share/qemu" -L /usr/share/qemu \
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
        -chardev pipe,id=ctl,path="$W/ctl" -serial chardev:ctl 2> "$W/qemu-$name.err" &
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
# The CLI against the agent's forwarded port (a function: the port may change between boots).
cli() {
    "$BIN/cosmian_vm" --url "https://127.0.0.1:$AGENT_PORT" --allow-insecure-tls \
        --insecure-sim-root "$W/ark.pem" --timeout 120 "$@"
}
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

# hex_of FILE: the file as one lower-case hex string.
hex_of() { od -An -tx1 -v "$1" | tr -d ' \n'; }
sha256_of_text() { printf '%s' "$1" | sha256sum | cut -d' ' -f1; }
# guest_run CMD: run a shell command in the guest and wait for it.
guest_run() {
    local before; before=$(grep -c '^=== RUN-DONE' "$CONSOLE" || true)
    guest run "$1"
    for _ in $(seq 300); do
        [ "$(grep -c '^=== RUN-DONE' "$CONSOLE")" -gt "$before" ] && return 0; sleep 0.2
    done
    fail "the guest did not finish: $1"
}
# guest_digest PATH: sha256 of a guest file, computed in the guest (console "=== DIGEST path hex").
guest_digest() {
    guest_run "echo \"=== DIGEST $1 \$(sha256sum $1 | cut -d' ' -f1)\""
    grep "^=== DIGEST $1 " "$CONSOLE" | tail -n 1 | tr -d '\r' | awk '{print $4}'
}

step "boot 1: first start (LUKS2 container created on /dev/vda through dm-crypt, owner, snapshot)"
boot first "$CMDLINE_A" "CVM_SCENARIO=first CVM_WRITE_RECOVERY_FILE=1 CVM_RECOVERY_PASSWORD=$RECOVERY"
wait_for READY 300
contains "$CONSOLE" "^=== AGENT-RESTARTED"
contains "$CONSOLE" "^=== PROXIES-LISTENING"
contains "$CONSOLE" "first start: creating the LUKS container /dev/vda"
contains "$CONSOLE" "LUKS container /dev/vda mounted at /var/lib/cosmian_vm/data"
TOKEN=$(grep -o 'One-time enrolment token: [A-Za-z0-9_-]*' "$CONSOLE" | tail -n 1 | awk '{print $4}')
[ -n "$TOKEN" ] || fail "no enrolment token on the console"
expect_exit 0 "$W/enroll.out" cli owner enroll --token "$TOKEN"
expect_exit 0 "$W/snapshot.out" cli snapshot -o "$W/snapshot.json"
cat "$W/snapshot.out"

step "verify against the snapshot: passes"
expect_exit 0 "$W/verify-pass.out" cli verify --snapshot "$W/snapshot.json"
cat "$W/verify-pass.out"

step "--application: the app behind cosmian_vm_proxy on the agent's key passes; another key fails"
expect_exit 0 "$W/app-ok.out" cli verify --snapshot "$W/snapshot.json" --application "127.0.0.1:$APP_PORT"
contains "$W/app-ok.out" "the agent's own key"
expect_exit 1 "$W/app-other.out" cli verify --snapshot "$W/snapshot.json" --application "127.0.0.1:$OTHER_PORT"
contains "$W/app-other.out" "application  127.0.0.1:$OTHER_PORT FAILED: key not bound to this VM"
contains "$W/app-other.out" "cert.evidence"
tail -n 3 "$W/app-other.out"

step "a low-entropy secret pushed with secret put; the app reads it and its configuration"
SECRET="hunter2-$(head -c 2 /dev/urandom | od -An -tx1 | tr -d ' \n')"
printf '%s' "$SECRET" > "$W/secret.txt"
CONF_MARK="cvm-e2e-conf-$(head -c 6 /dev/urandom | od -An -tx1 | tr -d ' \n')"
printf 'listen=8080 %s\n' "$CONF_MARK" > "$W/app.conf"
expect_exit 0 "$W/secret.out" cli secret put demo "$W/secret.txt" --snapshot "$W/snapshot.json"
expect_exit 0 "$W/init.out" cli app init --conf "$W/app.conf" --snapshot "$W/snapshot.json"
# The new configuration is a change the owner makes: a new snapshot approves it.
expect_exit 0 "$W/snapshot2.out" cli snapshot -o "$W/snapshot.json"
expect_exit 0 "$W/verify-pass2.out" cli verify --snapshot "$W/snapshot.json" --save-evidence "$W/evidence"
# The app did read the secret (its page says how many bytes), through the proxy on the agent's key.
curl -sk --max-time 60 "https://127.0.0.1:$APP_PORT/" > "$W/app-page.out"
contains "$W/app-page.out" "secret bytes: ${#SECRET}"
contains "$W/app-page.out" "config: listen=8080 $CONF_MARK"

step "the served IMA log: the app and its configuration are measured; secrets and keys are not"
KEY_DIGEST=$(guest_digest /var/lib/cosmian_vm/data/key.pem)
APP_DIGEST=$(sha256sum tests/qemu/demo-app | cut -d' ' -f1)
[ ${#KEY_DIGEST} -eq 64 ] || fail "no digest of the agent's key from the guest"
LOG_HEX=$(hex_of "$W/evidence/ima-log.bin")
for what in "secret:$(sha256_of_text "$SECRET")" "recovery password:$(sha256_of_text "$RECOVERY")" "TLS key:$KEY_DIGEST"; do
    case "$LOG_HEX" in *"${what#*:}"*) fail "the ${what%%:*}'s SHA-256 is in the served IMA log";; esac
    echo "not in the IMA log: ${what%%:*} (sha256 ${what#*:})"
done
POLICY_DIGEST=$(sha256sum agent/packaging/ima-policy | cut -d' ' -f1)
for what in "IMA policy (loaded by path):$POLICY_DIGEST" "demo-app:$APP_DIGEST" "app.conf:$(sha256sum "$W/app.conf" | cut -d' ' -f1)" "cosmian_vm_agent:$(guest_digest /usr/sbin/cosmian_vm_agent)"; do
    case "$LOG_HEX" in *"${what#*:}"*) echo "in the IMA log: ${what%%:*} (sha256 ${what#*:})";; *) fail "the ${what%%:*} is not in the served IMA log";; esac
done

step "the EK certificate the agent read from the vTPM's NV chains to swtpm's local CA"
openssl x509 -inform der -in "$W/evidence/ek-cert.der" -out "$W/ek-cert.pem"
openssl verify -CAfile "$W/ca/state/swtpm-localca-rootca-cert.pem" -untrusted "$W/ca/state/issuercert.pem" "$W/ek-cert.pem"

step "offline: evidence verify on the saved TPM quote, IMA log and event log"
NONCE=$(cat "$W/evidence/tpm-nonce.hex")
expect_exit 0 "$W/offline.out" "$BIN/cosmian_vm" evidence verify --tpm-quote "$W/evidence/tpm-quote.bin" \
    --tpm-signature "$W/evidence/tpm-signature.bin" --ak-public "$W/evidence/ak-public.bin" \
    --pcrs "$W/evidence/pcrs.json" --nonce "$NONCE" --ima-log "$W/evidence/ima-log.bin" \
    --event-log "$W/evidence/event-log.bin"
cat "$W/offline.out"
if [ -n "${E2E_FIXTURES:-}" ]; then
    mkdir -p "$E2E_FIXTURES"
    cp "$W/evidence/"{tpm-quote.bin,tpm-signature.bin,ak-public.bin,pcrs.json,tpm-nonce.hex,ima-log.bin,event-log.bin,ek-cert.der} "$E2E_FIXTURES/"
    cp "$W/ca/state/swtpm-localca-rootca-cert.pem" "$E2E_FIXTURES/ek-root-ca.pem"
    cp "$W/ca/state/issuercert.pem" "$E2E_FIXTURES/ek-issuer-ca.pem"
    cp "$W/snapshot.json" "$E2E_FIXTURES/snapshot.json"
    echo "fixtures written to $E2E_FIXTURES"
fi

step "a changed configuration: verify fails naming app.conf"
printf 'listen=9090 %s-changed\n' "$CONF_MARK" > "$W/app-changed.conf"
expect_exit 0 "$W/init2.out" cli app init --conf "$W/app-changed.conf" --snapshot "$W/snapshot.json"
expect_exit 1 "$W/verify-conf.out" cli verify --snapshot "$W/snapshot.json"
contains "$W/verify-conf.out" "rejected at ima.changed_file: expected /var/lib/cosmian_vm/data/app/app.conf"
grep -E "app.conf" "$W/verify-conf.out" | head -n 3

step "a program that is not in the snapshot runs: verify fails naming it"
guest_run "printf '#!/bin/sh\necho intruder\n' > /root/intruder.sh && chmod 755 /root/intruder.sh && /root/intruder.sh"
expect_exit 1 "$W/verify-new.out" cli verify --snapshot "$W/snapshot.json"
contains "$W/verify-new.out" "ima.unknown_file: expected only files in the snapshot, presented /root/intruder.sh"
grep -E "intruder" "$W/verify-new.out" | head -n 3
step "a real IMA violation (a file read while open for writing): verify fails at ima.violations"
guest_run "exec 3>/root/half-written.conf; echo partial >&3; cat /root/half-written.conf >/dev/null; exec 3>&-"
expect_exit 1 "$W/verify-violation.out" cli verify --snapshot "$W/snapshot.json" --json
grep -A4 '"step": "ima.violations"' "$W/verify-violation.out" > "$W/violation-check.out" || true
contains "$W/violation-check.out" '"ok": false'
cat "$W/violation-check.out"
# Put the approved configuration back (the session cannot verify any more this boot: the
# changed file and the intruder stay in this boot's log).
expect_exit 0 "$W/restore.out" cli app init --conf "$W/app.conf" --skip-verification
shutdown_guest

step "the raw disk seen from the host: ciphertext only"
OWNER_SPKI=$(grep -o 'owner enrolled: SPKI SHA-256 [0-9a-f]*' "$W/console-first.log" | awk '{print $5}')
[ ${#OWNER_SPKI} -eq 64 ] || fail "no owner enrolment on the console"
for what in "secret:$SECRET" "app configuration:$CONF_MARK" "TLS private key:PRIVATE KEY" "owner record:$OWNER_SPKI" \
        "recovery password:$RECOVERY" "enrolment token:$TOKEN"; do
    if grep -q -a -F -- "${what#*:}" "$W/disk.img"; then fail "the ${what%%:*} is readable in the raw disk image"; fi
    echo "not in the raw disk: ${what%%:*}"
done

step "boot 2: the same image again: the TPM alone re-opens the container; the agent finds its state"
boot again "$CMDLINE_A" "CVM_SCENARIO=again"
wait_for READY 300
contains "$CONSOLE" "^=== AGENT-RESTARTED"
contains "$CONSOLE" "LUKS container /dev/vda mounted at /var/lib/cosmian_vm/data"
contains "$CONSOLE" "owner: SPKI SHA-256 .* (enrolled)"
if grep -q "One-time enrolment token" "$CONSOLE"; then fail "boot 2 made a new enrolment token: the owner was lost"; fi
expect_exit 0 "$W/verify-boot2.out" cli verify --snapshot "$W/snapshot.json"
expect_exit 0 "$W/restart-boot2.out" cli app restart --snapshot "$W/snapshot.json"
shutdown_guest

step "boot 3: a changed kernel command line: PCR 9 differs, the TPM refuses the key"
CMDLINE_B="$CMDLINE_A cvm_e2e=changed"
boot changed "$CMDLINE_B" "CVM_SCENARIO=changed CVM_RECOVERY_PASSWORD=$RECOVERY"
wait_for READY 300
contains "$CONSOLE" "^=== AGENT-EXITED rc=[1-9]"
contains "$CONSOLE" "mount-at-boot failed (exit status: 4)"
contains "$CONSOLE" "the TPM did not release the key: the current sha256 PCRs 0,1,2,3,4,5,6,7,8,9 are not those the key was sealed to"
contains "$CONSOLE" "changed since sealing: PCR 9"
grep -o "the TPM did not release the key.*changed since sealing: PCR [0-9, ]*" "$CONSOLE" | tail -n 1
if grep -q "^=== AGENT-LISTENING" "$CONSOLE"; then fail "the agent started although the TPM should refuse the key"; fi
step "recovery: the recovery password re-seals the key under the new PCRs; the agent starts"
guest recover
wait_for RECOVER-DONE 240
contains "$CONSOLE" "^=== RECOVERY-MOUNTED"
contains "$CONSOLE" "unlocked with the password"
contains "$CONSOLE" "^=== RESEALED"
contains "$CONSOLE" "^=== AGENT-LISTENING"
expect_exit 1 "$W/verify-pcr.out" cli verify --snapshot "$W/snapshot.json"
cat "$W/verify-pcr.out"
contains "$W/verify-pcr.out" "tpm.policy.pcrs: expected sha256:9="
contains "$W/verify-pcr.out" "sha256 PCR 9"
contains "$W/verify-pcr.out" "snapshot.boot_events: expected PCR 9 event 0 EV_EVENT_TAG 'LOADED_IMAGE::LoadOptions'"
shutdown_guest

step "boot 4: the changed command line again: the resealed key opens with the TPM alone"
boot resealed "$CMDLINE_B" "CVM_SCENARIO=resealed"
wait_for READY 300
contains "$CONSOLE" "^=== AGENT-RESTARTED"
contains "$CONSOLE" "LUKS container /dev/vda mounted at /var/lib/cosmian_vm/data"
# An intended change: the owner approves the new boot chain with a new snapshot.
expect_exit 0 "$W/snapshot3.out" cli snapshot -o "$W/snapshot-b.json"
expect_exit 0 "$W/verify-boot4.out" cli verify --snapshot "$W/snapshot-b.json"
expect_exit 1 "$W/verify-boot4-old.out" cli verify --snapshot "$W/snapshot.json"
contains "$W/verify-boot4-old.out" "rejected at tpm.policy.pcrs"
shutdown_guest

# The agent must stop on SIGTERM (the guest's init, a shell, ignores SIGTERM and its children
# inherit that until they set a handler: an agent that set its own too late never stopped).
if grep -q "^=== AGENT-STOP-HUNG" "$W"/console-*.log; then
    grep -h "^=== thread" "$W"/console-*.log | sort | uniq -c >&2
    fail "the agent did not stop on SIGTERM within 60 s ($(grep -l "^=== AGENT-STOP-HUNG" "$W"/console-*.log))"
fi
step "e2e-qemu: every scenario passed in $(( $(date +%s) - start_time ))s"
