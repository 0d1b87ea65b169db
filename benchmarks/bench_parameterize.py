"""Benchmark A: from SMILES to an OpenMM System for drug-like molecules, on one CPU core.

For ~20 molecules of the conformer benchmark (20-80 atoms, evenly spread over that
range, fixed selection) it times, after the model is loaded and warmed up:

- ``parameterize(smiles, cache=False)`` (a cache miss: SMILES parsing, validation,
  the graph network, classes and tables),
- ``parameterize(smiles, cache=<folder>)`` when the entry is already there (a cache hit),
- ``create_system(params, backend="native")`` and ``create_system(params, backend="torch")``.

Targets (issue): SMILES -> System under 100 ms per molecule on one core with the cache
off, and a cache hit under 5 ms. Each number is the median of ``--repeats`` calls.

Run from the repository root::

    python benchmarks/bench_parameterize.py
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
import _common as C  # noqa: E402

TARGET_MISS_MS = 100.0
TARGET_HIT_MS = 5.0


def select_molecules(csv_path: Path, n: int, lo: int, hi: int) -> list[dict]:
    """``n`` usable molecules with lo..hi atoms, evenly spaced in atom count (deterministic)."""
    from physff_openmm.molecule import load_molecule

    rows = [r for r in C.read_molecules_csv(csv_path) if lo <= r["natoms"] <= hi and C.usable(r["smiles"])]
    for r in rows:
        r["natoms"] = load_molecule(r["smiles"]).GetNumAtoms()
    rows = sorted((r for r in rows if lo <= r["natoms"] <= hi), key=lambda r: (r["natoms"], r["name"]))
    idx = sorted(set(np.linspace(0, len(rows) - 1, n).round().astype(int).tolist()))
    return [rows[i] for i in idx]


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--model", default="auto", help='"auto" (shipped default, else a stand-in), "standin", a name or a path')
    p.add_argument("--molecules", type=Path, default=C.DEFAULT_MOLECULES_CSV, help="conformer-benchmark molecules.csv")
    p.add_argument("--count", type=int, default=20)
    p.add_argument("--min-atoms", type=int, default=20)
    p.add_argument("--max-atoms", type=int, default=80)
    p.add_argument("--repeats", type=int, default=7)
    p.add_argument("--threads", type=int, default=1, help="torch threads (the target is for one core)")
    p.add_argument("--out", default="parameterize", help="stem of the result files in benchmarks/results/")
    args = p.parse_args(argv)

    import torch

    torch.set_num_threads(args.threads)
    try:
        torch.set_num_interop_threads(args.threads)
    except RuntimeError:
        pass
    import physff_openmm as pf
    from physff_openmm.molecule import load_molecule

    info = C.machine_info()
    info["torch_threads"] = torch.get_num_threads()
    model, model_info = C.resolve_benchmark_model(args.model)
    mols = select_molecules(args.molecules, args.count, args.min_atoms, args.max_atoms)

    # warm-up: the float64 copy of the model, TorchScript compilation paths, OpenMM imports
    for smi in ("CC(=O)Nc1ccc(O)cc1", "CCO"):
        ps = pf.parameterize(smi, model=model, cache=False)
        pf.create_system(ps, backend="native")
        pf.create_system(ps, backend="torch")

    rows = []
    with tempfile.TemporaryDirectory(prefix="physff-bench-cache-") as cache_dir:
        for m in mols:
            smi = m["smiles"]
            load_before = C.load_average()
            t_load = C.time_calls(lambda: load_molecule(smi), args.repeats)
            t_miss = C.time_calls(lambda: pf.parameterize(smi, model=model, cache=False), args.repeats)
            ps = pf.parameterize(smi, model=model, cache=cache_dir)  # stores the entry
            hit = {}

            def run_hit():
                hit["ps"] = pf.parameterize(smi, model=model, cache=cache_dir)

            t_hit = C.time_calls(run_hit, args.repeats)
            if not hit["ps"].metadata.get("cache_hit"):
                raise RuntimeError(f"expected a cache hit for {m['name']}")
            t_native = C.time_calls(lambda: pf.create_system(ps, backend="native"), args.repeats)
            t_torch = C.time_calls(lambda: pf.create_system(ps, backend="torch"), args.repeats)
            row = {
                "name": m["name"],
                "smiles": smi,
                "n_atoms": ps.n_atoms,
                "n_classes": ps.n_classes,
                "load_molecule": C.summary_ms(t_load),
                "parameterize_miss": C.summary_ms(t_miss),
                "parameterize_hit": C.summary_ms(t_hit),
                "create_system_native": C.summary_ms(t_native),
                "create_system_torch": C.summary_ms(t_torch),
                "load_average": [load_before, C.load_average()],
            }
            row["smiles_to_system_native_ms"] = row["parameterize_miss"]["median_ms"] + row["create_system_native"]["median_ms"]
            row["smiles_to_system_torch_ms"] = row["parameterize_miss"]["median_ms"] + row["create_system_torch"]["median_ms"]
            row["hit_to_system_native_ms"] = row["parameterize_hit"]["median_ms"] + row["create_system_native"]["median_ms"]
            rows.append(row)
            print(
                f"{m['name']:<24} {ps.n_atoms:3d} atoms  miss {row['parameterize_miss']['median_ms']:7.2f} ms  "
                f"hit {row['parameterize_hit']['median_ms']:6.2f} ms  native {row['create_system_native']['median_ms']:6.2f} ms  "
                f"torch {row['create_system_torch']['median_ms']:7.2f} ms  load {row['load_average'][1][0]}",
                flush=True,
            )
    info["load_average_end"] = C.load_average()

    def agg(key, sub="median_ms"):
        vals = [r[key][sub] if sub else r[key] for r in rows]
        return {"median_ms": statistics.median(vals), "max_ms": max(vals)}

    aggregate = {
        "load_molecule": agg("load_molecule"),
        "parameterize_miss": agg("parameterize_miss"),
        "parameterize_hit": agg("parameterize_hit"),
        "create_system_native": agg("create_system_native"),
        "create_system_torch": agg("create_system_torch"),
        "smiles_to_system_native": agg("smiles_to_system_native_ms", None),
        "smiles_to_system_torch": agg("smiles_to_system_torch_ms", None),
        "hit_to_system_native": agg("hit_to_system_native_ms", None),
    }
    targets = {
        "smiles_to_system_native_under_100ms_each": aggregate["smiles_to_system_native"]["max_ms"] < TARGET_MISS_MS,
        "parameterize_miss_under_100ms_each": aggregate["parameterize_miss"]["max_ms"] < TARGET_MISS_MS,
        "cache_hit_under_5ms_each": aggregate["parameterize_hit"]["max_ms"] < TARGET_HIT_MS,
    }
    payload = {
        "benchmark": "parameterize",
        "command": C.command_line(),
        "machine": info,
        "model": model_info,
        "settings": {"repeats": args.repeats, "torch_threads": args.threads, "molecules_csv": str(args.molecules)},
        "targets_ms": {"smiles_to_system_cache_off": TARGET_MISS_MS, "cache_hit": TARGET_HIT_MS},
        "targets_met": targets,
        "aggregate": aggregate,
        "molecules": rows,
    }

    table_rows = [
        [
            r["name"],
            r["n_atoms"],
            r["n_classes"],
            r["parameterize_miss"]["median_ms"],
            r["parameterize_hit"]["median_ms"],
            r["create_system_native"]["median_ms"],
            r["create_system_torch"]["median_ms"],
            r["smiles_to_system_native_ms"],
            r["load_average"][1][0],
        ]
        for r in rows
    ]
    for label, key in (("**median**", "median_ms"), ("**max**", "max_ms")):
        a = aggregate
        table_rows.append(
            [
                label, "", "",
                a["parameterize_miss"][key], a["parameterize_hit"][key], a["create_system_native"][key],
                a["create_system_torch"][key], a["smiles_to_system_native"][key], "",
            ]
        )
    yes = {True: "met", False: "**missed**"}
    md = C.header_markdown(
        "Benchmark A: SMILES to OpenMM System",
        info,
        model_info,
        [
            f"- torch threads: {args.threads} (one core); median of {args.repeats} calls per cell, in ms, "
            "after the model is loaded and warmed up",
            "- miss: `parameterize(smiles, cache=False)` (parse + validate + network); hit: "
            "`parameterize(smiles, cache=folder)` with the entry present; native/torch: `create_system(params, backend=...)`",
        ],
    )
    md += "\n" + C.md_table(
        ["molecule", "atoms", "classes", "parameterize miss", "parameterize hit", "create_system native",
         "create_system torch", "SMILES -> native System", "load (1 min)"],
        table_rows,
    )
    md += "\n\nTargets:\n\n"
    md += (
        f"- SMILES -> System (cache off, native) under {TARGET_MISS_MS:.0f} ms for every molecule: "
        f"{yes[targets['smiles_to_system_native_under_100ms_each']]} "
        f"(max {aggregate['smiles_to_system_native']['max_ms']:.1f} ms, median {aggregate['smiles_to_system_native']['median_ms']:.1f} ms)\n"
        f"- SMILES -> System (cache off, torch backend): max {aggregate['smiles_to_system_torch']['max_ms']:.1f} ms, "
        f"median {aggregate['smiles_to_system_torch']['median_ms']:.1f} ms (TorchScript compilation included)\n"
        f"- cache hit under {TARGET_HIT_MS:.0f} ms for every molecule: {yes[targets['cache_hit_under_5ms_each']]} "
        f"(max {aggregate['parameterize_hit']['max_ms']:.2f} ms, median {aggregate['parameterize_hit']['median_ms']:.2f} ms); "
        f"cache hit + native System: max {aggregate['hit_to_system_native']['max_ms']:.2f} ms\n"
        f"- of the miss time, `load_molecule` (SMILES parsing, hydrogens, validation) takes median "
        f"{aggregate['load_molecule']['median_ms']:.2f} ms\n"
    )
    jp, mp = C.write_results(args.out, payload, md)
    print(f"wrote {jp} and {mp}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
