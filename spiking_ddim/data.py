"""Training and evaluation images: scikit-learn's bundled digits, crops of the photographs
installed packages ship (:mod:`.photos`), or a folder of images.

Images are float tensors in [-1, 1], shape (N, C, H, W).
"""

from __future__ import annotations

from pathlib import Path
from typing import Union

import numpy as np
import torch
import torch.nn.functional as F

from fs_neurons.utils.choices import check_choice

BUILT_IN_SETS = {"digits": 16, "photos": 32}  # names load_images takes besides a folder -> their models' image side
IMAGE_SUFFIXES = {".png", ".jpg", ".jpeg", ".bmp", ".webp", ".tif", ".tiff"}
DIGITS_TEST_FRACTION = 0.2
DIGITS_SPLIT_SEED = 0


def _digits_split(split: str) -> torch.Tensor:
    """Indices of a fixed train (80 %) / test (20 %) split of the 1,797 digits, or all."""
    check_choice("split", split, ("train", "test", "all"))
    n = 1797
    perm = torch.randperm(n, generator=torch.Generator().manual_seed(DIGITS_SPLIT_SEED))
    n_test = int(round(DIGITS_TEST_FRACTION * n))
    return {"test": perm[:n_test], "train": perm[n_test:], "all": torch.arange(n)}[split]


def digits(size: int = 16, split: str = "train") -> torch.Tensor:
    """scikit-learn's 8x8 digits (1,797 images, offline), upscaled bilinearly to ``size``.

    ``split``: ``train`` (80 %), ``test`` (the held-out 20 %, a fixed split) or ``all``.
    Returns (N, 1, size, size) in [-1, 1].
    """
    from sklearn.datasets import load_digits

    if size < 8:
        raise ValueError(f"digits are 8x8; size must be >= 8, got {size}")
    idx = _digits_split(split)
    x = torch.from_numpy(load_digits().images.astype(np.float32) / 16.0).unsqueeze(1)[idx]
    if size != 8:
        x = F.interpolate(x, size=(size, size), mode="bilinear", align_corners=False)
    return (x.clamp(0, 1) * 2 - 1).contiguous()


def digit_labels(split: str = "train") -> torch.Tensor:
    """Class labels (0-9) of :func:`digits` for the same split, shape (N,)."""
    from sklearn.datasets import load_digits

    return torch.from_numpy(load_digits().target).long()[_digits_split(split)]


def image_files(folder: Union[str, Path]) -> list[Path]:
    """Image files directly in ``folder``, sorted; clear errors for a missing or empty folder."""
    folder = Path(folder)
    if not folder.is_dir():
        raise FileNotFoundError(f"image folder not found: {folder}")
    files = sorted(p for p in folder.iterdir() if p.suffix.lower() in IMAGE_SUFFIXES)
    if not files:
        raise ValueError(f"image folder {folder} contains no images ({', '.join(sorted(IMAGE_SUFFIXES))})")
    return files


def count_images(folder: Union[str, Path]) -> int:
    """How many image files :func:`load_image_folder` would read from ``folder``."""
    return len(image_files(folder))


def _as_unit_array(im) -> np.ndarray:
    """A PIL image as float32 (H, W) or (H, W, C) in [0, 1]: 8-bit modes by 255, 16-bit
    grey (modes ``I;16*``, and ``I`` as Pillow opens 16-bit PNGs) by 65535."""
    if im.mode.startswith("I;16") or im.mode == "I":
        a = np.asarray(im).astype(np.float32)
        if a.min() < 0 or a.max() > 65535:
            raise ValueError(f"32-bit integer image with values outside 0..65535 ({a.min():g}..{a.max():g})")
        return a / 65535.0
    if im.mode == "F":
        raise ValueError("floating-point images (mode F) have no defined range; save them as 8- or 16-bit")
    return np.asarray(im, dtype=np.float32) / 255.0


def load_image_folder(folder: Union[str, Path], size: int | None = None, channels: int | None = None) -> torch.Tensor:
    """All images of a folder as (N, C, H, W) in [-1, 1].

    With ``size`` each image is centre-cropped to a square and resized; without it all
    images must share one size. ``channels`` 1 or 3 converts (default: that of the first).
    """
    from PIL import Image, UnidentifiedImageError

    arrays, first_size = [], None
    for path in image_files(folder):
        try:
            with Image.open(path) as im:
                im.load()
                deep = im.mode.startswith("I;16") or im.mode in ("I", "F")
                want = channels or (1 if im.mode in ("L", "1", "LA") or deep else 3)
                # 16-bit grey is scaled to [0, 1] first, as a float image (mode F)
                im = Image.fromarray(_as_unit_array(im), mode="F") if deep else im.convert({1: "L", 3: "RGB"}[want])
                if size is not None:
                    side = min(im.size)
                    left, top = (im.width - side) // 2, (im.height - side) // 2
                    im = im.crop((left, top, left + side, top + side)).resize((size, size), Image.BICUBIC)
                a = np.clip(np.asarray(im, dtype=np.float32), 0, 1) if deep else _as_unit_array(im)
                if deep and want == 3:
                    a = np.repeat(a[..., None], 3, axis=-1)
        except (UnidentifiedImageError, OSError, ValueError) as e:
            raise ValueError(f"cannot read image {path}: {e}") from None
        if size is None and first_size is None:
            first_size = a.shape[:2]
        elif size is None and a.shape[:2] != first_size:
            raise ValueError(f"images have mixed sizes: {path.name} is {a.shape[1]}x{a.shape[0]}, "
                             f"earlier images are {first_size[1]}x{first_size[0]}; pass a size to resize them")
        channels = want
        arrays.append(a[None] if a.ndim == 2 else a.transpose(2, 0, 1))
    return torch.from_numpy(np.stack(arrays)) * 2 - 1


def load_images(source: str, size: int, split: str = "train") -> torch.Tensor:
    """``digits`` or ``photos`` (built-in sets, ``split`` applies: ``test`` is the held-out
    set) or an image folder."""
    if source == "digits":
        return digits(size, split)
    if source == "photos":
        from .photos import photo_set

        return photo_set(split, size)
    return load_image_folder(source, size)


def to_uint8(images: torch.Tensor) -> np.ndarray:
    """(N, C, H, W) in [-1, 1] to (N, H, W, C) uint8."""
    x = ((images.detach().float().clamp(-1, 1) + 1) * 127.5).round().to(torch.uint8)
    return x.permute(0, 2, 3, 1).cpu().numpy()


def image_grid(images: torch.Tensor, cols: int = 8) -> np.ndarray:
    """(N, C, H, W) images in [-1, 1] tiled by ``torchvision.utils.make_grid`` (one white
    pixel between tiles) as one (H', W', C) uint8 image."""
    from torchvision.utils import make_grid

    tiles = make_grid((images.detach().float().cpu().clamp(-1, 1) + 1) / 2, nrow=cols, padding=1, pad_value=1.0)
    return to_uint8(tiles[None] * 2 - 1)[0][..., : images.shape[1]]


def save_png(image: np.ndarray, path: Union[str, Path]) -> None:
    """Save one (H, W, C) uint8 image as PNG."""
    from PIL import Image

    Image.fromarray(image[..., 0] if image.shape[-1] == 1 else image).save(path, format="PNG")
