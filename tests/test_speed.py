"""Timing helpers (spiking_ddim.speed): runs taken in turn, stage seconds. No timed assertions:
what is checked is which runs are called, in what order, and how the seconds add up."""

import torch

from spiking_ddim.speed import StageClock, sampling_seconds


def test_sampling_runs_are_taken_in_turn_after_one_warm_up_round():
    calls = []
    runs = {name: (lambda name=name: calls.append(name)) for name in ("ann", "fs", "delta")}
    seconds = sampling_seconds(runs, repeats=3, device=torch.device("cpu"))
    assert calls == ["ann", "fs", "delta"] * 4
    assert set(seconds) == {"ann", "fs", "delta"} and all(s >= 0 for s in seconds.values())


def test_stage_seconds_are_grouped_by_prefix_in_order_and_add_up_to_at_most_the_total():
    clock = StageClock()
    for stage in ("calibrate: record inputs", "calibrate: fit sites", "delta coding: record changes",
                  "delta coding: fit encoders"):
        clock(stage, 1, 2)
    seconds = clock.seconds()
    assert list(seconds) == ["calibrate", "delta coding", "total"]
    assert 0 <= seconds["calibrate"] + seconds["delta coding"] <= seconds["total"]
