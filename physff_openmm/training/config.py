"""Typed training configurations, loaded from YAML; unknown keys are rejected.

Every config is a tree of dataclasses. :func:`load_config` reads a YAML file
(or a dict) into one, raising :class:`~physff_openmm.errors.ConfigError` that
names the offending key and lists the valid ones. :func:`config_to_dict` gives
the resolved config back, for checkpoints and model files.

Units: learning rates are per optimizer step; ``noise_sigma`` is in Angstrom;
loss weights are dimensionless multipliers of losses in kcal/mol (energies),
kcal/mol/Angstrom (forces) and Hartree (stage-1 kinetic sums); times in minutes.
"""

from __future__ import annotations

import dataclasses
import typing
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, ClassVar

from ..errors import ConfigError
from ..model import ModelConfig
from .data import BEND_DEGREES, CLEAVE_LENGTHS, HEAVY_PULL_LENGTHS, PULL_LENGTHS
from .sources import CHARGED_KINDS

__all__ = [
    "DataConfig",
    "OptimConfig",
    "TrainerConfig",
    "Stage1Config",
    "Stage2LossConfig",
    "Stage2Config",
    "MDCheckConfig",
    "PublicDataConfig",
    "KDDataConfig",
    "ChargedConfig",
    "IonsConfig",
    "DrugLikeShardConfig",
    "TorsionScanConfig",
    "BondPullConfig",
    "HeavyPullConfig",
    "LJHeadConfig",
    "DefaultModelConfig",
    "load_config",
    "config_from_dict",
    "config_to_dict",
]


@dataclass
class DataConfig:
    """Data loading and the split (by molecule).

    Attributes
    ----------
    split : list of float
        Train, validation and test fractions of the molecules.
    seed : int
        Split and shuffling seed.
    batch_size : int
        Conformers per batch.
    num_workers : int
        DataLoader worker processes.
    group_by_molecule : bool
        Training batches hold whole molecules (all their conformers), which the
        relative-energy loss needs; ``batch_size`` is then a target, not exact.
    """

    split: list[float] = field(default_factory=lambda: [0.8, 0.1, 0.1])
    seed: int = 0
    batch_size: int = 16
    num_workers: int = 0
    group_by_molecule: bool = False

    def __post_init__(self):
        if len(self.split) != 3 or any(x < 0 for x in self.split) or abs(sum(self.split) - 1) > 1e-6:
            raise ConfigError(f"data.split must be three non-negative fractions summing to 1, got {self.split}")
        if self.batch_size < 1:
            raise ConfigError(f"data.batch_size must be >= 1, got {self.batch_size}")


@dataclass
class OptimConfig:
    """Adam with a step learning-rate schedule.

    Attributes
    ----------
    lr : float
        Initial learning rate.
    weight_decay : float
    lr_step_epochs : int
        Multiply the learning rate by ``lr_gamma`` every this many epochs.
    lr_gamma : float
    grad_clip : float
        Gradient-norm clip (0: off).
    """

    lr: float = 1e-3
    weight_decay: float = 0.0
    lr_step_epochs: int = 50
    lr_gamma: float = 0.5
    grad_clip: float = 10.0

    def __post_init__(self):
        if not self.lr > 0:
            raise ConfigError(f"optim.lr must be > 0, got {self.lr}")
        if self.lr_step_epochs < 1 or not 0 < self.lr_gamma <= 1:
            raise ConfigError("optim.lr_step_epochs must be >= 1 and 0 < optim.lr_gamma <= 1")


@dataclass
class TrainerConfig:
    """What Lightning's Trainer gets: devices, distribution, stopping and logging.

    Attributes
    ----------
    max_epochs : int
    max_time_minutes : float or None
        Wall-clock limit (None: none).
    patience : int
        Early stopping on the validation loss after this many epochs without improvement (0: off).
    accelerator : str
        "cpu", "gpu", "auto", ...
    devices : int or str
        Devices per node ("auto", 1, 4, ...).
    num_nodes : int
    strategy : str
        "auto", "ddp", "ddp_spawn", ... (DDP across GPUs and nodes).
    precision : str
        Lightning precision of the network ("32-true"); energies are float64 regardless.
    seed : int
    log_every_n_steps : int
    deterministic : bool
    keep : {"best", "last"}
        Weights kept at the end: lowest validation loss, or the last epoch's (for
        validation sets too small to choose by).
    """

    max_epochs: int = 100
    max_time_minutes: float | None = None
    patience: int = 20
    accelerator: str = "cpu"
    devices: Any = 1
    num_nodes: int = 1
    strategy: str = "auto"
    precision: str = "32-true"
    seed: int = 0
    log_every_n_steps: int = 10
    deterministic: bool = False
    keep: str = "best"

    def __post_init__(self):
        if self.keep not in ("best", "last"):
            raise ConfigError(f"trainer.keep must be 'best' or 'last', got {self.keep!r}")
        if self.max_epochs < 1:
            raise ConfigError(f"trainer.max_epochs must be >= 1, got {self.max_epochs}")


@dataclass
class Stage1Config:
    """Stage 1: the MPNN and its kinetic-energy heads on sums of KD terms.

    Attributes
    ----------
    model : ModelConfig
        Architecture (stored in the checkpoint; stage 2 reuses it).
    data, optim, trainer
    """

    model: ModelConfig = field(default_factory=ModelConfig)
    data: DataConfig = field(default_factory=DataConfig)
    optim: OptimConfig = field(default_factory=OptimConfig)
    trainer: TrainerConfig = field(default_factory=TrainerConfig)


@dataclass
class Stage2LossConfig:
    """Loss of stage 2.

    Attributes
    ----------
    kind : {"mae", "mse", "rmse"}
        Mean absolute, mean squared or root-mean-square error (each term). RMSE
        keeps the units and scale of MAE but weighs the largest errors most (a
        stretched bond's 50 kcal/mol beside many 1 kcal/mol conformer errors).
    energy_weight : float
        Weight of the total-energy term (kcal/mol per atom when ``per_atom``).
    per_atom : bool
        Divide energy errors by the number of atoms.
    force_weight : float
        Weight of the force term (kcal/mol/Angstrom per component), where forces exist.
    interaction_weight : float
        Weight of the interaction-energy term E(AB) - sum E(fragments), kcal/mol, where labelled.
    relative_weight : float
        Weight of the relative-energy term: energies minus their mean over the
        conformers of the same molecule in the batch (conformer and torsion
        profiles), kcal/mol; needs ``data.group_by_molecule``.
    relative_forces_weight : float
        Weight of the same relative term over the conformers that have forces
        (the GFN2-xTB frames, charged molecules and torsion drives, whose
        energies count only relative within a molecule): the energy differences
        that shape covalent wells and torsion profiles, which the total-energy
        term leaves to E_lin.
    noise_sigma : float
        Gaussian noise added to training coordinates, Angstrom (0.005 in the paper).
    charged_dimer_weight : float
        Weight, relative to the other dimers' 1, of the dimers with a charged monomer (NCIAtlas
        IHB100: an ion beside a neutral molecule) inside the interaction term, whose error is
        the weighted mean over the batch's dimers. Fixed charges have no induction, and the
        model underbinds such dimers most.
    charge_weight : float
        Weight (kcal/mol per e) of the charge term: |Q - Q_ref| over the atoms that have a
        target charge (``charge_target``; in the recipe, GFN2-xTB charges of the charged
        molecules, see its ``charge_targets``). Energies leave how an ion's excess charge
        spreads over its atoms weakly determined.
    """

    kind: str = "mse"
    energy_weight: float = 1.0
    per_atom: bool = False
    force_weight: float = 1.0
    interaction_weight: float = 1.0
    relative_weight: float = 0.0
    relative_forces_weight: float = 0.0
    noise_sigma: float = 0.005
    charged_dimer_weight: float = 1.0
    charge_weight: float = 0.0

    def __post_init__(self):
        if self.kind not in ("mae", "mse", "rmse"):
            raise ConfigError(f"loss.kind must be 'mae', 'mse' or 'rmse', got {self.kind!r}")
        if self.noise_sigma < 0:
            raise ConfigError(f"loss.noise_sigma must be >= 0 Angstrom, got {self.noise_sigma}")
        if self.charged_dimer_weight <= 0:
            raise ConfigError(f"loss.charged_dimer_weight must be > 0, got {self.charged_dimer_weight}")
        if self.charge_weight < 0:
            raise ConfigError(f"loss.charge_weight must be >= 0, got {self.charge_weight}")


@dataclass
class Stage2Config:
    """Stage 2: charges and pair parameters on energies (and forces), as a correction to E_lin.

    Attributes
    ----------
    model : ModelConfig or None
        Architecture when training without a stage-1 checkpoint (otherwise the checkpoint's is used).
    freeze_embedding : bool
        Keep the stage-1 embedding network fixed.
    fit_linear : bool
        Fit E_lin by least squares on element counts before training.
    refit_linear : bool
        Fit E_lin again by least squares, at the start of every epoch and after
        training, to what the pair terms leave of the training energies without
        forces (the QM conformers). The total-energy term then no longer holds
        the covalent wells at the depth that the first E_lin fit left them:
        E_lin follows the pair terms as they deepen.
    path_embeddings : bool
        Give a start model that lacks them path embeddings
        (:meth:`physff_openmm.model.PhysFFModel.add_path_embeddings`: feats_net also sees
        the middle atom of 1-3 pairs and the central bond of 1-4 pairs, its new input
        weights starting at zero), or a new model.
    resonance_features : bool
        Train with graphs whose formal charges and bond types are averaged over resonance
        structures (:func:`physff_openmm.graph.resonance_structures`) and mark the model so
        (:attr:`physff_openmm.model.ModelConfig.resonance_features`); a start model that
        already has them needs it set.
    wall_factor, width_floor, curvature_max : float or None
        Set on the model before training (:attr:`physff_openmm.model.ModelConfig.wall_factor`,
        ``width_floor``, ``curvature_max``: the inner wall of non-covalent pairs within a
        molecule, the floor of the Gaussian widths, the bound on their curvature); None keeps
        the start model's.
    data, optim, trainer, loss
    """

    model: ModelConfig | None = None
    path_embeddings: bool = False
    resonance_features: bool = False
    wall_factor: float | None = None
    width_floor: float | None = None
    curvature_max: float | None = None
    freeze_embedding: bool = False
    fit_linear: bool = True
    refit_linear: bool = False
    data: DataConfig = field(default_factory=DataConfig)
    optim: OptimConfig = field(default_factory=OptimConfig)
    trainer: TrainerConfig = field(default_factory=TrainerConfig)
    loss: Stage2LossConfig = field(default_factory=Stage2LossConfig)


#: Issue 13's small molecules that minimization must leave bonded: water, ammonia, formamide,
#: methanol, methylammonium, the glycine zwitterion and the water dimer.
MINIMIZE_SMILES = ("O", "N", "NC=O", "CO", "C[NH3+]", "[NH3+]CC(=O)[O-]", "O.O")


@dataclass
class MDCheckConfig:
    """Stability check after training: Langevin MD with the native backend.

    Attributes
    ----------
    smiles : list of str
    time_ps : float
    timestep_fs : float
    temperature_k : float
    max_bond_change : float
        Largest allowed relative change of any covalent bond length.
    minimize : list of str
        Molecules minimized from an RDKit geometry after training
        (:func:`~physff_openmm.training.evaluate.minimization_check`); by default
        issue 13's small molecules: water, ammonia, formamide, methanol,
        methylammonium, the glycine zwitterion and the water dimer.
    max_minimized_bond_change : float
        Largest allowed relative change of a bond in those minimizations.
    """

    smiles: list[str] = field(default_factory=lambda: ["CCO", "CC(=O)NC", "c1ccccc1O"])
    time_ps: float = 20.0
    timestep_fs: float = 0.5
    temperature_k: float = 300.0
    max_bond_change: float = 0.2
    minimize: list[str] = field(default_factory=lambda: list(MINIMIZE_SMILES))
    max_minimized_bond_change: float = 0.2


@dataclass
class PublicDataConfig:
    """The public reference sets and their split (see :mod:`~physff_openmm.training.recipe`).

    Attributes
    ----------
    data_dir : str
        Folder with ``conformer-benchmark/``, ``torsion-drives/`` and ``ncia-atlas/``
        (relative paths are taken from the current directory).
    fractions : dict of str to list of float
        Train, validation, test fractions per set (``conformers``, ``torsions``, ``ncia``).
    seed : int
        Split seed.
    limit : int or None
        At most this many records per set (quick runs).
    """

    data_dir: str = "../shared/data"
    fractions: dict[str, list[float]] = field(
        default_factory=lambda: {"conformers": [0.8, 0.1, 0.1], "torsions": [0.6, 0.1, 0.3], "ncia": [0.8, 0.1, 0.1]}
    )
    seed: int = 0
    limit: int | None = None


@dataclass
class XTBFramesConfig:
    """GFN2-xTB frames with forces of drug-like molecules (``../shared/data/xtb-frames``).

    Attributes
    ----------
    path : str
        Folder (or file) of the frames; "" for none.
    limit : int or None
        Number of molecules to use (a seeded draw); None: all.
    kinds : list of int
        Frame kinds to keep (0 near-minimum, 1 conformers, 2 noisy, 3 compressed X-H,
        4 stretched bond); empty: all.
    max_energy_kcal_mol : float
        Drop frames more than this above the molecule's lowest frame.
    val_fraction : float
        Molecules held out for validation (the test split is the public sets').
    seed : int
    """

    path: str = ""
    limit: int | None = None
    kinds: list[int] = field(default_factory=list)
    max_energy_kcal_mol: float = 150.0
    val_fraction: float = 0.03
    seed: int = 0


@dataclass
class ChargedConfig:
    """Charged drug-like molecules with GFN2-xTB energies and forces (:func:`~physff_openmm.training.recipe.xtb_charged`).

    Ammonium ions, carboxylates and zwitterions made from the xtb-frames
    molecules, and small ions (methylammonium, acetate, the glycine zwitterion,
    guanidinium, ...), labelled into ``work_dir/charged.h5`` by the ``label``
    stage (and packed into ``shard_dir``) and read by every stage-2 phase (level ``gfn2-xtb``: forces and
    relative energies).

    Attributes
    ----------
    n_molecules : int
        Molecules to label (0: none; the list for a larger number extends the smaller one).
    source : str
        xtb-frames folder whose neutral molecules are charged ("": ``xtb_frames.path``).
    max_atoms : int
        Largest molecule, hydrogens included.
    kinds : list of str
        Kinds of charged variant, in the order they are taken
        (:data:`~physff_openmm.training.sources.CHARGED_KINDS`: zwitterion,
        carboxylate, ammonium, sulfonamide, phenolate, aromatic_n).
    small : bool
        Start with the small ions (:data:`~physff_openmm.training.sources.SMALL_CHARGED`).
    n_conformers, opt_steps, n_md, md_temperature_k, md_stride, n_noise, noise_sigmas, n_bond_scans, compress, stretch, solvent
        Frames per molecule (:func:`~physff_openmm.training.recipe.charged_sampling`):
        per RDKit conformer a short GFN2-xTB relaxation of ``opt_steps`` L-BFGS steps,
        ``n_md`` MD snapshots started at ``md_temperature_k`` K (every ``md_stride``
        steps of 0.5 fs) and ``n_noise`` noisy copies (``noise_sigmas``, Angstrom);
        ``n_bond_scans`` bonds to H each compressed to ``compress`` and stretched
        to ``stretch`` of their length; geometries made in ALPB ``solvent`` ("": gas phase).
    max_energy_kcal_mol : float
        Frames more than this above the molecule's lowest are dropped.
    val_fraction : float
        Molecules held out for validation.
    workers : int
        Labelling processes.
    seed : int
    """

    n_molecules: int = 0
    source: str = ""
    max_atoms: int = 60
    kinds: list[str] = field(default_factory=lambda: ["zwitterion", "carboxylate", "ammonium"])
    small: bool = True
    n_conformers: int = 2
    opt_steps: int = 20
    n_md: int = 2
    md_temperature_k: float = 500.0
    md_stride: int = 10
    n_noise: int = 2
    noise_sigmas: list[float] = field(default_factory=lambda: [0.02, 0.035])
    n_bond_scans: int = 2
    compress: list[float] = field(default_factory=lambda: [0.75, 0.85])
    stretch: list[float] = field(default_factory=lambda: [1.2, 1.5])
    solvent: str = "water"
    max_energy_kcal_mol: float = 150.0
    val_fraction: float = 0.05
    workers: int = 1
    seed: int = 0

    def __post_init__(self) -> None:
        if self.n_molecules < 0 or self.max_atoms < 1 or self.workers < 1:
            raise ConfigError(
                f"charged: need n_molecules >= 0, max_atoms >= 1 and workers >= 1, "
                f"got {self.n_molecules}, {self.max_atoms}, {self.workers}"
            )
        if len(self.compress) != 2 or len(self.stretch) != 2:
            raise ConfigError(f"charged: compress and stretch are [low, high] ranges, got {self.compress}, {self.stretch}")
        if not 0.0 <= self.val_fraction < 1.0:
            raise ConfigError(f"charged.val_fraction must be in [0, 1), got {self.val_fraction}")
        if not self.kinds or set(self.kinds) - set(CHARGED_KINDS):
            raise ConfigError(f"charged.kinds must be some of {', '.join(CHARGED_KINDS)}, got {self.kinds}")


@dataclass
class IonsConfig(ChargedConfig):
    """More charged molecules for the refining phase (shard ``work_dir/ions.h5``): as
    :class:`ChargedConfig`, by default sulfonamide anions, phenolates and protonated
    pyridine-type aromatic N of the xtb-frames molecules, without the small ions."""

    kinds: list[str] = field(default_factory=lambda: ["sulfonamide", "phenolate", "aromatic_n"])
    small: bool = False


@dataclass
class DrugLikeShardConfig:
    """A shard of GFN2-xTB frames of xtb-frames molecules and their charged variants
    (:func:`~physff_openmm.training.recipe.torsion_molecules`), labelled by the ``label`` stage.

    Attributes
    ----------
    n_molecules : int
        Molecules to label (0: none); ``charged_fraction`` of them charged variants.
    source : str
        xtb-frames folder of the molecules ("": ``xtb_frames.path``).
    charged_fraction : float
    max_atoms : int
        Largest charged variant, hydrogens included.
    opt_steps : int
        L-BFGS steps of the GFN2-xTB relaxation of each molecule's conformer.
    max_energy_kcal_mol : float
        Frames more than this above the molecule's lowest are dropped.
    workers : int
        Labelling processes.
    seed : int
    """

    #: The recipe's key of the section (in error messages).
    section: ClassVar[str] = "drug-like shard"

    n_molecules: int = 0
    source: str = ""
    charged_fraction: float = 0.25
    max_atoms: int = 60
    opt_steps: int = 10
    max_energy_kcal_mol: float = 60.0
    workers: int = 1
    seed: int = 0

    def __post_init__(self) -> None:
        if self.n_molecules < 0 or self.workers < 1 or not 0.0 <= self.charged_fraction <= 1.0:
            raise ConfigError(
                f"{self.section}: need n_molecules >= 0, workers >= 1 and charged_fraction in [0, 1], "
                f"got {self.n_molecules}, {self.workers}, {self.charged_fraction}"
            )


@dataclass
class TorsionScanConfig(DrugLikeShardConfig):
    """Torsion drives of drug-like molecules with GFN2-xTB energies and forces (:func:`~physff_openmm.training.recipe.xtb_drug_like`),
    labelled into ``work_dir/torsion_scans.h5`` (packed into ``shard_dir``) and read by the fine-tuning phases (level ``gfn2-xtb``: forces and
    relative energies). As :class:`DrugLikeShardConfig`, with ``n_scans`` rotatable bonds per molecule driven in
    ``step_deg`` steps (:func:`~physff_openmm.training.recipe.torsion_sampling`)."""

    section: ClassVar[str] = "torsion_scans"

    n_scans: int = 2
    step_deg: float = 30.0

    def __post_init__(self) -> None:
        super().__post_init__()
        if self.n_scans < 0:
            raise ConfigError(f"torsion_scans: need n_scans >= 0, got {self.n_scans}")


@dataclass
class BondPullConfig(DrugLikeShardConfig):
    """Bonds to H pulled apart in drug-like molecules, GFN2-xTB energies and forces
    (:func:`~physff_openmm.training.recipe.xtb_drug_like`), labelled into ``work_dir/bond_pulls.h5`` (packed into ``shard_dir``) and read
    by the refining phase. As :class:`DrugLikeShardConfig`, with ``n_bonds`` bonds per molecule each pulled to
    every length of ``pull`` (multiples of its length) and ``n_angles`` angles H-X-Y bent by each change of
    ``bend`` (degrees, negative closes; :func:`~physff_openmm.training.recipe.pull_sampling`)."""

    section: ClassVar[str] = "bond_pulls"

    n_bonds: int = 4
    pull: list[float] = field(default_factory=lambda: list(PULL_LENGTHS))
    n_angles: int = 6
    bend: list[float] = field(default_factory=lambda: list(BEND_DEGREES))
    max_energy_kcal_mol: float = 200.0

    def __post_init__(self) -> None:
        super().__post_init__()
        if self.n_bonds < 1 or not self.pull or min(self.pull) <= 1.0:
            raise ConfigError(f"bond_pulls: need n_bonds >= 1 and pull lengths > 1, got {self.n_bonds}, {self.pull}")
        if self.n_angles < 0 or not self.bend or not all(0.0 < abs(d) < 90.0 for d in self.bend):
            raise ConfigError(f"bond_pulls: need n_angles >= 0 and non-zero angle bends below 90 degrees, got {self.n_angles}, {self.bend}")


@dataclass
class HeavyPullConfig(DrugLikeShardConfig):
    """Acyclic bonds between heavy atoms pulled apart in drug-like molecules, half of them charged
    variants, GFN2-xTB energies and forces (:func:`~physff_openmm.training.recipe.xtb_drug_like`),
    labelled into ``work_dir/heavy_pulls.h5`` (packed into ``shard_dir``) and read by the refining
    phase. As :class:`DrugLikeShardConfig`, with ``n_bonds`` bonds per molecule (those at a charged
    atom first) each pulled to every length of ``pull`` (multiples of its length; one side of the
    bond moves as a whole, :func:`~physff_openmm.training.data.fragment_pull_geometries`). Each
    molecule is relaxed on the GFN2-xTB + ALPB surface of ``solvent`` ("": gas phase), where a
    zwitterion keeps its protons; the labels are gas-phase GFN2-xTB."""

    section: ClassVar[str] = "heavy_pulls"

    charged_fraction: float = 0.5
    n_bonds: int = 3
    pull: list[float] = field(default_factory=lambda: list(HEAVY_PULL_LENGTHS))
    max_energy_kcal_mol: float = 200.0
    solvent: str = "water"

    def __post_init__(self) -> None:
        super().__post_init__()
        if self.n_bonds < 1 or not self.pull or min(self.pull) <= 1.0:
            raise ConfigError(f"{self.section}: need n_bonds >= 1 and pull lengths > 1, got {self.n_bonds}, {self.pull}")


@dataclass
class CleavageConfig(HeavyPullConfig):
    """Acyclic bonds between heavy atoms cleaved: as :class:`HeavyPullConfig` (``work_dir/cleavages.h5``,
    read by the refining phase), with each bond taken to every length of ``pull`` out to the two sides apart,
    each frame labelled with the lower of the closed-shell and the high-spin GFN2-xTB state
    (:func:`~physff_openmm.training.data.cleavage_spin`). A quarter of the molecules are charged variants."""

    section: ClassVar[str] = "cleavages"

    charged_fraction: float = 0.25
    pull: list[float] = field(default_factory=lambda: list(CLEAVE_LENGTHS))
    max_energy_kcal_mol: float = 350.0


@dataclass
class DFTTorsionConfig:
    """B3LYP-D3BJ/def2-SVP energies and forces of torsion-drive frames (:func:`~physff_openmm.training.recipe.dft_torsions`):
    the frames of neutral molecules of the ``torsion_scans`` shard, labelled again with PySCF (gpu4pyscf where a GPU
    is present) into ``work_dir/dft_torsions.h5`` (packed into ``shard_dir``, signed with this section and
    ``torsion_scans``'s) and read by the fine-tuning phases (forces, relative and total energies).

    Attributes
    ----------
    n_molecules : int
        Molecules whose every frame is labelled (0: none); the list for a larger number extends the smaller one.
    max_atoms : int
        Largest molecule, hydrogens included.
    level : str
        Level of theory (:func:`~physff_openmm.training.qm.parse_level`).
    workers : int
        Labelling processes.
    seed : int
        Order in which the molecules are taken.
    """

    n_molecules: int = 0
    max_atoms: int = 40
    level: str = "b3lyp-d3bj/def2-svp"
    workers: int = 1
    seed: int = 0

    def __post_init__(self) -> None:
        from .qm import parse_level

        if self.n_molecules < 0 or self.max_atoms < 1 or self.workers < 1:
            raise ConfigError(
                f"dft_torsions: need n_molecules >= 0, max_atoms >= 1 and workers >= 1, "
                f"got {self.n_molecules}, {self.max_atoms}, {self.workers}"
            )
        if self.n_molecules:  # QMError for an unknown level; written either way, the same level signs the same
            self.level = parse_level(self.level).name


@dataclass
class KDDataConfig:
    """Stage-1 labels: kinetic-energy partitions at a small-basis level.

    Attributes
    ----------
    level : str
        Level of theory (e.g. ``hf/sto-3g``).
    n_qm9 : int
        QM9 molecules (``qm9pack`` geometries), drawn with ``seed``.
    max_atoms : int
        Training molecules of the public sets up to this size are labelled too (0: none).
    workers : int
    seed : int
    """

    level: str = "hf/sto-3g"
    n_qm9: int = 400
    max_atoms: int = 30
    workers: int = 1
    seed: int = 0


@dataclass
class LJHeadConfig:
    """The lj_net phase (:func:`~physff_openmm.training.lj_head.train_lj_head`): the per-atom
    Lennard-Jones factors for pairs with other force fields' atoms, fitted on NCIAtlas
    interaction energies with the rest of the model frozen.

    Attributes
    ----------
    hidden : int
        Width of lj_net (0: no lj_net, no phase).
    sigma_range, epsilon_range : float
        Largest change of ln(sigma) and ln(epsilon) from the base values
        (:func:`physff_openmm.forcefield.lj_head_base`).
    sigma_floor : float
        A heavy atom's sigma is at least this fraction of its van der Waals diameter
        (``ModelConfig.lj_sigma_floor``; 0: no floor).
    steps : int
        Full-batch Adam steps.
    lr : float
    huber_delta : float
        kcal/mol: the loss is quadratic in the error below this, linear above.
    energy_scale : float
        kcal/mol: a frame's weight is 1 / (1 + |E_ref| / energy_scale).
    seed : int
    """

    hidden: int = 0
    sigma_range: float = 0.2
    epsilon_range: float = 2.0
    sigma_floor: float = 0.0
    steps: int = 1000
    lr: float = 3.0e-3
    huber_delta: float = 5.0
    energy_scale: float = 10.0
    seed: int = 0

    def __post_init__(self) -> None:
        if self.hidden < 0 or self.steps < 0 or self.lr <= 0 or self.huber_delta <= 0 or self.energy_scale <= 0:
            raise ConfigError(
                "lj_head: need hidden >= 0, steps >= 0 and positive lr, huber_delta and energy_scale, got "
                f"{self.hidden}, {self.steps}, {self.lr}, {self.huber_delta}, {self.energy_scale}"
            )
        if self.sigma_range < 0 or self.epsilon_range < 0:
            raise ConfigError("lj_head: sigma_range and epsilon_range must not be negative")
        if not 0.0 <= self.sigma_floor < 1.0:
            raise ConfigError(f"lj_head: sigma_floor must lie in [0, 1) (a fraction of the van der Waals diameter), got {self.sigma_floor}")


@dataclass
class DefaultModelConfig:
    """The default model's recipe: public data, labels made here, stage 1, stage 2, checks.

    Attributes
    ----------
    name, description : str
        Registry name and description.
    output : str
        Model file (relative to the repository root).
    work_dir : str
        Shards being labelled, checkpoints and logs (outside the repository).
    shard_dir : str
        Folder of the label shards kept with the recipe ("": none; relative to the
        repository root): the ``label`` stage packs each shard it finishes there
        (:func:`~physff_openmm.training.dataset.pack_shard`), and a shard found there
        is used as is, provided it was labelled with the config's section
        (:func:`~physff_openmm.training.recipe.shard_path`).
    alias : str
        Registry alias pointing at the model on install ("" for none).
    public : PublicDataConfig
    xtb_frames : XTBFramesConfig
        GFN2-xTB frames with forces of drug-like molecules, read by every stage-2 phase.
    charged : ChargedConfig
        Charged molecules with GFN2-xTB forces (shard ``charged.h5``), read by
        every stage-2 phase; none unless ``charged.n_molecules`` > 0.
    ions : IonsConfig
        More charged molecules (shard ``ions.h5``; by default sulfonamide
        anions, phenolates and protonated pyridine-type aromatic N, no small
        ions), read by the refining phase only; none unless ``ions.n_molecules`` > 0.
    torsion_scans : TorsionScanConfig
        Torsion drives with GFN2-xTB forces (shard ``torsion_scans.h5``), read
        by the fine-tuning phases; none unless ``torsion_scans.n_molecules`` > 0.
    bond_pulls : BondPullConfig
        Bonds to H pulled apart, GFN2-xTB forces (shard ``bond_pulls.h5``), read
        by the refining phase; none unless ``bond_pulls.n_molecules`` > 0.
    heavy_pulls : HeavyPullConfig
        Acyclic bonds between heavy atoms pulled apart, GFN2-xTB forces (shard
        ``heavy_pulls.h5``), read by the refining phase; none unless ``heavy_pulls.n_molecules`` > 0.
    cleavages : CleavageConfig
        Acyclic bonds between heavy atoms cleaved, out to the two sides apart (shard ``cleavages.h5``),
        read by the refining phase; none unless ``cleavages.n_molecules`` > 0.
    dft_torsions : DFTTorsionConfig
        B3LYP-D3BJ/def2-SVP energies and forces of frames of the torsion drives (shard
        ``dft_torsions.h5``), read by the fine-tuning phases; none unless ``dft_torsions.n_molecules`` > 0.
    kd : KDDataConfig
    stage1 : Stage1Config
    stage2 : Stage2Config
    finetune : Stage2Config or None
        A second stage-2 phase that starts from the first one's weights and adds
        the torsion drives to the training data (None: no second phase).
    refine : Stage2Config or None
        A third phase on the fine-tuning phase's data, from its weights (None: none).
    lj_head : LJHeadConfig
        The lj_net phase after the last stage-2 phase (``hidden`` 0: none).
    md_check : MDCheckConfig
    """

    name: str = "physff-default"
    description: str = ""
    output: str = "physff_openmm/models/physff-default.pt"
    work_dir: str = "/tmp/physff-default"
    shard_dir: str = ""
    alias: str = "default"
    public: PublicDataConfig = field(default_factory=PublicDataConfig)
    xtb_frames: XTBFramesConfig = field(default_factory=XTBFramesConfig)
    charged: ChargedConfig = field(default_factory=ChargedConfig)
    ions: IonsConfig = field(default_factory=IonsConfig)
    torsion_scans: TorsionScanConfig = field(default_factory=TorsionScanConfig)
    bond_pulls: BondPullConfig = field(default_factory=BondPullConfig)
    heavy_pulls: HeavyPullConfig = field(default_factory=HeavyPullConfig)
    cleavages: CleavageConfig = field(default_factory=CleavageConfig)
    dft_torsions: DFTTorsionConfig = field(default_factory=DFTTorsionConfig)
    kd: KDDataConfig = field(default_factory=KDDataConfig)
    stage1: Stage1Config = field(default_factory=Stage1Config)
    stage2: Stage2Config = field(default_factory=Stage2Config)
    finetune: Stage2Config | None = None
    refine: Stage2Config | None = None
    lj_head: LJHeadConfig = field(default_factory=LJHeadConfig)
    md_check: MDCheckConfig = field(default_factory=MDCheckConfig)

    def __post_init__(self) -> None:
        if self.dft_torsions.n_molecules and not self.torsion_scans.n_molecules:
            raise ConfigError("dft_torsions labels frames of the torsion drives: it needs torsion_scans.n_molecules > 0")


# ============================================================================ loading
def _is_dataclass_type(tp) -> bool:
    return isinstance(tp, type) and dataclasses.is_dataclass(tp)


def _convert(value, tp, where: str):
    """Convert a YAML value to the annotated type ``tp`` (dataclasses recursively)."""
    origin = typing.get_origin(tp)
    if origin in (typing.Union, getattr(__import__("types"), "UnionType", None)):
        args = [a for a in typing.get_args(tp) if a is not type(None)]
        if value is None:
            return None
        return _convert(value, args[0], where) if len(args) == 1 else value
    if _is_dataclass_type(tp):
        if isinstance(value, tp):
            return value
        if not isinstance(value, dict):
            raise ConfigError(f"{where} must be a mapping, got {type(value).__name__}")
        return config_from_dict(tp, value, where)
    if tp is float and isinstance(value, (int, float)) and not isinstance(value, bool):
        return float(value)
    if tp is int:
        if isinstance(value, bool) or not isinstance(value, int):
            raise ConfigError(f"{where} must be an integer, got {value!r}")
        return value
    if tp is bool and not isinstance(value, bool):
        raise ConfigError(f"{where} must be true or false, got {value!r}")
    if tp is str and not isinstance(value, str):
        raise ConfigError(f"{where} must be a string, got {value!r}")
    if origin is list and not isinstance(value, (list, tuple)):
        raise ConfigError(f"{where} must be a list, got {value!r}")
    if origin is list:
        args = typing.get_args(tp)
        return [_convert(v, args[0], f"{where}[{k}]") for k, v in enumerate(value)] if args else list(value)
    if origin is dict and not isinstance(value, dict):
        raise ConfigError(f"{where} must be a mapping, got {value!r}")
    return value


def config_from_dict(cls, values: dict[str, Any], where: str = ""):
    """Build config ``cls`` from a dict, rejecting unknown keys (recursively).

    Raises
    ------
    ConfigError
        Unknown key (the message lists the valid keys) or a value of the wrong type.
    """
    if values is None:
        values = {}
    if not isinstance(values, dict):
        raise ConfigError(f"{where or cls.__name__} must be a mapping, got {type(values).__name__}")
    if cls is ModelConfig:
        return ModelConfig.from_dict(dict(values))
    hints = typing.get_type_hints(cls)
    known = [f.name for f in dataclasses.fields(cls)]
    unknown = sorted(set(values) - set(known))
    if unknown:
        prefix = f"{where}." if where else ""
        raise ConfigError(
            f"unknown config key{'s' if len(unknown) > 1 else ''} {', '.join(prefix + k for k in unknown)}; "
            f"valid keys{' of ' + where if where else ''}: {', '.join(known)}"
        )
    kwargs = {}
    for key, value in values.items():
        kwargs[key] = _convert(value, hints[key], f"{where}.{key}" if where else key)
    try:
        return cls(**kwargs)
    except TypeError as exc:  # pragma: no cover - guarded by the key check
        raise ConfigError(str(exc)) from None


def load_config(source, cls):
    """Load a config of type ``cls`` from a YAML file, a dict or None (defaults).

    Parameters
    ----------
    source : path, dict or None
    cls : dataclass type
        E.g. :class:`Stage1Config`.

    Raises
    ------
    ConfigError
        Missing or unreadable file, YAML syntax error, unknown key or wrong type.
    """
    if source is None:
        return cls()
    if isinstance(source, cls):
        return source
    if isinstance(source, dict):
        return config_from_dict(cls, source)
    import yaml

    path = Path(source)
    if not path.is_file():
        raise ConfigError(f"config file {str(path)!r} does not exist")
    try:
        values = yaml.safe_load(path.read_text()) or {}
    except yaml.YAMLError as exc:
        raise ConfigError(f"cannot parse config file {str(path)!r}: {exc}") from None
    try:
        return config_from_dict(cls, values)
    except ConfigError as exc:
        raise ConfigError(f"{path}: {exc}") from None


def config_to_dict(config) -> dict[str, Any]:
    """Plain-dict form of a config (JSON and YAML ready)."""
    if isinstance(config, ModelConfig):
        return config.to_dict()
    out = {}
    for f in dataclasses.fields(config):
        v = getattr(config, f.name)
        if dataclasses.is_dataclass(v):
            v = config_to_dict(v)
        elif isinstance(v, tuple):
            v = list(v)
        out[f.name] = v
    return out
