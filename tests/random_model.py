"""Small untrained models for tests of bounds that hold whatever the weights."""

from __future__ import annotations


def random_model_file(path, scale: float, seed: int, charge_scale: float = 0.0, **config):
    """A small untrained model with feats_net's output layer (and, with ``charge_scale``, charge_net's)
    drawn at scale ``scale``, saved to ``path``: bounds that hold "whatever the weights" are tested on it."""
    import torch

    from physff_openmm.model import ModelConfig, PhysFFModel, save_model_file

    torch.manual_seed(seed)
    model = PhysFFModel(ModelConfig(hidden=32, pair_hidden=32, n_steps=3, **config))
    with torch.no_grad():
        model.feats_net[-1].weight.normal_(0.0, scale)
        model.feats_net[-1].bias.normal_(0.0, scale)
        if charge_scale:
            model.charge_net[-1].weight.normal_(0.0, charge_scale)
    save_model_file(model, path, {"name": "random"})
    return path
