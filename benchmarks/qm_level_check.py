"""Check that our QM labels reproduce the shared conformer benchmark's level of theory.

For the smallest molecules of the conformer benchmark (Folmsbee & Hutchison,
ORCA B3LYP-D3BJ/def2-SVP), recompute a few conformers (spanning each molecule's
reference energy range: lowest, highest, evenly between) with
:func:`physff_openmm.training.qm.single_point` and compare the relative conformer
energies (kcal/mol) and the absolute energies (Hartree) with the
``b3lyp_d3bj_def2svp`` column of ``energies.csv``.

Usage::

    python benchmarks/qm_level_check.py --data ../shared/data/conformer-benchmark

Writes ``benchmarks/results/qm_level_check.json`` and ``.md`` (each written whole
or not at all). Takes minutes: a 16-atom molecule costs about 30 s per conformer
on 2 cores.
"""

from __future__ import annotations

import argparse
import csv
import json
import os
import platform
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

from physff_openmm.errors import PhysFFError
from physff_openmm.training.qm import DEFAULT_LEVEL, SUPPORTED_ELEMENTS, parse_level, single_point
from physff_openmm.units import HARTREE_TO_KCAL

__all__ = ["main"]

REFERENCE_COLUMN = "b3lyp_d3bj_def2svp"
_SUPPORTED_SYMBOLS = set(SUPPORTED_ELEMENTS.values())


def _read_csv(path: Path) -> list[dict[str, str]]:
    with open(path, newline="") as handle:
        return list(csv.DictReader(handle))


def _skeleton(mol):
    """Heavy-and-hydrogen connectivity graph only: every bond single, no charges."""
    from rdkit import Chem

    rw = Chem.RWMol()
    for atom in mol.GetAtoms():
        new = Chem.Atom(atom.GetAtomicNum())
        new.SetNoImplicit(True)
        rw.AddAtom(new)
    for bond in mol.GetBonds():
        rw.AddBond(bond.GetBeginAtomIdx(), bond.GetEndAtomIdx(), Chem.BondType.SINGLE)
    out = rw.GetMol()
    out.UpdatePropertyCache(strict=False)
    Chem.FastFindRings(out)
    return out


def load_conformer(molfile: Path, smiles: str, charge: int) -> tuple[list[str], np.ndarray]:
    """Element symbols and positions (Angstrom) of one molfile, checked against the SMILES.

    The molfile's own bonds are unreliable (OpenBabel), so connectivity is perceived
    from the coordinates and must match the SMILES graph; otherwise ValueError.
    """
    from rdkit import Chem
    from rdkit.Chem import rdDetermineBonds

    raw = Chem.MolFromMolFile(str(molfile), sanitize=False, removeHs=False)
    if raw is None:
        raise ValueError(f"unreadable molfile {molfile}")
    symbols = [a.GetSymbol() for a in raw.GetAtoms()]
    positions = raw.GetConformer().GetPositions()
    unsupported = sorted(set(symbols) - _SUPPORTED_SYMBOLS)
    if unsupported:
        raise ValueError(f"unsupported elements {unsupported}")

    template = Chem.AddHs(Chem.MolFromSmiles(smiles))
    xyz = f"{len(symbols)}\n\n" + "\n".join(
        f"{s} {x:.6f} {y:.6f} {z:.6f}" for s, (x, y, z) in zip(symbols, positions)
    )
    perceived = Chem.MolFromXYZBlock(xyz)
    rdDetermineBonds.DetermineConnectivity(perceived, charge=charge)
    a, b = _skeleton(template), _skeleton(perceived)
    if (
        a.GetNumAtoms() != b.GetNumAtoms()
        or a.GetNumBonds() != b.GetNumBonds()
        or not a.HasSubstructMatch(b)
    ):
        raise ValueError("geometry connectivity differs from the SMILES (proton moved or ring formed?)")
    return symbols, positions


def pick_molecules(data: Path, n_molecules: int) -> list[dict[str, str]]:
    """The ``n_molecules`` smallest molecules (by atom count) with at least two conformers."""
    rows = [r for r in _read_csv(data / "molecules.csv") if int(r["nconformers"]) >= 2]
    rows.sort(key=lambda r: (int(r["natoms"]), r["name"]))
    return rows[:n_molecules]


def _spread_first(rows: list[dict[str, str]], k: int) -> list[dict[str, str]]:
    """Rows reordered so that the first ``k`` span the reference energy range
    (lowest, highest, evenly between), the others following as fall-backs."""
    ordered = sorted(rows, key=lambda r: float(r[REFERENCE_COLUMN]))
    if not ordered:
        return []
    picks = sorted(set(np.linspace(0, len(ordered) - 1, max(k, 1)).round().astype(int).tolist()))
    return [ordered[i] for i in picks] + [r for i, r in enumerate(ordered) if i not in picks]


def run(data: Path, n_molecules: int, n_conformers: int, level: str) -> dict:
    energies = _read_csv(data / "energies.csv")
    by_name: dict[str, list[dict[str, str]]] = {}
    for row in energies:
        if row.get(REFERENCE_COLUMN):
            by_name.setdefault(row["name"], []).append(row)

    molecules = []
    for mol_row in pick_molecules(data, n_molecules):
        name, smiles, charge = mol_row["name"], mol_row["smiles"], int(mol_row["charge"])
        print(f"{name}: {smiles} (charge {charge}, {mol_row['natoms']} atoms)", flush=True)
        conformers = []
        for row in _spread_first(by_name.get(name, []), n_conformers):
            if len(conformers) == n_conformers:
                break
            molfile = data / "geometries" / name / f"{row['conformer']}.mol"
            try:
                symbols, positions = load_conformer(molfile, smiles, charge)
            except (ValueError, OSError) as exc:
                print(f"  {row['conformer']}: skipped ({exc})", flush=True)
                continue
            start = time.perf_counter()
            try:
                result = single_point(symbols, positions, charge, level, forces=False, kinetic=False)
            except PhysFFError as exc:
                print(f"  {row['conformer']}: QM failed ({exc})", flush=True)
                continue
            seconds = time.perf_counter() - start
            reference = float(row[REFERENCE_COLUMN])
            conformers.append(
                {
                    "conformer": row["conformer"],
                    "energy_reference_hartree": reference,
                    "energy_ours_hartree": result.energy,
                    "absolute_difference_hartree": result.energy - reference,
                    "seconds": round(seconds, 1),
                }
            )
            print(
                f"  {row['conformer']}: ours {result.energy:.8f}  ref {reference:.8f}  "
                f"diff {result.energy - reference:+.6f} Eh  ({seconds:.0f} s)",
                flush=True,
            )
        if len(conformers) >= 2:
            e_ref0 = conformers[0]["energy_reference_hartree"]
            e_our0 = conformers[0]["energy_ours_hartree"]
            for c in conformers:
                c["relative_reference_kcal_mol"] = (c["energy_reference_hartree"] - e_ref0) * HARTREE_TO_KCAL
                c["relative_ours_kcal_mol"] = (c["energy_ours_hartree"] - e_our0) * HARTREE_TO_KCAL
                c["relative_error_kcal_mol"] = c["relative_ours_kcal_mol"] - c["relative_reference_kcal_mol"]
                print(
                    f"  {c['conformer']}: relative ours {c['relative_ours_kcal_mol']:+.3f}  "
                    f"ref {c['relative_reference_kcal_mol']:+.3f}  "
                    f"error {c['relative_error_kcal_mol']:+.3f} kcal/mol",
                    flush=True,
                )
        molecules.append(
            {"name": name, "smiles": smiles, "charge": charge, "natoms": int(mol_row["natoms"]),
             "conformers": conformers}
        )

    rel_errors = [c["relative_error_kcal_mol"] for m in molecules for c in m["conformers"][1:]
                  if "relative_error_kcal_mol" in c]
    abs_errors = [c["absolute_difference_hartree"] for m in molecules for c in m["conformers"]]
    summary = {
        "n_molecules": len(molecules),
        "n_conformers": len(abs_errors),
        "relative_mae_kcal_mol": float(np.mean(np.abs(rel_errors))) if rel_errors else None,
        "relative_max_abs_error_kcal_mol": float(np.max(np.abs(rel_errors))) if rel_errors else None,
        "absolute_mean_difference_hartree": float(np.mean(abs_errors)) if abs_errors else None,
        "absolute_max_abs_difference_hartree": float(np.max(np.abs(abs_errors))) if abs_errors else None,
    }
    import pyscf

    return {
        "level": parse_level(level).name,
        "reference_column": REFERENCE_COLUMN,
        "reference": "Folmsbee & Hutchison conformer benchmark (ORCA)",
        "relative_to": "first computed conformer of each molecule (its lowest reference energy unless skipped)",
        "pyscf_version": pyscf.__version__,
        "machine": f"{platform.machine()}, {os.cpu_count()} cores",
        "summary": summary,
        "molecules": molecules,
    }


def to_markdown(report: dict) -> str:
    s = report["summary"]
    lines = [
        "# QM level check against the conformer benchmark",
        "",
        f"Level (ours, PySCF {report['pyscf_version']}): `{report['level']}`; "
        f"reference: `{report['reference_column']}` ({report['reference']}). "
        f"Relative energies are taken to the {report['relative_to']}.",
        "",
        "| molecule | conformer | E ours (Eh) | E ref (Eh) | diff (Eh) | rel ours (kcal/mol) "
        "| rel ref (kcal/mol) | rel error (kcal/mol) | time (s) |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    for m in report["molecules"]:
        for c in m["conformers"]:
            rel = (
                f"{c['relative_ours_kcal_mol']:+.3f} | {c['relative_reference_kcal_mol']:+.3f} | "
                f"{c['relative_error_kcal_mol']:+.3f}"
                if "relative_error_kcal_mol" in c else "- | - | -"
            )
            lines.append(
                f"| {m['name']} ({m['natoms']} atoms) | {c['conformer']} | {c['energy_ours_hartree']:.6f} | "
                f"{c['energy_reference_hartree']:.6f} | {c['absolute_difference_hartree']:+.6f} | {rel} | "
                f"{c['seconds']} |"
            )

    def fmt(value, spec):
        return "n/a" if value is None else format(value, spec)

    lines += [
        "",
        f"Relative energies: MAE {fmt(s['relative_mae_kcal_mol'], '.3f')} kcal/mol, "
        f"max |error| {fmt(s['relative_max_abs_error_kcal_mol'], '.3f')} kcal/mol "
        f"({s['n_conformers']} conformers of {s['n_molecules']} molecules).",
        f"Absolute energies: mean difference {fmt(s['absolute_mean_difference_hartree'], '+.6f')} Eh, "
        f"max |difference| {fmt(s['absolute_max_abs_difference_hartree'], '.6f')} Eh.",
        "",
    ]
    return "\n".join(lines)


def _write_atomic(path: Path, text: str) -> None:
    """Write ``text`` to ``path`` whole or not at all."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "w") as handle:
            handle.write(text)
        os.chmod(tmp, 0o644)  # mkstemp creates 0600
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--data", type=Path, required=True, help="conformer-benchmark folder")
    parser.add_argument("--n-molecules", type=int, default=3)
    parser.add_argument("--n-conformers", type=int, default=3)
    parser.add_argument("--level", default=DEFAULT_LEVEL)
    parser.add_argument("--out", type=Path, default=Path(__file__).parent / "results",
                        help="output folder (default: benchmarks/results)")
    args = parser.parse_args(argv)
    for required in ("molecules.csv", "energies.csv", "geometries"):
        if not (args.data / required).exists():
            print(f"error: {args.data / required} not found (--data must be the conformer-benchmark folder)",
                  file=sys.stderr)
            return 2
    try:
        parse_level(args.level)
    except PhysFFError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    report = run(args.data, args.n_molecules, args.n_conformers, args.level)
    _write_atomic(args.out / "qm_level_check.json", json.dumps(report, indent=2) + "\n")
    _write_atomic(args.out / "qm_level_check.md", to_markdown(report))
    print(to_markdown(report))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
