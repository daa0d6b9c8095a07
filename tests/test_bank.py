"""The shipped parameter bank: schema, required entries, recorded errors, bad files."""

import json

import pytest

from fs_neurons import BankError, FSNeuron, load_bank, load_entry
from fs_neurons.bank import BANK_DIR

METHODS = ("random", "gaussian", "tbpi", "ours")


@pytest.mark.parametrize("activation", ["swish", "gelu"])
def test_every_entry_reproduces_its_recorded_mse(activation):
    entries = load_bank(activation)
    assert entries
    for e in entries:
        assert e.recompute_mse(activation) == pytest.approx(e.mse, rel=1e-6), (e.method, e.K)


def test_swish_bank_has_the_required_entries():
    have = {(e.method, e.K) for e in load_bank("swish")}
    assert {("ours", K) for K in range(2, 17)} <= have
    assert {("ours-unet", K) for K in range(2, 17)} <= have
    assert {(m, K) for m in METHODS for K in (4, 8, 12, 16)} <= have
    for e in load_bank("swish"):  # paper protocol on [-8, 12], or fitted to the shipped UNet distribution
        assert e.range == (-8.0, 12.0) if e.method != "ours-unet" else e.distribution == "swish_unet_inputs.json"


def test_unet_entries_beat_the_paper_protocol_entries_on_unet_inputs():
    from fs_neurons import fs_mse
    from fs_neurons.bank import load_distribution
    from fs_neurons.targets import resolve_activation

    dist = load_distribution("swish_unet_inputs.json")
    _, swish = resolve_activation("swish")
    assert dist.x.numel() >= 1000 and dist.lo < -5 and dist.hi > 5
    for K in range(2, 17):
        unet = load_entry("swish", K, "ours-unet")
        assert unet.mse == pytest.approx(fs_mse(unet.h, unet.d, unet.T, swish, dist), rel=1e-6)
        for method in ("ours", "tbpi"):
            try:
                other = load_entry("swish", K, method)
            except BankError:
                continue
            assert unet.mse <= fs_mse(other.h, other.d, other.T, swish, dist), (K, method)


def test_ours_beats_tbpi_in_the_bank():
    for K in (4, 8, 12, 16):
        assert load_entry("swish", K, "ours").mse <= load_entry("swish", K, "tbpi").mse


def test_load_by_activation_K_method_and_alias():
    e = load_entry("silu", 8, "tbpi")  # silu is swish
    assert e.K == 8 and e.method == "tbpi" and len(e.h) == 8
    n = FSNeuron.from_bank("swish", K=8, method="tbpi")
    assert n.h.tolist() == pytest.approx(list(e.h))


def test_missing_entry_lists_what_exists():
    with pytest.raises(BankError, match=r"no bank entry .*K=99.*available: .*ours/K=8"):
        load_entry("swish", 99, "ours")
    with pytest.raises(BankError, match="method='nope'"):
        load_entry("swish", 8, "nope")


def test_missing_and_corrupt_bank_files(tmp_path):
    with pytest.raises(BankError, match="not found"):
        load_bank("swish", tmp_path / "absent.json")
    bad = tmp_path / "bad.json"
    bad.write_text("{not json")
    with pytest.raises(BankError, match="not valid JSON"):
        load_bank("swish", bad)
    good = json.loads((BANK_DIR / "swish.json").read_text())
    for mutate, message in [
        (lambda e: e.update(h=e["h"][:-1]), "h must be a list of K="),
        (lambda e: e.pop("T"), "missing T"),
        (lambda e: e.update(K=0), "K must be a positive integer"),
        (lambda e: e.update(range=[3, 1]), "range"),
        (lambda e: e.update(mse="x"), "mse"),
        (lambda e: e.update(distribution="../elsewhere.json"), "distribution must name a .json file"),
    ]:
        data = json.loads(json.dumps(good))
        mutate(data["entries"][0])
        bad.write_text(json.dumps(data))
        with pytest.raises(BankError, match=message):
            load_bank("swish", bad)
    data = json.loads(json.dumps(good))
    data["entries"][0]["distribution"] = "absent.json"
    bad.write_text(json.dumps(data))
    with pytest.raises(BankError, match="distribution file not found"):
        load_bank("swish", bad)[0].recompute_mse("swish")
    bad.write_text(json.dumps({"entries": 3}))
    with pytest.raises(BankError, match="must be an object"):
        load_bank("swish", bad)
