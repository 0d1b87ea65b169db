"""Evaluation of a model: error metrics, GFN2-xTB baselines, parity plots, MD stability.

Units: energies in kcal/mol, forces in kcal/mol/Angstrom, distances in Angstrom.

* :func:`evaluate_graphs` - MAE/RMSE of total energies, relative conformer
  energies (each molecule's energies minus their mean), forces and interaction
  energies on labelled graphs.
* :func:`evaluate_report` - a report per model over dataset shards: the metrics
  above split by item kind (total, relative-conformer, torsion, interaction),
  the same metrics for GFN2-xTB on the same items (:func:`xtb_energy_forces`),
  parity plots (PNG, matplotlib Agg) and a JSON file.
* :func:`md_stability` - Langevin MD through :func:`physff_openmm.workflows.run_md`
  (the CLI's MD driver); checks that bonds stay within a fraction of their length in
  the input geometry and nothing is NaN.
* :func:`minimization_check` - L-BFGS minimization through
  :func:`physff_openmm.workflows.minimize` of small molecules from RDKit
  geometries; checks that no bond moves more than a fraction of its length.
"""

from __future__ import annotations

import json
import logging
import math
import time
from collections import defaultdict
from pathlib import Path
from typing import Any, Sequence

import numpy as np
import torch

from ..errors import ConfigError, PhysFFError
from ..model import PhysFFModel
from ..units import HARTREE_TO_KCAL

__all__ = ["predict", "error_stats", "evaluate_graphs", "evaluate_report", "md_stability", "minimization_check", "parity_plot"]

logger = logging.getLogger(__name__)


# ============================================================================ predictions and metrics
def predict(model: PhysFFModel, graphs: Sequence, *, batch_size: int = 32, forces: bool = True) -> dict[str, np.ndarray]:
    """Model energies, forces and interaction energies with their references.

    Returns
    -------
    dict
        ``energy``, ``energy_ref``, ``interaction``, ``interaction_ref``, ``n_atoms``,
        ``mol_id``, ``conf_id`` per graph (kcal/mol); ``forces``, ``forces_ref``
        (n_total_atoms, 3) kcal/mol/Angstrom over graphs with reference forces.
    """
    from .data import make_loader
    from .stage2 import energy_and_forces, interaction_energy

    out = defaultdict(list)
    was_training = model.training
    model.eval()
    for batch in make_loader(graphs, batch_size):
        pos = batch.pos.to(torch.float64)
        with torch.no_grad():  # positions are the only input forces need a gradient of
            terms = model.pair_terms(batch)
        e, f = energy_and_forces(model, batch, pos, forces=forces, terms=terms)
        e_int = interaction_energy(model, batch, pos, terms)
        out["energy"].append(e.detach().numpy())
        out["energy_ref"].append(batch.energy.numpy())
        out["interaction"].append(e_int.numpy())
        out["interaction_ref"].append(batch.interaction.numpy())
        out["n_atoms"].append(torch.bincount(batch.batch, minlength=int(batch.num_graphs)).numpy())
        out["mol_id"].append(batch.mol_id.numpy())
        out["conf_id"].append(batch.conf_id.numpy())
        if forces:
            mask = batch.has_forces[batch.batch].numpy()
            out["forces"].append(f.detach().numpy()[mask])
            out["forces_ref"].append(batch.forces.numpy()[mask])
    if was_training:
        model.train()
    res = {k: np.concatenate(v) if v else np.zeros(0) for k, v in out.items()}
    if not forces:
        res["forces"] = res["forces_ref"] = np.zeros((0, 3))
    return res


def error_stats(pred, ref) -> dict[str, float]:
    """MAE, RMSE, max error and count over finite pairs."""
    pred, ref = np.asarray(pred, float).ravel(), np.asarray(ref, float).ravel()
    ok = np.isfinite(pred) & np.isfinite(ref)
    d = pred[ok] - ref[ok]
    if not d.size:
        return {"mae": math.nan, "rmse": math.nan, "max": math.nan, "n": 0}
    return {"mae": float(np.abs(d).mean()), "rmse": float(np.sqrt((d * d).mean())), "max": float(np.abs(d).max()), "n": int(d.size)}


def _relative(values: np.ndarray, groups: np.ndarray) -> np.ndarray:
    """Each value minus the mean of its group (NaN for groups of one)."""
    out = np.full_like(values, np.nan, dtype=float)
    for gid in np.unique(groups):
        m = (groups == gid) & np.isfinite(values)
        if m.sum() >= 2:
            out[m] = values[m] - values[m].mean()
    return out


def metrics_from_predictions(p: dict[str, np.ndarray]) -> dict[str, Any]:
    """Error statistics of :func:`predict` output (kcal/mol, kcal/mol/Angstrom)."""
    ok = np.isfinite(p["energy_ref"])
    rel_pred = _relative(np.where(ok, p["energy"], np.nan), p["mol_id"])
    rel_ref = _relative(np.where(ok, p["energy_ref"], np.nan), p["mol_id"])
    inter = np.isfinite(p["interaction_ref"])
    return {
        "energy_kcal_mol": error_stats(p["energy"], p["energy_ref"]),
        "energy_per_atom_kcal_mol": error_stats(p["energy"] / p["n_atoms"], p["energy_ref"] / p["n_atoms"]),
        "relative_energy_kcal_mol": error_stats(rel_pred, rel_ref),
        "forces_kcal_mol_angstrom": error_stats(p["forces"], p["forces_ref"]),
        "interaction_kcal_mol": error_stats(p["interaction"][inter], p["interaction_ref"][inter]),
        "n_conformers": int(len(p["energy"])),
        "n_molecules": int(len(np.unique(p["mol_id"]))),
    }


def evaluate_graphs(model: PhysFFModel, graphs: Sequence, *, batch_size: int = 32) -> dict[str, Any]:
    """Metrics of a model on labelled graphs (see :func:`metrics_from_predictions`)."""
    if not graphs:
        return {}
    return metrics_from_predictions(predict(model, graphs, batch_size=batch_size))


# ============================================================================ report
def parity_plot(pred, ref, path: str | Path, *, title: str, unit: str) -> Path:
    """Scatter of predictions against references, written as PNG (matplotlib Agg)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    pred, ref = np.asarray(pred, float).ravel(), np.asarray(ref, float).ravel()
    ok = np.isfinite(pred) & np.isfinite(ref)
    pred, ref = pred[ok], ref[ok]
    fig, ax = plt.subplots(figsize=(4.2, 4.0), dpi=110)
    if pred.size:
        lo, hi = float(min(pred.min(), ref.min())), float(max(pred.max(), ref.max()))
        ax.plot([lo, hi], [lo, hi], color="0.6", lw=1)
        ax.scatter(ref, pred, s=6, alpha=0.6)
        st = error_stats(pred, ref)
        ax.text(0.03, 0.95, f"MAE {st['mae']:.2f}\nRMSE {st['rmse']:.2f}\nn = {st['n']}", transform=ax.transAxes, va="top")
    ax.set_xlabel(f"reference ({unit})")
    ax.set_ylabel(f"model ({unit})")
    ax.set_title(title, fontsize=10)
    fig.tight_layout()
    path = Path(path)
    tmp = path.with_name(path.stem + ".partial.png")
    fig.savefig(tmp)
    plt.close(fig)
    tmp.replace(path)
    return path


def _xtb_predictions(records, p: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
    """GFN2-xTB energies, forces and interaction energies on the same items as ``p`` (kcal/mol)."""
    from .xtb import xtb_energy_forces

    e_x = np.full(len(p["energy"]), np.nan)
    i_x = np.full(len(p["energy"]), np.nan)
    forces = []
    cache: dict[tuple, float] = {}
    for k, (m, c) in enumerate(zip(p["mol_id"], p["conf_id"])):
        rec = records[int(m)]
        z = rec.species.astype(int)
        x = rec.positions[int(c)]
        try:
            e, f = xtb_energy_forces(z, x, rec.total_charge)
        except PhysFFError as exc:
            logger.warning("GFN2-xTB failed on %s %s: %s", rec.name, rec.conformer_ids[int(c)], exc)
            e, f = math.nan, np.full((rec.n_atoms, 3), math.nan)
        e_x[k] = e * HARTREE_TO_KCAL
        if rec.forces is not None and np.all(np.isfinite(rec.forces[int(c)])):
            forces.append(f * HARTREE_TO_KCAL)
        if rec.fragments is not None and np.isfinite(rec.interaction_energy[int(c)]):
            total = e
            for frag in np.unique(rec.fragments):
                sel = rec.fragments == frag
                fq = int(rec.formal_charges[sel].sum())
                key = (int(m), int(c), int(frag))
                if key not in cache:
                    cache[key] = xtb_energy_forces(z[sel], x[sel], fq)[0]
                total -= cache[key]
            i_x[k] = total * HARTREE_TO_KCAL
    return {"energy": e_x, "interaction": i_x, "forces": np.concatenate(forces) if forces else np.zeros((0, 3))}


def _kind(rec) -> str:
    if rec.fragments is not None and np.isfinite(rec.interaction_energy).any():
        return "interaction"
    if rec.dihedral is not None or rec.angles_deg is not None:
        return "torsion"
    return "conformer"


def evaluate_report(
    model: PhysFFModel | str | Path,
    data,
    out_dir: str | Path,
    *,
    name: str | None = None,
    xtb_baseline: bool = True,
    max_conformers: int | None = None,
) -> dict[str, Any]:
    """Evaluate a model on dataset shards; write ``report.json`` and parity plots.

    Parameters
    ----------
    model : PhysFFModel, model name or model file
    data : path, list of paths or list of MoleculeRecord
        Shards (or records) whose ``energy`` is the reference.
    out_dir : path
        Receives ``report.json`` and ``parity_*.png``.
    name : str, optional
        Model name in the report.
    xtb_baseline : bool
        Also evaluate GFN2-xTB on the same items (skipped where the reference is itself GFN2-xTB).
    max_conformers : int, optional
        Use at most this many conformers per molecule.

    Returns
    -------
    dict
        The report: for each kind of item ("conformer", "torsion", "interaction")
        and "all", the model's metrics and, where computed, GFN2-xTB's.
    """
    from ..registry import load_model
    from .data import XTB_LEVEL, record_to_graphs
    from .dataset import MoleculeRecord, read_dataset

    net = load_model(model)
    records = list(data) if isinstance(data, list) and data and isinstance(data[0], MoleculeRecord) else read_dataset(data)
    if not records:
        raise ConfigError(f"no molecules in {data}")
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    by_kind: dict[str, list[int]] = defaultdict(list)
    graphs_by_kind: dict[str, list] = defaultdict(list)
    for m, rec in enumerate(records):
        rows = np.flatnonzero(np.isfinite(rec.energy) | np.isfinite(rec.interaction_energy))
        if max_conformers:
            rows = rows[:max_conformers]
        if not len(rows):
            continue
        kind = _kind(rec)
        by_kind[kind].append(m)
        graphs_by_kind[kind].extend(
            record_to_graphs(rec, mol_id=m, conformers=rows.tolist(), resonance=net.config.resonance_features)
        )
    levels = sorted({r.level for r in records})
    do_xtb = xtb_baseline and levels != [XTB_LEVEL]
    report: dict[str, Any] = {
        "model": name or getattr(net, "name", None) or "model",
        "model_sha256": net.file_hash,
        "reference_levels": levels,
        "n_molecules": len(records),
        "kinds": {},
        "notes": "energies kcal/mol, forces kcal/mol/A; GFN2-xTB total energies have their own zero "
        "(semiempirical reference atoms), so compare its relative, interaction and force errors, not total ones",
    }
    all_p: dict[str, list] = defaultdict(list)
    all_x: dict[str, list] = defaultdict(list)
    t0 = time.perf_counter()
    for kind, graphs in graphs_by_kind.items():
        p = predict(net, graphs)
        entry = {"model": metrics_from_predictions(p)}
        for k, v in p.items():
            all_p[k].append(v)
        if do_xtb:
            x = _xtb_predictions(records, p)
            px = dict(p, energy=x["energy"], interaction=x["interaction"], forces=x["forces"])
            if len(x["forces"]) != len(p["forces_ref"]):
                px["forces"] = np.full_like(p["forces_ref"], np.nan)
            entry["gfn2_xtb"] = metrics_from_predictions(px)
            for k, v in px.items():
                all_x[k].append(v)
        report["kinds"][kind] = entry
        _plots(p, out_dir, kind, "model")
    pa = {k: np.concatenate(v) for k, v in all_p.items()}
    report["all"] = {"model": metrics_from_predictions(pa)}
    if all_x:
        report["all"]["gfn2_xtb"] = metrics_from_predictions({k: np.concatenate(v) for k, v in all_x.items()})
    report["seconds"] = time.perf_counter() - t0
    path = out_dir / "report.json"
    tmp = path.with_name("report.partial.json")
    tmp.write_text(json.dumps(report, indent=1, default=float))
    tmp.replace(path)
    return report


def _plots(p: dict[str, np.ndarray], out_dir: Path, kind: str, who: str) -> None:
    rel_p = _relative(p["energy"], p["mol_id"])
    rel_r = _relative(p["energy_ref"], p["mol_id"])
    parity_plot(rel_p, rel_r, out_dir / f"parity_{kind}_relative_energy.png", title=f"{kind}: relative energies", unit="kcal/mol")
    parity_plot(p["energy"], p["energy_ref"], out_dir / f"parity_{kind}_total_energy.png", title=f"{kind}: total energies", unit="kcal/mol")
    if len(p["forces"]):
        parity_plot(p["forces"], p["forces_ref"], out_dir / f"parity_{kind}_forces.png", title=f"{kind}: forces", unit="kcal/mol/A")
    if np.isfinite(p["interaction_ref"]).any():
        parity_plot(p["interaction"], p["interaction_ref"], out_dir / f"parity_{kind}_interaction.png", title=f"{kind}: interaction energies", unit="kcal/mol")


# ============================================================================ MD stability
def md_stability(model: PhysFFModel | str | Path, config=None) -> dict[str, Any]:
    """Langevin MD of a few molecules with :func:`physff_openmm.workflows.run_md` (the MD driver of the CLI).

    Every bond free (no constraints), native backend, after a minimization; run_md's
    bond watch measures each covalent bond against the input geometry and stops a
    run whose bond moved past 30 % (or that became NaN).

    Parameters
    ----------
    model : PhysFFModel, model name or file
    config : MDCheckConfig, dict or None
        SMILES, simulated time (ps), time step (fs), temperature (K) and the
        allowed relative bond-length change.

    Returns
    -------
    dict
        Per SMILES: ``stable`` (bool), ``max_bond_change`` (relative), ``finite``,
        ``steps``, ``seconds``, ``mean_temperature_k`` (``failure``: the message of a
        run that stopped); and ``all_stable``.
    """
    import tempfile

    from ..errors import ModelFailureError, SimulationError
    from ..registry import load_model
    from ..workflows import read_report_csv, run_md
    from .config import MDCheckConfig, load_config

    cfg = load_config(config, MDCheckConfig)
    net = load_model(model)
    n_steps = int(round(cfg.time_ps * 1000.0 / cfg.timestep_fs))
    results: dict[str, Any] = {}
    with tempfile.TemporaryDirectory() as tmp:
        for k, smiles in enumerate(cfg.smiles):
            t0 = time.perf_counter()
            report = Path(tmp) / f"md{k}.csv"
            try:
                res = run_md(smiles, n_steps, model=net, constraints=None, timestep_fs=cfg.timestep_fs,
                             temperature_k=cfg.temperature_k, friction_per_ps=1.0, seed=1234 + k, report_csv=report,
                             report_interval=100, progress=False)
                failure = None
            except (ModelFailureError, SimulationError) as exc:  # a bond past 30 %, or NaN: the run stopped
                res, failure = None, str(exc)
            temps = read_report_csv(report)["Temperature (K)"] if report.is_file() else np.zeros(0)
            change = abs(res["max_bond_change"]) if res else math.inf
            results[smiles] = {
                "stable": bool(res is not None and change <= cfg.max_bond_change),
                "finite": failure is None or "unstable" not in failure,
                "max_bond_change": change,
                "steps": res["steps"] if res else max(len(temps) - 1, 0) * 100,  # rows every 100 steps
                "time_ps": res["time_ps"] if res else math.nan,
                "mean_temperature_k": float(np.mean(temps[1:])) if len(temps) > 1 else math.nan,
                "seconds": time.perf_counter() - t0,
                **({"failure": failure} if failure else {}),
            }
    return {
        "settings": {"time_ps": cfg.time_ps, "timestep_fs": cfg.timestep_fs, "temperature_k": cfg.temperature_k,
                     "integrator": "LangevinMiddleIntegrator, friction 1/ps (physff_openmm.workflows.run_md, "
                                   "no constraints)", "backend": "native", "max_bond_change": cfg.max_bond_change},
        "molecules": results,
        "all_stable": all(v["stable"] for v in results.values()),
    }


def minimization_check(model: PhysFFModel | str | Path, config=None) -> dict[str, Any]:
    """Minimize each of ``config.minimize`` from an RDKit geometry (native backend, Reference
    platform) and measure how far its bonds moved: issue 13's line that a bond's own terms
    hold it, e.g. the glycine zwitterion's C-C, which a model may pull apart.

    Returns
    -------
    dict
        Per SMILES: ``kept`` (bool), ``max_bond_change`` (relative, signed largest),
        ``bond`` (the atoms of that bond), ``energy_change_kcal_mol``; and ``all_kept``
        and the ``max_bond_change`` allowed.
    """
    from ..errors import ModelFailureError
    from ..molecule import ensure_conformer, load_molecule
    from ..registry import load_model
    from ..workflows import minimize
    from .config import MDCheckConfig, load_config

    cfg = load_config(config, MDCheckConfig)
    net = load_model(model)
    results: dict[str, Any] = {}
    for smiles in cfg.minimize:
        try:
            _, res = minimize(ensure_conformer(load_molecule(smiles)), model=net, platform="Reference", progress=False)
        except ModelFailureError as exc:  # a bond past 30 %: nothing comes back
            results[smiles] = {"kept": False, "max_bond_change": exc.change, "bond": exc.bond, "failure": str(exc)}
            continue
        results[smiles] = {
            "kept": bool(abs(res["max_bond_change"]) <= cfg.max_minimized_bond_change),
            "max_bond_change": res["max_bond_change"],
            "bond": res["worst_bond"],
            "energy_change_kcal_mol": float(res["energy_change_kcal_mol"]),
        }
    return {"molecules": results, "max_bond_change": cfg.max_minimized_bond_change,
            "all_kept": all(v["kept"] for v in results.values())}
