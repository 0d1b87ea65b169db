"""physff molecules in ``openmm.app.ForceField``: :class:`PhysFFTemplateGenerator`.

The openmmforcefields convention: register the generator beside standard force-field
files, and a plain ``ForceField.createSystem`` builds the whole System, with any
nonbonded method and constraints::

    from openmm import app
    from physff_openmm import PhysFFTemplateGenerator

    generator = PhysFFTemplateGenerator(molecules=["CC(=O)Nc1ccc(O)cc1"])
    forcefield = app.ForceField("amber14-all.xml", "amber14/tip3p.xml")
    forcefield.registerTemplateGenerator(generator.generator)
    system = forcefield.createSystem(topology, nonbondedMethod=app.PME, constraints=app.HBonds)

A Topology residue is a physff molecule when its elements and bonds (its graph)
equal those of one of ``molecules``; the residue's bonds must be in the Topology
(an SDF/RDKit molecule's topology, or PDB CONECT records). For each such residue
the System holds:

* **Inside the molecule** every pair its exact physff energy, whatever the
  nonbonded method: one NonbondedForce exception per pair with its Coulomb
  (none for covalent pairs) and its C6/C12 term as Lennard-Jones (sigma^6 =
  C_1/C_0, epsilon = C_0^2 / (4 C_1)), and a CustomBondForce with the switched
  Gaussians (force group :data:`~physff_openmm.system.SHORT_RANGE_GROUP`). These
  are the terms :func:`physff_openmm.create_system` builds for the molecule alone.
* **Between the molecule and anything else** (water, protein, ions, other physff
  molecules and other copies of itself): the physff charges, and per-atom
  Lennard-Jones parameters from :func:`atom_lennard_jones` (heavy atoms: the size of the
  model's own repulsive wall between two atoms of their class and the depth of its C6/C12
  term; hydrogens: none, or a small core where the charge is not positive; with a model's
  lj_net, hydrogens a small core and everything scaled within bounds by the net, fitted on
  NCIAtlas dimers with the charges), combined with the
  other atoms' parameters by the System's own rule (Lorentz-Berthelot in
  OpenMM's NonbondedForce) under its nonbonded method (cutoff, PME, LJPME,
  dispersion correction). Hydrogens that the other force field leaves without
  Lennard-Jones (TIP3P's, Amber's hydroxyl hydrogens) get a small core,
  :data:`BARE_HYDROGEN_CORE`, in their pairs with physff atoms of negative
  charge only (a CustomNonbondedForce restricted to those pairs by an
  interaction group, under the same cutoff), so that a physff acceptor cannot
  collapse onto them.
  The model's Gaussians between molecules are left out.
  This per-atom rule also holds between physff molecules in one box: their
  class-table pair parameters (which :func:`physff_openmm.create_system` uses for
  clusters in vacuum) would need a class-by-class table force under a cutoff,
  3-380x slower on the CPU platform (DESIGN.md, performance notes).
* **Constraints** (``HBonds``, ``AllBonds``, ``HAngles``) at the distances of the
  molecule's physff energy minimum in vacuum (:meth:`PhysFFTemplateGenerator.reference_positions`).

E_lin (``ParameterSet.energy_offset``) is a constant and not in the System;
:meth:`PhysFFTemplateGenerator.energy_offset` gives it for a Topology.

Force fields whose Lennard-Jones terms live in NonbondedForce (Amber, TIP3P,
OPC, SPC/E, TIP4P-Ew, ...) are supported; CHARMM's LennardJonesForce and
implicit-solvent files are not.
"""

from __future__ import annotations

import hashlib
import io
from dataclasses import dataclass, field
from xml.etree import ElementTree

import numpy as np
import openmm
from openmm import app
from rdkit import Chem

from .errors import ConfigError, MoleculeError, PhysFFError
from .model import lj_sigma_floors
from .molecule import element_graph
from .parameters import ParameterSet
from .system import (
    _C0_TO_OPENMM,
    _C1_TO_OPENMM,
    _add_exact_pairs,
    _c6_c12_fallback_force,
    _intra_charge_products,
    _lj_exception,
    _short_range_bond_force,
)
from .units import ANGSTROM_TO_NM, KCAL_TO_KJ

__all__ = ["PhysFFTemplateGenerator", "atom_lennard_jones", "wall_lennard_jones", "TYPE_PREFIX", "WALL_ENERGY_KCAL",
           "BARE_HYDROGEN_CORE"]

#: Atom types and residue templates of physff molecules are named ``physff-<tag>[-<atom index>]``.
TYPE_PREFIX = "physff"
#: 1-4 scales of the NonbondedForce tag when the ForceField has none yet (every pair of a
#: physff molecule gets its own exception, so their values never act on physff pairs).
_DEFAULT_14_SCALES = (0.8333333333333334, 0.5)


#: sigma of a heavy atom is where the model's own pair energy between two atoms of its class
#: (in different molecules, Coulomb left out) falls to this, kcal/mol, coming from short range.
#: Chosen with ``benchmarks/water_cross_terms.py`` (docs/solvation.md): 0 to 1 kcal/mol trade
#: RMSE at equilibrium against over-binding at the shortest distances.
WALL_ENERGY_KCAL = 0.25
#: Grid of that search, Angstrom: from here to r_off in steps of _WALL_STEP_A.
_WALL_START_A, _WALL_STEP_A = 0.8, 0.001
#: sigma given to hydrogens (nm); their epsilon is 0, so it never acts.
_HYDROGEN_SIGMA_NM = 0.1
#: A hydrogen with a charge <= 0 would meet TIP3P's bare, positive hydrogens with nothing but Coulomb
#: attraction between them: it gets a small core, sigma 1 Angstrom (nm) and epsilon 0.0157 kcal/mol
#: (Amber's hydrogen well depth, kJ/mol).
_NEGATIVE_HYDROGEN_LJ = (0.1, 0.0157 * KCAL_TO_KJ)
#: With a model's lj_net, every hydrogen starts from this small core, sigma 1 Angstrom (nm) and epsilon
#: 0.001 kcal/mol (kJ/mol), and a heavy atom's epsilon from at least the same floor, before the factors.
_HEAD_HYDROGEN_LJ = (0.1, 0.001 * KCAL_TO_KJ)
_HEAD_EPSILON_FLOOR = 0.001 * KCAL_TO_KJ
#: Hydrogens that the other force field leaves without a Lennard-Jones term (epsilon 0: TIP3P's, Amber's
#: hydroxyl hydrogens) get this core, sigma 1.2 Angstrom (nm) and epsilon 0.01 kcal/mol (kJ/mol), in their
#: pairs with physff atoms of negative charge only (Lorentz-Berthelot with the physff atom's sigma and
#: epsilon): without it only Coulomb acts between them and a physff acceptor. Chosen on the training split's NCIAtlas dimers
#: with a water (docs/solvation.md): the lowest RMSE at equilibrium among cores that collapse none.
BARE_HYDROGEN_CORE = (0.12, 0.01 * KCAL_TO_KJ)
#: OpenMM's name of the force that gives those hydrogens their core against physff atoms.
BARE_HYDROGEN_CORE_NAME = "physff core of bare hydrogens"


def _same_class_energy(params: ParameterSet, cls: int, r_a: np.ndarray) -> np.ndarray:
    """The model's energy (kcal/mol) of two atoms of class ``cls`` in different molecules at ``r_a`` (Angstrom),
    without Coulomb: switched Gaussians + C6/C12 of the class table's diagonal entry."""
    import torch

    from .energy import short_range, switch

    c = params.class_parameters[cls, cls]
    r = torch.as_tensor(r_a, dtype=torch.float64)
    gauss = switch(r, *params.switch) * short_range(r, torch.as_tensor(c, dtype=torch.float64).expand(len(r_a), -1))
    return gauss.numpy() - abs(c[0]) / r_a**6 + abs(c[1]) / r_a**12


def _wall_distance(params: ParameterSet, cls: int) -> float | None:
    """Outermost distance (Angstrom) where the same-class energy falls through WALL_ENERGY_KCAL; None if never."""
    r = np.arange(_WALL_START_A, params.switch[1], _WALL_STEP_A)
    e = _same_class_energy(params, cls, r) - WALL_ENERGY_KCAL
    down = np.flatnonzero((e[:-1] > 0) & (e[1:] <= 0))
    if not len(down):
        return None
    k = down[-1]
    return float(r[k] + (r[k + 1] - r[k]) * e[k] / (e[k] - e[k + 1]))


def atom_lennard_jones(params: ParameterSet) -> tuple[np.ndarray, np.ndarray]:
    """Per-atom Lennard-Jones parameters of a molecule for its pairs with other molecules.

    With a model that has an lj_net (``params.class_lj`` set), these are :func:`wall_lennard_jones`
    (every hydrogen there a small core, sigma 1 Angstrom and epsilon 0.001 kcal/mol, and every
    epsilon at least 0.001 kcal/mol) times the net's factors for the atom's class,
    sigma_i exp(f_sigma) and epsilon_i exp(f_epsilon), with |f_sigma| <= ``lj_sigma_range`` and
    |f_epsilon| <= ``lj_epsilon_range`` of the model config. lj_net reads the atom's
    embedding; it is trained after the rest of the model, on NCIAtlas interaction energies with
    these terms and the physff charges between the monomers (water as TIP3P)
    (:mod:`physff_openmm.training.lj_head`). A heavy atom's sigma is then at least
    ``params.lj_sigma_floor`` times its van der Waals diameter
    (:func:`physff_openmm.model.lj_sigma_floors`, the model's ``lj_sigma_floor``). Without an
    lj_net, :func:`wall_lennard_jones`.

    Parameters
    ----------
    params : ParameterSet
        One molecule's parameters.

    Returns
    -------
    (numpy.ndarray, numpy.ndarray)
        sigma (n,) in nm and epsilon (n,) in kJ/mol, in the molecule's atom order.
    """
    if params.class_lj is None:
        return wall_lennard_jones(params)
    sigma, eps = lj_head_base(params)
    f = params.class_lj[params.atom_classes]
    floor = lj_sigma_floors(params.symbols, params.lj_sigma_floor) * ANGSTROM_TO_NM
    return np.maximum(sigma * np.exp(f[:, 0]), floor), eps * np.exp(f[:, 1])


def lj_head_base(params: ParameterSet) -> tuple[np.ndarray, np.ndarray]:
    """sigma (nm) and epsilon (kJ/mol) that a model's lj_net factors multiply: :func:`wall_lennard_jones`,
    every hydrogen a small core (sigma 1 Angstrom, epsilon 0.001 kcal/mol), no epsilon below 0.001 kcal/mol."""
    sigma, eps = wall_lennard_jones(params)
    hydrogen = np.array([s == "H" for s in params.symbols], dtype=bool)
    sigma = np.where(hydrogen, _HEAD_HYDROGEN_LJ[0], sigma)
    eps = np.where(hydrogen, _HEAD_HYDROGEN_LJ[1], np.maximum(eps, _HEAD_EPSILON_FLOOR))
    return sigma, eps


def wall_lennard_jones(params: ParameterSet) -> tuple[np.ndarray, np.ndarray]:
    """Per-atom Lennard-Jones parameters read off the model's pair terms between molecules.

    The rule, for each atom i and the model's pair parameters between two atoms of i's class
    in different molecules (the class table's diagonal, C(ii)):

    * heavy atoms: sigma_i is the distance where the model's own energy of such a pair
      without Coulomb (switched Gaussians and C6/C12 of C(ii)) falls to
      :data:`WALL_ENERGY_KCAL` on its way out from short range (the outermost such
      crossing: the size of the atom's repulsive wall in the model); epsilon_i is the depth
      of the C6/C12 term of C(ii), C_0(ii)^2 / (4 C_1(ii));
    * hydrogens: no Lennard-Jones term (epsilon 0), as TIP3P's hydrogens and Amber's polar
      hydrogens: their size is inside the heavy atom's wall; a hydrogen whose charge is zero
      or negative, which Coulomb would pull onto water's bare hydrogens, gets a small core,
      sigma 1 Angstrom and epsilon 0.0157 kcal/mol (Amber's hydrogen well depth).

    Between atoms i and j of different molecules OpenMM combines them by Lorentz-Berthelot,
    sigma_ij = (sigma_i + sigma_j)/2, epsilon_ij = sqrt(epsilon_i epsilon_j), with physff atoms
    and any other force field's atoms alike. A heavy atom whose energy never reaches the wall
    level (or whose C6/C12 term has no Lennard-Jones form) falls back to sigma_i^6 = C_1(ii)/C_0(ii)
    (epsilon 0 without a form). Accuracy against CCSD(T)/CBS with TIP3P water: docs/solvation.md.
    Arguments and units as :func:`atom_lennard_jones`.
    """
    cls = params.atom_classes
    diag = params.class_parameters[cls, cls]
    sigma, eps, _ = _lj_exception(np.abs(diag[:, 0]) * _C0_TO_OPENMM, np.abs(diag[:, 1]) * _C1_TO_OPENMM)
    walls: dict[int, float | None] = {}
    for k, symbol in enumerate(params.symbols):
        if symbol == "H":
            sigma[k], eps[k] = (_HYDROGEN_SIGMA_NM, 0.0) if params.charges[k] > 0 else _NEGATIVE_HYDROGEN_LJ
            continue
        c = int(cls[k])
        if c not in walls:
            walls[c] = _wall_distance(params, c)
        if walls[c] is not None:
            sigma[k] = walls[c] * ANGSTROM_TO_NM
    return sigma, eps


# --- graphs: a molecule and a residue compare by elements and bonds ----------------------

def _graph_key(atomic_numbers, bonds) -> str:
    """Canonical SMILES of the bare graph (elements and bonds, all single, no charges): equal iff isomorphic."""
    mol = element_graph(atomic_numbers, bonds)
    return Chem.MolToSmiles(mol, canonical=True)


def _mol_key(mol: Chem.Mol) -> str:
    return _graph_key([a.GetAtomicNum() for a in mol.GetAtoms()],
                      [(b.GetBeginAtomIdx(), b.GetEndAtomIdx()) for b in mol.GetBonds()])


def _formula(atomic_numbers) -> tuple[int, ...]:
    return tuple(sorted(int(z) for z in atomic_numbers))


def _residue_key(residue, formulas=None) -> str | None:
    """Graph key of a Topology residue; None when it cannot be a physff molecule (bonds to other residues,
    virtual sites) or when its element formula is not among ``formulas`` (a quick filter)."""
    atoms = list(residue.atoms())
    if not atoms or any(a.element is None for a in atoms):
        return None
    if formulas is not None and _formula(a.element.atomic_number for a in atoms) not in formulas:
        return None
    if any(True for _ in residue.external_bonds()):
        return None
    local = {a.index: k for k, a in enumerate(atoms)}
    bonds = [(local[b[0].index], local[b[1].index]) for b in residue.internal_bonds()]
    return _graph_key([a.element.atomic_number for a in atoms], bonds)


# --- one molecule -----------------------------------------------------------------------

@dataclass
class _Molecule:
    mol: Chem.Mol  # validated, explicit hydrogens, one fragment; a conformer when the input had one
    smiles: str  # canonical SMILES without stereochemistry (formal charges and bond orders)
    key: str  # graph key
    params: ParameterSet | None = None
    tag: str = ""  # unique per (model, molecule): names of atom types and template
    reference_nm: np.ndarray | None = None  # (n, 3) physff energy minimum in vacuum
    _reference_distances: dict = field(default_factory=dict)

    def type_name(self, k: int) -> str:
        return f"{TYPE_PREFIX}-{self.tag}-{k}"

    @property
    def template_name(self) -> str:
        return f"{TYPE_PREFIX}-{self.tag}"


class PhysFFTemplateGenerator:
    """Residue templates and forces of physff molecules for ``openmm.app.ForceField``.

    Parameters
    ----------
    molecules : iterable, optional
        RDKit Mols with explicit hydrogens, SMILES strings or molecule files (anything
        :func:`physff_openmm.load_molecule` reads); a multi-fragment input gives one
        molecule per fragment. More can be added later with :meth:`add_molecules`.
    model : str, path or PhysFFModel
        Model name or file (see :func:`physff_openmm.available_models`).
    cache : bool, str or path, optional
        Parameter cache of :func:`physff_openmm.parameterize`: None or True for the
        default folder, a folder, or False for none.

    Notes
    -----
    Register ``generator`` (a method, as in openmmforcefields) with
    ``ForceField.registerTemplateGenerator``. The first time ``createSystem`` meets a
    residue without a template whose graph is one of the molecules, the generator
    parameterizes the molecule, adds its atom types, residue template and
    NonbondedForce parameters to the ForceField, and registers a force generator that
    adds the molecule's exact internal pair terms to every System built afterwards
    (see the module documentation for what the System holds).

    Raises
    ------
    MoleculeError
        A molecule cannot be read or validated (e.g. an unsupported element), or two
        molecules have the same elements and bonds but different formal charges or
        bond orders (a Topology residue cannot tell them apart).
    """

    def __init__(self, molecules=None, model="default", cache=None):
        self._model = model
        self._cache = True if cache is None else cache
        self._molecules: dict[str, _Molecule] = {}  # graph key -> molecule
        self._formulas: set[tuple[int, ...]] = set()  # element formulas of the molecules (a quick filter)
        if molecules is not None:
            self.add_molecules(molecules)

    # --- molecules ------------------------------------------------------------------
    def add_molecules(self, molecules) -> None:
        """Add molecules (one, or an iterable of them); see the class parameters."""
        from .molecule import load_molecule

        if isinstance(molecules, (str, Chem.Mol)) or hasattr(molecules, "__fspath__"):
            molecules = [molecules]
        for source in molecules:
            mol = load_molecule(source)
            frags = Chem.GetMolFrags(mol, asMols=True, sanitizeFrags=False)
            for frag in frags if len(frags) > 1 else (mol,):
                self._add(Chem.Mol(frag))

    def _add(self, mol: Chem.Mol) -> None:
        smiles = Chem.MolToSmiles(mol, isomericSmiles=False)  # the model reads no stereochemistry
        key = _mol_key(mol)
        known = self._molecules.get(key)
        if known is not None:
            if known.smiles != smiles:
                raise MoleculeError(
                    f"molecules {known.smiles!r} and {smiles!r} have the same atoms and bonds but different formal "
                    "charges or bond orders; a Topology residue cannot tell them apart: give only one of them"
                )
            return
        self._molecules[key] = _Molecule(mol=mol, smiles=smiles, key=key)
        self._formulas.add(_formula(a.GetAtomicNum() for a in mol.GetAtoms()))

    @property
    def smiles(self) -> list[str]:
        """Canonical SMILES (without stereochemistry, which the model does not read) of the molecules."""
        return [m.smiles for m in self._molecules.values()]

    def _parameterize(self, entry: _Molecule) -> ParameterSet:
        if entry.params is None:
            from .parameters import parameterize

            params = parameterize(entry.mol, model=self._model, cache=self._cache)
            entry.params = params
            entry.tag = hashlib.sha256(f"{params.model_hash}|{entry.smiles}".encode()).hexdigest()[:12]
        return entry.params

    def _entry(self, molecule) -> _Molecule:
        from .molecule import load_molecule

        mol = load_molecule(molecule) if not isinstance(molecule, _Molecule) else molecule.mol
        entry = self._molecules.get(_mol_key(mol))
        if entry is None:
            raise MoleculeError(f"{Chem.MolToSmiles(mol)!r} is not one of this generator's molecules")
        return entry

    def parameter_set(self, molecule) -> ParameterSet:
        """The ParameterSet of one of the molecules (atoms in the order the molecule was given)."""
        return self._parameterize(self._entry(molecule))

    def reference_positions(self, molecule) -> np.ndarray:
        """(n, 3) positions in nm of the molecule's physff energy minimum in vacuum.

        Minimized (L-BFGS, Reference platform) from the molecule's own conformer, or
        from an RDKit ETKDG embedding when it has none. Constraints take their
        distances from here.
        """
        entry = self._entry(molecule)
        if entry.reference_nm is None:
            from .molecule import ensure_conformer, positions_angstrom
            from .system import create_system

            params = self._parameterize(entry)
            mol = ensure_conformer(entry.mol)
            system = create_system(params, backend="native")
            context = openmm.Context(system, openmm.VerletIntegrator(0.001), openmm.Platform.getPlatformByName("Reference"))
            context.setPositions(positions_angstrom(mol) * ANGSTROM_TO_NM)
            tolerance = 0.01 * KCAL_TO_KJ / ANGSTROM_TO_NM  # 0.01 kcal/mol/A in kJ/mol/nm
            openmm.LocalEnergyMinimizer.minimize(context, tolerance, 0)
            pos = context.getState(getPositions=True).getPositions(asNumpy=True).value_in_unit(openmm.unit.nanometer)
            entry.reference_nm = np.asarray(pos, dtype=np.float64)
        return entry.reference_nm

    # --- the ForceField side ----------------------------------------------------------
    def generator(self, forcefield: app.ForceField, residue) -> bool:
        """Template generator for ``ForceField.registerTemplateGenerator``.

        Returns True after adding a template for ``residue`` when its graph is one of
        the molecules, False otherwise (the ForceField then reports the residue as
        unmatched, as usual).
        """
        key = _residue_key(residue, self._formulas)
        entry = self._molecules.get(key) if key is not None else None
        if entry is None:
            return False
        generators = forcefield.getGenerators()
        if any(isinstance(g, app.forcefield.LennardJonesGenerator) for g in generators):
            raise ConfigError(
                "physff molecules need a force field whose Lennard-Jones terms are in NonbondedForce (Amber, TIP3P, "
                "OPC, ...); this one has a LennardJonesForce (CHARMM), which PhysFFTemplateGenerator does not support"
            )
        params = self._parameterize(entry)
        forces = _PhysFFForceGenerator.of(forcefield)
        if forces is not None and entry.tag in forces.molecules:
            return True  # this ForceField has the template already
        nonbonded = [g for g in generators if isinstance(g, app.forcefield.NonbondedGenerator)]
        scales = (nonbonded[0].coulomb14scale, nonbonded[0].lj14scale) if nonbonded else _DEFAULT_14_SCALES
        forcefield.loadFile(io.StringIO(_template_xml(entry, params, scales)))
        if forces is None:  # registered after the NonbondedForce generator, so it post-processes after it
            forces = _PhysFFForceGenerator()
            forcefield.registerGenerator(forces)
        forces.molecules[entry.tag] = (entry, self)
        return True

    def matches(self, residue) -> bool:
        """Whether a Topology residue is one of the molecules (same elements and bonds, no bonds to other residues)."""
        key = _residue_key(residue, self._formulas)
        return key is not None and key in self._molecules

    def matched_residues(self, topology: app.Topology) -> list[tuple[object, ParameterSet]]:
        """The residues of ``topology`` that are physff molecules, each with its molecule's ParameterSet."""
        out = []
        for residue in topology.residues():
            key = _residue_key(residue, self._formulas)
            if key is not None and key in self._molecules:
                out.append((residue, self._parameterize(self._molecules[key])))
        return out

    def energy_offset(self, topology: app.Topology) -> float:
        """Sum of E_lin (kcal/mol) of the physff molecules in ``topology``: add it to the System's energy
        for physff's absolute energies (it is a constant, not a force)."""
        return float(sum(p.energy_offset for _, p in self.matched_residues(topology)))


def _template_xml(entry: _Molecule, params: ParameterSet, scales: tuple[float, float]) -> str:
    """ffxml of one molecule: an atom type per atom, the residue template, NonbondedForce charges and per-atom LJ."""
    sigma, eps = atom_lennard_jones(params)
    root = ElementTree.Element("ForceField")
    types = ElementTree.SubElement(root, "AtomTypes")
    residues = ElementTree.SubElement(root, "Residues")
    residue = ElementTree.SubElement(residues, "Residue", name=entry.template_name)
    nonbonded = ElementTree.SubElement(
        root, "NonbondedForce", coulomb14scale=repr(float(scales[0])), lj14scale=repr(float(scales[1]))
    )
    names = []
    for k, symbol in enumerate(params.symbols):
        element = app.Element.getBySymbol(symbol)
        name = entry.type_name(k)
        ElementTree.SubElement(types, "Type", {"name": name, "class": name, "element": symbol,
                                               "mass": repr(element.mass.value_in_unit(openmm.unit.dalton))})
        names.append(f"{symbol}{k + 1}")
        ElementTree.SubElement(residue, "Atom", name=names[-1], type=name)
        ElementTree.SubElement(nonbonded, "Atom", type=name, charge=repr(float(params.charges[k])),
                               sigma=repr(float(sigma[k])), epsilon=repr(float(eps[k])))
    for i, j in params.covalent_pairs.tolist():
        ElementTree.SubElement(residue, "Bond", atomName1=names[i], atomName2=names[j])
    return ElementTree.tostring(root, encoding="unicode")


class _PhysFFForceGenerator:
    """ForceField force generator: constraints and the exact internal pair terms of physff residues.

    One per ForceField, registered by the template generator after the NonbondedForce
    generator, so that its ``postprocessSystem`` runs after the NonbondedForce's
    1-2/1-3/1-4 exceptions exist and replaces them.
    """

    def __init__(self):
        self.molecules: dict[str, tuple[_Molecule, PhysFFTemplateGenerator]] = {}  # tag -> (molecule, its generator)

    @staticmethod
    def of(forcefield: app.ForceField) -> "_PhysFFForceGenerator | None":
        found = [g for g in forcefield.getGenerators() if isinstance(g, _PhysFFForceGenerator)]
        return found[0] if found else None

    def _lookup(self, type_name: str) -> tuple[str, int] | None:
        """(molecule tag, atom index in the molecule) of a physff atom type, None for other types."""
        if not type_name.startswith(TYPE_PREFIX + "-"):
            return None
        _, tag, index = type_name.split("-")
        return (tag, int(index)) if tag in self.molecules else None

    def _residues(self, data) -> list[tuple[str, np.ndarray]]:
        """Each physff residue as (tag, System index of each molecule atom)."""
        found: dict[object, tuple[str, dict[int, int]]] = {}
        for atom in data.atoms:
            hit = self._lookup(data.atomType[atom])
            if hit is not None:
                tag, k = hit
                found.setdefault(atom.residue, (tag, {}))[1][k] = atom.index
        out = []
        for residue, (tag, index) in found.items():
            n = self.molecules[tag][0].params.n_atoms
            if sorted(index) != list(range(n)):
                raise PhysFFError(f"residue {residue.index} ({residue.name}) holds only part of physff molecule "
                                  f"{self.molecules[tag][0].smiles!r}")
            out.append((tag, np.asarray([index[k] for k in range(n)], dtype=np.int64)))
        return out

    def _distance(self, tag: str, i: int, j: int) -> float:
        entry, owner = self.molecules[tag]
        key = (min(i, j), max(i, j))
        if key not in entry._reference_distances:
            x = owner.reference_positions(entry)
            entry._reference_distances[key] = float(np.linalg.norm(x[i] - x[j]))
        return entry._reference_distances[key]

    def createForce(self, sys, data, nonbondedMethod, nonbondedCutoff, args):  # noqa: N802 - OpenMM API
        """Constraints of physff bonds (and angles, for HAngles) at the molecule's vacuum minimum."""
        types = [self._lookup(data.atomType[a]) for a in data.atoms]
        for bond in data.bonds:
            a, b = types[bond.atom1], types[bond.atom2]
            if bond.isConstrained and a is not None and b is not None and a[0] == b[0]:
                data.addConstraint(sys, bond.atom1, bond.atom2, self._distance(a[0], a[1], b[1]))
        for angle, constrained in zip(data.angles, data.isAngleConstrained):
            ends = types[angle[0]], types[angle[1]], types[angle[2]]
            if constrained and None not in ends and ends[0][0] == ends[1][0] == ends[2][0]:
                data.addConstraint(sys, angle[0], angle[2], self._distance(ends[0][0], ends[0][1], ends[2][1]))

    def postprocessSystem(self, sys, data, args):  # noqa: N802 - OpenMM API
        """Every pair inside each physff residue: exact Coulomb + C6/C12 exceptions and the Gaussians."""
        residues = self._residues(data)
        if not residues:
            return
        forces = sys.getForces()
        nonbonded = [f for f in forces if isinstance(f, openmm.NonbondedForce)]
        if len(nonbonded) != 1:
            raise ConfigError(f"physff molecules need exactly one NonbondedForce in the System, found {len(nonbonded)}")
        others = sorted({type(f).__name__ for f in forces if isinstance(
            f, (openmm.CustomNonbondedForce, openmm.GBSAOBCForce, openmm.CustomGBForce, openmm.AmoebaVdwForce))})
        if others:
            raise ConfigError(f"physff molecules cannot be combined with {', '.join(others)} in one System "
                              "(its pairs inside a physff molecule would be counted twice)")
        nb = nonbonded[0]
        fallback = _c6_c12_fallback_force()
        gaussians: dict[tuple[float, float], tuple[list, list]] = {}
        for tag, index in residues:
            params = self.molecules[tag][0].params
            pairs = index[params.intra_pairs]
            _add_exact_pairs(nb, fallback, pairs, _intra_charge_products(params), params.intra_parameters, replace=True)
            lists = gaussians.setdefault(tuple(params.switch), ([], []))
            lists[0].append(pairs)
            lists[1].append(params.intra_parameters)
        for switch, (pairs, values) in gaussians.items():
            sys.addForce(_short_range_bond_force(np.concatenate(pairs), np.concatenate(values), *switch))
        if fallback.getNumBonds():
            sys.addForce(fallback)
        core = _bare_hydrogen_core_force(nb, np.concatenate([index for _, index in residues]), data.atoms)
        if core is not None:
            sys.addForce(core)


def _bare_hydrogen_core_force(nb: openmm.NonbondedForce, physff_atoms: np.ndarray,
                              atoms) -> openmm.CustomNonbondedForce | None:
    """Lennard-Jones between the physff atoms with a negative charge and the hydrogens of other residues
    that ``nb`` gives no Lennard-Jones term, with :data:`BARE_HYDROGEN_CORE` for those hydrogens and the
    physff atoms' own sigma and epsilon, combined by Lorentz-Berthelot, under ``nb``'s cutoff; None when
    there are none."""
    kj, e = openmm.unit.kilojoule_per_mole, openmm.unit.elementary_charge
    physff = {int(k) for k in physff_atoms}
    acceptors = sorted(k for k in physff if nb.getParticleParameters(k)[0].value_in_unit(e) < 0.0)
    bare = [a.index for a in atoms if a.index not in physff and a.element is not None and a.element.symbol == "H"
            and nb.getParticleParameters(a.index)[2].value_in_unit(kj) == 0.0]
    if not bare or not acceptors:
        return None
    force = openmm.CustomNonbondedForce(
        "4*epsilon*((sigma/r)^12-(sigma/r)^6); sigma=0.5*(sigma1+sigma2); epsilon=sqrt(epsilon1*epsilon2)")
    force.setName(BARE_HYDROGEN_CORE_NAME)
    force.addPerParticleParameter("sigma")
    force.addPerParticleParameter("epsilon")
    bare_set = set(bare)
    for k in range(nb.getNumParticles()):
        if k in physff:
            _, sigma, eps = nb.getParticleParameters(k)
            force.addParticle([sigma.value_in_unit(openmm.unit.nanometer), eps.value_in_unit(kj)])
        else:
            force.addParticle(list(BARE_HYDROGEN_CORE) if k in bare_set else [0.1, 0.0])
    force.addInteractionGroup(acceptors, bare)
    for k in range(nb.getNumExceptions()):  # OpenMM's platforms want the same exclusions in every nonbonded force
        i, j, *_ = nb.getExceptionParameters(k)
        force.addExclusion(i, j)
    method = nb.getNonbondedMethod()
    if method == openmm.NonbondedForce.NoCutoff:
        force.setNonbondedMethod(openmm.CustomNonbondedForce.NoCutoff)
    else:
        periodic = method != openmm.NonbondedForce.CutoffNonPeriodic
        force.setNonbondedMethod(openmm.CustomNonbondedForce.CutoffPeriodic if periodic
                                 else openmm.CustomNonbondedForce.CutoffNonPeriodic)
        force.setCutoffDistance(nb.getCutoffDistance())
        if nb.getUseSwitchingFunction():
            force.setUseSwitchingFunction(True)
            force.setSwitchingDistance(nb.getSwitchingDistance())
    return force
