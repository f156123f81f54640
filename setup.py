"""acnn_mpi: self-optimizing crystal structure prediction with the ACNN potential, over MPI."""

from setuptools import find_packages, setup

setup(
    name="acnn_mpi",
    version="0.1.0",
    description="Automated crystal structure prediction with a self-optimizing attention-coupled "
    "neural network potential, parallel over MPI",
    long_description=open("README.md", encoding="utf-8").read(),
    long_description_content_type="text/markdown",
    python_requires=">=3.10",
    packages=find_packages(include=["acnn_mpi", "acnn_mpi.*"]),
    include_package_data=True,
    package_data={"acnn_mpi.model": ["csrc/*.cpp"]},  # the optional C++ kernels' source (model.compile: cpp)
    install_requires=[
        # torch: any 2.x from 2.2 on. Installing torch first (CPU or the CUDA build you want)
        # keeps pip from pulling a different build; see the README.
        "torch>=2.2",
        "numpy>=1.24",
        "h5py>=3.8",
        "ase>=3.23",
        "pymatgen>=2024.1.1",
        "spglib>=2.1",
        "pyxtal>=1.0",
        "vesin>=0.3",
        "mpi4py>=4.0",
        "mpich>=4.1",  # the MPI runtime as a wheel: no system MPI needed
        "PyYAML>=6.0",
        "pydantic>=2.5",
        "matplotlib>=3.7",
        "scipy>=1.10",
    ],
    extras_require={
        "test": ["pytest>=7.4", "pytest-timeout>=2.2"],
        "chgnet": ["chgnet>=0.3"],
        "bench": ["torch-sim-atomistic>=0.3"],
    },
    entry_points={"console_scripts": ["acnn-mpi=acnn_mpi.cli:main"]},
)
