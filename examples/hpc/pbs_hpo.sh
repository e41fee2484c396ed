#!/bin/bash
# candle_mbo hyperparameter search (mlrMBO) as one PBS Pro job on GPU nodes (Torque: see the select line).
#
# 1. Fill in the lines marked FILL IN (the #PBS account and queue, the node shape, the modules, how your
#    mpiexec finds the hosts).
# 2. Check what it would run, from the repository root (no scheduler needed, nothing is started):
#        CANDLE_MBO_DRY_RUN=1 bash examples/hpc/pbs_hpo.sh
# 3. Submit it from the repository root:
#        qsub examples/hpc/pbs_hpo.sh
#        qsub -v MODEL=examples/mnist/mnist_mlp_pytorch.py,SPACE=examples/mnist/space.R,OUT=experiments/mnist-hpo examples/hpc/pbs_hpo.sh
#
# Layout: every node runs GPUS_PER_NODE / GPUS_PER_WORKER ranks (the select line's mpiprocs); rank 0 (the
# master: mlrMBO and the dispatch, no GPU) takes one of them on the first node, the others are workers.
#
# The walltime: PBS has no signal ahead of the walltime, so this script sends one: STOP_BEFORE seconds
# before WALLTIME it sends USR1 to mpiexec, which forwards it to the ranks; the search stops dispatching,
# lets the running runs finish for up to GRACE seconds and journals the rest. The script then submits
# itself again (CONTINUE=1), and the next job, finding $OUT/experiment.yaml, resumes.
#
#PBS -N candle_mbo-hpo
# FILL IN: the project to charge and a GPU queue
#PBS -A FILL_IN_ACCOUNT
#PBS -q FILL_IN_GPU_QUEUE
# The node shape below (NODES, CORES_PER_NODE, GPUS_PER_NODE, ranks per node) must match this line.
# Torque instead:  #PBS -l nodes=2:ppn=4:gpus=4
#PBS -l select=2:ncpus=64:mpiprocs=4:ngpus=4
#PBS -l walltime=04:00:00
#PBS -j oe
#PBS -r y

set -euo pipefail

# ---- FILL IN: the node shape ---------------------------------------------------------------------
NODES=${NODES:-2}                        # the select line's count
CORES_PER_NODE=${CORES_PER_NODE:-64}     # its ncpus
GPUS_PER_NODE=${GPUS_PER_NODE:-4}        # its ngpus (0 on CPU nodes)
GPUS_PER_WORKER=${GPUS_PER_WORKER:-1}    # GPUs each training gets; mpiprocs = GPUS_PER_NODE / GPUS_PER_WORKER
CORES_PER_WORKER=${CORES_PER_WORKER:-8}  # on CPU nodes only (GPUS_PER_NODE=0); mpiprocs = CORES_PER_NODE / this
WALLTIME=${WALLTIME:-04:00:00}           # the walltime line above
STOP_BEFORE=${STOP_BEFORE:-300}          # seconds before the walltime when the search is told to stop

# ---- FILL IN: the site's software ----------------------------------------------------------------
# The modules this job needs: the MPI that mpi4py was built against (examples/hpc/make_conda_env.sh),
# CUDA if the site's PyTorch/TensorFlow use its module, and conda (e.g. "cray-mpich miniforge3").
# "none" when nothing needs loading.
SITE_MODULES=${SITE_MODULES:-"FILL_IN_MPI_MODULE FILL_IN_CONDA_MODULE"}
CONDA_ENV=${CONDA_ENV:-candle_mbo}       # made by make_conda_env.sh (environment.yml; environment-tf.yml for TensorFlow)
# How mpiexec finds the hosts: nothing for an MPI built with PBS support; "--hostfile" (Open MPI) or "-f"
# (MPICH) to pass $PBS_NODEFILE; Cray PALS: "--ppn" with the ranks per node (the script adds the value).
HOSTS_OPTION=${HOSTS_OPTION:-}
CONTINUE=${CONTINUE:-1}                  # after a walltime stop, submit this script again (0: do not)
SCRIPT=${SCRIPT:-examples/hpc/pbs_hpo.sh}  # this file, from the repository root (for CONTINUE)

# ---- the search (override any with qsub -v NAME=value,...) ---------------------------------------
MODEL=${MODEL:-examples/nt3/nt3_baseline_pytorch.py}
SPACE=${SPACE:-examples/nt3/space.R}
OUT=${OUT:-experiments/nt3-hpo}          # a fixed name, so that the next job finds it
BUDGET=${BUDGET:-200}                    # evaluations in all, initial design included
SEED=${SEED:-1}
RUN_TIMEOUT=${RUN_TIMEOUT:-3600}         # seconds; a run taking longer is killed and recorded as "timeout"
GRACE=${GRACE:-280}                      # seconds running runs may finish after USR1 (keep under STOP_BEFORE)

# ---- nothing to fill in below ---------------------------------------------------------------------
DRY_RUN=${CANDLE_MBO_DRY_RUN:-}
fail() { echo "error: $*" >&2; exit 2; }
whole() { [[ "$2" =~ ^[0-9]+$ ]] || fail "$1=$2 must be a whole number (set at the top of this script)"; }
for name in NODES CORES_PER_NODE GPUS_PER_NODE GPUS_PER_WORKER CORES_PER_WORKER STOP_BEFORE BUDGET RUN_TIMEOUT GRACE; do
    whole "$name" "${!name}"
done
if [ "$GPUS_PER_NODE" -gt 0 ]; then
    [ "$GPUS_PER_WORKER" -gt 0 ] || fail "GPUS_PER_WORKER=0 on GPU nodes: set GPUS_PER_NODE=0 for a CPU-only job"
    [ $((GPUS_PER_NODE % GPUS_PER_WORKER)) -eq 0 ] \
        || fail "GPUS_PER_NODE=$GPUS_PER_NODE is not a multiple of GPUS_PER_WORKER=$GPUS_PER_WORKER"
    RANKS_PER_NODE=$((GPUS_PER_NODE / GPUS_PER_WORKER))
else
    GPUS_PER_WORKER=0
    [ "$CORES_PER_WORKER" -gt 0 ] && [ "$CORES_PER_WORKER" -le "$CORES_PER_NODE" ] \
        || fail "CORES_PER_WORKER=$CORES_PER_WORKER must be 1..CORES_PER_NODE ($CORES_PER_NODE)"
    RANKS_PER_NODE=$((CORES_PER_NODE / CORES_PER_WORKER))
fi
THREADS=$((CORES_PER_NODE / RANKS_PER_NODE))
[ "$THREADS" -ge 1 ] || fail "CORES_PER_NODE=$CORES_PER_NODE is fewer than the $RANKS_PER_NODE ranks per node"
RANKS=$((NODES * RANKS_PER_NODE))
if [ -n "${PBS_NODEFILE:-}" ] && [ -f "$PBS_NODEFILE" ]; then  # one line per MPI rank (mpiprocs; ppn under Torque)
    GIVEN=$(wc -l < "$PBS_NODEFILE")
    [ "$GIVEN" -eq "$RANKS" ] || fail "PBS gave $GIVEN MPI ranks, the node shape at the top of this script makes $RANKS
(NODES=$NODES x $RANKS_PER_NODE): make the select line's count and mpiprocs match it"
fi
[ "$RANKS" -ge 2 ] || fail "$RANKS rank: a search needs the master and at least one worker"
[[ "$WALLTIME" =~ ^([0-9]+):([0-9]{2}):([0-9]{2})$ ]] || fail "WALLTIME=$WALLTIME must be HH:MM:SS"
WALLTIME_S=$((10#${BASH_REMATCH[1]} * 3600 + 10#${BASH_REMATCH[2]} * 60 + 10#${BASH_REMATCH[3]}))
[ "$WALLTIME_S" -gt "$STOP_BEFORE" ] || fail "STOP_BEFORE=$STOP_BEFORE is not shorter than WALLTIME=$WALLTIME"

cd "${REPO:-${PBS_O_WORKDIR:-$PWD}}"
if [[ "$SITE_MODULES" == *FILL_IN* ]]; then
    [ -n "$DRY_RUN" ] || fail "fill in SITE_MODULES at the top of examples/hpc/pbs_hpo.sh (or 'none')"
    echo "note: SITE_MODULES still holds placeholders: $SITE_MODULES"
fi
RESUME=()
if [ -f "$OUT/experiment.yaml" ]; then
    echo "$OUT holds an experiment: resuming it (finished runs are kept)"
    RESUME=(--resume)
fi
LAUNCH=(mpiexec -n "$RANKS")
case "$HOSTS_OPTION" in
    "") ;;
    --ppn) LAUNCH+=(--ppn "$RANKS_PER_NODE" --depth "$THREADS") ;;
    *) LAUNCH+=("$HOSTS_OPTION" "${PBS_NODEFILE:-\$PBS_NODEFILE}") ;;
esac
LAUNCH+=(python -m candle_mbo --model "$MODEL" --space "$SPACE" --output "$OUT" --budget "$BUDGET" --seed "$SEED"
         --gpus-per-worker "$GPUS_PER_WORKER" --threads-per-worker "$THREADS" --timeout "$RUN_TIMEOUT"
         --grace "$GRACE" ${RESUME[@]+"${RESUME[@]}"})
echo "layout: $NODES node(s) x $RANKS_PER_NODE ranks = 1 master + $((RANKS - 1)) workers, $GPUS_PER_WORKER GPU(s) and $THREADS threads each; stop $STOP_BEFORE s before the walltime"

if [ -n "$DRY_RUN" ]; then
    [ "$SITE_MODULES" = none ] || echo "module load $SITE_MODULES"
    echo "conda activate $CONDA_ENV"
    printf -v line '%q ' "${LAUNCH[@]}"
    echo "${line% }"
    exit 0
fi

[ "$SITE_MODULES" = none ] || module load $SITE_MODULES
set +u
source "$(conda info --base)/etc/profile.d/conda.sh"
conda activate "$CONDA_ENV"
set -u

"${LAUNCH[@]}" &
JOB=$!
( sleep $((WALLTIME_S - STOP_BEFORE)) && echo "walltime near: stopping the search cleanly" && kill -USR1 "$JOB" ) &
TIMER=$!
code=0
wait "$JOB" || code=$?
kill "$TIMER" 2>/dev/null || true
if [ "$code" -eq 138 ] && [ "$CONTINUE" = 1 ]; then  # stopped by USR1 (128 + 10): the walltime is near
    echo "submitting the continuation of $OUT"
    qsub -v "MODEL=$MODEL,SPACE=$SPACE,OUT=$OUT,BUDGET=$BUDGET,SEED=$SEED,RUN_TIMEOUT=$RUN_TIMEOUT,GRACE=$GRACE" "$SCRIPT"
fi
exit "$code"
