"""Training and evaluation images: scikit-learn's bundled digits, or a folder of images.

Images are float tensors in [-1, 1], shape (N, C, H, W).
"""

from __future__ import annotations

from pathlib import Path
from typing import Union

import numpy as np
import torch
import torch.nn.functional as F

IMAGE_SUFFIXES = {".png", ".jpg", ".jpeg", ".bmp", ".webp", ".tif", ".tiff"}
DIGITS_TEST_FRACTION = 0.2
DIGITS_SPLIT_SEED = 0


def _digits_split(split: str) -> torch.Tensor:
    """Indices of a fixed train (80 %) / test (20 %) split of the 1,797 digits, or all."""
    if split not in ("train", "test", "all"):
        raise ValueError(f"split must be train, test or all, got {split!r}")
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
                mode = {1: "L", 3: "RGB"}.get(channels or (1 if im.mode in ("L", "1", "I;16", "I") else 3))
                im = im.convert(mode)
        except (UnidentifiedImageError, OSError) as e:
            raise ValueError(f"cannot read image {path}: {e}") from None
        if size is not None:
            side = min(im.size)
            left, top = (im.width - side) // 2, (im.height - side) // 2
            im = im.crop((left, top, left + side, top + side)).resize((size, size), Image.BICUBIC)
        elif first_size is None:
            first_size = im.size
        elif im.size != first_size:
            raise ValueError(f"images have mixed sizes: {path.name} is {im.size[0]}x{im.size[1]}, "
                             f"earlier images are {first_size[0]}x{first_size[1]}; pass a size to resize them")
        channels = channels or (1 if im.mode == "L" else 3)
        a = np.asarray(im, dtype=np.float32) / 255.0
        arrays.append(a[None] if a.ndim == 2 else a.transpose(2, 0, 1))
    return torch.from_numpy(np.stack(arrays)) * 2 - 1


def load_images(source: str, size: int, split: str = "train") -> torch.Tensor:
    """``digits`` (the built-in set, ``split`` applies) or an image folder."""
    if source == "digits":
        return digits(size, split)
    return load_image_folder(source, size)


def to_uint8(images: torch.Tensor) -> np.ndarray:
    """(N, C, H, W) in [-1, 1] to (N, H, W, C) uint8."""
    x = ((images.detach().float().clamp(-1, 1) + 1) * 127.5).round().to(torch.uint8)
    return x.permute(0, 2, 3, 1).cpu().numpy()


def save_png(image: np.ndarray, path: Union[str, Path]) -> None:
    """Save one (H, W, C) uint8 image as PNG."""
    from PIL import Image

    Image.fromarray(image[..., 0] if image.shape[-1] == 1 else image).save(path, format="PNG")


def grid(images: np.ndarray, cols: int = 8, pad: int = 1) -> np.ndarray:
    """Tile (N, H, W, C) uint8 images into one (rows*(H+pad)+pad, cols*(W+pad)+pad, C) image."""
    n, h, w, c = images.shape
    cols = max(1, min(cols, n))
    rows = (n + cols - 1) // cols
    out = np.full((rows * (h + pad) + pad, cols * (w + pad) + pad, c), 255, dtype=np.uint8)
    for i, im in enumerate(images):
        r, q = divmod(i, cols)
        out[pad + r * (h + pad): pad + r * (h + pad) + h, pad + q * (w + pad): pad + q * (w + pad) + w] = im
    return out
