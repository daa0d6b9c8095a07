"""KID (Kernel Inception Distance) through torch-fidelity, on folders or tensors.

    python -m eval.kid --real DIR|digits --fake DIR [--feature-extractor auto|inception|digits]

torch-fidelity's ``inception-v3-compat`` extractor and KID estimator (polynomial kernel,
unbiased MMD^2, mean +- std over random subsets). Inception weights come from
``--inception-weights``, the ``SPIKING_DDIM_INCEPTION_WEIGHTS`` environment variable,
torch's hub cache, or a download; offline without them, ``auto`` falls back to the
project's digits CNN (``digits-cnn``, see :mod:`eval.digits_features`) and every result
says which feature space it used.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Optional, Union

import torch
from torch.utils.data import Dataset

INCEPTION_ENV = "SPIKING_DDIM_INCEPTION_WEIGHTS"
LABELS = {"inception-v3-compat": "Inception", "digits-cnn": "digits features"}
ImagesLike = Union[str, Path, torch.Tensor]


@dataclass
class KIDResult:
    mean: float
    std: float
    feature_extractor: str
    subset_size: int
    subsets: int
    n_real: int
    n_fake: int

    @property
    def label(self) -> str:
        """e.g. ``KID (digits features)``: what every printed KID is called."""
        return f"KID ({LABELS.get(self.feature_extractor, self.feature_extractor)})"

    def __str__(self) -> str:
        return f"{self.label} {self.mean:.5f} +- {self.std:.5f}"


class _UInt8Images(Dataset):
    """What torch-fidelity consumes: uint8 (3, H, W) tensors."""

    def __init__(self, images: torch.Tensor):
        self.images = images

    def __len__(self) -> int:
        return self.images.shape[0]

    def __getitem__(self, i: int) -> torch.Tensor:
        return self.images[i]


def as_uint8_rgb(images: ImagesLike, what: str) -> torch.Tensor:
    """A folder, ``digits`` (the held-out digits), or (N, C, H, W) tensor (float in [-1, 1]
    or uint8) as uint8 (N, 3, H, W)."""
    from spiking_ddim.data import digits, load_image_folder

    if isinstance(images, (str, Path)):
        images = digits(16, "test") if str(images) == "digits" else load_image_folder(images)
    if not isinstance(images, torch.Tensor) or images.ndim != 4 or images.shape[0] == 0:
        raise ValueError(f"{what} images must be a non-empty (N, C, H, W) batch")
    if images.shape[1] not in (1, 3):
        raise ValueError(f"{what} images must have 1 or 3 channels, got {images.shape[1]}")
    if images.dtype != torch.uint8:
        if not torch.isfinite(images).all():
            raise ValueError(f"{what} images contain NaN or infinite values")
        images = ((images.float().clamp(-1, 1) + 1) * 127.5).round().to(torch.uint8)
    return images.expand(-1, 3, -1, -1).contiguous() if images.shape[1] == 1 else images.contiguous()


def _inception_url() -> str:
    from torch_fidelity.feature_extractor_inceptionv3 import URL_INCEPTION_V3

    return URL_INCEPTION_V3


def find_inception_weights(path: Optional[Union[str, Path]] = None) -> Optional[Path]:
    """Local Inception weights: ``path``, then $SPIKING_DDIM_INCEPTION_WEIGHTS, then torch's
    hub cache. A given path that does not exist is an error."""
    for source, p in (("--inception-weights", path), (INCEPTION_ENV, os.environ.get(INCEPTION_ENV))):
        if p:
            if not Path(p).is_file():
                raise FileNotFoundError(f"Inception weights given by {source} not found: {p}")
            return Path(p)
    cached = Path(torch.hub.get_dir()) / "checkpoints" / Path(_inception_url()).name
    return cached if cached.is_file() else None


def inception_weights_or_download(path: Optional[Union[str, Path]] = None) -> Path:
    """Local Inception weights, downloading them to the hub cache if needed; a clear error
    naming the file and how to supply it when that fails."""
    found = find_inception_weights(path)
    if found is not None:
        return found
    url = _inception_url()
    try:
        torch.hub.load_state_dict_from_url(url, progress=False)
    except Exception as e:  # noqa: BLE001 - offline shows up as many exception types
        raise FileNotFoundError(
            f"Inception weights {Path(url).name} are not available and could not be downloaded from {url} "
            f"({type(e).__name__}). Download that file elsewhere and pass --inception-weights PATH or set "
            f"{INCEPTION_ENV}=PATH, or use --feature-extractor digits for digit images."
        ) from None
    return Path(torch.hub.get_dir()) / "checkpoints" / Path(url).name


def _register_digits() -> None:
    import torch_fidelity
    from torch_fidelity.registry import FEATURE_EXTRACTORS_REGISTRY

    from .digits_features import NAME, DigitsFeatureExtractor

    if NAME not in FEATURE_EXTRACTORS_REGISTRY:
        torch_fidelity.register_feature_extractor(NAME, DigitsFeatureExtractor)


def resolve_extractor(choice: str, inception_weights: Optional[Union[str, Path]] = None) -> tuple[str, dict]:
    """(torch-fidelity extractor name, its kwargs) for ``auto``, ``inception`` or ``digits``."""
    if choice not in ("auto", "inception", "digits"):
        raise ValueError(f"feature extractor must be auto, inception or digits, got {choice!r}")
    if choice == "auto":
        choice = "inception" if find_inception_weights(inception_weights) is not None else "digits"
    if choice == "inception":
        return "inception-v3-compat", {"feature_extractor_weights_path": str(inception_weights_or_download(inception_weights))}
    _register_digits()
    return "digits-cnn", {}


def kid(
    real: ImagesLike,
    fake: ImagesLike,
    feature_extractor: str = "auto",
    inception_weights: Optional[Union[str, Path]] = None,
    subset_size: Optional[int] = None,
    subsets: int = 100,
    seed: int = 0,
    device: Union[str, torch.device] = "cpu",
    batch_size: int = 64,
) -> KIDResult:
    """KID of ``fake`` against ``real`` (folders, ``digits``, or tensors).

    ``subset_size`` defaults to min(1000, n_real, n_fake); a larger one is an error.
    """
    import torch_fidelity

    a, b = as_uint8_rgb(real, "real"), as_uint8_rgb(fake, "fake")
    n = min(a.shape[0], b.shape[0])
    size = min(1000, n) if subset_size is None else subset_size
    if size < 2:
        raise ValueError(f"KID needs at least 2 images per set, got real: {a.shape[0]}, fake: {b.shape[0]}")
    if size > n:
        raise ValueError(f"KID subset size {size} is larger than the number of images "
                         f"(real: {a.shape[0]}, fake: {b.shape[0]}); pass a smaller subset size")
    name, kwargs = resolve_extractor(feature_extractor, inception_weights)
    metrics = torch_fidelity.calculate_metrics(
        input1=_UInt8Images(b), input2=_UInt8Images(a), kid=True, feature_extractor=name,
        kid_subset_size=size, kid_subsets=subsets, rng_seed=seed, cuda=torch.device(device).type == "cuda",
        batch_size=batch_size, verbose=False, cache=False, save_cpu_ram=True, **kwargs,
    )
    return KIDResult(metrics["kernel_inception_distance_mean"], metrics["kernel_inception_distance_std"], name,
                     size, subsets, a.shape[0], b.shape[0])


def main(argv=None) -> int:
    p = argparse.ArgumentParser(prog="python -m eval.kid", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--real", required=True, help="folder of real images, or 'digits' (the held-out digits)")
    p.add_argument("--fake", required=True, help="folder of generated images")
    p.add_argument("--feature-extractor", choices=["auto", "inception", "digits"], default="auto",
                   help="auto: Inception when its weights are available locally, else digits (default: %(default)s)")
    p.add_argument("--inception-weights", help=f"Inception weights file (or set {INCEPTION_ENV})")
    p.add_argument("--subset-size", type=int, help="images per KID subset (default: min(1000, smaller set))")
    p.add_argument("--subsets", type=int, default=100, help="number of random subsets (default: %(default)s)")
    p.add_argument("--seed", type=int, default=0, help="subset sampling seed (default: %(default)s)")
    p.add_argument("--device", default="cpu", help="cpu or cuda (default: %(default)s)")
    p.add_argument("--json", action="store_true", help="print the result as JSON")
    args = p.parse_args(argv)
    try:
        r = kid(args.real, args.fake, args.feature_extractor, args.inception_weights, args.subset_size,
                args.subsets, args.seed, args.device)
    except (FileNotFoundError, ValueError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    print(json.dumps({**asdict(r), "label": r.label}) if args.json else str(r))
    return 0


if __name__ == "__main__":
    sys.exit(main())
