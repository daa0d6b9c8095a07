"""The model card (README.md) saved with every converted model and pipeline.

Built with huggingface_hub's ``ModelCard`` / ``ModelCardData`` and diffusers'
``populate_model_card`` (library name and tags), from the conversion records alone: the
base model, K, bank method, coding, calibration (budget and the summed site MSE before and
after), fine-tuning runs (steps, what was trained, held-out image MSE at the start and
kept), and how to load the model. Written offline; nothing is fetched.
"""

from __future__ import annotations

from pathlib import Path
from typing import Mapping, Union

from .provenance import describe_source
from .record import FSConfig

TAGS = ["spiking-neural-network", "few-spikes-neurons", "spiking-ddim"]


def card_text(records: Mapping[str, FSConfig], pipeline: bool) -> str:
    """The card's markdown body for the converted ``records`` (component name -> record)."""
    first = next(iter(records.values()))
    what = "pipeline" if pipeline else "model"
    lines = [f"# A spiking (few-spikes) {what} converted by spiking-ddim", "",
             f"Converted from {describe_source(first.source_model)}: its Swish activations are few-spikes (FS) "
             f"neurons of K={first.K} time steps, initialised from the bank entry `{first.method}`, with "
             f"`{first.coding}` coding (every neuron sends its K-step code at every denoising step).", "",
             "| component | base class | FS sites | source weights (sha256) |", "|---|---|---|---|"]
    for name, r in records.items():
        digest = (r.source or {}).get("weights_sha256") or "-"
        lines.append(f"| {name} | {r.base_class} | {r.num_sites} | `{digest[:16]}` |")
    lines += ["", "## History", ""]
    for e in first.history:
        lines.append(f"* {_event_line(e)}")
    loader = "load_pipeline" if pipeline else "load_model"
    lines += ["", "## How to use", "", "```python", "import spiking_ddim",
              f"model = spiking_ddim.{loader}(\"path/to/this/{what}\")",
              "```", "",
              "Plain diffusers loads it once `spiking_ddim.modeling` is imported; without it, it stops with an error "
              "naming that module, never giving the Swish network. `spiking-ddim sample --model PATH` scores it "
              "against the model it was converted from.", "",
              "The full record is `spiking_config.json` beside each converted component's `config.json`."]
    return "\n".join(lines) + "\n"


def _event_line(e: dict) -> str:
    when = f" ({e['time']})" if e.get("time") else ""
    kind = e["event"]
    if kind == "convert":
        return f"converted{when}: K={e.get('K')}, method {e.get('method')}, {e.get('sites', '?')} sites"
    if kind == "calibrate":
        b = e.get("budget")
        budget = f" under the {b['kind']} budget {b['value']:g}" if b else ""
        mse = (f"; summed site MSE {e['summed_mse_before']:.4g} -> {e['summed_mse_after']:.4g}"
               if e.get("summed_mse_before") is not None else "")
        silent = f"; {len(e['silent_sites'])} sites silent" if e.get("silent_sites") else ""
        return f"calibrated{when}{budget}{mse}{silent}"
    if kind == "finetune":
        what = "weights and neurons" if e.get("train_unet") and not e.get("freeze_neurons") else (
            "weights" if e.get("train_unet") else "neurons")
        score = (f"; held-out image MSE {e['held_out_mse_start']:.4g} at the start, {e['held_out_mse_kept']:.4g} kept "
                 f"(step {e.get('kept_step')})" if e.get("held_out_mse_start") is not None else "")
        return f"fine-tuned{when}: {what}, {e.get('steps', '?')} steps, loss {e.get('loss', '?')}{score}"
    return f"{kind}{when}"


def write_model_card(folder: Union[str, Path], records: Mapping[str, FSConfig], pipeline: bool) -> Path:
    """Write ``folder/README.md`` for the converted ``records``; returns its path."""
    from diffusers.utils.hub_utils import populate_model_card
    from huggingface_hub import ModelCard, ModelCardData

    first = next(iter(records.values()))
    data = ModelCardData(library_name="diffusers", base_model=_hub_id(first.source_model))
    card = populate_model_card(ModelCard(f"---\n{data.to_yaml()}\n---\n\n{card_text(records, pipeline)}"), tags=TAGS)
    path = Path(folder) / "README.md"
    card.save(path)
    return path


def _hub_id(name: Union[str, None]) -> Union[str, None]:
    """A source that is a hub id (``owner/name``), else None: the card's base_model field takes hub ids only."""
    if name is None or name.startswith(("/", "embedded:")) or name.count("/") != 1:
        return None
    return name
