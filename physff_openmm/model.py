"""The graph network: MPNN embeddings, charge_net, feats_net and the linear model E_lin.

Stage 1 of training fits the MPNN with the kinetic-energy heads (``atom_head``,
``bond_head``); stage 2 fits ``charge_net`` and ``feats_net`` (and fine-tunes
the rest) on total energies. A model file stores the resolved config, the
weights and the metadata (level of theory, data provenance, metrics, versions);
:func:`load_model_file` rebuilds the model from that alone.
"""

from __future__ import annotations

import hashlib
import math
from dataclasses import asdict, dataclass, fields
from pathlib import Path
from typing import Any

import torch
from torch import Tensor, nn
from torch_geometric.utils import scatter

from . import energy
from .errors import ConfigError, ModelError
from .graph import ATOM_FEATURES, BOND_FEATURES, ELEMENTS, NONCOVALENT

__all__ = ["ModelConfig", "PhysFFModel", "save_model_file", "load_model_file", "MODEL_FORMAT"]

#: Identifies a physff-openmm model file.
MODEL_FORMAT = "physff-openmm-model"
MODEL_FORMAT_VERSION = 1

_SOFTPLUS_ONE = math.log(math.e - 1.0)  # softplus(_SOFTPLUS_ONE) == 1


@dataclass
class ModelConfig:
    """Architecture and physical settings of a model (stored in every model file).

    Attributes
    ----------
    hidden : int
        Width of atom embeddings h_i (350 in the paper).
    n_steps : int
        Message-passing steps (4 in the paper).
    pair_hidden : int
        Width of the hidden layers of feats_net.
    r_on, r_off : float
        Switch of the short-range Gaussian terms, Angstrom.
    c0_ref : float
        Scale of C_0 (C6 term), kcal/mol Angstrom^6.
    c1_ref : float
        Scale of C_1 (C12 term), kcal/mol Angstrom^12.
    amplitude_ref : float
        Scale of the Gaussian amplitudes C_2, C_4, ..., kcal/mol.
    width_ref : float
        Scale of the Gaussian widths C_3, C_5, ..., Angstrom.
    """

    hidden: int = 128
    n_steps: int = 4
    pair_hidden: int = 128
    r_on: float = 5.0
    r_off: float = 6.0
    c0_ref: float = 150.0
    c1_ref: float = 1.0e5
    amplitude_ref: float = 10.0
    width_ref: float = 0.4
    atom_features: int = ATOM_FEATURES
    bond_features: int = BOND_FEATURES
    elements: tuple[str, ...] = ELEMENTS

    def __post_init__(self):
        self.elements = tuple(self.elements)
        if not (0.0 < self.r_on < self.r_off):
            raise ConfigError(f"switch needs 0 < r_on < r_off, got r_on={self.r_on}, r_off={self.r_off} Angstrom")
        for name in ("hidden", "n_steps", "pair_hidden"):
            if int(getattr(self, name)) < 1:
                raise ConfigError(f"{name} must be a positive integer, got {getattr(self, name)!r}")

    @classmethod
    def from_dict(cls, values: dict[str, Any]) -> "ModelConfig":
        """Build a config, rejecting unknown keys."""
        known = {f.name for f in fields(cls)}
        unknown = sorted(set(values) - known)
        if unknown:
            raise ConfigError(f"unknown model config keys {unknown}; valid keys: {sorted(known)}")
        return cls(**values)

    def to_dict(self) -> dict[str, Any]:
        d = asdict(self)
        d["elements"] = list(self.elements)
        return d


def _mlp(n_in: int, n_hidden: int, n_out: int) -> nn.Sequential:
    return nn.Sequential(nn.Linear(n_in, n_hidden), nn.SiLU(), nn.Linear(n_hidden, n_hidden), nn.SiLU(), nn.Linear(n_hidden, n_out))


class MessageStep(nn.Module):
    """One edge-conditioned message-passing step with a residual update.

    m_i = sum over edges (j -> i) of message_net([h_i, h_j, e_ij]) (``edge_index`` rows:
    source j, target i; both directions of each bond are listed), then
    h_i <- LayerNorm(h_i + update_net([h_i, m_i])). The sum is PyG's ``scatter``:
    the same aggregation as ``MessagePassing(aggr="add")``, without the propagate
    module that ``MessagePassing`` writes to a temporary file in every new process.
    """

    def __init__(self, hidden: int, edge_dim: int):
        super().__init__()
        self.message_net = _mlp(2 * hidden + edge_dim, hidden, hidden)
        self.update_net = _mlp(2 * hidden, hidden, hidden)
        self.norm = nn.LayerNorm(hidden)

    def forward(self, h: Tensor, edge_index: Tensor, edge_attr: Tensor) -> Tensor:
        src, dst = edge_index[0], edge_index[1]
        msg = self.message_net(torch.cat([h[dst], h[src], edge_attr], dim=-1))
        m = scatter(msg, dst, dim=0, dim_size=h.shape[0], reduce="sum")
        return self.norm(h + self.update_net(torch.cat([h, m], dim=-1)))


class PhysFFModel(nn.Module):
    """MPNN -> h_i; charge_net(h_i) -> Q_i; feats_net(h_i, h_j, e_ij) -> C_0..C_13; E_lin.

    Parameters
    ----------
    config : ModelConfig
        Architecture and physical settings.
    """

    def __init__(self, config: ModelConfig | None = None):
        super().__init__()
        self.config = config or ModelConfig()
        c = self.config
        self.atom_embed = nn.Linear(c.atom_features, c.hidden)
        self.steps = nn.ModuleList([MessageStep(c.hidden, c.bond_features) for _ in range(c.n_steps)])
        # stage 1 heads: kinetic-energy partition KD_i (atoms) and KD_ij (bonds), Hartree
        self.atom_head = _mlp(c.hidden, c.hidden, 1)
        self.bond_head = _mlp(2 * c.hidden + c.bond_features, c.hidden, 1)
        # stage 2 heads
        self.charge_net = _mlp(c.hidden, c.hidden, 1)
        self.feats_net = _mlp(2 * c.hidden + c.bond_features, c.pair_hidden, energy.N_PARAMETERS)
        with torch.no_grad():  # start from small parameters; feats_net's last layer near zero
            self.feats_net[-1].weight.mul_(0.01)
            self.feats_net[-1].bias.zero_()
            self.charge_net[-1].weight.mul_(0.1)
            self.charge_net[-1].bias.zero_()
        n_el = len(c.elements)
        # E_lin = sum_atoms w[element] + b * n_fragments, kcal/mol
        self.register_buffer("elin_weights", torch.zeros(n_el, dtype=torch.float64))
        self.register_buffer("elin_bias", torch.zeros((), dtype=torch.float64))
        # per-element offsets of the stage-1 atom head, Hartree
        self.register_buffer("kd_offsets", torch.zeros(n_el, dtype=torch.float64))
        self.metadata: dict[str, Any] = {}
        self.file_hash: str | None = None
        self.name: str | None = None

    # --- embeddings -----------------------------------------------------------------
    def embed(self, x: Tensor, edge_index: Tensor, edge_attr: Tensor) -> Tensor:
        """Atom embeddings h_i (n, hidden) from atom features and the covalent graph."""
        h = self.atom_embed(x)
        for step in self.steps:
            h = step(h, edge_index, edge_attr)
        return h

    @staticmethod
    def _pair_input(h_i: Tensor, h_j: Tensor, e_ij: Tensor) -> Tensor:
        # symmetric in i and j by construction
        return torch.cat([h_i + h_j, h_i * h_j, e_ij], dim=-1)

    # --- stage 1 --------------------------------------------------------------------
    def kinetic_terms(self, h: Tensor, species: Tensor, bond_index: Tensor, bond_attr: Tensor) -> tuple[Tensor, Tensor]:
        """Predicted KD_i (n,) and KD_ij per bond (m,), Hartree."""
        kd_atom = self.atom_head(h).squeeze(-1).to(torch.float64) + self.kd_offsets[species]
        hi, hj = h[bond_index[:, 0]], h[bond_index[:, 1]]
        kd_bond = self.bond_head(self._pair_input(hi, hj, bond_attr)).squeeze(-1).to(torch.float64)
        return kd_atom, kd_bond

    # --- stage 2 --------------------------------------------------------------------
    def charges(self, h: Tensor, fragment_index: Tensor, fragment_charge: Tensor) -> Tensor:
        """Partial charges (n,) in e; each fragment's charges sum exactly to its formal charge."""
        q = self.charge_net(h).squeeze(-1).to(torch.float64)
        n_frag = fragment_charge.numel()
        total = torch.zeros(n_frag, dtype=q.dtype, device=q.device).index_add_(0, fragment_index, q)
        count = torch.zeros(n_frag, dtype=q.dtype, device=q.device).index_add_(0, fragment_index, torch.ones_like(q))
        shift = (fragment_charge.to(q.dtype) - total) / count
        return q + shift[fragment_index]

    def pair_parameters(self, h_i: Tensor, h_j: Tensor, e_ij: Tensor) -> Tensor:
        """C_0..C_13 (P, 14), float64, in kcal/mol and Angstrom; symmetric in i and j.

        C_0, C_1 >= 0 (C6, C12 coefficients), C_{2k} Gaussian amplitudes, C_{2k+1} widths >= 0.
        """
        c = self.config
        raw = self.feats_net(self._pair_input(h_i, h_j, e_ij)).to(torch.float64)
        c0 = c.c0_ref * nn.functional.softplus(raw[:, 0:1] + _SOFTPLUS_ONE)
        c1 = c.c1_ref * nn.functional.softplus(raw[:, 1:2] + _SOFTPLUS_ONE)
        amp = c.amplitude_ref * raw[:, 2::2]
        width = c.width_ref * nn.functional.softplus(raw[:, 3::2] + _SOFTPLUS_ONE)
        out = torch.empty(raw.shape[0], energy.N_PARAMETERS, dtype=torch.float64, device=raw.device)
        out[:, 0:1] = c0
        out[:, 1:2] = c1
        out[:, 2::2] = amp
        out[:, 3::2] = width
        return out

    def linear_energy(self, species: Tensor, n_fragments: int | Tensor) -> Tensor:
        """E_lin = sum_atoms w[element] + b * n_fragments, kcal/mol."""
        return self.elin_weights[species].sum() + self.elin_bias * n_fragments

    def pair_terms(self, data) -> tuple[Tensor, Tensor]:
        """Charges (n,) e and pair parameters (P, 14) of ``data.pair_index``: the energy's
        topology-dependent part, which does not depend on positions.

        Compute them once where several quantities of one batch need them
        (energies, interaction energies, covalent wells) and pass them as ``terms``.
        """
        h = self.embed(data.x, data.edge_index, data.edge_attr)
        q = self.charges(h, data.fragment_index, data.fragment_charge)
        i, j = data.pair_index[:, 0], data.pair_index[:, 1]
        return q, self.pair_parameters(h[i], h[j], data.pair_attr)

    def energy(self, data, positions: Tensor, terms: tuple[Tensor, Tensor] | None = None) -> Tensor:
        """Total energies (kcal/mol) of a batch of graphs built with ``with_pairs=True``.

        Parameters
        ----------
        data : MolGraph or a torch_geometric Batch of them
        positions : Tensor
            (n_atoms, 3) Angstrom, float64 recommended.
        terms : tuple of Tensor, optional
            ``pair_terms(data)``, when already computed.

        Returns
        -------
        Tensor
            (n_graphs,) energies E_lin + pair terms, kcal/mol.
        """
        q, params = self.pair_terms(data) if terms is None else terms
        i, j = data.pair_index[:, 0], data.pair_index[:, 1]
        covalent = data.pair_attr[:, NONCOVALENT] < 0.5
        pos = positions.to(torch.float64)
        r = torch.linalg.vector_norm(pos[i] - pos[j], dim=-1)
        c = self.config
        e_pair = energy.pair_energy(r, q[i], q[j], params, covalent, c.r_on, c.r_off)
        batch = getattr(data, "batch", None)
        if batch is None:
            batch = torch.zeros(data.num_nodes, dtype=torch.long, device=pos.device)
        n_graphs = int(batch.max()) + 1 if batch.numel() else 1
        out = torch.zeros(n_graphs, dtype=torch.float64, device=pos.device)
        out.index_add_(0, batch[i], e_pair)
        out.index_add_(0, batch, self.elin_weights[data.species])
        frag_batch = torch.zeros(data.fragment_charge.numel(), dtype=torch.long, device=pos.device)
        frag_batch[data.fragment_index] = batch
        out.index_add_(0, frag_batch, self.elin_bias.expand(frag_batch.shape[0]))
        return out


def file_sha256(path: str | Path) -> str:
    """SHA-256 of a file's bytes."""
    h = hashlib.sha256()
    with open(path, "rb") as fh:
        for chunk in iter(lambda: fh.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def save_model_file(model: PhysFFModel, path: str | Path, metadata: dict[str, Any] | None = None) -> str:
    """Write a model file (config, weights, metadata); returns its SHA-256.

    The file is written to a temporary name and renamed, so it is either whole or absent.
    """
    import torch_geometric

    path = Path(path)
    meta = dict(model.metadata)
    meta.update(metadata or {})
    meta.setdefault("versions", {})
    meta["versions"].update({"torch": str(torch.__version__), "torch_geometric": str(torch_geometric.__version__)})
    payload = {
        "format": MODEL_FORMAT,
        "format_version": MODEL_FORMAT_VERSION,
        "config": model.config.to_dict(),
        "state_dict": {k: v.detach().cpu() for k, v in model.state_dict().items()},
        "metadata": meta,
    }
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".partial")
    torch.save(payload, tmp)
    tmp.replace(path)
    return file_sha256(path)


def load_model_file(path: str | Path) -> PhysFFModel:
    """Load a model file written by :func:`save_model_file` (evaluation mode, float32 weights)."""
    path = Path(path)
    if not path.is_file():
        raise ModelError(f"model file {str(path)!r} does not exist")
    try:
        payload = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:  # torch raises many kinds for corrupt files
        raise ModelError(f"cannot read model file {str(path)!r}: {exc}") from None
    if not isinstance(payload, dict) or payload.get("format") != MODEL_FORMAT:
        raise ModelError(f"{str(path)!r} is not a physff-openmm model file")
    if payload.get("format_version", 0) > MODEL_FORMAT_VERSION:
        raise ModelError(
            f"model file {str(path)!r} has format version {payload['format_version']}; "
            f"this physff-openmm reads up to {MODEL_FORMAT_VERSION}: upgrade the package"
        )
    model = PhysFFModel(ModelConfig.from_dict(payload["config"]))
    try:
        model.load_state_dict(payload["state_dict"])
    except RuntimeError as exc:
        raise ModelError(f"model file {str(path)!r} does not match its config: {exc}") from None
    model.metadata = dict(payload.get("metadata", {}))
    model.file_hash = file_sha256(path)
    model.eval()
    return model
