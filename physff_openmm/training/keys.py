"""Field names of the HDF5 datasets and training batches, with shape and unit.

One vocabulary for every reader, writer and trainer. Energies are stored in
Hartree, positions in Angstrom, forces in Hartree/Angstrom; conversion to the
model's kcal/mol happens once, when a batch is built.
"""

from __future__ import annotations

# --- per molecule (HDF5 group per molecule, one entry per conformer) -------------
SPECIES = "species"                # (n_atoms,) int8 | atomic numbers
FORMAL_CHARGES = "formal_charges"  # (n_atoms,) int8 | e, formal charge per atom
BONDS = "bonds"                    # (n_bonds, 2) int32 | zero-based atom indices, i < j
BOND_ORDERS = "bond_orders"        # (n_bonds,) float32 | 1, 1.5 (aromatic), 2, 3
POSITIONS = "positions"            # (n_conf, n_atoms, 3) float64 | Angstrom
ENERGY = "energy"                  # (n_conf,) float64 | Hartree, total energy at attrs[LEVEL]
FORCES = "forces"                  # (n_conf, n_atoms, 3) float64 | Hartree/Angstrom (NaN where absent)
QM_CHARGES = "qm_charges"          # (n_conf, n_atoms) float64 | e, Mulliken charges (NaN where absent)
KD_ATOM = "kd_atom"                # (n_conf, n_atoms) float64 | Hartree, sum_{mu,nu on i} K D
KD_PAIR = "kd_pair"                # (n_conf, n_atoms, n_atoms) float64 | Hartree, symmetric, zero diagonal
INTERACTION_ENERGY = "interaction_energy"  # (n_conf,) float64 | Hartree, E(AB) - sum E(fragment)
EXTRA_ENERGIES = "extra_energies"  # group: {level: (n_conf,) float64 | Hartree} other levels of theory
CONFORMER_IDS = "conformer_ids"    # (n_conf,) bytes | source conformer names
# optional, present only where the source provides them:
ANGLES_DEG = "angles_deg"          # (n_conf,) float64 | degree, torsion-drive angle of each conformer
SCALING = "scaling"                # (n_conf,) float64 | dimensionless, intermolecular distance / equilibrium
DIHEDRAL = "dihedral"              # (4,) int32 | zero-based atom indices of the driven torsion
FRAGMENTS = "fragments"            # (n_atoms,) int8 | fragment (monomer) index of each atom, for INTERACTION_ENERGY

# --- attributes of a molecule group --------------------------------------------------
SMILES = "smiles"                  # str | canonical SMILES (isomeric), the split key
TOTAL_CHARGE = "total_charge"      # int | e
LEVEL = "level"                    # str | level of theory of ENERGY / FORCES / KD_*
SOURCE = "source"                  # str | provenance (data set, file, program and version)
COMPLETE = "complete"              # bool | all requested conformers labelled (resume marker)
SUBSET = "subset"                  # str | named subset of the source (e.g. NCIA_HB375x10), optional
NCI_GROUP = "nci_group"            # str | non-covalent interaction class of a dimer (NCIAtlas group), optional
# (each dataset in EXTRA_ENERGIES carries attrs[LEVEL] = the level's name; its dataset name is a safe form of it)

# --- file attributes -----------------------------------------------------------------
SCHEMA_VERSION = "schema_version"  # int | version of this layout
CURRENT_SCHEMA_VERSION = 1

# --- levels of theory -----------------------------------------------------------------
XTB_LEVEL = "gfn2-xtb"  # name of the GFN2-xTB level in shards and model metadata
