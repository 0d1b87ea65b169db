"""benchmarks/gaussian_well_fit.py: its pair energy is the formula's E_SR, its fits and its GFN2-xTB scans."""

from __future__ import annotations

import numpy as np
import pytest
import torch


@pytest.fixture()
def well_fit(load_benchmark):
    return load_benchmark("gaussian_well_fit")


AMPLITUDES = np.array([-120.0, 60.0, -15.0, 5.0, 0.0, 1.0])
WIDTHS = np.array([0.5, 0.4, 0.6, 0.3, 0.5, 0.5])


def _e_sr(r, first_centre=1.2):
    """The DESIGN.md short-range sum, written out: centres first_centre + 0.6 k."""
    mu = first_centre + 0.6 * np.arange(6)
    return (AMPLITUDES * np.exp(-((r[:, None] - mu) ** 2) / (WIDTHS**2 + 1e-5))).sum(1)


def test_basis_is_the_formulas_short_range_sum(well_fit):
    r = np.linspace(0.7, 4.0, 50)
    for first in (1.2, 0.6):
        a = well_fit.basis(torch.tensor(r), torch.tensor(WIDTHS), first, core=True)
        assert a.shape == (50, 8)
        coef = torch.tensor(np.r_[AMPLITUDES, 3.0, 2.0])
        np.testing.assert_allclose((a @ coef).numpy(), _e_sr(r, first) + 3.0 + 2.0 / r**12, rtol=1e-12)


def test_fits_recover_a_curve_the_formula_can_make_and_respect_the_bound(well_fit):
    r0 = 1.0
    r = well_fit.FRACTIONS * r0
    e = _e_sr(r) - _e_sr(np.array([r0]))[0]
    free = well_fit.fit(r, e, r0, 1.2, False, starts=4, steps=300, seed=0, bound=None)
    assert free["rmse_kcal_mol"] < 0.05 * np.abs(e).max()
    np.testing.assert_allclose(free["fit_kcal_mol"][well_fit.R0_INDEX], 0.0, atol=1e-9)  # relative to r0
    bounded = well_fit.fit(r, e, r0, 1.2, True, starts=2, steps=50, seed=0, bound=30.0)
    assert max(abs(a) for a in bounded["amplitudes"]) <= 30.0 and bounded["core_kcal_mol_a12"] is not None
    assert bounded["rmse_kcal_mol"] >= free["rmse_kcal_mol"]  # |120| is out of reach


def test_scan_of_water_is_a_bond_well(well_fit):
    pytest.importorskip("tblite")
    s = well_fit.scan("O", "O-H")
    e = np.array(s["xtb_kcal_mol"], dtype=float)
    assert len(e) == len(well_fit.FRACTIONS) and np.all(np.isfinite(e))
    assert e[well_fit.R0_INDEX] == 0.0 and 0.9 < s["r0_angstrom"] < 1.0
    inner = e[: well_fit.R0_INDEX]
    assert np.all(np.diff(inner) < 0) and inner[0] > 15.0  # the wall rises towards 0.8 r0
    assert e[-1] > 60.0  # and the bond costs energy to stretch


def test_bad_flags_are_refused_before_any_work(well_fit):
    with pytest.raises(SystemExit):
        well_fit.main(["--starts", "0"])
