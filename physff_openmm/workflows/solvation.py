"""Ligands in water and beside proteins: periodic Systems from openmm.app.ForceField + PhysFFTemplateGenerator.

The ligand (one or several physff molecules) is parameterized by the graph model;
protein, nucleic acids, water and ions by Amber14 (``amber14-all.xml``) and a water
model's file (``amber14/tip3p.xml`` by default). ``openmm.app.Modeller`` adds the
box of water and the ions. The System uses PME with a 1 nm cutoff, bonds to
hydrogen constrained and rigid water by default (see :mod:`physff_openmm.forcefield`
for what physff contributes to it).

A receptor file (PDB or PDBx/mmCIF) holds the protein and may hold water, ions and
the ligand itself: residues that match no Amber template and have the ligand's heavy
atoms are replaced by the ligand given as its own file (which carries the hydrogens and
bond orders a PDB file lacks, in the receptor's frame), missing hydrogens are added at
pH 7, and the box is solvated unless the file has water already (then its box is kept).

Building is deterministic (Modeller's random choices of where ions go are seeded), so
rebuilding a run from the same inputs gives the same atoms, as a restart needs.
"""

from __future__ import annotations

import contextlib
import random
import re
import warnings
from collections import Counter
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import openmm
from openmm import app, unit
from rdkit import Chem

from ..errors import ConfigError, MoleculeError, MoleculeFileError
from ..forcefield import PhysFFTemplateGenerator
from ..graph import ELEMENTS
from ..molecule import closest_pair, combine_molecules, ensure_conformer, load_molecule, positions_angstrom
from ..units import ANGSTROM_TO_NM, in_units
from .simulation import check_constraints, check_positive, topology_from_mol

__all__ = [
    "WATER_MODELS",
    "PROTEIN_FORCEFIELD",
    "DEFAULT_PADDING_NM",
    "DEFAULT_CUTOFF_NM",
    "DEFAULT_IONS",
    "SolvatedSystem",
    "parse_ions",
    "build_solvated_system",
    "build_solvated_simulation",
]

#: Water models: name -> (OpenMM force-field file, Modeller's water box).
WATER_MODELS: dict[str, tuple[str, str]] = {
    "tip3p": ("amber14/tip3p.xml", "tip3p"),
    "tip3pfb": ("amber14/tip3pfb.xml", "tip3p"),
    "spce": ("amber14/spce.xml", "spce"),
    "opc3": ("amber14/opc3.xml", "tip3p"),
    "tip4pew": ("amber14/tip4pew.xml", "tip4pew"),
}
#: Protein and nucleic-acid force field of receptors.
PROTEIN_FORCEFIELD = "amber14-all.xml"
#: Solvent padding around the solute, nm.
DEFAULT_PADDING_NM = 1.0
#: Nonbonded cutoff (PME direct space and Lennard-Jones), nm.
DEFAULT_CUTOFF_NM = 1.0
#: Ions: the salt and its molar concentration; the box is always neutralized with them.
DEFAULT_IONS = "NaCl:0"
_CATIONS = {"Li": "Li+", "Na": "Na+", "K": "K+", "Rb": "Rb+", "Cs": "Cs+"}
_ANIONS = {"F": "F-", "Cl": "Cl-", "Br": "Br-", "I": "I-"}
#: Seed of Modeller's random choices (which waters become ions), fixed so that builds repeat.
_BUILD_SEED = 20260101
_WATER_NAMES = {"HOH", "WAT", "H2O", "SOL", "TIP3", "TIP", "DOD"}


def parse_ions(text: str) -> tuple[str, str, float]:
    """``"NaCl:0.15"`` -> ``("Na+", "Cl-", 0.15)``: Modeller's ion names and the molar concentration.

    The concentration may be left out (``"KCl"``: neutralize only). Cations Li, Na, K, Rb,
    Cs; anions F, Cl, Br, I.
    """
    match = re.fullmatch(r"\s*([A-Z][a-z]?)([A-Z][a-z]?)\s*(?::\s*([0-9.eE+-]+))?\s*", str(text))
    if not match or match.group(1) not in _CATIONS or match.group(2) not in _ANIONS:
        raise ConfigError(
            f"ions {text!r}: give a salt and its molar concentration, e.g. NaCl:0.15 "
            f"(cations {', '.join(_CATIONS)}; anions {', '.join(_ANIONS)})"
        )
    try:
        molar = float(match.group(3)) if match.group(3) is not None else 0.0
    except ValueError:
        raise ConfigError(f"ions {text!r}: the concentration must be a number of mol/L") from None
    if not np.isfinite(molar) or molar < 0:
        raise ConfigError(f"ions {text!r}: the concentration must be zero or positive")
    return _CATIONS[match.group(1)], _ANIONS[match.group(2)], molar


@dataclass
class SolvatedSystem:
    """A periodic System with its Topology and starting positions.

    Attributes
    ----------
    topology : openmm.app.Topology
        Receptor (if any), ligand molecules, water and ions, with the periodic box.
    positions_nm : numpy.ndarray
        (n, 3) starting positions, nm.
    system : openmm.System
        From ``forcefield.createSystem`` (PME).
    forcefield : openmm.app.ForceField
        Amber14 + the water model, with ``generator`` registered.
    generator : PhysFFTemplateGenerator
        Parameterizes the ligand molecules.
    physff_bonds : numpy.ndarray
        (k, 2) System indices of the covalent bonds of the physff molecules.
    energy_offset : float
        E_lin of the physff molecules, kcal/mol (not in the System).
    solvent : str
        The water model.
    counts : dict
        Number of ``atoms``, ``waters``, ``cations``, ``anions`` and ``ligand_atoms``.
    """

    topology: app.Topology
    positions_nm: np.ndarray
    system: openmm.System
    forcefield: app.ForceField
    generator: PhysFFTemplateGenerator
    physff_bonds: np.ndarray
    energy_offset: float
    solvent: str
    counts: dict


@contextlib.contextmanager
def _seeded_random(seed: int):
    """Seed Python's ``random`` (which Modeller uses) for a block and restore its state afterwards."""
    saved = random.getstate()
    random.seed(seed)
    try:
        yield
    finally:
        random.setstate(saved)


def _check_water_model(solvent: str) -> tuple[str, str]:
    if solvent not in WATER_MODELS:
        raise ConfigError(f"unknown water model {solvent!r}; choose one of {', '.join(WATER_MODELS)}")
    return WATER_MODELS[solvent]


def _ligand(molecule, charge) -> Chem.Mol:
    """The ligand with 3D coordinates, each molecule's atoms contiguous (one Topology residue each)."""
    mol = ensure_conformer(load_molecule(molecule, charge=charge))
    frags = Chem.GetMolFrags(mol, asMols=True, sanitizeFrags=False)
    return combine_molecules(frags) if len(frags) > 1 else mol


def _heavy_formula(elements) -> Counter:
    return Counter(e for e in elements if e != "H")


def _read_receptor(path) -> tuple[app.Topology, object]:
    path = Path(path)
    if not path.is_file():
        raise MoleculeFileError(f"receptor file {str(path)!r} does not exist")
    suffix = path.suffix.lower()
    try:
        if suffix == ".pdb":
            structure = app.PDBFile(str(path))
        elif suffix in (".cif", ".pdbx", ".mmcif"):
            structure = app.PDBxFile(str(path))
        else:
            raise MoleculeFileError(f"receptor {str(path)!r}: unsupported format ({suffix or 'no suffix'}); use .pdb or .cif")
    except MoleculeFileError:
        raise
    except Exception as exc:  # OpenMM's readers raise many kinds
        raise MoleculeFileError(f"cannot read receptor {str(path)!r}: {str(exc).splitlines()[0] if str(exc) else type(exc).__name__}") from None
    return structure.topology, structure.positions


def _is_water(residue) -> bool:
    return residue.name.upper() in _WATER_NAMES


#: The box edge is at least this multiple of the cutoff (OpenMM needs 2x; a barostat shrinks the box a little).
MIN_BOX_PER_CUTOFF = 2.2


def _box_width(modeller: app.Modeller, padding_nm: float, cutoff_nm: float) -> float:
    """Edge of the cubic box, nm: the solute's diameter plus the padding (as Modeller's ``padding``),
    at least :data:`MIN_BOX_PER_CUTOFF` times the cutoff."""
    x = np.asarray(modeller.positions.value_in_unit(unit.nanometer))
    center = 0.5 * (x.min(axis=0) + x.max(axis=0))
    radius = float(np.linalg.norm(x - center, axis=1).max())
    return max(2.0 * radius + padding_nm, 2.0 * padding_nm, MIN_BOX_PER_CUTOFF * cutoff_nm)


#: A ligand farther than this from every receptor atom (nm) is probably not in the receptor's frame.
FAR_FROM_RECEPTOR_NM = 1.5


def _check_placement(modeller: app.Modeller, ligand_pos, source: str) -> None:
    """Warn when the ligand overlaps the receptor or lies far from it (a different frame, most likely)."""
    receptor = np.asarray([p for a, p in zip(modeller.topology.atoms(), modeller.positions.value_in_unit(unit.nanometer))
                           if not _is_water(a.residue)])
    if not len(receptor):
        return
    closest = closest_pair(np.asarray(ligand_pos.value_in_unit(unit.nanometer)), receptor)[0]
    if closest > FAR_FROM_RECEPTOR_NM or closest < 0.1:
        how = "overlaps" if closest < 0.1 else "is far from"
        warnings.warn(f"the ligand {how} the receptor {source} (closest atoms {closest * 10:.1f} Angstrom apart); "
                      "give the ligand's coordinates in the receptor's frame", RuntimeWarning, stacklevel=3)


def _unsupported_residues(forcefield, generator, topology, source: str, solvent: str) -> None:
    """Raise MoleculeError for residues that neither the force-field files nor the physff molecules describe."""
    bad = [r for r in forcefield.getUnmatchedResidues(topology) if not generator.matches(r)]
    if not bad:
        return
    r = bad[0]
    symbols = sorted({a.element.symbol for a in r.atoms() if a.element is not None})
    unsupported = [s for s in symbols if s not in ELEMENTS]
    message = (
        f"residue {r.name} {r.id} (chain {r.chain.id}) of {source} matches no template of {PROTEIN_FORCEFIELD} or "
        f"{WATER_MODELS[solvent][0]} and is not the ligand"
    )
    if unsupported:
        message += f"; it contains {', '.join(unsupported)}, which the physff model does not support either"
    else:
        message += "; give it as (part of) the ligand, or fix the structure (missing atoms or bonds)"
    if len(bad) > 1:
        message += f" ({len(bad)} such residues)"
    raise MoleculeError(message)


def build_solvated_system(
    molecule,
    *,
    receptor=None,
    solvent: str = "tip3p",
    padding_nm: float = DEFAULT_PADDING_NM,
    ions: str = DEFAULT_IONS,
    model="default",
    charge: int | None = None,
    constraints: str | None = "hbonds",
    nonbonded_cutoff_nm: float = DEFAULT_CUTOFF_NM,
    box_nm: float | None = None,
    cache=None,
) -> SolvatedSystem:
    """Build a periodic System of a ligand in water, alone or beside a receptor.

    Parameters
    ----------
    molecule : rdkit.Chem.Mol, str or path
        The ligand: anything :func:`physff_openmm.load_molecule` reads (a SMILES is embedded
        with RDKit). Several fragments are several physff molecules. With a receptor, its
        coordinates must be in the receptor's frame.
    receptor : path, optional
        PDB or PDBx/mmCIF file with the protein (and optionally water, ions and the ligand,
        which is replaced by ``molecule``).
    solvent : str
        Water model, one of :data:`WATER_MODELS`.
    padding_nm : float
        Water around the solute, nm: the cubic box's edge is the solute's diameter plus
        ``padding_nm`` (as ``openmm.app.Modeller.addSolvent``), and at least
        :data:`MIN_BOX_PER_CUTOFF` times the cutoff.
    ions : str
        Salt and molar concentration, e.g. ``"NaCl:0.15"`` (:func:`parse_ions`); the box is
        neutralized with these ions.
    model : str or path
        physff model.
    charge : int, optional
        Total charge of the ligand (checked; needed for XYZ files).
    constraints : {"hbonds", None}
        Bonds to hydrogen constrained (water is rigid either way).
    nonbonded_cutoff_nm : float
        PME direct-space and Lennard-Jones cutoff, nm.
    box_nm : float, optional
        Edge of the cubic box, nm, instead of ``padding_nm`` (at least
        :data:`MIN_BOX_PER_CUTOFF` times the cutoff).
    cache : bool or path, optional
        Parameter cache (see :class:`physff_openmm.PhysFFTemplateGenerator`).

    Returns
    -------
    SolvatedSystem

    Raises
    ------
    ConfigError
        Unknown water model, bad ions, padding or cutoff.
    MoleculeError
        A receptor residue that no force-field template and no physff molecule describes
        (the message names it, and any element the model does not support).
    """
    padding_nm = in_units(padding_nm, unit.nanometer, "padding_nm")
    nonbonded_cutoff_nm = in_units(nonbonded_cutoff_nm, unit.nanometer, "nonbonded_cutoff_nm")
    box_nm = in_units(box_nm, unit.nanometer, "box_nm")
    water_file, box_model = _check_water_model(solvent)
    cation, anion, molar = parse_ions(ions)
    check_positive("padding_nm", padding_nm)
    check_positive("nonbonded_cutoff_nm", nonbonded_cutoff_nm)
    if box_nm is not None:
        check_positive("box_nm", box_nm)
        if box_nm < MIN_BOX_PER_CUTOFF * nonbonded_cutoff_nm:
            raise ConfigError(f"box_nm={box_nm} is too small for a {nonbonded_cutoff_nm} nm cutoff: give at least "
                              f"{MIN_BOX_PER_CUTOFF * nonbonded_cutoff_nm:g} nm")
    constraints = check_constraints(constraints)
    ligand = _ligand(molecule, charge)
    generator = PhysFFTemplateGenerator([ligand], model=model, cache=cache)
    forcefield = app.ForceField(PROTEIN_FORCEFIELD, water_file)
    forcefield.registerTemplateGenerator(generator.generator)
    ligand_top = topology_from_mol(ligand)
    ligand_pos = positions_angstrom(ligand) * ANGSTROM_TO_NM * unit.nanometer

    with _seeded_random(_BUILD_SEED):
        if receptor is not None:
            source = str(receptor)
            top, pos = _read_receptor(receptor)
            modeller = app.Modeller(top, pos)
            unmatched = forcefield.getUnmatchedResidues(modeller.topology)
            formulas = [_heavy_formula(a.GetSymbol() for a in frag.GetAtoms())
                        for frag in Chem.GetMolFrags(ligand, asMols=True, sanitizeFrags=False)]
            copies = [r for r in unmatched if not _is_water(r)
                      and _heavy_formula(a.element.symbol for a in r.atoms() if a.element is not None) in formulas]
            if copies:
                modeller.delete(copies)
            has_water = any(_is_water(r) for r in modeller.topology.residues())
            if has_water and modeller.topology.getPeriodicBoxVectors() is None:
                raise ConfigError(f"{source} has water but no periodic box (CRYST1 record); remove the water to "
                                  "solvate it anew, or add the box")
            modeller.addHydrogens(pH=7.0)
            if solvent == "tip4pew":  # virtual sites of the receptor's waters
                modeller.addExtraParticles(forcefield)
            _unsupported_residues(forcefield, generator, modeller.topology, source, solvent)
            _check_placement(modeller, ligand_pos, source)
            modeller.add(ligand_top, ligand_pos)
        else:
            modeller = app.Modeller(ligand_top, ligand_pos)
            has_water = False
        if not has_water:
            width = _box_width(modeller, padding_nm, nonbonded_cutoff_nm) if box_nm is None else float(box_nm)
            modeller.addSolvent(forcefield, model=box_model, boxSize=openmm.Vec3(width, width, width) * unit.nanometer,
                                positiveIon=cation, negativeIon=anion, ionicStrength=molar * unit.molar,
                                neutralize=True)
    topology = modeller.topology
    system = forcefield.createSystem(
        topology,
        nonbondedMethod=app.PME,
        nonbondedCutoff=nonbonded_cutoff_nm * unit.nanometer,
        constraints=app.HBonds if constraints == "hbonds" else None,
        rigidWater=True,
    )
    matched = generator.matched_residues(topology)
    bonds = [(b[0].index, b[1].index) for residue, _ in matched for b in residue.internal_bonds()]
    ion_counts = Counter(next(r.atoms()).element.symbol for r in topology.residues()
                         if r.name != "HOH" and len(r) == 1 and next(r.atoms()).element is not None)
    positions = np.asarray(modeller.positions.value_in_unit(unit.nanometer), dtype=np.float64)
    return SolvatedSystem(
        topology=topology,
        positions_nm=positions,
        system=system,
        forcefield=forcefield,
        generator=generator,
        physff_bonds=np.asarray(bonds, dtype=np.int64).reshape(-1, 2),
        energy_offset=generator.energy_offset(topology),
        solvent=solvent,
        counts={
            "atoms": topology.getNumAtoms(),
            "waters": sum(1 for r in topology.residues() if r.name == "HOH"),
            "cations": ion_counts.get(cation.rstrip("+"), 0),
            "anions": ion_counts.get(anion.rstrip("-"), 0),
            "ligand_atoms": sum(p.n_atoms for _, p in matched),
        },
    )


def build_solvated_simulation(
    molecule,
    *,
    receptor=None,
    solvent: str = "tip3p",
    padding_nm: float = DEFAULT_PADDING_NM,
    ions: str = DEFAULT_IONS,
    model="default",
    platform=None,
    charge: int | None = None,
    temperature_k: float = 300.0,
    timestep_fs: float | None = None,
    friction_per_ps: float = 1.0,
    ensemble: str = "npt",
    pressure_bar: float = 1.0,
    seed: int | None = None,
    constraints: str | None = "hbonds",
    nonbonded_cutoff_nm: float = DEFAULT_CUTOFF_NM,
) -> app.Simulation:
    """An OpenMM Simulation of a ligand in a periodic box of water (beside a receptor if given).

    Parameters are those of :func:`build_solvated_system` and
    :func:`physff_openmm.workflows.build_simulation`, plus ``pressure_bar`` (the
    MonteCarloBarostat's pressure, bar, every
    :data:`~physff_openmm.workflows.simulation.BAROSTAT_INTERVAL` steps, with
    ``ensemble="npt"``, the default).

    Returns
    -------
    openmm.app.Simulation
        With positions and box set. Extra attributes: ``physff_system``
        (the :class:`SolvatedSystem`), ``physff_bonds``, ``physff_symbols`` and
        ``physff_energy_offset`` (as :func:`~physff_openmm.workflows.build_simulation` sets them).
    """
    temperature_k = in_units(temperature_k, unit.kelvin, "temperature_k")
    timestep_fs = in_units(timestep_fs, unit.femtosecond, "timestep_fs")
    friction_per_ps = in_units(friction_per_ps, unit.picosecond**-1, "friction_per_ps")
    pressure_bar = in_units(pressure_bar, unit.bar, "pressure_bar")
    padding_nm = in_units(padding_nm, unit.nanometer, "padding_nm")
    nonbonded_cutoff_nm = in_units(nonbonded_cutoff_nm, unit.nanometer, "nonbonded_cutoff_nm")
    from .simulation import _platform, check_md_settings, make_integrator, BAROSTAT_INTERVAL

    ensemble, constraints, timestep_fs = check_md_settings(ensemble, constraints, timestep_fs, temperature_k,
                                                           friction_per_ps)
    if ensemble == "npt":
        check_positive("pressure_bar", pressure_bar)
    built = build_solvated_system(molecule, receptor=receptor, solvent=solvent, padding_nm=padding_nm, ions=ions,
                                  model=model, charge=charge, constraints=constraints,
                                  nonbonded_cutoff_nm=nonbonded_cutoff_nm)
    if ensemble == "npt":
        barostat = openmm.MonteCarloBarostat(pressure_bar * unit.bar, temperature_k * unit.kelvin, BAROSTAT_INTERVAL)
        if seed is not None:
            barostat.setRandomNumberSeed(int(seed))
        built.system.addForce(barostat)
    integrator = make_integrator(ensemble, temperature_k, friction_per_ps, timestep_fs, seed)
    sim = app.Simulation(built.topology, built.system, integrator, _platform(platform))
    sim.context.setPositions(built.positions_nm * unit.nanometer)
    sim.physff_system = built
    sim.physff_bonds = built.physff_bonds
    sim.physff_symbols = [a.element.symbol if a.element is not None else "EP" for a in built.topology.atoms()]
    sim.physff_energy_offset = built.energy_offset
    return sim
