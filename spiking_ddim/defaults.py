"""Defaults the package and its command line share, importable without torch.

Each is defined here once: the embedded model (a small DDIM trained on scikit-learn's
digits, shipped in the wheel), the FS time steps a conversion uses when none are given,
the generation metrics one can ask for, what can spike, and the environment variable
that points to Inception weights (a coding's defaults live in its module,
:mod:`spiking_ddim.codings`; a conversion's in :class:`spiking_ddim.spec.ConversionSpec`). ``--help`` builds from these alone.
"""

from __future__ import annotations

from pathlib import Path

DEFAULT_MODEL = Path(__file__).resolve().parent / "default_model"  # the embedded digits DDIM
DEFAULT_K = 16  # FS time steps of every command that converts (sample, convert, train snn)
METRICS = ("fid", "kid", "isc", "prc")  # FID, KID, Inception Score, precision / recall
FEATURE_SPACES = ("auto", "inception", "digits", "photos")  # --feature-extractor: Inception or a shipped CNN
INCEPTION_ENV = "SPIKING_DDIM_INCEPTION_WEIGHTS"  # a path to Inception weights, for offline metrics
# a new model's noise schedule (diffusers' beta_schedule): the cosine one, or DDPM's linear 1e-4..0.02
# (google/ddpm-cifar10-32's)
BETA_SCHEDULES = ("squaredcos_cap_v2", "linear")
# what a new model outputs (diffusers' prediction_type): the noise, or the velocity sqrt(a) noise - sqrt(1-a) x0,
# which at the last timestep (no signal left) is the clean image itself, so the first sampling step sets colours
PREDICTION_TYPES = ("epsilon", "v_prediction")
TIMESTEP_SPACINGS = ("leading", "trailing")  # where DDIM's steps fall: from 950 (of 1000, at 20 steps) or from 999
SPIKING = ("swish", "all")  # what spikes: the Swish sites, or also every conv / linear input but the first layer's
