#!/usr/bin/env bash
# The test command (README): set up a fresh Debian machine, then run every test suite, a short
# fuzz run of every parser, and a smoke run of the benchmark binary.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
cargo build --workspace --all-targets --all-features --locked
cargo test --workspace --all-features --locked
# The crate's documented example: an attested server and a verifying client over loopback.
cargo run --locked -q -p ratls --features sim,issue --example attested_pair >/dev/null
bash scripts/fuzz-smoke.sh "${FUZZ_SECONDS:-10}"
cargo run --release --locked -p ratls-bench -- --multiplier 0.05
