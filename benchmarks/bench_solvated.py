"""Speed of a physff ligand in a box of TIP3P water: ns/day, and the cost of the ligand's physff pair force.

A drug-like ligand (celecoxib, 40 atoms) in a cubic box of about 3,000 TIP3P waters
(:func:`physff_openmm.workflows.solvation.build_solvated_system`: PME with a 1 nm
cutoff, bonds to hydrogen constrained, rigid water, LangevinMiddle at 300 K with a
2 fs step, MonteCarloBarostat at 1 bar). Timed on the CPU platform (and on CUDA
when present) against the same System with the ligand's physff pair forces removed
(the CustomBondForce with the Gaussians of every pair inside the ligand, and the
CustomNonbondedForce that gives water's hydrogens a core against the ligand's atoms; the
NonbondedForce exceptions it keeps cost what a classical force field's 1-2/1-3/1-4
exceptions cost). Target (issue 15): full / without <= 1.2.

Rounds alternate between the two Systems so that load from other jobs hits both alike;
every number is the median of the rounds (min and max in the JSON).

    python benchmarks/bench_solvated.py [--model auto|<name>|<path>] [--waters 3000] [--steps 500]
        [--rounds 5] [--threads 2] [--platforms CPU,CUDA] [--out STEM]
"""

from __future__ import annotations

import argparse
import copy
import statistics
import sys
import time
from typing import Any

from _common import header_markdown, load_average, machine_info, md_table, resolve_benchmark_model, write_results

LIGAND = "Cc1ccc(cc1)-c1cc(nn1-c1ccc(cc1)S(N)(=O)=O)C(F)(F)F"  # celecoxib
#: Water molecules per nm^3 at ~1 g/mL.
WATERS_PER_NM3 = 33.4
TARGET_RATIO = 1.2


def progress(text: str) -> None:
    print(text, file=sys.stderr, flush=True)


def without_pair_force(system):
    """A copy of the System without physff's own forces: the Gaussian CustomBondForce(s) and the core of water's
    hydrogens against the ligand's atoms (CustomNonbondedForce)."""
    from physff_openmm.forcefield import BARE_HYDROGEN_CORE_NAME

    out = copy.deepcopy(system)
    for k in reversed(range(out.getNumForces())):
        name = out.getForce(k).getName()
        if name.startswith("physff short-range") or name == BARE_HYDROGEN_CORE_NAME:
            out.removeForce(k)
    return out


def make_simulation(system, built, platform_name: str, threads: int, seed: int):
    import openmm
    from openmm import unit

    integrator = openmm.LangevinMiddleIntegrator(300 * unit.kelvin, 1 / unit.picosecond, 2 * unit.femtoseconds)
    integrator.setRandomNumberSeed(seed)
    platform = openmm.Platform.getPlatformByName(platform_name)
    props = {"Threads": str(threads)} if platform_name == "CPU" else {}
    ctx = openmm.Context(system, integrator, platform, props)
    ctx.setPeriodicBoxVectors(*built.topology.getPeriodicBoxVectors())
    ctx.setPositions(built.positions_nm)
    return ctx, integrator


def run(args) -> dict[str, Any]:
    import openmm
    from openmm import unit

    from physff_openmm.workflows.simulation import BAROSTAT_INTERVAL
    from physff_openmm.workflows.solvation import build_solvated_system

    model, model_info = resolve_benchmark_model(args.model)
    box = (args.waters / WATERS_PER_NM3) ** (1.0 / 3.0)
    built = build_solvated_system(LIGAND, model=model, box_nm=box)
    full = built.system
    full.addForce(openmm.MonteCarloBarostat(1 * unit.bar, 300 * unit.kelvin, BAROSTAT_INTERVAL))
    bare = without_pair_force(full)
    n_pairs = sum(f.getNumBonds() for f in full.getForces()
                  if isinstance(f, openmm.CustomBondForce) and f.getName().startswith("physff short-range"))
    progress(f"{built.counts['atoms']} atoms, {built.counts['waters']} waters, ligand {built.counts['ligand_atoms']} atoms, "
             f"{n_pairs} physff pairs, box {box:.2f} nm")
    # relax once (shared start for both Systems)
    ctx, _ = make_simulation(full, built, "CPU", args.threads, 1)
    openmm.LocalEnergyMinimizer.minimize(ctx, 10.0, 500)
    built.positions_nm = ctx.getState(getPositions=True).getPositions(asNumpy=True).value_in_unit(unit.nanometer)
    del ctx
    results = {}
    for platform in args.platforms:
        try:
            contexts = {name: make_simulation(s, built, platform, args.threads, 7) for name, s in
                        (("with physff pair force", full), ("without", bare))}
        except Exception as exc:  # noqa: BLE001 - a platform without a device
            progress(f"{platform}: not usable here ({str(exc).splitlines()[0]})")
            continue
        for ctx, integ in contexts.values():
            ctx.setVelocitiesToTemperature(300 * unit.kelvin, 7)
            integ.step(args.warmup)
            ctx.getState(getEnergy=True)
        times = {name: [] for name in contexts}
        for r in range(args.rounds):
            for name, (ctx, integ) in contexts.items():
                t0 = time.perf_counter()
                integ.step(args.steps)
                ctx.getState(getEnergy=True)  # synchronize
                times[name].append(time.perf_counter() - t0)
            progress(f"{platform} round {r + 1}/{args.rounds}: " + ", ".join(f"{n} {t[-1] / args.steps * 1e3:.2f} ms/step"
                                                                           for n, t in times.items()))
        per = {}
        for name, t in times.items():
            ms = [x / args.steps * 1e3 for x in t]
            med = statistics.median(ms)
            per[name] = {"ms_per_step_median": med, "ms_per_step_min": min(ms), "ms_per_step_max": max(ms),
                         "ns_per_day": 2e-6 / (med * 1e-3) * 86400.0, "rounds": len(ms)}
        ratio = per["with physff pair force"]["ms_per_step_median"] / per["without"]["ms_per_step_median"]
        ratio_min = per["with physff pair force"]["ms_per_step_min"] / per["without"]["ms_per_step_min"]
        results[platform] = {"systems": per, "ratio_median": ratio, "ratio_min": ratio_min,
                             "threads": args.threads if platform == "CPU" else None}
        progress(f"{platform}: {per['with physff pair force']['ns_per_day']:.1f} ns/day, ratio {ratio:.3f}")
    return {"model": model_info, "ligand": LIGAND, "counts": built.counts, "box_nm": box, "physff_pairs": n_pairs,
            "settings": {"steps_per_round": args.steps, "rounds": args.rounds, "warmup_steps": args.warmup,
                         "timestep_fs": 2.0, "constraints": "HBonds, rigid water", "nonbonded": "PME, 1.0 nm cutoff",
                         "integrator": "LangevinMiddle 300 K, 1/ps", "barostat": f"MonteCarlo 1 bar every {BAROSTAT_INTERVAL}"},
            "platforms": results}


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--model", default="auto")
    p.add_argument("--waters", type=int, default=3000, help="about this many waters (sets the box)")
    p.add_argument("--steps", type=int, default=500, help="steps per timed round")
    p.add_argument("--rounds", type=int, default=5)
    p.add_argument("--warmup", type=int, default=100)
    p.add_argument("--threads", type=int, default=2, help="CPU platform threads")
    p.add_argument("--platforms", default="CPU,CUDA", help="comma-separated; missing ones are skipped")
    p.add_argument("--out", default="solvated")
    args = p.parse_args(argv)
    args.platforms = [s.strip() for s in args.platforms.split(",") if s.strip()]
    info = machine_info()
    res = run(args)
    info["load_average_end"] = load_average()
    rows = []
    for platform, r in res["platforms"].items():
        for name, s in r["systems"].items():
            rows.append([platform, name, s["ms_per_step_median"], s["ms_per_step_min"], s["ns_per_day"]])
        rows.append([platform, "ratio (median / min)", r["ratio_median"], r["ratio_min"], None])
    md = header_markdown("physff ligand in TIP3P water: speed", info, res["model"], [
        f"- Ligand `{res['ligand']}` ({res['counts']['ligand_atoms']} atoms, {res['physff_pairs']} physff pairs) in "
        f"{res['counts']['waters']} TIP3P waters, {res['counts']['atoms']} atoms, box {res['box_nm']:.2f} nm",
        "- " + "; ".join(f"{k}: {v}" for k, v in res["settings"].items()),
        f"- Target: with / without the ligand's physff pair force <= {TARGET_RATIO}",
    ]) + "\n" + md_table(["platform", "System", "ms/step (median)", "ms/step (min)", "ns/day"], rows, digits=3) + "\n"
    payload = {"description": __doc__, "machine": info, **res, "target_ratio": TARGET_RATIO}
    paths = write_results(args.out, payload, md)
    print("; ".join(f"{p}: ratio {r['ratio_median']:.3f}, {r['systems']['with physff pair force']['ns_per_day']:.1f} ns/day"
                    for p, r in res["platforms"].items()) + "; wrote " + ", ".join(str(x) for x in paths))
    return 0


if __name__ == "__main__":
    sys.exit(main())
