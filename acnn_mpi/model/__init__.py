"""Atomic-energy models and their derivatives.

forces.evaluate (energy, forces, stress of any model), potential.ACNN (the paper's potential:
descriptor → embedding → attention → fitting), lennard_jones.LennardJones (reference model),
calculator.ACNNCalculator (ASE). Submodules are imported where used, not here.
"""
