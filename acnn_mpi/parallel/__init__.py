"""The one package that talks to MPI (mpi4py, imported lazily).

Everything else receives a :class:`~acnn_mpi.parallel.comm.Comm` as an argument; the same code runs
unchanged without ``mpiexec`` (a size-1 serial communicator).
"""
