#!/bin/bash
# PBS Pro / OpenPBS / Torque job: run (or resume) ./campaign.yaml in the submit folder,
# resubmitting itself until the campaign has finished. No signal needs setting up: the campaign
# reads the job's end time (qstat -f: Walltime.Remaining, or stime + Resource_List.walltime;
# else PBS_WALLTIME) and stops cleanly parallel.walltime_margin_s (default 900 s) before it, state
# saved, with exit code 3; this script then queues the next job, which resumes. Exit 0: finished.
# Any other code is an error and nothing is resubmitted.
#PBS -N acnn-csp
#PBS -l select=1:ncpus=192:mpiprocs=192
#PBS -l walltime=24:00:00
#PBS -j oe

set -uo pipefail
cd "${PBS_O_WORKDIR:-.}"
source "${ACNN_VENV:-$HOME/venvs/acnn}/bin/activate"   # the venv acnn_mpi is installed in
SCRIPT=${ACNN_JOB_SCRIPT:-$PWD/pbs_job.sh}             # this file, to submit again
MAX_JOBS=${ACNN_MAX_JOBS:-20}                            # resubmissions allowed in a chain
JOB_NUMBER=${ACNN_JOB_NUMBER:-1}
NP=$(wc -l < "${PBS_NODEFILE:-/dev/null}")
[ "$NP" -gt 0 ] || NP=1

status=0
mpiexec -n "$NP" python -m acnn_mpi || status=$?   # reads ./campaign.yaml

case "$status" in
  0) echo "acnn_mpi: campaign finished (job $JOB_NUMBER of the chain)" ;;
  3) if [ "$JOB_NUMBER" -ge "$MAX_JOBS" ]; then
       echo "acnn_mpi: stopped before the walltime; $MAX_JOBS jobs done, not resubmitting" >&2
     else
       qsub -W depend=afterany:"$PBS_JOBID" \
            -v ACNN_JOB_NUMBER=$((JOB_NUMBER + 1)),ACNN_VENV="${ACNN_VENV:-$HOME/venvs/acnn}",ACNN_JOB_SCRIPT="$SCRIPT" \
            "$SCRIPT"
       echo "acnn_mpi: stopped before the walltime, state saved; next job queued"
     fi ;;
  *) echo "acnn_mpi: failed with exit code $status; not resubmitted" >&2 ;;
esac
exit "$status"
