"""The TorchScript module behind the TorchForce: switched Gaussian short-range terms.

The per-topology parameters are baked in as buffers. Two layouts, chosen by size:

- ``listed``: every atom pair i < j with its own C_2..C_13 (exact per pair, for
  molecules and small complexes);
- ``classes``: pairs within fragments listed with their own C_2..C_13, pairs
  between fragments from the class-by-class table; of those, only pairs within
  r_off are gathered at each step.

Both use :mod:`physff_openmm.energy`, the one implementation of the formula.
"""

from __future__ import annotations

import numpy as np
import torch
from torch import Tensor

from . import energy
from .units import KCAL_TO_KJ, NM_TO_ANGSTROM

__all__ = ["ShortRangeModule", "LISTED_PAIR_LIMIT"]

#: Above this many atom pairs the module switches from per-pair to class-table storage.
LISTED_PAIR_LIMIT: int = 200_000


class ShortRangeModule(torch.nn.Module):
    """E = sum_{i<j} S(r_ij) E_SR(r_ij; C_ij) in kJ/mol from positions in nm.

    Parameters
    ----------
    params : ParameterSet
    layout : {"auto", "listed", "classes"}
    dtype : torch.dtype
        Arithmetic precision (float64 by default).
    """

    def __init__(self, params, layout: str = "auto", dtype: torch.dtype = torch.float64):
        super().__init__()
        n = params.n_atoms
        n_pairs = n * (n - 1) // 2
        if layout == "auto":
            layout = "listed" if n_pairs <= LISTED_PAIR_LIMIT else "classes"
        if layout not in ("listed", "classes"):
            raise ValueError(f"layout must be 'auto', 'listed' or 'classes', got {layout!r}")
        self.listed: bool = layout == "listed"
        self.r_on: float = float(params.switch[0])
        self.r_off: float = float(params.switch[1])
        self.nm_to_angstrom: float = NM_TO_ANGSTROM
        self.kcal_to_kj: float = KCAL_TO_KJ
        if self.listed:
            iu, ju = np.triu_indices(n, 1)
            sr = params.pair_parameters()[iu, ju, 2:]
            inter_i, inter_j = np.zeros(0, np.int64), np.zeros(0, np.int64)
        else:
            iu, ju = params.intra_pairs[:, 0], params.intra_pairs[:, 1]
            sr = params.intra_parameters[:, 2:]
            inter, _ = params.inter_pairs()
            inter_i, inter_j = inter[:, 0], inter[:, 1]
        self.register_buffer("pair_i", torch.from_numpy(np.ascontiguousarray(iu, dtype=np.int64)))
        self.register_buffer("pair_j", torch.from_numpy(np.ascontiguousarray(ju, dtype=np.int64)))
        self.register_buffer("pair_params", torch.tensor(sr, dtype=dtype).reshape(-1, 12))
        self.register_buffer("inter_i", torch.from_numpy(np.ascontiguousarray(inter_i, dtype=np.int64)))
        self.register_buffer("inter_j", torch.from_numpy(np.ascontiguousarray(inter_j, dtype=np.int64)))
        self.register_buffer("classes", torch.from_numpy(params.atom_classes.astype(np.int64)))
        self.register_buffer("class_table", torch.tensor(params.class_parameters[:, :, 2:], dtype=dtype))

    def forward(self, positions: Tensor) -> Tensor:
        pos = positions.to(self.pair_params.dtype) * self.nm_to_angstrom
        r = torch.linalg.vector_norm(pos[self.pair_i] - pos[self.pair_j], dim=1)
        e = (energy.switch(r, self.r_on, self.r_off) * energy.short_range(r, self.pair_params)).sum()
        if self.listed:
            return e * self.kcal_to_kj
        # pairs between fragments: class tables, only those within r_off
        r_all = torch.linalg.vector_norm(pos[self.inter_i] - pos[self.inter_j], dim=1)
        near = torch.nonzero(r_all < self.r_off).squeeze(1)
        i = self.inter_i[near]
        j = self.inter_j[near]
        p = self.class_table[self.classes[i], self.classes[j]]
        e = e + (energy.switch(r_all[near], self.r_on, self.r_off) * energy.short_range(r_all[near], p)).sum()
        return e * self.kcal_to_kj
