#!/usr/bin/env bash
# A single-node Slurm cluster on this machine, private to one folder: its own munge socket,
# configuration, state, logs and ports, so it needs no system Slurm and disturbs none. For
# trying `--executor slurm` before a real cluster, and for the tests. Needs root (slurmd runs
# jobs as their users) and the packages scripts/setup.sh installs (slurmctld, slurmd,
# slurm-client, munge).
#
#   scripts/slurm-local.sh start DIR    start it; prints the line to point Slurm's commands at it:
#                                       export SLURM_CONF=DIR/slurm.conf
#   scripts/slurm-local.sh stop DIR     stop its daemons (the folder stays; remove it yourself)
#   scripts/slurm-local.sh status DIR   sinfo of it
#
# SLURM_LOCAL_CPUS=N gives the node N CPUs instead of this machine's count (more than it has:
# short jobs run side by side, as the tests want).
set -euo pipefail

usage() { echo "usage: $0 start|stop|status DIR" >&2; exit 2; }
[ $# -eq 2 ] || usage
command=$1
dir=$(realpath -m "$2")
conf="$dir/slurm.conf"

free_port() { python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'; }

stop_pid() {
    local file=$1
    [ -f "$file" ] || return 0
    local pid
    pid=$(cat "$file")
    if kill "$pid" 2>/dev/null; then
        for _ in $(seq 100); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
        kill -9 "$pid" 2>/dev/null || true
    fi
    rm -f "$file"
}

start() {
    if [ "$(id -u)" -ne 0 ]; then
        echo "error: a local Slurm needs root (slurmd starts jobs as their users); run it with sudo" >&2
        exit 1
    fi
    for program in munged slurmctld slurmd sbatch squeue scontrol; do
        command -v "$program" >/dev/null || {
            echo "error: $program is not installed; scripts/setup.sh installs slurmctld, slurmd, slurm-client and munge" >&2
            exit 1
        }
    done
    if [ -f "$dir/slurmctld.pid" ] && kill -0 "$(cat "$dir/slurmctld.pid")" 2>/dev/null; then
        echo "export SLURM_CONF=$conf"
        return
    fi
    mkdir -p "$dir/state" "$dir/spool" "$dir/log" "$dir/munge"
    # munged insists on a socket folder it owns that everyone may enter.
    chown munge:munge "$dir/munge"
    chmod 0755 "$dir/munge"
    if ! [ -S "$dir/munge/munge.socket" ] || ! munge -S "$dir/munge/munge.socket" -n >/dev/null 2>&1; then
        su -s /bin/sh munge -c "munged --socket=$dir/munge/munge.socket --pid-file=$dir/munge/munged.pid \
            --log-file=$dir/munge/munged.log --seed-file=$dir/munge/munged.seed"
    fi
    local cpus memory
    cpus=${SLURM_LOCAL_CPUS:-$(nproc)}
    # Below the machine's memory, or the node is drained for having less than it claims.
    memory=$(awk '/MemTotal/ { printf "%d", $2 / 1024 * 0.8 }' /proc/meminfo)
    cat > "$conf" <<CONF
ClusterName=local
SlurmctldHost=localhost
SlurmctldPort=$(free_port)
SlurmdPort=$(free_port)
AuthType=auth/munge
CredType=cred/munge
AuthInfo=socket=$dir/munge/munge.socket
SlurmUser=root
SlurmdUser=root
StateSaveLocation=$dir/state
SlurmdSpoolDir=$dir/spool
SlurmctldPidFile=$dir/slurmctld.pid
SlurmdPidFile=$dir/slurmd.pid
SlurmctldLogFile=$dir/log/slurmctld.log
SlurmdLogFile=$dir/log/slurmd.log
ProctrackType=proctrack/linuxproc
TaskPlugin=task/none
JobAcctGatherType=jobacct_gather/none
AccountingStorageType=accounting_storage/none
SelectType=select/cons_tres
SelectTypeParameters=CR_Core
SchedulerParameters=batch_sched_delay=0
MailProg=/bin/true
ReturnToService=2
# The node is as configured here, whatever slurmd finds (SLURM_LOCAL_CPUS may exceed it).
SlurmdParameters=config_overrides
# Finished jobs stay visible to squeue for an hour (the host reads outcomes from its store).
MinJobAge=3600
# Seconds between a job's SIGTERM (time limit, scancel) and SIGKILL.
KillWait=10
NodeName=localhost NodeAddr=127.0.0.1 CPUs=$cpus RealMemory=$memory State=UNKNOWN
PartitionName=debug Nodes=localhost Default=YES MaxTime=INFINITE State=UP
CONF
    export SLURM_CONF="$conf"
    slurmctld
    slurmd -N localhost
    for _ in $(seq 150); do
        if sinfo -h -o '%t' 2>/dev/null | grep -qE '^(idle|mix|alloc)'; then
            echo "export SLURM_CONF=$conf"
            return
        fi
        # A node drained by an earlier run of this folder comes back.
        scontrol update nodename=localhost state=resume >/dev/null 2>&1 || true
        sleep 0.2
    done
    echo "error: the local Slurm did not come up within 30 s; see $dir/log/" >&2
    tail -n 20 "$dir/log/slurmctld.log" "$dir/log/slurmd.log" >&2 || true
    exit 1
}

case "$command" in
    start) start ;;
    stop)
        # Jobs still there are cancelled first: a job's slurmstepd outlives the daemons.
        if [ -f "$dir/slurmctld.pid" ] && kill -0 "$(cat "$dir/slurmctld.pid")" 2>/dev/null; then
            jobs=$(SLURM_CONF="$conf" squeue -h -o %A 2>/dev/null | sort -u || true)
            if [ -n "$jobs" ]; then
                # shellcheck disable=SC2086
                SLURM_CONF="$conf" scancel $jobs 2>/dev/null || true
                for _ in $(seq 150); do
                    [ -z "$(SLURM_CONF="$conf" squeue -h -t running,completing -o %A 2>/dev/null)" ] && break
                    sleep 0.1
                done
            fi
        fi
        stop_pid "$dir/slurmd.pid"
        stop_pid "$dir/slurmctld.pid"
        if [ -S "$dir/munge/munge.socket" ]; then
            munged --stop --socket="$dir/munge/munge.socket" >/dev/null 2>&1 || stop_pid "$dir/munge/munged.pid"
        fi
        ;;
    status) SLURM_CONF="$conf" sinfo ;;
    *) usage ;;
esac
