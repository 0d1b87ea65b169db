"""The TorchScript module behind the TorchForce: switched Gaussian short-range terms.

The per-topology parameters are baked in as buffers. Two layouts, chosen by size:

- ``listed``: every atom pair i < j with its own C_2..C_13 (exact per pair, for
  molecules and small complexes);
- ``classes``: the class-by-class table for non-covalent pairs plus a correction
  for covalent pairs (covalent parameters minus the class-table ones); only pairs
  within r_off are gathered at each step.

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
        iu, ju = np.triu_indices(n, 1)
        self.register_buffer("pair_i", torch.from_numpy(iu.astype(np.int64)))
        self.register_buffer("pair_j", torch.from_numpy(ju.astype(np.int64)))
        cov = params.covalent_pairs
        self.register_buffer("cov_i", torch.from_numpy(cov[:, 0].astype(np.int64)))
        self.register_buffer("cov_j", torch.from_numpy(cov[:, 1].astype(np.int64)))
        cls = params.atom_classes
        if self.listed:
            sr = params.pair_parameters()[iu, ju, 2:]
            self.register_buffer("pair_params", torch.tensor(sr, dtype=dtype))
            self.register_buffer("classes", torch.zeros(0, dtype=torch.long))
            self.register_buffer("class_table", torch.zeros(0, 0, 12, dtype=dtype))
            self.register_buffer("cov_params", torch.zeros(0, 12, dtype=dtype))
            self.register_buffer("cov_class_params", torch.zeros(0, 12, dtype=dtype))
        else:
            self.register_buffer("pair_params", torch.zeros(0, 12, dtype=dtype))
            self.register_buffer("classes", torch.from_numpy(cls.astype(np.int64)))
            self.register_buffer("class_table", torch.tensor(params.class_parameters[:, :, 2:], dtype=dtype))
            self.register_buffer("cov_params", torch.tensor(params.covalent_parameters[:, 2:], dtype=dtype))
            cov_cls = params.class_parameters[cls[cov[:, 0]], cls[cov[:, 1]], 2:]
            self.register_buffer("cov_class_params", torch.tensor(cov_cls, dtype=dtype))

    def forward(self, positions: Tensor) -> Tensor:
        pos = positions.to(self.pair_params.dtype) * self.nm_to_angstrom
        if self.listed:
            r = torch.linalg.vector_norm(pos[self.pair_i] - pos[self.pair_j], dim=1)
            e = energy.switch(r, self.r_on, self.r_off) * energy.short_range(r, self.pair_params)
            return e.sum() * self.kcal_to_kj
        r_all = torch.linalg.vector_norm(pos[self.pair_i] - pos[self.pair_j], dim=1)
        near = torch.nonzero(r_all < self.r_off).squeeze(1)
        i = self.pair_i[near]
        j = self.pair_j[near]
        r = r_all[near]
        p = self.class_table[self.classes[i], self.classes[j]]
        e = (energy.switch(r, self.r_on, self.r_off) * energy.short_range(r, p)).sum()
        # covalent pairs: their own parameters instead of the class-table ones
        rc = torch.linalg.vector_norm(pos[self.cov_i] - pos[self.cov_j], dim=1)
        sc = energy.switch(rc, self.r_on, self.r_off)
        e = e + (sc * (energy.short_range(rc, self.cov_params) - energy.short_range(rc, self.cov_class_params))).sum()
        return e * self.kcal_to_kj

