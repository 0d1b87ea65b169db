"""PhysFFTemplateGenerator: physff molecules in openmm.app.ForceField, beside TIP3P, under every nonbonded method.

References: :func:`physff_openmm.create_system` for the molecule alone (the terms inside a
molecule), an independent NumPy evaluation of the stated cross-term rule (physff charges,
per-atom Lennard-Jones, Lorentz-Berthelot) with TIP3P's published parameters typed here,
and an independent implementation of the per-atom rule itself (scipy root finding on the
pair energy written out in ``reference_energy``).
"""

from __future__ import annotations

import math

import numpy as np
import openmm
import pytest
from openmm import app, unit

import physff_openmm as pf
from physff_openmm.errors import MoleculeError, UnsupportedElementError
from physff_openmm.forcefield import atom_lennard_jones
from physff_openmm.molecule import ensure_conformer, load_molecule, positions_angstrom
from physff_openmm.workflows.simulation import topology_from_mol

from reference_energy import KE, gaussians, reference_energy, switch
from structures import merged, water_residue

# tolerances, with units
REL_ENERGY_TOL = 1e-6  # relative: ForceField System vs create_system (the contract), Reference platform
FORCE_TOL = 1e-6  # kcal/mol/A, the same comparison
PERIODIC_ENERGY_TOL = 0.05  # kcal/mol: molecule alone in a large periodic box vs vacuum (issue 15)
PERIODIC_FORCE_TOL = 0.05  # kcal/mol/A, the same
CROSS_TERM_TOL = 1e-6  # relative (+ 1e-9 kcal/mol absolute): OpenMM cross terms vs NumPy

# TIP3P (Jorgensen et al. 1983) as openmm/app/data/amber14/tip3p.xml states it
TIP3P_Q = {"O": -0.834, "H": 0.417}
TIP3P_SIGMA_A = 3.1507524065751241
TIP3P_EPS_KCAL = 0.152  # 0.635968 kJ/mol
TIP3P_OH_A, TIP3P_HOH_DEG = 0.9572, 104.52
# the core docs/solvation.md gives hydrogens without Lennard-Jones (TIP3P's) against physff atoms: Angstrom, kcal/mol
BARE_H_CORE = (1.2, 0.01)

LIGAND = "CC(=O)Nc1ccc(O)cc1"  # paracetamol
KCAL_PER_KJ = 1.0 / 4.184
METHODS = {
    "NoCutoff": app.NoCutoff,
    "CutoffNonPeriodic": app.CutoffNonPeriodic,
    "CutoffPeriodic": app.CutoffPeriodic,
    "PME": app.PME,
    "LJPME": app.LJPME,
}


def state(system, positions_a, platform="Reference"):
    """Energy (kcal/mol) and forces (kcal/mol/A) of a System at positions in Angstrom."""
    ctx = openmm.Context(system, openmm.VerletIntegrator(0.001), openmm.Platform.getPlatformByName(platform))
    if system.usesPeriodicBoundaryConditions():
        ctx.setPeriodicBoxVectors(*system.getDefaultPeriodicBoxVectors())
    ctx.setPositions(np.asarray(positions_a) * 0.1)
    st = ctx.getState(getEnergy=True, getForces=True)
    e = st.getPotentialEnergy().value_in_unit(unit.kilocalorie_per_mole)
    f = st.getForces(asNumpy=True).value_in_unit(unit.kilocalorie_per_mole / unit.angstrom)
    return e, np.asarray(f)


def water_positions(o_a, rng) -> np.ndarray:
    """(3, 3) Angstrom: a TIP3P-shaped water with its O at ``o_a``, randomly oriented."""
    half = math.radians(TIP3P_HOH_DEG / 2)
    local = np.array([[0, 0, 0], [TIP3P_OH_A * math.sin(half), 0, TIP3P_OH_A * math.cos(half)],
                      [-TIP3P_OH_A * math.sin(half), 0, TIP3P_OH_A * math.cos(half)]])
    q, _ = np.linalg.qr(rng.normal(size=(3, 3)))
    return local @ q.T + np.asarray(o_a)


@pytest.fixture(scope="module")
def ligand():
    return ensure_conformer(load_molecule(LIGAND))


@pytest.fixture(scope="module")
def generator(test_model_path, ligand):
    return pf.PhysFFTemplateGenerator([ligand, "CCO", "CC(=O)[O-]", "C[NH3+]"], model=test_model_path)


def physff_forcefield(generator, *files):
    ff = app.ForceField(*files)
    ff.registerTemplateGenerator(generator.generator)
    return ff


# --- inside a molecule: exactly create_system's energy -----------------------------------

@pytest.mark.parametrize("backend", ["native", "torch"])
def test_nocutoff_equals_create_system(generator, ligand, backend):
    ff = physff_forcefield(generator, "amber14-all.xml", "amber14/tip3p.xml")
    system = ff.createSystem(topology_from_mol(ligand), nonbondedMethod=app.NoCutoff, removeCMMotion=False)
    params = generator.parameter_set(ligand)
    pos = positions_angstrom(ligand) + np.random.default_rng(0).normal(0, 0.05, (ligand.GetNumAtoms(), 3))
    e_ff, f_ff = state(system, pos)
    e_ref, f_ref = state(pf.create_system(params, backend=backend), pos)
    assert e_ff == pytest.approx(e_ref, rel=REL_ENERGY_TOL)
    assert np.abs(f_ff - f_ref).max() < FORCE_TOL
    # and both equal the formula evaluated independently
    assert e_ff + params.energy_offset == pytest.approx(reference_energy(params, pos)["total"], rel=REL_ENERGY_TOL)


@pytest.mark.parametrize("method", list(METHODS))
def test_molecule_alone_in_a_large_box_matches_vacuum(generator, ligand, method):
    """Every nonbonded method gives the vacuum energy and forces of a lone molecule (pairs inside are exact)."""
    top = topology_from_mol(ligand)
    top.setPeriodicBoxVectors(np.eye(3) * 6.0 * unit.nanometer)
    ff = physff_forcefield(generator, "amber14/tip3p.xml")
    system = ff.createSystem(top, nonbondedMethod=METHODS[method], nonbondedCutoff=1.2 * unit.nanometer,
                             removeCMMotion=False)
    pos = positions_angstrom(ligand)
    e_box, f_box = state(system, pos + 30.0)
    e_vac, f_vac = state(pf.create_system(generator.parameter_set(ligand), backend="native"), pos)
    assert abs(e_box - e_vac) < PERIODIC_ENERGY_TOL
    assert np.abs(f_box - f_vac).max() < PERIODIC_FORCE_TOL


# --- between molecules: the stated per-atom rule -----------------------------------------

def cross_terms(q, sigma_a, eps_kcal, groups, pos_a, physff=None, bare_h=None) -> float:
    """NumPy: Coulomb + Lennard-Jones (Lorentz-Berthelot) between atoms of different groups, kcal/mol; a
    bare hydrogen (``bare_h``, epsilon 0) meets a physff atom (``physff``) of negative charge with the docs' core
    instead."""
    e = 0.0
    n = len(q)
    physff = np.zeros(n, dtype=bool) if physff is None else np.asarray(physff)
    bare_h = np.zeros(n, dtype=bool) if bare_h is None else np.asarray(bare_h)
    for i in range(n):
        for j in range(i + 1, n):
            if groups[i] == groups[j]:
                continue
            r = float(np.linalg.norm(pos_a[i] - pos_a[j]))
            si, ei, sj, ej = sigma_a[i], eps_kcal[i], sigma_a[j], eps_kcal[j]
            if bare_h[i] and physff[j] and q[j] < 0:
                si, ei = BARE_H_CORE
            if bare_h[j] and physff[i] and q[i] < 0:
                sj, ej = BARE_H_CORE
            s = 0.5 * (si + sj)
            eps = math.sqrt(ei * ej)
            e += KE * q[i] * q[j] / r + 4.0 * eps * ((s / r) ** 12 - (s / r) ** 6)
    return e


def physff_atom_lj(params):
    """The per-atom (sigma, epsilon) of the package's rule, in Angstrom and kcal/mol (checked on its own below)."""
    sigma_nm, eps_kj = atom_lennard_jones(params)
    return sigma_nm * 10.0, eps_kj * KCAL_PER_KJ


def rule_reference(params, wall_kcal):
    """The docs' per-atom rule, implemented independently: (sigma in Angstrom, epsilon in kcal/mol) per atom."""
    from scipy.optimize import brentq

    r_on, r_off = params.switch
    sigma, eps = [], []
    for k, symbol in enumerate(params.symbols):
        c = params.class_parameters[params.atom_classes[k], params.atom_classes[k]]
        c0, c1 = abs(c[0]), abs(c[1])
        if symbol == "H":  # no LJ; a small core (Amber's H well depth) when its charge is not positive
            sigma.append(1.0)
            eps.append(0.0 if params.charges[k] > 0 else 0.0157)
            continue

        def excess(r):
            return switch(r, r_on, r_off) * gaussians(r, c) - c0 / r**6 + c1 / r**12 - wall_kcal

        grid = np.arange(0.8, r_off, 0.01)
        values = np.array([excess(r) for r in grid])
        down = np.flatnonzero((values[:-1] > 0) & (values[1:] <= 0))
        sigma.append(brentq(excess, grid[down[-1]], grid[down[-1] + 1]) if len(down) else (c1 / c0) ** (1 / 6))
        eps.append(c0 * c0 / (4.0 * c1))
    return np.array(sigma), np.array(eps)


def test_atom_lennard_jones_follows_the_stated_rule(generator, ligand, test_model_path):
    from physff_openmm.forcefield import WALL_ENERGY_KCAL

    for mol in (ligand, load_molecule("CC(=O)[O-]"), load_molecule("C[NH3+]")):
        params = generator.parameter_set(mol)
        sigma_a, eps_kcal = physff_atom_lj(params)
        ref_sigma, ref_eps = rule_reference(params, WALL_ENERGY_KCAL)
        np.testing.assert_allclose(sigma_a, ref_sigma, atol=1e-3)  # the package interpolates on a 0.001 A grid
        np.testing.assert_allclose(eps_kcal, ref_eps, rtol=1e-12)
        heavy = np.array([s != "H" for s in params.symbols])
        assert np.all(eps_kcal[heavy] > 0) and np.all(sigma_a[heavy] > 1.0)
        assert np.all((eps_kcal[~heavy] == 0) == (params.charges[~heavy] > 0))


def lj_net_reference(model_path, mol):
    """ln factors (n, 2) of a model's lj_net for each atom, from its own float64 embedding (not the class mean)."""
    import copy

    import torch

    from physff_openmm.graph import mol_to_graph
    from physff_openmm.model import load_model_file

    model = copy.deepcopy(load_model_file(model_path)).double()
    g = mol_to_graph(mol)
    with torch.no_grad():
        h = model.embed(g.x.double(), g.edge_index, g.edge_attr.double())
        t = torch.tanh(model.lj_net(h)).numpy()
    return t * np.array([model.config.lj_sigma_range, model.config.lj_epsilon_range])


#: Bondi van der Waals diameters (Angstrom), typed here for the floor's reference.
DIAMETER = {"C": 3.40, "N": 3.10, "O": 3.04, "S": 3.60}


@pytest.mark.parametrize("floored", [False, True])
def test_lj_net_scales_the_rule_within_its_bounds(head_model_path, floor_model_path, ligand, floored):
    """A model with an lj_net: the wall rule (hydrogens a 1 A, 0.001 kcal/mol core; epsilon >= 0.001) times exp(factors);
    with a sigma floor, no heavy atom's sigma below that fraction of its van der Waals diameter."""
    from physff_openmm.forcefield import WALL_ENERGY_KCAL

    model_path = floor_model_path if floored else head_model_path
    lifted = []
    for mol in (ligand, load_molecule("CC(=O)[O-]"), load_molecule("C[NH3+]")):
        params = pf.parameterize(mol, model=model_path)
        assert params.class_lj is not None and params.lj_sigma_floor == (0.9 if floored else 0.0)
        sigma_a, eps_kcal = physff_atom_lj(params)
        ref_sigma, ref_eps = rule_reference(params, WALL_ENERGY_KCAL)
        hydrogen = np.array([s == "H" for s in params.symbols])
        ref_sigma[hydrogen], ref_eps[hydrogen] = 1.0, 0.001
        ref_eps = np.maximum(ref_eps, 0.001)
        f = lj_net_reference(model_path, mol)
        scaled = ref_sigma * np.exp(f[:, 0])
        floor = np.array([0.0 if s == "H" else 0.9 * DIAMETER[s] for s in params.symbols]) if floored else 0.0
        np.testing.assert_allclose(sigma_a, np.maximum(scaled, floor), atol=2e-3)
        lifted.extend((scaled < floor - 0.01)[~hydrogen] if floored else [])
        np.testing.assert_allclose(eps_kcal, ref_eps * np.exp(f[:, 1]), rtol=1e-6)
        assert np.all(np.abs(params.class_lj[:, 0]) <= (1.0 if floored else 0.2))
        assert np.all(np.abs(params.class_lj[:, 1]) <= 2.0)
        assert np.abs(params.class_lj).max() > 0.05  # the random head moves the values: applied, not ignored
    if floored:  # the floor lifts some heavy atoms and leaves others: both branches checked
        assert any(lifted) and not all(lifted)


@pytest.fixture(scope="module")
def head_generator(head_model_path, ligand):
    return pf.PhysFFTemplateGenerator([ligand], model=head_model_path)


@pytest.mark.parametrize("which,seed", [("wall", 0), ("wall", 1), ("wall", 2), ("lj_net", 0)])
def test_ligand_water_interaction_is_coulomb_plus_lorentz_berthelot(generator, head_generator, ligand, which, seed):
    """Paracetamol + 4 TIP3P waters at 2.6-4 A from its atoms: E(complex) - E(ligand) - E(waters) = the rule
    (a model without an lj_net and one with)."""
    generator = head_generator if which == "lj_net" else generator
    rng = np.random.default_rng(seed)
    lig_pos = positions_angstrom(ligand)
    top_l = topology_from_mol(ligand)
    top_w = app.Topology()
    chain = top_w.addChain()
    waters = []
    for k in range(4):
        anchor = lig_pos[rng.integers(len(lig_pos))]
        for _ in range(1000):  # an O 2.6-4 A from the nearest ligand atom and 2.8 A from other waters
            o = anchor + rng.normal(size=3) * 2.5
            d_lig = np.linalg.norm(lig_pos - o, axis=1).min()
            if 2.6 < d_lig < 4.0 and all(np.linalg.norm(w[0] - o) > 2.8 for w in waters):
                break
        waters.append(water_positions(o, rng))
        water_residue(top_w, chain)
    top, pos = merged((top_l, lig_pos), (top_w, np.concatenate(waters)))
    ff = physff_forcefield(generator, "amber14-all.xml", "amber14/tip3p.xml")
    e_all, _ = state(ff.createSystem(top, nonbondedMethod=app.NoCutoff, rigidWater=False), pos)
    e_lig, _ = state(ff.createSystem(top_l, nonbondedMethod=app.NoCutoff), lig_pos)
    n_l = len(lig_pos)
    e_wat = 0.0
    for k in range(4):
        top_k = app.Topology()
        water_residue(top_k)
        e_wat += state(ff.createSystem(top_k, nonbondedMethod=app.NoCutoff, rigidWater=False), waters[k])[0]
    params = generator.parameter_set(ligand)
    sig_l, eps_l = physff_atom_lj(params)
    symbols = ["O", "H", "H"] * 4
    q = np.concatenate([params.charges, [TIP3P_Q[s] for s in symbols]])
    sigma = np.concatenate([sig_l, [TIP3P_SIGMA_A if s == "O" else 0.0 for s in symbols]])
    eps = np.concatenate([eps_l, [TIP3P_EPS_KCAL if s == "O" else 0.0 for s in symbols]])
    groups = [0] * n_l + [1 + k // 3 for k in range(12)]
    is_physff = np.arange(len(q)) < n_l
    expected = cross_terms(q, sigma, eps, groups, pos, physff=is_physff, bare_h=~is_physff & (np.array(
        [""] * n_l + symbols) == "H"))
    assert e_all - e_lig - e_wat == pytest.approx(expected, rel=CROSS_TERM_TOL, abs=1e-9)


@pytest.mark.parametrize("method", ["NoCutoff", "CutoffNonPeriodic", "PME"])
def test_bare_hydrogens_get_a_core_against_physff_atoms_only(generator, ligand, method):
    """TIP3P's hydrogens (epsilon 0 in NonbondedForce) meet physff atoms of negative charge with the docs' core, under
    the System's cutoff; water's oxygens and the other physff atoms are not in that force; a lone molecule has none."""
    lig_pos = positions_angstrom(ligand)
    top_w = app.Topology()
    for _ in range(2):
        water_residue(top_w)
    rng = np.random.default_rng(0)
    top, _ = merged((topology_from_mol(ligand), lig_pos),
                    (top_w, np.concatenate([water_positions(lig_pos.mean(0) + [8.0 + 4 * k, 0, 0], rng) for k in range(2)])))
    top.setPeriodicBoxVectors(np.eye(3) * 4.0 * unit.nanometer)
    ff = physff_forcefield(generator, "amber14/tip3p.xml")
    system = ff.createSystem(top, nonbondedMethod=METHODS[method], nonbondedCutoff=1.1 * unit.nanometer)
    cores = [f for f in system.getForces() if isinstance(f, openmm.CustomNonbondedForce)]
    assert [f.getName() for f in cores] == [pf.forcefield.BARE_HYDROGEN_CORE_NAME]
    core = cores[0]
    n_l = ligand.GetNumAtoms()
    water_h = [n_l + k for k in range(6) if k % 3]
    assert core.getNumInteractionGroups() == 1
    set1, set2 = core.getInteractionGroupParameters(0)
    charges = generator.parameter_set(ligand).charges
    assert sorted(set1) == [k for k in range(n_l) if charges[k] < 0] and sorted(set2) == water_h
    assert 0 < len(set1) < n_l
    for k in water_h:
        assert core.getParticleParameters(k) == pytest.approx([BARE_H_CORE[0] / 10, BARE_H_CORE[1] * 4.184])
    sig_l, eps_l = atom_lennard_jones(generator.parameter_set(ligand))
    assert np.array([core.getParticleParameters(k) for k in range(n_l)]) == pytest.approx(
        np.stack([sig_l, eps_l], axis=1), rel=1e-12)
    expected = {"NoCutoff": openmm.CustomNonbondedForce.NoCutoff,
                "CutoffNonPeriodic": openmm.CustomNonbondedForce.CutoffNonPeriodic,
                "PME": openmm.CustomNonbondedForce.CutoffPeriodic}[method]
    assert core.getNonbondedMethod() == expected
    if method != "NoCutoff":
        assert core.getCutoffDistance().value_in_unit(unit.nanometer) == pytest.approx(1.1)
    nb = next(f for f in system.getForces() if isinstance(f, openmm.NonbondedForce))
    assert core.getNumExclusions() == nb.getNumExceptions()  # the CPU platform wants identical exclusions
    openmm.Context(system, openmm.VerletIntegrator(0.001), openmm.Platform.getPlatformByName("CPU"))
    alone = ff.createSystem(topology_from_mol(ligand), nonbondedMethod=app.NoCutoff)
    assert not any(isinstance(f, openmm.CustomNonbondedForce) for f in alone.getForces())


def test_copies_and_charged_molecules(generator, ligand):
    """Two ethanols, acetate, methylammonium and paracetamol: each molecule exact, the rule between all of them."""
    parts, mols = [], []
    offset = 0.0
    for smi in ("CCO", "CCO", "CC(=O)[O-]", "C[NH3+]", LIGAND):
        mol = ligand if smi == LIGAND else ensure_conformer(load_molecule(smi), seed=len(mols))
        pos = positions_angstrom(mol) + np.array([offset, 0.0, 0.0])
        offset += 6.0
        parts.append((topology_from_mol(mol), pos))
        mols.append(mol)
    top, pos = merged(*parts)
    ff = physff_forcefield(generator)
    system = ff.createSystem(top, nonbondedMethod=app.NoCutoff)
    e_all, _ = state(system, pos)
    q, sigma, eps, groups = [], [], [], []
    e_inside, start = 0.0, 0
    for k, mol in enumerate(mols):
        params = generator.parameter_set(mol)
        n = params.n_atoms
        e_inside += state(pf.create_system(params, backend="native"), pos[start:start + n])[0]
        s, e = physff_atom_lj(params)
        q.extend(params.charges)
        sigma.extend(s)
        eps.extend(e)
        groups.extend([k] * n)
        start += n
    nb = next(f for f in system.getForces() if isinstance(f, openmm.NonbondedForce))
    charges = [nb.getParticleParameters(i)[0].value_in_unit(unit.elementary_charge) for i in range(nb.getNumParticles())]
    assert sum(charges) == pytest.approx(0.0, abs=1e-9)  # -1 + 1
    expected = e_inside + cross_terms(np.array(q), np.array(sigma), np.array(eps), groups, pos)
    assert e_all == pytest.approx(expected, rel=REL_ENERGY_TOL)
    assert generator.energy_offset(top) == pytest.approx(
        sum(generator.parameter_set(m).energy_offset for m in mols), rel=1e-12)


# --- constraints, masses, serialization --------------------------------------------------

def test_constraints_and_hydrogen_mass(test_model_path, ligand):
    gen = pf.PhysFFTemplateGenerator([ligand], model=test_model_path)
    top_l = topology_from_mol(ligand)
    top_w = app.Topology()
    water_residue(top_w)
    top, pos = merged((top_l, positions_angstrom(ligand)), (top_w, water_positions([20.0, 0, 0], np.random.default_rng(0))))
    ff = physff_forcefield(gen, "amber14/tip3p.xml")
    system = ff.createSystem(top, constraints=app.HBonds, hydrogenMass=2.0 * unit.amu)
    ref = gen.reference_positions(ligand)
    params = gen.parameter_set(ligand)
    n_l = params.n_atoms
    h_bonds = {tuple(p) for p in params.covalent_pairs.tolist() if "H" in (params.symbols[p[0]], params.symbols[p[1]])}
    found = {}
    for k in range(system.getNumConstraints()):
        i, j, d = system.getConstraintParameters(k)
        found[(min(i, j), max(i, j))] = d.value_in_unit(unit.nanometer)
    ligand_constraints = {p: d for p, d in found.items() if p[1] < n_l}
    assert set(ligand_constraints) == h_bonds
    for (i, j), d in ligand_constraints.items():
        assert d == pytest.approx(np.linalg.norm(ref[i] - ref[j]), rel=1e-12)
    assert len(found) - len(ligand_constraints) == 3  # rigid TIP3P
    masses = [system.getParticleMass(i).value_in_unit(unit.amu) for i in range(n_l)]
    assert all(m == pytest.approx(2.0) for m, s in zip(masses, params.symbols) if s == "H")
    total = sum(app.Element.getBySymbol(s).mass.value_in_unit(unit.amu) for s in params.symbols)
    assert sum(masses) == pytest.approx(total, rel=1e-12)


def test_reference_positions_are_a_minimum(test_model_path):
    gen = pf.PhysFFTemplateGenerator(["CCO"], model=test_model_path)
    params = gen.parameter_set("CCO")
    _, forces = state(pf.create_system(params, backend="native"), gen.reference_positions("CCO") * 10.0)
    assert np.sqrt((forces**2).sum(axis=1).mean()) < 0.05  # kcal/mol/A


def test_xml_round_trip(generator, ligand):
    top = topology_from_mol(ligand)
    top.setPeriodicBoxVectors(np.eye(3) * 4.0 * unit.nanometer)
    system = physff_forcefield(generator, "amber14/tip3p.xml").createSystem(top, nonbondedMethod=app.PME)
    copy = openmm.XmlSerializer.deserialize(openmm.XmlSerializer.serialize(system))
    pos = positions_angstrom(ligand) + 20.0
    assert state(copy, pos)[0] == pytest.approx(state(system, pos)[0], rel=1e-12)


def test_one_forcefield_builds_many_systems(generator, ligand):
    """The template and the force generator are added once per ForceField, not per createSystem."""
    ff = physff_forcefield(generator)
    top = topology_from_mol(ligand)
    first = ff.createSystem(top)
    second = ff.createSystem(top)
    assert [type(f).__name__ for f in first.getForces()] == [type(f).__name__ for f in second.getForces()]
    pos = positions_angstrom(ligand)
    assert state(first, pos)[0] == pytest.approx(state(second, pos)[0], rel=1e-12)


# --- bad inputs: one clear error each ----------------------------------------------------

def test_unmatched_residue_is_the_forcefield_error(generator):
    mol = ensure_conformer(load_molecule("CCN"))  # not one of the generator's molecules
    ff = physff_forcefield(generator, "amber14-all.xml", "amber14/tip3p.xml")
    with pytest.raises(ValueError, match="No template found for residue"):
        ff.createSystem(topology_from_mol(mol))


def test_same_graph_different_charges_is_rejected(test_model_path):
    with pytest.raises(MoleculeError, match="same atoms and bonds but different formal charges"):
        pf.PhysFFTemplateGenerator(["[CH3+]", "[CH3-]"], model=test_model_path)
    # the same molecule twice is fine, and so are stereoisomers (the model reads no stereochemistry)
    gen = pf.PhysFFTemplateGenerator(["CCO", "OCC", "C[C@H](N)O", "C[C@@H](N)O"], model=test_model_path)
    assert gen.smiles == ["[H]OC([H])([H])C([H])([H])[H]", "[H]OC([H])(N([H])[H])C([H])([H])[H]"]


def test_unsupported_element_is_rejected(test_model_path):
    with pytest.raises(UnsupportedElementError, match="I"):
        pf.PhysFFTemplateGenerator(["CI"], model=test_model_path)


def test_pme_needs_a_periodic_topology(generator, ligand):
    ff = physff_forcefield(generator, "amber14/tip3p.xml")
    with pytest.raises(ValueError, match="periodic box"):
        ff.createSystem(topology_from_mol(ligand), nonbondedMethod=app.PME)


def test_hangles_constrain_angles_at_the_vacuum_minimum(test_model_path):
    """Methanol with HAngles: every bond, and the H-C-H and H-O-C angles (OpenMM's rule) as 1-3 distances."""
    gen = pf.PhysFFTemplateGenerator(["CO"], model=test_model_path)
    mol = ensure_conformer(load_molecule("CO"))
    system = physff_forcefield(gen).createSystem(topology_from_mol(mol), constraints=app.HAngles)
    ref = gen.reference_positions("CO")
    params = gen.parameter_set("CO")
    sym = params.symbols
    neighbours = {k: set() for k in range(params.n_atoms)}
    for i, j in params.covalent_pairs.tolist():
        neighbours[i].add(j)
        neighbours[j].add(i)
    angles = set()
    for center, ends in neighbours.items():
        for a in ends:
            for b in ends:
                n_h = (sym[a] == "H") + (sym[b] == "H")
                if a < b and (n_h == 2 or (n_h == 1 and sym[center] == "O")):
                    angles.add((a, b))
    assert len(angles) == 4  # three H-C-H, one H-O-C
    found = {}
    for k in range(system.getNumConstraints()):
        i, j, d = system.getConstraintParameters(k)
        found[(min(i, j), max(i, j))] = d.value_in_unit(unit.nanometer)
    assert set(found) == {tuple(p) for p in params.covalent_pairs.tolist()} | angles
    for i, j in found:
        assert found[(i, j)] == pytest.approx(np.linalg.norm(ref[i] - ref[j]), rel=1e-12)


def test_charmm_lennard_jones_force_is_refused(test_model_path):
    unusual = ensure_conformer(load_molecule("OC(=O)c1ccc(Cl)cc1SC[NH3+]"))  # no CHARMM36 template has it
    ff = physff_forcefield(pf.PhysFFTemplateGenerator([unusual], model=test_model_path), "charmm36.xml")
    with pytest.raises(pf.ConfigError, match="LennardJonesForce"):
        ff.createSystem(topology_from_mol(unusual))
