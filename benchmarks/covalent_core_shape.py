"""Which well shape can carry a bond from its length to its dissociation: 12-6 against Morse.

The covalent core of ``DESIGN.md`` gives every bond a Lennard-Jones 12-6 well,
eps [(r_e/r)^12 - 2 (r_e/r)^6], whose force constant at the minimum, 72 eps / r_e^2, ties its
depth to its stiffness. This measures what that costs against GFN2-xTB's energy along a bond
being broken: per molecule and bond, the smaller side moved rigidly along the bond from 0.85 to
4 times its length, each point the lower of the closed-shell and the high-spin state
(:func:`physff_openmm.training.xtb.xtb_lowest_state`; two unpaired electrons per bond order);
then a 12-6 well (eps, r_e) and a Morse well D [1 - exp(-a (r - r_e))]^2 (D, a, r_e) fitted to
that curve by least squares (scipy), each with its RMSE, its depth and its force constant at the
minimum, against GFN2-xTB's (the parabola through the lowest point and its two neighbours).

Usage (repository root, ``pip install -e .[train]`` for tblite)::

    python benchmarks/covalent_core_shape.py
"""

from __future__ import annotations

import argparse
import sys

import numpy as np

from _common import command_line, machine_info, md_table, write_results

#: Small molecules whose first heavy-atom bond is taken apart (C-C, C-O, C-N, C=O, C-Cl).
DEFAULT_SMILES = ["CC", "CO", "CN", "C=O", "CCl"]
#: Lengths along each curve, multiples of the bond's.
FACTORS = tuple(np.round(np.concatenate([np.linspace(0.85, 1.3, 10), np.linspace(1.4, 4.0, 14)]), 4))


def twelve_six(r, eps, r_e):
    """A 12-6 well relative to its dissociated limit (0 at r_e would be -eps): eps [(r_e/r)^12 - 2 (r_e/r)^6 + 1]."""
    x = (r_e / r) ** 6
    return eps * (x * x - 2.0 * x + 1.0)


def morse(r, depth, a, r_e):
    """A Morse well relative to its minimum: D [1 - exp(-a (r - r_e))]^2."""
    return depth * (1.0 - np.exp(-a * (r - r_e))) ** 2


def bond_curve(mol, bond: tuple[int, int], factors=FACTORS) -> tuple[np.ndarray, np.ndarray]:
    """(bond lengths, Angstrom; GFN2-xTB energies relative to the lowest point, kcal/mol) of ``bond``
    of ``mol`` (with a conformer) taken apart, its smaller side moving as a whole; a point where
    no state converges is left out."""
    from physff_openmm.errors import QMError
    from physff_openmm.molecule import positions_angstrom
    from physff_openmm.training.data import cleavage_spin, fragment_pull_geometries
    from physff_openmm.training.xtb import xtb_lowest_state
    from physff_openmm.units import HARTREE_TO_KCAL

    x0 = positions_angstrom(mol)
    numbers = [a.GetAtomicNum() for a in mol.GetAtoms()]
    charge = sum(a.GetFormalCharge() for a in mol.GetAtoms())
    i, j = bond
    spins = (None, cleavage_spin(mol, bond))
    energies = []
    for x in fragment_pull_geometries(mol, x0, bond, factors):
        try:
            energies.append(xtb_lowest_state(numbers, x, charge, spins)[0] * HARTREE_TO_KCAL)
        except QMError:  # no state's SCF converges: the point is left out
            energies.append(np.nan)
    r = np.asarray(factors) * float(np.linalg.norm(x0[j] - x0[i]))
    e = np.asarray(energies)
    ok = np.isfinite(e)
    return r[ok], e[ok] - e[ok].min()


def fit_shapes(r: np.ndarray, e: np.ndarray) -> dict:
    """The 12-6 and Morse fits of a curve (see the module docstring)."""
    from scipy.optimize import curve_fit

    k = int(np.clip(np.argmin(e), 1, len(e) - 2))
    r_min = float(r[k])
    k_ref = 2.0 * float(np.polyfit(r[k - 1:k + 2] - r_min, e[k - 1:k + 2], 2)[0])
    out = {"xtb_force_constant": k_ref, "xtb_plateau_kcal_mol": float(e[-1])}
    (eps, re_lj), _ = curve_fit(twelve_six, r, e, p0=[100.0, r_min], maxfev=20000)
    (d, a, re_m), _ = curve_fit(morse, r, e, p0=[100.0, 2.0, r_min], maxfev=20000)
    out["twelve_six"] = {"depth_kcal_mol": float(eps), "r_e": float(re_lj), "force_constant": 72.0 * eps / re_lj**2,
                         "rmse_kcal_mol": float(np.sqrt(np.mean((twelve_six(r, eps, re_lj) - e) ** 2)))}
    out["morse"] = {"depth_kcal_mol": float(d), "a": float(a), "r_e": float(re_m), "force_constant": 2.0 * d * a * a,
                    "rmse_kcal_mol": float(np.sqrt(np.mean((morse(r, d, a, re_m) - e) ** 2)))}
    return out


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--smiles", nargs="+", default=DEFAULT_SMILES,
                   help="neutral molecules; one acyclic bond between heavy atoms of each is taken apart "
                        "(the first that the training's heavy-atom pulls would take)")
    p.add_argument("--out", default="covalent_core_shape", help="results stem in benchmarks/results")
    args = p.parse_args(argv)
    from physff_openmm.errors import PhysFFError
    from physff_openmm.molecule import ensure_conformer, load_molecule
    from physff_openmm.training.data import heavy_pull_bonds

    try:
        mols = {s: ensure_conformer(load_molecule(s)) for s in args.smiles}
    except PhysFFError as exc:  # a bad SMILES: one line, nothing written
        print(f"error: {exc}", file=sys.stderr)
        return 2
    bonds = {s: heavy_pull_bonds(m, 1, np.random.default_rng(0)) for s, m in mols.items()}
    bad = [s for s, m in mols.items() if any(a.GetFormalCharge() for a in m.GetAtoms()) or not bonds[s]]
    if bad:
        print(f"error: need neutral molecules with an acyclic bond between heavy atoms, got {', '.join(bad)}", file=sys.stderr)
        return 2
    records, rows = [], []
    for smiles, mol in mols.items():
        i, j = bonds[smiles][0]
        r, e = bond_curve(mol, (i, j))
        fit = fit_shapes(r, e)
        name = f"{mol.GetAtomWithIdx(i).GetSymbol()}{i}-{mol.GetAtomWithIdx(j).GetSymbol()}{j}"
        records.append({"smiles": smiles, "bond": name, "r_angstrom": r.tolist(), "xtb_kcal_mol": e.tolist(), **fit})
        lj, mo = fit["twelve_six"], fit["morse"]
        rows.append([smiles, name, fit["xtb_plateau_kcal_mol"], fit["xtb_force_constant"], lj["depth_kcal_mol"],
                     lj["force_constant"], lj["rmse_kcal_mol"], mo["depth_kcal_mol"], mo["force_constant"], mo["rmse_kcal_mol"]])
    summary = {shape: float(np.median([r[shape]["rmse_kcal_mol"] for r in records])) for shape in ("twelve_six", "morse")}
    info = machine_info()
    text = (
        "# Well shapes along a bond being broken: 12-6 against Morse, fitted to GFN2-xTB\n\n"
        f"Command: `{command_line(argv, __file__)}` ({info['date_utc']}).\n\n"
        f"Each molecule's bond, its smaller side moved rigidly to {FACTORS[0]:g}-{FACTORS[-1]:g} times its length "
        f"({len(FACTORS)} points), GFN2-xTB's lower of the closed-shell and the high-spin state, relative to the "
        "lowest point; a 12-6 well and a Morse well fitted to the whole curve. Depths in kcal/mol, force "
        "constants (second derivative at the minimum) in kcal/mol/A^2, RMSE of the fit in kcal/mol.\n\n"
        f"Median RMSE: 12-6 {summary['twelve_six']:.1f}, Morse {summary['morse']:.1f}.\n\n"
        + md_table(["molecule", "bond", "GFN2-xTB at 4x", "GFN2-xTB force constant", "12-6 depth", "12-6 force constant",
                    "12-6 RMSE", "Morse depth", "Morse force constant", "Morse RMSE"], rows, digits=1)
        + "\n"
    )
    write_results(args.out, {"command": command_line(argv, __file__), "machine": info, "factors": list(FACTORS),
                             "median_rmse_kcal_mol": summary, "bonds": records}, text)
    print(text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
