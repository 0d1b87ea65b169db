"""Labelling throughput: time of one QM label (energy + forces + KD partition) per molecule.

Times :func:`physff_openmm.training.qm.single_point` at a level of theory (the
default B3LYP-D3BJ/def2-SVP with density fitting) on a few molecules of growing
size, on the CPU threads given, and converts to labels per hour per core so that
a QMugs-sized labelling run can be planned.

Usage::

    python benchmarks/labelling_throughput.py [--level b3lyp-d3bj/def2-svp] [--threads 1]

Writes ``benchmarks/results/labelling_throughput.json`` and ``.md``.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import time
from pathlib import Path

MOLECULES = {
    "water": "O",
    "methanol": "CO",
    "acetamide": "CC(N)=O",
    "paracetamol": "CC(=O)Nc1ccc(O)cc1",
}


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--level", default="b3lyp-d3bj/def2-svp")
    parser.add_argument("--threads", type=int, default=1, help="OpenMP threads for PySCF (default 1: per core)")
    parser.add_argument("--molecules", default=",".join(MOLECULES), help="comma-separated names of: " + ", ".join(MOLECULES))
    parser.add_argument("--out", type=Path, default=Path(__file__).parent / "results" / "labelling_throughput")
    args = parser.parse_args(argv)
    os.environ["OMP_NUM_THREADS"] = str(args.threads)
    from pyscf import lib

    lib.num_threads(args.threads)
    from physff_openmm.molecule import ensure_conformer, load_molecule, positions_angstrom
    from physff_openmm.training.qm import single_point

    rows = []
    for name in args.molecules.split(","):
        mol = ensure_conformer(load_molecule(MOLECULES[name]))
        symbols = [a.GetSymbol() for a in mol.GetAtoms()]
        pos = positions_angstrom(mol)
        t0 = time.perf_counter()
        res = single_point(symbols, pos, 0, args.level, forces=True, kinetic=True)
        seconds = time.perf_counter() - t0
        rows.append({
            "molecule": name,
            "atoms": len(symbols),
            "seconds": seconds,
            "labels_per_hour_per_core": 3600.0 / (seconds * args.threads),
            "energy_hartree": res.energy,
        })
        print(f"{name}: {len(symbols)} atoms, {seconds:.1f} s", flush=True)
    report = {
        "command": f"python benchmarks/labelling_throughput.py --level {args.level} --threads {args.threads}",
        "level": args.level,
        "threads": args.threads,
        "machine": {"cpu": platform.processor() or platform.machine(), "cores": os.cpu_count(), "load_average": os.getloadavg()},
        "rows": rows,
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    lines = [
        "# Labelling throughput (energy + forces + kinetic partition)",
        "",
        f"Command: `{report['command']}`",
        "",
        f"Level {args.level}, {args.threads} thread(s), load average {report['machine']['load_average']}",
        "",
        "| molecule | atoms | seconds per label | labels per hour per core |",
        "|---|---|---|---|",
    ]
    lines += [f"| {r['molecule']} | {r['atoms']} | {r['seconds']:.1f} | {r['labels_per_hour_per_core']:.0f} |" for r in rows]
    for suffix, text in ((".json", json.dumps(report, indent=2)), (".md", "\n".join(lines) + "\n")):
        tmp = args.out.with_name(args.out.name + suffix + ".partial")
        tmp.write_text(text)
        tmp.replace(args.out.with_name(args.out.name + suffix))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
