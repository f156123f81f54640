"""Labels of collapsed cells (forces of hundreds of eV/Å) stay in the store but are not trained on."""

import numpy as np
from ase.build import bulk
from ase.calculators.emt import EMT

from acnn_mpi.campaign.training_set import usable_labels
from acnn_mpi.data.store import FrameStore


def test_frames_with_huge_forces_are_not_trained_on(tmp_path):
    sane = bulk("Cu", "fcc", a=3.6, cubic=True)
    sane.rattle(0.05, seed=1)
    collapsed = bulk("Cu", "fcc", a=3.6, cubic=True)
    collapsed.positions[1] = collapsed.positions[0] + [0.9, 0.0, 0.0]  # 0.9 Å apart
    frames = []
    for atoms in (sane, collapsed):
        atoms.calc = EMT()
        atoms.get_potential_energy()
        frames.append(atoms)
    forces = [np.abs(a.get_forces()).max() for a in frames]
    assert forces[0] < 5 < 50 < forces[1]
    with FrameStore(tmp_path / "labels.h5") as store:
        store.append(frames)
        usable = usable_labels(store, max_force=50.0)
        assert usable.tolist() == [True, False]
        assert len(store) == 2  # nothing is removed from the store
