"""Names and settings that the command line offers, importable without torch.

Each is defined here once and used by the module that implements it: the fitting methods
(:mod:`.methods`), the bank entries one can ask for (:mod:`.bank`), the paper's input grid
(:mod:`.distribution`), the target activations (:mod:`.targets`) and TBPI's curve families
(:mod:`.tendency`). ``--help`` builds from these alone.
"""

from __future__ import annotations

METHODS = ("random", "gaussian", "tbpi", "ours")  # fitting methods: the paper's three baselines and ours
BASELINES = ("random", "gaussian", "tbpi")
UNET_METHOD = "ours-unet"  # ours fitted to the pooled Swish inputs of diffusion UNets (swish_unet_inputs.json)
BANK_METHODS = (*METHODS, UNET_METHOD)  # the bank entries one can ask for
PAPER_RANGE = (-8.0, 12.0)  # the TBPI paper's input range ...
PAPER_POINTS = 100_000  # ... and its number of evenly spaced points
ACTIVATION_NAMES = ("swish", "silu", "gelu", "gelu_tanh", "sigmoid", "tanh", "mish", "softplus", "relu", "identity")
TENDENCIES = ("log", "quadratic", "cubic", "exponential")  # TBPI's curve families
