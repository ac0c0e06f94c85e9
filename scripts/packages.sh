#!/usr/bin/env bash
# The Debian packages (cargo-deb): build them, check them with lintian (errors fail), install
# them with dpkg, run what they installed, purge them and check that nothing is left.
#
#   scripts/packages.sh production   cosmian-vm-agent, cosmian-vm, cosmian-vm-proxy,
#                                    cosmian-certtool from builds without the simulated TEE
#                                    (--no-default-features); installed, each binary run, the
#                                    directories' owners and modes, the conffiles, the units
#                                    (systemd-analyze verify on the installed files), the agent
#                                    refusing tee = "sim"; purged
#   scripts/packages.sh sim          cosmian-vm-agent-sim (the same package with the simulated
#                                    TEE, for tests) and cosmian-vm: installed, the agent started
#                                    from its default configuration pointed at a swtpm and test
#                                    paths, then owner enroll, snapshot and verify with the
#                                    installed CLI; purged
#   scripts/packages.sh              both
#
# Environment: PROFILE (cargo profile of the binaries, default release; CI uses dev, the build it
# already has), PACKAGES_SKIP_BUILD=1 (pack what target/ holds), OUT (default target/debian).
# Installing needs root (CI runs as root). Packages land in $OUT for `dpkg -i`.
set -euo pipefail
cd "$(dirname "$0")/.."
root=$(pwd)
PROFILE=${PROFILE:-release}
OUT=${OUT:-$root/target/debian}
stages=("$@")
[ ${#stages[@]} -gt 0 ] || stages=(production sim)

pids=()
work=$(mktemp -d /tmp/cosmian-packages.XXXXXX)
# cleanup (the EXIT trap), free_port, wait_port, start_swtpm.
. "$root/scripts/lib.sh"
# The packages this run installed: purged on any exit, so that a failed run leaves none behind
# (a leftover -sim package would conflict with the next run's production one).
installed=()
on_exit() {
    cleanup
    if ((${#installed[@]})); then dpkg --purge "${installed[@]}" >/dev/null 2>&1 || true; fi
}
trap on_exit EXIT
export TSS2_LOG=all+none

say() { printf '\n== packages: %s\n' "$*"; }
fail() { echo "packages: FAILED: $*" >&2; exit 1; }
profile_dir() { if [ "$PROFILE" = dev ]; then echo debug; else echo "$PROFILE"; fi; }

build() { # cargo build arguments…
    [ "${PACKAGES_SKIP_BUILD:-0}" = 1 ] && return 0
    cargo build --locked --profile "$PROFILE" "$@"
}

pack() { # crate [cargo deb arguments…]: prints the .deb's path
    local crate=$1
    shift
    mkdir -p "$OUT"
    # cargo-deb warns that a dev profile is not a release one: CI packs its debug build on
    # purpose (the same code, built once); releases use PROFILE=release.
    cargo deb --locked --no-build --profile "$PROFILE" -p "$crate" -o "$OUT/" "$@" 2> "$work/deb.err" \
        | tail -n 1 || { cat "$work/deb.err" >&2; fail "cargo deb -p $crate"; }
}

check_lintian() { # .deb files…
    say "lintian (errors fail): $(basename -a "$@" | tr '\n' ' ')"
    lintian --fail-on error --tag-display-limit 0 "$@" 2>&1 | grep -v "running with root privileges" || true
    lintian --fail-on error --tag-display-limit 0 "$@" >/dev/null 2>&1 || fail "lintian found errors"
}

need_root() {
    [ "$(id -u)" = 0 ] || fail "installing the packages needs root (CI runs as root)"
}

purge_and_check() { # package names…
    say "purge $*"
    dpkg --purge "$@"
    installed=()
    local p st
    for p in "$@"; do
        st=$(dpkg-query -W -f='${db:Status-Status}' "$p" 2>/dev/null || true)
        case "$st" in
            "" | not-installed) ;;
            *) fail "$p is still $st after dpkg --purge" ;;
        esac
    done
    for f in /usr/sbin/cosmian_vm_agent /usr/sbin/cosmian_fstool /usr/bin/cosmian_vm \
        /usr/sbin/cosmian_vm_proxy /usr/bin/cosmian_certtool /etc/cosmian_vm \
        /lib/systemd/system/cosmian_vm_agent.service /lib/systemd/system/cosmian_fstool_mount.service \
        /lib/systemd/system/var-lib-cosmian_vm-tmp.mount /lib/systemd/system/cosmian_vm_proxy.service \
        /var/lib/cosmian_vm /usr/share/doc/cosmian-vm-agent /usr/share/cosmian-vm-agent; do
        [ ! -e "$f" ] || fail "$f is left after the purge"
    done
    echo "purged: nothing of $* is left"
}

production() {
    say "production builds (no simulated TEE), profile $PROFILE"
    build --no-default-features -p cosmian_vm_agent -p cosmian_fstool -p cosmian_vm \
        -p cosmian_vm_proxy -p cosmian_certtool
    local debs=()
    debs+=("$(pack cosmian_vm_agent)")
    debs+=("$(pack cosmian_vm)")
    debs+=("$(pack cosmian_vm_proxy)")
    debs+=("$(pack cosmian_certtool)")
    printf '%s\n' "${debs[@]}"
    check_lintian "${debs[@]}"
    need_root
    say "dpkg -i"
    installed=(cosmian-vm-agent cosmian-vm cosmian-vm-proxy cosmian-certtool)
    dpkg -i "${debs[@]}"
    say "what the packages installed"
    local b
    for b in /usr/sbin/cosmian_vm_agent /usr/sbin/cosmian_fstool /usr/bin/cosmian_vm \
        /usr/sbin/cosmian_vm_proxy /usr/bin/cosmian_certtool; do
        "$b" --version || fail "$b --version"
    done
    local d mode
    for d in /var/lib/cosmian_vm /var/lib/cosmian_vm/data /var/lib/cosmian_vm/tmp; do
        mode=$(stat -c '%a %U:%G' "$d")
        [ "$mode" = "700 root:root" ] || fail "$d: expected mode 700 root:root, found $mode"
        echo "$d $mode"
    done
    dpkg-query -W -f='${Conffiles}\n' cosmian-vm-agent | grep -q " /etc/cosmian_vm/agent.toml " \
        || fail "/etc/cosmian_vm/agent.toml is not a conffile of cosmian-vm-agent"
    dpkg-query -W -f='${Conffiles}\n' cosmian-vm-proxy | grep -q " /etc/cosmian_vm/proxy.toml " \
        || fail "/etc/cosmian_vm/proxy.toml is not a conffile of cosmian-vm-proxy"
    say "systemd-analyze verify on the installed units"
    local units=(/lib/systemd/system/cosmian_fstool_mount.service
        /lib/systemd/system/var-lib-cosmian_vm-tmp.mount
        /lib/systemd/system/cosmian_vm_agent.service
        /lib/systemd/system/cosmian_vm_proxy.service)
    local out
    out=$(systemd-analyze verify "${units[@]}" 2>&1) || fail "systemd-analyze verify: $out"
    # Only our units' own findings count (the host may have unrelated broken units).
    if grep -E "cosmian|var-lib-cosmian_vm" <<<"$out"; then fail "systemd-analyze verify found problems"; fi
    echo "units verified: ${units[*]}"
    say "the production agent refuses the simulated TEE"
    sed -e 's|^tpm_device = .*|tpm_device = "swtpm:host=127.0.0.1,port=9"|' \
        -e 's|^# tee = .*|tee = "sim"|' -e "s|^# data_dir = .*|data_dir = \"$work/prod-data\"|" \
        /etc/cosmian_vm/agent.toml > "$work/prod-agent.toml"
    if out=$(timeout 20 /usr/sbin/cosmian_vm_agent --config "$work/prod-agent.toml" 2>&1); then
        fail "the production agent started with tee = \"sim\": $out"
    fi
    grep -q 'built without the `sim` feature' <<<"$out" \
        || fail "the agent did not refuse for the missing simulated TEE: $out"
    echo "refused: $(head -n 3 <<<"$out")"
    purge_and_check cosmian-vm-agent cosmian-vm cosmian-vm-proxy cosmian-certtool
}

sim() {
    say "the agent with the simulated TEE (tests only), profile $PROFILE"
    build -p cosmian_vm_agent -p cosmian_vm
    local bin
    bin="$root/target/$(profile_dir)"
    local debs=()
    debs+=("$(pack cosmian_vm_agent --variant sim)")
    debs+=("$(pack cosmian_vm)")
    printf '%s\n' "${debs[@]}"
    check_lintian "${debs[@]}"
    need_root
    say "dpkg -i"
    installed=(cosmian-vm-agent-sim cosmian-vm)
    dpkg -i "${debs[@]}"

    say "a swtpm with a simulated measured boot and IMA log"
    start_swtpm "$work/tpm"
    "$bin/cosmian_vm_sim" boot --tpm "$tcti" --event-log "$work/eventlog.bin"
    mkdir -p "$work/app" "$work/data" "$work/home"
    printf '#!/bin/sh\necho "my app"\n' > "$work/app/my_app.sh"
    "$bin/cosmian_vm_sim" ima-init --tpm "$tcti" --log "$work/ima.log"
    "$bin/cosmian_vm_sim" measure --tpm "$tcti" --log "$work/ima.log" \
        /usr/sbin/cosmian_vm_agent "$work/app/my_app.sh"

    say "the installed agent from its default configuration, pointed at the test paths"
    local port conf=$work/agent.toml
    port=$(free_port)
    sed -e "s|^port = .*|port = $port|" \
        -e "s|^tpm_device = .*|tpm_device = \"$tcti\"|" \
        -e "s|^# data_dir = .*|data_dir = \"$work/data\"|" \
        -e 's|^# tee = .*|tee = "sim"|' \
        -e "s|^# ima_log = .*|ima_log = \"$work/ima.log\"|" \
        -e "s|^# event_log = .*|event_log = \"$work/eventlog.bin\"|" \
        -e "s|^# snapshot_roots = .*|snapshot_roots = [\"$work/app\"]|" \
        /etc/cosmian_vm/agent.toml > "$conf"
    local key
    for key in "port = $port" "tpm_device = \"$tcti\"" 'tee = "sim"' "ima_log = " "event_log = " \
        "data_dir = " "snapshot_roots = "; do
        grep -q "^$key" "$conf" || fail "the default agent.toml has no line to point at the test ($key)"
    done
    diff /etc/cosmian_vm/agent.toml "$conf" || true
    /usr/sbin/cosmian_vm_agent --config "$conf" > "$work/agent.log" 2>&1 &
    pids+=($!)
    wait_port "$port" cosmian_vm_agent || { cat "$work/agent.log"; fail "the agent did not start"; }
    local cli=(env HOME="$work/home" /usr/bin/cosmian_vm --url "https://127.0.0.1:$port"
        --allow-insecure-tls --insecure-sim-root "$work/data/sim/ark.pem")
    "${cli[@]}" owner enroll --token "$(cat "$work/data/enrolment-token")"
    "${cli[@]}" snapshot -o "$work/vm.snapshot"
    "${cli[@]}" verify --snapshot "$work/vm.snapshot" || fail "verify with the installed binaries"
    kill "${pids[@]}" 2>/dev/null || true
    wait 2>/dev/null || true
    pids=()
    purge_and_check cosmian-vm-agent-sim cosmian-vm
}

for stage in "${stages[@]}"; do
    case "$stage" in
        production) production ;;
        sim) sim ;;
        *) fail "unknown stage $stage (production, sim)" ;;
    esac
done
say "done: ${stages[*]}"
