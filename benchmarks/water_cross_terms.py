"""Cross terms between a physff molecule and TIP3P water against CCSD(T)/CBS (NCIAtlas dimers with a water).

For every NCIAtlas dimer in which one monomer is water (``../shared/data/ncia-atlas``),
at each geometry of its distance scan, the interaction energy
E(dimer) - E(A) - E(B) (kcal/mol, rigid monomers at the dimer geometry) is computed

* ``tip3p_physff``: the water as TIP3P (``amber14/tip3p.xml``: charges -0.834/+0.417, LJ on O)
  at the geometry of the dimer, the partner as a physff molecule through
  ``openmm.app.ForceField`` + :class:`physff_openmm.PhysFFTemplateGenerator`: the stated
  cross-term rule (physff charges, per-atom LJ of
  :func:`physff_openmm.forcefield.atom_lennard_jones`, Lorentz-Berthelot); in the water
  dimer, the first water is physff and the second TIP3P;
* ``physff``: both monomers physff, the model's own pair parameters between molecules
  (:func:`physff_openmm.create_system` of the dimer);
* ``mmff94``: both monomers MMFF94 (RDKit), a classical force field for reference;

against the benchmark CCSD(T)/CBS interaction energy. Reported: RMSE, MAE and mean
signed error at the equilibrium distance (scaling 1.00), over all water dimers and over
those in the held-out test part of the model's public split; the same over all
scalings; and "collapses": dimers whose energy at the shortest distance of the scan
is more than :data:`COLLAPSE_MARGIN` below the lowest reference energy of the scan (the
method binds more strongly where the monomers overlap than the real complex binds at all).

Targets (issue 15): ``tip3p_physff`` RMSE at most 1.5 kcal/mol at equilibrium, no collapses.
Results: ``results/water_cross_terms[_<stem>].{json,md}``.

    python benchmarks/water_cross_terms.py [--model auto|<name>|<path>] [--limit N] [--out STEM]
"""

from __future__ import annotations

import argparse
import math
import sys
import time
import warnings
from pathlib import Path
from typing import Any

import numpy as np

from _common import ROOT, header_markdown, load_average, machine_info, md_table, resolve_benchmark_model, write_results

DEFAULT_DATA = ROOT.parent / "shared" / "data" / "ncia-atlas"
if not DEFAULT_DATA.is_dir():
    DEFAULT_DATA = Path("/work/shared/data/ncia-atlas")
#: Target of issue 15, kcal/mol.
TARGET_RMSE = 1.5
#: kcal/mol: a method collapses when E(shortest distance) < min(reference over the scan) - this.
COLLAPSE_MARGIN = 1.0
CROSS_TERM_RULE = ("physff charges and per-atom Lennard-Jones (physff_openmm.forcefield.atom_lennard_jones): heavy atoms "
                   "sigma where the model's own same-class pair energy between molecules (no Coulomb) falls to "
                   "WALL_ENERGY_KCAL, epsilon = C_0(ii)^2/(4 C_1(ii)); hydrogens no LJ (a 1 A / 0.0157 kcal/mol core where "
                   "the charge is not positive); a model with an lj_net: hydrogens "
                   "a core of sigma 1 A and epsilon 0.001 kcal/mol, epsilon at least 0.001, then sigma and epsilon times "
                   "the lj_net's factors of the atom's class, a heavy atom's sigma at least the model's lj_sigma_floor "
                   "times its van der Waals diameter; Lorentz-Berthelot with TIP3P, whose hydrogens (no LJ "
                   "there) meet physff atoms of negative charge with a core of sigma 1.2 A and epsilon 0.01 kcal/mol "
                   "(BARE_HYDROGEN_CORE)")
METHODS = {"tip3p_physff": "TIP3P water + physff partner", "physff": "all physff", "mmff94": "all MMFF94"}


def progress(text: str) -> None:
    print(text, file=sys.stderr, flush=True)


def is_water(symbols: list[str]) -> bool:
    return sorted(symbols) == ["H", "H", "O"]


def water_dimers(data: Path, limit: int | None) -> list:
    """NCIAtlas records (one per dimer, its scan as conformers) in which one monomer is water."""
    from physff_openmm.training.sources import read_ncia

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        records = read_ncia(data)
    out = []
    for rec in records:
        symbols = [_symbol(z) for z in rec.species]
        monomers = [np.flatnonzero(rec.fragments == f) for f in (0, 1)]
        if any(is_water([symbols[i] for i in m]) for m in monomers):
            out.append(rec)
            if limit is not None and len(out) >= limit:
                break
    return out


def _symbol(z: int) -> str:
    from rdkit import Chem

    return Chem.GetPeriodicTable().GetElementSymbol(int(z))


def split_labels(records, model) -> dict[str, str]:
    """train / val / test of each dimer in the model's public split (NCIA set, by molecule)."""
    from accuracy_report import split_settings

    from physff_openmm.training.dataset import split_by_molecule
    from physff_openmm.training.recipe import DEFAULT_FRACTIONS

    fractions, seed, _ = split_settings(model)
    fr = (fractions or {}).get("ncia") or DEFAULT_FRACTIONS["ncia"]
    parts = split_by_molecule(records, fr, seed)
    return {rec.name: label for label, part in zip(("train", "val", "test"), parts) for rec in part}


def fragment(mol, atoms):
    """The fragment of ``mol`` made of ``atoms`` (ascending), as its own molecule."""
    from rdkit import Chem

    frags, mapping = [], []
    frags = Chem.GetMolFrags(mol, asMols=True, sanitizeFrags=True, fragsMolAtomMapping=mapping)
    for frag, idx in zip(frags, mapping):
        if sorted(idx) == sorted(int(a) for a in atoms):
            order = np.argsort(idx)
            return Chem.RenumberAtoms(frag, [int(k) for k in order])
    raise ValueError("atoms do not form one fragment")


class Evaluator:
    """Interaction energies (kcal/mol) of one dimer's frames by each method."""

    def __init__(self, model, platform: str):
        import openmm

        self.model = model
        self.platform = openmm.Platform.getPlatformByName(platform)

    def _energies(self, system, frames_a: np.ndarray) -> np.ndarray:
        import openmm
        from openmm import unit

        ctx = openmm.Context(system, openmm.VerletIntegrator(0.001), self.platform)
        out = []
        for x in frames_a:
            ctx.setPositions(np.asarray(x) * 0.1)
            out.append(ctx.getState(getEnergy=True).getPotentialEnergy().value_in_unit(unit.kilocalorie_per_mole))
        return np.asarray(out)

    def tip3p_physff(self, partner, water_symbols, frames_p: np.ndarray, frames_w: np.ndarray) -> np.ndarray:
        """TIP3P water + physff partner through openmm.app.ForceField (NoCutoff)."""
        from openmm import app

        from physff_openmm import PhysFFTemplateGenerator
        from physff_openmm.workflows.simulation import topology_from_mol

        generator = PhysFFTemplateGenerator([partner], model=self.model)
        ff = app.ForceField("amber14/tip3p.xml")
        ff.registerTemplateGenerator(generator.generator)
        top_p = topology_from_mol(partner)
        top_w = app.Topology()
        res = top_w.addResidue("HOH", top_w.addChain())
        atoms = [top_w.addAtom(n, app.Element.getBySymbol(s), res)
                 for n, s in zip(_water_names(water_symbols), water_symbols)]
        o = next(a for a in atoms if a.element.symbol == "O")
        for a in atoms:
            if a is not o:
                top_w.addBond(o, a)
        top = app.Topology()
        for part in (top_p, top_w):
            chain = top.addChain()
            new = {}
            for r in part.residues():
                nr = top.addResidue(r.name, chain)
                for a in r.atoms():
                    new[a] = top.addAtom(a.name, a.element, nr)
            for a, b in part.bonds():
                top.addBond(new[a], new[b])
        kw = dict(nonbondedMethod=app.NoCutoff, rigidWater=False, removeCMMotion=False)
        e_ab = self._energies(ff.createSystem(top, **kw), np.concatenate([frames_p, frames_w], axis=1))
        e_p = self._energies(ff.createSystem(top_p, **kw), frames_p)
        e_w = self._energies(ff.createSystem(top_w, **kw), frames_w)
        return e_ab - e_p - e_w

    def physff(self, mol, parts, frames: np.ndarray) -> np.ndarray:
        """Both monomers physff: the dimer as one complex, minus each monomer (E_lin included)."""
        import physff_openmm as pf

        def total(m, x):
            params = pf.parameterize(m, model=self.model)
            return self._energies(pf.create_system(params, backend="native"), x) + params.energy_offset

        e = total(mol, frames)
        for atoms in parts:
            e = e - total(fragment(mol, atoms), frames[:, atoms])
        return e

    @staticmethod
    def mmff94(mol, parts, frames: np.ndarray) -> np.ndarray:
        """Both monomers MMFF94 (RDKit), interactions between fragments included; NaN when MMFF cannot type them."""
        from rdkit import Chem
        from rdkit.Chem import AllChem

        def energies(m, xs):
            props = AllChem.MMFFGetMoleculeProperties(m, mmffVariant="MMFF94")
            if props is None:
                return np.full(len(xs), math.nan)
            m = Chem.Mol(m)
            m.RemoveAllConformers()
            conf = Chem.Conformer(m.GetNumAtoms())
            m.AddConformer(conf, assignId=True)
            ff = AllChem.MMFFGetMoleculeForceField(m, props, ignoreInterfragInteractions=False)
            return np.asarray([ff.CalcEnergy([float(v) for v in x.reshape(-1)]) for x in xs])

        e = energies(mol, frames)
        for atoms in parts:
            e = e - energies(fragment(mol, atoms), frames[:, atoms])
        return e


def _water_names(symbols: list[str]) -> list[str]:
    names, h = [], 0
    for s in symbols:
        if s == "O":
            names.append("O")
        else:
            h += 1
            names.append(f"H{h}")
    return names


def error_stats(err) -> dict[str, Any]:
    e = np.asarray(err, dtype=np.float64)
    e = e[np.isfinite(e)]
    if not len(e):
        return {"n": 0, "rmse": math.nan, "mae": math.nan, "mse": math.nan, "max_abs": math.nan}
    return {"n": int(len(e)), "rmse": float(np.sqrt(np.mean(e**2))), "mae": float(np.mean(np.abs(e))),
            "mse": float(np.mean(e)), "max_abs": float(np.max(np.abs(e)))}


def evaluate(records, ev: Evaluator, labels: dict[str, str]) -> list[dict[str, Any]]:
    from physff_openmm.errors import PhysFFError
    from physff_openmm.units import HARTREE_TO_KCAL

    rows = []
    for n, rec in enumerate(records, 1):
        t0 = time.perf_counter()
        mol = rec.to_rdkit()
        symbols = [a.GetSymbol() for a in mol.GetAtoms()]
        parts = [np.flatnonzero(rec.fragments == f) for f in (0, 1)]
        # the water that becomes TIP3P: monomer B if it is water, else A
        w = 1 if is_water([symbols[i] for i in parts[1]]) else 0
        water, partner_atoms = parts[w], parts[1 - w]
        frames = np.asarray(rec.positions)
        row: dict[str, Any] = {
            "name": rec.name, "group": rec.nci_group, "smiles": rec.smiles, "split": labels.get(rec.name, "?"),
            "water_monomer": "AB"[w], "scaling": [float(s) for s in rec.scaling],
            "reference_kcal_mol": [float(e * HARTREE_TO_KCAL) for e in rec.interaction_energy],
        }
        try:
            partner = fragment(mol, partner_atoms)
            row["tip3p_physff"] = ev.tip3p_physff(partner, [symbols[i] for i in water], frames[:, partner_atoms],
                                                  frames[:, water]).tolist()
            row["physff"] = ev.physff(mol, parts, frames).tolist()
        except PhysFFError as exc:
            progress(f"  {rec.name}: physff failed ({str(exc).splitlines()[0]}); left out")
            continue
        row["mmff94"] = ev.mmff94(mol, parts, frames).tolist()
        rows.append(row)
        k = int(np.argmin(np.abs(np.asarray(row["scaling"]) - 1.0)))
        progress(f"water dimer {n}/{len(records)} {rec.name} ({row['group']}, {row['split']}): at s=1.00 ref "
                 f"{row['reference_kcal_mol'][k]:.2f}, TIP3P+physff {row['tip3p_physff'][k]:.2f}, physff "
                 f"{row['physff'][k]:.2f}, MMFF94 {row['mmff94'][k]:.2f} kcal/mol ({time.perf_counter() - t0:.1f} s)")
    return rows


def summarize(rows: list[dict[str, Any]]) -> dict[str, Any]:
    def at_equilibrium(sel, m):
        err = []
        for r in sel:
            s = np.asarray(r["scaling"])
            k = np.flatnonzero(np.abs(s - 1.0) < 1e-6)
            if len(k):
                err.append(r[m][k[0]] - r["reference_kcal_mol"][k[0]])
        return error_stats(err)

    def all_frames(sel, m):
        return error_stats([e - ref for r in sel for e, ref in zip(r[m], r["reference_kcal_mol"])])

    def collapses(sel, m):
        out = []
        for r in sel:
            s = np.asarray(r["scaling"])
            eq = np.flatnonzero(np.abs(s - 1.0) < 1e-6)
            if not len(eq):
                continue
            k = int(np.argmin(s))
            ref, val = r["reference_kcal_mol"], r[m]
            if val[k] < min(ref) - COLLAPSE_MARGIN:
                out.append({"name": r["name"], "group": r["group"], "scaling": float(s[k]), "method_kcal_mol": val[k],
                            "reference_kcal_mol": ref[k], "reference_minimum_kcal_mol": min(ref)})
        return out

    out: dict[str, Any] = {}
    for label, sel in (("all", rows), ("test", [r for r in rows if r["split"] == "test"])):
        out[label] = {
            "n_dimers": len(sel),
            "equilibrium": {m: at_equilibrium(sel, m) for m in METHODS},
            "all_scalings": {m: all_frames(sel, m) for m in METHODS},
            "collapses": {m: collapses(sel, m) for m in METHODS},
        }
    groups = sorted({r["group"] for r in rows})
    out["groups"] = {g: {m: at_equilibrium([r for r in rows if r["group"] == g], m) for m in METHODS} for g in groups}
    return out


def markdown(summary: dict[str, Any], info, model_info, n_records: int, wall: float, lj_net: bool,
             sigma_floor: float) -> str:
    lines = [header_markdown("Cross terms with TIP3P water: NCIAtlas dimers with a water vs CCSD(T)/CBS", info, model_info,
                             [f"- Dimers with a water: {n_records}; target: TIP3P + physff RMSE <= {TARGET_RMSE} kcal/mol "
                              f"at equilibrium (scaling 1.00), no collapses (the method's energy at the shortest scaling "
                              f"more than {COLLAPSE_MARGIN} kcal/mol below the lowest reference energy of the scan)",
                              f"- Cross-term rule: {CROSS_TERM_RULE}; WALL_ENERGY_KCAL = {wall} kcal/mol; "
                              f"this model {'has' if lj_net else 'has no'} lj_net"
                              + (f", lj_sigma_floor {sigma_floor:g}" if lj_net else "")]), ""]
    for label in ("all", "test"):
        s = summary[label]
        lines += [f"## {label} dimers ({s['n_dimers']})", ""]
        table = []
        for m, desc in METHODS.items():
            eq, fr = s["equilibrium"][m], s["all_scalings"][m]
            table.append([desc, eq["n"], eq["rmse"], eq["mae"], eq["mse"], eq["max_abs"], fr["rmse"],
                          len(s["collapses"][m])])
        lines += [md_table(["method", "n (s=1.00)", "RMSE", "MAE", "mean signed", "max |err|",
                            "RMSE all scalings", "collapses"], table), ""]
    lines += ["## by group (scaling 1.00, RMSE kcal/mol)", ""]
    lines += [md_table(["group", "n"] + list(METHODS.values()),
                       [[g, v["tip3p_physff"]["n"]] + [v[m]["rmse"] for m in METHODS] for g, v in summary["groups"].items()]),
              ""]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--model", default="auto", help="auto (shipped default, else stand-in), standin, a name or a path")
    p.add_argument("--data", type=Path, default=DEFAULT_DATA, help="NCIAtlas folder (read only)")
    p.add_argument("--limit", type=int, default=None, help="first N water dimers (quick runs)")
    p.add_argument("--platform", default="Reference", help="OpenMM platform (default: Reference, double precision)")
    p.add_argument("--out", default=None, help="results stem (default water_cross_terms, or _<model> for others)")
    p.add_argument("--wall", type=float, default=None,
                   help="evaluate the rule with this wall level, kcal/mol, instead of the package's WALL_ENERGY_KCAL")
    args = p.parse_args(argv)
    from physff_openmm import forcefield

    if args.wall is not None:
        forcefield.WALL_ENERGY_KCAL = args.wall
    info = machine_info()
    model, model_info = resolve_benchmark_model(args.model)
    records = water_dimers(args.data, args.limit)
    progress(f"{len(records)} NCIAtlas dimers with a water")
    labels = split_labels(records, model)
    rows = evaluate(records, Evaluator(model, args.platform), labels)
    summary = summarize(rows)
    info["load_average_end"] = load_average()
    payload = {
        "description": __doc__,
        "machine": info,
        "model": model_info,
        "targets": {"rmse_equilibrium_kcal_mol": TARGET_RMSE, "collapses": 0, "collapse_margin_kcal_mol": COLLAPSE_MARGIN},
        "cross_term_rule": CROSS_TERM_RULE,
        "lj_net": getattr(model, "lj_net", None) is not None,
        "lj_sigma_floor": float(model.config.lj_sigma_floor),
        "wall_energy_kcal_mol": forcefield.WALL_ENERGY_KCAL,
        "summary": summary,
        "per_dimer": rows,
    }
    stem = args.out or ("water_cross_terms" if model_info["kind"] == "shipped" and args.limit is None
                        else f"water_cross_terms_{model_info['name']}" + (f"_limit{args.limit}" if args.limit else ""))
    if args.wall is not None and args.out is None:
        stem += f"_wall{args.wall:g}"
    paths = write_results(stem, payload, markdown(summary, info, model_info, len(records), forcefield.WALL_ENERGY_KCAL,
                                                  payload["lj_net"], payload["lj_sigma_floor"]))
    eq = summary["all"]["equilibrium"]["tip3p_physff"]
    print(f"TIP3P + physff at equilibrium: RMSE {eq['rmse']:.2f} kcal/mol over {eq['n']} dimers "
          f"(target {TARGET_RMSE}); collapses {len(summary['all']['collapses']['tip3p_physff'])}; wrote "
          + ", ".join(str(x) for x in paths))
    return 0


if __name__ == "__main__":
    sys.exit(main())
