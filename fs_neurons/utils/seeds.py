"""Named random streams: every seed the package derives from a user's seed, by name.

A stream is the user's seed plus a fixed offset, so that independent draws of one run
(the images calibration records, the image that prices each site's spikes, the noise of
the sensitivity measurement, the reference's training trajectories) never share noise
with each other or with the images a user samples (seeds ``seed + i``, the ``sampling``
stream). The offsets are the values earlier versions used as bare numbers, so figures do
not move.
"""

from __future__ import annotations

STREAMS = {
    "sampling": 0,  # image i of a sampling run: seed + i
    "gaussian-baseline-noise": 10_000,  # the gaussian baseline's parameter noise (fs_neurons.methods)
    "calibration-inputs": 10_000,  # images whose site inputs calibration records
    "calibration-costs": 20_000,  # the image that measures each site's neurons and accumulates per spike
    "calibration-sensitivity": 30_000,  # images and noise of the sensitivity measurement
    "trajectories": 1_000_000,  # the reference's runs for distillation trajectories and held-out images
    "evaluation": 2_000_000,  # the held-out images a conversion is scored on for its model card
}


def seed_range(name: str, seed: int, images: int) -> list[int]:
    """[first, last + 1) of the image seeds of ``images`` images from stream ``name``."""
    return [stream(name, seed), stream(name, seed) + images]


def stream(name: str, seed: int = 0) -> int:
    """The seed of stream ``name`` for a user's ``seed``."""
    if name not in STREAMS:
        raise KeyError(f"unknown random stream {name!r}; streams: {', '.join(STREAMS)}")
    return STREAMS[name] + seed
