#!/usr/bin/env bash
# Stop the local cluster that start.sh started: only the PIDs it recorded under
# $DIST_TRAIN_SLURM_DIR/pids, never processes found by name. Jobs still queued or running are
# cancelled first, while the controller can still clean them up.
#
#   bash cluster/local-slurm/stop.sh            # stop the daemons; keep state, logs, database
#   bash cluster/local-slurm/stop.sh --purge    # also delete them and the generated /etc/slurm files
#
# Exits 0 when nothing recorded is left running (also when nothing was running).
set -uo pipefail
HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
# shellcheck source=common.sh
source "$HERE/common.sh"
STOP_WAIT_S="${DIST_TRAIN_SLURM_STOP_WAIT_S:-30}"

if recorded_pid slurmctld >/dev/null && recorded_pid slurmd >/dev/null; then
    jobs="$(squeue -h -o %A 2>/dev/null | sort -u | tr '\n' ' ')"
    if [ -n "${jobs// /}" ]; then
        say "cancelling jobs $jobs"
        # shellcheck disable=SC2086
        scancel $jobs 2>/dev/null
        deadline=$((SECONDS + STOP_WAIT_S))
        while [ -n "$(squeue -h -o %A 2>/dev/null)" ] && [ "$SECONDS" -lt "$deadline" ]; do sleep 0.5; done
    fi
fi

status=0
for name in "${DAEMONS_STOP_ORDER[@]}"; do
    file="$STATE_DIR/pids/$name.pid"
    [ -f "$file" ] || continue
    if pid="$(recorded_pid "$name")"; then
        kill -TERM "$pid" 2>/dev/null
        deadline=$((SECONDS + STOP_WAIT_S))
        while is_running "$name" "$pid" && [ "$SECONDS" -lt "$deadline" ]; do sleep 0.1; done
        if is_running "$name" "$pid"; then
            say "$name ($pid) still runs ${STOP_WAIT_S}s after SIGTERM: sending SIGKILL"
            kill -KILL "$pid" 2>/dev/null
            sleep 1
        fi
        if is_running "$name" "$pid"; then
            say "could not stop $name ($pid)"
            status=1
            continue
        fi
        say "stopped $name ($pid)"
    fi
    rm -f "$file"
done

if [ "${1:-}" = "--purge" ]; then
    rm -rf "${STATE_DIR:?}"/{state,spool,log,run,pids,munge,mysql,mysqld}
    for conf in "$CONF_DIR/slurm.conf" "$CONF_DIR/slurmdbd.conf"; do
        [ -f "$conf" ] && head -n 1 "$conf" | grep -qF "$CONF_MARKER" && rm -f "$conf"
    done
    say "deleted the cluster's state under $STATE_DIR"
fi
exit "$status"
