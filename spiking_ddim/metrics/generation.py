"""Generation metrics through torch-fidelity, from one feature pass per image set:
FID, KID (mean +- std over random subsets), IS and, on request, precision / recall.

    spiking-ddim metrics --real DIR|digits|photos --fake DIR [DIR ...] [--feature-extractor auto|inception|digits|photos]

Features come from torch-fidelity's ``inception-v3-compat`` extractor (2048-d pool
features; IS from its logits) or, offline, from one of the project's own CNNs: the digits
one (``digits-cnn``, 128-d features; IS from its 10 digit logits,
:mod:`spiking_ddim.metrics.digits_features`) or the photos one (``photos-cnn``, 128-d
features; IS from its nine photograph logits, :mod:`spiking_ddim.metrics.photos_features`).
Inception weights come from ``--inception-weights``, the ``SPIKING_DDIM_INCEPTION_WEIGHTS``
environment variable, torch's hub cache, or a download; offline without them ``auto``
takes the photos CNN against the built-in ``photos`` set and the digits CNN otherwise and
scores the fake set in the real set's space, and every result names its feature
space, e.g. "FID (digits features)". The metric arithmetic is torch-fidelity's: FID from feature means and
covariances; KID the unbiased MMD^2 with kernel (x.y/d + 1)^3 on random subsets; IS
exp(E KL(p(y|x) || p(y))) over 10 splits; precision / recall by k-NN manifolds (k = 3).
"""

from __future__ import annotations

import os
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Optional, Sequence, Union

import torch
from torch.utils.data import Dataset

from fs_neurons.utils.choices import check_choice

from ..defaults import FEATURE_SPACES, INCEPTION_ENV, METRICS

LABELS = {"inception-v3-compat": "Inception", "digits-cnn": "digits features", "photos-cnn": "photos features"}
ImagesLike = Union[str, Path, torch.Tensor]


class _UInt8Images(Dataset):
    """What torch-fidelity consumes: uint8 (3, H, W) tensors."""

    def __init__(self, images: torch.Tensor):
        self.images = images

    def __len__(self) -> int:
        return self.images.shape[0]

    def __getitem__(self, i: int) -> torch.Tensor:
        return self.images[i]


def as_uint8_rgb(images: ImagesLike, what: str) -> torch.Tensor:
    """A folder, ``digits`` or ``photos`` (a built-in held-out set), or (N, C, H, W) tensor
    (float in [-1, 1] or uint8) as uint8 (N, 3, H, W)."""
    from ..data import BUILT_IN_SETS, load_image_folder, load_images

    if isinstance(images, (str, Path)):
        if str(images) in BUILT_IN_SETS:
            images = load_images(str(images), BUILT_IN_SETS[str(images)], "test")
        else:
            images = load_image_folder(images)
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


SHIPPED = {"digits": ("digits-cnn", "digits_features", "DigitsFeatureExtractor"),
           "photos": ("photos-cnn", "photos_features", "PhotosFeatureExtractor")}  # choice -> (name, module, class)


def _register(choice: str) -> str:
    """Register the shipped feature network ``choice`` with torch-fidelity; its extractor name."""
    import importlib

    import torch_fidelity
    from torch_fidelity.registry import FEATURE_EXTRACTORS_REGISTRY

    name, module, cls = SHIPPED[choice]
    if name not in FEATURE_EXTRACTORS_REGISTRY:
        torch_fidelity.register_feature_extractor(name, getattr(importlib.import_module(f".{module}", __package__), cls))
    return name


def choice_of(extractor: str) -> str:
    """The ``--feature-extractor`` choice that gives torch-fidelity extractor ``extractor``."""
    return next((c for c, (name, _, _) in SHIPPED.items() if name == extractor), "inception")


def resolve_extractor(choice: str, inception_weights: Optional[Union[str, Path]] = None,
                      real: Optional[ImagesLike] = None) -> tuple[str, dict]:
    """(torch-fidelity extractor name, its kwargs) for ``auto``, ``inception``, ``digits`` or
    ``photos``. ``auto`` is Inception where its weights are local, else the network of the
    built-in set ``real`` names (``digits``, ``photos``), else the digits one."""
    check_choice("feature extractor", choice, FEATURE_SPACES)
    if choice == "auto":
        choice = ("inception" if find_inception_weights(inception_weights) is not None
                  else real if isinstance(real, str) and real in SHIPPED else "digits")
    if choice == "inception":
        return "inception-v3-compat", {"feature_extractor_weights_path": str(inception_weights_or_download(inception_weights))}
    return _register(choice), {}


KID_MIN_SUBSET = 100  # below this many images per subset a KID is flagged as noise
IS_SPLIT_IMAGES = 100  # images per IS split: splits = min(10, n // 100), at least 1


def check_metric_args(n_real: Optional[int], n_fake: int, metrics: Sequence[str], kid_subset_size: Optional[int] = None,
                      kid_subsets: int = 100) -> None:
    """``ValueError`` naming the argument when ``metrics`` cannot be computed on sets of
    ``n_real`` (None: not yet known) and ``n_fake`` images; called before any work."""
    unknown = set(metrics) - set(METRICS)
    if unknown or not metrics:
        raise ValueError(f"metrics must be some of {', '.join(METRICS)}, got {list(metrics)}")
    n = n_fake if n_real is None else min(n_real, n_fake)
    if n < 2:
        raise ValueError(f"generation metrics need at least 2 images per set, got "
                         f"{'' if n_real is None else f'real: {n_real}, '}fake: {n_fake}")
    if "kid" in metrics:
        if kid_subsets < 1:
            raise ValueError(f"the number of KID subsets must be >= 1, got {kid_subsets}")
        if kid_subset_size is not None:
            if kid_subset_size < 2:
                raise ValueError(f"the KID subset size must be >= 2, got {kid_subset_size}")
            if kid_subset_size > n:
                raise ValueError(f"the KID subset size {kid_subset_size} is larger than the number of images "
                                 f"({'' if n_real is None else f'real: {n_real}, '}fake: {n_fake}); pass a smaller "
                                 "one")
    if "prc" in metrics and n <= 3:
        raise ValueError(f"precision / recall (k = 3 neighbours) need more than 3 images per set, got "
                         f"{'' if n_real is None else f'real: {n_real}, '}fake: {n_fake}")


@dataclass
class Features:
    """One image set in one feature space: torch-fidelity's features dict (layer name ->
    (N, D) float32 CPU tensor), computed once and reused by every metric and comparison."""

    extractor: str
    layers: dict[str, torch.Tensor]

    @property
    def n(self) -> int:
        return next(iter(self.layers.values())).shape[0]

    def layer_for(self, metric: str) -> torch.Tensor:
        from torch_fidelity.registry import FEATURE_EXTRACTORS_REGISTRY

        layer = FEATURE_EXTRACTORS_REGISTRY[self.extractor].get_default_feature_layer_for_metric(metric)
        if layer not in self.layers:
            raise ValueError(f"these features lack layer {layer!r}, which {metric} needs; extract them with "
                             f"metrics including {metric!r}")
        return self.layers[layer]


def extract_features(
    images: Union[ImagesLike, Features],
    feature_extractor: str = "auto",
    inception_weights: Optional[Union[str, Path]] = None,
    metrics: Sequence[str] = ("fid", "kid", "isc"),
    device: Union[str, torch.device] = "cpu",
    batch_size: int = 64,
    what: str = "images",
) -> Features:
    """Features of ``images`` (a folder, ``digits``, an (N, C, H, W) tensor) for ``metrics``,
    in one pass through the extractor (``images`` already a :class:`Features`: returned as is)."""
    if isinstance(images, Features):
        return images
    from torch_fidelity.registry import FEATURE_EXTRACTORS_REGISTRY
    from torch_fidelity.utils import create_feature_extractor, get_featuresdict_from_dataset

    unknown = set(metrics) - set(METRICS)
    if unknown:
        raise ValueError(f"unknown metric(s) {sorted(unknown)}; choose from {', '.join(METRICS)}")
    data = as_uint8_rgb(images, what)
    name, kwargs = resolve_extractor(feature_extractor, inception_weights, images)
    cls = FEATURE_EXTRACTORS_REGISTRY[name]
    layers = sorted({cls.get_default_feature_layer_for_metric(m) for m in metrics})
    cuda = torch.device(device).type == "cuda"
    net = create_feature_extractor(name, layers, cuda=cuda, verbose=False, feature_extractor_compile=False, **kwargs)
    feats = get_featuresdict_from_dataset(_UInt8Images(data), net, batch_size, cuda, save_cpu_ram=True, verbose=False)
    return Features(name, {k: v.float() for k, v in feats.items()})


@dataclass
class GenerationMetrics:
    """Metrics of a generated set against a real one; None where not computed. ``notes``
    says which figures are unreliable and why."""

    feature_extractor: str
    n_real: int
    n_fake: int
    fid: Optional[float] = None
    kid_mean: Optional[float] = None
    kid_std: Optional[float] = None
    kid_subset_size: Optional[int] = None
    kid_subsets: Optional[int] = None
    isc_mean: Optional[float] = None
    isc_std: Optional[float] = None
    precision: Optional[float] = None
    recall: Optional[float] = None
    notes: list[str] = field(default_factory=list)

    @property
    def space(self) -> str:
        """The feature space in words: ``Inception`` or ``digits features``."""
        return LABELS.get(self.feature_extractor, self.feature_extractor)

    def label(self, metric: str) -> str:
        """e.g. ``KID (digits features)``, ``IS (digits classifier)``: what every printed figure is called."""
        shipped = {"digits-cnn": "digits classifier", "photos-cnn": "photograph classifier"}
        space = shipped.get(self.feature_extractor, self.space) if metric == "IS" else self.space
        return f"{metric} ({space})"

    def lines(self) -> list[str]:
        """One printable line per computed metric."""
        out = []
        if self.fid is not None:
            out.append(f"{self.label('FID')} {self.fid:.4f}")
        if self.kid_mean is not None:
            out.append(f"{self.label('KID')} {self.kid_mean:.5f} +- {self.kid_std:.5f}")
        if self.isc_mean is not None:
            out.append(f"{self.label('IS')} {self.isc_mean:.3f} +- {self.isc_std:.3f}")
        if self.precision is not None:
            out.append(f"{self.label('precision / recall')} {self.precision:.4f} / {self.recall:.4f}")
        return out

    def to_json(self) -> dict:
        return {**asdict(self), "space": self.space}


def _kid_notes(mean: float, std: float, size: int) -> list[str]:
    """Why a KID cannot be read as it stands: below 0 (only noise puts the unbiased estimate
    there), a spread as large as the value, or subsets too small."""
    notes = []
    if mean < 0:
        notes.append(f"KID below 0 ({mean:.4g}): the unbiased estimate is under zero only by sampling noise; it says "
                     "the sets are indistinguishable at this size, not that the fake set is better than real")
    elif std >= mean:
        notes.append(f"KID unreliable: its std over subsets ({std:.4f}) is not below its mean; sample more images "
                     f"(subsets of {size})")
    if size < KID_MIN_SUBSET:
        notes.append(f"KID from subsets of {size} images (fewer than {KID_MIN_SUBSET}): noise dominates it")
    return notes


def generation_metrics(
    real: Union[ImagesLike, Features],
    fake: Union[ImagesLike, Features],
    feature_extractor: str = "auto",
    inception_weights: Optional[Union[str, Path]] = None,
    metrics: Sequence[str] = ("fid", "kid", "isc"),
    kid_subset_size: Optional[int] = None,
    kid_subsets: int = 100,
    seed: int = 0,
    device: Union[str, torch.device] = "cpu",
    batch_size: int = 64,
) -> GenerationMetrics:
    """``metrics`` (of fid, kid, isc, prc) of ``fake`` against ``real``: folders, ``digits``,
    (N, C, H, W) tensors, or :class:`Features` from :func:`extract_features` (so one real
    set's features serve several fake sets). IS is of the fake set alone, over
    min(10, n_fake // 100) splits (at least 1).

    ``kid_subset_size`` defaults to min(1000, n_real, n_fake); a larger one is an error, as
    is every argument :func:`check_metric_args` refuses. ``notes`` flags each figure that
    cannot be read as it stands (too few images, a KID below 0 or within its spread).
    """
    from torch_fidelity.metric_fid import fid_features_to_statistics, fid_statistics_to_metric
    from torch_fidelity.metric_isc import isc_features_to_metric
    from torch_fidelity.metric_kid import kid_features_to_metric
    from torch_fidelity.metric_prc import prc_features_to_metric

    a = extract_features(real, feature_extractor, inception_weights, metrics, device, batch_size, what="real")
    space = choice_of(a.extractor) if feature_extractor == "auto" else feature_extractor  # auto: the real set's
    b = extract_features(fake, space, inception_weights, metrics, device, batch_size, what="fake")
    if a.extractor != b.extractor:
        raise ValueError(f"real and fake features come from different extractors: {a.extractor} vs {b.extractor}")
    check_metric_args(a.n, b.n, metrics, kid_subset_size, kid_subsets)
    n = min(a.n, b.n)
    out = GenerationMetrics(a.extractor, a.n, b.n)
    if "fid" in metrics:
        fa, fb = a.layer_for("fid"), b.layer_for("fid")
        out.fid = fid_statistics_to_metric(fid_features_to_statistics(fb), fid_features_to_statistics(fa),
                                           False)["frechet_inception_distance"]
        if n <= fa.shape[1]:
            out.notes.append(f"FID unreliable: {n} images per set are not more than the {fa.shape[1]} feature dims")
    if "kid" in metrics:
        size = min(1000, n) if kid_subset_size is None else kid_subset_size
        r = kid_features_to_metric(b.layer_for("kid"), a.layer_for("kid"), kid_subsets=kid_subsets,
                                   kid_subset_size=size, rng_seed=seed, verbose=False)
        out.kid_mean, out.kid_std = r["kernel_inception_distance_mean"], r["kernel_inception_distance_std"]
        out.kid_subset_size, out.kid_subsets = size, kid_subsets
        out.notes.extend(_kid_notes(out.kid_mean, out.kid_std, size))
    if "isc" in metrics:
        splits = min(10, max(1, b.n // IS_SPLIT_IMAGES))
        r = isc_features_to_metric(b.layer_for("isc"), splits=splits, shuffle=True, rng_seed=seed)
        out.isc_mean, out.isc_std = r["inception_score_mean"], r["inception_score_std"]
        if splits < 2:
            out.notes.append(f"IS unreliable: {b.n} images make one split (fewer than {2 * IS_SPLIT_IMAGES}): splits "
                             f"under {IS_SPLIT_IMAGES} images bias IS low, and one split has no spread")
    if "prc" in metrics:
        r = prc_features_to_metric(b.layer_for("prc"), a.layer_for("prc"), prc_neighborhood=3,
                                   prc_batch_size=10000, save_cpu_ram=True, verbose=False)
        out.precision, out.recall = r["precision"], r["recall"]
    return out
