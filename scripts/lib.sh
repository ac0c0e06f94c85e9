# Shell helpers shared by scripts/demo.sh, scripts/guide-test.sh and scripts/packages.sh
# (sourced, not run). The caller has an array `pids` (processes to kill at exit), a scratch
# directory `work`, and `set -euo pipefail`.

# The EXIT trap: kill the processes in pids, wait for them, remove $work.
cleanup() {
    for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done
    wait 2>/dev/null || true
    rm -rf "$work"
}

free_port() { # an even port whose successor is free too, below the ephemeral range (32768+)
    local p
    for _ in $(seq 1 50); do
        p=$(( (RANDOM % 6000) * 2 + 20000 ))
        if ! (exec 3<>/dev/tcp/127.0.0.1/$p) 2>/dev/null && ! (exec 3<>/dev/tcp/127.0.0.1/$((p + 1))) 2>/dev/null; then
            echo "$p"; return
        fi
    done
    echo "no free port" >&2; return 1
}

wait_port() { # port, what
    for _ in $(seq 1 300); do
        (exec 3<>/dev/tcp/127.0.0.1/"$1") 2>/dev/null && return 0
        sleep 0.1
    done
    echo "$2 did not start" >&2; return 1
}

# start_swtpm DIR: a manufactured software TPM (EK created) with its state in DIR, listening on
# loopback; sets tcti (the TCTI string) and adds swtpm to pids.
start_swtpm() {
    local dir=$1 attempt up swtpm_pid tpm_port
    mkdir -p "$dir"
    swtpm_setup --tpm2 --pcr-banks sha1,sha256 --tpmstate "$dir" --createek >/dev/null
    # A port taken between the check and swtpm's bind: try other ones.
    for attempt in 1 2 3 4 5; do
        tpm_port=$(free_port)
        swtpm socket --tpm2 --server type=tcp,port="$tpm_port",bindaddr=127.0.0.1 \
            --ctrl type=tcp,port=$((tpm_port + 1)),bindaddr=127.0.0.1 \
            --tpmstate dir="$dir" --flags not-need-init,startup-clear &
        swtpm_pid=$!
        up=0
        for _ in $(seq 1 100); do
            kill -0 "$swtpm_pid" 2>/dev/null || break # bind failed: it exited at once
            if (exec 3<>/dev/tcp/127.0.0.1/"$tpm_port") 2>/dev/null; then up=1; break; fi
            sleep 0.1
        done
        if [ "$up" = 1 ]; then
            pids+=("$swtpm_pid")
            tcti="swtpm:host=127.0.0.1,port=$tpm_port"
            return 0
        fi
        kill "$swtpm_pid" 2>/dev/null || true
    done
    echo "swtpm did not start" >&2
    return 1
}

# start_sim_agent AGENT_BIN: cosmian_vm_agent with the simulated TEE on loopback, on the swtpm of
# start_swtpm ($tcti), the IMA log $work/ima.log and event log $work/eventlog.bin, its data in
# $work/data, snapshotting $work/app; waits until it listens. Sets agent_port; logs to
# $work/agent.log; adds the agent to pids.
start_sim_agent() {
    local agent=$1
    agent_port=$(free_port)
    mkdir -p "$work/data"
    cat > "$work/agent.toml" <<TOML
[agent]
host = "127.0.0.1"
port = $agent_port
ssl_certificate = "cert.pem"
ssl_private_key = "key.pem"
tpm_device = "$tcti"
tee = "sim"
ima_log = "$work/ima.log"
event_log = "$work/eventlog.bin"
data_dir = "$work/data"
snapshot_roots = ["$work/app"]

[app]
service_type = "standalone"
service_name = "my_app"
app_storage = "app"
command = ["sleep", "3600"]
TOML
    "$agent" --config "$work/agent.toml" > "$work/agent.log" 2>&1 &
    pids+=($!)
    wait_port "$agent_port" cosmian_vm_agent || { cat "$work/agent.log"; return 1; }
}
