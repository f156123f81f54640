"""Labels of collapsed cells (forces of hundreds of eV/Å): kept in the store, never held out, and
trained on with a bounded weight (or, with ``collapsed_labels: drop``, not at all)."""

import numpy as np
import pytest
from ase.build import bulk
from ase.calculators.emt import EMT

from acnn_mpi.campaign.training_set import training_split, usable_labels
from acnn_mpi.config import TrainingSettings
from acnn_mpi.data.store import FrameStore
from acnn_mpi.train.frames import collapsed_weights, load_frames


def labelled(n_collapsed=1, n_sane=1):
    frames = []
    for k in range(n_sane + n_collapsed):
        atoms = bulk("Cu", "fcc", a=3.6, cubic=True)
        atoms.rattle(0.05, seed=k)
        if k >= n_sane:
            atoms.positions[1] = atoms.positions[0] + [0.9, 0.0, 0.0]  # 0.9 Å apart
        atoms.calc = EMT()
        atoms.get_potential_energy()
        atoms.info["structure_id"] = k
        frames.append(atoms)
    return frames


def test_frames_with_huge_forces_are_flagged_and_kept(tmp_path):
    frames = labelled()
    forces = [np.abs(a.get_forces()).max() for a in frames]
    assert forces[0] < 5 < 50 < forces[1]
    with FrameStore(tmp_path / "labels.h5") as store:
        store.append(frames)
        usable = usable_labels(store, max_force=50.0)
        assert usable.tolist() == [True, False]
        assert len(store) == 2  # nothing is removed from the store
        weights = collapsed_weights(load_frames(store), 50.0)
    assert weights[0] == 1.0 and weights[1] == pytest.approx((50.0 / forces[1]) ** 2)


@pytest.mark.parametrize("mode", ["weight", "drop"])
def test_collapsed_cells_train_unless_dropped_and_are_never_held_out(tmp_path, mode):
    path = tmp_path / "labels.h5"
    with FrameStore(path) as store:
        store.append(labelled(n_collapsed=10, n_sane=10), iteration=1)
    training = TrainingSettings(validation_fraction=0.5, collapsed_labels=mode)
    order, held_out = training_split(path, training)
    collapsed = set(range(10, 20))
    assert not collapsed & set(held_out.tolist()) and 0 < len(held_out) < 10
    assert (collapsed <= set(order.tolist())) == (mode == "weight")
    assert set(range(10)) <= set(order.tolist())
