#!/usr/bin/env bash
# Performance of the sidecar proxy (issue 6) next to stunnel4 and haproxy, on this machine.
#
# Every proxy terminates TLS 1.3 with the same ECDSA P-256 certificate (generated here) in front of
# the same backend (nginx, one worker, loopback) and is driven by the same clients (wrk, curl):
#   direct          wrk/curl -> nginx (plaintext; the baseline for "added latency")
#   stunnel4        -> stunnel4 -> nginx
#   haproxy         -> haproxy (mode tcp, nbthread 1) -> nginx
#   ours, plain     -> cosmian_vm_proxy server --cert/--key -> nginx
#   ours, attested  -> cosmian_vm_proxy server, RA-TLS certificate (sim TEE + swtpm) -> nginx
#   ours, chain     wrk (plaintext) -> cosmian_vm_proxy client -> ours, attested -> nginx
#                   (fresh attestation per connection; informative)
# Metrics per case, interleaved over $REPS rounds, medians reported:
#   latency   wrk --latency, $LAT_CONNS keep-alive connections: p50, p99, added = proxied - direct
#   req/s     wrk, $KA_CONNS keep-alive connections, tiny response ("ok")
#   conn/s    wrk -H 'Connection: close', $NC_CONNS connections: one TLS handshake per request
#   MB/s      curl, one stream, a $BULK_MIB MiB response (sparse file, nginx sendfile)
#   CPU       the proxy's own CPU time (user + system, all threads) per new connection, per
#             keep-alive request and per MB: on 2 cores the OpenSSL-based clients often saturate
#             before the proxy does, and this is the measure that still compares the proxies
# CPU: with 2+ cores, every proxy runs on core $PROXY_CPU and wrk + nginx on core $LOAD_CPU
# (taskset), so each proxy gets exactly one core; PIN=0 lets everything share. The bulk curl is
# left to the scheduler: next to nginx on one core it runs at a third of its speed.
#
# Resumption is off for the peers by default (RESUME=0): wrk reuses the TLS session of its
# previous connection when the server offers one, so "conn/s" would otherwise measure resumed
# handshakes for some proxies and full ones for others. Each case's TLS parameters and whether a
# second connection resumes are probed with openssl s_client and printed before the runs.
# wrk and curl do not verify certificates (-k); in particular wrk does NOT verify the attested
# proxy's evidence: the attested rows measure the server's cost, not a verifying client's.
#
# Environment: PROXY (default target/release/cosmian_vm_proxy; our rows are skipped, loudly, when
# it does not exist), SIM (cosmian_vm_sim, built if missing and needed), DURATION (s per wrk run,
# default 5), REPS (default 3), LAT_CONNS (4), KA_CONNS (32), NC_CONNS (16), BULK_MIB (1024),
# PIN (1), PROXY_CPU (0), LOAD_CPU (1), RESUME (0), CHAIN (1), CHAIN_POLICY (a policy file for
# the client-mode proxy; default an empty policy `{}`), OUT (report file, default
# target/bench-proxy/report.md), INSTALL (1: apt-get install missing tools when root).
set -euo pipefail
cd "$(dirname "$0")/.."
root=$(pwd)

DURATION=${DURATION:-5}
REPS=${REPS:-3}
LAT_CONNS=${LAT_CONNS:-4}
KA_CONNS=${KA_CONNS:-32}
NC_CONNS=${NC_CONNS:-16}
BULK_MIB=${BULK_MIB:-1024}
PIN=${PIN:-1}
PROXY_CPU=${PROXY_CPU:-0}
LOAD_CPU=${LOAD_CPU:-1}
RESUME=${RESUME:-0}
CHAIN=${CHAIN:-1}
INSTALL=${INSTALL:-1}
PROXY=${PROXY:-target/release/cosmian_vm_proxy}
SIM=${SIM:-target/release/cosmian_vm_sim}
OUT=${OUT:-target/bench-proxy/report.md}
case $PROXY in /*) ;; *) PROXY="$root/$PROXY" ;; esac
case $SIM in /*) ;; *) SIM="$root/$SIM" ;; esac
case $OUT in /*) ;; *) OUT="$root/$OUT" ;; esac

say() { printf '\033[1m== %s\033[0m\n' "$*" >&2; }
loud() { printf '\n\033[1;31m!! %s\033[0m\n\n' "$*" >&2; }
started=$SECONDS
load_before=$(cut -d" " -f1-3 /proc/loadavg)

# --- tools ---------------------------------------------------------------------------------
# command -> Debian package. Not in scripts/setup.sh on purpose: the bench runs by hand.
declare -A pkg_of=([stunnel4]=stunnel4 [haproxy]=haproxy [wrk]=wrk [nginx]=nginx [curl]=curl
    [openssl]=openssl [taskset]=util-linux [swtpm]=swtpm [swtpm_setup]=swtpm-tools)
missing=()
for c in "${!pkg_of[@]}"; do
    command -v "$c" >/dev/null 2>&1 || [ -x "/usr/sbin/$c" ] || missing+=("${pkg_of[$c]}")
done
if ((${#missing[@]})); then
    if [ "$INSTALL" = 1 ] && [ "$(id -u)" = 0 ]; then
        say "installing ${missing[*]}"
        export DEBIAN_FRONTEND=noninteractive
        apt-get update -qq
        apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
    else
        echo "bench-proxy: missing packages: ${missing[*]} (run as root or install them)" >&2
        exit 1
    fi
fi
export PATH="$PATH:/usr/sbin"

have_ours=1
if [ ! -x "$PROXY" ]; then
    have_ours=0
    loud "cosmian_vm_proxy not found at $PROXY: SKIPPING OUR ROWS (ours, plain / attested / chain). Build it (cargo build --release -p cosmian_vm_proxy) or set PROXY=... and rerun."
fi

ncpu=$(nproc)
if [ "$PIN" = 1 ] && [ "$ncpu" -ge 2 ]; then
    on_proxy=(taskset -c "$PROXY_CPU")
    on_load=(taskset -c "$LOAD_CPU")
    cpu_note="proxies pinned to core $PROXY_CPU; wrk and nginx pinned to core $LOAD_CPU (taskset); the bulk curl not pinned"
else
    on_proxy=()
    on_load=()
    cpu_note="no pinning: proxies, clients and nginx share all $ncpu core(s)"
fi

work=$(mktemp -d /tmp/cosmian-bench-proxy.XXXXXX)
pids=()
cleanup() {
    for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done
    wait 2>/dev/null || true
    rm -rf "$work"
}
trap cleanup EXIT
export TSS2_LOG=all+none

free_port() { # an even port whose successor is free too (swtpm uses port and port + 1), below
    # the ephemeral range (32768+), where the runs leave thousands of TIME_WAIT sockets
    local p
    for _ in $(seq 1 100); do
        p=$(((RANDOM % 5000) * 2 + 20000))
        if ! (exec 3<>/dev/tcp/127.0.0.1/$p) 2>/dev/null && ! (exec 3<>/dev/tcp/127.0.0.1/$((p + 1))) 2>/dev/null; then
            echo "$p"
            return
        fi
    done
    echo "no free port" >&2
    return 1
}
wait_port() { # port, what, log file
    for _ in $(seq 1 300); do
        (exec 3<>/dev/tcp/127.0.0.1/"$1") 2>/dev/null && return 0
        sleep 0.1
    done
    echo "bench-proxy: $2 did not start on port $1" >&2
    [ -f "${3:-}" ] && tail -20 "$3" >&2
    return 1
}

# --- certificate and backend -------------------------------------------------------------------
say "ECDSA P-256 certificate, nginx backend, $BULK_MIB MiB bulk object"
openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -days 2 \
    -subj /CN=localhost -addext "subjectAltName=DNS:localhost,IP:127.0.0.1" \
    -keyout "$work/key.pem" -out "$work/cert.pem" 2>/dev/null
cat "$work/cert.pem" "$work/key.pem" > "$work/combined.pem"
mkdir -p "$work/www"
truncate -s "${BULK_MIB}M" "$work/www/big"
bulk_bytes=$((BULK_MIB * 1024 * 1024))

# One backend port per case (same server block), so that no case inherits another's TIME_WAITs.
declare -A backend
listen_lines=""
for c in direct stunnel4 haproxy plain attested; do
    backend[$c]=$(free_port)
    listen_lines+="        listen 127.0.0.1:${backend[$c]} backlog=4096;"$'\n'
done
cat > "$work/nginx.conf" <<NGINX
worker_processes 1;
master_process off;
daemon off;
pid $work/nginx.pid;
error_log $work/nginx-error.log error;
events { worker_connections 8192; }
http {
    access_log off;
    default_type text/plain;
    sendfile on;
    tcp_nopush on;
    keepalive_requests 1000000000;
    keepalive_timeout 300s;
    server {
$listen_lines
        location = / { return 200 "ok"; }
        location = /big { alias $work/www/big; }
    }
}
NGINX
"${on_load[@]}" nginx -e "$work/nginx-error.log" -c "$work/nginx.conf" &
pids+=($!)
wait_port "${backend[direct]}" nginx "$work/nginx-error.log"

declare -A url big_url label proc
cases=(direct)
url[direct]="http://127.0.0.1:${backend[direct]}/"
label[direct]="direct to nginx (baseline, plaintext)"

# --- stunnel4 ----------------------------------------------------------------------------------
say "stunnel4 $(stunnel4 -version 2>&1 | sed -n 's/^stunnel \([0-9.]*\).*/\1/p' | head -1)"
p=$(free_port)
{
    echo "foreground = yes"
    echo "pid ="
    echo "debug = err"
    echo "output = $work/stunnel.log"
    echo "[bench]"
    echo "accept = 127.0.0.1:$p"
    echo "connect = 127.0.0.1:${backend[stunnel4]}"
    echo "cert = $work/cert.pem"
    echo "key = $work/key.pem"
    echo "sslVersionMin = TLSv1.3"
    [ "$RESUME" = 1 ] || echo "sessionResume = no"
} > "$work/stunnel.conf"
"${on_proxy[@]}" stunnel4 "$work/stunnel.conf" 2>>"$work/stunnel.log" &
pids+=($!)
proc[stunnel4]=$!
wait_port "$p" stunnel4 "$work/stunnel.log"
cases+=(stunnel4)
url[stunnel4]="https://127.0.0.1:$p/"
label[stunnel4]="stunnel4 (thread per connection)"

# --- haproxy -----------------------------------------------------------------------------------
say "$(haproxy -v | head -1 | cut -d' ' -f1-3)"
p=$(free_port)
cat > "$work/haproxy.cfg" <<HAPROXY
global
    nbthread 1
    maxconn 8000
    $([ "$RESUME" = 1 ] || echo "tune.ssl.cachesize 0")
defaults
    mode tcp
    timeout connect 5s
    timeout client 60s
    timeout server 60s
frontend bench
    bind 127.0.0.1:$p ssl crt $work/combined.pem ssl-min-ver TLSv1.3 $([ "$RESUME" = 1 ] || echo "no-tls-tickets")
    default_backend nginx
backend nginx
    server nginx 127.0.0.1:${backend[haproxy]}
HAPROXY
"${on_proxy[@]}" haproxy -db -f "$work/haproxy.cfg" >"$work/haproxy.log" 2>&1 &
pids+=($!)
proc[haproxy]=$!
wait_port "$p" haproxy "$work/haproxy.log"
cases+=(haproxy)
url[haproxy]="https://127.0.0.1:$p/"
label[haproxy]="haproxy (mode tcp, nbthread 1)"

# --- ours --------------------------------------------------------------------------------------
if [ "$have_ours" = 1 ]; then
    say "cosmian_vm_proxy, plain mode (--cert/--key)"
    p=$(free_port)
    "${on_proxy[@]}" "$PROXY" server --listen "127.0.0.1:$p" --target "127.0.0.1:${backend[plain]}" \
        --cert "$work/cert.pem" --key "$work/key.pem" --tee none --metadata none >"$work/plain.log" 2>&1 &
    pids+=($!)
    proc[plain]=$!
    wait_port "$p" "cosmian_vm_proxy (plain)" "$work/plain.log"
    cases+=(plain)
    url[plain]="https://127.0.0.1:$p/"
    label[plain]="ours, plain (--cert/--key)"

    say "cosmian_vm_proxy, attested (RA-TLS certificate: sim TEE + swtpm + simulated IMA)"
    if [ ! -x "$SIM" ]; then
        cargo build --release --locked -p cosmian_vm_agent --bin cosmian_vm_sim
    fi
    mkdir -p "$work/tpm"
    swtpm_setup --tpm2 --pcr-banks sha1,sha256 --tpmstate "$work/tpm" --createek >/dev/null
    tpm_port=$(free_port)
    swtpm socket --tpm2 --server type=tcp,port="$tpm_port",bindaddr=127.0.0.1 \
        --ctrl type=tcp,port=$((tpm_port + 1)),bindaddr=127.0.0.1 \
        --tpmstate dir="$work/tpm" --flags not-need-init,startup-clear &
    pids+=($!)
    wait_port "$tpm_port" swtpm
    tcti="swtpm:host=127.0.0.1,port=$tpm_port"
    "$SIM" boot --tpm "$tcti"
    "$SIM" ima-init --tpm "$tcti" --log "$work/ima.log"
    "$SIM" measure --tpm "$tcti" --log "$work/ima.log" "$PROXY"
    p=$(free_port)
    "${on_proxy[@]}" "$PROXY" server --listen "127.0.0.1:$p" --target "127.0.0.1:${backend[attested]}" \
        --tee sim --sim-dir "$work/sim" --tpm "$tcti" --ima-log "$work/ima.log" \
        --metadata none >"$work/attested.log" 2>&1 &
    pids+=($!)
    proc[attested]=$!
    wait_port "$p" "cosmian_vm_proxy (attested)" "$work/attested.log"
    cases+=(attested)
    url[attested]="https://127.0.0.1:$p/"
    label[attested]="ours, attested (RA-TLS cert, sim TEE + swtpm)"

    if [ "$CHAIN" = 1 ]; then
        say "cosmian_vm_proxy client mode -> attested server (fresh attestation per connection)"
        policy=${CHAIN_POLICY:-$work/policy.json}
        [ -n "${CHAIN_POLICY:-}" ] || echo '{}' > "$policy"
        pc=$(free_port)
        "${on_proxy[@]}" "$PROXY" client --listen "127.0.0.1:$pc" --target "127.0.0.1:$p" \
            --policy "$policy" --insecure-sim-root "$work/sim/ark.pem" --metadata none \
            >"$work/chain.log" 2>&1 &
        pids+=($!)
        proc[chain]="$! ${proc[attested]}"
        if wait_port "$pc" "cosmian_vm_proxy (client)" "$work/chain.log" &&
            [ "$(curl -s --max-time 10 "http://127.0.0.1:$pc/" || true)" = ok ]; then
            cases+=(chain)
            url[chain]="http://127.0.0.1:$pc/"
            label[chain]="ours, client mode -> attested server (fresh attestation per connection; informative)"
        else
            loud "the client-mode chain does not forward (see below): skipping its row"
            tail -20 "$work/chain.log" >&2 || true
        fi
    fi
fi

for c in "${cases[@]}"; do big_url[$c]="${url[$c]}big"; done

# --- sanity: every case answers, TLS parameters, resumption --------------------------------------
say "checks: response, TLS version and cipher, TLS 1.2 refused, resumption"
declare -A tls_note
for c in "${cases[@]}"; do
    body=$(curl -sk --max-time 10 "${url[$c]}" || true)
    if [ "$body" != ok ]; then
        echo "bench-proxy: ${label[$c]}: expected \"ok\" from ${url[$c]}, got \"$body\"" >&2
        exit 1
    fi
    case ${url[$c]} in
    https://*)
        hp=${url[$c]#https://}
        hp=${hp%/}
        req=$'GET / HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n'
        first=$( (printf '%s' "$req"; sleep 0.3) | openssl s_client -connect "$hp" -servername localhost \
            -sess_out "$work/sess.$c" -ign_eof 2>/dev/null || true)
        second=$( (printf '%s' "$req"; sleep 0.3) | openssl s_client -connect "$hp" -servername localhost \
            -sess_in "$work/sess.$c" -ign_eof 2>/dev/null || true)
        proto=$(sed -n 's/^New, \(TLSv[0-9.]*\), Cipher is \(.*\)/\1 \2/p' <<<"$first" | head -1)
        sig=$(sed -n 's/^Peer signature type: //p' <<<"$first" | head -1)
        certsize=$(openssl s_client -connect "$hp" -showcerts </dev/null 2>/dev/null |
            openssl x509 -outform DER 2>/dev/null | wc -c)
        if grep -q '^Reused' <<<"$second"; then resumed=yes; else resumed=no; fi
        if openssl s_client -connect "$hp" -tls1_2 </dev/null >/dev/null 2>&1; then
            tls12="ACCEPTED"
        else
            tls12="refused"
        fi
        tls_note[$c]="${proto:-?}, server signature ${sig:-?}, leaf ${certsize} B, TLS 1.2 $tls12, 2nd connection resumed: $resumed"
        ;;
    *) tls_note[$c]="plaintext" ;;
    esac
    printf '  %-9s %s\n' "$c" "${tls_note[$c]}" >&2
done
if [ "$have_ours" = 1 ] && [ "${tls_note[plain]}" != "${tls_note[plain]%resumed: yes}" ] &&
    [ "$RESUME" != 1 ]; then
    loud "ours (plain) resumes TLS sessions but the peers were configured not to: conn/s is not like for like. Rerun with RESUME=1 to give the peers their default resumption too."
fi

for c in "${cases[@]}"; do
    if [ "${tls_note[$c]}" != "${tls_note[$c]%TLS 1.2 ACCEPTED*}" ]; then
        loud "${label[$c]} accepts TLS 1.2: the peers are TLS 1.3 only (the runs below still use TLS 1.3)"
    fi
done

# --- measurements ------------------------------------------------------------------------------
mkdir -p "$work/res"
to_us() { # wrk duration (e.g. 93.00us, 1.20ms, 1.00s) -> microseconds
    awk -v v="$1" 'BEGIN {
        n = v + 0; u = v; sub(/^[0-9.]+/, "", u)
        if (u == "us") m = 1; else if (u == "ms") m = 1000; else if (u == "s") m = 1000000;
        else if (u == "m") m = 60000000; else { print "NaN"; exit }
        printf "%.1f\n", n * m }'
}
record() { echo "$3" >> "$work/res/$1.$2"; } # case, metric, value
hz=$(getconf CLK_TCK)
cpu_ticks() { # case -> user + system CPU (clock ticks) of the case's proxy process(es), all threads
    local t=0 p
    for p in ${proc[$1]:-}; do
        t=$((t + $(sed 's/^.*) //' "/proc/$p/stat" | awk '{ print $12 + $13 }')))
    done
    echo "$t"
}
run_timed() { # case, command... : output in $work/last.out; sets last_ticks, last_wall_ns
    local c=$1 t0 t1 w0 w1
    shift
    t0=$(cpu_ticks "$c")
    w0=$(date +%s%N)
    "$@" >"$work/last.out" 2>&1 || {
        cat "$work/last.out" >&2
        return 1
    }
    w1=$(date +%s%N)
    t1=$(cpu_ticks "$c")
    last_ticks=$((t1 - t0))
    last_wall_ns=$((w1 - w0))
}
wrk_run() { # case, connections, extra wrk args... ; sets last_reqs, last_rps (+ run_timed's)
    local c=$1 conns=$2 errs
    shift 2
    run_timed "$c" "${on_load[@]}" wrk -t1 -c"$conns" -d"${DURATION}s" --timeout 10s "$@" "${url[$c]}"
    errs=$(sed -n 's/.*Socket errors: connect \([0-9]*\), read \([0-9]*\), write \([0-9]*\), timeout \([0-9]*\).*/\1 \2 \3 \4/p' "$work/last.out")
    if grep -q 'Non-2xx' "$work/last.out"; then
        echo "bench-proxy: $c: $(grep 'Non-2xx' "$work/last.out")" >&2
        return 1
    fi
    if [ -n "$errs" ]; then echo "  ($c, $*: socket errors connect/read/write/timeout: $errs)" >&2; fi
    last_reqs=$(sed -n 's/^ *\([0-9]*\) requests in .*/\1/p' "$work/last.out")
    last_rps=$(sed -n 's/^Requests\/sec: *\([0-9.]*\).*/\1/p' "$work/last.out")
}
record_cpu() { # case, metric, operations: proxy CPU µs per operation, and its CPU use (% of one core)
    [ -n "${proc[$1]:-}" ] || return 0
    record "$1" "$2_cpu" "$(awk -v t="$last_ticks" -v hz="$hz" -v n="$3" 'BEGIN { printf "%.3f\n", t * 1e6 / hz / n }')"
    record "$1" "$2_busy" "$(awk -v t="$last_ticks" -v hz="$hz" -v w="$last_wall_ns" 'BEGIN { printf "%.1f\n", 100 * t / hz / (w / 1e9) }')"
}
measure_latency() {
    wrk_run "$1" "$LAT_CONNS" --latency
    record "$1" p50 "$(to_us "$(awk '$1 == "50%" { print $2 }' "$work/last.out")")"
    record "$1" p99 "$(to_us "$(awk '$1 == "99%" { print $2 }' "$work/last.out")")"
}
measure_keepalive() {
    wrk_run "$1" "$KA_CONNS"
    record "$1" rps "$last_rps"
    record_cpu "$1" rps "$last_reqs"
}
measure_newconn() {
    wrk_run "$1" "$NC_CONNS" -H 'Connection: close'
    record "$1" cps "$last_rps"
    record_cpu "$1" cps "$last_reqs"
}
measure_bulk() {
    local size speed
    run_timed "$1" curl -sk --http1.1 -o /dev/null -w '%{size_download} %{speed_download}\n' "${big_url[$1]}"
    read -r size speed <"$work/last.out"
    if [ "${size%.*}" != "$bulk_bytes" ]; then
        echo "bench-proxy: $1: bulk download got $size bytes, expected $bulk_bytes" >&2
        return 1
    fi
    record "$1" mbs "$(awk -v s="$speed" 'BEGIN { printf "%.1f\n", s / 1e6 }')"
    record_cpu "$1" mbs "$(awk -v b="$bulk_bytes" 'BEGIN { print b / 1e6 }')"
}
metrics_of() { # the chain row is informative: latency and new connections only
    if [ "$1" = chain ]; then echo "latency newconn"; else echo "latency keepalive newconn bulk"; fi
}

say "warm-up (1 s keep-alive per case; the bulk object read once into the page cache)"
cat "$work/www/big" >/dev/null
for c in "${cases[@]}"; do
    DURATION=1 wrk_run "$c" "$KA_CONNS"
done

n=${#cases[@]}
for r in $(seq 1 "$REPS"); do
    say "round $r/$REPS (DURATION=${DURATION}s per wrk run)"
    for i in $(seq 0 $((n - 1))); do
        c=${cases[$(((i + r - 1) % n))]}
        for m in $(metrics_of "$c"); do
            "measure_$m" "$c"
        done
        echo "  $c done" >&2
    done
done

# --- report ------------------------------------------------------------------------------------
median() { # case, metric -> median or empty
    local f="$work/res/$1.$2"
    [ -s "$f" ] || return 0
    sort -g "$f" | awk '{ v[NR] = $1 } END { if (NR % 2) print v[(NR + 1) / 2]; else print (v[NR / 2] + v[NR / 2 + 1]) / 2 }'
}
fmt() { # value, decimals -> formatted or "-"
    if [ -z "$1" ]; then echo "-"; else awk -v v="$1" -v d="$2" 'BEGIN { printf "%.*f\n", d, v }'; fi
}
us() { # microseconds -> "123 µs" / "1.23 ms"
    if [ -z "$1" ]; then echo "-"; else awk -v v="$1" 'BEGIN { if (v < 1000) printf "%.0f µs\n", v; else printf "%.2f ms\n", v / 1000 }'; fi
}
declare -A med
for c in "${cases[@]}"; do
    for m in p50 p99 rps cps mbs rps_cpu rps_busy cps_cpu cps_busy mbs_cpu mbs_busy; do med[$c.$m]=$(median "$c" "$m"); done
done
added() { # case, p50|p99 -> proxied - direct in µs
    [ "$1" = direct ] && { echo "0"; return; }
    awk -v a="${med[$1.$2]}" -v b="${med[direct.$2]}" 'BEGIN { printf "%.1f\n", a - b }'
}
ratio() { # a, b -> a/b with 2 decimals, or empty
    if [ -z "$1" ] || [ -z "$2" ]; then return 0; fi
    awk -v a="$1" -v b="$2" 'BEGIN { if (b == 0) exit; printf "%.2f\n", a / b }'
}
verdict() { # ratio, op (ge|le), bound
    if [ -z "$1" ]; then echo "TODO (no figure for ours yet, or a peer's figure is noise: rerun on a quiet box)"; return; fi
    awk -v r="$1" -v op="$2" -v b="$3" 'BEGIN { ok = (op == "ge") ? (r >= b) : (r <= b); print ok ? "met" : "MISSED" }'
}

mkdir -p "$(dirname "$OUT")"
{
    echo "### Figures"
    echo
    echo "$(date -u +%Y-%m-%d), $(nproc) cores ($(sed -n 's/^model name[[:space:]]*: //p' /proc/cpuinfo | head -1)), load average $load_before before the runs, $(cut -d' ' -f1-3 /proc/loadavg) after."
    echo "$cpu_note. DURATION=${DURATION}s, REPS=$REPS (medians), latency at $LAT_CONNS connections,"
    echo "req/s at $KA_CONNS keep-alive connections, conn/s at $NC_CONNS connections (\`Connection: close\`),"
    echo "MB/s = one curl stream of $BULK_MIB MiB (10^6 B/s). RESUME=$RESUME."
    echo "$(stunnel4 -version 2>&1 | sed -n 's/^\(stunnel [0-9.]*\).*/\1/p' | head -1), $(haproxy -v | head -1 | cut -d' ' -f1-3), nginx $(nginx -v 2>&1 | sed 's/.*nginx\///'), $(wrk -v 2>&1 | head -1 | cut -d' ' -f1-2), $(openssl version | cut -d' ' -f1-2)."
    echo
    echo "| case | p50 | p99 | added p50 | added p99 | MB/s (1 stream) | conn/s | req/s (keep-alive) |"
    echo "| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: |"
    for c in direct stunnel4 haproxy plain attested chain; do
        if [ -z "${url[$c]:-}" ]; then
            case $c in
            plain) echo "| ours, plain (--cert/--key) | TODO | TODO | TODO | TODO | TODO | TODO | TODO |" ;;
            attested) echo "| ours, attested (RA-TLS cert, sim TEE + swtpm) | TODO | | | | | TODO | |" ;;
            chain) echo "| ours, client mode -> attested server (informative) | TODO | | | | | TODO | |" ;;
            esac
            continue
        fi
        if [ "$c" = direct ]; then a50="-"; a99="-"; else
            a50=$(us "$(added "$c" p50)")
            a99=$(us "$(added "$c" p99)")
        fi
        echo "| ${label[$c]} | $(us "${med[$c.p50]}") | $(us "${med[$c.p99]}") | $a50 | $a99 | $(fmt "${med[$c.mbs]}" 0) | $(fmt "${med[$c.cps]}" 0) | $(fmt "${med[$c.rps]}" 0) |"
    done
    echo
    echo "Proxy CPU per operation (user + system time of the proxy process, all threads, read from"
    echo "/proc around each run; median), and in parentheses how busy the proxy was during that run"
    echo "(100 % = its whole core). Below ~90 % the client, not the proxy, set the pace of the row above,"
    echo "and the per-operation cost is the fairer comparison (capacity = 10^6 / cost per core):"
    echo
    echo "| case | CPU per new connection | CPU per keep-alive request | CPU per MB (bulk) |"
    echo "| --- | ---: | ---: | ---: |"
    for c in stunnel4 haproxy plain attested chain; do
        [ -n "${url[$c]:-}" ] || { echo "| ours, $c | TODO | TODO | TODO |"; continue; }
        cell() { # metric
            if [ -z "${med[$c.$1_cpu]}" ]; then echo "-"; else
                echo "$(fmt "${med[$c.$1_cpu]}" 1) µs ($(fmt "${med[$c.$1_busy]}" 0) %)"
            fi
        }
        echo "| ${label[$c]} | $(cell cps) | $(cell rps) | $(cell mbs) |"
    done
    echo
    echo "TLS as negotiated by \`openssl s_client\` (the clients here are OpenSSL too):"
    echo
    for c in "${cases[@]}"; do echo "- ${label[$c]}: ${tls_note[$c]}"; done
    echo
    echo "### Against the targets (issue 6)"
    echo
    echo "| target | ratio (measured rates) | ratio (proxy CPU per operation: capacity) |"
    echo "| --- | --- | --- |"
    s50=$(added stunnel4 p50)
    s99=$(added stunnel4 p99)
    if [ -n "${url[plain]:-}" ]; then
        o50=$(added plain p50)
        o99=$(added plain p99)
    else
        o50=""
        o99=""
    fi
    if awk -v v="${s50:-0}" 'BEGIN { exit !(v <= 0) }'; then s50=""; fi # a negative "added" is noise
    if awk -v v="${s99:-0}" 'BEGIN { exit !(v <= 0) }'; then s99=""; fi
    r=$(ratio "$o50" "$s50")
    echo "| added latency p50 ≤ 1.0× stunnel4 ($(us "$s50")) | ${r:-TODO}: $(verdict "$r" le 1.0) | |"
    r=$(ratio "$o99" "$s99")
    echo "| added latency p99 ≤ 1.2× stunnel4 ($(us "$s99")) | ${r:-TODO}: $(verdict "$r" le 1.2) | |"
    target_row() { # text, metric, ours, peer, bound
        local r1 r2
        r1=$(ratio "${med[$3.$2]:-}" "${med[$4.$2]:-}")
        r2=$(ratio "${med[$4.$2_cpu]:-}" "${med[$3.$2_cpu]:-}") # cost ratio inverted: capacity ratio
        echo "| $1 | ${r1:-TODO}: $(verdict "$r1" ge "$5") | ${r2:-TODO}: $(verdict "$r2" ge "$5") |"
    }
    target_row "one-stream throughput ≥ 1.0× stunnel4" mbs plain stunnel4 1.0
    target_row "one-stream throughput ≥ 0.9× haproxy" mbs plain haproxy 0.9
    target_row "new connections/s ≥ 1.0× stunnel4" cps plain stunnel4 1.0
    target_row "keep-alive requests/s ≥ 1.0× stunnel4" rps plain stunnel4 1.0
    target_row "attested new connections/s (verdicts cached; wrk does not verify the evidence) ≥ 0.8× our plain mode" cps attested plain 0.8
    echo
    echo "Peers against each other (informative), haproxy / stunnel4, measured rates (capacity):" \
        "conn/s $(ratio "${med[haproxy.cps]}" "${med[stunnel4.cps]}")× ($(ratio "${med[stunnel4.cps_cpu]}" "${med[haproxy.cps_cpu]}")×)," \
        "req/s $(ratio "${med[haproxy.rps]}" "${med[stunnel4.rps]}")× ($(ratio "${med[stunnel4.rps_cpu]}" "${med[haproxy.rps_cpu]}")×)," \
        "MB/s $(ratio "${med[haproxy.mbs]}" "${med[stunnel4.mbs]}")× ($(ratio "${med[stunnel4.mbs_cpu]}" "${med[haproxy.mbs_cpu]}")×)."
} | tee "$OUT"
say "report written to $OUT ($((SECONDS - started)) s)"
if [ "$have_ours" = 0 ]; then
    loud "our rows were SKIPPED: $PROXY does not exist"
fi
