"""What the job runs on: the MPI library mpi4py loaded, ranks per node, threads, torch devices,
the batch job's end (``python -m acnn_mpi check --env``).

The report answers the questions of a first job on a new machine: is this the site's MPI or the
wheel's? did the launcher and MPI agree on the number of ranks? how many ranks share a node, how many
threads each, which GPU each?
"""

from __future__ import annotations

import os
import sys
import time
from collections import Counter

from .comm import Comm, launcher_ranks, size_mismatch
from .devices import assign_device, summarize
from .nodes import node_layout

_THREAD_LEVELS = {"THREAD_SINGLE": "single", "THREAD_FUNNELED": "funneled",
                  "THREAD_SERIALIZED": "serialized", "THREAD_MULTIPLE": "multiple"}


def loaded_mpi_libraries(maps_path: str = "/proc/self/maps") -> list[str]:
    """Paths of the MPI shared libraries mapped into this process (libmpi*, libmpich*)."""
    try:
        with open(maps_path) as maps:
            paths = {line.split()[-1] for line in maps if len(line.split()) >= 6}
    except OSError:
        return []
    return sorted(p for p in paths if os.path.basename(p).startswith(("libmpi.", "libmpich.",
                                                                       "libmpi_", "libmpich_")))


def _mpi_lines() -> list[tuple[str, str]]:
    """(label, value) rows about MPI and mpi4py in this process (MPI is initialized if needed)."""
    import mpi4py
    from mpi4py import MPI

    version = " ".join(MPI.Get_library_version().split("\n")[0].split()).rstrip(", ")
    level = MPI.Query_thread()
    level_name = next((name for attr, name in _THREAD_LEVELS.items() if getattr(MPI, attr) == level),
                      str(level))
    extension = os.path.basename(MPI.__file__)
    abi = next((name for name in ("mpich", "openmpi", "mpiabi") if f".{name}." in extension), None)
    build = (f"binary wheel, {abi} ABI: libmpi chosen at import (MPI4PY_LIBMPI, else the first "
             "found, the Python prefix's lib first)" if abi
             else "built from source: libmpi fixed when it was linked")
    libraries = loaded_mpi_libraries()
    rows = [("MPI library", version),
            ("MPI standard", "%d.%d" % MPI.Get_version()),
            ("libmpi loaded", ", ".join(libraries) or "(not found in /proc/self/maps)"),
            ("mpi4py", f"{mpi4py.__version__}, {extension}; {build}"),
            ("thread level", f"MPI_THREAD_{level_name.upper()} (requested {mpi4py.rc.thread_level})")]
    if len(libraries) > 1:
        rows.append(("WARNING", f"{len(libraries)} MPI libraries loaded at once: "
                                "set MPI4PY_LIBMPI to the one you mean"))
    return rows


def _torch_rows(threads: int) -> tuple[list[tuple[str, str]], int]:
    import torch

    n_gpus = torch.cuda.device_count() if torch.cuda.is_available() else 0
    names = Counter(torch.cuda.get_device_name(i) for i in range(n_gpus))
    gpus = ", ".join(f"{n}× {name}" for name, n in names.items()) or "none"
    rows = [("threads", f"{threads} torch/BLAS thread(s) per rank (OMP_NUM_THREADS="
                        f"{os.environ.get('OMP_NUM_THREADS', 'unset')}, torch "
                        f"{torch.get_num_threads()})"),
            ("torch", f"{torch.__version__}, CUDA {torch.version.cuda or 'none'}; GPUs on the root's "
                      f"node: {gpus}")]
    return rows, n_gpus


def _walltime_row() -> tuple[str, str]:
    from .walltime import job_end

    end = job_end()
    if end is None:
        return ("job end", "none found (no Slurm/PBS job, or no limit): stops on signals only")
    return ("job end", f"in {end.end_s - time.time():.0f} s ({end.source})")


def environment_report(comm: Comm, threads: int, ranks_per_gpu: int | None = None,
                       device: str = "auto") -> tuple[str, list[str]]:
    """(text for the root to print, problems) about this job; collective over ``comm``.

    Problems (each also a ``WARNING`` line): the launcher's rank count differs from the world's size
    (several size-1 worlds under a foreign launcher), or two MPI libraries are loaded at once.
    """
    rows = _mpi_lines()
    layout = node_layout(comm)
    torch_rows, n_gpus = _torch_rows(threads)
    choice = assign_device(device, layout.local_rank, layout.local_size, n_gpus, ranks_per_gpu)
    choices = comm.gather((layout.hostname, choice.device, choice.reason))
    launched = launcher_ranks()
    rows.append(("ranks", f"{comm.size} in this MPI world; launcher: "
                          + (f"{launched[1]}={launched[0]}" if launched else "none detected")))
    rows.append(("nodes", f"{layout.text()} (this host: {layout.hostname})"))
    rows += torch_rows
    if comm.is_root:
        rows.append(("devices", f"model.device {device}: {summarize(choices)}"))
        rows.append(_walltime_row())  # the root only: one scheduler query per job
    problems = [value for label, value in rows if label == "WARNING"]
    mismatch = size_mismatch(comm.size)
    if mismatch:
        problems.append(mismatch)
        rows.append(("WARNING", mismatch))
    width = max(len(label) for label, _ in rows)
    text = "\n".join(f"{label:<{width}}  {value}" for label, value in rows)
    return f"# acnn_mpi environment (python {sys.version.split()[0]})\n{text}", problems
