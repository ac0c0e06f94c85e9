#!/usr/bin/env bash
# Build every fuzz target once and run each for a few seconds (default 10), seeded with the
# checked-in fuzz/seeds/<target>/ (generated from the repo's own fixtures by
# `cargo run --example gen_seeds`) and with the real evidence samples (read in place from
# $COSMIAN_REAL_TESTDATA, copied only into the git-ignored fuzz/corpus). Every target that
# `cargo fuzz list` names runs. Any crash fails the script and prints the fuzzer's report.
#
# cargo-fuzz needs nightly-only compiler flags; the machine has one stable toolchain, so we let
# it accept them with RUSTC_BOOTSTRAP=1 (the sanitizer flags are the only unstable ones used).
set -euo pipefail
cd "$(dirname "$0")/../fuzz"
secs=${1:-10}
real=${COSMIAN_REAL_TESTDATA:-$(cd .. && pwd)/../shared/testdata/real}
export RUSTC_BOOTSTRAP=1

seed() { # target, files...
    local target=$1; shift
    mkdir -p "corpus/$target"
    for f in "$@"; do [ -f "$f" ] && cp -f "$f" "corpus/$target/" || true; done
}
seed snp_report "$real/sev-snp/milan-vcek-virtee/report_milan.hex" "$real/sev-snp/genoa-azure-vtpm-trustee/derived-snp-report.bin"
seed tdx_quote "$real/tdx/v4-emr-phala-collateral/tdx_quote.bin" "$real/tdx/v5-td15-phala-collateral/tdx_quote_v5.bin"
seed tpm_quote "$real/sev-snp/genoa-azure-vtpm-trustee/derived-tpms_attest.bin" "$real/tpm/gce-shielded-vm-go-tpm-tools/derived-ak_pub.tpmt"
seed ima_log "$real/ima/ibmtss-vtpm-binary/sha1.log" "$real/ima/ibmtss-vtpm-binary/sha256.log"
seed event_log "$real/tpm/gce-shielded-vm-go-tpm-tools/derived-eventlog.bin"
seed azure_hcl "$real/sev-snp/genoa-azure-vtpm-trustee/derived-hcl-report.bin"
# Fresh-mode frames have no captured sample: seed a REQUEST without and with a challenge.
mkdir -p corpus/fresh_frame
printf '\x01\x00\x00\x00\x02\x01\x00' > corpus/fresh_frame/request-none
{ printf '\x01\x00\x00\x00\x42\x01\x01'; head -c 64 /dev/zero; } > corpus/fresh_frame/request-want
# Live sessions: LIVE, a DATA frame, a REATTEST with an IMA offset.
printf '\x05\x00\x00\x00\x01\x01' > corpus/fresh_frame/live
printf '\x06\x00\x00\x00\x04ping' > corpus/fresh_frame/data
{ printf '\x07\x00\x00\x00\x48'; head -c 64 /dev/zero; printf '\x00\x00\x00\x00\x00\x01\x86\xa1'; } > corpus/fresh_frame/reattest
# foreign_cert reads its input both as a certificate and as an extension value: seed it with raw
# evidence, and with a certificate carrying the Milan report in Cosmian's extension.
seed foreign_cert "$real/sev-snp/genoa-azure-vtpm-trustee/derived-snp-report.bin" "$real/tdx/v4-emr-phala-collateral/tdx_quote.bin"
milan="$real/sev-snp/milan-vcek-virtee/report_milan.hex"
if [ -f "$milan" ] && command -v openssl >/dev/null; then
    openssl req -x509 -nodes -newkey ec -pkeyopt ec_paramgen_curve:P-256 -subj "/CN=foreign seed" \
        -days 1 -keyout /dev/null -outform DER -out corpus/foreign_cert/cosmian-milan.der \
        -addext "1.2.840.113741.1337.7=DER:$(tr -d '\n\r ' < "$milan")" 2>/dev/null || true
fi

start=$(date +%s)
cargo fuzz build
targets=$(cargo fuzz list)
log=$(mktemp)
trap 'rm -f "$log"' EXIT
for t in $targets; do
    mkdir -p "corpus/$t"
    if [ -d "seeds/$t" ]; then cp -f seeds/"$t"/* "corpus/$t/"; fi
    echo "fuzz: $t for ${secs}s"
    if ! cargo fuzz run "$t" "corpus/$t" -- -max_total_time="$secs" -rss_limit_mb=2048 >"$log" 2>&1; then
        tail -n 40 "$log"
        echo "fuzz: $t FAILED (reproducer under fuzz/artifacts/$t/)" >&2
        exit 1
    fi
    tail -n 1 "$log"
done
echo "fuzz: all $(echo "$targets" | wc -w) targets ran ${secs}s without a crash ($(( $(date +%s) - start ))s with the build)"
