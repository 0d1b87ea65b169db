"""Bonds between heavy atoms pulled to dissociation: physff against GFN2-xTB.

The pair formula is fitted near equilibrium and on bonds pulled to 1.8 times their length
(the recipe's ``heavy_pulls``); beyond that nothing trains it. This measures where a bond's
cleavage ends. Per molecule (physff-minimized from an RDKit/MMFF94 conformer) and per acyclic
bond between heavy atoms: the smaller side moved rigidly along the bond axis by 0.3-10
Angstrom, physff's energy relative to the start (native System, Reference platform): its
highest point (the barrier a trajectory must cross) and its value with the sides 10 Angstrom
further apart (the dissociated limit). References from GFN2-xTB (tblite): along the path the
closed-shell molecule's energy (how far physff follows it: the longest stretch up to which it
stays within :data:`FOLLOW_KCAL_MOL`), and the homolytic dissociation energy, the closed-shell
molecule against its two fragments, each alone with one unpaired electron per broken bond (a
doublet; a triplet for a double bond; unrelaxed fragments: an upper bound of the bond
dissociation energy). Neutral molecules only.

Usage (repository root, ``pip install -e .[train]`` for tblite)::

    python benchmarks/bond_cleavage.py
"""

from __future__ import annotations

import argparse
import sys

import numpy as np

from _common import command_line, machine_info, md_table, write_results

#: Drug-like molecules and small ones (the README's paracetamol, the recipe's MD-check molecules).
DEFAULT_SMILES = ["CC(=O)Nc1ccc(O)cc1", "CCO", "CC(=O)NC", "Clc1ccccc1C(=O)O", "CC(=O)Oc1ccccc1C(=O)O", "CCN(CC)CC"]
#: Rigid separations of the two sides along the bond axis, Angstrom (the last is the dissociated limit).
SHIFTS = (0.3, 0.6, 1.0, 1.5, 2.0, 3.0, 4.0, 6.0, 10.0)
#: physff "follows" GFN2-xTB along a path while it stays within this much of GFN2-xTB's closed-shell energy, kcal/mol.
FOLLOW_KCAL_MOL = 15.0


def own_well(params, bond: tuple[int, int]) -> tuple[float, float]:
    """The bond's own pair term in ``params`` (a ParameterSet): the depth eps = C_0^2 / (4 C_1) of its
    12-6 well, and how far its whole pair energy (12-6 and switched Gaussians, the formula of
    :func:`physff_openmm.energy.pair_energy`) rises from its lowest point to r_off, kcal/mol."""
    import torch

    from physff_openmm.energy import pair_energy

    k = int(np.flatnonzero([set(p) == set(bond) for p in params.covalent_pairs.tolist()])[0])
    c = params.covalent_parameters[k]
    r_e = params.equilibrium_lengths()[k]
    r_on, r_off = params.switch
    r = torch.linspace(0.7 * r_e, r_off, 2000, dtype=torch.float64)
    n = len(r)
    e = pair_energy(r, torch.zeros(n, dtype=torch.float64), torch.zeros(n, dtype=torch.float64),
                    torch.as_tensor(np.tile(c, (n, 1)), dtype=torch.float64), torch.ones(n, dtype=torch.bool), r_on, r_off)
    return float(c[0] ** 2 / (4.0 * c[1])), float(e[-1] - e.min())


def cleavage_rows(mol, model) -> tuple[np.ndarray, list[dict]]:
    """The physff-minimized start (Angstrom) and one dict per acyclic bond between heavy atoms of ``mol``
    (see the module docstring; ``atoms``: the bond's atom on the fixed side, then the one on the moved side)."""
    import openmm
    from openmm import unit
    from rdkit import Chem

    import physff_openmm as pf
    from physff_openmm.molecule import positions_angstrom
    from physff_openmm.training.data import cleavage_spin, fragment_pull_geometries
    from physff_openmm.training.xtb import xtb_energies
    from physff_openmm.units import HARTREE_TO_KCAL

    def xtb_kcal(numbers, geometries, uhf=None) -> np.ndarray:
        """GFN2-xTB energies along a path (one calculator walks it), kcal/mol; NaN where the SCF does not converge."""
        return np.array([np.nan if e is None else e * HARTREE_TO_KCAL for e in xtb_energies(numbers, geometries, uhf=uhf)])

    params = pf.parameterize(mol, model=model)
    system = pf.create_system(params)
    ctx = openmm.Context(system, openmm.VerletIntegrator(0.001), openmm.Platform.getPlatformByName("Reference"))
    ctx.setPositions(positions_angstrom(mol) * 0.1)
    openmm.LocalEnergyMinimizer.minimize(ctx, 1e-3, 2000)
    x0 = ctx.getState(getPositions=True).getPositions(asNumpy=True).value_in_unit(unit.angstrom)

    def energy(x) -> float:
        ctx.setPositions(x * 0.1)
        return ctx.getState(getEnergy=True).getPotentialEnergy().value_in_unit(unit.kilocalorie_per_mole)

    numbers = [a.GetAtomicNum() for a in mol.GetAtoms()]
    e0 = energy(x0)
    rows = []
    for bond in mol.GetBonds():
        i, j = bond.GetBeginAtomIdx(), bond.GetEndAtomIdx()
        if bond.IsInRing() or 1 in (numbers[i], numbers[j]):
            continue
        pieces = Chem.GetMolFrags(Chem.FragmentOnBonds(mol, [bond.GetIdx()], addDummies=False))
        side = min(pieces, key=len)
        a, b = sorted((i, j), key=lambda k: k in side)  # b on the moved side
        eps, own = own_well(params, (i, j))
        length = float(np.linalg.norm(x0[i] - x0[j]))
        path = list(fragment_pull_geometries(mol, x0, (a, b), [1.0 + s / length for s in SHIFTS]))
        profile = [energy(x) - e0 for x in path]
        closed = xtb_kcal(numbers, [x0] + path[:-1])  # the closed-shell molecule from the start, the limit left out
        xtb0, closed_shell = closed[0], (closed[1:] - closed[0]).tolist()
        follows = 1.0  # the longest stretch (multiple of the bond's length) up to which physff stays near GFN2-xTB
        for s, e, ref in zip(SHIFTS, profile, closed_shell):
            if not abs(e - ref) <= FOLLOW_KCAL_MOL:
                break
            follows = (length + s) / length
        rest = [k for k in range(len(numbers)) if k not in side]
        spin = cleavage_spin(mol, (i, j)) // 2  # each side's share: a double bond leaves two triplets
        fragments = sum(xtb_kcal([numbers[k] for k in f], [x0[f]], uhf=spin)[0] for f in (list(side), rest))
        rows.append({
            "bond": f"{mol.GetAtomWithIdx(a).GetSymbol()}{a}-{mol.GetAtomWithIdx(b).GetSymbol()}{b}",
            "atoms": [a, b], "order": str(bond.GetBondType()).lower(), "moved_atoms": sorted(side),
            "physff_profile_kcal_mol": profile, "xtb_closed_shell_profile_kcal_mol": closed_shell,
            "physff_follows_xtb_to": follows, "physff_barrier_kcal_mol": max(profile),
            "physff_dissociated_kcal_mol": profile[-1], "xtb_dissociation_kcal_mol": fragments - xtb0,
            "physff_bond_eps_kcal_mol": eps, "physff_bond_own_depth_kcal_mol": own,
        })
    return x0, rows


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--model", default="default", help="model name or file (default: %(default)s)")
    p.add_argument("--smiles", nargs="+", default=DEFAULT_SMILES, help="neutral molecules (default: six drug-like and small ones)")
    p.add_argument("--out", default="bond_cleavage", help="results stem in benchmarks/results")
    args = p.parse_args(argv)
    import physff_openmm as pf
    from physff_openmm.errors import PhysFFError
    from physff_openmm.molecule import ensure_conformer, load_molecule

    try:
        model = pf.load_model(args.model)
        mols = {s: ensure_conformer(load_molecule(s)) for s in args.smiles}
    except PhysFFError as exc:  # unknown model, bad SMILES: one line, nothing written
        print(f"error: {exc}", file=sys.stderr)
        return 2
    charged = [s for s, m in mols.items() if any(a.GetFormalCharge() for a in m.GetAtoms())]
    if charged:
        print(f"error: neutral molecules only (homolytic cleavage), got {', '.join(charged)}", file=sys.stderr)
        return 2
    records, rows, starts = [], [], []
    for smiles, mol in mols.items():
        x0, bonds = cleavage_rows(mol, model)
        starts.append({"smiles": smiles, "start_positions_angstrom": x0.tolist()})
        for r in bonds:
            records.append({"smiles": smiles, **r})
            rows.append([smiles, r["bond"], r["order"], f"{r['physff_follows_xtb_to']:.2f}", r["physff_barrier_kcal_mol"],
                         r["physff_dissociated_kcal_mol"], r["xtb_dissociation_kcal_mol"], r["physff_bond_eps_kcal_mol"],
                         r["physff_bond_own_depth_kcal_mol"]])
    barrier = np.array([r["physff_barrier_kcal_mol"] for r in records])
    limit = np.array([r["physff_dissociated_kcal_mol"] for r in records])
    xtb = np.array([r["xtb_dissociation_kcal_mol"] for r in records])
    summary = {
        "n_bonds": len(records), "n_molecules": len(mols),
        "physff_dissociated_below_start": int((limit < 0).sum()),
        "physff_barrier_median_min_kcal_mol": [float(np.median(barrier)), float(barrier.min())],
        "physff_dissociated_median_kcal_mol": float(np.median(limit)),
        "physff_follows_xtb_to_median_min": [float(np.median([r["physff_follows_xtb_to"] for r in records])),
                                             float(min(r["physff_follows_xtb_to"] for r in records))],
        "xtb_dissociation_median_min_kcal_mol": [float(np.median(xtb)), float(xtb.min())],
        "physff_bond_eps_median_kcal_mol": float(np.median([r["physff_bond_eps_kcal_mol"] for r in records])),
        "physff_bond_own_depth_median_kcal_mol": float(np.median([r["physff_bond_own_depth_kcal_mol"] for r in records])),
    }
    info = machine_info()
    text = (
        "# Bonds between heavy atoms pulled to dissociation: physff against GFN2-xTB\n\n"
        f"Command: `{command_line(argv, __file__)}` ({info['date_utc']}); model {model.name}, sha256 "
        f"{model.file_hash[:8]}.\n\n"
        "Each acyclic bond between heavy atoms of each molecule (physff-minimized), its smaller side moved rigidly "
        "along the bond axis. physff: the highest energy along the path (shifts of "
        f"{', '.join(f'{s:g}' for s in SHIFTS)} Angstrom) and the energy 10 Angstrom further apart, both relative to "
        "the start. GFN2-xTB: the two fragments, each alone with one unpaired electron per broken bond, against the closed-shell molecule "
        "(unrelaxed fragments). kcal/mol.\n\n"
        f"{summary['n_bonds']} bonds of {summary['n_molecules']} molecules: physff's dissociated limit lies below the "
        f"bound molecule for {summary['physff_dissociated_below_start']} (median {summary['physff_dissociated_median_kcal_mol']:.0f}); "
        f"its barrier median {summary['physff_barrier_median_min_kcal_mol'][0]:.0f}, lowest "
        f"{summary['physff_barrier_median_min_kcal_mol'][1]:.0f}; GFN2-xTB's dissociation energy median "
        f"{summary['xtb_dissociation_median_min_kcal_mol'][0]:.0f}, lowest {summary['xtb_dissociation_median_min_kcal_mol'][1]:.0f}.\n\n"
        f"physff stays within {FOLLOW_KCAL_MOL:g} kcal/mol of GFN2-xTB's closed-shell energy along the path up to a "
        f"median {summary['physff_follows_xtb_to_median_min'][0]:.2f} times the bond's length (the least "
        f"{summary['physff_follows_xtb_to_median_min'][1]:.2f}; the recipe's heavy-atom pulls reach 1.8).\n\n"
        "The bond's own pair term (its 12-6 well and switched Gaussians): depth eps of the 12-6 well median "
        f"{summary['physff_bond_eps_median_kcal_mol']:.1f}, rise from its lowest point to r_off median "
        f"{summary['physff_bond_own_depth_median_kcal_mol']:.1f}.\n\n"
        + md_table(["molecule", "bond (moved side second)", "order", "physff follows GFN2-xTB to (x length)", "physff barrier",
                    "physff at +10 A", "GFN2-xTB dissociation", "physff bond's 12-6 depth",
                    "physff bond's own term, minimum to r_off"], rows, digits=0)
        + "\n"
    )
    write_results(args.out, {"command": command_line(argv, __file__), "machine": info, "model": model.name,
                             "sha256": model.file_hash, "shifts_angstrom": list(SHIFTS), "summary": summary,
                             "molecules": starts, "bonds": records}, text)
    print(text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
