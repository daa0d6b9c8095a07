"""Which image seeds a model was fitted on, and the guarantee that no scored image shares one.

Every fit draws its images from a named stream (:mod:`fs_neurons.utils.seeds`): calibration
records its site inputs from ``calibration-inputs`` (and, under a budget, prices spikes on
``calibration-costs`` and measures sensitivities on ``calibration-sensitivity``), delta
encoders are fitted to the changes of ``calibration-inputs`` images, fine-tuning learns from
and validates on ``trajectories``. Each fit records the seeds it used in its history event
(``image_seeds``: ``[first, last + 1)`` ranges), the model card states them, and
:func:`check_held_out` refuses a scoring run whose images (seeds ``seed .. seed + n - 1``)
would include any of them, so a figure is never measured on an image the model was fitted to.
"""

from __future__ import annotations

from typing import Sequence

from diffusers import DiffusionPipeline

from fs_neurons.utils.seeds import seed_range

from .errors import SettingError
from .record import FSConfig

# Images of the measurements a budgeted calibration makes (spiking_ddim.calibration.probe)
BUDGET_COST_IMAGES, BUDGET_SENSITIVITY_IMAGES = 1, 2
FITS = {"calibrate": "calibration", "delta-fit": "delta encoder fit", "if-baseline": "IF threshold balancing",
        "finetune": "fine-tuning", "widths": "width measurement"}


def calibration_seeds(images: int, seed: int = 0, budget: bool = False) -> list[list[int]]:
    """The image-seed ranges a calibration of ``images`` images from ``seed`` sees."""
    ranges = [seed_range("calibration-inputs", seed, images)]
    if budget:
        ranges += [seed_range("calibration-costs", 0, BUDGET_COST_IMAGES),
                   seed_range("calibration-sensitivity", 0, BUDGET_SENSITIVITY_IMAGES)]
    return ranges


def delta_fit_seeds(images: int, seed: int = 0) -> list[list[int]]:
    """The image-seed ranges a delta-encoder fit (or the IF baseline's balancing) sees."""
    return [seed_range("calibration-inputs", seed, images)]


def trajectory_seeds(trajectories: int, held_out: int) -> list[list[int]]:
    """The image-seed range fine-tuning learns from (trajectories) and validates on (held out)."""
    return [seed_range("trajectories", 0, trajectories + held_out)]


def fitted_seeds(record: FSConfig) -> list[tuple[str, int, int]]:
    """(what, first, last + 1) of every image-seed range the model's fits saw, from its history
    (events recorded before ``image_seeds`` existed: from their images and seed)."""
    out = []
    for e in record.history:
        what = FITS.get(e["event"])
        if what is None:
            continue
        ranges = e.get("image_seeds")
        if ranges is None and e["event"] != "finetune" and e.get("images") is not None:
            ranges = (calibration_seeds(e["images"], e.get("seed", 0), e.get("budget") is not None)
                      if e["event"] == "calibrate" else delta_fit_seeds(e["images"], e.get("seed", 0)))
        out += [(what, lo, hi) for lo, hi in ranges or []]
    return out


def check_held_out(fitted: Sequence[tuple[str, int, int]], seed: int, images: int) -> None:
    """:class:`SettingError` (``seed``) when images ``seed .. seed + images - 1`` share a seed
    with a range of ``fitted`` ((what, first, last + 1), :func:`fitted_seeds`)."""
    for what, lo, hi in fitted:
        if seed < hi and lo < seed + images:
            raise SettingError("seed", f"images {seed}..{seed + images - 1} would include seeds {max(lo, seed)}.."
                                       f"{min(hi, seed + images) - 1}, on which the model's {what} was fitted "
                                       f"(seeds {lo}..{hi - 1}): scored images must be held out; pick a --seed "
                                       "whose images avoid them")


def check_pipeline_held_out(pipe: DiffusionPipeline, seed: int, images: int) -> None:
    """:func:`check_held_out` for every converted component of ``pipe`` (the main job's and
    the benchmarks' guarantee, checked before they sample)."""
    for model in pipe.components.values():
        record = getattr(model, "fs_config", None)
        if isinstance(record, FSConfig):
            check_held_out(fitted_seeds(record), seed, images)
