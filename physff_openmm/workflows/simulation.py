"""Single-point energies, minimization, interaction energies and the OpenMM Simulation.

Units: the Python API speaks kcal/mol and Angstrom (as the model does) and
converts at the OpenMM boundary (kJ/mol, nm). Absolute energies include the
constant E_lin (``ParameterSet.energy_offset``), so they compare with quantum
chemistry; OpenMM's own potential energy does not include it.
"""

from __future__ import annotations

import math
import warnings
from dataclasses import dataclass

import numpy as np
import openmm
import torch
from openmm import app, unit
from rdkit import Chem

from ..energy import pair_energy_terms
from ..errors import ConfigError, ModelFailureError, MoleculeError
from ..molecule import ensure_conformer, fragment_atom_indices, has_3d_conformer, load_molecule, positions_angstrom
from .._progress import progress_bar, progress_enabled
from ..parameters import ParameterSet, parameterize
from ..system import create_system, get_platform
from ..units import ANGSTROM_TO_NM, KCAL_TO_KJ, KJ_TO_KCAL, NM_TO_ANGSTROM, in_units

__all__ = [
    "ENSEMBLES",
    "CONSTRAINTS",
    "DEFAULT_TIMESTEP_FS",
    "BAROSTAT_INTERVAL",
    "check_md_settings",
    "make_integrator",
    "MAX_UNCONSTRAINED_TIMESTEP_FS",
    "build_simulation",
    "hydrogen_bond_pairs",
    "add_hydrogen_bond_constraints",
    "degrees_of_freedom",
    "energy",
    "energy_components",
    "minimize",
    "interaction_energy",
    "BROKEN_BOND_FRACTION",
    "progress_bar",
    "progress_enabled",
    "bond_changes",
    "check_bonds_kept",
    "topology_from_mol",
    "with_positions",
]

#: Ensembles of MD: Langevin NVT, Verlet NVE, and Langevin with a Monte Carlo barostat (NPT,
#: periodic boxes only: :func:`physff_openmm.workflows.solvation.build_solvated_system`).
ENSEMBLES: tuple[str, ...] = ("nvt", "nve", "npt")
#: Monte Carlo barostat: steps between volume moves.
BAROSTAT_INTERVAL = 25
#: The unit of forces and minimizer tolerances in the API (numbers are taken in it; Quantities are converted).
_FORCE_UNIT = unit.kilocalorie_per_mole / unit.angstrom
#: Default minimizer tolerance: RMS force, kcal/mol/Angstrom.
DEFAULT_TOLERANCE_KCAL_MOL_A: float = 0.1
#: Constraints of :func:`build_simulation` and ``run_md``: ``"hbonds"`` (every covalent bond with a
#: hydrogen atom, as ``openmm.app.HBonds``) or None (no constraints).
CONSTRAINTS: tuple[str | None, ...] = ("hbonds", None)
#: Default MD time step, fs, for the default constraints (bonds to hydrogen).
DEFAULT_TIMESTEP_FS: float = 2.0
#: Longest time step, fs, recommended without constraints: X-H stretches vibrate with periods of
#: 9-11 fs, too fast for a 2 fs step (a longer step warns).
MAX_UNCONSTRAINED_TIMESTEP_FS: float = 1.0

#: A covalent bond whose length moves further than this fraction from its length in the input
#: geometry counts as broken: after a minimization or during MD it is an error that names the
#: bond (:func:`check_bonds_kept`), as in the accuracy report's MD test (docs/accuracy.md).
BROKEN_BOND_FRACTION = 0.3

_BOND_TYPES = {
    Chem.BondType.SINGLE: (app.Single, 1),
    Chem.BondType.DOUBLE: (app.Double, 2),
    Chem.BondType.TRIPLE: (app.Triple, 3),
    Chem.BondType.AROMATIC: (app.Aromatic, None),
}


# --- checks -----------------------------------------------------------------------------

def check_positive(name: str, value, *, integer: bool = False) -> None:
    """Raise :class:`ConfigError` unless ``value`` is a finite positive number (an integer if asked)."""
    if isinstance(value, bool) or not isinstance(value, (int, float, np.integer, np.floating)):
        raise ConfigError(f"{name} must be a number, got {value!r}")
    if integer and not float(value).is_integer():
        raise ConfigError(f"{name} must be a whole number, got {value!r}")
    if not math.isfinite(float(value)) or value <= 0:
        raise ConfigError(f"{name} must be positive, got {value!r}")


def _platform(platform) -> openmm.Platform:
    """An OpenMM platform object from a name, a Platform, or None (the fastest usable one)."""
    if isinstance(platform, openmm.Platform):
        return platform
    return get_platform(platform)


# --- molecule -> OpenMM -----------------------------------------------------------------

def topology_from_mol(mol: Chem.Mol) -> app.Topology:
    """An OpenMM Topology of an RDKit molecule: one chain, one residue per fragment, all bonds.

    Atom indices follow the molecule's atom order, as the System's particles do.
    OpenMM needs the atoms of a residue to be contiguous, so a fragment whose
    atoms interleave with another's (``"CCO.O"`` SMILES puts all hydrogens last)
    gets one residue per contiguous run, all with the fragment's name and id.
    Residue and atom names come from the molecule's PDB information when it has
    some; otherwise residues are ``MOL`` (one fragment) or ``M1``, ``M2``, ...
    and atoms are the element symbol plus a running number per fragment.
    """
    top = app.Topology()
    chain = top.addChain("A")
    frags = fragment_atom_indices(mol)
    fragment_of = [0] * mol.GetNumAtoms()
    names = []
    for k, frag in enumerate(frags):
        info = mol.GetAtomWithIdx(frag[0]).GetPDBResidueInfo()
        if info is not None and info.GetResidueName().strip():
            names.append(info.GetResidueName().strip())
        else:
            names.append("MOL" if len(frags) == 1 else f"M{k + 1}"[:3])
        for idx in frag:
            fragment_of[idx] = k
    counts: list[dict[str, int]] = [{} for _ in frags]
    atoms = []
    residue, current = None, -1
    for atom in mol.GetAtoms():
        k = fragment_of[atom.GetIdx()]
        if k != current:
            residue, current = top.addResidue(names[k], chain, id=str(k + 1)), k
        symbol = atom.GetSymbol()
        counts[k][symbol] = counts[k].get(symbol, 0) + 1
        info = atom.GetPDBResidueInfo()
        name = info.GetName().strip() if info is not None and info.GetName().strip() else f"{symbol}{counts[k][symbol]}"
        atoms.append(top.addAtom(name, app.Element.getBySymbol(symbol), residue))
    for bond in mol.GetBonds():
        kind, order = _BOND_TYPES.get(bond.GetBondType(), (None, None))
        top.addBond(atoms[bond.GetBeginAtomIdx()], atoms[bond.GetEndAtomIdx()], type=kind, order=order)
    return top


def make_conformer(positions_a: np.ndarray, conf_id: int = 0) -> Chem.Conformer:
    """A 3D RDKit conformer with id ``conf_id`` at positions (n, 3) Angstrom."""
    conf = Chem.Conformer(len(positions_a))
    for i, (x, y, z) in enumerate(np.asarray(positions_a, dtype=np.float64)):
        conf.SetAtomPosition(i, (float(x), float(y), float(z)))
    conf.Set3D(True)
    conf.SetId(int(conf_id))
    return conf


def with_positions(mol: Chem.Mol, positions_a: np.ndarray, *, properties: dict | None = None) -> Chem.Mol:
    """A copy of ``mol`` with one conformer (id 0) at ``positions_a`` (n, 3) Angstrom."""
    out = Chem.Mol(mol)
    out.RemoveAllConformers()
    out.AddConformer(make_conformer(positions_a), assignId=False)
    for key, value in (properties or {}).items():
        out.SetProp(str(key), str(value))
    return out


@dataclass
class Prepared:
    """A molecule ready for OpenMM: validated Mol with a 3D conformer, parameters, System, Topology."""

    mol: Chem.Mol
    params: ParameterSet
    system: openmm.System
    topology: app.Topology
    backend: str

    @property
    def positions_angstrom(self) -> np.ndarray:
        return positions_angstrom(self.mol)

    @property
    def positions_nm(self) -> np.ndarray:
        return positions_angstrom(self.mol) * ANGSTROM_TO_NM


def prepare(molecule, *, model="default", backend: str = "native", charge: int | None = None) -> Prepared:
    """Load, validate and parameterize a molecule and build its System and Topology.

    A molecule without 3D coordinates (SMILES) is embedded (RDKit ETKDG).
    """
    mol = ensure_conformer(load_molecule(molecule, charge=charge))
    params = parameterize(mol, model=model)
    system = create_system(params, backend=backend)
    return Prepared(mol=mol, params=params, system=system, topology=topology_from_mol(mol), backend=backend)


def check_constraints(constraints) -> str | None:
    """The constraint setting as ``"hbonds"`` or None; ``openmm.app.HBonds`` counts as ``"hbonds"``.

    Raises
    ------
    ConfigError
        Anything else (OpenMM's ``AllBonds`` and ``HAngles`` are not offered).
    """
    if constraints is app.HBonds:
        return "hbonds"
    if constraints is None or (isinstance(constraints, str) and constraints == "hbonds"):
        return constraints
    raise ConfigError(
        f"unknown constraints {constraints!r}; choose 'hbonds' (bonds to hydrogen) or None (no constraints)"
    )


def hydrogen_bond_pairs(params: ParameterSet) -> np.ndarray:
    """The covalent pairs that involve a hydrogen atom, (m, 2) zero-based atom indices.

    These are the bonds ``openmm.app.HBonds`` constrains: every covalent bond
    (``ParameterSet.covalent_pairs``) with at least one H atom.
    """
    pairs = np.asarray(params.covalent_pairs, dtype=np.int64).reshape(-1, 2)
    is_h = np.array([s == "H" for s in params.symbols], dtype=bool)
    return pairs[is_h[pairs[:, 0]] | is_h[pairs[:, 1]]]


def add_hydrogen_bond_constraints(system: openmm.System, params: ParameterSet, positions_nm: np.ndarray) -> np.ndarray:
    """Constrain every covalent bond to hydrogen of ``system`` at its length in ``positions_nm``.

    Parameters
    ----------
    system : openmm.System
        Built by :func:`physff_openmm.create_system` for ``params`` (atoms in the same order);
        changed in place: one ``addConstraint`` per bond. Add constraints before a Context
        is created on the System.
    params : ParameterSet
        Gives the covalent pairs and element symbols.
    positions_nm : numpy.ndarray
        (n, 3) starting positions, nm; each constraint keeps its bond at this length.

    Returns
    -------
    numpy.ndarray
        The constrained pairs, (m, 2).
    """
    x = np.asarray(positions_nm, dtype=np.float64).reshape(-1, 3)
    if x.shape[0] != system.getNumParticles():
        raise ConfigError(f"{x.shape[0]} positions for a System of {system.getNumParticles()} particles")
    pairs = hydrogen_bond_pairs(params)
    lengths = np.linalg.norm(x[pairs[:, 0]] - x[pairs[:, 1]], axis=1)
    for (i, j), d in zip(pairs.tolist(), lengths.tolist()):
        system.addConstraint(int(i), int(j), float(d))
    return pairs


def degrees_of_freedom(system: openmm.System) -> int:
    """Degrees of freedom as OpenMM's StateDataReporter counts them for a temperature.

    Three per particle with mass, minus one per constraint between particles of which at
    least one has mass, minus three when the System removes centre-of-mass motion.
    """
    zero = 0 * unit.dalton
    dof = sum(3 for i in range(system.getNumParticles()) if system.getParticleMass(i) > zero)
    for k in range(system.getNumConstraints()):
        i, j, _ = system.getConstraintParameters(k)
        if system.getParticleMass(i) > zero or system.getParticleMass(j) > zero:
            dof -= 1
    if any(isinstance(system.getForce(k), openmm.CMMotionRemover) for k in range(system.getNumForces())):
        dof -= 3
    return dof


def make_context(system: openmm.System, platform=None, integrator: openmm.Integrator | None = None) -> openmm.Context:
    """An OpenMM Context on ``platform`` (a dummy Verlet integrator when none is given)."""
    if integrator is None:
        integrator = openmm.VerletIntegrator(1.0 * unit.femtoseconds)
    return openmm.Context(system, integrator, _platform(platform))


def potential_kcal_mol(context: openmm.Context, groups: int | set[int] = -1) -> float:
    """OpenMM potential energy of the context (force groups ``groups``), kcal/mol, without E_lin."""
    state = context.getState(getEnergy=True, groups=groups)
    return state.getPotentialEnergy().value_in_unit(unit.kilojoule_per_mole) * KJ_TO_KCAL


def context_positions_angstrom(context: openmm.Context) -> np.ndarray:
    """Positions of the context, (n, 3) Angstrom."""
    pos = context.getState(getPositions=True).getPositions(asNumpy=True)
    return np.asarray(pos.value_in_unit(unit.nanometer), dtype=np.float64) * NM_TO_ANGSTROM


class _MinimizationProgress(openmm.MinimizationReporter):
    """Counts the minimizer's iterations on a progress bar."""

    def __init__(self, bar):
        super().__init__()
        self._bar = bar

    def report(self, iteration, x, grad, args):  # noqa: D102 - OpenMM MinimizationReporter API
        self._bar.update(1)
        return False


def minimize_context(
    context: openmm.Context,
    tolerance_kcal_mol_a: float = DEFAULT_TOLERANCE_KCAL_MOL_A,
    max_iterations: int = 0,
    progress: bool | None = False,
) -> None:
    """L-BFGS minimization of a context in place (OpenMM LocalEnergyMinimizer).

    OpenMM's minimizer can end above its starting energy when forces become
    extreme (overlapping atoms); the starting coordinates are then restored and a
    ``RuntimeWarning`` says so. ``progress`` counts iterations on a bar (None: when
    stderr is a terminal).
    """
    start = context.getState(getPositions=True, getEnergy=True)
    tol = tolerance_kcal_mol_a * KCAL_TO_KJ / ANGSTROM_TO_NM  # kJ/mol/nm
    if progress_enabled(progress):
        with progress_bar(None, "iteration", True, desc="minimizing") as bar:
            openmm.LocalEnergyMinimizer.minimize(context, tol, int(max_iterations), _MinimizationProgress(bar))
    else:
        openmm.LocalEnergyMinimizer.minimize(context, tol, int(max_iterations))
    e0 = start.getPotentialEnergy().value_in_unit(unit.kilojoule_per_mole)
    e1 = context.getState(getEnergy=True).getPotentialEnergy().value_in_unit(unit.kilojoule_per_mole)
    if not math.isfinite(e1) or e1 > e0 + 1e-6 * max(1.0, abs(e0)):
        context.setPositions(start.getPositions())
        warnings.warn(
            f"the energy minimizer did not lower the energy ({e0 * KJ_TO_KCAL:.3f} -> {e1 * KJ_TO_KCAL:.3f} kcal/mol); "
            "the starting coordinates were kept",
            RuntimeWarning,
            stacklevel=2,
        )


# --- public workflows -------------------------------------------------------------------

def build_simulation(
    molecule,
    *,
    model="default",
    backend: str = "native",
    platform=None,
    charge: int | None = None,
    temperature_k: float = 300.0,
    timestep_fs: float | None = None,
    friction_per_ps: float = 1.0,
    ensemble: str = "nvt",
    seed: int | None = None,
    constraints: str | None = "hbonds",
) -> app.Simulation:
    """An OpenMM Simulation of a molecule or complex in vacuum with the physff force field.

    By default bonds to hydrogen are constrained (``openmm.app.HBonds``: every covalent bond
    with an H atom, at its length in the starting geometry) and the time step is 2 fs.

    Parameters
    ----------
    molecule : rdkit.Chem.Mol, str or path
        Anything :func:`physff_openmm.molecule.load_molecule` accepts. Its
        conformer gives the positions; without one, RDKit embeds it.
    model : str or path
        Model name or model file.
    backend : {"native", "torch"}
        OpenMM-only forces, or a TorchForce for the short-range terms.
    platform : str or openmm.Platform, optional
        ``Reference``, ``CPU``, ``CUDA``, ``OpenCL``; default: the fastest usable one.
    charge : int, optional
        Total charge (needed for XYZ files).
    temperature_k : float
        Thermostat temperature, K (NVT).
    timestep_fs : float, optional
        Integration time step, fs (default :data:`DEFAULT_TIMESTEP_FS`, 2 fs). Without
        constraints take 1 fs: a longer step warns (``RuntimeWarning``), since X-H bonds
        vibrate too fast for it.
    friction_per_ps : float
        Langevin friction coefficient, 1/ps (NVT).
    ensemble : {"nvt", "nve"}
        LangevinMiddleIntegrator (NVT) or VerletIntegrator (NVE); NPT needs a periodic box
        (:func:`physff_openmm.workflows.solvation.build_solvated_simulation`).
    seed : int, optional
        Seed of the Langevin random numbers (default: random).
    constraints : {"hbonds", None}
        ``"hbonds"`` (default; ``openmm.app.HBonds`` is accepted too): constrain every
        covalent bond to a hydrogen atom at its length in the starting geometry
        (:func:`add_hydrogen_bond_constraints`). None: no constraints.

    Returns
    -------
    openmm.app.Simulation
        With positions set. Extra attributes: ``physff_parameters`` (ParameterSet),
        ``physff_molecule`` (the RDKit Mol, with its conformer), ``physff_constraints``
        (the constrained atom pairs, (m, 2); empty without constraints), and, as every
        Simulation that ``run_md`` drives has them, ``physff_bonds`` (covalent pairs of
        physff molecules, (k, 2) System indices), ``physff_symbols`` (element of each atom)
        and ``physff_energy_offset`` (E_lin, kcal/mol).
    """
    temperature_k = in_units(temperature_k, unit.kelvin, "temperature_k")
    timestep_fs = in_units(timestep_fs, unit.femtosecond, "timestep_fs")
    friction_per_ps = in_units(friction_per_ps, unit.picosecond**-1, "friction_per_ps")
    if ensemble == "npt":
        raise ConfigError("NPT needs a periodic box: give a solvent (or a receptor) to simulate in water")
    ensemble, constraints, timestep_fs = check_md_settings(ensemble, constraints, timestep_fs, temperature_k, friction_per_ps)
    prep = prepare(molecule, model=model, backend=backend, charge=charge)
    pairs = np.zeros((0, 2), dtype=np.int64)
    if constraints == "hbonds":
        pairs = add_hydrogen_bond_constraints(prep.system, prep.params, prep.positions_nm)
    integrator = make_integrator(ensemble, temperature_k, friction_per_ps, timestep_fs, seed)
    sim = app.Simulation(prep.topology, prep.system, integrator, _platform(platform))
    sim.context.setPositions(prep.positions_nm * unit.nanometer)
    sim.physff_parameters = prep.params
    sim.physff_molecule = prep.mol
    sim.physff_constraints = pairs
    sim.physff_bonds = np.asarray(prep.params.covalent_pairs, dtype=np.int64).reshape(-1, 2)
    sim.physff_symbols = list(prep.params.symbols)
    sim.physff_energy_offset = float(prep.params.energy_offset)
    return sim


def check_md_settings(ensemble, constraints, timestep_fs, temperature_k, friction_per_ps) -> tuple[str, str | None, float]:
    """Validate MD settings; returns (ensemble, constraints, time step in fs with its default filled in).

    A time step longer than :data:`MAX_UNCONSTRAINED_TIMESTEP_FS` without constraints warns.
    """
    if ensemble not in ENSEMBLES:
        raise ConfigError(f"unknown ensemble {ensemble!r}; choose one of {', '.join(ENSEMBLES)}")
    constraints = check_constraints(constraints)
    if timestep_fs is None:
        timestep_fs = DEFAULT_TIMESTEP_FS
    check_positive("timestep_fs", timestep_fs)
    check_positive("temperature_k", temperature_k)
    if ensemble != "nve":
        check_positive("friction_per_ps", friction_per_ps)
    if constraints is None and timestep_fs > MAX_UNCONSTRAINED_TIMESTEP_FS:
        warnings.warn(
            f"a {timestep_fs:g} fs time step without constraints is too long for bonds to hydrogen "
            f"(X-H vibrations, periods of 9-11 fs); use a {MAX_UNCONSTRAINED_TIMESTEP_FS:g} fs step "
            "(--timestep 1), or keep bonds to hydrogen constrained",
            RuntimeWarning,
            stacklevel=3,
        )
    return ensemble, constraints, float(timestep_fs)


def make_integrator(ensemble: str, temperature_k: float, friction_per_ps: float, timestep_fs: float,
                    seed: int | None) -> openmm.Integrator:
    """LangevinMiddleIntegrator (NVT, NPT) or VerletIntegrator (NVE)."""
    dt = timestep_fs * unit.femtoseconds
    if ensemble == "nve":
        return openmm.VerletIntegrator(dt)
    integrator = openmm.LangevinMiddleIntegrator(temperature_k * unit.kelvin, friction_per_ps / unit.picosecond, dt)
    if seed is not None:
        integrator.setRandomNumberSeed(int(seed))
    return integrator


def energy_components(params: ParameterSet, positions_a: np.ndarray) -> dict[str, float]:
    """Coulomb, C6/C12 and short-range energies (kcal/mol) from the one formula (:mod:`physff_openmm.energy`).

    Parameters
    ----------
    params : ParameterSet
    positions_a : numpy.ndarray
        (n, 3) positions, Angstrom.

    Returns
    -------
    dict
        ``coulomb_kcal_mol``, ``c6_c12_kcal_mol``, ``short_range_kcal_mol``
        (all pairs i < j, float64; E_lin not included).
    """
    n = params.n_atoms
    iu, ju = np.triu_indices(n, 1)
    pos = torch.as_tensor(np.asarray(positions_a, dtype=np.float64))
    r = torch.linalg.vector_norm(pos[iu] - pos[ju], dim=-1)
    q = torch.as_tensor(params.charges, dtype=torch.float64)
    c = torch.as_tensor(params.pair_parameters()[iu, ju], dtype=torch.float64)
    covalent = torch.as_tensor(params.covalent_matrix()[iu, ju])
    coulomb, lj, sr = pair_energy_terms(r, q[iu], q[ju], c, covalent, *params.switch)
    return {
        "coulomb_kcal_mol": float(coulomb.sum()),
        "c6_c12_kcal_mol": float(lj.sum()),
        "short_range_kcal_mol": float(sr.sum()),
    }


def _energy_report(prep: Prepared, context: openmm.Context) -> dict:
    e_openmm = potential_kcal_mol(context)
    total = e_openmm + prep.params.energy_offset
    out = {
        "energy_kcal_mol": total,
        "energy_kj_mol": total * KCAL_TO_KJ,
        **energy_components(prep.params, context_positions_angstrom(context)),
        "energy_offset_kcal_mol": float(prep.params.energy_offset),
        "n_atoms": prep.params.n_atoms,
        "n_fragments": len(prep.params.fragments),
        "model": prep.params.model_name,
        "backend": prep.backend,
        "platform": context.getPlatform().getName(),
    }
    return out


def energy(molecule, *, model="default", backend: str = "native", platform=None, charge: int | None = None) -> dict:
    """Single-point energy of a molecule or complex at its coordinates.

    Parameters
    ----------
    molecule : rdkit.Chem.Mol, str or path
        Anything :func:`physff_openmm.molecule.load_molecule` accepts (SMILES is embedded first).
    model, backend, platform, charge
        As in :func:`build_simulation`.

    Returns
    -------
    dict
        ``energy_kcal_mol`` (absolute: OpenMM potential + E_lin), ``energy_kj_mol``,
        the components ``coulomb_kcal_mol``, ``c6_c12_kcal_mol``, ``short_range_kcal_mol``
        (from :func:`energy_components`) and ``energy_offset_kcal_mol`` (E_lin), which
        add up to ``energy_kcal_mol`` up to the platform's arithmetic; plus ``n_atoms``,
        ``n_fragments``, ``model``, ``backend``, ``platform``.
    """
    prep = prepare(molecule, model=model, backend=backend, charge=charge)
    context = make_context(prep.system, platform)
    context.setPositions(prep.positions_nm * unit.nanometer)
    return _energy_report(prep, context)


def bond_changes(pairs, reference_angstrom, positions_angstrom) -> np.ndarray:
    """Relative change of each bond's length (> 0 stretched) from ``reference_angstrom`` to ``positions_angstrom``."""
    pairs = np.asarray(pairs, dtype=np.int64).reshape(-1, 2)
    x0, x1 = np.asarray(reference_angstrom, dtype=np.float64), np.asarray(positions_angstrom, dtype=np.float64)
    d0 = np.linalg.norm(x0[pairs[:, 0]] - x0[pairs[:, 1]], axis=1)
    d1 = np.linalg.norm(x1[pairs[:, 0]] - x1[pairs[:, 1]], axis=1)
    return d1 / d0 - 1.0


def check_bonds_kept(pairs, symbols, reference_angstrom, positions_angstrom, *, where: str) -> tuple[float, str | None]:
    """The largest bond change from the input geometry; an error when a bond moved past :data:`BROKEN_BOND_FRACTION`.

    Parameters
    ----------
    pairs : (k, 2) array of int
        Covalent bonds (atom indices).
    symbols : sequence of str
        Element of each atom, for the bond's name (``"O0-H1"``: element and 0-based index).
    reference_angstrom, positions_angstrom : (n, 3) arrays
        The input geometry and the one to check, Angstrom.
    where : str
        What moved the atoms, for the message (``"the minimization"``, ...).

    Returns
    -------
    (float, str or None)
        The largest relative change (signed, > 0 stretched) and its bond; (0.0, None) without bonds.

    Raises
    ------
    ModelFailureError
        A bond moved more than :data:`BROKEN_BOND_FRACTION` (or a length is not finite);
        its ``bond`` and ``change`` say which and how far.
    """
    rel = bond_changes(pairs, reference_angstrom, positions_angstrom)
    if not len(rel):
        return 0.0, None
    bad = ~np.isfinite(rel)
    k = int(np.argmax(bad)) if bad.any() else int(np.argmax(np.abs(rel)))
    i, j = np.asarray(pairs, dtype=np.int64).reshape(-1, 2)[k]
    label = f"{symbols[i]}{i}-{symbols[j]}{j}"
    if bad.any() or abs(rel[k]) > BROKEN_BOND_FRACTION:
        how = "to a non-finite length" if bad.any() else f"by {rel[k]:+.0%}"
        raise ModelFailureError(
            f"{where} moved bond {label} {how} from the input geometry (more than {BROKEN_BOND_FRACTION:.0%}): "
            "the model failed on this molecule, unless the input geometry was far from any minimum "
            "(the models' limits are in docs/accuracy.md)",
            bond=label,
            change=float(rel[k]),
        )
    return float(rel[k]), label


def minimize(
    molecule,
    *,
    model="default",
    backend: str = "native",
    platform=None,
    charge: int | None = None,
    tolerance_kcal_mol_a: float = DEFAULT_TOLERANCE_KCAL_MOL_A,
    max_iterations: int = 0,
    progress: bool | None = None,
) -> tuple[Chem.Mol, dict]:
    """Minimize the energy of a molecule or complex (L-BFGS, all atoms free).

    Parameters
    ----------
    molecule : rdkit.Chem.Mol, str or path
        Anything :func:`physff_openmm.molecule.load_molecule` accepts.
    model, backend, platform, charge
        As in :func:`build_simulation`.
    tolerance_kcal_mol_a : float
        Convergence: root-mean-square force, kcal/mol/Angstrom.
    max_iterations : int
        Iteration limit (0: until converged).
    progress : bool, optional
        Count the iterations on a progress bar (default: when stderr is a terminal).

    Returns
    -------
    (rdkit.Chem.Mol, dict)
        A copy of the molecule with one conformer at the minimized coordinates
        (Angstrom), and ``initial_energy_kcal_mol``, ``final_energy_kcal_mol``
        (absolute, E_lin included), ``energy_change_kcal_mol``, ``rmsd_angstrom``
        (coordinate RMS displacement), ``max_bond_change`` (the largest relative change of a
        covalent bond, signed, > 0 stretched) and ``worst_bond`` (that bond, e.g. ``"O0-H1"``),
        ``n_atoms``, ``platform``.

    Raises
    ------
    ModelFailureError
        The minimization moved a covalent bond more than :data:`BROKEN_BOND_FRACTION`
        from its input length (nothing is returned).
    """
    tolerance_kcal_mol_a = in_units(tolerance_kcal_mol_a, _FORCE_UNIT, "tolerance_kcal_mol_a")
    check_positive("tolerance_kcal_mol_a", tolerance_kcal_mol_a)
    prep = prepare(molecule, model=model, backend=backend, charge=charge)
    context = make_context(prep.system, platform)
    start = prep.positions_angstrom
    context.setPositions(start * ANGSTROM_TO_NM * unit.nanometer)
    offset = prep.params.energy_offset
    e0 = potential_kcal_mol(context) + offset
    minimize_context(context, tolerance_kcal_mol_a, max_iterations, progress=progress)
    e1 = potential_kcal_mol(context) + offset
    final = context_positions_angstrom(context)
    change, worst = check_bonds_kept(prep.params.covalent_pairs, prep.params.symbols, start, final, where="the minimization")
    result = {
        "initial_energy_kcal_mol": e0,
        "final_energy_kcal_mol": e1,
        "energy_change_kcal_mol": e1 - e0,
        "rmsd_angstrom": float(np.sqrt(np.mean(np.sum((final - start) ** 2, axis=1)))),
        "max_bond_change": change,
        "worst_bond": worst,
        "n_atoms": prep.params.n_atoms,
        "platform": context.getPlatform().getName(),
    }
    return with_positions(prep.mol, final, properties={"physff_energy_kcal_mol": repr(e1)}), result


def _fragment_mol(mol: Chem.Mol, atoms: tuple[int, ...], positions_a: np.ndarray) -> Chem.Mol:
    """One fragment as its own molecule (atoms in ascending order) at the given positions."""
    sub = Chem.RWMol(Chem.Mol())
    index = {}
    for a in atoms:
        index[a] = sub.AddAtom(Chem.Atom(mol.GetAtomWithIdx(a)))
    for bond in mol.GetBonds():
        i, j = bond.GetBeginAtomIdx(), bond.GetEndAtomIdx()
        if i in index and j in index:
            sub.AddBond(index[i], index[j], bond.GetBondType())
    frag = sub.GetMol()
    Chem.SanitizeMol(frag)
    return with_positions(frag, positions_a[list(atoms)])


def interaction_energy(
    molecule,
    *,
    minimize: bool = False,
    model="default",
    backend: str = "native",
    platform=None,
    charge: int | None = None,
    tolerance_kcal_mol_a: float = DEFAULT_TOLERANCE_KCAL_MOL_A,
) -> dict:
    """Interaction energy of a complex: E(complex) - sum of E(fragment), all at the complex geometry.

    Each fragment is parameterized and evaluated on its own, offsets included,
    so E_lin cancels and the result is negative for a bound complex.

    Parameters
    ----------
    molecule : rdkit.Chem.Mol, str or path
        A complex of at least two fragments (``"A.B"`` SMILES, a multi-record SDF, ...).
    minimize : bool
        Minimize the complex first (the fragments are then taken at the minimized geometry).
    model, backend, platform, charge
        As in :func:`build_simulation`.
    tolerance_kcal_mol_a : float
        Minimizer tolerance, kcal/mol/Angstrom.

    Returns
    -------
    dict
        ``interaction_energy_kcal_mol``, ``interaction_energy_kj_mol``,
        ``complex_energy_kcal_mol``, ``fragment_energies_kcal_mol`` (list),
        ``fragments`` (atom indices of each), ``minimized`` (bool), ``platform``.

    Raises
    ------
    MoleculeError
        The molecule has fewer than two fragments.
    ModelFailureError
        ``minimize`` moved a covalent bond more than :data:`BROKEN_BOND_FRACTION`.
    """
    tolerance_kcal_mol_a = in_units(tolerance_kcal_mol_a, _FORCE_UNIT, "tolerance_kcal_mol_a")
    mol = load_molecule(molecule, charge=charge)
    prep = prepare(mol, model=model, backend=backend, charge=charge)
    frags = fragment_atom_indices(prep.mol)
    if len(frags) < 2:
        raise MoleculeError(
            "an interaction energy needs a complex of at least two molecules; this input has one fragment "
            "(give a file with both molecules, or e.g. 'A.B' SMILES)"
        )
    if not has_3d_conformer(mol):
        warnings.warn(
            "the input has no 3D coordinates, so its molecules were embedded side by side, at least 4 Angstrom "
            "apart in an arbitrary orientation"
            + (", and minimization does not find the complex's binding pose from there" if minimize else "")
            + ": the interaction energy of that geometry says little about the complex; give a file with the "
            "complex's geometry (SDF, PDB with CONECT records, XYZ)",
            UserWarning,
            stacklevel=2,
        )
    context = make_context(prep.system, platform)
    context.setPositions(prep.positions_nm * unit.nanometer)
    pos = context_positions_angstrom(context)
    if minimize:
        check_positive("tolerance_kcal_mol_a", tolerance_kcal_mol_a)
        minimize_context(context, tolerance_kcal_mol_a)
        start, pos = pos, context_positions_angstrom(context)
        check_bonds_kept(prep.params.covalent_pairs, prep.params.symbols, start, pos, where="the minimization")
    e_complex = potential_kcal_mol(context) + prep.params.energy_offset
    e_frags = []
    for atoms in frags:
        sub = _fragment_mol(prep.mol, atoms, pos)
        sub_prep = prepare(sub, model=model, backend=backend)
        ctx = make_context(sub_prep.system, platform)
        ctx.setPositions(sub_prep.positions_nm * unit.nanometer)
        e_frags.append(potential_kcal_mol(ctx) + sub_prep.params.energy_offset)
    e_int = e_complex - sum(e_frags)
    return {
        "interaction_energy_kcal_mol": e_int,
        "interaction_energy_kj_mol": e_int * KCAL_TO_KJ,
        "complex_energy_kcal_mol": e_complex,
        "fragment_energies_kcal_mol": e_frags,
        "fragments": [list(f) for f in frags],
        "minimized": bool(minimize),
        "platform": context.getPlatform().getName(),
    }
