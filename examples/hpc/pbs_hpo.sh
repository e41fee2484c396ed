#!/bin/bash
# candle_mbo hyperparameter search (mlrMBO) as one PBS Pro job (Torque: see the resource line below).
#
# Rank 0 is the master (mlrMBO, dispatch), ranks 1..N-1 are workers: request workers + 1 MPI ranks.
# Here: 2 nodes x 4 ranks = master + 7 workers, 1 GPU each (the first node, which holds the master,
# leaves one GPU idle).
#
#   qsub examples/hpc/pbs_hpo.sh                  (from the repository root)
#   qsub -v MODEL=examples/mnist/mnist_mlp.py,SPACE=examples/mnist/space.R,OUT=experiments/mnist-hpo \
#       examples/hpc/pbs_hpo.sh
# After a walltime kill, submit the same command again: $OUT/experiment.yaml exists, so --resume is
# added and only the rest of the budget runs. To chain jobs, submit the next one as it starts:
#   qsub -W depend=afterany:$PBS_JOBID ...        (it waits for this one, then resumes)
#
#PBS -N candle_mbo-hpo
#PBS -l select=2:ncpus=32:mpiprocs=4:ngpus=4
#PBS -l walltime=04:00:00
#PBS -j oe
#PBS -r y
# Torque instead of the select line:   #PBS -l nodes=2:ppn=4:gpus=4

set -euo pipefail

MODEL=${MODEL:-examples/nt3/nt3_baseline_pytorch.py}
SPACE=${SPACE:-examples/nt3/space.R}
OUT=${OUT:-experiments/nt3-hpo}
BUDGET=${BUDGET:-200}
SEED=${SEED:-1}
RUN_TIMEOUT=${RUN_TIMEOUT:-3600}
GPUS_PER_WORKER=${GPUS_PER_WORKER:-1}
THREADS=${THREADS:-8}                    # ncpus / mpiprocs of the select line
CONDA_ENV=${CONDA_ENV:-candle_mbo}

cd "${REPO:-$PBS_O_WORKDIR}"

set +u
source "$(conda info --base)/etc/profile.d/conda.sh"
conda activate "$CONDA_ENV"
set -u

NP=$(wc -l < "$PBS_NODEFILE")           # one line per MPI rank (mpiprocs; ppn under Torque)
echo "$NP MPI ranks: 1 master + $((NP - 1)) workers"

RESUME=""
if [ -f "$OUT/experiment.yaml" ]; then
    echo "$OUT holds an experiment: resuming it (finished runs are kept)"
    RESUME="--resume"
fi

# An MPI built with PBS support finds the hosts itself; otherwise add --hostfile "$PBS_NODEFILE"
# (Open MPI) or -f "$PBS_NODEFILE" (MPICH). Cray PALS: mpiexec -n "$NP" --ppn 4.
mpiexec -n "$NP" python -m candle_mbo \
    --model "$MODEL" \
    --space "$SPACE" \
    --output "$OUT" \
    --budget "$BUDGET" \
    --seed "$SEED" \
    --gpus-per-worker "$GPUS_PER_WORKER" \
    --threads-per-worker "$THREADS" \
    --timeout "$RUN_TIMEOUT" \
    $RESUME
