#!/bin/bash
# candle_mbo hyperparameter search as a Slurm heterogeneous job: the masters (mlrMBO, the dispatch) on a
# CPU node, the workers on GPU nodes, so that every GPU trains and no master competes with a training
# for cores. One MPI launch spans both components: the CPU node's ranks come first (ranks 0..MASTERS-1,
# the masters: --masters MASTERS), the GPU nodes' ranks are the workers.
#
# Needs an MPI that srun can launch across the components of a heterogeneous job (PMI-2 or PMIx: set
# MPI_PLUGIN below if srun needs --mpi=...). Without that, use slurm_hpo.sh.
#
# 1. Fill in the lines marked FILL IN (the #SBATCH accounts and partitions, the node shapes, the modules).
# 2. Check what it would run, from the repository root (no scheduler needed, nothing is started):
#        CANDLE_MBO_DRY_RUN=1 bash examples/hpc/slurm_hpo_hetjob.sh
# 3. Submit it from the repository root:
#        sbatch examples/hpc/slurm_hpo_hetjob.sh
#
# The walltime: as in slurm_hpo.sh, USR1 5 minutes before the end stops the search cleanly (--grace),
# then the job requeues itself and resumes.
#
#SBATCH --job-name=candle_mbo-hpo-het
#SBATCH --output=candle_mbo-hpo-het-%j.out
#SBATCH --signal=B:USR1@300
#SBATCH --requeue
# Component 0, the masters: one CPU node. FILL IN the account and a CPU partition.
#SBATCH --account=FILL_IN_ACCOUNT
#SBATCH --partition=FILL_IN_CPU_PARTITION
#SBATCH --time=04:00:00
#SBATCH --nodes=1
#SBATCH --ntasks=1
#SBATCH --cpus-per-task=8
#SBATCH hetjob
# Component 1, the workers: GPU nodes, whole. FILL IN the account and a GPU partition.
#SBATCH --account=FILL_IN_ACCOUNT
#SBATCH --partition=FILL_IN_GPU_PARTITION
#SBATCH --time=04:00:00
#SBATCH --nodes=2
#SBATCH --gpus-per-node=4
#SBATCH --exclusive

set -euo pipefail

# ---- FILL IN: the node shapes --------------------------------------------------------------------
MASTERS=${MASTERS:-1}                    # ranks on the CPU node = component 0's --ntasks (one per 256 workers is plenty)
CORES_PER_MASTER=${CORES_PER_MASTER:-8}  # = component 0's --cpus-per-task
GPU_NODES=${SLURM_JOB_NUM_NODES_HET_GROUP_1:-2}  # = component 1's --nodes (Slurm sets it in the job)
CORES_PER_NODE=${CORES_PER_NODE:-64}     # physical cores of one GPU node
GPUS_PER_NODE=${GPUS_PER_NODE:-4}        # = component 1's --gpus-per-node
GPUS_PER_WORKER=${GPUS_PER_WORKER:-1}    # GPUs each training gets

# ---- FILL IN: the site's software ----------------------------------------------------------------
# The modules this job needs: the MPI that mpi4py was built against (examples/hpc/make_conda_env.sh),
# CUDA if the site's PyTorch/TensorFlow use its module, and conda (e.g. "openmpi/4.1.6 miniforge3").
# "none" when nothing needs loading.
SITE_MODULES=${SITE_MODULES:-"FILL_IN_MPI_MODULE FILL_IN_CONDA_MODULE"}
CONDA_ENV=${CONDA_ENV:-candle_mbo}       # made by make_conda_env.sh (environment.yml; environment-tf.yml for TensorFlow)
MPI_PLUGIN=${MPI_PLUGIN:-}               # srun --mpi=... for heterogeneous steps (pmix, pmi2; srun --mpi=list)

# ---- the search (override any with sbatch --export=ALL,NAME=value,...) ---------------------------
MODEL=${MODEL:-examples/nt3/nt3_baseline_pytorch.py}
SPACE=${SPACE:-examples/nt3/space.R}
OUT=${OUT:-experiments/nt3-hpo-het}      # a fixed name, so that a requeued or resubmitted job finds it
BUDGET=${BUDGET:-200}                    # evaluations in all, initial design included
SEED=${SEED:-1}
RUN_TIMEOUT=${RUN_TIMEOUT:-3600}         # seconds; a run taking longer is killed and recorded as "timeout"
GRACE=${GRACE:-280}                      # seconds running runs may finish after USR1 (keep under --signal's 300)

# ---- nothing to fill in below ---------------------------------------------------------------------
DRY_RUN=${CANDLE_MBO_DRY_RUN:-}
fail() { echo "error: $*" >&2; exit 2; }
whole() { [[ "$2" =~ ^[0-9]+$ ]] || fail "$1=$2 must be a whole number (set at the top of this script)"; }
for name in MASTERS CORES_PER_MASTER GPU_NODES CORES_PER_NODE GPUS_PER_NODE GPUS_PER_WORKER BUDGET RUN_TIMEOUT GRACE; do
    whole "$name" "${!name}"
done
[ "$MASTERS" -ge 1 ] && [ "$CORES_PER_MASTER" -ge 1 ] || fail "MASTERS and CORES_PER_MASTER must be at least 1"
[ "$GPUS_PER_NODE" -gt 0 ] && [ "$GPUS_PER_WORKER" -gt 0 ] \
    || fail "this layout puts the workers on GPU nodes: GPUS_PER_NODE and GPUS_PER_WORKER must be at least 1"
[ $((GPUS_PER_NODE % GPUS_PER_WORKER)) -eq 0 ] \
    || fail "GPUS_PER_NODE=$GPUS_PER_NODE is not a multiple of GPUS_PER_WORKER=$GPUS_PER_WORKER"
WORKERS_PER_NODE=$((GPUS_PER_NODE / GPUS_PER_WORKER))
THREADS=$((CORES_PER_NODE / WORKERS_PER_NODE))
[ "$THREADS" -ge 1 ] || fail "CORES_PER_NODE=$CORES_PER_NODE is fewer than the $WORKERS_PER_NODE workers per node"
WORKERS=$((GPU_NODES * WORKERS_PER_NODE))
[ "$WORKERS" -ge 1 ] || fail "no worker: GPU_NODES must be at least 1"

cd "${REPO:-${SLURM_SUBMIT_DIR:-$PWD}}"
if [[ "$SITE_MODULES" == *FILL_IN* ]]; then
    [ -n "$DRY_RUN" ] || fail "fill in SITE_MODULES at the top of examples/hpc/slurm_hpo_hetjob.sh (or 'none')"
    echo "note: SITE_MODULES still holds placeholders: $SITE_MODULES"
fi
RESUME=()
if [ -f "$OUT/experiment.yaml" ]; then
    echo "$OUT holds an experiment: resuming it (finished runs are kept)"
    RESUME=(--resume)
fi
ARGS=(python -m candle_mbo --model "$MODEL" --space "$SPACE" --output "$OUT" --budget "$BUDGET" --seed "$SEED"
      --masters "$MASTERS" --gpus-per-worker "$GPUS_PER_WORKER" --threads-per-worker "$THREADS"
      --timeout "$RUN_TIMEOUT" --grace "$GRACE" ${RESUME[@]+"${RESUME[@]}"})
EACH=(--kill-on-bad-exit=1)  # given to both components of the step
[ -n "$MPI_PLUGIN" ] && EACH+=(--mpi="$MPI_PLUGIN")
LAUNCH=(srun --het-group=0 "${EACH[@]}" --nodes=1 --ntasks="$MASTERS" --cpus-per-task="$CORES_PER_MASTER" "${ARGS[@]}"
        : --het-group=1 "${EACH[@]}" --nodes="$GPU_NODES" --ntasks="$WORKERS" --ntasks-per-node="$WORKERS_PER_NODE"
        --cpus-per-task="$THREADS" --gpus-per-node="$GPUS_PER_NODE" "${ARGS[@]}")
echo "layout: $MASTERS master(s) on a CPU node; $GPU_NODES GPU node(s) x $WORKERS_PER_NODE = $WORKERS workers, $GPUS_PER_WORKER GPU(s) and $THREADS threads each"

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
    kill -USR1 "$JOB" 2>/dev/null || true   # srun forwards it to every rank of both components
    wait "$JOB" || true
    scontrol requeue "$SLURM_JOB_ID"
}
trap requeue USR1

# In the background, so that the trap runs as soon as USR1 arrives.
"${LAUNCH[@]}" &
JOB=$!
wait "$JOB"
