"""Defaults the package and its command line share, importable without torch.

Each is defined here once: the embedded model (a small DDIM trained on scikit-learn's
digits, shipped in the wheel), the FS time steps a conversion uses when none are given,
the generation metrics one can ask for, the codings and the delta encoders' fitting
defaults, and the environment variable that points to
Inception weights. ``--help`` builds from these alone.
"""

from __future__ import annotations

from pathlib import Path

DEFAULT_MODEL = Path(__file__).resolve().parent / "default_model"  # the embedded digits DDIM
DEFAULT_K = 16  # FS time steps of every command that converts (sample, convert, train snn)
METRICS = ("fid", "kid", "isc", "prc")  # FID, KID, Inception Score, precision / recall
INCEPTION_ENV = "SPIKING_DDIM_INCEPTION_WEIGHTS"  # a path to Inception weights, for offline metrics
SPIKING = ("swish", "all")  # what spikes: the Swish sites, or also every conv / linear input but the first layer's
CODINGS = ("step", "delta")  # how FS sites code across denoising steps (spiking_ddim.delta)
DELTA_PRICES = ("change", "value")  # what a delta encoder's spike price is relative to (calibration.fit_delta)
DELTA_PRICE = "value"
# delta encoders' default price of a spike, per price scale: in units of the site's mean squared change / value
DELTA_SPIKE_WEIGHTS = {"change": 0.01, "value": 0.0002}
DELTA_COSTS = ("spikes", "acs")  # what the price counts: spikes, or the accumulates they cause downstream
DELTA_COST = "acs"
DEFAULT_DELTA_K = 8  # at most this many time steps code a change (fewer when K is lower)
DELTA_IMAGES = 16  # images whose changes the delta encoders are fitted to
