"""The network a converted pipeline is scored against (image loss, distillation targets).

* ``source`` (the default): the model it was converted from, as its record names it
  (:mod:`spiking_ddim.provenance`), loaded afresh and checked: every converted
  component's weights must hash to the digest recorded at conversion. After fine-tuning
  with ``--train-unet`` this is the only honest reference; the converted model's own
  weights have moved.
* ``self``: the converted pipeline's own weights with the original activations (the FS
  sites switched to Swish / GELU). Equal to ``source`` until the weights are fine-tuned.
* any other string: a pipeline directory or hub id, loaded as given; its converted
  components' digests are reported, not required to match, and the record warns when a
  component cannot be a version of the converted one (another architecture, or weights
  that share nothing: :func:`spiking_ddim.provenance.unrelated`).

:func:`reference_pipeline` returns the pipeline and a record of what was used, for
metrics.json and the printed header.
"""

from __future__ import annotations

import copy
from typing import Optional

from diffusers import DiffusionPipeline

from .convert import revert_unet
from .pipelines import converted_components, load_pipeline
from .provenance import describe_source, source_location, unrelated, weights_digest

REFERENCES = ("source", "self")


def reference_pipeline(fs_pipe: DiffusionPipeline, reference: str = "source", scheduler: str = "ddim",
                       original: Optional[DiffusionPipeline] = None) -> tuple[DiffusionPipeline, dict]:
    """(the reference pipeline, a record of it) for the converted pipeline ``fs_pipe``;
    ``reference`` is ``source``, ``self`` or a pipeline directory / hub id. The reference
    gets ``fs_pipe``'s scheduler configuration. ``original``: the source pipeline already
    in memory (the plain copy a conversion started from), used instead of loading it.

    Raises ``ValueError`` when the record names no source, the source's weights differ from
    the recorded digest, or the reference lacks a converted component; ``FileNotFoundError``
    / ``OSError`` when it cannot be loaded."""
    done = converted_components(fs_pipe)
    if not done:
        raise ValueError("the pipeline has no FS components: it is its own reference")
    if reference == "self":
        ref = copy.deepcopy(fs_pipe)
        for name, m in converted_components(ref).items():
            ref.register_modules(**{name: revert_unet(m)})  # the same weights, the original activations
        return ref, {"kind": "self", "model": None, "warnings": [],
                     "description": "the converted model's own weights with the original activations"}
    if reference == "source":
        sources = {m.fs_config.source_model for m in done.values()}
        if None in sources or len(sources) != 1:
            raise ValueError("the conversion record names no single source model (converted by an older version, or "
                             "from a model object): pass --reference self or --reference PATH")
        name = sources.pop()
        ref = original if original is not None else load_pipeline(source_location(name), scheduler=scheduler)
    else:
        name = reference
        ref = load_pipeline(reference, scheduler=scheduler)
    ref.scheduler = type(fs_pipe.scheduler).from_config(fs_pipe.scheduler.config)
    digests, warnings = {}, []
    for component, m in done.items():
        other = getattr(ref, component, None)
        if other is None:
            raise ValueError(f"the reference {name} has no component {component!r}")
        if converted_components(ref):
            raise ValueError(f"the reference {name} is itself converted to FS neurons: give the original model")
        recorded = (m.fs_config.source or {}).get("weights_sha256")
        digests[component] = {"weights_sha256": weights_digest(other), "recorded": recorded}
        if reference == "source" and digests[component]["weights_sha256"] != recorded:
            raise ValueError(f"the {component} weights of {describe_source(name)} differ from those recorded when the "
                             f"model was converted (sha256 {recorded[:12]}..., now "
                             f"{digests[component]['weights_sha256'][:12]}...): the source has changed (or the model was converted "
                             "from a lower-precision copy); pass "
                             "--reference PATH (the original model) or --reference self")
        why = unrelated(m, other) if reference != "source" else None
        if why is not None:
            warnings.append(f"the reference {name} cannot be the {component} this model was converted from: {why}; "
                            "its images are not what the FS model approximates")
    kind = "source" if reference == "source" else "path"
    what = ("the model it was converted from" if kind == "source" else "a model given by --reference")
    return ref, {"kind": kind, "model": name, "components": digests, "warnings": warnings,
                 "description": f"{describe_source(name)} ({what})"}


def matches_record(record: dict) -> Optional[bool]:
    """Whether a reference record's weights match the digests recorded at conversion (None:
    nothing to compare)."""
    comps = record.get("components") or {}
    if not comps or any(c.get("recorded") is None for c in comps.values()):
        return None
    return all(c["weights_sha256"] == c["recorded"] for c in comps.values())
