"""Accuracy report of a shipped model on the held-out test split of the public reference sets.

Everything is measured on the *test* part of the fixed split of
:func:`physff_openmm.training.recipe.public_splits` (fractions and seed from the
model file's metadata, ``metadata["data"]["config"]["public"]``, when present;
otherwise the module defaults), so no molecule seen in training is scored.
All energies are in kcal/mol (1 Eh = ``physff_openmm.units.HARTREE_TO_KCAL``).

1. Relative conformer energies (conformer benchmark): per molecule, energies
   relative to the conformer that is lowest at the reference level; RMSE and MAE
   over all conformers except that zero point, against B3LYP-D3BJ/def2-SVP and
   against DLPNO-CCSD(T)/cc-pVTZ (where present), and the per-molecule Spearman
   rank correlation, for the model, GFN2-xTB, MMFF94 and (against DLPNO)
   B3LYP-D3BJ/def2-SVP itself.
2. Torsion drives: RMSE of the relative profile (same zeroing) against
   B3LYP-D3BJ/def2-SVP, for the model, GFN2-xTB, MMFF94 and the peers stored in
   ``torsion_drives.json`` (matched to the record's points by angle).
3. NCIAtlas interaction energies at scaling 1.00 by subset, against CCSD(T)/CBS;
   each monomer is its own system (E_AB - E_A - E_B).
4. Total-energy MAE per conformer-benchmark molecule (E_lin included).
5. MD stability (issue 13's acceptance): Langevin MD (300 K, friction 1/ps,
   native backend, CPU platform) from the first conformer's DFT geometry, at 1 fs
   without constraints and at 2 fs with bonds to hydrogen constrained (the
   Simulation of ``physff_openmm.workflows.build_simulation``, as ``run_md``
   builds it); bond lengths, NaN and collapsed atoms every 0.1 ps; each run
   stable, bond stretched, bond compressed, atoms collapsed or NaN.
6. Physical sanity: Lennard-Jones sigma and epsilon of the non-covalent C0/C1
   pair parameters, and atomic charges by element.
7. Minimization (issue 13): water, ammonia, formamide, methanol, methylammonium,
   the glycine zwitterion, the water dimer and the MD test molecules minimized
   from their input geometry (``physff_openmm.workflows.minimize``); the largest
   relative bond change, pass at 20 % or less.
8. NVE (issue 13): Verlet at 1 fs without constraints from velocities at 300 K;
   max |E(t) - E(0)| sampled every 10 fs, pass below 1 kcal/mol.

The model's energies go through the shipped runtime path only:
``physff_openmm.parameterize`` -> ``create_system(backend="native")`` -> OpenMM
(Reference platform for single points, positions in nm, kJ/mol -> kcal/mol),
plus ``ParameterSet.energy_offset`` for totals; NCIA interaction energies use
``physff_openmm.workflows.interaction_energy``.

Run from the repository root::

    python benchmarks/accuracy_report.py --model default --data ../shared/data

Writes ``benchmarks/results/accuracy.json`` (every number), ``docs/accuracy.md``
(tables; what follows the line ``<!-- generated above; notes below are written
by hand -->`` in an existing file is kept) and the figures in
``docs/figures/accuracy/``. ``--limit N`` scores only the first N test records
of each set (of each NCIA subset) for quick runs; ``--sections md,minimize,nve``
runs only those sections, and ``--md-ps``, ``--md-molecules``, ``--md-settings``,
``--minimize-molecules``, ``--nve-ps`` and ``--nve-molecules`` shorten them (the
markdown then says the run was reduced).
"""

from __future__ import annotations

import argparse
import json
import logging
import math
import os
import shlex
import sys
import time
import warnings
from pathlib import Path
from typing import Any, Callable, Sequence


def _threads_from_argv(argv: Sequence[str]) -> int:
    for k, a in enumerate(argv):
        try:
            if a == "--threads" and k + 1 < len(argv):
                return max(1, int(argv[k + 1]))
            if a.startswith("--threads="):
                return max(1, int(a.split("=", 1)[1]))
        except ValueError:
            return 1  # argparse reports the bad value later
    return 1


if __name__ == "__main__":
    # tblite (GFN2-xTB) and torch share one OpenMP runtime, which reads this when it starts.
    os.environ["OMP_NUM_THREADS"] = str(_threads_from_argv(sys.argv[1:]))
    os.environ.setdefault("OMP_STACKSIZE", "256M")

import numpy as np  # noqa: E402

sys.path.insert(0, str(Path(__file__).resolve().parent))
import _common as C  # noqa: E402

# ============================================================================ constants
#: Level of the conformer and torsion energies that the model targets.
DFT_LEVEL = "b3lyp_d3bj_def2svp"
#: Coupled-cluster level of the conformer benchmark.
DLPNO_LEVEL = "dlpno_ccsdt_ccpvtz"
#: NCIAtlas subsets in report order.
NCIA_SUBSETS = ("HB375x10", "IHB100x10", "HB300SPXx10", "SH250x10", "D1200", "D442x10", "R739x5")
NCIA_GROUPS = {
    "hydrogen_bonded": ("HB375x10", "IHB100x10", "HB300SPXx10"),
    "dispersion": ("D1200", "D442x10"),
}
#: Peers of the torsion-drive file (key in ``relative_energies_kcal_mol_peers`` -> label).
PEERS = {
    "espaloma_0_3_2": "espaloma 0.3.2",
    "gfn2_xtb": "GFN2-xTB (file)",
    "mace": "MACE",
    "aimnet2": "AIMNet2",
}
#: Our own methods -> labels.
METHODS = {"model": "physff", "gfn2_xtb": "GFN2-xTB", "mmff94": "MMFF94"}
#: Targets of issue 13 (model version 2), kcal/mol: RMSE over the test set.
TARGET_RMSE = {"conformers": 2.5, "torsions": 2.5, "hydrogen_bonded": 1.2, "dispersion": 1.2}
#: ... and no test molecule's conformer RMSE above this, kcal/mol.
TARGET_MAX_MOLECULE_RMSE = 10.0
#: MD protocol (issue 13): Langevin at 300 K, friction 1/ps, checked every 0.1 ps.
MD_TEMPERATURE_K = 300.0
MD_TIMESTEP_FS = 1.0
MD_FRICTION_PER_PS = 1.0
MD_REPORT_PS = 0.1
#: A bond that moves further than this fraction from its starting length is stretched or compressed.
MD_BROKEN_RELATIVE = 0.30
#: Two atoms that are not covalently bonded closer than this (Angstrom) have collapsed.
MD_COLLAPSE_ANGSTROM = 0.5
#: The MD settings of issue 13's acceptance test: 1 fs with every bond free, 2 fs with bonds to H
#: constrained (``physff_openmm.workflows.build_simulation(constraints="hbonds")``, run_md's default).
MD_SETTINGS = {
    "1fs": {"timestep_fs": 1.0, "constraints": None, "label": "1 fs, no constraints"},
    "2fs_hbonds": {"timestep_fs": 2.0, "constraints": "hbonds", "label": "2 fs, bonds to H constrained"},
}
#: Outcomes of an MD run (:func:`frame_status`), the first one reached.
MD_STATUSES = ("stable", "bond stretched", "bond compressed", "atoms collapsed", "NaN")
#: Minimization (issue 13): no covalent bond may change its length by more than this fraction.
MIN_BOND_RELATIVE = 0.20
#: The small molecules of the minimization test (name -> SMILES), before the MD test molecules.
MIN_SMALL_MOLECULES = {
    "water": "O",
    "ammonia": "N",
    "formamide": "NC=O",
    "methanol": "CO",
    "methylammonium": "[NH3+]C",
    "glycine zwitterion": "[NH3+]CC(=O)[O-]",
    "water dimer": "O.O",
}
#: The water dimer, H-bonded: O...O 2.91 A, the donor O-H pointing at the acceptor O (atom order of
#: ``load_molecule("O.O")``: O, O, the hydrogens of the first water, those of the second); Angstrom.
WATER_DIMER_XYZ = np.array([
    [0.000, 0.000, 0.000],
    [2.910, 0.000, 0.000],
    [0.957, 0.000, 0.000],
    [-0.240, 0.927, 0.000],
    [3.150, -0.463, 0.800],
    [3.150, -0.463, -0.800],
])
#: NVE protocol (issue 13): Verlet at 1 fs without constraints from velocities at 300 K; the total
#: energy every 10 fs must stay within 1 kcal/mol of its start.
NVE_TIMESTEP_FS = 1.0
NVE_TEMPERATURE_K = 300.0
NVE_SAMPLE_FS = 10.0
NVE_MAX_DRIFT_KCAL_MOL = 1.0
NVE_PS = 10.0
#: Sections of the report (``--sections``); sanity and total energies come with conformers.
SECTIONS = ("conformers", "torsions", "ncia", "md", "minimize", "nve")
#: Approximate classical force-field values for context (GAFF / OPLS-AA), not fitted here.
CONTEXT_LJ = {
    "heavy": {"sigma": (2.5, 4.0), "epsilon": (0.01, 0.25)},
    "H": {"sigma": (1.0, 2.65), "epsilon": (0.0, 0.03)},
}
CONTEXT_CHARGES = {
    "H": (0.0, 0.45), "C": (-0.5, 0.9), "N": (-0.9, 0.3), "O": (-0.85, -0.3), "F": (-0.35, -0.1),
    "S": (-0.5, 1.3), "Cl": (-0.25, 0.0), "Br": (-0.25, 0.0), "P": (0.8, 1.4),
}
#: The line after which docs/accuracy.md holds hand-written notes (kept on regeneration).
MARKER = "<!-- generated above; notes below are written by hand -->"

DEFAULT_DATA = C.ROOT.parent / "shared" / "data"
DEFAULT_MD = C.ROOT / "docs" / "accuracy.md"
DEFAULT_FIGURES = C.ROOT / "docs" / "figures" / "accuracy"
DEFAULT_JSON = C.RESULTS / "accuracy.json"


def progress(msg: str) -> None:
    print(f"[accuracy] {msg}", file=sys.stderr, flush=True)


# ============================================================================ metric helpers (pure)
def relative_to_reference_minimum(values, reference) -> tuple[np.ndarray, np.ndarray, int]:
    """Both energy series relative to the point that is lowest in ``reference``.

    Only points where both are finite count; the zero point is the reference
    minimum among them. Returns (values_rel, reference_rel, index of the zero
    point), NaN where a point does not count; index -1 when no point does.
    """
    v = np.asarray(values, dtype=np.float64).reshape(-1)
    r = np.asarray(reference, dtype=np.float64).reshape(-1)
    if v.shape != r.shape:
        raise ValueError(f"values {v.shape} and reference {r.shape} differ in shape")
    ok = np.isfinite(v) & np.isfinite(r)
    v_rel = np.full(v.shape, np.nan)
    r_rel = np.full(r.shape, np.nan)
    if not ok.any():
        return v_rel, r_rel, -1
    idx = np.flatnonzero(ok)
    k0 = int(idx[np.argmin(r[idx])])
    v_rel[ok] = v[ok] - v[k0]
    r_rel[ok] = r[ok] - r[k0]
    return v_rel, r_rel, k0


def relative_errors(values, reference) -> np.ndarray:
    """Errors of relative energies (zeroed at the reference minimum), the zero point left out."""
    v_rel, r_rel, k0 = relative_to_reference_minimum(values, reference)
    keep = np.isfinite(v_rel) & np.isfinite(r_rel)
    if k0 >= 0:
        keep[k0] = False
    return (v_rel - r_rel)[keep]


def rmse(errors) -> float:
    e = np.asarray(errors, dtype=np.float64).reshape(-1)
    return float(np.sqrt(np.mean(e * e))) if e.size else math.nan


def mae(errors) -> float:
    e = np.asarray(errors, dtype=np.float64).reshape(-1)
    return float(np.mean(np.abs(e))) if e.size else math.nan


def error_stats(errors) -> dict[str, float]:
    """n, RMSE, MAE, largest absolute error and mean signed error of finite errors."""
    e = np.asarray(errors, dtype=np.float64).reshape(-1)
    e = e[np.isfinite(e)]
    return {
        "n": int(e.size),
        "rmse": rmse(e),
        "mae": mae(e),
        "max_abs": float(np.max(np.abs(e))) if e.size else math.nan,
        "mean_signed": float(np.mean(e)) if e.size else math.nan,
    }


def average_ranks(x) -> np.ndarray:
    """Ranks 1..n, ties sharing their average rank."""
    x = np.asarray(x, dtype=np.float64).reshape(-1)
    order = np.argsort(x, kind="mergesort")
    ranks = np.empty(x.size, dtype=np.float64)
    xs = x[order]
    i = 0
    while i < x.size:
        j = i
        while j + 1 < x.size and xs[j + 1] == xs[i]:
            j += 1
        ranks[order[i : j + 1]] = 0.5 * (i + j) + 1.0
        i = j + 1
    return ranks


def spearman(x, y) -> float:
    """Spearman rank correlation of the finite pairs; NaN for fewer than 2 or a constant series."""
    x = np.asarray(x, dtype=np.float64).reshape(-1)
    y = np.asarray(y, dtype=np.float64).reshape(-1)
    ok = np.isfinite(x) & np.isfinite(y)
    if ok.sum() < 2:
        return math.nan
    rx, ry = average_ranks(x[ok]), average_ranks(y[ok])
    rx -= rx.mean()
    ry -= ry.mean()
    den = math.sqrt(float(np.dot(rx, rx)) * float(np.dot(ry, ry)))
    return float(np.dot(rx, ry) / den) if den > 0 else math.nan


def summary(values) -> dict[str, float]:
    """n, median, mean, min, max, 5th and 95th percentile of the finite values."""
    v = np.asarray(values, dtype=np.float64).reshape(-1)
    v = v[np.isfinite(v)]
    if not v.size:
        return {"n": 0, "median": math.nan, "mean": math.nan, "min": math.nan, "max": math.nan, "p5": math.nan, "p95": math.nan}
    return {
        "n": int(v.size), "median": float(np.median(v)), "mean": float(np.mean(v)), "min": float(v.min()),
        "max": float(v.max()), "p5": float(np.percentile(v, 5)), "p95": float(np.percentile(v, 95)),
    }


def lj_from_c0_c1(c0, c1) -> tuple[np.ndarray, np.ndarray]:
    """sigma = (C1/C0)^(1/6) (Angstrom) and epsilon = C0^2 / (4 C1) (kcal/mol), as the native backend does.

    The energy uses |C0| and |C1|; pairs with a zero coefficient give NaN.
    """
    a0 = np.abs(np.asarray(c0, dtype=np.float64))
    a1 = np.abs(np.asarray(c1, dtype=np.float64))
    with np.errstate(divide="ignore", invalid="ignore"):
        ok = (a0 > 0) & (a1 > 0)
        sigma = np.where(ok, (a1 / np.where(ok, a0, 1.0)) ** (1.0 / 6.0), np.nan)
        eps = np.where(ok, a0 * a0 / (4.0 * np.where(ok, a1, 1.0)), np.nan)
    return sigma, eps


def _finite(x) -> float | None:
    return float(x) if x is not None and math.isfinite(float(x)) else None


def jsonable(obj):
    """NaN/inf -> None, NumPy -> Python, recursively."""
    if isinstance(obj, dict):
        return {str(k): jsonable(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [jsonable(v) for v in obj]
    if isinstance(obj, np.ndarray):
        return jsonable(obj.tolist())
    if isinstance(obj, (np.integer,)):
        return int(obj)
    if isinstance(obj, (float, np.floating)):
        return _finite(obj)
    if isinstance(obj, (np.bool_,)):
        return bool(obj)
    return obj


class Timer:
    """Accumulated wall time and item counts per key."""

    def __init__(self):
        self.total: dict[str, float] = {}
        self.count: dict[str, int] = {}

    def add(self, key: str, seconds: float, n: int = 1) -> None:
        self.total[key] = self.total.get(key, 0.0) + seconds
        self.count[key] = self.count.get(key, 0) + n

    def report(self) -> dict[str, dict[str, float]]:
        return {
            k: {"seconds": self.total[k], "items": self.count[k], "ms_per_item": 1e3 * self.total[k] / max(1, self.count[k])}
            for k in sorted(self.total)
        }


# ============================================================================ data
class _CountingHandler(logging.Handler):
    def __init__(self):
        super().__init__(logging.WARNING)
        self.n = 0

    def emit(self, record):
        self.n += 1


def split_settings(model) -> tuple[dict[str, list[float]] | None, int, str]:
    """(fractions, seed, where from) of the public split: the model's metadata, else the module defaults."""
    from physff_openmm.training import recipe

    pub = ((model.metadata or {}).get("data") or {}).get("config", {}) or {}
    pub = pub.get("public") if isinstance(pub, dict) else None
    if isinstance(pub, dict) and ("fractions" in pub or "seed" in pub):
        fr = pub.get("fractions") or None
        fr = {k: [float(x) for x in v] for k, v in fr.items()} if fr else None
        return fr, int(pub.get("seed", recipe.DEFAULT_SPLIT_SEED)), "model metadata (data.config.public)"
    return None, int(recipe.DEFAULT_SPLIT_SEED), "physff_openmm.training.recipe defaults"


def ncia_subset(record) -> str:
    s = record.subset
    return s[5:] if s.startswith("NCIA_") else s


def equilibrium_index(record) -> int | None:
    """Index of the conformer at scaling 1.00, or None."""
    if record.scaling is None:
        return None
    hits = np.flatnonzero(np.abs(record.scaling - 1.0) < 1e-6)
    return int(hits[0]) if hits.size else None


def load_test_split(data_dir: Path, model, limit: int | None) -> tuple[dict[str, list], dict[str, Any]]:
    """Test records of each public set (``limit``: first N per set, per subset for NCIA) and the split's description."""
    from physff_openmm.training.recipe import public_splits, read_public_sets

    fractions, seed, origin = split_settings(model)
    handler = _CountingHandler()
    lg = logging.getLogger("physff_openmm.training")
    old_level, old_prop = lg.level, lg.propagate
    lg.addHandler(handler)
    lg.setLevel(logging.WARNING)
    lg.propagate = False
    try:
        sets = read_public_sets(data_dir)
    finally:
        lg.removeHandler(handler)
        lg.setLevel(old_level)
        lg.propagate = old_prop
    splits = public_splits(sets, fractions, seed)
    test = {k: list(v) for k, v in splits.test.items()}
    full_counts = {k: len(v) for k, v in test.items()}
    test["md_pool"] = sorted(test["conformers"], key=lambda r: r.name)
    test["ncia"] = [r for r in test["ncia"] if equilibrium_index(r) is not None]
    if limit is not None:
        test["conformers"] = test["conformers"][:limit]
        test["torsions"] = test["torsions"][:limit]
        per: dict[str, int] = {}
        kept = []
        for r in test["ncia"]:
            s = ncia_subset(r)
            if per.get(s, 0) < limit:
                per[s] = per.get(s, 0) + 1
                kept.append(r)
        test["ncia"] = kept
    from physff_openmm.training.recipe import DEFAULT_FRACTIONS

    info = {
        "data_dir": str(data_dir),
        "fractions": {k: [float(x) for x in v] for k, v in {**DEFAULT_FRACTIONS, **(fractions or {})}.items()},
        "seed": seed,
        "split_from": origin,
        "reader_warnings": handler.n,
        "counts": splits.counts(),
        "test_records_full": full_counts,
        "test_records_scored": {k: len(test[k]) for k in ("conformers", "torsions", "ncia")},
        "limit": limit,
    }
    return test, info


# ============================================================================ energies
class Energies:
    """Single-point energies (kcal/mol) of the model (shipped runtime path), GFN2-xTB and MMFF94."""

    def __init__(self, model, timer: Timer, use_xtb: bool = True):
        self.model = model
        self.timer = timer
        self.use_xtb = use_xtb

    # --- the model -----------------------------------------------------------------------
    def model_totals(self, mol, positions: np.ndarray):
        """Absolute energies (OpenMM potential + E_lin) at each (n, 3) Angstrom geometry, and the ParameterSet."""
        import physff_openmm as pf
        from openmm import unit

        from physff_openmm.units import ANGSTROM_TO_NM
        from physff_openmm.workflows.simulation import make_context, potential_kcal_mol

        t0 = time.perf_counter()
        params = pf.parameterize(mol, model=self.model)
        system = pf.create_system(params, backend="native")
        ctx = make_context(system, "Reference")
        t1 = time.perf_counter()
        self.timer.add("model_parameterize_system_context", t1 - t0)
        if params.n_atoms != positions.shape[1]:
            raise RuntimeError(f"parameter set has {params.n_atoms} atoms, geometry {positions.shape[1]}")
        out = np.empty(positions.shape[0])
        for k, xyz in enumerate(positions):
            ctx.setPositions(np.asarray(xyz) * ANGSTROM_TO_NM * unit.nanometer)
            out[k] = potential_kcal_mol(ctx) + params.energy_offset
        self.timer.add("model_single_point", time.perf_counter() - t1, positions.shape[0])
        return out, params

    # --- GFN2-xTB ------------------------------------------------------------------------
    def xtb(self, numbers, positions: np.ndarray, charge: int) -> np.ndarray:
        """GFN2-xTB energies (kcal/mol) of each geometry; NaN where the SCF fails; all NaN when skipped."""
        from physff_openmm.errors import PhysFFError
        from physff_openmm.training.xtb import xtb_energy_forces
        from physff_openmm.units import HARTREE_TO_KCAL

        out = np.full(positions.shape[0], np.nan)
        if not self.use_xtb:
            return out
        t0 = time.perf_counter()
        for k, xyz in enumerate(positions):
            try:
                e, _ = xtb_energy_forces(np.asarray(numbers, dtype=int), xyz, int(charge))
                out[k] = e * HARTREE_TO_KCAL
            except PhysFFError as exc:
                progress(f"  GFN2-xTB failed ({exc}); point left out")
        self.timer.add("xtb_single_point", time.perf_counter() - t0, positions.shape[0])
        return out

    # --- MMFF94 --------------------------------------------------------------------------
    def mmff(self, mol, positions: np.ndarray) -> np.ndarray | None:
        """MMFF94 single-point energies (kcal/mol) at each geometry, or None when MMFF cannot type the molecule.

        Interactions between fragments are included (``ignoreInterfragInteractions=False``).
        """
        from rdkit import Chem, RDLogger
        from rdkit.Chem import AllChem

        t0 = time.perf_counter()
        m = Chem.Mol(mol)
        if m.GetNumConformers() == 0:
            from physff_openmm.workflows.simulation import make_conformer

            m.AddConformer(make_conformer(positions[0]), assignId=True)
        RDLogger.DisableLog("rdApp.*")
        try:
            props = AllChem.MMFFGetMoleculeProperties(m, mmffVariant="MMFF94")
            if props is None:
                return None
            ff = AllChem.MMFFGetMoleculeForceField(
                m, props, confId=m.GetConformers()[0].GetId(), ignoreInterfragInteractions=False
            )
            if ff is None:
                return None
            out = np.array([ff.CalcEnergy(np.asarray(x, dtype=np.float64).ravel().tolist()) for x in positions])
        finally:
            RDLogger.EnableLog("rdApp.*")
        self.timer.add("mmff_single_point", time.perf_counter() - t0, positions.shape[0])
        return out


# ============================================================================ 1 + 4 + 6: conformer benchmark
def _method_stats(errs: dict[str, list], rhos: dict[str, list], mols: dict[str, int]) -> dict[str, Any]:
    out = {}
    for key in errs:
        e = np.concatenate(errs[key]) if errs[key] else np.array([])
        r = np.asarray(rhos[key], dtype=np.float64)
        r = r[np.isfinite(r)]
        out[key] = {
            **error_stats(e),
            "n_molecules": mols[key],
            "spearman_median": float(np.median(r)) if r.size else math.nan,
            "spearman_mean": float(np.mean(r)) if r.size else math.nan,
            "spearman_n_molecules": int(r.size),
        }
    return out


def conformer_section(records, ev: Energies) -> tuple[dict[str, Any], dict[str, Any], list]:
    """Relative conformer energies (1), total-energy errors (4) and the parameter sets for (6)."""
    from physff_openmm.errors import PhysFFError
    from physff_openmm.units import HARTREE_TO_KCAL

    refs = {"dft": DFT_LEVEL, "dlpno": DLPNO_LEVEL}
    keys = [f"{m}_vs_{r}" for m in METHODS for r in refs] + ["b3lyp_d3bj_def2svp_vs_dlpno"]
    errs: dict[str, list] = {k: [] for k in keys}
    rhos: dict[str, list] = {k: [] for k in keys}
    nmol: dict[str, int] = {k: 0 for k in keys}
    per_mol, totals, param_sets = [], [], []
    mmff_untyped, model_failed = [], []
    for i, rec in enumerate(records, 1):
        t0 = time.perf_counter()
        e_dft = rec.energy * HARTREE_TO_KCAL
        dl = rec.extra_energies.get(DLPNO_LEVEL)
        e_dlpno = dl * HARTREE_TO_KCAL if dl is not None else np.full(rec.n_conformers, np.nan)
        mol = rec.to_rdkit()
        try:
            e_model, params = ev.model_totals(mol, rec.positions)
            param_sets.append((rec.name, params))
        except PhysFFError as exc:
            progress(f"  {rec.name}: the model failed ({exc}); left out")
            model_failed.append({"name": rec.name, "error": str(exc)})
            e_model = np.full(rec.n_conformers, np.nan)
        e_xtb = ev.xtb(rec.species, rec.positions, rec.total_charge)
        e_mmff = ev.mmff(mol, rec.positions)
        if e_mmff is None:
            mmff_untyped.append(rec.name)
            e_mmff = np.full(rec.n_conformers, np.nan)
        series = {"model": e_model, "gfn2_xtb": e_xtb, "mmff94": e_mmff}
        row: dict[str, Any] = {
            "name": rec.name, "smiles": rec.smiles, "n_atoms": rec.n_atoms, "n_conformers": rec.n_conformers,
            "total_charge": rec.total_charge, "conformer_ids": rec.conformer_ids,
        }
        # relative energies for the JSON and the parity plot: zero at the DFT minimum
        _, dft_rel, k0 = relative_to_reference_minimum(e_dft, e_dft)
        row["reference_conformer_dft"] = rec.conformer_ids[k0] if k0 >= 0 else None
        row["relative_kcal_mol"] = {"b3lyp_d3bj_def2svp": dft_rel}
        row["relative_kcal_mol"]["dlpno_ccsdt_ccpvtz"] = e_dlpno - e_dlpno[k0] if k0 >= 0 else e_dlpno * np.nan
        for m, e in series.items():
            row["relative_kcal_mol"][m] = e - e[k0] if k0 >= 0 else e * np.nan
        row["metrics"] = {}
        for m, e in series.items():
            for rname, ref in (("dft", e_dft), ("dlpno", e_dlpno)):
                key = f"{m}_vs_{rname}"
                er = relative_errors(e, ref)
                if er.size:
                    errs[key].append(er)
                    nmol[key] += 1
                ok = np.isfinite(e) & np.isfinite(ref)
                rho = spearman(e[ok], ref[ok]) if ok.sum() >= 3 else math.nan
                if er.size:
                    rhos[key].append(rho)
                row["metrics"][key] = {"rmse": rmse(er), "mae": mae(er), "n": int(er.size), "spearman": rho}
        er = relative_errors(e_dft, e_dlpno)
        ok = np.isfinite(e_dft) & np.isfinite(e_dlpno)
        rho = spearman(e_dft[ok], e_dlpno[ok]) if ok.sum() >= 3 else math.nan
        if er.size:
            errs["b3lyp_d3bj_def2svp_vs_dlpno"].append(er)
            rhos["b3lyp_d3bj_def2svp_vs_dlpno"].append(rho)
            nmol["b3lyp_d3bj_def2svp_vs_dlpno"] += 1
        row["metrics"]["b3lyp_d3bj_def2svp_vs_dlpno"] = {"rmse": rmse(er), "mae": mae(er), "n": int(er.size), "spearman": rho}
        # (4) total energies
        ok = np.isfinite(e_model) & np.isfinite(e_dft)
        if ok.any():
            d = np.abs(e_model[ok] - e_dft[ok])
            totals.append({"name": rec.name, "n_atoms": rec.n_atoms, "n_conformers": int(ok.sum()),
                           "mae_kcal_mol": float(d.mean()), "mean_signed_kcal_mol": float((e_model[ok] - e_dft[ok]).mean()),
                           "mae_per_atom_kcal_mol": float(d.mean() / rec.n_atoms)})
        per_mol.append(row)
        m = row["metrics"]
        progress(
            f"conformers {i}/{len(records)} {rec.name} ({rec.n_atoms} atoms, {rec.n_conformers} conf): "
            f"RMSE model {m['model_vs_dft']['rmse']:.2f}, xTB {m['gfn2_xtb_vs_dft']['rmse']:.2f}, "
            f"MMFF {m['mmff94_vs_dft']['rmse']:.2f} kcal/mol ({time.perf_counter() - t0:.1f} s)"
        )
    stats = _method_stats(errs, rhos, nmol)
    conf = {
        "reference_levels": {"dft": "B3LYP-D3BJ/def2-SVP (b3lyp_d3bj_def2svp)", "dlpno": "DLPNO-CCSD(T)/cc-pVTZ (dlpno_ccsdt_ccpvtz)"},
        "convention": "per molecule, energies relative to the conformer lowest at the reference level; "
        "that zero point is left out of RMSE/MAE; Spearman per molecule over conformers with both energies (>= 3)",
        "n_molecules": len(records),
        "n_conformers": int(sum(r.n_conformers for r in records)),
        "stats": stats,
        "mmff_untyped": mmff_untyped,
        "model_failed": model_failed,
        "per_molecule": per_mol,
    }
    mae_mol = [t["mae_kcal_mol"] for t in totals]
    total = {
        "definition": "per molecule, mean over its conformers of |E_model - E_B3LYP-D3BJ/def2-SVP| "
        "(absolute energies, E_lin = energy_offset included); then mean and median over molecules",
        "n_molecules": len(totals),
        "mean_kcal_mol": float(np.mean(mae_mol)) if mae_mol else math.nan,
        "median_kcal_mol": float(np.median(mae_mol)) if mae_mol else math.nan,
        "max_kcal_mol": float(np.max(mae_mol)) if mae_mol else math.nan,
        "mean_per_atom_kcal_mol": float(np.mean([t["mae_per_atom_kcal_mol"] for t in totals])) if totals else math.nan,
        "per_molecule": totals,
    }
    return conf, total, param_sets


# ============================================================================ 2: torsion drives
def _peer_values(drive: dict, angles: np.ndarray) -> dict[str, np.ndarray]:
    """Peers' relative energies at the record's angles (matched by angle; NaN where absent)."""
    file_angles = np.asarray(drive.get("angles_deg", []), dtype=np.float64)
    peers = drive.get("relative_energies_kcal_mol_peers", {}) or {}
    out = {}
    for key in PEERS:
        vals = peers.get(key)
        arr = np.full(angles.shape, np.nan)
        if vals is not None and len(vals) == len(file_angles):
            v = np.array([np.nan if x is None else float(x) for x in vals])
            for k, a in enumerate(angles):
                hit = np.flatnonzero(np.abs(((file_angles - a) + 180.0) % 360.0 - 180.0) < 1e-6)
                if hit.size:
                    arr[k] = v[hit[0]]
        out[key] = arr
    return out


def torsion_section(records, ev: Energies, data_dir: Path) -> dict[str, Any]:
    from physff_openmm.errors import PhysFFError
    from physff_openmm.units import HARTREE_TO_KCAL

    raw = json.loads((data_dir / "torsion-drives" / "torsion_drives.json").read_text())
    methods = list(METHODS) + [f"peer_{k}" for k in PEERS]
    errs: dict[str, list] = {m: [] for m in methods}
    ndr: dict[str, int] = {m: 0 for m in methods}
    per_drive, mmff_untyped = [], []
    for i, rec in enumerate(records, 1):
        t0 = time.perf_counter()
        key = rec.name.split("_", 1)[1]
        drive = raw.get(key, {})
        e_ref = rec.energy * HARTREE_TO_KCAL
        mol = rec.to_rdkit()
        try:
            e_model, _ = ev.model_totals(mol, rec.positions)
        except PhysFFError as exc:
            progress(f"  {rec.name}: the model failed ({exc}); left out")
            e_model = np.full(rec.n_conformers, np.nan)
        e_xtb = ev.xtb(rec.species, rec.positions, rec.total_charge)
        e_mmff = ev.mmff(mol, rec.positions)
        if e_mmff is None:
            mmff_untyped.append(rec.name)
            e_mmff = np.full(rec.n_conformers, np.nan)
        series = {"model": e_model, "gfn2_xtb": e_xtb, "mmff94": e_mmff}
        series.update({f"peer_{k}": v for k, v in _peer_values(drive, rec.angles_deg).items()})
        _, ref_rel, k0 = relative_to_reference_minimum(e_ref, e_ref)
        row: dict[str, Any] = {
            "name": rec.name, "smiles": rec.smiles, "n_atoms": rec.n_atoms, "dihedral": rec.dihedral,
            "angles_deg": rec.angles_deg, "n_points": rec.n_conformers,
            "n_points_in_file": len(drive.get("angles_deg", [])),
            "relative_kcal_mol": {"b3lyp_d3bj_def2svp": ref_rel},
            "rmse": {}, "mae": {},
        }
        for m, e in series.items():
            row["relative_kcal_mol"][m] = e - e[k0] if k0 >= 0 else e * np.nan
            er = relative_errors(e, e_ref)
            row["rmse"][m], row["mae"][m] = rmse(er), mae(er)
            if er.size:
                errs[m].append(er)
                ndr[m] += 1
        per_drive.append(row)
        progress(
            f"torsions {i}/{len(records)} {rec.name} ({rec.n_atoms} atoms, {rec.n_conformers} points): RMSE model "
            f"{row['rmse']['model']:.2f}, xTB {row['rmse']['gfn2_xtb']:.2f}, MMFF {row['rmse']['mmff94']:.2f} kcal/mol "
            f"({time.perf_counter() - t0:.1f} s)"
        )
    stats = {}
    for m in methods:
        e = np.concatenate(errs[m]) if errs[m] else np.array([])
        stats[m] = {**error_stats(e), "n_drives": ndr[m],
                    "mean_of_drive_rmse": float(np.nanmean([r["rmse"][m] for r in per_drive])) if ndr[m] else math.nan}
    return {
        "reference_level": "B3LYP-D3BJ/def2-SVP (b3lyp_d3bj_def2svp) at the MP2/heavy-aug-cc-pVTZ constrained geometries",
        "convention": "per drive, energies relative to the point lowest at B3LYP-D3BJ/def2-SVP; that point left out; "
        "RMSE/MAE pooled over all points of all test drives",
        "peers_note": "peer values are relative_energies_kcal_mol_peers of torsion_drives.json, matched to the "
        "record's points by angle, re-zeroed at the B3LYP-D3BJ/def2-SVP minimum of each drive and compared with "
        "B3LYP-D3BJ/def2-SVP relative energies on the same test drives and points",
        "n_drives": len(records),
        "stats": stats,
        "mmff_untyped": mmff_untyped,
        "per_drive": per_drive,
    }


# ============================================================================ 3: NCIAtlas
def ncia_section(records, ev: Energies) -> dict[str, Any]:
    from rdkit import Chem

    from physff_openmm.errors import PhysFFError
    from physff_openmm.molecule import fragment_charges
    from physff_openmm.units import HARTREE_TO_KCAL
    from physff_openmm.workflows.simulation import interaction_energy, with_positions

    rows = []
    for i, rec in enumerate(records, 1):
        t0 = time.perf_counter()
        k = equilibrium_index(rec)
        xyz = rec.positions[k]
        mol = with_positions(rec.to_rdkit(), xyz)
        ref = float(rec.interaction_energy[k] * HARTREE_TO_KCAL)
        row: dict[str, Any] = {"name": rec.name, "subset": ncia_subset(rec), "group": rec.nci_group, "smiles": rec.smiles,
                               "n_atoms": rec.n_atoms, "reference_kcal_mol": ref}
        tm = time.perf_counter()
        try:
            res = interaction_energy(mol, model=ev.model, backend="native", platform="Reference")
            row["model"] = res["interaction_energy_kcal_mol"]
            frags = [list(f) for f in res["fragments"]]
        except PhysFFError as exc:
            progress(f"  {rec.name}: the model failed ({exc}); left out")
            row["model"] = math.nan
            frags = [list(np.flatnonzero(rec.fragments == f)) for f in np.unique(rec.fragments)]
        ev.timer.add("ncia_model_dimer", time.perf_counter() - tm)
        expected = sorted(tuple(np.flatnonzero(rec.fragments == f).tolist()) for f in np.unique(rec.fragments))
        if sorted(tuple(f) for f in frags) != expected:
            progress(f"  {rec.name}: molecule fragments differ from the record's monomers; left out")
            continue
        charges = fragment_charges(mol)
        # GFN2-xTB
        if ev.use_xtb:
            e_ab = ev.xtb(rec.species, xyz[None], rec.total_charge)[0]
            e_m = [ev.xtb(rec.species[f], xyz[f][None], q)[0] for f, q in zip(frags, charges)]
            row["gfn2_xtb"] = float(e_ab - sum(e_m))
        else:
            row["gfn2_xtb"] = math.nan
        # MMFF94
        pieces = Chem.GetMolFrags(mol, asMols=True, sanitizeFrags=True)
        e_ab = ev.mmff(mol, xyz[None])
        e_m = [ev.mmff(p, xyz[list(f)][None]) for p, f in zip(pieces, frags)]
        if e_ab is None or any(e is None for e in e_m):
            row["mmff94"] = math.nan
            row["mmff_untyped"] = True
        else:
            row["mmff94"] = float(e_ab[0] - sum(e[0] for e in e_m))
        rows.append(row)
        progress(
            f"ncia {i}/{len(records)} {rec.name}: ref {ref:.2f}, model {row['model']:.2f}, xTB {row['gfn2_xtb']:.2f}, "
            f"MMFF {row['mmff94']:.2f} kcal/mol ({time.perf_counter() - t0:.2f} s)"
        )

    def stats_of(sel) -> dict[str, Any]:
        out = {"n_dimers": len(sel), "mean_reference_kcal_mol": float(np.mean([r["reference_kcal_mol"] for r in sel])) if sel else math.nan}
        for m in METHODS:
            e = np.array([r[m] - r["reference_kcal_mol"] for r in sel], dtype=np.float64)
            out[m] = error_stats(e)
        return out

    subsets = {s: stats_of([r for r in rows if r["subset"] == s]) for s in NCIA_SUBSETS}
    groups = {g: stats_of([r for r in rows if r["subset"] in members]) for g, members in NCIA_GROUPS.items()}
    groups["all"] = stats_of(rows)
    return {
        "reference_level": "CCSD(T)/CBS (NCIAtlas benchmark_Eint)",
        "scaling": 1.0,
        "definition": "E(dimer) - E(A) - E(B), each evaluated as its own system at the dimer geometry; "
        "monomer charges from the formal charges of each fragment; MMFF94 with interactions between fragments",
        "groups_definition": {k: list(v) for k, v in NCIA_GROUPS.items()},
        "subsets": subsets,
        "groups": groups,
        "mmff_untyped": [r["name"] for r in rows if r.get("mmff_untyped")],
        "per_dimer": rows,
    }


# ============================================================================ 5: MD stability (two settings)
def _nonbonded_pairs(n: int, bonds: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Index arrays (i, j), i < j, of every pair of atoms that is not a covalent bond."""
    bonded = np.zeros((n, n), dtype=bool)
    if len(bonds):
        bonded[bonds[:, 0], bonds[:, 1]] = bonded[bonds[:, 1], bonds[:, 0]] = True
    return np.nonzero(np.triu(~bonded, 1))


def frame_status(pos: np.ndarray | None, bonds: np.ndarray, d0: np.ndarray, nb_i: np.ndarray, nb_j: np.ndarray,
                 ) -> tuple[str, np.ndarray, float]:
    """One MD frame against the acceptance criteria of issue 13.

    Parameters
    ----------
    pos : (n, 3) Angstrom, or None when OpenMM could not return a state.
    bonds : (m, 2) covalent bonds; d0 : (m,) their starting lengths, Angstrom.
    nb_i, nb_j : the non-bonded pairs (:func:`_nonbonded_pairs`).

    Returns
    -------
    (status, relative change of each bond (signed, > 0 stretched), closest non-bonded distance in Angstrom).
    The status is the first of: ``"NaN"`` (a coordinate is not finite), ``"bond stretched"`` /
    ``"bond compressed"`` (the bond that moved most moved more than :data:`MD_BROKEN_RELATIVE`),
    ``"atoms collapsed"`` (two atoms that are not bonded closer than :data:`MD_COLLAPSE_ANGSTROM`),
    ``"stable"``.
    """
    if pos is None or not np.all(np.isfinite(pos)):
        return "NaN", np.full(len(bonds), np.nan), math.nan
    rel = np.zeros(0)
    if len(bonds):
        rel = np.linalg.norm(pos[bonds[:, 0]] - pos[bonds[:, 1]], axis=1) / d0 - 1.0
    min_nb = float(np.min(np.linalg.norm(pos[nb_i] - pos[nb_j], axis=1))) if nb_i.size else math.inf
    if rel.size:
        k = int(np.argmax(np.abs(rel)))
        if abs(rel[k]) > MD_BROKEN_RELATIVE:
            return ("bond stretched" if rel[k] > 0 else "bond compressed"), rel, min_nb
    if min_nb < MD_COLLAPSE_ANGSTROM:
        return "atoms collapsed", rel, min_nb
    return "stable", rel, min_nb


def _platform(name: str, threads: int):
    import openmm

    platform = openmm.Platform.getPlatformByName(name)
    if name == "CPU":
        platform.setPropertyDefaultValue("Threads", str(threads))
    return platform


def md_run(rec, model, md_ps: float, threads: int, seed: int, timer: Timer, *,
           timestep_fs: float = MD_TIMESTEP_FS, constraints: str | None = None, platform: str = "CPU") -> dict[str, Any]:
    """Langevin MD of one record from its first conformer; checks every 0.1 ps (:func:`frame_status`).

    The Simulation is the package's (``physff_openmm.workflows.build_simulation``), with
    ``constraints`` as there: None, or ``"hbonds"`` (bonds to hydrogen held at their starting
    length).
    """
    import openmm
    from openmm import unit

    from physff_openmm.units import NM_TO_ANGSTROM
    from physff_openmm.workflows.simulation import build_simulation, with_positions

    x0 = np.asarray(rec.positions[0], dtype=np.float64)
    bonds = np.asarray(rec.bonds, dtype=np.int64).reshape(-1, 2)
    d0 = np.linalg.norm(x0[bonds[:, 0]] - x0[bonds[:, 1]], axis=1)
    nb_i, nb_j = _nonbonded_pairs(rec.n_atoms, bonds)
    symbols = [a.GetSymbol() for a in rec.to_rdkit().GetAtoms()]
    t0 = time.perf_counter()
    sim = build_simulation(
        with_positions(rec.to_rdkit(), x0), model=model, backend="native", platform=_platform(platform, threads),
        temperature_k=MD_TEMPERATURE_K, timestep_fs=timestep_fs, friction_per_ps=MD_FRICTION_PER_PS, seed=seed,
        constraints=constraints,
    )
    sim.context.setVelocitiesToTemperature(MD_TEMPERATURE_K * unit.kelvin, seed)
    n_steps = max(1, int(round(md_ps * 1000.0 / timestep_fs)))
    every = max(1, int(round(MD_REPORT_PS * 1000.0 / timestep_fs)))
    status, t_fail, done = "stable", None, 0
    max_rel, max_abs, worst, worst_sign, min_nb = 0.0, 0.0, None, None, math.inf
    t_md = time.perf_counter()
    while done < n_steps:
        chunk = min(every, n_steps - done)
        try:
            sim.step(chunk)
            state = sim.context.getState(getPositions=True, getEnergy=True)
            pos = np.asarray(state.getPositions(asNumpy=True).value_in_unit(unit.nanometer)) * NM_TO_ANGSTROM
            if not math.isfinite(state.getPotentialEnergy().value_in_unit(unit.kilojoule_per_mole)):
                pos = None
        except (openmm.OpenMMException, ValueError):
            pos = None
        done += chunk
        t_ps = done * timestep_fs / 1000.0
        frame, rel, nb = frame_status(pos, bonds, d0, nb_i, nb_j)
        if frame == "NaN":
            status, t_fail = frame, t_ps
            break
        if rel.size:
            b = int(np.argmax(np.abs(rel)))
            if abs(rel[b]) > max_rel:
                max_rel = float(abs(rel[b]))
                worst = f"{symbols[bonds[b, 0]]}{bonds[b, 0]}-{symbols[bonds[b, 1]]}{bonds[b, 1]}"
                worst_sign = "stretched" if rel[b] > 0 else "compressed"
            max_abs = max(max_abs, float(np.max(np.abs(rel * d0))))
        min_nb = min(min_nb, nb)
        if frame != "stable":
            status, t_fail = frame, t_ps
            break
    wall = time.perf_counter() - t_md
    timer.add("md_step", wall, done)
    return {
        "name": rec.name, "smiles": rec.smiles, "n_atoms": rec.n_atoms, "n_bonds": int(len(bonds)),
        "timestep_fs": timestep_fs, "constraints": constraints, "n_constraints": int(sim.system.getNumConstraints()),
        "simulated_ps": done * timestep_fs / 1000.0, "requested_ps": md_ps, "status": status, "failure_time_ps": t_fail,
        "max_relative_bond_deviation": max_rel, "max_absolute_bond_deviation_angstrom": max_abs, "worst_bond": worst,
        "worst_bond_direction": worst_sign,
        "min_nonbonded_distance_angstrom": min_nb if math.isfinite(min_nb) else math.nan,
        "wall_seconds": time.perf_counter() - t0, "ms_per_step": 1e3 * wall / max(1, done),
    }


def status_counts(rows: list[dict]) -> dict[str, int]:
    """Runs per status: every status of :data:`MD_STATUSES` (zeros included), then any other (set-up errors)."""
    counts = {s: 0 for s in MD_STATUSES}
    for r in rows:
        key = r["status"] if r["status"] in counts else "error"
        counts[key] = counts.get(key, 0) + 1
    return counts


def md_section(pool, model, n_molecules: int, md_ps: float, threads: int, timer: Timer, *,
               timestep_fs: float = MD_TIMESTEP_FS, constraints: str | None = None, platform: str = "CPU") -> dict[str, Any]:
    """MD of the first ``n_molecules`` of ``pool`` at one setting (time step, constraints): a row per molecule, counts."""
    rows = []
    chosen = pool[:n_molecules]
    label = f"{timestep_fs:g} fs, " + ("bonds to H constrained" if constraints else "no constraints")
    for i, rec in enumerate(chosen, 1):
        try:
            row = md_run(rec, model, md_ps, threads, C.SEED + i, timer, timestep_fs=timestep_fs,
                         constraints=constraints, platform=platform)
        except Exception as exc:  # noqa: BLE001 - a failure to set up is a result, not a crash of the report
            row = {"name": rec.name, "smiles": rec.smiles, "n_atoms": rec.n_atoms, "status": f"error: {exc}",
                   "simulated_ps": 0.0, "max_relative_bond_deviation": math.nan}
        rows.append(row)
        progress(
            f"md ({label}) {i}/{len(chosen)} {rec.name} ({rec.n_atoms} atoms): {row['status']} after "
            f"{row['simulated_ps']:.1f} ps, max bond deviation {100 * row['max_relative_bond_deviation']:.1f} % "
            f"({row.get('wall_seconds', 0):.1f} s)"
        )
    rel = [r["max_relative_bond_deviation"] for r in rows if np.isfinite(r.get("max_relative_bond_deviation", np.nan))]
    absd = [r.get("max_absolute_bond_deviation_angstrom", np.nan) for r in rows]
    absd = [x for x in absd if x is not None and np.isfinite(x)]
    n_stable = sum(r["status"] == "stable" for r in rows)
    return {
        "settings": {
            "label": label,
            "molecules": f"first {n_molecules} test molecules of the conformer benchmark sorted by name",
            "start": "first conformer's B3LYP-D3BJ/def2-SVP geometry; velocities drawn at the temperature (seeded)",
            "integrator": "LangevinMiddleIntegrator (physff_openmm.workflows.build_simulation)",
            "temperature_k": MD_TEMPERATURE_K, "timestep_fs": timestep_fs,
            "constraints": constraints or "none",
            "constraints_note": "every covalent bond with a hydrogen atom held at its starting length (openmm.app.HBonds)"
            if constraints else "none",
            "friction_per_ps": MD_FRICTION_PER_PS, "simulated_ps": md_ps, "check_every_ps": MD_REPORT_PS,
            "backend": "native", "platform": platform, "threads": threads,
            "bond_broken": f"a covalent bond (record.bonds) deviates by more than {100 * MD_BROKEN_RELATIVE:.0f} % "
            "from its length in the starting geometry (bond stretched / bond compressed)",
            "collapse": f"two atoms that are not covalently bonded come closer than {MD_COLLAPSE_ANGSTROM} Angstrom "
            "(atoms collapsed)",
            "stop": "a run stops at its first failure (NaN, bond stretched or compressed, atoms collapsed)",
        },
        "n_molecules": len(rows),
        "n_stable": n_stable,
        "counts": status_counts(rows),
        "passed": bool(rows) and n_stable == len(rows),
        "max_relative_bond_deviation": max(rel) if rel else math.nan,
        "max_absolute_bond_deviation_angstrom": max(absd) if absd else math.nan,
        "per_molecule": rows,
    }


def md_acceptance_section(pool, model, n_molecules: int, md_ps: float, threads: int, timer: Timer,
                          settings: Sequence[str] = tuple(MD_SETTINGS), platform: str = "CPU") -> dict[str, Any]:
    """MD at each setting of :data:`MD_SETTINGS` (issue 13: 1 fs free, 2 fs with bonds to H constrained)."""
    runs = {}
    for key in settings:
        s = MD_SETTINGS[key]
        runs[key] = md_section(pool, model, n_molecules, md_ps, threads, timer, timestep_fs=s["timestep_fs"],
                               constraints=s["constraints"], platform=platform)
    return {"settings": list(settings), "runs": runs, "passed": all(r["passed"] for r in runs.values())}


# ============================================================================ 7: minimization
def minimization_molecules(pool, n_test: int) -> list[tuple[str, str, Any, np.ndarray]]:
    """(name, SMILES, RDKit Mol, starting positions in Angstrom) of the minimization test.

    The small molecules of :data:`MIN_SMALL_MOLECULES` from an RDKit embedding (ETKDG then
    MMFF94, fixed seed; :func:`physff_openmm.molecule.ensure_conformer`), the water dimer at
    :data:`WATER_DIMER_XYZ`, then the first ``n_test`` molecules of ``pool`` at their first
    conformer's DFT geometry.
    """
    from physff_openmm.molecule import ensure_conformer, load_molecule, positions_angstrom

    out = []
    for name, smiles in MIN_SMALL_MOLECULES.items():
        mol = load_molecule(smiles)
        if name == "water dimer":
            out.append((name, smiles, mol, WATER_DIMER_XYZ.copy()))
        else:
            mol = ensure_conformer(mol)
            out.append((name, smiles, mol, positions_angstrom(mol)))
    for rec in pool[:n_test]:
        out.append((rec.name, rec.smiles, rec.to_rdkit(), np.asarray(rec.positions[0], dtype=np.float64)))
    return out


def minimize_run(name: str, smiles: str, mol, x0: np.ndarray, model, threads: int, timer: Timer,
                 platform: str = "CPU") -> dict[str, Any]:
    """Minimize one molecule from ``x0`` with ``physff_openmm.workflows.minimize``; the largest bond change."""
    from physff_openmm.errors import ModelFailureError
    from physff_openmm.molecule import positions_angstrom
    from physff_openmm.workflows import minimize
    from physff_openmm.workflows.simulation import bond_changes, with_positions

    bonds = np.array([(b.GetBeginAtomIdx(), b.GetEndAtomIdx()) for b in mol.GetBonds()], dtype=np.int64).reshape(-1, 2)
    symbols = [a.GetSymbol() for a in mol.GetAtoms()]
    row: dict[str, Any] = {
        "name": name, "smiles": smiles, "n_atoms": int(mol.GetNumAtoms()), "n_bonds": int(len(bonds)),
        "worst_bond_start_angstrom": None, "worst_bond_end_angstrom": None,
        "energy_change_kcal_mol": None, "rmsd_angstrom": None,
    }
    t0 = time.perf_counter()
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always", RuntimeWarning)
        try:
            out, res = minimize(with_positions(mol, x0), model=model, backend="native",
                                platform=_platform(platform, threads))
        except ModelFailureError as exc:  # a bond moved past 30 %: minimize refuses the result, the line fails
            out, res = None, None
            row.update({"max_relative_bond_change": exc.change, "worst_bond": exc.bond, "passed": False,
                        "failure": str(exc)})
    timer.add("minimize", time.perf_counter() - t0)
    if out is not None:
        x1 = positions_angstrom(out)
        rel = bond_changes(bonds, x0, x1)
        k = int(np.argmax(np.abs(rel))) if rel.size else -1
        worst = math.nan if k < 0 else float(rel[k])
        i, j = bonds[k] if k >= 0 else (0, 0)
        row.update({
            "max_relative_bond_change": worst,  # signed: > 0 stretched
            "worst_bond": None if k < 0 else f"{symbols[i]}{i}-{symbols[j]}{j}",
            "worst_bond_start_angstrom": None if k < 0 else float(np.linalg.norm(x0[i] - x0[j])),
            "worst_bond_end_angstrom": None if k < 0 else float(np.linalg.norm(x1[i] - x1[j])),
            "passed": bool(np.isfinite(worst) and abs(worst) <= MIN_BOND_RELATIVE) if k >= 0 else True,
            "energy_change_kcal_mol": res["energy_change_kcal_mol"], "rmsd_angstrom": res["rmsd_angstrom"],
        })
    row["minimizer_warnings"] = [str(w.message) for w in caught if issubclass(w.category, RuntimeWarning)]
    row["wall_seconds"] = time.perf_counter() - t0
    return row


def minimize_section(pool, model, n_test: int, threads: int, timer: Timer, platform: str = "CPU") -> dict[str, Any]:
    """Issue 13: minimization from the input geometry moves no covalent bond more than 20 %."""
    rows = []
    molecules = minimization_molecules(pool, n_test)
    for i, (name, smiles, mol, x0) in enumerate(molecules, 1):
        try:
            row = minimize_run(name, smiles, mol, x0, model, threads, timer, platform)
        except Exception as exc:  # noqa: BLE001 - a failure is a result, not a crash of the report
            row = {"name": name, "smiles": smiles, "n_atoms": int(mol.GetNumAtoms()), "passed": False,
                   "error": f"{type(exc).__name__}: {exc}", "max_relative_bond_change": math.nan}
        rows.append(row)
        progress(f"minimize {i}/{len(molecules)} {name}: largest bond change "
                 f"{100 * row['max_relative_bond_change']:+.1f} % ({'pass' if row['passed'] else 'FAIL'})")
    changes = [abs(r["max_relative_bond_change"]) for r in rows if np.isfinite(r.get("max_relative_bond_change", np.nan))]
    n_pass = sum(r["passed"] for r in rows)
    return {
        "settings": {
            "molecules": f"{', '.join(MIN_SMALL_MOLECULES)} (RDKit ETKDG + MMFF94 geometry, the dimer hand-placed "
                         f"H-bonded, O...O 2.91 Angstrom), then the first {n_test} test molecules of the conformer benchmark "
                         "by name at their first conformer's B3LYP-D3BJ/def2-SVP geometry",
            "minimizer": "physff_openmm.workflows.minimize (OpenMM L-BFGS, RMS force tolerance 0.1 kcal/mol/Angstrom, "
                         "until converged)",
            "pass": f"no covalent bond changes its length by more than {100 * MIN_BOND_RELATIVE:.0f} %",
            "backend": "native", "platform": platform, "threads": threads,
        },
        "n_molecules": len(rows), "n_passed": n_pass, "passed": bool(rows) and n_pass == len(rows),
        "max_relative_bond_change": max(changes) if changes else math.nan,
        "per_molecule": rows,
    }


# ============================================================================ 8: NVE energy conservation
def nve_run(rec, model, nve_ps: float, threads: int, seed: int, timer: Timer, platform: str = "CPU") -> dict[str, Any]:
    """Verlet NVE of one record from its first conformer with velocities at 300 K; E(t) - E(0) every 10 fs."""
    import openmm
    from openmm import unit

    from physff_openmm.units import KJ_TO_KCAL, NM_TO_ANGSTROM
    from physff_openmm.workflows.simulation import build_simulation, degrees_of_freedom, with_positions

    x0 = np.asarray(rec.positions[0], dtype=np.float64)
    bonds = np.asarray(rec.bonds, dtype=np.int64).reshape(-1, 2)
    d0 = np.linalg.norm(x0[bonds[:, 0]] - x0[bonds[:, 1]], axis=1)
    nb_i, nb_j = _nonbonded_pairs(rec.n_atoms, bonds)
    t0 = time.perf_counter()
    sim = build_simulation(
        with_positions(rec.to_rdkit(), x0), model=model, backend="native", platform=_platform(platform, threads),
        temperature_k=NVE_TEMPERATURE_K, timestep_fs=NVE_TIMESTEP_FS, ensemble="nve", constraints=None,
    )
    sim.context.setVelocitiesToTemperature(NVE_TEMPERATURE_K * unit.kelvin, seed)
    n_steps = max(1, int(round(nve_ps * 1000.0 / NVE_TIMESTEP_FS)))
    every = max(1, int(round(NVE_SAMPLE_FS / NVE_TIMESTEP_FS)))
    dof = degrees_of_freedom(sim.system)
    gas_constant = unit.MOLAR_GAS_CONSTANT_R.value_in_unit(unit.kilocalorie_per_mole / unit.kelvin)

    def energies():
        state = sim.context.getState(getEnergy=True, getPositions=True)
        e_pot = state.getPotentialEnergy().value_in_unit(unit.kilojoule_per_mole) * KJ_TO_KCAL
        e_kin = state.getKineticEnergy().value_in_unit(unit.kilojoule_per_mole) * KJ_TO_KCAL
        pos = np.asarray(state.getPositions(asNumpy=True).value_in_unit(unit.nanometer)) * NM_TO_ANGSTROM
        return e_pot, e_kin, pos

    e_pot0, e_kin0, _ = energies()
    e0 = e_pot0 + e_kin0
    times, drift, temps = [0.0], [0.0], [2.0 * e_kin0 / (dof * gas_constant)]
    status, done, max_rel = "stable", 0, 0.0
    t_md = time.perf_counter()
    while done < n_steps:
        chunk = min(every, n_steps - done)
        try:
            sim.step(chunk)
            e_pot, e_kin, pos = energies()
        except (openmm.OpenMMException, ValueError):
            e_pot, e_kin, pos = math.nan, math.nan, None
        done += chunk
        frame, rel, _ = frame_status(pos, bonds, d0, nb_i, nb_j)
        if rel.size and np.all(np.isfinite(rel)):
            max_rel = max(max_rel, float(np.max(np.abs(rel))))
        if not (math.isfinite(e_pot) and math.isfinite(e_kin)):
            frame = "NaN"
        if frame == "NaN":
            status = frame
            break
        times.append(done * NVE_TIMESTEP_FS / 1000.0)
        drift.append(e_pot + e_kin - e0)
        temps.append(2.0 * e_kin / (dof * gas_constant))
        if status == "stable" and frame != "stable":
            status = frame  # noted; the energy is still followed
    wall = time.perf_counter() - t_md
    timer.add("nve_step", wall, done)
    d = np.abs(np.asarray(drift))
    max_drift = float(d.max()) if status != "NaN" else math.nan
    return {
        "name": rec.name, "smiles": rec.smiles, "n_atoms": rec.n_atoms,
        "simulated_ps": done * NVE_TIMESTEP_FS / 1000.0, "requested_ps": nve_ps, "status": status,
        "initial_total_energy_kcal_mol": e0, "max_abs_drift_kcal_mol": max_drift,
        "final_drift_kcal_mol": float(drift[-1]) if status != "NaN" else math.nan,
        "mean_temperature_k": float(np.mean(temps)), "max_relative_bond_deviation": max_rel,
        "passed": bool(status != "NaN" and max_drift < NVE_MAX_DRIFT_KCAL_MOL),
        "time_ps": times, "drift_kcal_mol": drift,
        "wall_seconds": time.perf_counter() - t0, "ms_per_step": 1e3 * wall / max(1, done),
    }


def nve_section(pool, model, n_molecules: int, nve_ps: float, threads: int, timer: Timer,
                platform: str = "CPU") -> dict[str, Any]:
    """Issue 13: NVE at 1 fs without constraints keeps |E(t) - E(0)| below 1 kcal/mol."""
    rows = []
    chosen = pool[:n_molecules]
    for i, rec in enumerate(chosen, 1):
        try:
            row = nve_run(rec, model, nve_ps, threads, C.SEED + i, timer, platform)
        except Exception as exc:  # noqa: BLE001 - a failure to set up is a result, not a crash of the report
            row = {"name": rec.name, "smiles": rec.smiles, "n_atoms": rec.n_atoms, "status": f"error: {exc}",
                   "simulated_ps": 0.0, "max_abs_drift_kcal_mol": math.nan, "passed": False}
        rows.append(row)
        progress(f"nve {i}/{len(chosen)} {rec.name}: max |E(t) - E(0)| {row['max_abs_drift_kcal_mol']:.3f} kcal/mol "
                 f"over {row['simulated_ps']:.2f} ps ({row['status']})")
    drifts = [r["max_abs_drift_kcal_mol"] for r in rows if np.isfinite(r.get("max_abs_drift_kcal_mol", np.nan))]
    n_pass = sum(r["passed"] for r in rows)
    return {
        "settings": {
            "molecules": f"first {n_molecules} test molecules of the conformer benchmark sorted by name",
            "start": f"first conformer's B3LYP-D3BJ/def2-SVP geometry, velocities drawn at {NVE_TEMPERATURE_K:g} K (seeded)",
            "integrator": "VerletIntegrator (physff_openmm.workflows.build_simulation, ensemble nve)",
            "timestep_fs": NVE_TIMESTEP_FS, "constraints": "none", "simulated_ps": nve_ps,
            "sample_every_fs": NVE_SAMPLE_FS, "backend": "native", "platform": platform, "threads": threads,
            "pass": f"max |E(t) - E(0)| below {NVE_MAX_DRIFT_KCAL_MOL:g} kcal/mol",
            "status": "stable, or the first failure of the MD criteria (bond stretched / compressed, atoms collapsed), "
                      "noted while the energy is still followed; NaN ends a run",
        },
        "n_molecules": len(rows), "n_passed": n_pass, "passed": bool(rows) and n_pass == len(rows),
        "max_abs_drift_kcal_mol": max(drifts) if drifts else math.nan,
        "per_molecule": rows,
    }


def acceptance(rep: dict) -> list[dict[str, Any]]:
    """The MD-type acceptance lines of issue 13 with their counts; ``protocol`` says whether the run had the full protocol."""
    s = rep.get("settings", {})
    full_md = s.get("md_ps", 0) >= 100 and s.get("md_molecules", 0) >= 20
    rows = []
    md = rep.get("md")
    for key, d in ((md or {}).get("runs") or {}).items():
        rows.append({
            "key": f"md_{key}", "line": f"MD, {MD_SETTINGS[key]['label']}: {d['settings']['simulated_ps']:g} ps Langevin "
            f"at {MD_TEMPERATURE_K:g} K, no bond beyond {100 * MD_BROKEN_RELATIVE:.0f} %, no collapse, no NaN",
            "n": d["n_molecules"], "n_passed": d["n_stable"], "met": d["passed"], "full_protocol": full_md,
        })
    mn = rep.get("minimize")
    if mn:
        rows.append({
            "key": "minimize", "line": f"Minimization moves no bond more than {100 * MIN_BOND_RELATIVE:.0f} %",
            "n": mn["n_molecules"], "n_passed": mn["n_passed"], "met": mn["passed"],
            "full_protocol": s.get("minimize_molecules", 0) >= 20,
        })
    nv = rep.get("nve")
    if nv:
        nve_ps = nv["settings"]["simulated_ps"]
        rows.append({
            "key": "nve", "line": f"NVE, {nve_ps:g} ps at {NVE_TIMESTEP_FS:g} fs without constraints: max abs(E(t) - E(0)) "
            f"< {NVE_MAX_DRIFT_KCAL_MOL:g} kcal/mol", "n": nv["n_molecules"], "n_passed": nv["n_passed"],
            "met": nv["passed"], "full_protocol": s.get("nve_ps", 0) >= 10 and s.get("nve_molecules", 0) >= 10,
        })
    return rows


# ============================================================================ 6: physical sanity
def _pair_label(a: str, b: str) -> str:
    return "-".join(sorted((a, b), key=lambda s: ("HCNOFPSClBr".find(s) if s in "HCNOFPSClBr" else 99, s)))


def sanity_section(param_sets) -> dict[str, Any]:
    """LJ sigma/epsilon of non-covalent class pairs and charges by element, over the test molecules."""
    sig_all, eps_all, labels = [], [], []
    charges: dict[str, list[float]] = {}
    for _, p in param_sets:
        cls = np.asarray(p.atom_classes)
        n = len(cls)
        cov = p.covalent_matrix()
        iu, ju = np.triu_indices(n, 1)
        nc = ~cov[iu, ju]
        seen = set()
        for a, b in zip(iu[nc], ju[nc]):
            ca, cb = int(cls[a]), int(cls[b])
            key = (min(ca, cb), max(ca, cb))
            if key in seen:
                continue
            seen.add(key)
            c = p.class_parameters[key[0], key[1]]
            s, e = lj_from_c0_c1(c[0], c[1])
            sig_all.append(float(s))
            eps_all.append(float(e))
            labels.append(_pair_label(p.symbols[a], p.symbols[b]))
        for sym, q in zip(p.symbols, p.charges):
            charges.setdefault(sym, []).append(float(q))
    sig_all, eps_all, labels = np.array(sig_all), np.array(eps_all), np.array(labels, dtype=object)
    like = {}
    for el in ("H", "C", "N", "O", "F", "P", "S", "Cl", "Br"):
        sel = labels == f"{el}-{el}"
        if sel.any():
            like[f"{el}-{el}"] = {"sigma_angstrom": summary(sig_all[sel]), "epsilon_kcal_mol": summary(eps_all[sel])}
    order = sorted(charges, key=lambda s: "H C N O F P S Cl Br".split().index(s) if s in "H C N O F P S Cl Br".split() else 99)
    return {
        "definition": "non-covalent pair parameters (class table of ParameterSet; each class pair that occurs as a "
        "non-bonded pair in a molecule counted once per molecule): sigma = (|C1|/|C0|)^(1/6), epsilon = C0^2/(4|C1|); "
        "charges: every atom of every test molecule",
        "n_molecules": len(param_sets),
        "lj": {
            "all_pairs": {"n_class_pairs": int(sig_all.size), "sigma_angstrom": summary(sig_all), "epsilon_kcal_mol": summary(eps_all)},
            "like_element": like,
        },
        "charges_e": {el: summary(charges[el]) for el in order},
        "context_note": "approximate values of classical force fields (GAFF / OPLS-AA), for orientation only",
        "context_lj": CONTEXT_LJ,
        "context_charges_e": CONTEXT_CHARGES,
        "_values": {"sigma": sig_all, "epsilon": eps_all, "labels": labels, "charges": charges},
    }


# ============================================================================ figures
def _figure(nrows: int, ncols: int, w: float = 4.0, h: float = 3.4):
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    fig = Figure(figsize=(w * ncols, h * nrows), layout="constrained")
    FigureCanvasAgg(fig)
    axes = fig.subplots(nrows, ncols, squeeze=False)
    return fig, axes


def _save(fig, path: Path) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.stem + ".partial" + path.suffix)
    fig.savefig(tmp, dpi=110)
    tmp.replace(path)
    return path


COLORS = {"model": "tab:blue", "gfn2_xtb": "tab:orange", "mmff94": "tab:green", "reference": "black"}


def fig_parity(conf: dict, path: Path) -> Path:
    methods = [m for m in METHODS if conf["stats"][f"{m}_vs_dft"]["n"]]
    fig, axes = _figure(1, max(1, len(methods)), 4.2, 4.0)
    for ax, m in zip(axes[0], methods):
        x, y = [], []
        for row in conf["per_molecule"]:
            rel = row["relative_kcal_mol"]
            xr, yr = np.asarray(rel["b3lyp_d3bj_def2svp"], float), np.asarray(rel[m], float)
            ok = np.isfinite(xr) & np.isfinite(yr)
            x.append(xr[ok])
            y.append(yr[ok])
        x, y = np.concatenate(x), np.concatenate(y)
        ax.scatter(x, y, s=8, alpha=0.6, color=COLORS[m])
        lo = min(0.0, np.nanmin(x) if x.size else 0, np.nanmin(y) if y.size else 0)
        hi = max(1.0, np.nanmax(x) if x.size else 1, np.nanmax(y) if y.size else 1)
        ax.plot([lo, hi], [lo, hi], color="grey", lw=0.8)
        st = conf["stats"][f"{m}_vs_dft"]
        ax.set_title(f"{METHODS[m]}: RMSE {st['rmse']:.2f}, MAE {st['mae']:.2f}", fontsize=9)
        ax.set_xlabel("B3LYP-D3BJ/def2-SVP relative energy (kcal/mol)")
        ax.set_ylabel(f"{METHODS[m]} relative energy (kcal/mol)")
    fig.suptitle("Relative conformer energies, test molecules (zero: DFT minimum)", fontsize=10)
    return _save(fig, path)


def fig_torsions(tors: dict, path: Path) -> Path:
    drives = tors["per_drive"]
    n = max(1, len(drives))
    ncols = min(3, n)
    nrows = int(math.ceil(n / ncols))
    fig, axes = _figure(nrows, ncols, 3.6, 2.8)
    for k, ax in enumerate(axes.ravel()):
        if k >= len(drives):
            ax.set_visible(False)
            continue
        d = drives[k]
        ang = np.asarray(d["angles_deg"], float)
        order = np.argsort(ang)
        rel = d["relative_kcal_mol"]
        ax.plot(ang[order], np.asarray(rel["b3lyp_d3bj_def2svp"], float)[order], "k-o", ms=3, label="B3LYP-D3BJ/def2-SVP")
        for m in METHODS:
            v = np.asarray(rel[m], float)
            if np.isfinite(v).any():
                ax.plot(ang[order], v[order], "-", color=COLORS[m], lw=1.2, label=METHODS[m])
        ax.set_title(f"{d['name']} ({d['n_atoms']} atoms)", fontsize=8)
        ax.set_xlabel("dihedral (deg)", fontsize=8)
        ax.set_ylabel("kcal/mol", fontsize=8)
        ax.tick_params(labelsize=7)
        if k == 0:
            ax.legend(fontsize=6)
    fig.suptitle("Torsion drives (test); zero: DFT minimum", fontsize=9)
    return _save(fig, path)


def fig_ncia(ncia: dict, path: Path) -> Path:
    names = list(NCIA_SUBSETS) + ["hydrogen_bonded", "dispersion"]
    data = {**ncia["subsets"], **ncia["groups"]}
    fig, axes = _figure(1, 1, 9.0, 3.8)
    ax = axes[0, 0]
    x = np.arange(len(names))
    w = 0.27
    for j, m in enumerate(METHODS):
        vals = [data[s][m]["rmse"] for s in names]
        vals = [v if v is not None and math.isfinite(v) else 0.0 for v in vals]
        ax.bar(x + (j - 1) * w, vals, w, color=COLORS[m], label=METHODS[m])
    ax.axhline(TARGET_RMSE["hydrogen_bonded"], color="grey", ls="--", lw=0.8,
               label=f"target {TARGET_RMSE['hydrogen_bonded']:g} (HB, dispersion)")
    ax.set_xticks(x, [f"{s}\n(n={data[s]['n_dimers']})" for s in names], fontsize=7)
    ax.set_ylabel("RMSE vs CCSD(T)/CBS (kcal/mol)")
    ax.set_yscale("symlog", linthresh=1.0)
    ax.set_title("NCIAtlas interaction energies at scaling 1.00, test dimers", fontsize=10)
    ax.legend(fontsize=8, loc="upper left", bbox_to_anchor=(1.0, 1.0))
    return _save(fig, path)


def fig_md(md: dict, path: Path) -> Path:
    runs = md["runs"]
    n = max(len(d["per_molecule"]) for d in runs.values())
    fig, axes = _figure(1, 1, max(6.0, 0.55 * n + 2), 3.8)
    ax = axes[0, 0]
    width = 0.8 / len(runs)
    edges = {"1fs": "tab:blue", "2fs_hbonds": "tab:green"}
    for k, (key, d) in enumerate(runs.items()):
        rows = d["per_molecule"]
        vals = [100 * r["max_relative_bond_deviation"] if np.isfinite(r.get("max_relative_bond_deviation", np.nan)) else 0
                for r in rows]
        cols = [edges.get(key, "tab:grey") if r["status"] == "stable" else "tab:red" for r in rows]
        ax.bar(np.arange(len(rows)) + (k - (len(runs) - 1) / 2) * width, vals, width, color=cols,
               edgecolor=edges.get(key, "tab:grey"), label=MD_SETTINGS[key]["label"])
    ax.axhline(100 * MD_BROKEN_RELATIVE, color="grey", ls="--", lw=0.8, label=f"bond broken ({100 * MD_BROKEN_RELATIVE:.0f} %)")
    names = next(iter(runs.values()))["per_molecule"]
    ax.set_xticks(np.arange(len(names)), [r["name"] for r in names], rotation=60, ha="right", fontsize=7)
    ax.set_ylabel("largest bond-length deviation (%)")
    ps = next(iter(runs.values()))["settings"]["simulated_ps"]
    ax.set_title(f"MD stability: {ps:g} ps, {MD_TEMPERATURE_K:g} K (red: not stable)", fontsize=10)
    ax.legend(fontsize=8)
    return _save(fig, path)


def fig_nve(nve: dict, path: Path) -> Path:
    fig, axes = _figure(1, 1, 6.0, 3.8)
    ax = axes[0, 0]
    for r in nve["per_molecule"]:
        if r.get("time_ps"):
            ax.plot(r["time_ps"], r["drift_kcal_mol"], lw=0.8, label=r["name"])
    for y in (-NVE_MAX_DRIFT_KCAL_MOL, NVE_MAX_DRIFT_KCAL_MOL):
        ax.axhline(y, color="grey", ls="--", lw=0.8)
    ax.set_xlabel("time (ps)")
    ax.set_ylabel("E(t) - E(0) (kcal/mol)")
    ax.set_title(f"NVE, {NVE_TIMESTEP_FS:g} fs, no constraints (dashed: +-{NVE_MAX_DRIFT_KCAL_MOL:g} kcal/mol)", fontsize=10)
    ax.legend(fontsize=6, loc="upper left", bbox_to_anchor=(1.0, 1.0))
    return _save(fig, path)


def fig_lj(sanity: dict, path: Path) -> Path:
    v = sanity["_values"]
    sig, eps, labels = v["sigma"], v["epsilon"], v["labels"]
    fig, axes = _figure(1, 2, 4.8, 3.6)
    groups = [("all pairs", np.ones(len(labels), bool), "lightgrey")] + [
        (lab, labels == lab, c) for lab, c in (("H-H", "tab:blue"), ("C-C", "tab:grey"), ("N-N", "tab:purple"), ("O-O", "tab:red"))
        if np.any(labels == lab)
    ]
    ax = axes[0, 0]
    bins = np.linspace(0.0, 8.0, 65)
    over = int(np.sum(np.isfinite(sig) & (sig > 8.0)))
    for lab, sel, c in groups:
        s = sig[sel]
        s = s[np.isfinite(s)]
        ax.hist(np.clip(s, 0, 8.0), bins=bins, color=c, alpha=0.6 if lab != "all pairs" else 1.0, label=lab)
    ax.axvspan(*CONTEXT_LJ["heavy"]["sigma"], color="tab:green", alpha=0.12, label="GAFF/OPLS heavy atoms (approx.)")
    ax.set_xlabel("sigma = (C1/C0)^(1/6) (Angstrom)" + (f"; {over} above 8 in last bin" if over else ""))
    ax.set_ylabel("class pairs")
    ax.legend(fontsize=7)
    ax = axes[0, 1]
    le = np.log10(eps[np.isfinite(eps) & (eps > 0)]) if eps.size else np.array([])
    lo, hi = (min(-4.0, le.min()), max(1.0, le.max())) if le.size else (-4.0, 1.0)
    bins = np.linspace(lo, hi, 61)
    for lab, sel, c in groups:
        e = eps[sel]
        e = e[np.isfinite(e) & (e > 0)]
        ax.hist(np.log10(e), bins=bins, color=c, alpha=0.6 if lab != "all pairs" else 1.0, label=lab)
    ax.axvspan(math.log10(CONTEXT_LJ["heavy"]["epsilon"][0]), math.log10(CONTEXT_LJ["heavy"]["epsilon"][1]),
               color="tab:green", alpha=0.12, label="GAFF/OPLS (approx.)")
    ax.set_xlabel("log10 epsilon = log10(C0^2 / 4 C1) (kcal/mol)")
    ax.legend(fontsize=7)
    fig.suptitle("Non-covalent C0/C1 as Lennard-Jones sigma and epsilon, test molecules", fontsize=10)
    return _save(fig, path)


def fig_charges(sanity: dict, path: Path) -> Path:
    ch = sanity["_values"]["charges"]
    els = list(sanity["charges_e"])
    ncols = min(3, max(1, len(els)))
    nrows = int(math.ceil(max(1, len(els)) / ncols))
    fig, axes = _figure(nrows, ncols, 3.4, 2.6)
    for k, ax in enumerate(axes.ravel()):
        if k >= len(els):
            ax.set_visible(False)
            continue
        el = els[k]
        ax.hist(ch[el], bins=40, color="tab:blue")
        if el in CONTEXT_CHARGES:
            ax.axvspan(*CONTEXT_CHARGES[el], color="tab:green", alpha=0.15)
        ax.set_title(f"{el} (n={len(ch[el])})", fontsize=9)
        ax.set_xlabel("charge (e)", fontsize=8)
        ax.tick_params(labelsize=7)
    fig.suptitle("Atomic charges by element (green: approximate classical range)", fontsize=10)
    return _save(fig, path)


# ============================================================================ markdown
def f2(x, digits: int = 2) -> str:
    if x is None:
        return "-"
    try:
        xf = float(x)
    except (TypeError, ValueError):
        return str(x)
    if not math.isfinite(xf):
        return "-"
    return C.fmt(xf, digits)


def targets(conf: dict, tors: dict | None, ncia: dict | None, use_xtb: bool) -> list[dict[str, Any]]:
    rows = []
    items = [
        ("conformers", f"Conformer relative energies, RMSE vs B3LYP-D3BJ/def2-SVP (and no molecule above "
                       f"{TARGET_MAX_MOLECULE_RMSE:g})",
         (conf or {}).get("stats", {}).get("model_vs_dft"), (conf or {}).get("stats", {}).get("gfn2_xtb_vs_dft")),
        ("torsions", "Torsion profiles, RMSE vs B3LYP-D3BJ/def2-SVP",
         (tors or {}).get("stats", {}).get("model"), (tors or {}).get("stats", {}).get("gfn2_xtb")),
        ("hydrogen_bonded", "H-bonded dimers at equilibrium (HB375x10 + IHB100x10 + HB300SPXx10), RMSE vs CCSD(T)/CBS",
         ((ncia or {}).get("groups", {}).get("hydrogen_bonded") or {}).get("model"),
         ((ncia or {}).get("groups", {}).get("hydrogen_bonded") or {}).get("gfn2_xtb")),
        ("dispersion", "Dispersion dimers at equilibrium (D1200 + D442x10), RMSE vs CCSD(T)/CBS",
         ((ncia or {}).get("groups", {}).get("dispersion") or {}).get("model"),
         ((ncia or {}).get("groups", {}).get("dispersion") or {}).get("gfn2_xtb")),
    ]
    per_molecule = [m["metrics"]["model_vs_dft"]["rmse"] for m in (conf or {}).get("per_molecule", [])
                    if m.get("metrics", {}).get("model_vs_dft", {}).get("rmse") is not None]
    worst_molecule = max(per_molecule) if per_molecule else math.nan
    for key, label, ms, xs in items:
        thr = TARGET_RMSE[key]
        v = (ms or {}).get("rmse", math.nan)
        x = (xs or {}).get("rmse", math.nan) if use_xtb else math.nan
        v_ok = v is not None and math.isfinite(v)
        x_ok = x is not None and math.isfinite(x)
        met = bool(v_ok and v <= thr) if v_ok else None
        if key == "conformers" and met is not None:
            met = met and bool(worst_molecule <= TARGET_MAX_MOLECULE_RMSE)
        rows.append({
            "key": key, "target": label, "threshold_kcal_mol": thr, "model_rmse": v,
            "max_molecule_rmse": worst_molecule if key == "conformers" else None,
            "met": met,
            "margin_kcal_mol": (thr - v) if v_ok else math.nan,
            "gfn2_xtb_rmse": x,
            "better_than_xtb": bool(v < x) if (v_ok and x_ok) else None,
            "vs_xtb_kcal_mol": (x - v) if (v_ok and x_ok) else math.nan,
        })
    return rows


def reduced_protocol(settings: dict) -> list[str]:
    """What a run left out of, or shortened in, the full report (empty for the full report)."""
    out = []
    sections = settings.get("sections", list(SECTIONS))
    missing = [x for x in SECTIONS if x not in sections]
    if missing:
        out.append("sections left out: " + ", ".join(missing))
    if "md" in sections:
        if settings.get("md_ps", 100.0) < 100.0 or settings.get("md_molecules", 20) < 20:
            out.append(f"MD {settings.get('md_molecules')} molecules x {settings.get('md_ps'):g} ps (full: 20 x 100 ps)")
        if list(settings.get("md_settings", MD_SETTINGS)) != list(MD_SETTINGS):
            out.append("MD settings: " + ", ".join(settings["md_settings"]))
    if "minimize" in sections and settings.get("minimize_molecules", 20) < 20:
        out.append(f"minimization of {settings.get('minimize_molecules')} test molecules (full: 20)")
    if "nve" in sections and (settings.get("nve_ps", 10.0) < 10.0 or settings.get("nve_molecules", 10) < 10):
        out.append(f"NVE {settings.get('nve_molecules')} molecules x {settings.get('nve_ps'):g} ps (full: 10 x 10 ps)")
    return out


def _verdict(met, margin, what: str) -> str:
    if met is None:
        return "not evaluated"
    return f"met ({f2(abs(margin))} {what})" if met else f"**missed** by {f2(abs(margin))}"


def build_markdown(rep: dict, figs: dict[str, Path], md_path: Path) -> str:
    def link(key: str, alt: str) -> str:
        if key not in figs:
            return ""
        rel = os.path.relpath(figs[key], md_path.parent)
        return f"![{alt}]({rel})\n"

    m = rep["model"]
    info = rep["machine"]
    split = rep["data"]
    L: list[str] = []
    L += [
        f"# Accuracy of the shipped model `{m['requested']}` ({m['name']})",
        "",
        "Measured on the held-out **test** part of the fixed split of the public sets "
        f"(`physff_openmm.training.recipe.public_splits`, split by molecule; train/validation/test fractions "
        f"{'; '.join(f'{k} ' + '/'.join(f'{x:g}' for x in v) for k, v in split['fractions'].items())}; seed "
        f"{split['seed']}, from {split['split_from']}). All energies in kcal/mol. Generated by:",
        "",
        "```",
        rep["command"],
        "```",
        "",
        f"- Date: {info['date_utc']}; run time {f2(rep['timings']['total_seconds'] / 60, 1)} min on {info['cpu_model']} "
        f"({rep['settings']['threads']} thread(s))",
        f"- Model: `{m['name']}` (requested `{m['requested']}`), file `{m['file']}`, sha256 `{m['sha256']}`; "
        f"level in its metadata: {m.get('level') or '-'}",
        f"- Versions: physff-openmm {rep['versions'].get('physff_openmm')}, git HEAD {info.get('physff_openmm_git_head')}, "
        f"OpenMM {info['openmm']}, torch {info['torch']}, RDKit {info['rdkit']}, tblite {info['tblite']}, NumPy {info['numpy']}",
        f"- Test records scored: {split['test_records_scored']['conformers']} conformer-benchmark molecules, "
        f"{split['test_records_scored']['torsions']} torsion drives, {split['test_records_scored']['ncia']} NCIAtlas dimers "
        f"(of {split['test_records_full']['conformers']}, {split['test_records_full']['torsions']} and "
        f"{split['test_records_full']['ncia']} in the test split)",
        "- The model's energies come from `physff_openmm.parameterize` -> `create_system(backend=\"native\")` -> "
        "OpenMM (Reference platform) + `energy_offset`; GFN2-xTB is tblite single points; MMFF94 is RDKit single points "
        "at the same geometries.",
    ]
    if split.get("limit") is not None:
        L += ["", f"> **Quick run** (`--limit {split['limit']}`): only the first {split['limit']} test records of each set "
              "(of each NCIAtlas subset) were scored. These numbers are not the accuracy report."]
    reduced = reduced_protocol(rep["settings"])
    if reduced:
        L += ["", "> **Reduced run**: " + "; ".join(reduced) + ". These numbers are not the acceptance test."]
    if m.get("warnings"):
        L += ["", "> Model warning: " + " ".join(m["warnings"])]

    # targets
    L += ["", "## Targets", ""]
    rows = []
    for t in rep["targets"]:
        rows.append([
            t["target"], f"<= {f2(t['threshold_kcal_mol'], 1)}", f2(t["model_rmse"]),
            _verdict(t["met"], t["margin_kcal_mol"], "below"), f2(t["gfn2_xtb_rmse"]),
            ("not evaluated" if t["better_than_xtb"] is None else
             (f"yes ({f2(abs(t['vs_xtb_kcal_mol']))} lower)" if t["better_than_xtb"] else
              f"**no** ({f2(abs(t['vs_xtb_kcal_mol']))} higher)")),
        ])
    L.append(C.md_table(["target", "threshold", "model RMSE", "met?", "GFN2-xTB RMSE", "better than GFN2-xTB?"], rows))
    if rep.get("acceptance"):
        L += ["", "## Acceptance: MD, minimization, NVE (issue 13)", "",
              "Each line holds when every molecule passes; sections 5, 7 and 8 give the runs.", ""]
        L.append(C.md_table(["requirement", "molecules", "passed", "failed", "met?"], [
            [a["line"], a["n"], a["n_passed"], a["n"] - a["n_passed"],
             ("yes" if a["met"] else "**no**") + ("" if a["full_protocol"] else " (reduced protocol: a quick run)")]
            for a in rep["acceptance"]]))
    L.append("")

    # 1
    conf = rep.get("conformers")
    if conf:
        st = conf["stats"]
        L += ["", "## 1. Relative conformer energies (conformer benchmark)", "",
              f"{conf['n_molecules']} test molecules, {conf['n_conformers']} conformers. Per molecule, energies are "
              "relative to the conformer lowest at the reference level; that zero point is left out of RMSE and MAE; "
              "Spearman rank correlation per molecule (molecules with at least 3 conformers). DLPNO-CCSD(T)/cc-pVTZ rows "
              "cover the conformers that have a DLPNO energy, zeroed at the DLPNO minimum.", ""]
        hdr = ["metric", "physff", "GFN2-xTB", "MMFF94", "B3LYP-D3BJ/def2-SVP"]
        fields = (("rmse", "RMSE"), ("mae", "MAE"), ("spearman_median", "Spearman, median"),
                  ("spearman_mean", "Spearman, mean"), ("n", "conformers scored"), ("n_molecules", "molecules"))
        rws = []
        for ref, rl in (("dft", "vs B3LYP-D3BJ/def2-SVP"), ("dlpno", "vs DLPNO-CCSD(T)")):
            blocks = [st[f"{mk}_vs_{ref}"] for mk in METHODS]
            blocks.append(st["b3lyp_d3bj_def2svp_vs_dlpno"] if ref == "dlpno" else None)
            for field, lab in fields:
                cells = []
                for b in blocks:
                    if b is None:
                        cells.append("-")
                    elif field in ("n", "n_molecules"):
                        cells.append(str(b[field]))
                    else:
                        cells.append(f2(b[field]))
                rws.append([f"{lab} {rl}"] + cells)
        L.append(C.md_table(hdr, rws))
        if conf["mmff_untyped"]:
            L += ["", f"MMFF94 could not type {len(conf['mmff_untyped'])} of {conf['n_molecules']} molecules "
                  f"({', '.join(conf['mmff_untyped'])}); its column covers the rest."]
        else:
            L += ["", f"MMFF94 typed all {conf['n_molecules']} molecules."]
        if conf["model_failed"]:
            L += [f"The model failed on {len(conf['model_failed'])} molecules: "
                  + ", ".join(x["name"] for x in conf["model_failed"]) + "."]
        L += ["", link("parity", "parity plot of relative conformer energies")]

    # 2
    tors = rep.get("torsions")
    if tors:
        st = tors["stats"]
        L += ["## 2. Torsion drives", "",
              f"{tors['n_drives']} test drives. Per drive, energies relative to the point lowest at B3LYP-D3BJ/def2-SVP "
              "(that point left out), pooled over all points. Peers: " + tors["peers_note"] + ".", ""]
        keys = list(METHODS) + [f"peer_{k}" for k in PEERS]
        labs = list(METHODS.values()) + [f"{v} (peer)" for v in PEERS.values()]
        L.append(C.md_table(["metric"] + labs, [
            ["RMSE"] + [f2(st[k]["rmse"]) for k in keys],
            ["MAE"] + [f2(st[k]["mae"]) for k in keys],
            ["mean of per-drive RMSE"] + [f2(st[k]["mean_of_drive_rmse"]) for k in keys],
            ["max abs error"] + [f2(st[k]["max_abs"]) for k in keys],
            ["points scored"] + [str(st[k]["n"]) for k in keys],
        ]))
        L += ["", "Per drive (RMSE, kcal/mol):", ""]
        L.append(C.md_table(["drive", "SMILES", "atoms", "points"] + labs, [
            [d["name"], f"`{d['smiles']}`", d["n_atoms"], f"{d['n_points']}/{d['n_points_in_file']}"]
            + [f2(d["rmse"][k]) for k in keys] for d in tors["per_drive"]
        ]))
        if tors["mmff_untyped"]:
            L += ["", f"MMFF94 could not type: {', '.join(tors['mmff_untyped'])}."]
        L += ["", link("torsions", "torsion profiles of the test drives")]

    # 3
    ncia = rep.get("ncia")
    if ncia:
        L += ["## 3. NCIAtlas interaction energies at equilibrium (scaling 1.00)", "",
              "E(dimer) - E(A) - E(B), each evaluated as its own system at the dimer geometry, against the CCSD(T)/CBS "
              "benchmark. Hydrogen-bonded = HB375x10 + IHB100x10 + HB300SPXx10; dispersion = D1200 + D442x10.", ""]
        hdr = ["subset", "dimers", "mean E_int ref", "physff RMSE", "physff MAE", "GFN2-xTB RMSE", "GFN2-xTB MAE",
               "MMFF94 RMSE", "MMFF94 MAE"]
        rws = []
        for name, d in list(ncia["subsets"].items()) + [(f"**{k}**", v) for k, v in ncia["groups"].items()]:
            rws.append([name, d["n_dimers"], f2(d["mean_reference_kcal_mol"])]
                       + [f2(d[mk][f]) for mk in METHODS for f in ("rmse", "mae")])
        L.append(C.md_table(hdr, rws))
        if ncia["mmff_untyped"]:
            names = ncia["mmff_untyped"]
            L += ["", f"MMFF94 could not type {len(names)} dimers, left out of its columns"
                  + (f" ({', '.join(f'`{n}`' for n in names)})." if len(names) <= 20 else ".")]
        L += ["", link("ncia", "NCIAtlas RMSE by subset")]

    # 4
    tot = rep.get("total_energy")
    if tot:
        L += ["## 4. Total energies", "",
              "Per conformer-benchmark test molecule, the mean over its conformers of |E_model - E_B3LYP-D3BJ/def2-SVP| "
              "(absolute energies, E_lin included).", ""]
        L.append(C.md_table(["molecules", "mean (kcal/mol)", "median (kcal/mol)", "largest (kcal/mol)", "mean per atom (kcal/mol)"],
                            [[tot["n_molecules"], f2(tot["mean_kcal_mol"]), f2(tot["median_kcal_mol"]),
                              f2(tot["max_kcal_mol"]), f2(tot["mean_per_atom_kcal_mol"])]]))
        L.append("")

    # 5
    md = rep.get("md")
    if md:
        first = next(iter(md["runs"].values()))["settings"]
        L += ["", "## 5. MD stability", "",
              f"{first['molecules'][0].upper() + first['molecules'][1:]}, {first['simulated_ps']:g} ps of Langevin MD at "
              f"{first['temperature_k']:g} K, friction {first['friction_per_ps']:g}/ps, native backend, "
              f"{first['platform']} platform, from {first['start']}, at each setting below; the Simulation is "
              "`physff_openmm.workflows.build_simulation`'s (with bonds to H constrained as `run_md` does by default). "
              f"Checked every {first['check_every_ps']:g} ps: NaN; bond stretched / compressed = {first['bond_broken']}; "
              f"atoms collapsed = {first['collapse']}. {first['stop'][0].upper() + first['stop'][1:]}.", ""]
        L.append(C.md_table(
            ["setting", "molecules", "stable", "bond stretched", "bond compressed", "atoms collapsed", "NaN", "set-up error",
             "largest bond dev. (%)", "met?"],
            [[MD_SETTINGS[k]["label"], d["n_molecules"], d["counts"]["stable"], d["counts"]["bond stretched"],
              d["counts"]["bond compressed"], d["counts"]["atoms collapsed"], d["counts"]["NaN"], d["counts"].get("error", 0),
              f2(100 * d["max_relative_bond_deviation"], 1), "yes" if d["passed"] else "**no**"]
             for k, d in md["runs"].items()]))
        for key, d in md["runs"].items():
            L += ["", f"### {MD_SETTINGS[key]['label']}", "",
                  f"**{d['n_stable']} of {d['n_molecules']} stable.** Largest bond deviation overall: "
                  f"{f2(100 * d['max_relative_bond_deviation'], 1)} % (relative), "
                  f"{f2(d['max_absolute_bond_deviation_angstrom'], 3)} Angstrom (absolute); "
                  f"constraints: {d['settings']['constraints_note']}.", ""]
            L.append(C.md_table(
                ["molecule", "atoms", "constraints", "simulated ps", "status", "max bond dev. (%)", "max bond dev. (A)",
                 "worst bond", "closest non-bonded (A)", "ms/step"],
                [[r["name"], r["n_atoms"], r.get("n_constraints", "-"), f2(r["simulated_ps"], 1),
                  r["status"] + (f" at {f2(r['failure_time_ps'], 1)} ps" if r.get("failure_time_ps") else ""),
                  f2(100 * r["max_relative_bond_deviation"], 1), f2(r.get("max_absolute_bond_deviation_angstrom"), 3),
                  (r.get("worst_bond") or "-") + (f" ({r['worst_bond_direction']})" if r.get("worst_bond_direction") else ""),
                  f2(r.get("min_nonbonded_distance_angstrom")), f2(r.get("ms_per_step"), 3)]
                 for r in d["per_molecule"]]))
        L += ["", link("md", "largest bond deviation per molecule at each setting")]

    # 6
    san = rep.get("sanity")
    if san:
        lj = san["lj"]
        L += ["## 6. Physical sanity of the parameters", "",
              f"Over the {san['n_molecules']} scored conformer-benchmark test molecules. Definitions: {san['definition']}. "
              "The model's C0/C1 act beside short-range Gaussians (within r_off), so an effective sigma and epsilon "
              f"are only loosely comparable with a classical force field's. Context columns: {san['context_note']}.", ""]
        rws = []
        for lab, d in [("all pairs", lj["all_pairs"])] + list(lj["like_element"].items()):
            sg, ep = d["sigma_angstrom"], d["epsilon_kcal_mol"]
            ctx = CONTEXT_LJ["H"] if lab == "H-H" else CONTEXT_LJ["heavy"]
            ctx_s = "-" if lab == "all pairs" else f"{ctx['sigma'][0]:g}-{ctx['sigma'][1]:g}"
            ctx_e = "-" if lab == "all pairs" else f"{ctx['epsilon'][0]:g}-{ctx['epsilon'][1]:g}"
            rws.append([lab, sg["n"], f2(sg["median"]), f"{f2(sg['min'])} - {f2(sg['max'])}", f"{f2(sg['p5'])} - {f2(sg['p95'])}", ctx_s,
                        f2(ep["median"], 4), f"{f2(ep['min'], 4)} - {f2(ep['max'], 4)}", f"{f2(ep['p5'], 4)} - {f2(ep['p95'], 4)}", ctx_e])
        L.append(C.md_table(["pair", "class pairs", "sigma median (A)", "sigma range", "sigma 5-95 %", "classical sigma (approx.)",
                             "epsilon median (kcal/mol)", "epsilon range", "epsilon 5-95 %", "classical epsilon (approx.)"], rws))
        L += ["", "Atomic charges (e):", ""]
        L.append(C.md_table(["element", "atoms", "median", "range", "5-95 %", "classical range (approx.)"], [
            [el, d["n"], f2(d["median"]), f"{f2(d['min'])} - {f2(d['max'])}", f"{f2(d['p5'])} - {f2(d['p95'])}",
             f"{CONTEXT_CHARGES[el][0]:g} to {CONTEXT_CHARGES[el][1]:g}" if el in CONTEXT_CHARGES else "-"]
            for el, d in san["charges_e"].items()
        ]))
        L += ["", link("lj", "LJ sigma and epsilon histograms"), link("charges", "charge histograms by element")]

    # 7
    mn = rep.get("minimize")
    if mn:
        st = mn["settings"]
        L += ["", "## 7. Minimization", "",
              f"Molecules: {st['molecules']}. Minimizer: {st['minimizer']}, native backend, {st['platform']} platform. "
              f"Pass: {st['pass']}.", "",
              f"**{mn['n_passed']} of {mn['n_molecules']} pass.** Largest bond change overall: "
              f"{f2(100 * mn['max_relative_bond_change'], 1)} %.", ""]
        L.append(C.md_table(
            ["molecule", "SMILES", "atoms", "largest bond change (%)", "bond", "start -> end (A)", "energy change (kcal/mol)",
             "RMSD (A)", "pass?"],
            [[r["name"], f"`{r['smiles']}`", r["n_atoms"], f2(100 * r["max_relative_bond_change"], 1) if "error" not in r else r["error"],
              r.get("worst_bond") or "-",
              f"{f2(r['worst_bond_start_angstrom'], 3)} -> {f2(r['worst_bond_end_angstrom'], 3)}" if r.get("worst_bond") else "-",
              f2(r.get("energy_change_kcal_mol")), f2(r.get("rmsd_angstrom"), 3),
              ("yes" if r["passed"] else "**no**") + (" (minimizer kept the start)" if r.get("minimizer_warnings") else "")]
             for r in mn["per_molecule"]]))
        L.append("")

    # 8
    nv = rep.get("nve")
    if nv:
        st = nv["settings"]
        L += ["", "## 8. NVE energy conservation", "",
              f"{nv['n_molecules']} test molecules ({st['molecules']}), {st['simulated_ps']:g} ps of {st['integrator']} at "
              f"{st['timestep_fs']:g} fs without constraints, from {st['start']}; the total energy (potential + kinetic) "
              f"every {st['sample_every_fs']:g} fs. Pass: {st['pass']}. Status: {st['status']}.", "",
              f"**{nv['n_passed']} of {nv['n_molecules']} pass.** Largest |E(t) - E(0)| overall: "
              f"{f2(nv['max_abs_drift_kcal_mol'], 3)} kcal/mol.", ""]
        L.append(C.md_table(
            ["molecule", "atoms", "simulated ps", "max abs(E(t) - E(0)) (kcal/mol)", "E(end) - E(0) (kcal/mol)",
             "mean T (K)", "max bond dev. (%)", "status", "pass?"],
            [[r["name"], r["n_atoms"], f2(r["simulated_ps"], 2), f2(r["max_abs_drift_kcal_mol"], 3),
              f2(r.get("final_drift_kcal_mol"), 3), f2(r.get("mean_temperature_k"), 0),
              f2(100 * r["max_relative_bond_deviation"], 1) if "max_relative_bond_deviation" in r else "-",
              r["status"], "yes" if r["passed"] else "**no**"]
             for r in nv["per_molecule"]]))
        L += ["", link("nve", "E(t) - E(0) in NVE")]

    # timings
    L += ["## Run time", ""]
    tm = rep["timings"]
    L.append(C.md_table(["item", "count", "ms per item", "total (s)"],
                        [[k, v["items"], f2(v["ms_per_item"]), f2(v["seconds"], 1)] for k, v in tm["items"].items()]
                        + [[f"section: {k}", "", "", f2(v, 1)] for k, v in tm["sections_seconds"].items()]))
    L += ["", MARKER, ""]
    return "\n".join(L)


def write_markdown(text: str, path: Path) -> None:
    """Write the generated part, keeping what follows :data:`MARKER` in an existing file."""
    tail = ""
    if path.is_file():
        old = path.read_text()
        if MARKER in old:
            tail = old.split(MARKER, 1)[1].lstrip("\n")
        elif old.strip():
            progress(f"warning: {path} has no '{MARKER}' line; it is replaced whole")
    out = text.rstrip("\n") + "\n" + (("\n" + tail) if tail.strip() else "")
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".partial")
    tmp.write_text(out)
    tmp.replace(path)


# ============================================================================ CLI
def _choices(allowed: Sequence[str]) -> Callable[[str], list[str]]:
    """An argparse type: a comma-separated list of names from ``allowed``, in the order of ``allowed``."""

    def parse(text: str) -> list[str]:
        names = [x.strip() for x in text.split(",") if x.strip()]
        bad = [x for x in names if x not in allowed]
        if bad or not names:
            raise argparse.ArgumentTypeError(
                f"expected a comma-separated list of {', '.join(allowed)}; got {text!r}")
        return [x for x in allowed if x in names]

    return parse


def build_parser() -> argparse.ArgumentParser:
    from physff_openmm._argtypes import positive_float, positive_int

    p = argparse.ArgumentParser(
        prog="accuracy_report.py",
        description="Accuracy report of a shipped physff model on the held-out test split of the public sets "
        "(conformer benchmark, torsion drives, NCIAtlas), against GFN2-xTB and MMFF94.",
    )
    p.add_argument("--model", default="default", help="registered model name or a .pt file (default: default)")
    p.add_argument("--data", type=Path, default=DEFAULT_DATA,
                   help="folder with conformer-benchmark/, torsion-drives/, ncia-atlas/ (default: ../shared/data beside the repository)")
    p.add_argument("--out-md", type=Path, default=DEFAULT_MD, help="markdown report (default: docs/accuracy.md)")
    p.add_argument("--figures", type=Path, default=DEFAULT_FIGURES, help="figure folder (default: docs/figures/accuracy)")
    p.add_argument("--json", type=Path, default=DEFAULT_JSON, help="all numbers (default: benchmarks/results/accuracy.json)")
    p.add_argument("--sections", type=_choices(SECTIONS), default=list(SECTIONS), metavar="LIST",
                   help=f"comma-separated sections to run, of {','.join(SECTIONS)} (default: all; the parameter "
                   "sanity check and total energies come with conformers)")
    p.add_argument("--md-molecules", type=positive_int, default=20,
                   help="MD stability test: the first N test molecules of the conformer benchmark by name, "
                   "independent of --limit (default 20)")
    p.add_argument("--md-ps", type=positive_float, default=100.0, help="simulated time per MD run, ps (default 100)")
    p.add_argument("--md-settings", type=_choices(tuple(MD_SETTINGS)), default=list(MD_SETTINGS), metavar="LIST",
                   help=f"comma-separated MD settings, of {','.join(MD_SETTINGS)} (1 fs free; 2 fs with bonds to H "
                   "constrained; default: both)")
    p.add_argument("--minimize-molecules", type=positive_int, default=20,
                   help="minimization test: the small molecules and the first N MD test molecules (default 20)")
    p.add_argument("--nve-molecules", type=positive_int, default=10,
                   help="NVE test: the first N MD test molecules (default 10)")
    p.add_argument("--nve-ps", type=positive_float, default=NVE_PS, help=f"simulated time per NVE run, ps (default {NVE_PS:g})")
    p.add_argument("--limit", type=positive_int, default=None,
                   help="score only the first N test records of each set (of each NCIAtlas subset); quick runs only")
    p.add_argument("--skip-md", action="store_true", help="leave out the MD stability test (md from --sections)")
    p.add_argument("--skip-xtb", action="store_true", help="leave out GFN2-xTB (its columns show '-')")
    p.add_argument("--threads", type=positive_int, default=1,
                   help="threads for torch, tblite (OpenMP) and OpenMM's CPU platform (default 1)")
    return p


def _check_data(data: Path) -> str | None:
    if not data.is_dir():
        return f"data folder {str(data)!r} does not exist (expected ../shared/data with conformer-benchmark/, torsion-drives/, ncia-atlas/)"
    missing = [d for d in ("conformer-benchmark", "torsion-drives", "ncia-atlas") if not (data / d).is_dir()]
    if missing:
        return f"data folder {str(data)!r} lacks {', '.join(missing)}"
    return None


def _versions() -> dict[str, Any]:
    from importlib import metadata

    out = {}
    for name, dist in (("physff_openmm", "physff-openmm"), ("matplotlib", "matplotlib"), ("scipy", "scipy"),
                       ("tblite", "tblite"), ("openmm", "openmm"), ("rdkit", "rdkit"), ("torch", "torch")):
        try:
            out[name] = metadata.version(dist)
        except Exception:  # noqa: BLE001
            out[name] = None
    return out


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    err = _check_data(args.data)
    if err:
        print(f"accuracy_report.py: error: {err}", file=sys.stderr)
        return 2
    import torch

    torch.set_num_threads(args.threads)
    from physff_openmm.errors import PhysFFError
    from physff_openmm.registry import load_model, resolve_model

    t_start = time.perf_counter()
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always", UserWarning)
        try:
            _, model_file = resolve_model(args.model)
            model = load_model(args.model)
        except PhysFFError as exc:
            print(f"accuracy_report.py: error: {exc}", file=sys.stderr)
            return 2
    model_warnings = [str(w.message) for w in caught if issubclass(w.category, UserWarning)]
    sections_run = [x for x in args.sections if not (x == "md" and args.skip_md)]
    for w in model_warnings:
        progress(f"model warning: {w}")
    info = C.machine_info()
    rep: dict[str, Any] = {
        "command": C.command_line() if argv is None else shlex.join(["python", "benchmarks/accuracy_report.py", *argv]),
        "date_utc": info["date_utc"],
        "machine": info,
        "versions": _versions(),
        "model": {
            "requested": args.model, "name": model.name, "file": os.path.relpath(model_file, C.ROOT) if str(model_file).startswith(str(C.ROOT)) else str(model_file),
            "sha256": model.file_hash, "level": (model.metadata or {}).get("level"),
            "description": (model.metadata or {}).get("description"), "config": model.config.to_dict(),
            "warnings": model_warnings,
        },
        "settings": {"threads": args.threads, "limit": args.limit, "skip_md": args.skip_md, "skip_xtb": args.skip_xtb,
                     "sections": sections_run, "md_molecules": args.md_molecules, "md_ps": args.md_ps,
                     "md_settings": args.md_settings, "minimize_molecules": args.minimize_molecules,
                     "nve_molecules": args.nve_molecules, "nve_ps": args.nve_ps,
                     "single_point_platform": "Reference", "md_platform": "CPU", "backend": "native"},
    }
    timer = Timer()
    sections: dict[str, float] = {}

    def timed(name: str, fn: Callable[[], Any]):
        t = time.perf_counter()
        out = fn()
        sections[name] = time.perf_counter() - t
        return out

    progress(f"model {model.name} ({model.file_hash[:12]}); reading the public sets from {args.data}")
    try:
        test, split_info = timed("read_and_split", lambda: load_test_split(args.data, model, args.limit))
    except PhysFFError as exc:
        print(f"accuracy_report.py: error: {exc}", file=sys.stderr)
        return 2
    rep["data"] = split_info
    progress(f"test split: {split_info['test_records_scored']} records to score ({split_info['reader_warnings']} reader warnings)")
    ev = Energies(model, timer, use_xtb=not args.skip_xtb)
    conf = None
    if "conformers" in sections_run:
        conf, total, param_sets = timed("conformers", lambda: conformer_section(test["conformers"], ev))
        rep["conformers"], rep["total_energy"] = conf, total
    if "torsions" in sections_run:
        rep["torsions"] = timed("torsions", lambda: torsion_section(test["torsions"], ev, args.data))
    if "ncia" in sections_run:
        rep["ncia"] = timed("ncia", lambda: ncia_section(test["ncia"], ev))
    pool = test["md_pool"]
    if "md" in sections_run:
        rep["md"] = timed("md", lambda: md_acceptance_section(pool, model, args.md_molecules, args.md_ps, args.threads,
                                                              timer, args.md_settings))
    if "minimize" in sections_run:
        rep["minimize"] = timed("minimize", lambda: minimize_section(pool, model, args.minimize_molecules, args.threads, timer))
    if "nve" in sections_run:
        rep["nve"] = timed("nve", lambda: nve_section(pool, model, args.nve_molecules, args.nve_ps, args.threads, timer))
    if conf is not None:
        rep["sanity"] = timed("sanity", lambda: sanity_section(param_sets))
    rep["targets"] = targets(conf, rep.get("torsions"), rep.get("ncia"), not args.skip_xtb)
    rep["acceptance"] = acceptance(rep)

    progress("figures")
    figs: dict[str, Path] = {}
    fdir = args.figures
    t = time.perf_counter()
    plots = [("parity", fig_parity, conf, "conformer_parity.png"),
             ("torsions", fig_torsions, rep.get("torsions"), "torsion_profiles.png"),
             ("ncia", fig_ncia, rep.get("ncia"), "ncia_rmse_by_subset.png"),
             ("lj", fig_lj, rep.get("sanity"), "lj_sigma_epsilon.png"),
             ("charges", fig_charges, rep.get("sanity"), "charges_by_element.png"),
             ("md", fig_md, rep.get("md"), "md_bond_deviation.png"),
             ("nve", fig_nve, rep.get("nve"), "nve_energy_drift.png")]
    for key, fn, data, fname in plots:
        if data is None:
            continue
        try:
            figs[key] = fn(data, fdir / fname)
        except Exception as exc:  # noqa: BLE001 - a failed figure must not lose the numbers
            progress(f"figure {fname} failed: {type(exc).__name__}: {exc}")
    sections["figures"] = time.perf_counter() - t
    rep["figures"] = {k: os.path.relpath(v, C.ROOT) if str(v.resolve()).startswith(str(C.ROOT)) else str(v) for k, v in figs.items()}
    if "sanity" in rep:
        del rep["sanity"]["_values"]
    info["load_average_end"] = C.load_average()
    rep["timings"] = {"total_seconds": time.perf_counter() - t_start, "sections_seconds": sections, "items": timer.report()}

    args.json.parent.mkdir(parents=True, exist_ok=True)
    tmp = args.json.with_name(args.json.name + ".partial")
    tmp.write_text(json.dumps(jsonable(rep), indent=1) + "\n")
    tmp.replace(args.json)
    write_markdown(build_markdown(rep, figs, args.out_md), args.out_md)
    progress(f"wrote {args.json}, {args.out_md} and {len(figs)} figures in {fdir} "
             f"({rep['timings']['total_seconds']:.0f} s)")
    for k, v in rep["timings"]["items"].items():
        progress(f"  {k}: {v['items']} x {v['ms_per_item']:.2f} ms = {v['seconds']:.1f} s")
    for k, v in sections.items():
        progress(f"  section {k}: {v:.1f} s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
