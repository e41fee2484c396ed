#!/bin/bash
# candle_mbo hyperparameter search (mlrMBO) as one Slurm job on GPU nodes.
#
# 1. Fill in the lines marked FILL IN (the #SBATCH account and partition, the node shape, the modules).
# 2. Check what it would run, from the repository root (no scheduler needed, nothing is started):
#        CANDLE_MBO_DRY_RUN=1 bash examples/hpc/slurm_hpo.sh
# 3. Submit it from the repository root:
#        sbatch examples/hpc/slurm_hpo.sh
#        sbatch --export=ALL,MODEL=examples/mnist/mnist_mlp_pytorch.py,SPACE=examples/mnist/space.R,OUT=experiments/mnist-hpo examples/hpc/slurm_hpo.sh
#
# Layout: every node runs GPUS_PER_NODE / GPUS_PER_WORKER ranks; rank 0 (the master: mlrMBO and the
# dispatch, no GPU) takes one of them on the first node, the others are workers (one training at a time,
# GPUS_PER_WORKER GPUs each). 2 nodes x 4 GPUs: the master + 7 workers, one GPU left idle. To give the
# master a CPU node of its own and every GPU a worker, use slurm_hpo_hetjob.sh.
#
# The walltime: 5 minutes before it, Slurm sends USR1 to this script (--signal=B:USR1@300); the trap below
# forwards it to the search, which stops dispatching, lets the running runs finish for up to GRACE
# seconds and journals the rest; then the job requeues itself (--requeue) and, finding $OUT/experiment.yaml,
# resumes: every finished run is kept, the runs that were cut run again first, from their checkpoints.
#
#SBATCH --job-name=candle_mbo-hpo
# FILL IN: the account to charge (sacctmgr show assoc user=$USER) and a GPU partition (sinfo -s)
#SBATCH --account=FILL_IN_ACCOUNT
#SBATCH --partition=FILL_IN_GPU_PARTITION
# The node shape below (NODES, GPUS_PER_NODE) must match these lines; whole nodes, so that the layout
# may use all their cores.
#SBATCH --nodes=2
#SBATCH --gpus-per-node=4
#SBATCH --exclusive
#SBATCH --time=04:00:00
#SBATCH --output=candle_mbo-hpo-%j.out
#SBATCH --signal=B:USR1@300
#SBATCH --requeue

set -euo pipefail

# ---- FILL IN: the node shape ---------------------------------------------------------------------
NODES=${SLURM_JOB_NUM_NODES:-2}          # the #SBATCH --nodes above (Slurm sets it in the job)
CORES_PER_NODE=${CORES_PER_NODE:-64}     # physical cores of one node (lscpu on a compute node)
GPUS_PER_NODE=${GPUS_PER_NODE:-4}        # the #SBATCH --gpus-per-node above; 0 on CPU nodes
GPUS_PER_WORKER=${GPUS_PER_WORKER:-1}    # GPUs each training gets
CORES_PER_WORKER=${CORES_PER_WORKER:-8}  # on CPU nodes only (GPUS_PER_NODE=0): cores each training gets

# ---- FILL IN: the site's software ----------------------------------------------------------------
# The modules this job needs: the MPI that mpi4py was built against (examples/hpc/make_conda_env.sh),
# CUDA if the site's PyTorch/TensorFlow use its module, and conda (e.g. "openmpi/4.1.6 miniforge3").
# "none" when nothing needs loading.
SITE_MODULES=${SITE_MODULES:-"FILL_IN_MPI_MODULE FILL_IN_CONDA_MODULE"}
CONDA_ENV=${CONDA_ENV:-candle_mbo}       # made by make_conda_env.sh (environment.yml; environment-tf.yml for TensorFlow)
MPI_PLUGIN=${MPI_PLUGIN:-}               # srun --mpi=... if your site needs it for mpi4py (pmix, pmi2; srun --mpi=list)

# ---- the search (override any with sbatch --export=ALL,NAME=value,...) ---------------------------
MODEL=${MODEL:-examples/nt3/nt3_baseline_pytorch.py}
SPACE=${SPACE:-examples/nt3/space.R}
OUT=${OUT:-experiments/nt3-hpo}          # a fixed name, so that a requeued or resubmitted job finds it
BUDGET=${BUDGET:-200}                    # evaluations in all, initial design included
SEED=${SEED:-1}
RUN_TIMEOUT=${RUN_TIMEOUT:-3600}         # seconds; a run taking longer is killed and recorded as "timeout"
GRACE=${GRACE:-280}                      # seconds running runs may finish after USR1 (keep under --signal's 300)

# ---- nothing to fill in below ---------------------------------------------------------------------
DRY_RUN=${CANDLE_MBO_DRY_RUN:-}
fail() { echo "error: $*" >&2; exit 2; }
whole() { [[ "$2" =~ ^[0-9]+$ ]] || fail "$1=$2 must be a whole number (set at the top of this script)"; }
for name in NODES CORES_PER_NODE GPUS_PER_NODE GPUS_PER_WORKER CORES_PER_WORKER BUDGET RUN_TIMEOUT GRACE; do
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
[ "$RANKS" -ge 2 ] || fail "$RANKS rank: a search needs the master and at least one worker"

cd "${REPO:-${SLURM_SUBMIT_DIR:-$PWD}}"
if [[ "$SITE_MODULES" == *FILL_IN* ]]; then
    [ -n "$DRY_RUN" ] || fail "fill in SITE_MODULES at the top of examples/hpc/slurm_hpo.sh (or 'none')"
    echo "note: SITE_MODULES still holds placeholders: $SITE_MODULES"
fi
RESUME=()
if [ -f "$OUT/experiment.yaml" ]; then
    echo "$OUT holds an experiment: resuming it (finished runs are kept)"
    RESUME=(--resume)
fi
LAUNCH=(srun --nodes="$NODES" --ntasks="$RANKS" --ntasks-per-node="$RANKS_PER_NODE" --cpus-per-task="$THREADS"
        --kill-on-bad-exit=1)
[ "$GPUS_PER_NODE" -gt 0 ] && LAUNCH+=(--gpus-per-node="$GPUS_PER_NODE")
[ -n "$MPI_PLUGIN" ] && LAUNCH+=(--mpi="$MPI_PLUGIN")
LAUNCH+=(python -m candle_mbo --model "$MODEL" --space "$SPACE" --output "$OUT" --budget "$BUDGET" --seed "$SEED"
         --gpus-per-worker "$GPUS_PER_WORKER" --threads-per-worker "$THREADS" --timeout "$RUN_TIMEOUT"
         --grace "$GRACE" ${RESUME[@]+"${RESUME[@]}"})
echo "layout: $NODES node(s) x $RANKS_PER_NODE ranks = 1 master + $((RANKS - 1)) workers, $GPUS_PER_WORKER GPU(s) and $THREADS threads each"

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

requeue() {
    echo "walltime near: stopping the search cleanly, then requeueing job $SLURM_JOB_ID (it will resume $OUT)"
    kill -USR1 "$JOB" 2>/dev/null || true   # srun forwards it to every rank
    wait "$JOB" || true
    scontrol requeue "$SLURM_JOB_ID"
}
trap requeue USR1

# In the background, so that the trap runs as soon as USR1 arrives.
"${LAUNCH[@]}" &
JOB=$!
wait "$JOB"
