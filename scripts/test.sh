#!/usr/bin/env bash
# The test command (README): set up a fresh Debian machine, then run every test suite, the
# real-Linux end-to-end test in QEMU (scripts/e2e-qemu.sh), a short fuzz run of every parser, and
# a smoke run of the benchmark binary.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
cargo build --workspace --all-targets --all-features --locked
cargo test --workspace --all-features --locked
# The Kubernetes manifests against the API schemas (strict), and the proxy config they embed.
bash scripts/k8s-validate.sh
# The user guide: every command block it shows runs, then mdbook builds it and its links are checked.
bash scripts/guide-test.sh
# The crate's documented example: an attested server and a verifying client over loopback.
cargo run --locked -q -p ratls --features sim,issue --example attested_pair >/dev/null
# The real-Linux end-to-end test (QEMU under TCG: one core) runs beside the fuzz smoke run and
# the benchmark smoke run (both only check that things run, not how fast), so CI on 2 cores
# does not pay for it twice. Its log is printed at the end, and its failure fails the run.
mkdir -p target
e2e_log=target/e2e-qemu.log
E2E_SKIP_BUILD=1 bash scripts/e2e-qemu.sh > "$e2e_log" 2>&1 &
e2e_pid=$!
trap 'kill $e2e_pid 2>/dev/null || true' EXIT
bash scripts/fuzz-smoke.sh "${FUZZ_SECONDS:-10}"
# The bench's fleet group runs the release cosmian_vm and cosmian_vm_agent from beside it.
cargo build --release --locked -p ratls-bench -p cosmian_vm -p cosmian_vm_agent
target/release/ratls-bench --multiplier 0.05
if wait "$e2e_pid"; then e2e_rc=0; else e2e_rc=$?; fi
trap - EXIT
cat "$e2e_log"
if [ "$e2e_rc" -ne 0 ]; then
    echo "test.sh: the real-Linux end-to-end test failed (exit $e2e_rc): $e2e_log" >&2
    exit 1
fi
