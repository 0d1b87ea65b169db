"""Compare candidate models on the *validation* split of the public reference sets.

Model selection happens here, never on the test split (which
``accuracy_report.py`` scores once per shipped model). For each model file or
name, with the accuracy report's own evaluation path (``parameterize`` ->
native OpenMM System, no GFN2-xTB):

- relative conformer energies against B3LYP-D3BJ/def2-SVP on the validation
  molecules of the conformer benchmark (RMSE, MAE, largest error);
- torsion drives of the validation split, and of the training split (how
  closely the model fits what it was shown);
- NCIAtlas dimers of the validation split at equilibrium, hydrogen-bonded and
  dispersion groups (RMSE), and the ionic H-bonded ones (IHB100x10, an ion beside a neutral
  molecule) of the validation and of the training split (RMSE);
- the validation metrics the training run stored in the model file, where present;
- with ``--md N``: 100 ps (``--md-ps``) of Langevin MD at 300 K of the first N validation
  molecules of the conformer benchmark, by name, at both settings of the accuracy
  report's own MD check (1 fs without constraints, 2 fs with bonds to H constrained):
  how many keep every bond;
- with ``--nve N``: the accuracy report's NVE check (10 ps at 1 fs without constraints) of the
  first N validation molecules: how many keep |E(t) - E(0)| below 1 kcal/mol, and the largest drift;
- bonds to hydrogen pulled out: in the first conformer of each validation molecule, each H
  moved along its bond to 1.5, 2, 2.5 and 3 Angstrom from its partner, everything else fixed
  (native System): how many bonds end *below* the bonded geometry at 3 Angstrom (a bond the
  model holds only as a metastable state) and the lowest barrier on the way;
- angles of hydrogens bent: in the same conformers, up to 4 angles H-X-Y each bent by
  -40, -20, +20 and +40 degrees (the H turns about X, everything else fixed), energies
  relative to the unbent geometry against GFN2-xTB (tblite): RMSE, and how many bends the
  model makes cost less than half of GFN2-xTB's (soft angles, which MD at 2 fs drives into
  the steep part of the 1-3 pairs);
- with ``--recipe CONFIG``: the validation molecules of each charged-molecule
  shard the recipe labels (``charged``, ``ions``; split as the recipe splits
  them), GFN2-xTB relative energies (each molecule's frames about their mean)
  and forces, with the training code's evaluation path.

The split comes from each model's own metadata (fractions and seed), as in the
accuracy report. Run from the repository root::

    python benchmarks/compare_validation.py MODEL [MODEL ...] --data ../shared/data [--md 12] [--nve 10] [--recipe training/default_model.yaml] [--out FILE.json]

``--limit N`` reads only N records of each set (quick runs; the split then differs).

Prints one table (kcal/mol, forces kcal/mol/Angstrom) and, with ``--out``, writes every number.
"""

from __future__ import annotations

import argparse
import json
import logging
import math
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

import accuracy_report as ar  # noqa: E402


#: The NCIAtlas subset of ionic hydrogen bonds, scored apart (fixed charges underbind them most).
IONIC = "IHB100x10"
#: Distances (Angstrom) to which :func:`bond_escape` pulls each hydrogen from its bonded partner.
ESCAPE_DISTANCES = (1.5, 2.0, 2.5, 3.0)

#: How many angles per molecule :func:`angle_bends` bends (by the training pipeline's
#: ``physff_openmm.training.data.BEND_DEGREES``).
BEND_ANGLES = 4


def _native_energy(model, rec):
    """A function: positions (n, 3) Angstrom -> the record's physff energy, kcal/mol (native System, Reference)."""
    import openmm
    from openmm import unit

    import physff_openmm as pf

    system = pf.create_system(pf.parameterize(rec.to_rdkit(), model=model))
    context = openmm.Context(system, openmm.VerletIntegrator(0.001), openmm.Platform.getPlatformByName("Reference"))

    def energy(x):
        context.setPositions(x * 0.1)  # Angstrom -> nm
        return context.getState(getEnergy=True).getPotentialEnergy().value_in_unit(unit.kilocalorie_per_mole)

    return energy


def angle_bends(model, records) -> dict:
    """Angles H-X-Y of each record's first conformer bent both ways, physff against GFN2-xTB.

    The angles and geometries are the training pipeline's (:func:`~physff_openmm.training.data.bend_angles`, fixed seed;
    :func:`~physff_openmm.training.data.bend_angle_geometries`). Returns the RMSE of the
    energies relative to the unbent geometry (kcal/mol), the number of bends, and how many the
    model makes cost less than half of GFN2-xTB's ("soft"), with the changes (degrees).
    """
    import numpy as np

    from physff_openmm.training.data import BEND_DEGREES, bend_angles, bend_angle_geometries
    from physff_openmm.training.xtb import xtb_energy_forces
    from physff_openmm.units import HARTREE_TO_KCAL

    errors, soft = [], 0
    for rec in records:
        x0 = np.asarray(rec.positions[0], dtype=float)
        energy = _native_energy(model, rec)
        species = np.asarray(rec.species, dtype=int)

        def xtb(x):
            return xtb_energy_forces(species, x, int(rec.total_charge))[0] * HARTREE_TO_KCAL

        e0, q0 = energy(x0), xtb(x0)
        for angle in bend_angles(rec.to_rdkit(), BEND_ANGLES, np.random.default_rng(0)):
            for x in bend_angle_geometries(x0, angle, BEND_DEGREES):
                de, dq = energy(x) - e0, xtb(x) - q0
                errors.append(de - dq)
                soft += bool(dq > 2.0 and de < 0.5 * dq)
    err = np.asarray(errors)
    return {"changes_deg": list(BEND_DEGREES), "n_bends": int(err.size),
            "rmse": float(np.sqrt(np.mean(err**2))) if err.size else math.nan, "soft": int(soft)}


def bond_escape(model, records) -> dict:
    """Each bond to H of each record's first conformer pulled out along its axis, the rest fixed.

    Returns the number of such bonds, how many end below the bonded geometry at the last
    distance of :data:`ESCAPE_DISTANCES` (kcal/mol), and the lowest barrier (highest energy on the way
    above the bonded geometry) over all of them.
    """
    import numpy as np

    from physff_openmm.training.data import bond_scan_geometries

    n_bonds, downhill, barriers = 0, 0, []
    for rec in records:
        x0 = np.asarray(rec.positions[0], dtype=float)
        energy = _native_energy(model, rec)
        e0 = energy(x0)
        for i, j in np.asarray(rec.bonds, dtype=int).reshape(-1, 2):
            if 1 not in (rec.species[i], rec.species[j]):
                continue
            heavy, h = (i, j) if rec.species[j] == 1 else (j, i)
            r0 = np.linalg.norm(x0[h] - x0[heavy])
            pulled = bond_scan_geometries(x0, np.array([[heavy, h]]), [d / r0 - 1.0 for d in ESCAPE_DISTANCES])
            profile = [energy(x) - e0 for x in pulled]
            n_bonds += 1
            downhill += profile[-1] < 0.0
            barriers.append(max(profile))
    return {"n_bonds": n_bonds, "downhill": int(downhill), "lowest_barrier": float(min(barriers)) if barriers else math.nan}


def score(model_name: str, sets: dict, data_dir: Path, md: int = 0, md_ps: float = 100.0, threads: int = 1,
          shards: dict[str, list] | None = None, nve: int = 0) -> dict:
    """Validation numbers of one model (see the module docstring); ``shards``: :func:`charged_validation`."""
    import physff_openmm as pf
    from physff_openmm.training.recipe import public_splits

    model = pf.load_model(model_name)
    fractions, seed, _ = ar.split_settings(model)
    splits = public_splits(sets, fractions, seed)
    ev = ar.Energies(model, ar.Timer(), use_xtb=False)
    conformers = ar.conformer_section(list(splits.val["conformers"]), ev)[0]["stats"]["model_vs_dft"]
    drives = {part: ar.torsion_section(list(getattr(splits, part)["torsions"]), ev, data_dir)["stats"]["model"]
              for part in ("val", "train")}
    dimers = [r for r in splits.val["ncia"] if ar.equilibrium_index(r) is not None]
    ncia = ar.ncia_section(dimers, ev)
    groups = ncia["groups"]
    ionic_train = [r for r in splits.train["ncia"] if ar.ncia_subset(r) == IONIC and ar.equilibrium_index(r) is not None]
    ionic = {"val": ncia["subsets"][IONIC]["model"]["rmse"],
             "train": ar.ncia_section(ionic_train, ev)["subsets"][IONIC]["model"]["rmse"]}
    stored = model.metadata.get("metrics", {}).get("validation", {})
    escape = bond_escape(model, splits.val["conformers"])
    bends = angle_bends(model, splits.val["conformers"])
    pool = sorted(splits.val["conformers"], key=lambda r: r.name)  # the MD and NVE molecules, by name
    md_rows = {}
    if md:  # both settings of the acceptance test: 1 fs free, 2 fs with bonds to H constrained
        section = ar.md_acceptance_section(pool, model, md, md_ps, threads, ar.Timer())
        for key, runs in section["runs"].items():
            md_rows[key] = {
                "n_molecules": runs["n_molecules"], "n_stable": runs["n_stable"], "simulated_ps": md_ps,
                "failures": [f"{ar.MD_SETTINGS[key]['label']}: {r['name']} {r['status']} {r.get('worst_bond')} "
                             f"at {r.get('failure_time_ps')} ps" for r in runs["per_molecule"] if r["status"] != "stable"],
            }
    extra = {"shards": score_shards(model, shards)} if shards else {}
    if nve:
        runs = ar.nve_section(pool, model, nve, ar.NVE_PS, threads, ar.Timer())
        extra["nve"] = {"n_molecules": runs["n_molecules"], "n_passed": runs["n_passed"], "simulated_ps": ar.NVE_PS,
                        "max_abs_drift_kcal_mol": runs["max_abs_drift_kcal_mol"],
                        "drifts": {r["name"]: r["max_abs_drift_kcal_mol"] for r in runs["per_molecule"]}}
    return {
        "model": model_name,
        "sha256": model.file_hash,
        "conformers": {k: conformers[k] for k in ("rmse", "mae", "max_abs", "n_molecules")},
        "torsions_val_rmse": drives["val"]["rmse"],
        "torsions_train_rmse": drives["train"]["rmse"],
        "ncia_hydrogen_bonded_rmse": groups["hydrogen_bonded"]["model"]["rmse"],
        "ncia_dispersion_rmse": groups["dispersion"]["model"]["rmse"],
        "ncia_ionic_hb_rmse": ionic,
        "stored_validation": {k: stored[k] for k in ("relative_energy_kcal_mol", "forces_kcal_mol_angstrom",
                                                      "interaction_kcal_mol") if k in stored},
        "bond_escape": escape,
        "angle_bends": bends,
        "md": md_rows,
        **extra,
    }


def charged_validation(recipe: str | Path) -> dict[str, list]:
    """Validation records of each charged shard the recipe labels and has labelled (split as the recipe does)."""
    from physff_openmm.training.config import DefaultModelConfig, load_config
    from physff_openmm.training.recipe import CHARGED_SHARDS, shard_path, split_charged_shard

    cfg = load_config(recipe, DefaultModelConfig)
    out = {}
    for key in CHARGED_SHARDS:
        c = getattr(cfg, key)
        if not (c.n_molecules and c.val_fraction):
            continue
        path = shard_path(cfg, key)
        if path.is_file():
            out[key] = split_charged_shard(path, c)[1]
    return out


def score_shards(model, shards: dict[str, list]) -> dict:
    """GFN2-xTB relative energies and forces of the shards' validation molecules."""
    from physff_openmm.training.data import records_to_graphs
    from physff_openmm.training.evaluate import evaluate_graphs

    out = {}
    for key, records in shards.items():
        m = evaluate_graphs(model, records_to_graphs(records, require="any"))
        out[key] = {"relative_energy": m["relative_energy_kcal_mol"], "forces": m["forces_kcal_mol_angstrom"],
                    "n_molecules": m["n_molecules"]}
    return out


def table(rows: list[dict]) -> str:
    """A markdown table of the headline numbers, one column per model."""
    def stored(r, key, stat):
        v = r["stored_validation"].get(key, {}).get(stat)
        return "-" if v is None else f"{v:.2f}"

    lines = ["| validation split | " + " | ".join(Path(r["model"]).name for r in rows) + " |",
             "|---" * (len(rows) + 1) + "|"]
    spec = [
        ("conformers RMSE (largest)", lambda r: f"{r['conformers']['rmse']:.2f} ({r['conformers']['max_abs']:.1f})"),
        ("torsion drives, validation", lambda r: f"{r['torsions_val_rmse']:.2f}"),
        ("torsion drives, training", lambda r: f"{r['torsions_train_rmse']:.2f}"),
        ("NCIA H-bonded", lambda r: f"{r['ncia_hydrogen_bonded_rmse']:.2f}"),
        ("NCIA dispersion", lambda r: f"{r['ncia_dispersion_rmse']:.2f}"),
        (f"NCIA {IONIC} (ion + neutral molecule), validation", lambda r: f"{r['ncia_ionic_hb_rmse']['val']:.2f}"),
        (f"NCIA {IONIC}, training", lambda r: f"{r['ncia_ionic_hb_rmse']['train']:.2f}"),
        ("stored: relative energies MAE", lambda r: stored(r, "relative_energy_kcal_mol", "mae")),
        ("stored: forces MAE", lambda r: stored(r, "forces_kcal_mol_angstrom", "mae")),
        ("stored: interaction RMSE", lambda r: stored(r, "interaction_kcal_mol", "rmse")),
    ]
    spec.append((f"bonds to H pulled to {ESCAPE_DISTANCES[-1]:g} A: downhill of {rows[0]['bond_escape']['n_bonds']} "
                 "(lowest barrier)", lambda r: f"{r['bond_escape']['downhill']} ({r['bond_escape']['lowest_barrier']:.0f})"))
    bends = rows[0]["angle_bends"]
    spec.append((f"angles of H bent {bends['changes_deg'][0]:+g} to {bends['changes_deg'][-1]:+g} deg against GFN2-xTB: "
                 f"RMSE (soft of {bends['n_bends']})",
                 lambda r: f"{r['angle_bends']['rmse']:.2f} ({r['angle_bends']['soft']})"))
    for key, md in rows[0]["md"].items():
        spec.append((f"MD {md['simulated_ps']:g} ps, {ar.MD_SETTINGS[key]['label']}: stable of {md['n_molecules']}",
                     lambda r, k=key: str(r["md"][k]["n_stable"])))
    if "nve" in rows[0]:
        nve = rows[0]["nve"]
        spec.append((f"NVE {nve['simulated_ps']:g} ps at 1 fs: drift below 1 kcal/mol, of {nve['n_molecules']} (largest)",
                     lambda r: f"{r['nve']['n_passed']} ({r['nve']['max_abs_drift_kcal_mol']:.2f})"))
    for key in rows[0].get("shards", {}):
        n = rows[0]["shards"][key]["n_molecules"]
        spec += [
            (f"{key} ({n} molecules): relative energies RMSE", lambda r, k=key: f"{r['shards'][k]['relative_energy']['rmse']:.2f}"),
            (f"{key}: forces MAE", lambda r, k=key: f"{r['shards'][k]['forces']['mae']:.2f}"),
        ]
    for name, cell in spec:
        lines.append(f"| {name} | " + " | ".join(cell(r) for r in rows) + " |")
    return "\n".join(lines)


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("models", nargs="+", help="model names or files")
    p.add_argument("--data", default="../shared/data", help="the shared data folder")
    p.add_argument("--out", help="write every number to this JSON file")
    p.add_argument("--limit", type=int, help="read at most N records of each set (quick runs)")
    p.add_argument("--md", type=int, default=0, help="MD of the first N validation molecules (0: none)")
    p.add_argument("--md-ps", type=float, default=100.0, help="length of each MD run, ps")
    p.add_argument("--nve", type=int, default=0, help="NVE check of the first N validation molecules (0: none)")
    p.add_argument("--threads", type=int, default=1, help="CPU threads of the MD runs")
    p.add_argument("--recipe", help="also score the validation molecules of this recipe's charged shards (packed in its shard_dir, or in its work_dir)")
    args = p.parse_args(argv)
    if args.md < 0 or args.nve < 0 or args.md_ps <= 0 or args.threads < 1:
        p.error(f"need --md >= 0, --nve >= 0, --md-ps > 0 and --threads >= 1, got {args.md}, {args.nve}, {args.md_ps}, "
                f"{args.threads}")
    from physff_openmm.errors import PhysFFError
    from physff_openmm.training.recipe import read_public_sets

    data_dir = Path(args.data)
    logging.disable(logging.WARNING)  # reader notes on skipped records: the accuracy report lists them
    try:
        sets = read_public_sets(data_dir, limit=args.limit)
        shards = charged_validation(args.recipe) if args.recipe else {}
        rows = [score(m, sets, data_dir, args.md, args.md_ps, args.threads, shards, args.nve) for m in args.models]
    except PhysFFError as exc:  # a bad model name, data folder or recipe: one line, no traceback
        print(f"error: {exc}", file=sys.stderr)
        return 2
    finally:
        logging.disable(logging.NOTSET)
    print(table(rows))
    for r in rows:
        for md in r["md"].values():
            for failure in md["failures"]:
                print(f"{Path(r['model']).name}: MD {failure}")
    if args.out:
        Path(args.out).write_text(json.dumps(ar.jsonable(rows), indent=1) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
