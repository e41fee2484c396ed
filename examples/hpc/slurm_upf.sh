#!/bin/bash
# candle_mbo UPF (a fixed list of parameter sets, one JSON object per line) as one Slurm job.
#
# Rank 0 dispatches the lines, ranks 1..N-1 are workers that run one parameter set at a time:
# request workers + 1 ranks. Lines finished before a walltime kill are kept: submit the same command
# again and the script adds --resume (it finds $OUT/experiment.yaml).
#
#   sbatch examples/hpc/slurm_upf.sh
#   sbatch --export=ALL,UPF=upf/mnist.upf,MODEL=examples/mnist/mnist_mlp.py,OUT=experiments/mnist-upf \
#       examples/hpc/slurm_upf.sh
#
# 1 node, 5 ranks = master + 4 workers, one GPU each.
#SBATCH --job-name=candle_mbo-upf
#SBATCH --nodes=1
#SBATCH --ntasks=5
#SBATCH --cpus-per-task=8
#SBATCH --gpus-per-node=4
#SBATCH --time=02:00:00
#SBATCH --output=candle_mbo-upf-%j.out
#
# Optional requeue before the walltime (see slurm_hpo.sh): change "##" to "#".
##SBATCH --signal=B:USR1@300
##SBATCH --requeue

set -euo pipefail

MODEL=${MODEL:-examples/nt3/nt3_baseline_pytorch.py}
UPF=${UPF:-upf/nt3.upf}
OUT=${OUT:-experiments/nt3-upf}
RUN_TIMEOUT=${RUN_TIMEOUT:-3600}
GPUS_PER_WORKER=${GPUS_PER_WORKER:-1}
THREADS=${THREADS:-${SLURM_CPUS_PER_TASK:-1}}
CONDA_ENV=${CONDA_ENV:-candle_mbo}

cd "${REPO:-$SLURM_SUBMIT_DIR}"

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
    echo "walltime near: requeueing job $SLURM_JOB_ID (it will resume $OUT)"
    scontrol requeue "$SLURM_JOB_ID"
}
trap requeue USR1

srun --kill-on-bad-exit=1 python -m candle_mbo.upf \
    --model "$MODEL" \
    --upf "$UPF" \
    --output "$OUT" \
    --gpus-per-worker "$GPUS_PER_WORKER" \
    --threads-per-worker "$THREADS" \
    --timeout "$RUN_TIMEOUT" \
    $RESUME &
wait $!
