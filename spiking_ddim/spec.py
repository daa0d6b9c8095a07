"""What a conversion recipe does, as one typed value: :class:`ConversionSpec`.

Its fields are the recipe's settings, each with its default here and nowhere else, and
each checked once, when the spec is made (:class:`~spiking_ddim.errors.SettingError`
naming the field; a coding's own settings are checked by its class, named
``<coding>_<setting>``). The command line maps one flag to each field (``--convert`` for
``components``; ``--spike-budget`` / ``--energy-budget`` for ``budget``; a coding's settings
``--<coding>-<setting>``). Torch-free at import, so ``--help`` can show the defaults;
:func:`spiking_ddim.recipe.prepare` runs a spec.
"""

from __future__ import annotations

from dataclasses import dataclass, field, fields
from typing import TYPE_CHECKING, Any, Optional

from fs_neurons.names import UNET_METHOD

from .codings import Coding, StepCoding
from .defaults import DEFAULT_K
from .errors import SettingError

if TYPE_CHECKING:
    from .calibration import SpikeBudget


@dataclass(frozen=True)
class ConversionSpec:
    """How to make a spiking pipeline from a plain one (see :func:`spiking_ddim.recipe.prepare`).

    ``components``: what to convert (``unet``; ``vae`` / ``vqvae``: the decoder). ``K``: FS
    time steps per neuron; ``method``: the bank entry the neurons start from. ``coding``:
    how the UNet's sites code across denoising steps (:mod:`spiking_ddim.codings`; a name
    or a coding object), resolved for ``K`` (defaults filled in). ``spiking``: ``swish``
    (the replaced activations spike) or ``all`` (also every conv / linear input but the
    first layer's; needs ``calibrate``). ``calibrate``: refit every site to the inputs it sees
    on ``calibration_images`` images, under ``budget`` (a
    :class:`~spiking_ddim.calibration.SpikeBudget`) if given. ``seed``: the fits' image
    seeds (from their own streams, held out of scoring). ``bank_path``: another bank file.
    ``weight_bits``: conv / linear weights quantised to that many bits before calibration
    (:mod:`spiking_ddim.synapses`; None: float32); ``layer_bits``: (layer, bits) pairs of the
    UNet's layers at another width (say ``(("conv_out", 16),)``). ``narrow_widths``: measure accumulator and
    state ranges on the calibration images once fitted and record the narrowest integer
    widths that hold them (:mod:`spiking_ddim.widths`; needs ``weight_bits``)."""

    components: tuple[str, ...] = ("unet",)
    K: int = DEFAULT_K
    method: str = UNET_METHOD
    coding: Coding = field(default_factory=StepCoding)
    spiking: str = "swish"
    calibrate: bool = False
    calibration_images: int = 16
    budget: Optional["SpikeBudget"] = None
    seed: int = 0
    bank_path: Optional[str] = None
    weight_bits: Optional[int] = None
    layer_bits: tuple[tuple[str, int], ...] = ()
    narrow_widths: bool = False

    def __post_init__(self) -> None:
        from .pipelines import check_conversion

        object.__setattr__(self, "components", tuple(dict.fromkeys(self.components)))
        object.__setattr__(self, "coding", check_conversion(self.components, self.K, self.method, self.coding,
                                                            self.spiking, self.bank_path))
        if self.spiking == "all" and not self.calibrate:
            raise SettingError("spiking", "spiking 'all' needs calibration (calibrate, --calibrate): its input "
                                          "encoders are fitted to the inputs they see")
        if self.budget is not None and not self.calibrate:
            raise SettingError("budget", "a spike or energy budget works through calibration (calibrate, --calibrate)")
        if self.weight_bits is not None:
            from .synapses import check_weight_bits

            check_weight_bits(self.weight_bits)
            for name, bits in self.layer_bits:
                try:
                    check_weight_bits(bits)
                except SettingError as e:
                    raise SettingError("layer_bits", f"{name}: {e}") from None
        elif self.layer_bits:
            raise SettingError("layer_bits", "layer widths apply to quantised synapses: give weight_bits too")
        if self.narrow_widths and self.weight_bits is None:
            raise SettingError("narrow_widths", "accumulator widths are counted in the weights' integer steps: "
                                                "narrow widths need weight_bits (--weight-bits)")
        for name, least in (("calibration_images", 1), ("seed", 0)):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or value < least:
                raise SettingError(name, f"must be an integer >= {least}, got {value!r}")

    def fit_seeds(self) -> list[tuple[str, int, int]]:
        """(what, first, end) of every image-seed range the recipe's fits draw from (to be
        held out of scoring, :func:`spiking_ddim.held_out.check_held_out`)."""
        from .held_out import FITS, calibration_seeds

        calibration = calibration_seeds(self.calibration_images, self.seed, self.budget is not None) \
            if self.calibrate else []
        widths = calibration_seeds(self.calibration_images, self.seed) if self.narrow_widths else []
        return [(FITS["calibrate"], lo, hi) for lo, hi in calibration] + [
            (FITS.get(self.coding.fit_event, "encoder fit"), lo, hi) for lo, hi in self.coding.fit_seeds(self.seed)] + [
            (FITS["widths"], lo, hi) for lo, hi in widths]


def spec_default(name: str) -> Any:
    """The default of the :class:`ConversionSpec` field ``name``."""
    f = next(f for f in fields(ConversionSpec) if f.name == name)
    return f.default_factory() if callable(f.default_factory) else f.default
