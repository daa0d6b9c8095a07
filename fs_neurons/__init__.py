"""Few-spikes (FS) neurons and tendency-based parameter initialisation (TBPI).

Quick start::

    from fs_neurons import FSNeuron
    act = FSNeuron.from_bank("swish", K=8, method="ours")   # a drop-in Swish
    y = act(x)                                              # any shape, any float dtype

The names below are imported on first use, so ``import fs_neurons`` does not load torch.
"""

from .names import METHODS, TENDENCIES
from .utils.lazy import lazy_exports

_EXPORTS = {
    "BankEntry": "bank", "BankError": "bank", "load_bank": "bank", "load_entry": "bank",
    "InputDistribution": "distribution",
    "FSFit": "methods", "fit_baselines": "methods", "fit_ours": "methods", "fit_ours_many": "methods",
    "OursConfig": "search_config",
    "fs_mse": "metrics",
    "FSNeuron": "neuron",
    "set_backend": "functional",
    "Stateful": "state", "reset_net": "state",
    "PiecewiseFS": "piecewise", "fs_piecewise": "piecewise",
    "fs_simulate": "simulate",
    "Rectangle": "surrogate", "Sigmoid": "surrogate", "Triangle": "surrogate",
    "ACTIVATIONS": "targets", "resolve_activation": "targets",
    "TendencyFit": "tendency", "fit_tendencies": "tendency", "fit_tendency": "tendency",
    "train_surrogate": "training",
}

__all__ = ["METHODS", "TENDENCIES", *sorted(_EXPORTS)]
__getattr__, __dir__ = lazy_exports(__name__, _EXPORTS)
