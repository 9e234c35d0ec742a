#!/usr/bin/env bash
# scripts/slurm/ on a real single-node Slurm that this script starts itself (as root): munged,
# slurmctld and slurmd on localhost, from Debian's slurm-wlm and munge (installed if missing),
# with their config and state in a temp folder. A small grid runs unsharded with rnnsweep, then
# through scripts/slurm/submit.sh as a 3-task array on the CPU backend; mid-run, one task is
# preempted with `scontrol requeue` and another gets the time-limit warning (USR1), after which it
# requeues itself. The merged tables must equal the unsharded run's, byte for byte.
# If Slurm cannot start, the test fails; it never skips. Every daemon and job it started is
# stopped on exit, whatever happens. About 1-2 minutes on 2 cores.
#
#   tests/slurm/run.sh     exit 0: all passed, 1: a failure (the daemons' logs are printed)
#
#   RNNSWEEP=PATH   binary under test (default: build/rnnsweep)
#   KEEP_TMP=1      keep the temp folder (config, logs, results) instead of removing it
set -euo pipefail
root=$(cd "$(dirname "$0")/../.." && pwd)
RNNSWEEP=$(realpath "${RNNSWEEP:-$root/build/rnnsweep}")
t0=$SECONDS
say() { echo "[slurm-test $((SECONDS - t0))s] $*"; }
die() {
  echo "[slurm-test $((SECONDS - t0))s] FAIL: $*" >&2
  exit 1
}
[[ $(id -u) == 0 ]] || die "must run as root (it starts slurmd and munged)"
[[ -x $RNNSWEEP ]] || die "no rnnsweep binary at $RNNSWEEP (set RNNSWEEP or build first)"

if ! command -v slurmctld >/dev/null || ! command -v slurmd >/dev/null ||
  ! command -v sbatch >/dev/null || ! command -v munged >/dev/null; then
  say "installing slurm-wlm and munge"
  { apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq \
    --no-install-recommends slurm-wlm munge; } >/dev/null || die "cannot install slurm-wlm, munge"
fi

# Everything of this run lives in $T; every process started from here on (daemons, the jobs'
# slurmstepd and their processes) carries RNNSWEEP_SLURM_TEST=$T, which is how cleanup finds them.
T=$(mktemp -d /tmp/rnnsweep-slurm.XXXXXX)
chmod 755 "$T"
export RNNSWEEP_SLURM_TEST=$T SLURM_CONF=$T/slurm.conf
daemons=() # "name:pid", stopped in reverse order
failed=0

ours() { # pids of processes carrying our marker (but this shell)
  local p
  for p in /proc/[0-9]*; do
    [[ ${p#/proc/} == "$$" || ${p#/proc/} == "$BASHPID" ]] && continue
    grep -qzxF "RNNSWEEP_SLURM_TEST=$T" "$p/environ" 2>/dev/null && echo "${p#/proc/}"
  done
  return 0
}
running() { [[ -r /proc/$1/status ]] && ! grep -q '^State:.*zombie' "/proc/$1/status" 2>/dev/null; }
stop() { # stop PID...: TERM, then KILL what is left after 5 s
  local p i left
  (($#)) || return 0
  kill -TERM "$@" 2>/dev/null
  for ((i = 0; i < 50; i++)); do
    left=0
    for p in "$@"; do running "$p" && left=1; done
    ((left)) || return 0
    sleep 0.1
  done
  kill -KILL "$@" 2>/dev/null
}
ctld_up() { [[ ${daemons[1]:-} == slurmctld:* ]] && running "${daemons[1]#*:}"; }
cleanup() {
  local rc=$? d i pids
  set +e
  trap - EXIT ERR
  trap '' INT TERM HUP PIPE
  if ((rc != 0 || failed != 0)); then
    for f in "$T"/slurmctld.log "$T"/slurmd.log "$T"/munged.log "$T"/out/logs/*.out "$T"/unsharded.log; do
      [[ -s $f ]] && { echo "----- ${f#"$T"/} (last 25 lines)"; tail -n 25 "$f"; }
    done
    if ctld_up; then
      echo "----- sinfo, squeue"
      timeout 5 sinfo -N -o '%N %T %E'
      timeout 5 squeue -o '%i %T %r'
    fi
  fi
  if ctld_up; then # cancel the jobs, give them 10 s to end
    timeout 5 scancel --quiet --user=root 2>/dev/null
    for ((i = SECONDS + 10; SECONDS < i; )); do
      [[ -z $(timeout 2 squeue -h 2>/dev/null) ]] && break
      sleep 0.2
    done
  fi
  mapfile -t pids < <(ours)
  stop "${pids[@]}" # jobs and their slurmstepd, the unsharded run
  for ((i = ${#daemons[@]} - 1; i >= 0; i--)); do
    d=${daemons[i]}
    stop "${d#*:}"
  done
  mapfile -t pids < <(ours)
  stop "${pids[@]}" # anything left
  if [[ ${KEEP_TMP:-0} == 1 ]]; then echo "kept $T"; else rm -rf "$T"; fi
  say "done in $((SECONDS - t0)) s"
  exit "$rc"
}
trap cleanup EXIT
trap 'die "interrupted"' INT TERM HUP PIPE
trap 'die "line $LINENO: $BASH_COMMAND"' ERR

alive() { running "${1#*:}" || die "${1%%:*} exited; see its log above"; }
wait_for() { # wait_for SECONDS WHAT COMMAND...: until COMMAND succeeds, every daemon alive
  local until=$((SECONDS + $1)) what=$2 d
  shift 2
  until "$@" 2>/dev/null; do
    for d in "${daemons[@]}"; do alive "$d"; done
    ((SECONDS < until)) || die "timed out waiting for $what"
    sleep 0.25
  done
}

# ---- the grid: 32 networks, each shard ~15 s on one core
cat >"$T/grid.toml" <<'EOF'
tasks = ["romo", "2af"]
rules = ["bptt", "eprop"]
gains = [0.5, 1.5]
lrs = [1e-3]
seeds = [0, 1]
floss = [false, true]
hidden = 32
batch = 16
iters = 8000
log_every = 20
checkpoint_every = 500
le_steps = 60
le_warmup = 20
le_batch = 2
floss_iters = 4
floss_k = 8
floss_steps = 20
floss_warmup = 10
EOF
# The unsharded reference runs while Slurm starts.
"$RNNSWEEP" run "$T/grid.toml" --out "$T/unsharded" --backend cpu --quiet --threads "$(nproc)" \
  >"$T/unsharded.log" 2>&1 &
ref_pid=$!

# ---- Slurm: munged, slurmctld, slurmd on free ports, no cgroups, no accounting
port_free() { ! (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null; }
for ((i = 0; i < 100; i++)); do
  port=$((20000 + RANDOM % 20000))
  port_free "$port" && port_free $((port + 1)) && break
done
mem=$(slurmd -C 2>/dev/null | sed -n 's/.*RealMemory=\([0-9]*\).*/\1/p') || true
mkdir -p "$T/ctld" "$T/spool" "$T/munge"
cat >"$SLURM_CONF" <<EOF
ClusterName=rnnsweep-test
SlurmctldHost=localhost
SlurmctldPort=$port
SlurmdPort=$((port + 1))
SlurmUser=root
SlurmdUser=root
AuthType=auth/munge
CredType=cred/munge
# cred_expire: also how long a requeued job waits before it may start again (default 120 s)
AuthInfo=socket=$T/munge/munge.socket,cred_expire=10
StateSaveLocation=$T/ctld
SlurmdSpoolDir=$T/spool
SlurmctldPidFile=$T/slurmctld.pid
SlurmdPidFile=$T/slurmd.pid
ProctrackType=proctrack/linuxproc
TaskPlugin=task/none
JobAcctGatherType=jobacct_gather/none
AccountingStorageType=accounting_storage/none
JobCompType=jobcomp/none
SelectType=select/cons_tres
SelectTypeParameters=CR_CPU
SchedulerType=sched/backfill
SchedulerParameters=sched_interval=2,bf_interval=2
MpiDefault=none
ReturnToService=2
JobRequeue=1
KillWait=10
MinJobAge=600
MailProg=/bin/true
NodeName=localhost NodeAddr=127.0.0.1 CPUs=$(nproc) RealMemory=${mem:-1000} State=UNKNOWN
PartitionName=test Nodes=localhost Default=YES MaxTime=INFINITE State=UP
EOF

say "starting munged, slurmctld, slurmd (ports $port, $((port + 1)); $T)"
dd if=/dev/urandom of="$T/munge.key" bs=1024 count=1 status=none
chmod 400 "$T/munge.key"
munged -F --socket="$T/munge/munge.socket" --key-file="$T/munge.key" \
  --pid-file="$T/munge/munged.pid" --log-file="$T/munged.log" --seed-file="$T/munge/seed" \
  >>"$T/munged.log" 2>&1 &
daemons+=("munged:$!")
wait_for 10 "munged" bash -c "munge -n -S '$T/munge/munge.socket' | unmunge -S '$T/munge/munge.socket' >/dev/null"
slurmctld -D -f "$SLURM_CONF" >>"$T/slurmctld.log" 2>&1 &
daemons+=("slurmctld:$!")
wait_for 20 "slurmctld" bash -c "scontrol ping | grep -q UP"
slurmd -D -N localhost -f "$SLURM_CONF" >>"$T/slurmd.log" 2>&1 &
daemons+=("slurmd:$!")
node_state() { sinfo -h -N -n localhost -o %T 2>/dev/null; }
node_idle() { [[ $(node_state) == idle ]]; }
wait_for 30 "the node to be idle" node_idle
say "Slurm is up: $(sinfo -h -N -o '%N %T cpus=%c mem=%m')"

say "unsharded reference run"
wait "$ref_pid" || die "the unsharded run failed (exit $?)"

# ---- the sweep as a 3-task array and its merge
out=$T/out
read -r array merge < <(RNNSWEEP=$RNNSWEEP RNNSWEEP_BACKEND=cpu RNNSWEEP_PROGRESS_EVERY=1 CPUS=1 \
  "$root/scripts/slurm/submit.sh" "$T/grid.toml" "$out" 3) || die "submit.sh failed"
[[ $array =~ ^[0-9]+$ && $merge =~ ^[0-9]+$ ]] || die "submit.sh printed '$array $merge'"
say "submitted array $array, merge $merge"

# Interrupt tasks 0 and 1 once both run and have something to lose (a checkpoint or a finished
# network), a few seconds in: task 0 is preempted (`scontrol requeue`: TERM, back to the queue),
# task 1 gets the time-limit warning (USR1 to the batch shell, as --signal=B:USR1@120 would send),
# after which sweep.sbatch requeues it itself.
progress() { # progress TASK
  [[ $(squeue -h -j "${array}_$1" -t R -o %T) == RUNNING && -f $out/shard-$1/manifest.json ]] &&
    { [[ -s $out/shard-$1/results.jsonl ]] || compgen -G "$out/shard-$1/checkpoints/*" >/dev/null; }
}
wait_for 60 "tasks 0 and 1 to run and make progress" bash -c "$(declare -f progress); array=$array out=$out; progress 0 && progress 1"
sleep 3
{ progress 0 && progress 1; } || die "task 0 or 1 ended before it could be interrupted (make the grid bigger)"
say "requeueing ${array}_0 (has: $(ls -m "$out/shard-0")), USR1 to ${array}_1"
scontrol requeue "${array}_0" || die "scontrol requeue ${array}_0 failed"
scancel --batch --signal=USR1 "${array}_1" || die "scancel --batch --signal=USR1 ${array}_1 failed"

all_done() { [[ -z $(squeue -h -j "$array,$merge" -o %i) ]]; }
wait_for $((170 - (SECONDS - t0))) "the jobs to finish" all_done
say "all jobs finished"

# ---- checks
passed=0
check() { # check NAME COMMAND...
  if "${@:2}"; then
    echo "PASS $1"
    passed=$((passed + 1))
  else
    echo "FAIL $1"
    failed=$((failed + 1))
  fi
}
job() { scontrol -o show job "$1" 2>/dev/null; }
requeued_and_resumed() { # TASK: interrupted (rnnsweep exit 3), requeued once, resumed
  job "${array}_$1" | grep -q 'Restarts=1 ' && grep -q 'rnnsweep exited with 3' "$out/logs/shard-$1.out" &&
    grep -q 'run --resume' "$out/logs/shard-$1.out"
}
completed() { job "$1" | grep -q 'JobState=COMPLETED .*ExitCode=0:0'; }
check "task 0 (scontrol requeue) was interrupted, requeued and resumed" requeued_and_resumed 0
check "task 1 (USR1) was interrupted, requeued itself and resumed" requeued_and_resumed 1
for i in 0 1 2; do check "task $i completed" completed "${array}_$i"; done
check "merge job completed" completed "$merge"
# the tasks' logs show progress as plain lines (stderr is a file: no carriage returns)
progress_in_log() { grep -Eq '^rnnsweep: +[0-9.]+% \(' "$out/logs/shard-2.out" && ! grep -q $'\r' "$out/logs/shard-2.out"; }
check "task 2's log has plain progress lines" progress_in_log
for f in networks.csv curves.csv floss_curves.csv lyapunov.csv summary.csv; do
  check "merged $f == unsharded" cmp "$out/merged/$f" "$T/unsharded/$f"
done
echo "$passed passed, $failed failed"
((failed == 0))
