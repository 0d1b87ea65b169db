"""Tests of physff_openmm.molecule: input kinds, atom order, complexes, validation errors."""

from __future__ import annotations

import random
import warnings
from pathlib import Path

import numpy as np
import pytest
from rdkit import Chem

from physff_openmm.errors import (
    ChargeError,
    MissingHydrogenError,
    MoleculeError,
    MoleculeFileError,
    MoleculeParseError,
    PhysFFError,
    RadicalError,
    UnsupportedElementError,
)
from physff_openmm.molecule import (
    SUPPORTED_ELEMENTS,
    combine_molecules,
    ensure_conformer,
    fragment_atom_indices,
    fragment_charges,
    load_molecule,
    positions_angstrom,
    read_records,
    validate_molecule,
)

# acetate and methylammonium (charged), S, P, Cl, Br, F, aromatic rings, stereo
ROUND_TRIP_SMILES = [
    "CC(=O)[O-]",
    "C[NH3+]",
    "CSc1ccc(Cl)cc1Br",
    "COP(=O)(O)O",
    "NS(=O)(=O)c1ccccc1",
    "FC(F)(F)C(=O)O",
    "C[C@H](N)C(=O)O",
]


# ---------------------------------------------------------------------------
# helpers
# ---------------------------------------------------------------------------


def embedded(smiles: str, seed: int = 7) -> Chem.Mol:
    """Validated molecule with explicit H and a 3D conformer."""
    return ensure_conformer(load_molecule(smiles), seed=seed)


def apart(parts: list[Chem.Mol], spacing: float = 6.0) -> list[Chem.Mol]:
    """The molecules moved ``spacing`` Angstrom apart along x, in place (a complex, not atoms on top of each other)."""
    for k, p in enumerate(parts):
        conf = p.GetConformer()
        for a in range(p.GetNumAtoms()):
            x = conf.GetAtomPosition(a)
            conf.SetAtomPosition(a, (x.x + spacing * k, x.y, x.z))
    return parts


def shuffled(mol: Chem.Mol, seed: int = 3) -> Chem.Mol:
    """Same molecule, atoms in a random (non-canonical) order, H mixed with heavy atoms."""
    order = list(range(mol.GetNumAtoms()))
    random.Random(seed).shuffle(order)
    return Chem.RenumberAtoms(mol, order)


def xyz_block(mol: Chem.Mol, comment: str = "") -> str:
    pos = mol.GetConformer().GetPositions()
    lines = [str(mol.GetNumAtoms()), comment]
    for atom, (x, y, z) in zip(mol.GetAtoms(), pos):
        lines.append(f"{atom.GetSymbol():<2s} {x:14.8f} {y:14.8f} {z:14.8f}")
    return "\n".join(lines) + "\n"


def bond_set(mol: Chem.Mol) -> set[tuple[int, int]]:
    return {tuple(sorted((b.GetBeginAtomIdx(), b.GetEndAtomIdx()))) for b in mol.GetBonds()}


def symbols(mol: Chem.Mol) -> list[str]:
    return [a.GetSymbol() for a in mol.GetAtoms()]


def charges(mol: Chem.Mol) -> list[int]:
    return [a.GetFormalCharge() for a in mol.GetAtoms()]


def canonical(mol: Chem.Mol) -> str:
    """Canonical SMILES without H: same for resonance forms that differ only in which O carries the charge."""
    return Chem.MolToSmiles(Chem.RemoveHs(mol))


def assert_same_molecule(loaded: Chem.Mol, reference: Chem.Mol, *, exact_charges: bool = True) -> None:
    assert symbols(loaded) == symbols(reference)
    assert bond_set(loaded) == bond_set(reference)
    assert canonical(loaded) == canonical(reference)
    assert sum(charges(loaded)) == sum(charges(reference))
    if exact_charges:
        assert charges(loaded) == charges(reference)
    assert all(a.GetTotalNumHs() == 0 for a in loaded.GetAtoms())


def write(path: Path, text: str) -> Path:
    path.write_text(text)
    return path


# ---------------------------------------------------------------------------
# SMILES and RDKit molecules
# ---------------------------------------------------------------------------


def test_supported_elements():
    assert SUPPORTED_ELEMENTS == ("H", "C", "N", "O", "F", "S", "Cl", "Br", "P")


def test_smiles_adds_hydrogens_after_heavy_atoms_in_smiles_order():
    mol = load_molecule("OCC[NH3+]")
    assert symbols(mol)[:4] == ["O", "C", "C", "N"]
    assert set(symbols(mol)[4:]) == {"H"}
    assert mol.GetNumAtoms() == 4 + 1 + 2 + 2 + 3
    assert mol.GetNumConformers() == 0
    assert sum(charges(mol)) == 1


def test_smiles_keeps_written_hydrogen_atoms_in_place():
    mol = load_molecule("[H]C([H])([H])O")
    assert symbols(mol) == ["H", "C", "H", "H", "O", "H"]


def test_smiles_complex_fragments():
    mol = load_molecule("CC(=O)[O-].C[NH3+]", charge=0)
    frags = fragment_atom_indices(mol)
    assert len(frags) == 2
    assert frags[0][:4] == (0, 1, 2, 3)  # acetate heavy atoms
    assert {4, 5} <= set(frags[1])  # methylammonium heavy atoms
    assert sorted(i for f in frags for i in f) == list(range(mol.GetNumAtoms()))
    assert fragment_charges(mol) == [-1, 1]


@pytest.mark.parametrize("smiles", ROUND_TRIP_SMILES)
def test_rdkit_mol_with_hydrogens_round_trips_as_copy(smiles):
    ref = Chem.AddHs(Chem.MolFromSmiles(smiles))
    mol = load_molecule(ref)
    assert mol is not ref
    assert_same_molecule(mol, ref)


def test_rdkit_mol_keeps_conformer_and_order():
    ref = shuffled(embedded("CSc1ccc(Cl)cc1Br"))
    mol = load_molecule(ref)
    assert symbols(mol) == symbols(ref)
    np.testing.assert_allclose(positions_angstrom(mol), ref.GetConformer().GetPositions())


# ---------------------------------------------------------------------------
# files
# ---------------------------------------------------------------------------


@pytest.mark.parametrize("smiles", ROUND_TRIP_SMILES)
@pytest.mark.parametrize("kind", ["sdf", "sdf-v3000", "mol", "pdb", "xyz"])
def test_file_round_trip(tmp_path, smiles, kind):
    ref = shuffled(embedded(smiles))
    total = sum(charges(ref))
    if kind == "sdf":
        path = write(tmp_path / "m.sdf", Chem.MolToMolBlock(ref) + "$$$$\n")
    elif kind == "sdf-v3000":
        path = write(tmp_path / "m.SDF", Chem.MolToV3KMolBlock(ref) + "$$$$\n")
    elif kind == "mol":
        path = write(tmp_path / "m.mol", Chem.MolToMolBlock(ref))
    elif kind == "pdb":
        path = write(tmp_path / "m.pdb", Chem.MolToPDBBlock(ref))
    else:
        path = write(tmp_path / "m.xyz", xyz_block(ref, f"charge={total}"))
    for source in (path, str(path)):
        mol = load_molecule(source, charge=total)
        # XYZ bond perception may put a resonance charge on the other oxygen of acetate
        assert_same_molecule(mol, ref, exact_charges=(kind != "xyz"))
        np.testing.assert_allclose(positions_angstrom(mol), ref.GetConformer().GetPositions(), atol=1e-3)
        assert mol.GetConformer().Is3D()


def test_sdf_keeps_stereo(tmp_path):
    ref = embedded("C[C@H](N)C(=O)O")
    path = write(tmp_path / "ala.sdf", Chem.MolToMolBlock(ref))
    assert Chem.MolToSmiles(load_molecule(path)) == Chem.MolToSmiles(ref)


def test_multi_record_sdf_is_one_complex_in_file_order(tmp_path):
    parts = apart([embedded("CC(=O)[O-]"), embedded("C[NH3+]"), embedded("O")])
    text = "".join(Chem.MolToMolBlock(p) + "$$$$\n" for p in parts) + "\n\n"
    path = write(tmp_path / "complex.sdf", text)
    mol = load_molecule(path, charge=0)
    sizes = [p.GetNumAtoms() for p in parts]
    starts = np.cumsum([0] + sizes)
    assert fragment_atom_indices(mol) == [tuple(range(starts[k], starts[k + 1])) for k in range(3)]
    assert fragment_charges(mol) == [-1, 1, 0]
    assert symbols(mol) == sum((symbols(p) for p in parts), [])
    expected = np.concatenate([p.GetConformer().GetPositions() for p in parts])
    np.testing.assert_allclose(positions_angstrom(mol), expected, atol=1e-3)

    records = read_records(path)
    assert [r.GetNumAtoms() for r in records] == sizes
    assert [sum(charges(r)) for r in records] == [-1, 1, 0]
    with pytest.raises(ChargeError, match=r"record 1 .*formal charges add up to -1 .* charge of \+0"):
        read_records(path, charge=0)


def test_pdb_without_conect_records_perceives_bonds(tmp_path):
    ref = shuffled(embedded("CC(=O)[O-]"))
    block = "\n".join(l for l in Chem.MolToPDBBlock(ref).splitlines() if not l.startswith("CONECT"))
    path = write(tmp_path / "acetate.pdb", block + "\n")
    mol = load_molecule(path, charge=-1)
    assert_same_molecule(mol, ref, exact_charges=False)
    with pytest.raises(RadicalError, match=r"odd number.*charge may be wrong"):
        load_molecule(path)  # default charge 0


def test_xyz_charge_from_comment_argument_and_default(tmp_path):
    ref = embedded("CC(=O)[O-]")
    with_token = write(tmp_path / "a.xyz", xyz_block(ref, "acetate charge=-1 energy=-228.5"))
    float_token = write(tmp_path / "c.xyz", xyz_block(ref, 'Properties=species:S:1:pos:R:3 charge=-1.0 pbc="F F F"'))
    assert sum(charges(load_molecule(float_token))) == -1
    without = write(tmp_path / "b.xyz", xyz_block(ref, "acetate"))
    assert sum(charges(load_molecule(with_token))) == -1
    assert sum(charges(load_molecule(without, charge=-1))) == -1
    assert canonical(load_molecule(without, charge=-1)) == canonical(ref)
    # no charge anywhere: 0 is assumed, which is an odd number of electrons for acetate
    with pytest.raises(RadicalError, match=r"charge of \+0 .*charge may be wrong"):
        load_molecule(without)
    # even electron count but impossible charge: bond perception fails
    with pytest.raises(ChargeError, match=r"total charge of \+1 .*charge may be wrong"):
        load_molecule(with_token, charge=1)
    # a charge key that is not a whole number is refused, not read as 0; the argument still wins
    for token in ("charge=abc", "charge: -0.5", "charge="):
        unreadable = write(tmp_path / "d.xyz", xyz_block(ref, f"acetate {token}"))
        with pytest.raises(ChargeError, match=r"line 2 gives the charge as .*not a whole number"):
            load_molecule(unreadable)
        assert sum(charges(load_molecule(unreadable, charge=-1))) == -1


def test_xyz_wrong_charge_that_charges_carbon_is_refused(tmp_path):
    """Too negative a charge still finds bond orders, with carbanions: refused, not a strange molecule."""
    ref = embedded("CC(=O)Nc1ccc(O)cc1")
    path = write(tmp_path / "paracetamol.xyz", xyz_block(ref, "paracetamol"))
    assert canonical(load_molecule(path)) == canonical(ref)
    for q in (-2, -4):
        with pytest.raises(ChargeError, match=rf"charge of {q:+d} .*formal charges on carbon .*charge is probably wrong"):
            load_molecule(path, charge=q)
    isocyanide = embedded("C[N+]#[C-]")  # a charged carbon in a triple bond is a real structure
    assert canonical(load_molecule(write(tmp_path / "nc.xyz", xyz_block(isocyanide, "")))) == canonical(isocyanide)


def test_pdb_with_conect_but_no_bond_orders(tmp_path):
    """OpenMM's PDBFile writes CONECT records without repeating double bonds: the orders are perceived."""
    from openmm import app, unit

    for smiles, charge in (("CC(=O)Nc1ccc(O)cc1", None), ("CC(=O)[O-]", -1)):
        ref = embedded(smiles)
        top = app.Topology()
        res = top.addResidue("UNL", top.addChain())
        atoms = [top.addAtom(f"{a.GetSymbol()}{a.GetIdx()}", app.Element.getByAtomicNumber(a.GetAtomicNum()), res)
                 for a in ref.GetAtoms()]
        for b in ref.GetBonds():
            top.addBond(atoms[b.GetBeginAtomIdx()], atoms[b.GetEndAtomIdx()])
        path = tmp_path / f"omm{len(atoms)}.pdb"
        with open(path, "w") as fh:
            app.PDBFile.writeFile(top, ref.GetConformer().GetPositions() * unit.angstrom, fh, keepIds=True)
        assert "CONECT" in path.read_text()
        mol = load_molecule(path, charge=charge)
        assert canonical(mol) == canonical(ref)


def test_bond_perception_is_refused_for_large_structures(tmp_path):
    """RDKit's bond-order search can run for many minutes on a protein: above a size it is refused at once."""
    from physff_openmm.molecule import PERCEIVE_MAX_ATOMS

    ref = embedded("C" * 70)  # 212 atoms
    assert ref.GetNumAtoms() > PERCEIVE_MAX_ATOMS
    block = "\n".join(l for l in Chem.MolToPDBBlock(ref).splitlines() if not l.startswith("CONECT"))
    with pytest.raises(MoleculeParseError, match=rf"212 atoms; bond orders are perceived .* up to {PERCEIVE_MAX_ATOMS}"):
        load_molecule(write(tmp_path / "big.pdb", block + "\n"))
    assert load_molecule(write(tmp_path / "big.sdf", Chem.MolToMolBlock(ref))).GetNumAtoms() == 212


def test_xyz_multi_fragment_complex(tmp_path):
    ref = embedded("CC(=O)[O-].C[NH3+].[Cl-].[NH4+]")
    path = write(tmp_path / "complex.xyz", xyz_block(ref, "charge=0"))
    mol = load_molecule(path)
    assert fragment_atom_indices(mol) == fragment_atom_indices(ref)
    assert fragment_charges(mol) == [-1, 1, -1, 1]
    assert canonical(mol) == canonical(ref)


def test_xyz_uses_first_frame_and_read_records_all(tmp_path):
    a = embedded("CO")
    b = ensure_conformer(load_molecule("CO"), seed=99)
    path = write(tmp_path / "traj.xyz", xyz_block(a, "frame 1") + xyz_block(b, "frame 2"))
    with pytest.warns(UserWarning, match=r"traj.xyz holds 2 frames; the first one is used"):
        mol = load_molecule(path)
    np.testing.assert_allclose(positions_angstrom(mol), a.GetConformer().GetPositions(), atol=1e-6)
    frames = read_records(path)
    assert len(frames) == 2
    np.testing.assert_allclose(positions_angstrom(frames[1]), b.GetConformer().GetPositions(), atol=1e-6)


def test_xyz_hydroxide_anion_and_lowercase_symbols(tmp_path):
    text = "2\ncharge=-1\nO 0.0 0.0 0.0\nh 0.0 0.0 0.97\n"
    mol = load_molecule(write(tmp_path / "oh.XYZ", text))
    assert symbols(mol) == ["O", "H"]
    assert charges(mol) == [-1, 0]


# ---------------------------------------------------------------------------
# errors
# ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("source", "pattern"),
    [
        ("CCI", r"atom 2 \(I\).*not supported.*H, C, N, O, F, S, Cl, Br, P"),
        ("[Na+].[Cl-]", r"atom 0 \(Na\)"),
        ("*CC", r"atom 0 \(\*\).*dummy"),
    ],
)
def test_unsupported_elements(source, pattern):
    with pytest.raises(UnsupportedElementError, match=pattern):
        load_molecule(source)


def test_unsupported_element_in_xyz_file(tmp_path):
    path = write(tmp_path / "i.xyz", "5\n\nC 0 0 0\nI 2.1 0 0\nH -0.4 0.9 0\nH -0.4 -0.5 0.8\nH -0.4 -0.5 -0.8\n")
    with pytest.raises(UnsupportedElementError, match=r"i\.xyz.*atom 1 \(I\)"):
        load_molecule(path)


def test_radical_smiles():
    with pytest.raises(RadicalError, match=r"atom 0 \(C\).*unpaired"):
        load_molecule("[CH3]")


def test_radical_rdkit_mol():
    mol = Chem.AddHs(Chem.MolFromSmiles("CC[O]"))
    with pytest.raises(RadicalError, match=r"atom 2 \(O\)"):
        validate_molecule(mol)


def test_missing_hydrogens_rdkit_mol():
    with pytest.raises(MissingHydrogenError, match=r"atom 0 \(C\) has 3 implicit.*Chem\.AddHs"):
        load_molecule(Chem.MolFromSmiles("CCO"))
    # an explicit hydrogen count is not an explicit hydrogen atom either
    with pytest.raises(MissingHydrogenError, match=r"atom 0 \(N\) has 4"):
        validate_molecule(Chem.MolFromSmiles("[NH4+]"))


def test_missing_hydrogens_pdb(tmp_path):
    heavy = Chem.RemoveHs(embedded("CCO"))
    path = write(tmp_path / "noh.pdb", Chem.MolToPDBBlock(heavy))
    assert "CONECT" in path.read_text()
    with pytest.raises(MissingHydrogenError, match=r"noh\.pdb.*atom 0 \(C\).*implicit hydrogen"):
        load_molecule(path)


def test_missing_hydrogens_pdb_without_conect(tmp_path):
    heavy = Chem.RemoveHs(embedded("CCO"))
    block = "\n".join(l for l in Chem.MolToPDBBlock(heavy).splitlines() if not l.startswith("CONECT"))
    with pytest.raises(MissingHydrogenError, match=r"no hydrogen atoms"):
        load_molecule(write(tmp_path / "noh.pdb", block))


def test_charge_mismatch():
    with pytest.raises(ChargeError, match=r"add up to -1 .*charge of \+0"):
        load_molecule("CC(=O)[O-]", charge=0)
    with pytest.raises(ChargeError, match=r"add up to \+1 .*charge of -1"):
        validate_molecule(load_molecule("C[NH3+]"), charge=-1)


def test_charge_mismatch_sdf(tmp_path):
    path = write(tmp_path / "acetate.sdf", Chem.MolToMolBlock(embedded("CC(=O)[O-]")))
    with pytest.raises(ChargeError, match=r"acetate\.sdf.*-1.*\+0"):
        load_molecule(path, charge=0)


@pytest.mark.parametrize("smiles", ["C1CC(", "C1CC", "Cq", "CC)C"])
def test_broken_smiles(smiles):
    with pytest.raises(MoleculeParseError, match=r"could not parse SMILES '" + __import__("re").escape(smiles)):
        load_molecule(smiles)


def test_broken_smiles_quotes_rdkit(capfd):
    from rdkit import rdBase

    # RDKit's own text is only available where rdBase.CaptureErrorLog exists (RDKit >= 2025)
    pattern = r"(?s)C1CC\(.*position 5" if hasattr(rdBase, "CaptureErrorLog") else r"C1CC\("
    with pytest.raises(MoleculeParseError, match=pattern):
        load_molecule("C1CC(")
    assert "SMILES Parse Error" not in capfd.readouterr().err  # RDKit kept quiet


def test_sanitization_failure():
    with pytest.raises(MoleculeParseError, match=r"atom 0 \(C\).*[Vv]alence"):
        load_molecule("C(C)(C)(C)(C)C")
    with pytest.raises(MoleculeParseError, match=r"kekulize"):
        load_molecule("c1cccc1")


def test_empty_molecules():
    with pytest.raises(MoleculeParseError, match=r"no atoms"):
        load_molecule("")
    with pytest.raises(MoleculeParseError, match=r"no atoms"):
        validate_molecule(Chem.Mol())


def test_missing_file(tmp_path):
    missing = tmp_path / "nothere.sdf"
    with pytest.raises(MoleculeFileError, match=r"nothere\.sdf.*no such file"):
        load_molecule(missing)
    with pytest.raises(MoleculeFileError, match=r"nothere\.sdf"):
        load_molecule(str(missing))  # str with a known suffix is a path
    with pytest.raises(OSError):  # MoleculeFileError is also an OSError
        read_records(missing)


def test_directory(tmp_path):
    with pytest.raises(MoleculeFileError, match=r"directory"):
        load_molecule(tmp_path)
    with pytest.raises(MoleculeFileError, match=r"directory"):
        load_molecule(str(tmp_path))  # an existing str is a path


@pytest.mark.parametrize("name", ["empty.sdf", "empty.pdb", "empty.xyz", "blank.mol"])
def test_empty_file(tmp_path, name):
    path = write(tmp_path / name, "" if name.startswith("empty") else "\n  \n")
    with pytest.raises(MoleculeFileError, match=rf"{name}.*empty"):
        load_molecule(path)


def test_unknown_suffix(tmp_path):
    path = write(tmp_path / "mol.cif", "data_x\n")
    with pytest.raises(MoleculeFileError, match=r"mol\.cif.*unknown file suffix '\.cif'"):
        load_molecule(path)


@pytest.mark.parametrize(
    ("text", "pattern"),
    [
        ("3\n\nO 0 0 0\nH 0 0 0.97\nH 0.9 zero 0\n", r"line 5: y coordinate 'zero' is not a number"),
        ("3\n\nO 0 0 0\nH 0 0 0.97\nH 0.9 0\n", r"line 5: expected 'element x y z'"),
        ("three\n\nO 0 0 0\n", r"line 1: expected the number of atoms"),
        ("4\n\nO 0 0 0\nH 0 0 0.97\nH 0.9 0 0\n", r"line 6: expected atom 4 of 4.*atom count may be wrong"),
        ("2\n\nO 0 0 0\nH 0 0 0.97\nH 0.9 0 0\n", r"line 5: unexpected line.*atom count may be wrong"),
        ("3\n\nO 0 0 0\nXq 0 0 0.97\nH 0.9 0 0\n", r"line 4: unknown element symbol 'Xq'"),
    ],
)
def test_garbled_xyz(tmp_path, text, pattern):
    path = write(tmp_path / "bad.xyz", text)
    with pytest.raises(MoleculeParseError, match=r"bad\.xyz.*" + pattern):
        load_molecule(path)


def test_garbled_sdf_names_line(tmp_path):
    good = Chem.MolToMolBlock(embedded("CO"))
    lines = good.splitlines()
    lines[5] = "    1.2  x.3 abc  C   0  0"  # atom line of record 2 ...
    text = good + "$$$$\n" + "\n".join(lines) + "\n$$$$\n"
    n_first = len(good.splitlines()) + 1
    path = write(tmp_path / "bad.sdf", text)
    with pytest.raises(MoleculeParseError, match=rf"bad\.sdf: record 2 \(starting at line {n_first + 1}\).*line {n_first + 6}"):
        load_molecule(path)
    with pytest.raises(MoleculeParseError, match=r"junk\.sdf: record 1"):
        load_molecule(write(tmp_path / "junk.sdf", "hello\nthis is not\na molfile\n"))


def test_garbled_pdb(tmp_path):
    lines = Chem.MolToPDBBlock(embedded("CO")).splitlines()
    lines[1] = lines[1][:30] + "  abc.de" + lines[1][38:]
    with pytest.raises(MoleculeParseError, match=r"bad\.pdb, line 2: cannot read the x, y, z"):
        load_molecule(write(tmp_path / "bad.pdb", "\n".join(lines)))
    with pytest.raises(MoleculeParseError, match=r"no ATOM or HETATM"):
        load_molecule(write(tmp_path / "text.pdb", "hello world\n"))


def test_errors_are_package_errors():
    with pytest.raises(PhysFFError):
        load_molecule("CCI")
    with pytest.raises(ValueError):
        load_molecule("C1CC(")
    with pytest.raises(TypeError):
        load_molecule(42)


# ---------------------------------------------------------------------------
# coordinates, conformers, complexes
# ---------------------------------------------------------------------------


def test_positions_without_conformer():
    with pytest.raises(MoleculeError, match=r"no conformer"):
        positions_angstrom(load_molecule("CO"))
    with pytest.raises(MoleculeError, match=r"id 5"):
        positions_angstrom(embedded("CO"), conf_id=5)


def test_ensure_conformer_3d_and_deterministic():
    mol = load_molecule("CSc1ccc(Cl)cc1Br")
    a = ensure_conformer(mol)
    b = ensure_conformer(mol)
    assert mol.GetNumConformers() == 0  # input untouched
    pos = positions_angstrom(a)
    assert pos.shape == (mol.GetNumAtoms(), 3) and pos.dtype == np.float64
    assert a.GetConformer().Is3D()
    assert np.ptp(pos[:, 2]) > 0.1 or np.ptp(pos[:, 1]) > 0.1
    np.testing.assert_allclose(pos, positions_angstrom(b))
    # bonded C-H near 1.09 A: a real geometry
    d = np.linalg.norm(pos[0] - pos[[n.GetIdx() for n in a.GetAtomWithIdx(0).GetNeighbors() if n.GetSymbol() == "H"]], axis=1)
    assert np.all((d > 1.0) & (d < 1.2))
    assert ensure_conformer(a) is a  # already 3D: unchanged


def test_ensure_conformer_separates_fragments():
    mol = ensure_conformer(load_molecule("CC(=O)[O-].C[NH3+].[Cl-].O.O"))
    pos = positions_angstrom(mol)
    frags = fragment_atom_indices(mol)
    assert len(frags) == 5
    for i, fi in enumerate(frags):
        for fj in frags[i + 1 :]:
            dmin = np.linalg.norm(pos[list(fi)][:, None] - pos[list(fj)][None], axis=-1).min()
            assert dmin >= 3.0


def test_ensure_conformer_replaces_2d_coordinates():
    from rdkit.Chem import AllChem

    mol = load_molecule("CCO")
    AllChem.Compute2DCoords(mol)
    with pytest.warns(UserWarning, match=r"2D coordinates only .* a 3D geometry was generated"):
        out = ensure_conformer(mol)
    assert out is not mol and out.GetNumConformers() == 1 and out.GetConformer().Is3D()
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # a SMILES has no coordinates to replace: nothing to warn about
        ensure_conformer(load_molecule("CCO"))


def test_combine_molecules():
    parts = apart([embedded("CC(=O)[O-]"), embedded("C[NH3+]")])
    mol = combine_molecules(parts)
    assert fragment_charges(mol) == [-1, 1]
    assert symbols(mol) == symbols(parts[0]) + symbols(parts[1])
    np.testing.assert_allclose(
        positions_angstrom(mol), np.concatenate([p.GetConformer().GetPositions() for p in parts])
    )
    no_conf = combine_molecules([load_molecule("O"), parts[1]])
    assert no_conf.GetNumConformers() == 0
    with pytest.raises(MoleculeParseError):
        combine_molecules([])


def test_random_rotation_is_a_proper_rotation_and_seeded():
    from physff_openmm.molecule import random_rotation

    mats = [random_rotation(np.random.default_rng(s)) for s in range(20)]
    for m in mats:
        assert np.allclose(m @ m.T, np.eye(3), atol=1e-12)
        assert np.linalg.det(m) == pytest.approx(1.0, abs=1e-12)
    assert np.array_equal(random_rotation(np.random.default_rng(3)), mats[3])
    # uniform over rotations: the rotated x axis averages to about zero
    axes = np.array([random_rotation(np.random.default_rng(s))[:, 0] for s in range(2000)])
    assert np.abs(axes.mean(axis=0)).max() < 0.06


# --- unphysical geometries ----------------------------------------------------------------

def test_atoms_on_top_of_each_other_are_refused_naming_the_pair(tmp_path):
    water = embedded("O")
    stacked = [water, embedded("N")]  # water and ammonia, both embedded at the origin
    path = write(tmp_path / "stacked.sdf", "".join(Chem.MolToMolBlock(m) + "$$$$\n" for m in stacked))
    with pytest.raises(MoleculeError, match=r"stacked.sdf: atom \d+ \([OHN]\) and atom \d+ \([OHN]\) are 0.\d\d A apart, "
                                            r"closer than 0.5 A: not a physical geometry"):
        load_molecule(path)
    one = Chem.Mol(water)
    one.GetConformer().SetAtomPosition(1, one.GetConformer().GetAtomPosition(0))  # an H on the O
    with pytest.raises(MoleculeError, match=r"atom 0 \(O\) and atom 1 \(H\) are 0.00 A apart"):
        load_molecule(one)
    one.GetConformer().SetAtomPosition(1, (float("nan"), 0.0, 0.0))
    with pytest.raises(MoleculeError, match=r"atom 1 \(H\) has non-finite coordinates"):
        load_molecule(one)
    # a water dimer at a hydrogen-bond distance is a complex
    dimer = load_molecule(write(tmp_path / "dimer.sdf", "".join(
        Chem.MolToMolBlock(m) + "$$$$\n" for m in apart([embedded("O"), embedded("O")], spacing=2.9))))
    assert fragment_atom_indices(dimer) == [(0, 1, 2), (3, 4, 5)]


def test_an_sdf_of_conformers_is_refused_not_read_as_a_complex(tmp_path):
    confs = [embedded("CCCO", seed=s) for s in (1, 2, 3)]  # conformers as scan --conformers writes them
    path = write(tmp_path / "conformers.sdf", "".join(Chem.MolToMolBlock(m) + "$$$$\n" for m in confs))
    with pytest.raises(MoleculeError, match=r"3 records of the same molecule \(CCCO\) on top of each other: conformers"):
        load_molecule(path)
    assert len(read_records(path)) == 3  # read one by one, they are fine


def test_a_periodic_pdb_says_it_runs_in_vacuum(tmp_path):
    block = Chem.MolToPDBBlock(embedded("CCO"))
    path = write(tmp_path / "box.pdb", "CRYST1   30.000   30.000   30.000  90.00  90.00  90.00 P 1           1\n" + block)
    with pytest.warns(UserWarning, match=r"CRYST1 record \(a periodic box\): it is read as a molecule or complex in vacuum"):
        mol = load_molecule(path)
    assert mol.GetNumAtoms() == 9
