"""The error a bad setting raises, naming the setting, so a command can name its flag.

Library functions check their arguments before any work and raise :class:`SettingError`
(a ``ValueError``) with ``name``, the argument (``K``, ``delta_K``, ``spike_weight``...);
the command line maps the name to its flag (:func:`spiking_ddim.cli.common.flag_error`).
"""

from __future__ import annotations


class SettingError(ValueError):
    """A value out of range for the setting ``name``; ``str(error)`` says what is wrong."""

    def __init__(self, name: str, message: str):
        super().__init__(message)
        self.name = name
