"""Would an inner wall on covalent bonds make a model's MD stable? A diagnostic for the energy formula.

The accuracy report's MD test (the first test molecules of the conformer benchmark, 300 K, 1 fs,
native backend; ``accuracy_report.md_section``) runs twice with the same model: as it is, and with
a flat-bottom wall on every covalent bond,

    E_wall = k (f r0 - r)^2  for r < f r0, else 0    (r0: the bond's starting length),

which leaves the model's energy unchanged wherever bonds are longer than f r0. The wall is not part
of the model: the formula's Gaussians are centred at 1.2 A and beyond, so the inner wall of an X-H
bond (0.96-1.10 A) has to come from the flank of one of them, and training has not built it
(docs/accuracy.md). If the failures by compressed bonds disappear with the wall, that wall is what
MD is missing.

Usage::

    python benchmarks/inner_wall_check.py --model <name or file> --data ../shared/data [--md-ps 20]

Writes ``results/inner_wall_<model>.json`` and ``.md`` (or the ``--out`` stem).
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
import _common as C  # noqa: E402
import accuracy_report as A  # noqa: E402

from physff_openmm._argtypes import positive_float, positive_int  # noqa: E402

__all__ = ["main", "inner_wall"]


def inner_wall(fraction: float, k_kcal_mol_a2: float):
    """The ``extra_force`` of :func:`accuracy_report.md_run`: a flat-bottom wall below ``fraction`` r0 on every bond."""
    import numpy as np
    import openmm

    from physff_openmm.units import ANGSTROM_TO_NM, KCAL_TO_KJ

    k = k_kcal_mol_a2 * KCAL_TO_KJ / ANGSTROM_TO_NM**2  # kJ/mol/nm^2

    def make(rec, x0):
        f = openmm.CustomBondForce("k_wall * step(r_wall - r) * (r_wall - r)^2")
        f.addGlobalParameter("k_wall", k)
        f.addPerBondParameter("r_wall")
        for i, j in np.asarray(rec.bonds, dtype=int).reshape(-1, 2):
            f.addBond(int(i), int(j), [fraction * float(np.linalg.norm(x0[i] - x0[j])) * ANGSTROM_TO_NM])
        return f

    return make


def _summary(md: dict) -> dict:
    failed = [r for r in md["per_molecule"] if r["status"] != "stable"]
    return {
        "n_stable": md["n_stable"],
        "n_molecules": md["n_molecules"],
        "failed_compressed": sum(r.get("worst_bond_direction") == "compressed" for r in failed),
        "failed_stretched": sum(r.get("worst_bond_direction") == "stretched" for r in failed),
        "failed_other": sum(r.get("worst_bond_direction") not in ("compressed", "stretched") for r in failed),
    }


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--model", default="physff-default", help="model name or file (default: %(default)s)")
    p.add_argument("--data", type=Path, default=A.DEFAULT_DATA, help="public data folder (default: ../shared/data)")
    p.add_argument("--md-molecules", type=positive_int, default=20, help="test molecules (default: %(default)s)")
    p.add_argument("--md-ps", type=positive_float, default=20.0, help="ps per run (default: %(default)s)")
    p.add_argument("--fraction", type=positive_float, default=0.85, help="wall below this fraction of r0 (default: %(default)s)")
    p.add_argument("--k", type=positive_float, default=2000.0, help="wall stiffness, kcal/mol/A^2 (default: %(default)s)")
    p.add_argument("--threads", type=positive_int, default=2)
    p.add_argument("--out", default=None, help="results stem in benchmarks/results (default: inner_wall_<model>)")
    args = p.parse_args(argv)
    if not args.fraction < 1.0:
        p.error("--fraction must be below 1")
    from physff_openmm.errors import PhysFFError
    from physff_openmm.registry import load_model

    try:
        model = load_model(args.model)
        test, _ = A.load_test_split(args.data, model, None)
    except (PhysFFError, OSError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    pool = test["md_pool"]
    runs = {}
    for label, extra in (("model", None), ("model + inner wall", inner_wall(args.fraction, args.k))):
        A.progress(f"MD: {label}")
        runs[label] = A.md_section(pool, model, args.md_molecules, args.md_ps, args.threads, A.Timer(), extra)
    info, command = C.machine_info(), C.command_line(argv, __file__)
    rows = []
    for r0, r1 in zip(runs["model"]["per_molecule"], runs["model + inner wall"]["per_molecule"]):
        rows.append([r0["name"], r0["n_atoms"]] + [
            f"{r['status']}" + (f" at {r['failure_time_ps']:.1f} ps" if r.get("failure_time_ps") else "")
            + (f" ({r['worst_bond']} {r['worst_bond_direction']}, {100 * r['max_relative_bond_deviation']:.0f} %)"
               if r.get("worst_bond") else "")
            for r in (r0, r1)])
    summ = {k: _summary(v) for k, v in runs.items()}
    text = (
        f"# MD with and without an inner wall on covalent bonds: {args.model}\n\n"
        f"Command: `{command}` ({info['date_utc']}).\n\n"
        f"{args.md_molecules} test molecules, {args.md_ps:g} ps each at 300 K, 1 fs; a run stops at its first broken bond "
        f"(> 30 % from its starting length), collapse or NaN. Wall: {args.k:g} (f r0 - r)^2 kcal/mol below f = "
        f"{args.fraction:g} of each bond's starting length; zero above.\n\n"
        + C.md_table(["", "stable", "failed: worst bond compressed", "failed: stretched", "failed: other"],
                     [[k, f"{v['n_stable']} of {v['n_molecules']}", v["failed_compressed"], v["failed_stretched"], v["failed_other"]]
                      for k, v in summ.items()])
        + "\n\n" + C.md_table(["molecule", "atoms", "model", "model + inner wall"], rows)
    )
    stem = args.out or f"inner_wall_{Path(str(args.model)).stem}"
    C.write_results(stem, {"command": command, "machine": info, "settings": vars(args) | {"data": str(args.data)},
                           "summary": summ, "runs": runs}, text)
    print(text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
