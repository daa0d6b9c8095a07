"""The model card (README.md) saved with every converted model and pipeline.

Built with huggingface_hub's ``ModelCard`` / ``ModelCardData`` and diffusers'
``populate_model_card`` (library name and tags), from the conversion records alone: the
base model, K, bank method, how the neurons code across denoising steps (per-step or
delta, with the encoders' price), what spikes, every event of the history with its
settings (calibration budget and site MSE, delta fits, fine-tuning runs), the image seeds
every fit saw (:mod:`spiking_ddim.held_out`), the figures measured at conversion on
held-out seeds (the last ``evaluate`` event, while no later event changed the model; also
the card's ``model-index`` metadata, as the Hub shows eval results), and how to load the
model. Written offline; nothing is fetched.
"""

from __future__ import annotations

from pathlib import Path
from typing import Mapping, Optional, Union

from .held_out import fitted_seeds
from .provenance import describe_source
from .record import FSConfig

TAGS = ["spiking-neural-network", "few-spikes-neurons", "spiking-ddim"]


def coding_text(r: FSConfig) -> str:
    """How the record's neurons code across denoising steps and what spikes, in words."""
    text = r.coding.describe(r.events(r.coding.fit_event) if r.coding.fit_event else [])
    spiking = (" Fully spiking: every conv / linear layer's analog input (but the first layer's) is sent as a signed "
               "FS code too." if r.spiking == "all" else " The Swish sites spike; other layers' inputs stay analog.")
    return text + "." + spiking


def card_text(records: Mapping[str, FSConfig], pipeline: bool) -> str:
    """The card's markdown body for the converted ``records`` (component name -> record)."""
    first = next(iter(records.values()))
    what = "pipeline" if pipeline else "model"
    lines = [f"# A spiking (few-spikes) {what} converted by spiking-ddim", "",
             f"Converted from {describe_source(first.source_model)}: its Swish activations are few-spikes (FS) "
             f"neurons of K={first.K} time steps, initialised from the bank entry `{first.method}`, with "
             f"{coding_text(first)}", "",
             "| component | base class | FS sites | coding | source weights (sha256) |", "|---|---|---|---|---|"]
    for name, r in records.items():
        digest = (r.source or {}).get("weights_sha256") or "-"
        lines.append(f"| {name} | {r.base_class} | {r.num_sites} | {r.coding.label}"
                     f"{' (fully spiking)' if r.spiking == 'all' else ''} | `{digest[:16]}` |")
    if first.evaluation is not None:
        lines += ["", "## Figures measured at conversion", "", *_evaluation_lines(first.evaluation, first)]
    lines += ["", "## History", ""]
    lines += [f"* {_event_line(e)}" for e in first.history]
    fitted = sorted({f for r in records.values() for f in fitted_seeds(r)}, key=lambda f: (f[1], f[0]))
    lines += ["", "## Held-out seeds", "",
              ("The fits saw the images of these seeds (image i of a run is drawn from a generator of its own seed): "
               + "; ".join(f"{what}: {lo}..{hi - 1}" for what, lo, hi in fitted)
               + ". `spiking-ddim sample` refuses to score an image of any of them, and every figure on this card is "
               "measured on other seeds." if fitted else
               "No fit of this model saw an image: its neurons come from the bank alone.")]
    loader = "load_pipeline" if pipeline else "load_model"
    lines += ["", "## How to use", "", "```python", "import spiking_ddim",
              f"model = spiking_ddim.{loader}(\"path/to/this/{what}\")",
              "```", "",
              "Plain diffusers loads it once `spiking_ddim.modeling` is imported; without it, it stops with an error "
              "naming that module, never giving the Swish network. `spiking-ddim sample --model PATH` scores it "
              "against the model it was converted from.", "",
              "The full record is `spiking_config.json` beside each converted component's `config.json`."]
    return "\n".join(lines) + "\n"


def _evaluation_lines(e: dict, record: FSConfig) -> list[str]:
    lo, hi = e["image_seeds"][0]
    return [f"Against {describe_source(e.get('reference') or record.source_model)}, on {e['images']} held-out images "
            f"(seeds {lo}..{hi - 1}), {e['steps']} denoising steps, the same noise for both (a check that travels "
            "with the model, not a benchmark: the package's `eval/` scripts measure 1000 images):", "",
            "| figure | value |", "|---|---|",
            f"| PSNR against the source (of the mean MSE) | {e['psnr']:.2f} dB |",
            f"| per-image PSNR: median / 5th percentile | {e['psnr_median']:.2f} / {e['psnr_p5']:.2f} dB |",
            f"| images below 30 dB | {100 * e['share_below_30db']:.1f}% |",
            f"| spikes per neuron per call | {e['spikes_per_neuron']:.3f} |",
            f"| energy per image, SNN / ANN (45 nm: 4.6 pJ / MAC, 0.9 pJ / AC) | {e['energy_ratio']:.3f} |",
            f"| the same against an INT8 ANN | {e['energy_ratio_int8']:.2f} |",
            f"| memory-aware estimate, SNN / ANN (and / INT8 ANN) | {e['memory_ratio']:.3f} "
            f"({e['memory_ratio_int8']:.2f}) |"]


def _seeds(e: dict) -> str:
    ranges = e.get("image_seeds")
    return "" if not ranges else ", image seeds " + ", ".join(f"{lo}..{hi - 1}" for lo, hi in ranges)


def _coding_words(e: dict) -> str:
    """A convert event's coding: its name and settings (events before codings were objects:
    a name and ``delta_K``)."""
    coding = e.get("coding")
    if isinstance(coding, dict):
        settings = ", ".join(f"{k} {v:g}" if isinstance(v, float) else f"{k} {v}" for k, v in coding.items()
                             if k != "name" and v is not None)
        return f", {coding['name']} coding" + (f" ({settings})" if settings else "")
    return f", {coding} coding" + (f" (changes in {e['delta_K']} steps)" if e.get("delta_K") else "") if coding else ""


def _event_line(e: dict) -> str:
    """One line of the history: the event, when, and every setting it recorded."""
    when = f" ({e['time']})" if e.get("time") else ""
    kind = e["event"]
    if kind == "convert":
        coding = _coding_words(e)
        spiking = (", fully spiking" if e.get("spiking") == "all" else "") + (
            f", {e['weight_bits']}-bit synapses" if e.get("weight_bits") else "") + "".join(
            f", {name} {bits}-bit" for name, bits in (e.get("layer_bits") or {}).items())
        return f"converted{when}: K={e.get('K')}, method {e.get('method')}{coding}{spiking}, {e.get('sites', '?')} sites"
    if kind == "calibrate":
        b = e.get("budget")
        budget = f" under the {b['kind']} budget {b['value']:g}" if b else ""
        mse = (f"; summed site MSE {e['summed_mse_before']:.4g} -> {e['summed_mse_after']:.4g}"
               if e.get("summed_mse_before") is not None else "")
        silent = f"; {len(e['silent_sites'])} sites silent" if e.get("silent_sites") else ""
        return f"calibrated{when}{budget}: {e.get('images', '?')} images{_seeds(e)}{mse}{silent}"
    if kind == "delta-fit":
        cost = "priced by accumulates" if e.get("cost") == "acs" else "every spike alike"
        spikes = (f"; {e['spikes_per_change']:.3f} expected spikes per change"
                  if e.get("spikes_per_change") is not None else "")
        return (f"delta encoders fitted{when}: {e.get('images', '?')} images{_seeds(e)}, spike weight "
                f"{e.get('spike_weight', 0):g} per mean squared {e.get('price', 'change')}, {cost}, "
                f"{e.get('sites', '?')} sites{spikes}")
    if kind == "if-baseline":
        return (f"rate-coded IF thresholds balanced{when}: {e.get('images', '?')} images{_seeds(e)}, percentile "
                f"{e.get('percentile')}")
    if kind == "evaluate":
        return (f"evaluated{when}: PSNR {e['psnr']:.2f} dB (median {e['psnr_median']:.2f}) on {e['images']} "
                f"held-out images{_seeds(e)}, energy {e['energy_ratio']:.3f} of the ANN's")
    if kind == "finetune":
        what = "weights and neurons" if e.get("train_unet") and not e.get("freeze_neurons") else (
            "weights" if e.get("train_unet") else "neurons")
        score = (f"; held-out image MSE {e['held_out_mse_start']:.4g} at the start, {e['held_out_mse_kept']:.4g} kept "
                 f"(step {e.get('kept_step')})" if e.get("held_out_mse_start") is not None else "")
        return f"fine-tuned{when}: {what}, {e.get('steps', '?')} steps, loss {e.get('loss', '?')}{_seeds(e)}{score}"
    return f"{kind}{when}"


def write_model_card(folder: Union[str, Path], records: Mapping[str, FSConfig], pipeline: bool) -> Path:
    """Write ``folder/README.md`` for the converted ``records``; returns its path."""
    from diffusers.utils.hub_utils import populate_model_card
    from huggingface_hub import ModelCard, ModelCardData

    first = next(iter(records.values()))
    data = ModelCardData(library_name="diffusers", base_model=_hub_id(first.source_model),
                         **_model_index(first.evaluation))
    card = populate_model_card(ModelCard(f"---\n{data.to_yaml()}\n---\n\n{card_text(records, pipeline)}"), tags=TAGS)
    path = Path(folder) / "README.md"
    card.save(path)
    return path


def _model_index(e: Optional[dict]) -> dict:
    """The card metadata's ``model-index`` of an ``evaluate`` event (nothing without one)."""
    from huggingface_hub import EvalResult

    if e is None:
        return {}
    dataset = {"task_type": "unconditional-image-generation", "dataset_type": "held-out-seeds",
               "dataset_name": f"{e['images']} images from held-out seeds, the source model's images as reference"}
    metrics = [("psnr", e["psnr"], "PSNR against the source (dB)"),
               ("psnr_median", e["psnr_median"], "median per-image PSNR (dB)"),
               ("energy_ratio", e["energy_ratio"], "energy per image, SNN / ANN (45 nm)")]
    return {"model_name": "spiking-ddim conversion",
            "eval_results": [EvalResult(**dataset, metric_type=t, metric_value=v, metric_name=n) for t, v, n in metrics]}


def _hub_id(name: Union[str, None]) -> Union[str, None]:
    """A source that is a hub id (``owner/name``), else None: the card's base_model field takes hub ids only."""
    if name is None or name.startswith(("/", "embedded:")) or name.count("/") != 1:
        return None
    return name
