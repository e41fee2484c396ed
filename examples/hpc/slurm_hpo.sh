#!/bin/bash
# candle_mbo hyperparameter search (mlrMBO) as one Slurm job.
#
# One MPI job: rank 0 is the master (it runs mlrMBO and dispatches runs), ranks 1..N-1 are workers
# that each run one training at a time. Request workers + 1 ranks in all.
#
# Submit from the repository root (once: conda env create -f environment.yml):
#   sbatch examples/hpc/slurm_hpo.sh
#   sbatch --export=ALL,MODEL=examples/mnist/mnist_mlp.py,SPACE=examples/mnist/space.R,OUT=experiments/mnist-hpo \
#       examples/hpc/slurm_hpo.sh
# After a walltime kill, submit the same command again: the script sees $OUT/experiment.yaml and adds
# --resume, so every finished run is kept and only the rest of the budget runs.
#
# Layout below: 2 nodes x 4 ranks = 8 ranks = master + 7 workers, 1 GPU per worker. The master lives
# on the first node and takes no GPU, so that node has 3 workers (GPUs 0-2, GPU 3 idle) and the other
# node 4 (GPUs 0-3). On a single node, ask for one rank more than GPUs (--ntasks=5 for 4 GPUs).
#
#SBATCH --job-name=candle_mbo-hpo
#SBATCH --nodes=2
#SBATCH --ntasks-per-node=4
#SBATCH --cpus-per-task=8
#SBATCH --gpus-per-node=4
#SBATCH --time=04:00:00
#SBATCH --output=candle_mbo-hpo-%j.out
#
# Stop cleanly and requeue at the walltime (optional; change "##" to "#" to enable both lines): Slurm
# sends USR1 to this script 5 minutes before the end; the trap below forwards it to the job, which
# (with --grace 280) stops dispatching, lets running runs finish for up to 280 s and journals the rest;
# then the trap requeues the job (same job id, same $OUT), which continues with --resume: the runs that
# were cut run again first, from their own checkpoints.
##SBATCH --signal=B:USR1@300
##SBATCH --requeue

set -euo pipefail

# What to search, and where the results go (override with sbatch --export=ALL,NAME=value,...)
MODEL=${MODEL:-examples/nt3/nt3_baseline_pytorch.py}
SPACE=${SPACE:-examples/nt3/space.R}
OUT=${OUT:-experiments/nt3-hpo}           # a fixed name, so that a resubmitted job finds it
BUDGET=${BUDGET:-200}                    # evaluations in all, initial design included
SEED=${SEED:-1}
RUN_TIMEOUT=${RUN_TIMEOUT:-3600}         # seconds; a run taking longer is killed and recorded as "timeout"
GPUS_PER_WORKER=${GPUS_PER_WORKER:-1}    # 0 on CPU-only nodes
THREADS=${THREADS:-${SLURM_CPUS_PER_TASK:-1}}
CONDA_ENV=${CONDA_ENV:-candle_mbo}

cd "${REPO:-$SLURM_SUBMIT_DIR}"

# The conda environment made from the repository's environment.yml. On many clusters conda comes
# from a module first (e.g. module load miniforge3).
set +u
source "$(conda info --base)/etc/profile.d/conda.sh"
conda activate "$CONDA_ENV"
set -u

RESUME=""
if [ -f "$OUT/experiment.yaml" ]; then
    echo "$OUT holds an experiment: resuming it (finished runs are kept)"
    RESUME="--resume"
fi

requeue() {
    echo "walltime near: stopping the search cleanly, then requeueing job $SLURM_JOB_ID (it will resume $OUT)"
    kill -USR1 "$JOB" 2>/dev/null || true   # srun forwards it to every rank
    wait "$JOB" || true
    scontrol requeue "$SLURM_JOB_ID"
}
trap requeue USR1

# Started in the background so that the trap runs as soon as USR1 arrives. --kill-on-bad-exit ends
# every rank if one fails; add --mpi=pmix (or your site's value) if srun needs it for mpi4py.
srun --kill-on-bad-exit=1 python -m candle_mbo \
    --model "$MODEL" \
    --space "$SPACE" \
    --output "$OUT" \
    --budget "$BUDGET" \
    --seed "$SEED" \
    --gpus-per-worker "$GPUS_PER_WORKER" \
    --threads-per-worker "$THREADS" \
    --timeout "$RUN_TIMEOUT" \
    --grace 280 \
    $RESUME &
JOB=$!
wait $JOB
