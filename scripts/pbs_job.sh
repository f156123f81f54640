#!/bin/bash
# Example PBS Pro / Torque job: one node with 192 cores runs (or resumes) ./campaign.yaml.
# PBS sends SIGTERM at the walltime limit (after kill_delay it sends SIGKILL; ask your site for
# a kill_delay of a few minutes, or use `qsig -s USR1` from a wrapper); the campaign saves its state
# and exits, and the same job script resumes it when submitted again.
#PBS -N acnn-csp
#PBS -l select=1:ncpus=192:mpiprocs=192
#PBS -l walltime=24:00:00
#PBS -j oe

set -euo pipefail
cd "$PBS_O_WORKDIR"
source "$HOME/venvs/acnn/bin/activate"
export OMP_NUM_THREADS=1

mpiexec -n 192 python -m acnn_mpi
