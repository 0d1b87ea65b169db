"""Energy along one stretched bond: a model (native OpenMM System) against GFN2-xTB single points.

Moves the second atom of the first bond of the requested element pair along the
bond axis (everything else fixed at an RDKit/MMFF geometry) and prints both
energies relative to the starting bond length. It shows whether a model's
covalent terms hold a bond together: GFN2-xTB needs about 130 kcal/mol to pull
a C-H bond of ethanol to 4 Angstrom.

Usage (repository root)::

    python benchmarks/bond_stretch_profile.py --model physff-default --smiles CCO --bond C-H
"""

from __future__ import annotations

import argparse
import sys

import numpy as np

from _common import command_line, machine_info, md_table, write_results

DISTANCES = (0.8, 0.9, 1.0, 1.1, 1.2, 1.4, 1.7, 2.0, 2.5, 3.0, 4.0)


def stretched_bond(smiles: str, bond: str):
    """(molecule, i, j, start geometry) for the first ``bond`` (element pair) of ``smiles``; j is the atom that moves.

    The geometry is RDKit/MMFF's; where the pair is X-H, the hydrogen moves.
    """
    from physff_openmm.errors import PhysFFError
    from physff_openmm.molecule import ensure_conformer, load_molecule, positions_angstrom

    mol = ensure_conformer(load_molecule(smiles))
    x0 = positions_angstrom(mol)
    sym = [a.GetSymbol() for a in mol.GetAtoms()]
    want = sorted(bond.split("-"))
    pairs = [(b.GetBeginAtomIdx(), b.GetEndAtomIdx()) for b in mol.GetBonds()]
    pairs = [(i, j) for i, j in pairs if sorted((sym[i], sym[j])) == want]
    if not pairs:
        raise PhysFFError(f"{smiles} has no {bond} bond")
    i, j = pairs[0]
    if sym[i] == "H" and sym[j] != "H":  # move the hydrogen
        i, j = j, i
    return mol, i, j, x0


def at_length(x0: np.ndarray, i: int, j: int, r: float) -> np.ndarray:
    """``x0`` with atom j moved along the i-j axis to distance ``r`` (Angstrom) from atom i."""
    axis = (x0[j] - x0[i]) / np.linalg.norm(x0[j] - x0[i])
    x = x0.copy()
    x[j] = x0[i] + axis * r
    return x


def xtb_energy_kcal(mol, x: np.ndarray) -> float:
    """GFN2-xTB energy (kcal/mol) of ``mol`` at positions ``x`` (Angstrom)."""
    from physff_openmm.training.xtb import xtb_energy_forces
    from physff_openmm.units import HARTREE_TO_KCAL

    charge = int(sum(a.GetFormalCharge() for a in mol.GetAtoms()))
    return float(xtb_energy_forces([a.GetAtomicNum() for a in mol.GetAtoms()], x, charge)[0] * HARTREE_TO_KCAL)


def profile(model: str, smiles: str, bond: str) -> dict:
    import openmm
    import openmm.unit as u

    import physff_openmm as pf
    from physff_openmm.units import ANGSTROM_TO_NM

    mol, i, j, x0 = stretched_bond(smiles, bond)
    sym = [a.GetSymbol() for a in mol.GetAtoms()]
    params = pf.parameterize(mol, model=model, cache=False)
    system = pf.create_system(params, backend="native")
    ctx = openmm.Context(system, openmm.VerletIntegrator(1e-3), openmm.Platform.getPlatformByName("Reference"))
    rows = []
    for r in (np.linalg.norm(x0[j] - x0[i]),) + DISTANCES:
        x = at_length(x0, i, j, r)
        ctx.setPositions(x * ANGSTROM_TO_NM)
        e_model = ctx.getState(getEnergy=True).getPotentialEnergy().value_in_unit(u.kilocalorie_per_mole)
        rows.append((float(r), float(e_model), xtb_energy_kcal(mol, x)))
    e0_model, e0_xtb = rows[0][1], rows[0][2]
    return {
        "smiles": smiles, "bond": f"{sym[i]}{i}-{sym[j]}{j}", "r0_angstrom": rows[0][0],
        "points": [{"r_angstrom": r, "model_kcal_mol": m - e0_model, "gfn2_xtb_kcal_mol": x - e0_xtb} for r, m, x in rows[1:]],
    }


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--model", default="physff-default", help="model name or file (default: %(default)s)")
    p.add_argument("--smiles", default="CCO")
    p.add_argument("--bond", default="C-H", help="element pair, e.g. C-H, O-H, C-C (default: %(default)s)")
    p.add_argument("--out", default=None, help="results stem in benchmarks/results (default: bond_stretch_<model>)")
    args = p.parse_args(argv)
    if args.bond.count("-") != 1:
        p.error(f"--bond must look like C-H, got {args.bond!r}")
    from physff_openmm.errors import PhysFFError

    try:
        res = profile(args.model, args.smiles, args.bond)
    except PhysFFError as exc:  # unknown model, bad SMILES, no such bond: one line, nothing written
        print(f"error: {exc}", file=sys.stderr)
        return 2
    info = machine_info()
    rows = [[f"{q['r_angstrom']:.2f}", f"{q['model_kcal_mol']:.1f}", f"{q['gfn2_xtb_kcal_mol']:.1f}"] for q in res["points"]]
    text = (
        f"# Energy along a stretched bond: {args.model}, {res['bond']} of {res['smiles']}\n\n"
        f"Command: `{command_line(argv, __file__)}`"
        f" ({info['date_utc']}).\n\nEnergies (kcal/mol) relative to the starting bond length {res['r0_angstrom']:.3f} A; "
        "only the bond's second atom moves.\n\n"
        + md_table(["r (A)", "model", "GFN2-xTB"], rows)
    )
    stem = args.out or f"bond_stretch_{args.model}".replace("/", "_")
    write_results(stem, {"command": command_line(argv, __file__), "machine": info, **res}, text)
    print(text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
