"""Hand-made test geometries shared by several test modules."""

from __future__ import annotations

import numpy as np

#: A hydrogen-bonded water dimer: O...O 2.91 A, the donor O-H pointing at the acceptor O.
#: Atom order as ``load_molecule("O.O")`` gives it: O, O, then the hydrogens of the first and of the second.
WATER_DIMER_XYZ = np.array([
    [0.000, 0.000, 0.000],    # O donor
    [2.910, 0.000, 0.000],    # O acceptor
    [0.957, 0.000, 0.000],    # H (donated)
    [-0.240, 0.927, 0.000],   # H
    [3.150, -0.463, 0.800],   # H
    [3.150, -0.463, -0.800],  # H
])


def water_dimer():
    """The water dimer above as an RDKit molecule with that conformer."""
    from physff_openmm.molecule import load_molecule
    from physff_openmm.workflows.simulation import with_positions

    water = load_molecule("O.O")
    assert [a.GetSymbol() for a in water.GetAtoms()] == ["O", "O", "H", "H", "H", "H"]
    return with_positions(water, WATER_DIMER_XYZ)
