#!/bin/bash
# Slurm job: run (or resume) ./campaign.yaml in the submit folder, resubmitting itself until the
# campaign has finished. No signal needs setting up: the campaign reads the job's end time from
# Slurm (SLURM_JOB_END_TIME, else squeue) and stops cleanly parallel.walltime_margin_s (default
# 900 s) before it, state saved, with exit code 3; this script then queues the next job, which
# resumes. Exit 0: finished. Any other code is an error and nothing is resubmitted.
# A signal still works as well (scancel --signal=USR1 JOBID, or #SBATCH --signal=USR1@600).
#SBATCH --job-name=acnn-csp
#SBATCH --nodes=1
#SBATCH --ntasks-per-node=192
#SBATCH --cpus-per-task=1
#SBATCH --time=24:00:00
#SBATCH --output=acnn-%j.out

set -uo pipefail
source "${ACNN_VENV:-$HOME/venvs/acnn}/bin/activate"   # the venv acnn_mpi is installed in
MAX_JOBS=${ACNN_MAX_JOBS:-20}                            # resubmissions allowed in a chain
JOB_NUMBER=${ACNN_JOB_NUMBER:-1}

# srun needs mpi4py on the site's MPI (README "Running on a supercomputer"); with the bundled
# MPICH wheel launch with its own mpiexec instead:  mpiexec -n "$SLURM_NTASKS" python -m acnn_mpi
# `srun python -m acnn_mpi check --env` shows which MPI is used and exits 1 on a rank mismatch.
status=0
srun python -m acnn_mpi || status=$?   # reads ./campaign.yaml

case "$status" in
  0) echo "acnn_mpi: campaign finished (job $JOB_NUMBER of the chain)" ;;
  3) if [ "$JOB_NUMBER" -ge "$MAX_JOBS" ]; then
       echo "acnn_mpi: stopped before the walltime; $MAX_JOBS jobs done, not resubmitting" >&2
     else
       script=$(scontrol show job "$SLURM_JOB_ID" | sed -n 's/^ *Command=\([^ ]*\).*/\1/p')
       sbatch --dependency=afterany:"$SLURM_JOB_ID" \
              --export=ALL,ACNN_JOB_NUMBER=$((JOB_NUMBER + 1)) "${script:-$0}"
       echo "acnn_mpi: stopped before the walltime, state saved; next job queued"
     fi ;;
  *) echo "acnn_mpi: failed with exit code $status; not resubmitted" >&2 ;;
esac
exit "$status"
