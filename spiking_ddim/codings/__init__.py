"""Codings: how FS sites code across denoising steps, one module per coding, registered by
name (:mod:`.registry`): :class:`StepCoding` (``step``, every step sends the full code; the
default, registered first), :class:`DeltaCoding` (``delta``, changes only, as spike codes) and
:class:`GradedCoding` (``graded``, changes only, as one b-bit value each). A new coding
is one module with a registered :class:`Coding` subclass, imported here."""
# isort: skip_file

from .registry import (
    Coding,
    as_coding,
    coding_class,
    coding_fields,
    coding_from_json,
    coding_names,
    register_coding,
    row_fields,
    unregister_coding,
)
from .step import StepCoding
from .delta import ChangeCoding, DeltaCoding
from .graded import GradedCoding

__all__ = ["ChangeCoding", "Coding", "DeltaCoding", "GradedCoding", "StepCoding", "as_coding", "coding_class", "coding_fields", "coding_from_json",
           "coding_names", "register_coding", "row_fields", "unregister_coding"]
