# A one-node SLURM cluster on localhost for the tests (sourced by tests/slurm/test_slurm.sh):
# munged on a private socket, slurmctld and slurmd in the foreground, in the background, with a
# generated slurm.conf, state and spool directories under one temporary folder. Needs root (or
# the packages installed and a munge key readable by the munge user). cluster_stop stops exactly
# the daemons cluster_start started, by PID.

# Installs slurm-wlm and munge with apt-get where they are missing (root only).
cluster_install() {
    command -v slurmctld >/dev/null && command -v munged >/dev/null && return 0
    [ "$(id -u)" -eq 0 ] || { echo "slurm-wlm/munge missing and not root: cannot install"; return 1; }
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends \
        slurm-wlm munge >/dev/null || { apt-get update -qq && \
        DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends \
        slurm-wlm munge >/dev/null; }
}

# A free TCP port on 127.0.0.1.
free_port() {
    python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'
}

# cluster_start DIR: starts the cluster with everything under DIR; exports SLURM_CONF.
# Sets CLUSTER_PIDS (munged, slurmctld, slurmd).
cluster_start() {
    local d=$1 host cpus mem
    CLUSTER_PIDS=""
    host=$(hostname -s)
    cpus=$(nproc)
    mem=$(( $(awk '/MemTotal/ {print $2}' /proc/meminfo) / 1024 - 1024 ))
    mkdir -p "$d/munge" "$d/state" "$d/spool" "$d/log"
    # munge: its own socket, pid and seed files, owned by the munge user
    [ -s /etc/munge/munge.key ] || { /usr/sbin/mungekey --create >/dev/null 2>&1 || \
        dd if=/dev/urandom of=/etc/munge/munge.key bs=1024 count=1 2>/dev/null; \
        chown munge: /etc/munge/munge.key; chmod 400 /etc/munge/munge.key; }
    chown munge: "$d/munge"; chmod 700 "$d/munge"
    chmod 755 "$d"
    # setpriv execs munged: $! is the daemon itself, and this shell reaps it
    setpriv --reuid=munge --regid=munge --init-groups /usr/sbin/munged -F --force \
        --socket="$d/munge/munge.socket" --pid-file="$d/munge/munged.pid" \
        --seed-file="$d/munge/munged.seed" --log-file="$d/munge/munged.log" \
        >"$d/log/munged.out" 2>&1 &
    CLUSTER_PIDS="$!"
    local i
    for i in $(seq 50); do [ -S "$d/munge/munge.socket" ] && break; sleep 0.1; done
    munge -S "$d/munge/munge.socket" -n | unmunge -S "$d/munge/munge.socket" >/dev/null ||
        { echo "munged does not answer"; return 1; }
    cat > "$d/slurm.conf" <<CONF
ClusterName=cptest
SlurmctldHost=$host(127.0.0.1)
SlurmctldPort=$(free_port)
SlurmdPort=$(free_port)
SlurmUser=root
AuthType=auth/munge
CredType=cred/munge
AuthInfo=socket=$d/munge/munge.socket,cred_expire=10
ProctrackType=proctrack/linuxproc
TaskPlugin=task/none
SelectType=select/cons_tres
SelectTypeParameters=CR_Core
JobAcctGatherType=jobacct_gather/none
AccountingStorageType=accounting_storage/none
MpiDefault=pmix
StateSaveLocation=$d/state
SlurmdSpoolDir=$d/spool
SlurmctldPidFile=$d/slurmctld.pid
SlurmdPidFile=$d/slurmd.pid
SlurmctldLogFile=$d/log/slurmctld.log
SlurmdLogFile=$d/log/slurmd.log
ReturnToService=2
OverTimeLimit=0
KillWait=5
MinJobAge=300
SchedulerParameters=sched_interval=2
MailProg=/bin/true
NodeName=$host NodeAddr=127.0.0.1 CPUs=$cpus RealMemory=$mem State=UNKNOWN
PartitionName=test Nodes=$host Default=YES MaxTime=INFINITE State=UP
CONF
    # PMIx's per-step folders under the cluster's folder, not /tmp: job ids restart at 1 with
    # every cluster, and a folder left in /tmp by a killed earlier cluster fails that step's launch
    mkdir -p "$d/pmix"
    echo "PMIxCliTmpDirBase=$d/pmix" > "$d/mpi.conf"
    export SLURM_CONF=$d/slurm.conf
    /usr/sbin/slurmctld -D -i -f "$SLURM_CONF" >"$d/log/slurmctld.out" 2>&1 &
    CLUSTER_PIDS="$CLUSTER_PIDS $!"
    /usr/sbin/slurmd -D -N "$host" -f "$SLURM_CONF" >"$d/log/slurmd.out" 2>&1 &
    CLUSTER_PIDS="$CLUSTER_PIDS $!"
    for i in $(seq 60); do
        sinfo -h -o %t 2>/dev/null | grep -q idle && return 0
        sleep 0.5
    done
    echo "the node did not come up:"; sinfo 2>&1; tail -5 "$d/log/slurmctld.log" "$d/log/slurmd.log"
    return 1
}

# cluster_stop DIR: cancels the jobs left, stops the daemons of cluster_start (slurmd,
# slurmctld, then munged) and waits for them; a slurmstepd of this cluster still alive after that
# (one that holds a file under DIR open) is killed by PID.
cluster_stop() {
    local d=$1 pid i
    local jobs
    jobs=$(squeue -h -o %i 2>/dev/null)
    if [ -n "$jobs" ]; then
        scancel --quiet $jobs 2>/dev/null
        for i in $(seq 40); do [ -z "$(squeue -h -o %i 2>/dev/null)" ] && break; sleep 0.5; done
    fi
    for pid in $(echo "$CLUSTER_PIDS" | tr ' ' '\n' | tac); do
        kill -TERM "$pid" 2>/dev/null
        for i in $(seq 50); do kill -0 "$pid" 2>/dev/null || break; sleep 0.2; done
        kill -KILL "$pid" 2>/dev/null
        wait "$pid" 2>/dev/null
    done
    CLUSTER_PIDS=""
    for pid in $(pgrep -x slurmstepd); do
        ls -l "/proc/$pid/fd" 2>/dev/null | grep -q -- "-> $d/" && kill -KILL "$pid"
    done
    return 0
}
