"""A protein-ligand complex in water: villin headpiece (OpenMM's test.pdb) with a physff ligand beside it.

Builds the complex offline: the protein from ``openmm/app/data/test.pdb`` (its water
removed) is written as the receptor PDB, and the ligand (paracetamol by default) is
embedded with RDKit and placed 3.5 Angstrom from the protein's surface, written as an
SDF in the protein's frame. Then ``run_md`` (the same driver as ``physff-openmm md
receptor.pdb --ligand ligand.sdf``) solvates the complex in TIP3P with 0.15 M NaCl,
types the protein with Amber14 and the ligand with physff, minimizes, and runs NPT
dynamics (PME, 2 fs, bonds to hydrogen constrained) with the bond watch on the ligand.

    python examples/protein_ligand.py --model default --out protein_ligand_out --steps 1000
"""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np
from openmm import app, unit
from rdkit import Chem

from physff_openmm import workflows as wf
from physff_openmm.molecule import ensure_conformer, load_molecule, positions_angstrom

PARACETAMOL = "CC(=O)Nc1ccc(O)cc1"
#: Gap between the ligand and the protein's atoms along the placement direction, Angstrom.
GAP_ANGSTROM = 3.5


def write_receptor(path: Path) -> np.ndarray:
    """Villin without its water and ions, as a PDB file; returns its positions (Angstrom)."""
    pdb = app.PDBFile(str(Path(app.__file__).parent / "data" / "test.pdb"))
    modeller = app.Modeller(pdb.topology, pdb.positions)
    modeller.deleteWater()
    modeller.delete([r for r in modeller.topology.residues() if len(r) == 1])  # ions
    with open(path, "w") as fh:
        app.PDBFile.writeFile(modeller.topology, modeller.positions, fh)
    return np.asarray(modeller.positions.value_in_unit(unit.angstrom))


def write_ligand(smiles: str, protein_a: np.ndarray, path: Path) -> Chem.Mol:
    """The ligand embedded with RDKit, moved to GAP_ANGSTROM beyond the protein's largest x, written as SDF."""
    from physff_openmm.workflows.simulation import with_positions

    mol = ensure_conformer(load_molecule(smiles))
    x = positions_angstrom(mol)
    center = protein_a.mean(axis=0)
    shift = np.array([protein_a[:, 0].max() + GAP_ANGSTROM - x[:, 0].min(), center[1] - x[:, 1].mean(),
                      center[2] - x[:, 2].mean()])
    mol = with_positions(mol, x + shift)
    with Chem.SDWriter(str(path)) as writer:
        writer.write(mol)
    return mol


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default="default", help="model name or file (default: %(default)s)")
    parser.add_argument("--out", default="protein_ligand_out", help="output folder")
    parser.add_argument("--smiles", default=PARACETAMOL, help="ligand (default: paracetamol)")
    parser.add_argument("--steps", type=int, default=1000, help="MD steps of 2 fs (default: %(default)s, 2 ps)")
    parser.add_argument("--padding", type=float, default=1.0, help="box edge = complex diameter + this, nm (default: %(default)s)")
    parser.add_argument("--platform", default=None, help="OpenMM platform (default: the fastest)")
    args = parser.parse_args(argv)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)

    protein = write_receptor(out / "receptor.pdb")
    ligand = write_ligand(args.smiles, protein, out / "ligand.sdf")
    gap = np.linalg.norm(positions_angstrom(ligand)[:, None] - protein[None], axis=-1).min()
    print(f"receptor: villin, {len(protein)} atoms; ligand {args.smiles}, {ligand.GetNumAtoms()} atoms, "
          f"closest protein atom {gap:.1f} A")
    res = wf.run_md(
        out / "ligand.sdf",
        args.steps,
        receptor=out / "receptor.pdb",
        model=args.model,
        platform=args.platform,
        padding_nm=args.padding,
        ions="NaCl:0.15",
        trajectory=out / "md.dcd",
        report_csv=out / "md.csv",
        structure=out / "start.pdb",
        report_interval=max(1, args.steps // 20),
        seed=2024,
    )
    print(
        f"{res['n_atoms']} atoms ({res['n_waters']} waters), {res['steps']} steps of {res['timestep_fs']:g} fs "
        f"({res['ensemble'].upper()}) on {res['platform']}: t = {res['time_ps']:.2f} ps, density {res['density_g_ml']:.3f} g/mL, "
        f"{res['ns_per_day']:.1f} ns/day; largest ligand bond change {res['max_bond_change']:+.1%} ({res['worst_bond']})"
    )
    print(f"wrote {out / 'receptor.pdb'}, {out / 'ligand.sdf'}, {out / 'start.pdb'}, {out / 'md.dcd'} and {out / 'md.csv'}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
