"""User workflows: energies, minimization, scans, MD and interaction energies in a few lines.

>>> from physff_openmm import workflows as wf
>>> wf.energy("CCO")["energy_kcal_mol"]                      # doctest: +SKIP
>>> mol, e = wf.minimize("ligand.sdf")                       # doctest: +SKIP
>>> rows = wf.torsion_scan("CCCC", (0, 1, 2, 3), step_deg=15)  # doctest: +SKIP
>>> wf.run_md("CC(=O)Nc1ccc(O)cc1", 1000, trajectory="md.dcd", report_csv="md.csv")  # doctest: +SKIP
>>> wf.run_md("CCO", 1000, constraints=None, timestep_fs=1.0)  # no constraints   # doctest: +SKIP
>>> wf.interaction_energy("O.O", minimize=True)              # doctest: +SKIP
>>> wf.run_md("ligand.sdf", 10000, solvent="tip3p", ions="NaCl:0.15")  # NPT in water  # doctest: +SKIP
>>> wf.run_md("ligand.sdf", 10000, receptor="protein.pdb")  # beside a protein, solvated  # doctest: +SKIP

Units: kcal/mol, Angstrom, degrees, K, fs and ps, as the argument names say (nm for box
padding and cutoffs). MD defaults to a 2 fs step with bonds to hydrogen constrained
(``constraints="hbonds"``); in water (:mod:`.solvation`) to NPT with PME.
Absolute energies include E_lin (``ParameterSet.energy_offset``). Every file is
written to a temporary file in its folder and renamed when complete.
"""

from __future__ import annotations

from ._files import (
    STRUCTURE_SUFFIXES,
    atomic_output,
    check_output_path,
    read_report_csv,
    write_rows_csv,
    write_structures,
)
from .md import TRAJECTORY_SUFFIXES, run_md
from .plots import check_plot_path, plot_md_report, plot_scan
from .scan import conformer_scan, dihedral_deg, torsion_scan, validate_dihedral
from .simulation import (
    CONSTRAINTS,
    ENSEMBLES,
    build_simulation,
    energy,
    energy_components,
    interaction_energy,
    minimize,
    topology_from_mol,
)
from .solvation import (
    WATER_MODELS,
    SolvatedSystem,
    build_solvated_simulation,
    build_solvated_system,
)

__all__ = [
    "build_simulation",
    "build_solvated_system",
    "build_solvated_simulation",
    "SolvatedSystem",
    "WATER_MODELS",
    "energy",
    "energy_components",
    "minimize",
    "torsion_scan",
    "conformer_scan",
    "run_md",
    "interaction_energy",
    "plot_scan",
    "plot_md_report",
    "topology_from_mol",
    "dihedral_deg",
    "validate_dihedral",
    "read_report_csv",
    "write_structures",
    "write_rows_csv",
    "atomic_output",
    "check_output_path",
    "check_plot_path",
    "ENSEMBLES",
    "CONSTRAINTS",
    "TRAJECTORY_SUFFIXES",
    "STRUCTURE_SUFFIXES",
]
