#!/usr/bin/env bash
# Install what the build and the tests need on a fresh Debian 12 machine (idempotent; run as root).
# Packages already present are not reinstalled; `apt-get update` runs only when something is missing.
set -euo pipefail

# Debian packages the build and tests use: libtss2-dev + pkg-config build the TPM attester
# (ratls feature `tpm`); swtpm + swtpm-tools (swtpm_setup, swtpm_localca) run a real software TPM
# per test; tpm2-tools (tpm2_quote, tpm2_checkquote) cross-check our quotes; openssl is the plain
# TLS client of the RA-TLS interop test; pebble (pebble and pebble-challtestsrv) is the loopback
# ACME server of cosmian_certtool's tests; cryptsetup-bin: cosmian_fstool formats and checks LUKS2
# images (no device-mapper needed for that); curl is the plain HTTP client of the proxy's tests.
# systemd: `systemd-analyze verify` checks the packaged units (fstool's attack tests).
# supervisor: a real supervisord for the agent's `service_type = "supervisor"` app control
# (tests/attacks/tests/supervisor.rs).
# lintian checks the Debian packages (scripts/packages.sh); dpkg-dev's dpkg-shlibdeps computes
# their library dependencies for cargo-deb.
# The real-Linux end-to-end test (tests/qemu, scripts/e2e-qemu.sh): busybox-static, cpio, ovmf
# (measured UEFI boot), the data files and shared libraries QEMU needs (QEMU itself and the
# Debian kernel are extracted from their .debs by tests/qemu/fetch.sh: the image's backported
# qemu-utils blocks installing qemu-system-x86), cryptsetup (its libraries go into the guest).
PACKAGES=(ca-certificates pkg-config libtss2-dev swtpm swtpm-tools tpm2-tools openssl curl pebble cryptsetup-bin systemd supervisor
    lintian dpkg-dev
    busybox-static cpio ovmf seabios ipxe-qemu qemu-system-data e2fsprogs
    libaio1 libbpf1 libcapstone4 libfdt1 libfuse3-3 libibverbs1 libjpeg62-turbo libnuma1
    libpixman-1-0 libpmem1 libpng16-16 librdmacm1 libsasl2-2 libseccomp2 libslirp0 liburing2 libvdeplug2)

missing=()
for p in "${PACKAGES[@]}"; do
    dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if ((${#missing[@]})); then
    echo "setup: installing ${missing[*]}"
    export DEBIAN_FRONTEND=noninteractive
    apt-get update -qq
    apt-get install -y -qq --no-install-recommends "${missing[@]}"
fi

# cargo-fuzz drives the fuzz smoke run (stable toolchain + RUSTC_BOOTSTRAP=1, see scripts/fuzz-smoke.sh).
if ! command -v cargo-fuzz >/dev/null 2>&1; then
    echo "setup: installing cargo-fuzz"
    cargo install cargo-fuzz --locked --version 0.13.2 --quiet
fi

# cargo-deb builds the Debian packages (scripts/packages.sh). 3.6.2 builds with rustc 1.95.
if ! command -v cargo-deb >/dev/null 2>&1; then
    echo "setup: installing cargo-deb"
    cargo install cargo-deb --locked --version 3.6.2 --quiet
fi

# mdBook builds the user guide (docs/guide, scripts/guide-test.sh); without its default
# features (the `serve` live-reload server), which halves its build (about 1.5 minutes here).
if ! command -v mdbook >/dev/null 2>&1; then
    echo "setup: installing mdbook"
    cargo install mdbook --locked --version 0.5.4 --no-default-features --features search --quiet
fi

# cargo-deny checks deny.toml (licences, banned crates, sources; advisories when reachable) in CI
# (scripts/deny.sh). 0.20.2 builds with rustc 1.95 (its MSRV is 1.88); a fresh install from
# source took about 6 minutes here (2 cores), paid once per machine.
if ! command -v cargo-deny >/dev/null 2>&1; then
    echo "setup: installing cargo-deny"
    cargo install cargo-deny --locked --version 0.20.2 --quiet
fi

# prometheus_client (PyPI): the Prometheus project's own text-format parser checks the metrics of
# `cosmian_vm verify --fleet --metrics` (tests/attacks/tests/fleet.rs).
if ! python3 -c "import prometheus_client" >/dev/null 2>&1; then
    echo "setup: installing prometheus_client"
    PIP_BREAK_SYSTEM_PACKAGES=1 python3 -m pip install --quiet --root-user-action=ignore prometheus_client==0.26.0
fi

# kubernetes-validate (PyPI; it carries the Kubernetes API schemas, no cluster needed) checks the
# manifests in proxy/packaging/kubernetes (scripts/k8s-validate.sh).
if ! command -v kubernetes-validate >/dev/null 2>&1; then
    echo "setup: installing kubernetes-validate"
    PIP_BREAK_SYSTEM_PACKAGES=1 python3 -m pip install --quiet --root-user-action=ignore kubernetes-validate==1.34.1
fi
