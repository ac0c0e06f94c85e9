#!/usr/bin/env bash
# The main job (README): the whole Cosmian VM workflow on this machine's embedded defaults.
#
# Installs what is missing (Debian packages), builds the agent and the CLI, starts a software TPM
# (swtpm), simulates a measured boot and IMA on it (cosmian_vm_sim: this machine has no TEE and
# no IMA), starts cosmian_vm_agent with the simulated TEE on loopback, takes a snapshot, verifies
# the machine against it, runs an unexpected program (measured the way IMA would) and shows the
# verification failing and naming it, then cleans everything up.
#
# The simulated TEE is never trusted by default: the CLI is told to with --insecure-sim-root, and
# every verdict says SIMULATED.
set -euo pipefail
cd "$(dirname "$0")/.."
root=$(pwd)
bash scripts/setup.sh
cargo build --release --locked -p cosmian_vm_agent -p cosmian_vm
bin="$root/target/release"

work=$(mktemp -d /tmp/cosmian-vm-demo.XXXXXX)
pids=()
# cleanup (the EXIT trap), free_port, wait_port, start_swtpm, start_sim_agent.
. "$root/scripts/lib.sh"
trap cleanup EXIT
export TSS2_LOG=all+none

step() { printf '\n\033[1m== %s\033[0m\n' "$*"; }

step "a software TPM (swtpm) with a simulated measured boot"
start_swtpm "$work/tpm"
"$bin/cosmian_vm_sim" boot --tpm "$tcti" --event-log "$work/eventlog.bin"

step "IMA (simulated): the boot aggregate, then the programs the VM runs"
mkdir -p "$work/app"
printf '#!/bin/sh\necho "my app"\n' > "$work/app/my_app.sh"
printf '{"listen": 8080}\n' > "$work/app/my_app.json"
"$bin/cosmian_vm_sim" ima-init --tpm "$tcti" --log "$work/ima.log"
"$bin/cosmian_vm_sim" measure --tpm "$tcti" --log "$work/ima.log" \
    "$bin/cosmian_vm_agent" "$work/app/my_app.sh" "$work/app/my_app.json"

step "cosmian_vm_agent on loopback (simulated TEE: SIMULATED)"
start_sim_agent "$bin/cosmian_vm_agent"
# The owner's identity lives in this demo's own HOME (not yours).
mkdir -p "$work/home"
cli=(env HOME="$work/home" "$bin/cosmian_vm" --url "https://127.0.0.1:$agent_port" \
    --allow-insecure-tls --insecure-sim-root "$work/data/sim/ark.pem")

step "owner enroll: the one-time token the agent printed at its first start"
grep "enrolment token" "$work/agent.log" || true
"${cli[@]}" owner enroll --token "$(cat "$work/data/enrolment-token")"

step "snapshot (once, when the VM is as it should be; the owner's)"
"${cli[@]}" snapshot -o "$work/cosmian_vm.snapshot"

step "verify: passes"
"${cli[@]}" verify --snapshot "$work/cosmian_vm.snapshot"

step "an unexpected program runs in the VM (IMA measures it)"
printf '#!/bin/sh\necho "not in the snapshot"\n' > "$work/unexpected.sh"
"$bin/cosmian_vm_sim" measure --tpm "$tcti" --log "$work/ima.log" "$work/unexpected.sh"

step "verify: fails, naming the program"
set +e
out=$("${cli[@]}" verify --snapshot "$work/cosmian_vm.snapshot" 2>&1)
status=$?
set -e
echo "$out"
if [ "$status" -eq 0 ] || ! grep -q "unexpected.sh" <<<"$out"; then
    echo "demo: expected verify to fail and name unexpected.sh (exit $status)" >&2
    exit 1
fi
step "done: verify exited $status and named the unexpected program"
