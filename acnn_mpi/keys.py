"""Names, shapes and units of the arrays that flow between stages.

Used as HDF5 dataset names, dictionary keys and ASE ``info``/``arrays`` keys, so that one spelling
holds everywhere. N = atoms in a batch, B = structures (systems) in a batch, E = edges (pairs).
"""

POSITIONS = "positions"        # (N, 3) float, Å, Cartesian
CELL = "cell"                  # (B, 3, 3) float, Å, rows are lattice vectors a, b, c
PBC = "pbc"                    # (B, 3) bool
NUMBERS = "numbers"            # (N,) int, atomic numbers
SYSTEM_IDX = "system_idx"      # (N,) int, structure index of each atom, 0..B-1, sorted
ENERGY = "energy"              # (B,) float, eV, total energy of each structure
FORCES = "forces"              # (N, 3) float, eV/Å
STRESS = "stress"              # (B, 3, 3) float, eV/Å³, ASE sign (positive = tensile)
VIRIAL = "virial"              # (B, 3, 3) float, eV, W = -V * stress
ENTHALPY = "enthalpy"          # (B,) float, eV, H = E + P V
VOLUME = "volume"              # (B,) float, Å³
EDGE_INDEX = "edge_index"      # (2, E) int, [centre i, neighbour j]
CELL_SHIFTS = "cell_shifts"    # (E, 3) float, integer multiples of the lattice vectors for j
STRUCTURE_ID = "structure_id"  # (B,) int, campaign-wide id of a structure
STATUS = "status"              # (B,) str, relaxation status (see acnn_mpi.relax.status)
REASON = "reason"              # (B,) str, why a structure is unphysical or failed
