"""Probes of two terms the formula lacks: how much of a missed line each would take away.

``DESIGN.md``'s energy has pair terms only. Two acceptance lines of issue 13 stay missed with
it (torsion drives, H-bonded dimers), and the design changes proposed for them are terms that
classical and polarizable force fields have. Each probe fits one such term on top of the shipped
model, frozen (its energies through the accuracy report's evaluation path: ``parameterize`` ->
native System, Reference platform; its atom embeddings as parameterization computes them), to
what the model misses on training data, and measures it unchanged on data it was not fitted on.
Nothing of the fit reaches the shipped model: the numbers say what the term can add to this
model, not what a model trained with it would reach.

``torsion``: V1 cos(phi) + V2 cos(2 phi) + V3 cos(3 phi) on every proper dihedral i-j-k-l, the
three coefficients from a small network of the embeddings, symmetric under reversal (central
bond: h_j + h_k, h_j * h_k and its bond features; outer atoms: h_i + h_l, h_i * h_l). Fitted to
the model's residual, energies relative within each molecule, on the GFN2-xTB torsion drives of
the recipe's shard (``training/data/torsion_scans.h5``) of the model's training molecules
(``--fit-dft``: and on the public training split's B3LYP-D3BJ/def2-SVP drives and conformers).
Measured on the GFN2-xTB drives of the molecules held out of training (about each molecule's
mean) and on the public drives and conformers (the accuracy report's convention: relative to the
point lowest in the reference, that point left out; pooled RMSE and the largest per-molecule RMSE).

``induction``: direct (first-order) induction between molecules,
E_ind = -1/2 k_e sum_i alpha_i |F_i|^2, F_i the field at atom i of the model's charges of the
other molecules, Thole-damped (1 - exp(-a u^3), u = r / (alpha_i alpha_j)^(1/6), a = 0.39, as in
AMOEBA), the polarizabilities alpha_i > 0 from a small network of the embeddings. Fitted to the
model's interaction-energy residual at every separation of the NCIAtlas training dimers beside two
controls: Gaussians between molecules alone (corrections to the amplitudes of the formula's own
Gaussians between molecules, which a model trained again could make within ``DESIGN.md``), and
both; measured at equilibrium on the training, validation and (``--test``) test dimers by group,
as the accuracy report groups them.

With ``--test`` the test split is measured too: once, nothing is chosen on it.

Usage (repository root, ``pip install -e .[train]``)::

    python benchmarks/term_probes.py torsion --data ../shared/data --recipe training/default_model.yaml --fit-dft [--test]
    python benchmarks/term_probes.py induction --data ../shared/data [--test]
"""

from __future__ import annotations

import argparse
import logging
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import numpy as np

from physff_openmm.energy import GAUSSIAN_CENTERS
from physff_openmm.errors import ConfigError, PhysFFError
from physff_openmm.parameters import _float64_copy

sys.path.insert(0, str(Path(__file__).resolve().parent))

import accuracy_report as ar  # noqa: E402
from _common import command_line, machine_info, md_table, resolve_benchmark_model, write_results  # noqa: E402

#: Cosine orders of the torsion term.
ORDERS = (1, 2, 3)
#: Thole's damping constant (AMOEBA's).
THOLE = 0.39
#: softplus(SOFTPLUS_ONE) = 1: the polarizabilities start at 1 A^3.
SOFTPLUS_ONE = float(np.log(np.e - 1.0))


@dataclass
class Item:
    """One molecule's (or dimer's) frames: the model's energies, the reference's, what the term reads."""

    name: str
    e_model: np.ndarray  # (F,) kcal/mol: totals (torsion) or interaction energies (induction)
    e_ref: np.ndarray  # (F,) kcal/mol
    data: dict  # torch tensors of the term
    subset: str = ""  # NCIAtlas subset of a dimer
    equilibrium: int | None = None  # frame at scaling 1.00 of a dimer
    scaling: np.ndarray | None = None  # (F,) a dimer's distance scaling of each frame


def embeddings(model64, mol):
    """(n, hidden) float64 atom embeddings as parameterization computes them (each atom its class's mean,
    :func:`physff_openmm.parameters.class_embeddings`), and the resonance structures."""
    import torch

    from physff_openmm.parameters import _model_graph, class_embeddings

    g, structures = _model_graph(mol, model64)
    classes, hc = class_embeddings(g, model64)
    return hc[torch.from_numpy(classes)], structures


def gaussian_basis(r, widths, switch: tuple[float, float]):
    """(..., 6) torch: S(r) exp(-(r - mu_k)^2 / (w_k^2 + eps)), the formula's Gaussians with amplitude 1, of
    distances ``r`` (...) with widths ``widths`` (..., 6): an energy changes by their sum weighted by
    corrections to the amplitudes C_2, C_4, ..., C_12."""
    import torch

    from physff_openmm import energy

    r = torch.as_tensor(r, dtype=torch.float64)
    centers = torch.tensor(energy.GAUSSIAN_CENTERS, dtype=torch.float64)
    w = torch.as_tensor(widths, dtype=torch.float64)
    g = torch.exp(-((r.unsqueeze(-1) - centers) ** 2) / (w * w + energy.WIDTH_EPSILON))
    return g * energy.switch(r, *switch).unsqueeze(-1)


def make_network(n_in: int, hidden: int, n_out: int, seed: int):
    import torch
    from torch import nn

    torch.manual_seed(seed)
    net = nn.Sequential(nn.Linear(n_in, hidden), nn.SiLU(), nn.Linear(hidden, hidden), nn.SiLU(), nn.Linear(hidden, n_out))
    with torch.no_grad():
        net[-1].weight.mul_(0.1)
        net[-1].bias.zero_()
    return net


def fit(net, items: list[Item], term: Callable, *, centred: bool, epochs: int, batch: int = 16, lr: float = 1e-3,
        weight_decay: float = 1e-4, seed: int = 0) -> list[float]:
    """Fit ``net`` so that ``term(net, item.data)`` matches each item's residual E_ref - E_model (about
    each item's mean when ``centred``), mean square over frames; the RMSE of each epoch."""
    import torch

    opt = torch.optim.AdamW(net.parameters(), lr=lr, weight_decay=weight_decay)
    rng = np.random.default_rng(seed)
    targets = [torch.from_numpy(it.e_ref - it.e_model).float() for it in items]
    if centred:
        targets = [t - t.mean() for t in targets]
    history = []
    for _ in range(epochs):
        order = rng.permutation(len(items))
        total, n = 0.0, 0
        for a in range(0, len(order), batch):
            loss, frames = 0.0, 0
            for k in order[a:a + batch]:
                e = term(net, items[k].data)
                d = (e - e.mean() if centred else e) - targets[k]
                loss = loss + (d * d).sum()
                frames += len(e)
            loss = loss / frames
            opt.zero_grad()
            loss.backward()
            opt.step()
            total, n = total + float(loss.detach()) * frames, n + frames
        history.append(float(np.sqrt(total / n)))
    return history


def term_values(net, items: list[Item], term: Callable) -> list[np.ndarray]:
    import torch

    with torch.no_grad():
        return [term(net, it.data).double().numpy() for it in items]


def read_splits(args):
    """(model, its description, the public splits, all test records) of ``--model`` and ``--data``: the whole
    sets split as the model's metadata says, then with ``--limit`` each part's first N records of each set."""
    from physff_openmm.training.recipe import public_splits, read_public_sets

    model, info = resolve_benchmark_model(args.model)
    fractions, seed, _ = ar.split_settings(model)
    splits = public_splits(read_public_sets(Path(args.data)), fractions, seed)
    test = splits.part("test")  # all of it: no molecule of it may enter a fit, whatever --limit keeps
    if args.limit:
        for part in ("train", "val", "test"):
            d = getattr(splits, part)
            for key in list(d):
                d[key] = list(d[key])[: args.limit]
    return model, info, splits, test


# ============================================================================ torsion
def proper_dihedrals(mol) -> np.ndarray:
    """(D, 4) atom indices i-j-k-l of every proper dihedral of ``mol`` (each once, i != l)."""
    out = []
    for bond in mol.GetBonds():
        j, k = bond.GetBeginAtomIdx(), bond.GetEndAtomIdx()
        for a in mol.GetAtomWithIdx(j).GetNeighbors():
            for b in mol.GetAtomWithIdx(k).GetNeighbors():
                i, l = a.GetIdx(), b.GetIdx()
                if i != k and l != j and i != l:
                    out.append((i, j, k, l))
    return np.asarray(out, dtype=np.int64).reshape(-1, 4)


def dihedral_cosines(positions: np.ndarray, dihedrals: np.ndarray) -> np.ndarray:
    """(F, D, len(ORDERS)) cos(n phi) of each dihedral at each of the (F, n, 3) geometries."""
    p = np.asarray(positions, dtype=np.float64)
    b0 = p[:, dihedrals[:, 1]] - p[:, dihedrals[:, 0]]
    b1 = p[:, dihedrals[:, 2]] - p[:, dihedrals[:, 1]]
    b2 = p[:, dihedrals[:, 3]] - p[:, dihedrals[:, 2]]
    n1, n2 = np.cross(b0, b1), np.cross(b1, b2)
    m1 = np.cross(n1, b1 / np.linalg.norm(b1, axis=-1, keepdims=True))
    phi = np.arctan2((m1 * n2).sum(-1), (n1 * n2).sum(-1))
    return np.stack([np.cos(n * phi) for n in ORDERS], axis=-1)


def onefour_pairs(mol) -> np.ndarray:
    """(P, 2) the pairs i < l of ``mol`` three bonds apart (1-4 pairs)."""
    from rdkit import Chem

    i, l = np.nonzero(np.triu(Chem.GetDistanceMatrix(mol) == 3))
    return np.stack([i, l], axis=1).astype(np.int64)


def pair_gaussians(positions: np.ndarray, pairs: np.ndarray, params: np.ndarray, switch: tuple[float, float]) -> np.ndarray:
    """(F, P, 6) :func:`gaussian_basis` of each pair at each frame with each pair's own widths (``params``, (P, 14)
    C_0..C_13), whose amplitudes a correction would change."""
    p = np.asarray(positions, dtype=np.float64)
    r = np.linalg.norm(p[:, pairs[:, 0]] - p[:, pairs[:, 1]], axis=-1)
    return gaussian_basis(r, np.broadcast_to(params[:, 3::2], r.shape + (6,)).copy(), switch).numpy()


def torsion_data(model64, mol, positions: np.ndarray, params=None, form: str = "cosine") -> dict | None:
    """The torsion term's inputs of one molecule (None without one), per row the network's input and its
    basis at each frame.

    ``form="cosine"``: a row per proper dihedral i-j-k-l; input (h_j + h_k, h_j * h_k, h_i + h_l, h_i * h_l,
    the bond features of j-k), basis cos(n phi).
    ``form="pair"``: a row per 1-4 pair, as ``DESIGN.md``'s feats_net sees it (h_i + h_l, h_i * h_l, the pair
    features, the path embedding of its central bonds); basis the pair's own Gaussians (``params``, the
    model's :class:`~physff_openmm.parameters.ParameterSet`): corrections to the amplitudes C_2, C_4, ...,
    C_12 of the 1-4 pairs, a change of parameters within the formula.
    """
    import torch

    from physff_openmm.graph import bond_features, pair_features, path_atoms

    h, structures = embeddings(model64, mol)
    if form == "pair":
        pairs = onefour_pairs(mol)
        if not len(pairs):
            return None
        row, atom, weight = path_atoms(mol, pairs)
        h_path = model64.path_embeddings(h, torch.from_numpy(row), torch.from_numpy(atom), torch.from_numpy(weight), len(pairs))
        if h_path is None:  # a model without path embeddings: its 1-4 pairs see no path either
            h_path = torch.zeros(len(pairs), 0, dtype=h.dtype)
        hi, hl = h[torch.from_numpy(pairs[:, 0])], h[torch.from_numpy(pairs[:, 1])]
        feats = torch.from_numpy(pair_features(mol, pairs, structures)).to(h.dtype)
        table = params.pair_parameters()[pairs[:, 0], pairs[:, 1]]
        basis = pair_gaussians(positions, pairs, table, params.switch)
        return {"inputs": torch.cat([hi + hl, hi * hl, feats, h_path], dim=1).float(), "basis": torch.from_numpy(basis).float()}
    dih = proper_dihedrals(mol)
    if not len(dih):
        return None
    d = torch.from_numpy(dih)
    hi, hj, hk, hl = (h[d[:, c]] for c in range(4))
    bonds = torch.tensor([bond_features(mol.GetBondBetweenAtoms(int(j), int(k)), structures) for j, k in dih[:, 1:3]],
                         dtype=torch.float64).reshape(len(dih), -1)
    return {"inputs": torch.cat([hj + hk, hj * hk, hi + hl, hi * hl, bonds], dim=1).float(),
            "basis": torch.from_numpy(dihedral_cosines(positions, dih)).float()}


def torsion_energy(net, data: dict):
    """(F,) torch: the torsion term of each frame, kcal/mol."""
    v = net(data["inputs"])  # (D, basis)
    return (data["basis"] * v.unsqueeze(0)).sum(dim=(1, 2))


def prepare_molecules(records, ev, model64, form: str = "cosine") -> list[Item]:
    from physff_openmm.units import HARTREE_TO_KCAL

    items = []
    for rec in records:
        mol = rec.to_rdkit()
        try:
            e_model, params = ev.model_totals(mol, rec.positions)
        except (PhysFFError, RuntimeError) as exc:
            print(f"  {rec.name}: the model failed ({exc}); left out", file=sys.stderr)
            continue
        data = torsion_data(model64, mol, rec.positions, params, form)
        if data is not None:
            items.append(Item(rec.name, e_model, rec.energy * HARTREE_TO_KCAL, data))
    return items


def shard_parts(recipe: str | Path, public_test: list, extra: list | None = None) -> tuple[list, list]:
    """Torsion-drive records of the recipe's shard: (training molecules, validation molecules), split as the
    recipe's training splits them (``training/train_default_model.py``): a validation molecule of the
    xtb-frames or of a charged shard is validation, a molecule of the public test split is left out.
    The training molecules of the ``extra`` shards (more drives, e.g. the recipe's section with another
    seed) join the first list; their validation molecules are left out."""
    from physff_openmm.training.config import DefaultModelConfig, load_config
    from physff_openmm.training.dataset import read_dataset
    from physff_openmm.training.recipe import CHARGED_SHARDS, shard_path

    sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "training"))
    import train_default_model as recipe_script

    cfg = load_config(recipe, DefaultModelConfig)
    val_names = {r.name for r in recipe_script._xtb_frames(cfg)[1]}
    for key in CHARGED_SHARDS:
        val_names |= {r.name for r in recipe_script._charged(cfg, key)[1]}
    held_out = recipe_script._skeletons(public_test)

    def usable(path) -> list:
        return [r for r in read_dataset(path) if not recipe_script._skeletons([r]) & held_out]

    records = usable(shard_path(cfg, "torsion_scans"))
    more = [r for path in extra or [] for r in usable(path) if r.name not in val_names]
    return [r for r in records if r.name not in val_names] + more, [r for r in records if r.name in val_names]


def centred_rmse(items: list[Item], extra: list[np.ndarray] | None) -> float:
    """Pooled RMSE of energies about each molecule's mean against the reference's."""
    errs = []
    for k, it in enumerate(items):
        e = it.e_model + (extra[k] if extra is not None else 0.0)
        errs.append((e - e.mean()) - (it.e_ref - it.e_ref.mean()))
    return ar.rmse(np.concatenate(errs)) if errs else float("nan")


def reference_errors(items: list[Item], extra: list[np.ndarray] | None) -> list[np.ndarray]:
    """Each molecule's errors of relative energies, the accuracy report's convention."""
    return [ar.relative_errors(it.e_model + (extra[k] if extra is not None else 0.0), it.e_ref) for k, it in enumerate(items)]


def torsion_probe(args) -> tuple[str, dict]:
    model, model_info, splits, test = read_splits(args)
    fit_records, held_records = shard_parts(args.recipe, test, args.extra_shard)
    fit_records = fit_records[: args.limit]
    model64 = _float64_copy(model)  # the twin parameterization makes and keeps on the model
    ev = ar.Energies(model, ar.Timer(), use_xtb=False)
    parts = ("train", "val", "test") if args.test else ("train", "val")
    items = {"xtb_fit": prepare_molecules(fit_records, ev, model64, args.form),
             "xtb_held_out": prepare_molecules(held_records, ev, model64, args.form)}
    for part in parts:
        items[f"drives_{part}"] = prepare_molecules(list(getattr(splits, part)["torsions"]), ev, model64, args.form)
        items[f"conformers_{part}"] = prepare_molecules(list(getattr(splits, part)["conformers"]), ev, model64, args.form)
    fitted = items["xtb_fit"] + (items["drives_train"] + items["conformers_train"] if args.fit_dft else [])
    if not fitted:
        raise ConfigError("no torsion drive to fit the term to")
    net = make_network(fitted[0].data["inputs"].shape[1], args.hidden, fitted[0].data["basis"].shape[-1], args.seed)
    history = fit(net, fitted, torsion_energy, centred=True, epochs=args.epochs, seed=args.seed)
    rows, drive_rows, results = [], [], {}
    for key, its in items.items():
        extra = term_values(net, its, torsion_energy)
        if key.startswith("xtb"):
            before, after = centred_rmse(its, None), centred_rmse(its, extra)
            results[key] = {"n_molecules": len(its), "rmse_before": before, "rmse_after": after}
            rows.append([key, len(its), "GFN2-xTB, about each molecule's mean", before, "", after, ""])
            continue
        eb, ea = reference_errors(its, None), reference_errors(its, extra)
        per = {it.name: [ar.rmse(b), ar.rmse(a)] for it, b, a in zip(its, eb, ea)}
        results[key] = {"n_molecules": len(its), "rmse_before": ar.rmse(np.concatenate(eb)), "rmse_after": ar.rmse(np.concatenate(ea)),
                        "per_molecule_rmse_before_after": per}
        rows.append([key, len(its), "B3LYP-D3BJ/def2-SVP", results[key]["rmse_before"], max(v[0] for v in per.values()),
                     results[key]["rmse_after"], max(v[1] for v in per.values())])
        if key.startswith("drives") and key != "drives_train":
            drive_rows += [[key.split("_")[1], name, b, a] for name, (b, a) in per.items()]
    n_rows = sum(len(it.data["inputs"]) for it in items["xtb_fit"])
    text = (
        (f"A network ({args.hidden} wide, two hidden layers) maps each proper dihedral's embeddings to V1..V3 of "
           "V1 cos(phi) + V2 cos(2 phi) + V3 cos(3 phi)" if args.form == "cosine" else
           f"A network ({args.hidden} wide, two hidden layers) maps what feats_net sees of each 1-4 pair (embeddings, "
           "pair features, path embedding) to corrections of the amplitudes of its six Gaussians (its own widths): new "
           "parameters of the 1-4 pairs within the formula")
        + f"; fitted "
        f"({args.epochs} epochs) to the model's residual on the GFN2-xTB torsion drives of {len(items['xtb_fit'])} "
        f"training molecules ({n_rows} {'dihedrals' if args.form == 'cosine' else '1-4 pairs'})"
        + (f" (with those of {', '.join(args.extra_shard)})" if args.extra_shard else "")
        + (" and on the public training split's B3LYP-D3BJ/def2-SVP drives and conformers" if args.fit_dft else "")
        + ", then measured unchanged. RMSE in kcal/mol; \"largest\": the largest per-molecule RMSE. Fit RMSE by epoch: "
        + ", ".join(f"{x:.2f}" for x in history) + ".\n\n"
        + md_table(["set", "molecules", "reference", "model RMSE", "largest", "model + torsion term RMSE", "largest"], rows)
        + "\n\nPer drive (validation and test splits):\n\n"
        + md_table(["split", "drive", "model RMSE", "model + torsion term RMSE"], drive_rows) + "\n"
    )
    return text, {"model": model_info, "form": args.form, "fit_dft": args.fit_dft, "extra_shards": args.extra_shard or [], "fit_rmse_by_epoch": history, "results": results}


# ============================================================================ induction
class InterTerm:
    """Terms between molecules fitted on top of the model: direct induction and/or Gaussian amplitudes.

    ``induction``: E_ind = -1/2 k_e sum_i alpha_i |F_i|^2, F_i the Thole-damped field of the other
    molecules' charges at atom i, alpha_i = softplus(net(h_i)) (1 A^3 at the start).
    ``pairs``: for every pair i, j of atoms in different molecules, corrections a_k to the amplitudes of its
    own six Gaussians (the class table's widths; :func:`gaussian_basis`) from a network of
    (h_i + h_j, h_i * h_j): new parameters between molecules within ``DESIGN.md``'s formula.
    """

    def __init__(self, n_in: int, hidden: int, seed: int, induction: bool, pairs: bool):
        self.alpha_net = make_network(n_in, hidden, 1, seed) if induction else None
        self.pair_net = make_network(2 * n_in, hidden, len(GAUSSIAN_CENTERS), seed + 1) if pairs else None

    def parameters(self):
        return [q for net in (self.alpha_net, self.pair_net) if net is not None for q in net.parameters()]

    def __call__(self, data: dict):
        e = 0.0
        if self.alpha_net is not None:
            e = e + induction_energy(self.alpha_net, data)
        if self.pair_net is not None:
            e = e + self.pair_energy(data)
        return e

    def pair_energy(self, data: dict):
        import torch

        i, j = data["pairs"][:, 0], data["pairs"][:, 1]
        h = data["h"]
        amp = self.pair_net(torch.cat([h[i] + h[j], h[i] * h[j]], dim=1))  # (P, 6)
        return (data["basis"] * amp.unsqueeze(0)).sum(dim=(1, 2))


def induction_energy(net, data: dict):
    """(F,) torch: direct induction between molecules of each frame, kcal/mol (polarizabilities from ``net``)."""
    import torch

    from physff_openmm.units import COULOMB_KCAL_ANGSTROM

    alpha = torch.nn.functional.softplus(net(data["h"]).squeeze(-1) + SOFTPLUS_ONE)  # (n,) A^3
    rv = data["pos"][:, :, None, :] - data["pos"][:, None, :, :]  # (F, n, n, 3): r_i - r_j
    r = torch.linalg.vector_norm(rv, dim=-1).clamp_min(1e-6)
    u3 = r**3 / torch.sqrt(alpha[:, None] * alpha[None, :])
    damped = (1.0 - torch.exp(-THOLE * u3)) * data["inter"]
    field = ((data["q"][None, None, :] * damped / r**3).unsqueeze(-1) * rv).sum(2)  # (F, n, 3) e/A^2
    return -0.5 * COULOMB_KCAL_ANGSTROM * (alpha[None, :] * (field * field).sum(-1)).sum(-1)


def prepare_dimers(records, ev, model64) -> list[Item]:
    """Each dimer's model and reference interaction energies at its finite frames, and the terms' inputs."""
    import torch
    from rdkit import Chem

    from physff_openmm.units import HARTREE_TO_KCAL

    items = []
    for rec in records:
        ref = rec.interaction_energy * HARTREE_TO_KCAL
        keep = np.flatnonzero(np.isfinite(ref))
        if not keep.size:
            continue
        pos = rec.positions[keep]
        mol = rec.to_rdkit()
        mapping: list = []
        pieces = Chem.GetMolFrags(mol, asMols=True, sanitizeFrags=True, fragsMolAtomMapping=mapping)
        expected = sorted(tuple(np.flatnonzero(rec.fragments == f).tolist()) for f in np.unique(rec.fragments))
        if sorted(tuple(sorted(f)) for f in mapping) != expected:  # as the accuracy report checks
            print(f"  {rec.name}: molecule fragments differ from the record's monomers; left out", file=sys.stderr)
            continue
        try:
            e_ab, params = ev.model_totals(mol, pos)
            e_int = e_ab - sum(ev.model_totals(piece, pos[:, list(idx)])[0] for piece, idx in zip(pieces, mapping))
        except (PhysFFError, RuntimeError) as exc:
            print(f"  {rec.name}: the model failed ({exc}); left out", file=sys.stderr)
            continue
        frag = np.zeros(rec.n_atoms, dtype=np.int64)
        for f, idx in enumerate(mapping):
            frag[list(idx)] = f
        inter = frag[:, None] != frag[None, :]
        pairs = np.argwhere(np.triu(inter))
        eq = ar.equilibrium_index(rec)
        h, _ = embeddings(model64, mol)
        data = {"h": h.float(), "q": torch.from_numpy(np.asarray(params.charges)).float(),
                "inter": torch.from_numpy(inter).float(), "pos": torch.from_numpy(pos).float(),
                "pairs": torch.from_numpy(pairs),
                "basis": torch.from_numpy(pair_gaussians(pos, pairs, params.pair_parameters()[pairs[:, 0], pairs[:, 1]],
                                                         params.switch)).float()}
        items.append(Item(rec.name, e_int, ref[keep], data, ar.ncia_subset(rec),
                          int(np.flatnonzero(keep == eq)[0]) if eq is not None and eq in keep else None,
                          None if rec.scaling is None else np.asarray(rec.scaling)[keep]))
    return items


#: Groups of dimers the induction probe reports: the accuracy report's, and the ionic H-bonds alone.
INDUCTION_GROUPS = {**ar.NCIA_GROUPS, "ionic_hydrogen_bonded": ("IHB100x10",), "all": ar.NCIA_SUBSETS}
#: The fits of the induction probe: (induction, Gaussians between molecules).
INDUCTION_VARIANTS = {"Gaussians": (False, True), "induction": (True, False), "induction + Gaussians": (True, True)}


def induction_probe(args) -> tuple[str, dict]:
    model, model_info, splits, _ = read_splits(args)
    model64 = _float64_copy(model)  # the twin parameterization makes and keeps on the model
    ev = ar.Energies(model, ar.Timer(), use_xtb=False)
    parts = ("train", "val", "test") if args.test else ("train", "val")
    items = {part: prepare_dimers(list(getattr(splits, part)["ncia"]), ev, model64) for part in parts}
    if not items["train"]:
        raise ConfigError("no NCIAtlas training dimer to fit the terms to")
    n_in = items["train"][0].data["h"].shape[1]
    histories, extras = {}, {}
    for name, (induction, pairs) in INDUCTION_VARIANTS.items():
        term = InterTerm(n_in, args.hidden, args.seed, induction, pairs)
        histories[name] = fit(term, items["train"], lambda t, d: t(d), centred=False, epochs=args.epochs, seed=args.seed)
        extras[name] = {part: term_values(term, its, lambda t, d: t(d)) for part, its in items.items()}
    rows, results = [], {}
    for part, its in items.items():
        results[part] = {}
        eq = [k for k, it in enumerate(its) if it.equilibrium is not None]
        for group, members in INDUCTION_GROUPS.items():
            sel = [k for k in eq if its[k].subset in members]
            if not sel:
                continue
            err = np.array([its[k].e_model[its[k].equilibrium] - its[k].e_ref[its[k].equilibrium] for k in sel])
            r = {"n_dimers": len(sel), "rmse_model": ar.rmse(err), "mean_signed_model": float(err.mean())}
            for name in INDUCTION_VARIANTS:
                added = np.array([extras[name][part][k][its[k].equilibrium] for k in sel])
                r[f"rmse_{name}"] = ar.rmse(err + added)
            results[part][group] = r
            rows.append([part, group, len(sel), r["rmse_model"], r["mean_signed_model"]]
                        + [r[f"rmse_{name}"] for name in INDUCTION_VARIANTS])
    by_scaling = ionic_errors_by_scaling(items)
    n_frames = sum(len(it.e_ref) for it in items["train"])
    text = (
        f"Each term's networks ({args.hidden} wide, two hidden layers) read the atom embeddings; each variant fitted "
        f"({args.epochs} epochs) to the model's interaction-energy residual at all {n_frames} frames of "
        f"{len(items['train'])} NCIAtlas training dimers, then measured at equilibrium: Gaussians between molecules "
        "(corrections to the amplitudes of each pair's own six Gaussians, the class table's widths), "
        "direct Thole-damped induction, and both. RMSE and the model's mean signed error (model - CCSD(T)/CBS) in "
        "kcal/mol. Final fit RMSE: "
        + ", ".join(f"{name} {h[-1]:.2f}" for name, h in histories.items()) + ".\n\n"
        + md_table(["split", "dimers", "n", "model RMSE", "model mean signed error"]
                   + [f"+ {name} RMSE" for name in INDUCTION_VARIANTS], rows)
        + "\n"
    )
    if by_scaling["parts"]:
        text += (
            "\nThe model alone on the ionic H-bonded dimers (IHB100x10) at each distance scaling: mean signed "
            "error (model - CCSD(T)/CBS), kcal/mol (positive: underbound).\n\n"
            + md_table(["split", "dimers"] + [f"{x:.2f}" for x in by_scaling["scalings"]],
                       [[part, row["n_dimers"], *row["mean_signed"]] for part, row in by_scaling["parts"].items()])
            + "\n"
        )
    return text, {"model": model_info, "fit_rmse_by_epoch": histories, "results": results,
                  "ionic_mean_signed_error_by_scaling": by_scaling}


def ionic_errors_by_scaling(items: dict[str, list[Item]]) -> dict:
    """The model's mean signed interaction-energy error on the IHB100x10 dimers at each distance scaling."""
    ionic = {part: [it for it in its if it.subset == "IHB100x10" and it.scaling is not None] for part, its in items.items()}
    scalings = sorted({round(float(x), 2) for its in ionic.values() for it in its for x in it.scaling})
    parts = {}
    for part, its in ionic.items():
        if not its:
            continue
        mean = []
        for x in scalings:
            err = [it.e_model[k] - it.e_ref[k] for it in its for k in np.flatnonzero(np.abs(it.scaling - x) < 1e-6)]
            mean.append(float(np.mean(err)) if err else float("nan"))
        parts[part] = {"n_dimers": len(its), "mean_signed": mean}
    return {"scalings": scalings, "parts": parts}


PROBES = {"torsion": ("A torsion term", torsion_probe), "induction": ("Induction between molecules", induction_probe)}


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("term", choices=sorted(PROBES), help="the term to probe")
    p.add_argument("--model", default="default", help="model name or file (default: %(default)s)")
    p.add_argument("--data", default="../shared/data", help="the shared data folder")
    p.add_argument("--recipe", default="training/default_model.yaml",
                   help="torsion: the recipe whose torsion-drive shard and split are used (default: %(default)s)")
    p.add_argument("--form", choices=["cosine", "pair"], default="cosine",
                   help="torsion: cosine series in the dihedral, or Gaussians of the 1-4 distance (default: %(default)s)")
    p.add_argument("--extra-shard", action="append", metavar="H5",
                   help="torsion: another shard of GFN2-xTB drives whose training molecules join the fit (repeatable)")
    p.add_argument("--fit-dft", action="store_true",
                   help="torsion: fit to the public training split's B3LYP-D3BJ/def2-SVP drives and conformers too")
    p.add_argument("--test", action="store_true", help="also measure on the public test split")
    p.add_argument("--epochs", type=int, help="passes over the fitted data (default: torsion 15, induction 30)")
    p.add_argument("--hidden", type=int, default=16, help="width of the term's network (default: %(default)s)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--limit", type=int, help="at most N records of each set and part, and N fitted molecules (quick runs)")
    p.add_argument("--out", help="results stem in benchmarks/results (default: torsion_term_probe, torsion_pair_term_probe "
                   "with --form pair, induction_term_probe)")
    args = p.parse_args(argv)
    if args.epochs is None:
        args.epochs = {"torsion": 15, "induction": 30}[args.term]
    if args.epochs < 1 or args.hidden < 1 or args.seed < 0 or (args.limit is not None and args.limit < 1):
        p.error(f"need --epochs >= 1, --hidden >= 1, --seed >= 0 and --limit >= 1, got {args.epochs}, {args.hidden}, "
                f"{args.seed}, {args.limit}")
    if args.term == "induction" and (args.form != "cosine" or args.fit_dft or args.extra_shard):
        p.error("--form, --fit-dft and --extra-shard belong to the torsion probe")
    t0 = time.perf_counter()
    title, probe = PROBES[args.term]
    logging.disable(logging.WARNING)  # reader notes on skipped records
    try:
        body, payload = probe(args)
    except PhysFFError as exc:  # a bad model, data folder or recipe: one line, nothing written
        print(f"error: {exc}", file=sys.stderr)
        return 2
    finally:
        logging.disable(logging.NOTSET)
    info = machine_info()
    model = payload["model"]
    text = (
        f"# {title} on the frozen model: how much of the missed line it takes away\n\n"
        f"Command: `{command_line(argv, __file__)}` ({info['date_utc']}; {time.perf_counter() - t0:.0f} s). "
        f"Model: {model['name']} (sha256 {str(model['sha256'])[:8]}).\n\n" + body
    )
    stem = f"{args.term}_pair_term_probe" if args.term == "torsion" and args.form == "pair" else f"{args.term}_term_probe"
    write_results(args.out or stem, {"command": command_line(argv, __file__), "machine": info,
                                                          "epochs": args.epochs, "hidden": args.hidden, **payload}, text)
    print(text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
