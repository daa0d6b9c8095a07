"""``spiking-ddim metrics``: score folders of generated images.

    spiking-ddim metrics --real DIR|digits|photos --fake DIR [DIR ...] [--original DIR]

Each --fake folder gets FID, KID (mean +- std over random subsets), IS and, on request,
precision / recall against --real, through torch-fidelity (see
:mod:`spiking_ddim.metrics.generation` for the feature spaces). With --original (the
original network's images, same file names as each --fake folder, e.g. ``sample``'s
``original/`` beside ``fs/``), also the image loss of each fake image against its
original: MSE and PSNR on the [0, 1] scale.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from .flags import add_device_arg, add_metric_args, help_text

HELP = "FID / KID / IS of image folders against real images, and image loss against the original's"


def add_parser(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("metrics", help=HELP, description=help_text(__doc__), formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--real", help="folder of real images, 'digits' (the held-out digits) or 'photos' (the held-out "
                                  "photographic crops); 'none' or left out: no FID / KID / IS")
    p.add_argument("--fake", required=True, nargs="+", type=Path, help="folder(s) of generated images, each scored")
    p.add_argument("--original", type=Path,
                   help="folder of the original network's images with the same file names: image MSE / PSNR")
    add_metric_args(p)
    p.add_argument("--kid-subsets", type=int, default=100, help="number of random KID subsets, >= 1 (default: %(default)s)")
    p.add_argument("--seed", type=int, default=0, help="seed of KID subsets and IS splits (default: %(default)s)")
    add_device_arg(p, default="cpu")
    p.add_argument("--json", action="store_true", help="print the results as JSON")
    p.set_defaults(run=run)


def image_loss(original: Path, fake: Path) -> dict:
    """Mean MSE, the PSNR of the mean MSE and the per-image PSNR spread of ``fake``'s images
    against ``original``'s of the same file names."""
    from ..data import image_files, load_image_folder
    from ..metrics import compare, psnr_spread

    names = [f.name for f in image_files(fake)]
    missing = sorted(set(names) - {f.name for f in image_files(original)})
    if missing:
        raise ValueError(f"{original} has no image named {missing[0]} (of {len(missing)} names in {fake})")
    if len(image_files(original)) != len(names):
        raise ValueError(f"{original} and {fake} hold different numbers of images")
    r = compare(load_image_folder(original), load_image_folder(fake))
    return {"mse": r["mean_mse"], "psnr": r["mean_psnr"], **psnr_spread(r["psnr"])}


def check_run_folder(folder: Path) -> int:
    """The number of images in ``folder``; ``ValueError`` when ``spiking-ddim sample`` wrote it
    (its metrics.json beside it) with another number of images."""
    from ..data import count_images

    n = count_images(folder)
    record = folder.parent / "metrics.json"
    if record.is_file():
        try:
            written = json.loads(record.read_text()).get("images_written", {}).get(folder.name)
        except (OSError, json.JSONDecodeError, AttributeError):
            written = None
        if written is not None and written != n:
            raise ValueError(f"{folder} holds {n} images, but the run that wrote it recorded {written} "
                             f"({record}): the folder was changed since")
    return n


def run(args: argparse.Namespace) -> int:
    from ..data import BUILT_IN_SETS, count_images
    from ..metrics import check_metric_args, describe_psnr, extract_features, generation_metrics
    from .common import resolve_device

    if args.real == "none":  # as sample takes it
        args.real = None
    if args.real is None and args.original is None:
        raise SystemExit("error: nothing to score: pass --real (FID / KID / IS) and / or --original (image loss)")
    results: dict[str, dict] = {str(f): {} for f in args.fake}
    try:  # every argument and folder checked before any feature is extracted
        counts = {f: check_run_folder(f) for f in args.fake}
        if args.original is not None:
            check_run_folder(args.original)
        if args.real is not None:
            n_real = None if args.real in BUILT_IN_SETS else count_images(args.real)
            for n_fake in counts.values():
                check_metric_args(n_real, n_fake, args.metrics, args.kid_subset_size, args.kid_subsets)
        args.device = str(resolve_device(args.device))
    except (FileNotFoundError, ValueError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    try:
        if args.real is not None:
            real = extract_features(args.real, args.feature_extractor, args.inception_weights, args.metrics,
                                    args.device, what="real")
            for f in args.fake:
                results[str(f)]["generation"] = generation_metrics(
                    real, f, args.feature_extractor, args.inception_weights, args.metrics, args.kid_subset_size,
                    args.kid_subsets, args.seed, args.device)
        if args.original is not None:
            for f in args.fake:
                results[str(f)]["image_loss"] = image_loss(args.original, f)
    except (FileNotFoundError, ValueError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    if args.json:
        print(json.dumps({k: {**(r["generation"].to_json() if "generation" in r else {}),
                              **({"image_loss": r["image_loss"]} if "image_loss" in r else {})}
                          for k, r in results.items()}, indent=1))
        return 0
    for name, r in results.items():
        print(f"{name}:")
        if "generation" in r:
            g = r["generation"]
            print(f"  {g.n_fake} images vs {g.n_real} real")
            for line in g.lines() + [f"note: {n}" for n in g.notes]:
                print(f"  {line}")
        if "image_loss" in r:
            loss = r["image_loss"]
            print(f"  image loss vs {args.original}: MSE {loss['mse']:.6f}   {describe_psnr(loss)}")
    return 0
