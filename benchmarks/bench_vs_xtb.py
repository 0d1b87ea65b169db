"""Benchmark C: one energy-and-force evaluation, physff (native backend) against GFN2-xTB.

The molecule is benchmark B's drug-like molecule (~50 atoms, fixed choice, seeded conformer).
Both codes evaluate the same sequence of geometries, a random walk of 0.005 Angstrom steps
from the conformer (the size of an MD step), with 2 threads each by default (tblite's OpenMP
threads and OpenMM's CPU-platform threads; the torch backend, shown for information, runs
1 torch thread, see ``bench_md_step.py``):

- GFN2-xTB: ``tblite.interface.Calculator("GFN2-xTB", numbers, positions_bohr, charge=...)``,
  verbosity 0, ``singlepoint()`` per geometry, timed twice: from scratch ("cold", no
  restart) and restarted from the previous geometry's wavefunction ("warm", as in MD);
- physff: ``context.setPositions`` + ``getState(getEnergy=True, getForces=True)`` on the CPU
  platform, native backend (and the torch backend for information); the cost of a whole
  LangevinMiddle MD step is given as well.

Target (issue): physff at least 1000x faster than GFN2-xTB.

Run from the repository root::

    python benchmarks/bench_vs_xtb.py
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import time
from pathlib import Path


def _threads_from_argv(argv: list[str]) -> int:
    for k, a in enumerate(argv):
        if a == "--threads" and k + 1 < len(argv):
            return int(argv[k + 1])
        if a.startswith("--threads="):
            return int(a.split("=", 1)[1])
    return 2


if __name__ == "__main__":
    # tblite's OpenMP reads this when it starts: set it before anything loads an OpenMP runtime
    os.environ["OMP_NUM_THREADS"] = str(_threads_from_argv(sys.argv[1:]))
    os.environ.setdefault("OMP_STACKSIZE", "256M")

import numpy as np  # noqa: E402

sys.path.insert(0, str(Path(__file__).resolve().parent))
import _common as C  # noqa: E402

TARGET_SPEEDUP = 1000.0


def random_walk(pos0: np.ndarray, n: int, step: float, seed: int) -> list[np.ndarray]:
    """``n`` geometries, each displaced from the previous by N(0, step) per coordinate (Angstrom)."""
    rng = np.random.default_rng(seed)
    out, pos = [], np.array(pos0, dtype=float)
    for _ in range(n):
        pos = pos + rng.normal(0.0, step, pos.shape)
        out.append(pos.copy())
    return out


def time_xtb(numbers, charge, geometries, warm: bool, threads: int) -> tuple[list[float], list[float]]:
    """Seconds per singlepoint over ``geometries`` and the energies (Hartree)."""
    from tblite.interface import Calculator

    from physff_openmm.units import BOHR_TO_ANGSTROM

    calc = Calculator("GFN2-xTB", np.asarray(numbers), geometries[0] / BOHR_TO_ANGSTROM, charge=float(charge))
    calc.set("verbosity", 0)
    res = calc.singlepoint()  # warm-up (library initialisation)
    times, energies = [], []
    for pos in geometries:
        calc.update(pos / BOHR_TO_ANGSTROM)
        t0 = time.perf_counter()
        res = calc.singlepoint(res) if warm else calc.singlepoint()
        res.get("gradient")
        times.append(time.perf_counter() - t0)
        energies.append(float(res.get("energy")))
    return times, energies


def time_openmm_evals(system, geometries, threads: int, rounds: int) -> list[float]:
    """Median seconds of setPositions + getState(energy, forces) per geometry, one value per round."""
    import openmm

    from physff_openmm.units import ANGSTROM_TO_NM

    platform, props = C.cpu_platform(threads)
    ctx = openmm.Context(system, openmm.VerletIntegrator(0.001), platform, props)
    nm = [g * ANGSTROM_TO_NM for g in geometries]
    for p in nm[:10]:
        ctx.setPositions(p)
        ctx.getState(getEnergy=True, getForces=True)
    out = []
    for _ in range(rounds):
        ts = []
        for p in nm:
            t0 = time.perf_counter()
            ctx.setPositions(p)
            st = ctx.getState(getEnergy=True, getForces=True)
            st.getForces(asNumpy=True)
            ts.append(time.perf_counter() - t0)
        out.append(statistics.median(ts))
    return out


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--model", default="auto", help='"auto" (shipped default, else a stand-in), "standin", a name or a path')
    p.add_argument("--molecules", type=Path, default=C.DEFAULT_MOLECULES_CSV, help="conformer-benchmark molecules.csv")
    p.add_argument("--threads", type=int, default=2, help="OpenMP threads of tblite and CPU platform threads")
    p.add_argument("--torch-threads", type=int, default=1, help="torch intra-op threads of the torch backend (see bench_md_step.py)")
    p.add_argument("--xtb-geometries", type=int, default=7, help="geometries evaluated by xTB (each mode)")
    p.add_argument("--geometries", type=int, default=200, help="geometries evaluated by OpenMM per round")
    p.add_argument("--rounds", type=int, default=7)
    p.add_argument("--out", default="vs_xtb", help="stem of the result files in benchmarks/results/")
    args = p.parse_args(argv)

    import torch

    import physff_openmm as pf
    from bench_md_step import Runner, build_inputs

    info = C.machine_info()
    info["threads"] = args.threads
    info["torch_threads"] = args.torch_threads
    info["OMP_NUM_THREADS"] = os.environ.get("OMP_NUM_THREADS")
    model, model_info = C.resolve_benchmark_model(args.model)
    inp = build_inputs(args.molecules, ["molecule"])["molecule"]
    mol, pos0 = inp["mol"], inp["positions"]
    numbers = [a.GetAtomicNum() for a in mol.GetAtoms()]
    charge = sum(a.GetFormalCharge() for a in mol.GetAtoms())
    geoms = random_walk(pos0, max(args.geometries, args.xtb_geometries), 0.005, C.SEED)
    params = pf.parameterize(mol, model=model, cache=False)

    load0 = C.load_average()
    xtb_cold, e_cold = time_xtb(numbers, charge, geoms[: args.xtb_geometries], warm=False, threads=args.threads)
    xtb_warm, e_warm = time_xtb(numbers, charge, geoms[: args.xtb_geometries], warm=True, threads=args.threads)
    load1 = C.load_average()
    # after xTB: torch and tblite share one OpenMP runtime (libgomp.so.1), so this would also limit tblite
    torch.set_num_threads(args.torch_threads)
    physff = {}
    for backend in ("native", "torch"):
        system = pf.create_system(params, backend=backend)
        evals = time_openmm_evals(system, geoms[: args.geometries], args.threads, args.rounds)
        runner = Runner(system, pos0, args.threads, C.SEED)
        runner.steps(50)
        steps = [runner.steps(200) / 200 for _ in range(args.rounds)]
        physff[backend] = {"eval": C.summary_ms(evals), "md_step": C.summary_ms(steps)}
    load2 = C.load_average()
    info["load_average_end"] = load2

    x_cold = C.summary_ms(xtb_cold)
    x_warm = C.summary_ms(xtb_warm)
    native_eval = physff["native"]["eval"]["median_ms"]
    native_step = physff["native"]["md_step"]["median_ms"]
    speedups = {
        "cold_xtb_over_native_eval": x_cold["median_ms"] / native_eval,
        "warm_xtb_over_native_eval": x_warm["median_ms"] / native_eval,
        "cold_xtb_over_native_md_step": x_cold["median_ms"] / native_step,
        "warm_xtb_over_native_md_step": x_warm["median_ms"] / native_step,
        "warm_xtb_over_torch_eval": x_warm["median_ms"] / physff["torch"]["eval"]["median_ms"],
    }
    met = speedups["warm_xtb_over_native_eval"] >= TARGET_SPEEDUP
    payload = {
        "benchmark": "vs_xtb",
        "command": C.command_line(),
        "machine": info,
        "model": model_info,
        "molecule": {"name": inp["molecules"][0], "smiles": params.smiles, "n_atoms": params.n_atoms, "charge": charge},
        "settings": {
            "threads": args.threads,
            "torch_threads": args.torch_threads,
            "geometries": "random walk from the seeded conformer, N(0, 0.005 A) per coordinate and step",
            "xtb_geometries": args.xtb_geometries,
            "openmm_geometries_per_round": args.geometries,
            "rounds": args.rounds,
        },
        "xtb": {"cold": x_cold, "warm": x_warm, "energies_hartree_cold": e_cold, "energies_hartree_warm": e_warm},
        "physff": physff,
        "speedups": speedups,
        "target": {"speedup_at_least": TARGET_SPEEDUP, "met": met, "judged_on": "warm xTB singlepoint / native eval"},
        "load_average": [load0, load1, load2],
    }
    rows = [
        ["GFN2-xTB singlepoint, from scratch", x_cold["median_ms"], x_cold["min_ms"], x_cold["max_ms"], "", ""],
        ["GFN2-xTB singlepoint, restarted from previous geometry", x_warm["median_ms"], x_warm["min_ms"], x_warm["max_ms"], "", ""],
    ]
    for b in ("native", "torch"):
        e, s = physff[b]["eval"], physff[b]["md_step"]
        rows.append([f"physff {b}: setPositions + getState(energy, forces)", e["median_ms"], e["min_ms"], e["max_ms"],
                     f"{x_cold['median_ms'] / e['median_ms']:,.0f}x", f"{x_warm['median_ms'] / e['median_ms']:,.0f}x"])
        rows.append([f"physff {b}: one LangevinMiddle MD step", s["median_ms"], s["min_ms"], s["max_ms"],
                     f"{x_cold['median_ms'] / s['median_ms']:,.0f}x", f"{x_warm['median_ms'] / s['median_ms']:,.0f}x"])
    md = C.header_markdown(
        "Benchmark C: physff against GFN2-xTB, one energy + force evaluation",
        info,
        model_info,
        [
            f"- Molecule: {inp['molecules'][0]} ({params.n_atoms} atoms, charge {charge}), `{params.smiles}`",
            f"- {args.threads} threads for tblite (OMP_NUM_THREADS) and the CPU platform; torch intra-op threads {args.torch_threads}",
            f"- xTB: {args.xtb_geometries} geometries per mode; physff: median over {args.geometries} geometries, "
            f"median of {args.rounds} rounds; load average before/after xTB/after physff: {load0} / {load1} / {load2}",
        ],
    )
    md += "\n" + C.md_table(["evaluation", "median ms", "min ms", "max ms", "xTB cold / this", "xTB warm / this"], rows, digits=3)
    md += (
        f"\n\nTarget: at least {TARGET_SPEEDUP:.0f}x faster than GFN2-xTB (judged on a restarted xTB singlepoint "
        f"against one native-backend evaluation): {'met' if met else '**missed**'} "
        f"({speedups['warm_xtb_over_native_eval']:,.0f}x; from-scratch xTB: {speedups['cold_xtb_over_native_eval']:,.0f}x).\n"
    )
    jp, mp = C.write_results(args.out, payload, md)
    print(md)
    print(f"wrote {jp} and {mp}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
