"""Few-spikes (FS) neurons and tendency-based parameter initialisation (TBPI).

Quick start::

    from fs_neurons import FSNeuron
    act = FSNeuron.from_bank("swish", K=8, method="ours")   # a drop-in Swish
    y = act(x)                                              # any shape, any float dtype
"""

from .bank import BankEntry, BankError, load_bank, load_entry
from .distribution import InputDistribution
from .methods import METHODS, FSFit, OursConfig, fit_baselines, fit_ours, fit_ours_many
from .metrics import fs_mse
from .neuron import FSNeuron, SpikeStats
from .piecewise import PiecewiseFS, fs_piecewise
from .simulate import fs_simulate
from .surrogate import Rectangle, Sigmoid, Triangle
from .targets import ACTIVATIONS, resolve_activation
from .tendency import TENDENCIES, TendencyFit, fit_tendencies, fit_tendency
from .training import train_surrogate

__all__ = [
    "ACTIVATIONS", "BankEntry", "BankError", "FSFit", "FSNeuron", "InputDistribution", "METHODS", "OursConfig",
    "PiecewiseFS", "Rectangle", "Sigmoid", "SpikeStats", "TENDENCIES", "TendencyFit", "Triangle", "fit_baselines",
    "fit_ours", "fit_ours_many", "fit_tendencies", "fit_tendency", "fs_mse", "fs_piecewise", "fs_simulate", "load_bank",
    "load_entry", "resolve_activation", "train_surrogate",
]
