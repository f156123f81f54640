#!/bin/bash
# Example Slurm job: one 192-core node runs (or resumes) the campaign in the submit directory.
# Slurm sends SIGUSR1 10 minutes before the walltime (--signal); every rank finishes or hands
# back its current chunk, the state is saved, and the job exits; resubmit the same script to resume
# (or let it requeue itself, as below).
#SBATCH --job-name=acnn-csp
#SBATCH --nodes=1
#SBATCH --ntasks-per-node=192
#SBATCH --cpus-per-task=1
#SBATCH --time=24:00:00
#SBATCH --signal=USR1@600
#SBATCH --requeue
#SBATCH --output=acnn-%j.out

set -euo pipefail
source "$HOME/venvs/acnn/bin/activate"      # the venv you installed acnn_mpi into
export OMP_NUM_THREADS=1                      # one thread per rank

# srun delivers --signal to every rank; with the bundled MPICH use its mpiexec instead:
#   mpiexec -n "$SLURM_NTASKS" python -m acnn_mpi
status=0
srun --mpi=pmi2 python -m acnn_mpi || status=$?   # reads ./campaign.yaml

# exit code 3 = stopped by the signal before the campaign finished: requeue to continue
if [ "$status" -eq 3 ]; then scontrol requeue "$SLURM_JOB_ID"; fi
exit "$status"
