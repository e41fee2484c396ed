#!/bin/bash
# Build candle_mbo's conda environment on a cluster's login node, with mpi4py on the site's MPI.
#
# mpi4py must use the MPI that the job's launcher (srun, mpiexec) starts, or the ranks do not see each
# other (every rank believes it is rank 0 of 1). conda-forge's own Open MPI works on one machine; on a
# cluster, this script puts the site's MPI underneath: conda-forge's "external" MPI package (a stand-in
# that uses the MPI of the loaded module), or mpi4py built from source with the module's mpicc.
#
# 1. Fill in the lines marked FILL IN.
# 2. Check what it would run:    CANDLE_MBO_DRY_RUN=1 bash examples/hpc/make_conda_env.sh
# 3. Run it from the repository root, on a login node:    bash examples/hpc/make_conda_env.sh
set -euo pipefail

# ---- FILL IN ---------------------------------------------------------------------------------------
# The modules of the MPI your jobs launch with and of conda (e.g. "openmpi/4.1.6 miniforge3"); "none".
SITE_MODULES=${SITE_MODULES:-"FILL_IN_MPI_MODULE FILL_IN_CONDA_MODULE"}
MPI_FAMILY=${MPI_FAMILY:-openmpi}        # the family of that MPI: openmpi or mpich (Cray MPICH, Intel MPI, MVAPICH: mpich)
MPI_VERSION=${MPI_VERSION:-4.1}          # its version, major.minor (mpirun --version, or the module's name)
MPI_RECIPE=${MPI_RECIPE:-external}       # external: conda-forge's external_* MPI package; build: mpi4py from source
CUDA_VERSION=${CUDA_VERSION-12.4}        # what the GPU nodes' driver supports (nvidia-smi there); "" on CPU-only clusters
FRAMEWORK=${FRAMEWORK:-pytorch}          # pytorch (environment.yml) or tensorflow (environment-tf.yml)
CONDA_ENV=${CONDA_ENV:-}                 # the environment's name (default: the one in the file)

# ---- nothing to fill in below ---------------------------------------------------------------------
DRY_RUN=${CANDLE_MBO_DRY_RUN:-}
fail() { echo "error: $*" >&2; exit 2; }
show() { printf -v line '%q ' "$@"; echo "${line% }"; }
run() { if [ -n "$DRY_RUN" ]; then show "$@"; else "$@"; fi; }

case "$FRAMEWORK" in
    pytorch) FILE=environment.yml; NAME=candle_mbo ;;
    tensorflow) FILE=environment-tf.yml; NAME=candle_mbo_tf ;;
    *) fail "FRAMEWORK=$FRAMEWORK: choose pytorch or tensorflow" ;;
esac
NAME=${CONDA_ENV:-$NAME}
case "$MPI_FAMILY" in openmpi|mpich) ;; *) fail "MPI_FAMILY=$MPI_FAMILY: choose openmpi or mpich" ;; esac
case "$MPI_RECIPE" in external|build) ;; *) fail "MPI_RECIPE=$MPI_RECIPE: choose external or build" ;; esac
[[ "$MPI_VERSION" =~ ^[0-9]+(\.[0-9]+)*$ ]] || fail "MPI_VERSION=$MPI_VERSION must look like 4.1"
[ -f "$FILE" ] || fail "$FILE not found: run this script from the repository root"
if [[ "$SITE_MODULES" == *FILL_IN* ]]; then
    [ -n "$DRY_RUN" ] || fail "fill in SITE_MODULES at the top of examples/hpc/make_conda_env.sh (or 'none')"
    echo "note: SITE_MODULES still holds placeholders: $SITE_MODULES"
fi

if [ "$SITE_MODULES" != none ]; then
    if [ -n "$DRY_RUN" ]; then echo "module load $SITE_MODULES"; else module load $SITE_MODULES; fi
fi
# A login node has no GPU, so conda would pick CPU builds of PyTorch/TensorFlow: tell it the nodes' CUDA.
if [ -n "$CUDA_VERSION" ]; then
    export CONDA_OVERRIDE_CUDA="$CUDA_VERSION"
    echo "export CONDA_OVERRIDE_CUDA=$CUDA_VERSION"
fi
run conda env create -n "$NAME" -f "$FILE"
# The site's MPI under mpi4py, instead of the environment's own Open MPI.
if [ "$MPI_RECIPE" = external ]; then
    run conda install -y -n "$NAME" -c conda-forge "$MPI_FAMILY=$MPI_VERSION.*=external_*" mpi4py
else
    run conda remove -y -n "$NAME" --force mpi4py openmpi
    run env MPICC="$(command -v mpicc || echo mpicc)" conda run -n "$NAME" python -m pip install --no-binary=mpi4py \
        --no-cache-dir mpi4py
fi
run conda run -n "$NAME" python -m pip install --no-deps -e .
# Which MPI mpi4py uses now: it must name the site's library, not conda-forge's.
run conda run -n "$NAME" python -c "from mpi4py import MPI; print(MPI.Get_library_version().splitlines()[0])"
echo "next: fill in and dry-run a job script (examples/hpc/README.md); the scripts activate CONDA_ENV=$NAME"
