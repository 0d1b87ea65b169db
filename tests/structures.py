"""Hand-made test geometries shared by several test modules."""

from __future__ import annotations

import numpy as np
import openmm
from openmm import app, unit

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


def water_residue(top: app.Topology, chain=None):
    """Append a TIP3P-named water (HOH: O, H1, H2, two bonds) to a Topology."""
    chain = chain or top.addChain()
    res = top.addResidue("HOH", chain)
    o = top.addAtom("O", app.element.oxygen, res)
    h1 = top.addAtom("H1", app.element.hydrogen, res)
    h2 = top.addAtom("H2", app.element.hydrogen, res)
    top.addBond(o, h1)
    top.addBond(o, h2)
    return res


def merged(*parts):
    """One Topology from several (Topology, positions) parts, atoms in order."""
    top = app.Topology()
    pos = []
    for part_top, part_pos in parts:
        chain = top.addChain()
        atoms = {}
        for res in part_top.residues():
            new = top.addResidue(res.name, chain)
            for atom in res.atoms():
                atoms[atom] = top.addAtom(atom.name, atom.element, new)
        for a, b in part_top.bonds():
            top.addBond(atoms[a], atoms[b])
        pos.append(np.asarray(part_pos))
    return top, np.concatenate(pos)


def tip3p_interaction(partner, model, frames: np.ndarray) -> np.ndarray:
    """E(AB) - E(A) - E(B), kcal/mol, of a physff molecule (``partner``: SMILES or RDKit molecule, its atoms first in
    each of ``frames``) and one TIP3P water (the last three atoms: O, H, H) through ``openmm.app.ForceField`` with
    :class:`physff_openmm.PhysFFTemplateGenerator` and ``amber14/tip3p.xml``, no cutoff, Reference platform."""
    import physff_openmm as pf
    from physff_openmm.molecule import load_molecule
    from physff_openmm.workflows.simulation import topology_from_mol

    mol = load_molecule(partner)
    gen = pf.PhysFFTemplateGenerator([mol], model=model)
    ff = app.ForceField("amber14/tip3p.xml")
    ff.registerTemplateGenerator(gen.generator)
    top_a = topology_from_mol(mol)
    top_w = app.Topology()
    water_residue(top_w)
    n_a = mol.GetNumAtoms()
    top, _ = merged((top_a, frames[0, :n_a]), (top_w, frames[0, n_a:]))

    def energies(t, xs):
        system = ff.createSystem(t, nonbondedMethod=app.NoCutoff, rigidWater=False)
        ctx = openmm.Context(system, openmm.VerletIntegrator(0.001), openmm.Platform.getPlatformByName("Reference"))
        out = []
        for x in xs:
            ctx.setPositions(np.asarray(x) * 0.1)
            out.append(ctx.getState(getEnergy=True).getPotentialEnergy().value_in_unit(unit.kilocalorie_per_mole))
        return np.array(out)

    return energies(top, frames) - energies(top_a, frames[:, :n_a]) - energies(top_w, frames[:, n_a:])
