"""Partial charges of small ions and molecules: physff models against GFN2-xTB.

Before physff-v2.9 the models' charges were trained only through energies (physff-v2.8, retired,
put hydroxide's H at -0.30 e); physff-v2.9's
refining phase adds a charge term against GFN2-xTB for the charged molecules of its data
(``loss.charge_weight``; the ions listed here are among them, so for ions this is a check
of the fit, for the neutral molecules one of what energies alone give); physff-v2.10 averages
formal charges and bond types over resonance structures, so a carboxylate's two O (a nitro
group's, an amidinium's N) get one charge. Per molecule: the
charge of each heavy atom
and the total on the hydrogens, from each model (``physff_openmm.parameterize``) and
from a GFN2-xTB single point (tblite, its Mulliken-type charges) at the RDKit geometry.
The ions that fixed charges underbind beside neutral molecules (water + hydroxide,
the ionic H-bonded dimers of NCIAtlas) are in the default list.

Usage (repository root, ``pip install -e .[train]`` for tblite)::

    python benchmarks/charges_vs_xtb.py --models physff-v2.11 physff-v2.9
"""

from __future__ import annotations

import argparse
import sys

import numpy as np

from _common import command_line, machine_info, md_table, write_results

#: Anions, cations and the neutral molecules they bind in NCIAtlas's ionic H-bonded dimers.
DEFAULT_SMILES = [
    "[OH-]", "CC(=O)[O-]", "[O-]c1ccccc1", "[C-]#N", "[NH4+]", "C[NH3+]", "NC(=[NH2+])c1ccccc1", "O", "CO", "CC(=O)O",
    "O=[N+]([O-])c1ccccc1",
]


def xtb_charges(mol) -> np.ndarray:
    """GFN2-xTB (tblite) atomic charges of ``mol``'s conformer, e."""
    from physff_openmm.molecule import positions_angstrom
    from physff_openmm.training.xtb import xtb_charges as charges

    return charges([a.GetAtomicNum() for a in mol.GetAtoms()], positions_angstrom(mol),
                   sum(a.GetFormalCharge() for a in mol.GetAtoms()))


def _by_atom(mol, q) -> str:
    """Heavy atoms' charges in atom order, then the hydrogens' sum."""
    heavy = [f"{a.GetSymbol()}{a.GetIdx()} {q[a.GetIdx()]:+.2f}" for a in mol.GetAtoms() if a.GetAtomicNum() > 1]
    h = [q[a.GetIdx()] for a in mol.GetAtoms() if a.GetAtomicNum() == 1]
    return ", ".join(heavy + ([f"H sum {sum(h):+.2f}"] if h else []))


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--models", nargs="+", default=["default"], help="model names or files (default: %(default)s)")
    p.add_argument("--smiles", nargs="+", default=DEFAULT_SMILES, help="molecules (default: ions and their partners)")
    p.add_argument("--out", default="charges_vs_xtb", help="results stem in benchmarks/results")
    args = p.parse_args(argv)
    import physff_openmm as pf
    from physff_openmm.errors import PhysFFError
    from physff_openmm.molecule import ensure_conformer, load_molecule

    try:
        models = {m: pf.load_model(m) for m in args.models}
        mols = {s: ensure_conformer(load_molecule(s)) for s in args.smiles}
    except PhysFFError as exc:  # unknown model, bad SMILES: one line, nothing written
        print(f"error: {exc}", file=sys.stderr)
        return 2
    rows, records = [], []
    for smiles, mol in mols.items():
        ref = xtb_charges(mol)
        rec = {"smiles": smiles, "symbols": [a.GetSymbol() for a in mol.GetAtoms()], "gfn2_xtb": ref.tolist()}
        rows.append([smiles, "GFN2-xTB", _by_atom(mol, ref), "-"])
        for name, model in models.items():
            q = np.asarray(pf.parameterize(mol, model=model).charges, dtype=float)
            rec[name] = q.tolist()
            rows.append(["", name, _by_atom(mol, q), f"{np.sqrt(np.mean((q - ref) ** 2)):.2f}"])
        records.append(rec)
    info = machine_info()
    text = (
        "# Partial charges: physff models against GFN2-xTB\n\n"
        f"Command: `{command_line(argv, __file__)}` ({info['date_utc']}).\n\n"
        "Charges in e at the RDKit geometry: each heavy atom, then the sum over the hydrogens; RMS difference "
        "from GFN2-xTB (tblite) over all atoms. physff-v2.9 and later fit the charges of charged molecules to "
        "GFN2-xTB's (their training data holds these ions); the neutral molecules' charges come from energies alone. "
        "physff-v2.10 averages formal charges and bond types over resonance structures: a carboxylate's O (a nitro "
        "group's, an amidinium's N) get one charge.\n\n"
        + md_table(["molecule", "charges from", "heavy atoms; hydrogens' sum", "RMS vs GFN2-xTB"], rows)
        + "\n"
    )
    write_results(args.out, {"command": command_line(argv, __file__), "machine": info,
                             "models": {n: m.file_hash for n, m in models.items()}, "molecules": records}, text)
    print(text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
