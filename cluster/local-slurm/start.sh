#!/usr/bin/env bash
# Start a real single-node Slurm cluster on this machine (Debian 12, as root; no systemd needed).
#
#   bash cluster/local-slurm/start.sh     # install if needed, configure, start; prints sinfo
#   bash cluster/local-slurm/stop.sh      # stop what start.sh started (--purge: also delete its state)
#
# It is what the tests in tests/launch/ and .ci/run submit to, and a way to try `dist-train launch`
# on a workstation with the real sbatch/squeue/sacct/scancel. Daemons: munged (authentication),
# MariaDB + slurmdbd (accounting: without it sacct fails and submitit sees every job state as
# UNKNOWN, so a cancelled job never reports back), slurmctld (the controller) and slurmd (the
# one compute node, with all of this machine's CPUs and a little less than its memory).
#
# Safe to run again: daemons already running (by the PIDs this script recorded) are kept; if the
# generated configuration changed, the running daemons are restarted with it.
#
# Settings (environment):
#   DIST_TRAIN_SLURM_DIR      state, logs, PID files       (default /tmp/dist-train-slurm)
#   DIST_TRAIN_SLURM_DB_PORT  private MariaDB's TCP port on 127.0.0.1   (default 3307)
#   DIST_TRAIN_SLURM_WAIT_S   bound on each wait for a daemon to come up (default 60)
set -euo pipefail
HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
# shellcheck source=common.sh
source "$HERE/common.sh"

fail() {
    say "ERROR: $*"
    local f
    for f in "$STATE_DIR"/munge/munged.log "$STATE_DIR"/log/*.log "$STATE_DIR"/log/*.err; do
        [ -s "$f" ] && { echo "--- tail of $f" >&2; tail -n 12 "$f" >&2; }
    done
    exit 1
}
[ "$(id -u)" = 0 ] || fail "run as root (the daemons and /etc/slurm need it)"

# ------------------------------------------------------------------------------------ packages
PACKAGES=(munge slurmctld slurmd slurm-client slurmdbd slurm-wlm-mysql-plugin mariadb-server mariadb-client)
missing=()
for p in "${PACKAGES[@]}"; do
    [ "$(dpkg-query -W -f='${db:Status-Status}' "$p" 2>/dev/null)" = installed ] || missing+=("$p")
done
if [ "${#missing[@]}" -gt 0 ]; then
    say "installing ${missing[*]}"
    # Without systemd the packages' scripts would start their daemons with the distribution's
    # configuration; a policy-rc.d that answers 101 ("action forbidden") stops that.
    own_policy=0
    if [ ! -e /usr/sbin/policy-rc.d ]; then
        printf '#!/bin/sh\nexit 101\n' >/usr/sbin/policy-rc.d && chmod 755 /usr/sbin/policy-rc.d
        own_policy=1
    fi
    mkdir -p "$STATE_DIR/log"
    apt_ok=1
    { apt-get update -q && DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends \
        "${missing[@]}"; } >"$STATE_DIR/log/apt.log" 2>&1 || apt_ok=0
    [ "$own_policy" = 1 ] && rm -f /usr/sbin/policy-rc.d
    [ "$apt_ok" = 1 ] || { tail -n 20 "$STATE_DIR/log/apt.log" >&2; fail "apt-get failed (log: $STATE_DIR/log/apt.log)"; }
fi

# ------------------------------------------------------------------------------------ this host
HOST="$(hostname -s)"
if ! getent hosts "$HOST" >/dev/null; then
    say "adding '127.0.0.1 $HOST' to /etc/hosts (slurmctld must resolve its own name)"
    echo "127.0.0.1 $HOST" >>/etc/hosts
fi
# The node's topology exactly as slurmd detects it, or slurmd re-registers the node differently.
topology="$(/usr/sbin/slurmd -C | head -n 1)"
field() { sed -n "s/.* $1=\([0-9]*\).*/\1/p" <<<"$topology"; }
CPUS="$(field CPUs)"
MEMORY_MB="$(field RealMemory)"
[ -n "$CPUS" ] && [ -n "$MEMORY_MB" ] || fail "cannot read the node's topology from 'slurmd -C': $topology"
MEMORY_MB=$((MEMORY_MB * 95 / 100))  # a little below the detected memory, or the node is drained

mkdir -p "$STATE_DIR"/{state,spool,log,run,pids,munge,mysql,mysqld}
chown munge:munge "$STATE_DIR/munge"
chmod 755 "$STATE_DIR/munge"  # munged refuses a socket directory others cannot enter
chown mysql:mysql "$STATE_DIR/mysql" "$STATE_DIR/mysqld"

# ------------------------------------------------------------------------------------ configuration
slurm_conf="$CONF_MARKER (single-node cluster; rewritten on every start)
ClusterName=local
SlurmctldHost=$HOST(127.0.0.1)
SlurmUser=root
SlurmdUser=root
AuthType=auth/munge
CredType=cred/munge
# cred_expire also sets how long a requeued job waits before it may start again (default 120 s;
# the credential only has to outlive the launch of a job step on this one node).
AuthInfo=socket=$MUNGE_SOCKET,cred_expire=10
# Accounting through slurmdbd: sacct is how submitit reads job states. AccountingStoragePass
# names the munge socket for connections to slurmdbd (AuthInfo is not used for those).
AccountingStorageType=accounting_storage/slurmdbd
AccountingStorageHost=127.0.0.1
AccountingStoragePass=$MUNGE_SOCKET
JobAcctGatherType=jobacct_gather/linux
JobCompType=jobcomp/none
# No cgroups: processes are tracked through /proc, tasks are not confined.
ProctrackType=proctrack/linuxproc
TaskPlugin=task/none
SwitchType=switch/none
MpiDefault=none
# Preempted jobs requeue themselves (scontrol requeue, as submitit does).
JobRequeue=1
ReturnToService=2
SchedulerType=sched/backfill
# Schedule a submitted job at once (about 1 s round trip instead of several).
SchedulerParameters=batch_sched_delay=0
SelectType=select/cons_tres
SelectTypeParameters=CR_CPU
KillWait=5
StateSaveLocation=$STATE_DIR/state
SlurmdSpoolDir=$STATE_DIR/spool
SlurmctldPidFile=$STATE_DIR/run/slurmctld.pid
SlurmdPidFile=$STATE_DIR/run/slurmd.pid
SlurmctldLogFile=$STATE_DIR/log/slurmctld.log
SlurmdLogFile=$STATE_DIR/log/slurmd.log
MailProg=/bin/true
NodeName=$HOST NodeAddr=127.0.0.1 $(sed -E 's/^NodeName=[^ ]+ //; s/ UpTime=.*//; s/RealMemory=[0-9]+/RealMemory='"$MEMORY_MB"'/' <<<"$topology") State=UNKNOWN
PartitionName=debug Nodes=ALL Default=YES MaxTime=INFINITE State=UP"

slurmdbd_conf="$CONF_MARKER
AuthType=auth/munge
AuthInfo=socket=$MUNGE_SOCKET
DbdHost=localhost
DbdAddr=127.0.0.1
SlurmUser=root
LogFile=$STATE_DIR/log/slurmdbd.log
PidFile=$STATE_DIR/run/slurmdbd.pid
StorageType=accounting_storage/mysql
StorageHost=127.0.0.1
StoragePort=$DB_PORT
StorageUser=slurm
StoragePass=dist-train-local
StorageLoc=slurm_acct_db"

config_changed=0
write_config() {  # PATH TEXT MODE: write only if different; keep a copy of a file we did not generate
    if [ -f "$1" ] && [ "$(cat "$1")" = "$2" ]; then return 0; fi
    if [ -f "$1" ] && ! head -n 1 "$1" | grep -qF "$CONF_MARKER"; then
        cp -p "$1" "$1.before-dist-train" && say "kept the existing $1 as $1.before-dist-train"
    fi
    printf '%s\n' "$2" >"$1" && chmod "$3" "$1"
    config_changed=1
}
mkdir -p "$CONF_DIR"
write_config "$CONF_DIR/slurm.conf" "$slurm_conf" 644
write_config "$CONF_DIR/slurmdbd.conf" "$slurmdbd_conf" 600
if [ "$config_changed" = 1 ]; then
    for name in slurmd slurmctld slurmdbd; do
        if recorded_pid "$name" >/dev/null; then
            say "the configuration changed: restarting the running daemons"
            bash "$HERE/stop.sh"
            break
        fi
    done
fi

# ------------------------------------------------------------------------------------ helpers
# record NAME PIDFILE: wait until the daemon wrote a live PID to its own pid file, then record it.
record() {
    local name="$1" pidfile="$2" pid deadline=$((SECONDS + WAIT_S))
    while [ "$SECONDS" -lt "$deadline" ]; do
        pid="$(tr -dc '0-9' 2>/dev/null <"$pidfile" || true)"
        if [ -n "$pid" ] && is_running "$name" "$pid"; then
            echo "$pid" >"$STATE_DIR/pids/$name.pid"
            return 0
        fi
        sleep 0.2
    done
    fail "$name did not start (no running PID in $pidfile after ${WAIT_S}s)"
}
wait_for() {  # DESCRIPTION COMMAND...: retry COMMAND until it succeeds, at most WAIT_S seconds
    local what="$1" deadline=$((SECONDS + WAIT_S))
    shift
    until "$@" >/dev/null 2>&1; do
        [ "$SECONDS" -lt "$deadline" ] || fail "gave up after ${WAIT_S}s waiting for $what"
        sleep 0.2
    done
}
port_open() { (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null; }

# ------------------------------------------------------------------------------------ munged
if ! recorded_pid munged >/dev/null; then
    if [ ! -s "$STATE_DIR/munge/munge.key" ]; then  # this cluster's own key, not the system's
        dd if=/dev/urandom of="$STATE_DIR/munge/munge.key" bs=1024 count=1 status=none
    fi
    chown munge:munge "$STATE_DIR/munge/munge.key" && chmod 600 "$STATE_DIR/munge/munge.key"
    setpriv --reuid=munge --regid=munge --init-groups /usr/sbin/munged \
        --key-file="$STATE_DIR/munge/munge.key" --socket="$MUNGE_SOCKET" \
        --pid-file="$STATE_DIR/munge/munged.pid" --log-file="$STATE_DIR/munge/munged.log" \
        --seed-file="$STATE_DIR/munge/munged.seed" || fail "munged did not start"
    record munged "$STATE_DIR/munge/munged.pid"
fi
wait_for "a munge round trip" bash -c "munge -n -S '$MUNGE_SOCKET' | unmunge -S '$MUNGE_SOCKET'"

# ------------------------------------------------------------------------------------ MariaDB
if ! recorded_pid mariadbd >/dev/null; then
    port_open "$DB_PORT" && fail "port $DB_PORT is taken; choose another with DIST_TRAIN_SLURM_DB_PORT"
    if [ ! -d "$STATE_DIR/mysql/mysql" ]; then
        mariadb-install-db --no-defaults --datadir="$STATE_DIR/mysql" --user=mysql --skip-test-db \
            --auth-root-authentication-method=socket >"$STATE_DIR/log/mariadb-install.log" 2>&1 \
            || fail "mariadb-install-db failed (log: $STATE_DIR/log/mariadb-install.log)"
    fi
    rm -f "$STATE_DIR/mysqld/mysqld.pid"
    setsid /usr/sbin/mariadbd --no-defaults --datadir="$STATE_DIR/mysql" --user=mysql \
        --socket="$DB_SOCKET" --pid-file="$STATE_DIR/mysqld/mysqld.pid" \
        --port="$DB_PORT" --bind-address=127.0.0.1 --log-error="$STATE_DIR/log/mariadbd.err" \
        --innodb-buffer-pool-size=64M --innodb-lock-wait-timeout=900 \
        </dev/null >>"$STATE_DIR/log/mariadbd.out" 2>&1 &
    record mariadbd "$STATE_DIR/mysqld/mysqld.pid"
fi
wait_for "MariaDB on $DB_SOCKET" mariadb --no-defaults -S "$DB_SOCKET" -u root -e "SELECT 1"
for host in 127.0.0.1 localhost; do
    mariadb --no-defaults -S "$DB_SOCKET" -u root -e "
        CREATE USER IF NOT EXISTS 'slurm'@'$host' IDENTIFIED BY 'dist-train-local';
        GRANT ALL ON slurm_acct_db.* TO 'slurm'@'$host';" || fail "cannot create the database user for slurmdbd"
done

# ------------------------------------------------------------------------------------ Slurm daemons
start_daemon() {  # NAME: start /usr/sbin/NAME (it daemonizes itself) and record its PID
    if ! recorded_pid "$1" >/dev/null; then
        rm -f "$STATE_DIR/run/$1.pid"
        "/usr/sbin/$1" || fail "$1 did not start"
        record "$1" "$STATE_DIR/run/$1.pid"
    fi
}
start_daemon slurmdbd
wait_for "slurmdbd on port 6819" port_open 6819
start_daemon slurmctld
start_daemon slurmd

node_idle() {
    case "$(sinfo -h -n "$HOST" -o %t 2>/dev/null | head -n 1)" in
        idle | mix | alloc | comp) return 0 ;;
        drain | drng | down) scontrol update nodename="$HOST" state=resume >/dev/null 2>&1; return 1 ;;
        *) return 1 ;;
    esac
}
wait_for "node $HOST to be idle" node_idle
wait_for "the cluster to be registered in slurmdbd" bash -c "sacctmgr -n -P list cluster format=cluster | grep -qx local"
wait_for "sacct to answer" sacct -n -X -S now

sinfo
pids=""
for name in munged mariadbd slurmdbd slurmctld slurmd; do pids+=" $name=$(recorded_pid "$name")"; done
say "running:$pids (state: $STATE_DIR)"
