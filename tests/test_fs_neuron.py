"""The FS neuron: spike loop, surrogate gradients, exact lookup path, shapes and dtypes."""

import subprocess
import sys
from pathlib import Path

import pytest
import torch
from torch import nn

from fs_neurons import FSNeuron, Sigmoid, Stateful, fs_piecewise, fs_simulate, reset_net

ROOT = Path(__file__).resolve().parents[1]


class _Spike(torch.autograd.Function):
    """Reference Heaviside with the triangle surrogate, for plain autograd."""

    @staticmethod
    def forward(ctx, u):
        ctx.save_for_backward(u)
        return (u > 0).to(u.dtype)

    @staticmethod
    def backward(ctx, g):
        (u,) = ctx.saved_tensors
        return g * (1 - u.abs()).clamp_min(0)


def reference_loop(x, h, d, T):
    v, out = x, torch.zeros_like(x)
    for t in range(len(h)):
        z = _Spike.apply(v - T[t])
        out = out + d[t] * z
        v = v - h[t] * z
    return out


def test_hand_worked_example():
    # h = [2, 1], d = [3, 0.5], T = [1.5, 0.25]
    # x=0.0: no spike -> 0;  x=0.3: step 1 spikes (0.3 > 0.25) -> 0.5
    # x=1.6: step 0 spikes (v -> -0.4), step 1 silent -> 3
    # x=2.4: step 0 spikes (v -> 0.4), step 1 spikes -> 3.5;  x=1.5: 1.5 > 1.5 is false -> step 1 spikes -> 0.5
    n = FSNeuron.from_params([2.0, 1.0], [3.0, 0.5], [1.5, 0.25])
    x = torch.tensor([0.0, 0.3, 1.6, 2.4, 1.5])
    expected = torch.tensor([0.0, 0.5, 3.0, 3.5, 0.5])
    for backend in ("simulate", "lookup"):
        n.backend = backend
        assert torch.equal(n(x), expected), backend


def test_gradients_reach_h_d_T_and_match_autograd():
    g = torch.Generator().manual_seed(0)
    K = 6
    h = torch.rand(K, generator=g, dtype=torch.float64).requires_grad_()
    d = torch.rand(K, generator=g, dtype=torch.float64).requires_grad_()
    T = torch.randn(K, generator=g, dtype=torch.float64).requires_grad_()
    x = (3 * torch.randn(2000, generator=g, dtype=torch.float64)).requires_grad_()
    w = torch.randn(2000, generator=g, dtype=torch.float64)
    out, _ = fs_simulate(x, h, d, T)
    (out * w).sum().backward()
    ours = [p.grad.clone() for p in (x, h, d, T)]
    for p in (x, h, d, T):
        p.grad = None
    (reference_loop(x, h, d, T) * w).sum().backward()
    for a, b in zip(ours, (p.grad for p in (x, h, d, T))):
        torch.testing.assert_close(a, b, atol=1e-10, rtol=1e-10)
    assert all(p.abs().sum() > 0 for p in ours[1:]), "every parameter must receive gradient"


def test_module_training_step_updates_all_parameters():
    n = FSNeuron(4, generator=torch.Generator().manual_seed(1))
    before = {k: v.detach().clone() for k, v in n.named_parameters()}
    x = torch.linspace(-4, 4, 500)
    loss = ((n(x) - torch.nn.functional.silu(x)) ** 2).mean()
    loss.backward()
    torch.optim.SGD(n.parameters(), lr=0.1).step()
    for k, v in n.named_parameters():
        assert not torch.equal(v, before[k]), k


def test_pluggable_surrogate_changes_gradient():
    n1 = FSNeuron.from_params([1.0, 0.5], [1.0, 0.5], [0.5, 0.25])
    n2 = FSNeuron.from_params([1.0, 0.5], [1.0, 0.5], [0.5, 0.25], surrogate=Sigmoid(alpha=2.0))
    x = torch.linspace(-2, 2, 100)
    for n in (n1, n2):
        n(x).sum().backward()
    assert not torch.allclose(n1.T.grad, n2.T.grad)


@pytest.mark.parametrize("dtype", [torch.float64, torch.float32])
def test_lookup_equals_simulation_on_a_million_inputs(dtype):
    g = torch.Generator().manual_seed(3)
    for K in (4, 8, 16):
        n = FSNeuron(K, generator=g)
        x = (torch.rand(10**6, generator=g, dtype=torch.float64) * 200 - 100).to(dtype)
        with torch.no_grad():
            n.backend = "simulate"
            sim = n(x)
            n.backend = "lookup"
            fast = n(x)
        table = n.table()
        bp = table.breakpoints[0][torch.isfinite(table.breakpoints[0])].to(torch.float64)
        # distance of each input to the nearest breakpoint
        idx = torch.searchsorted(bp, x.double()).clamp(1, max(bp.numel() - 1, 1))
        near = torch.minimum((x.double() - bp[idx - 1]).abs(), (x.double() - bp[idx]).abs()) < 1e-4
        diff = (sim.double() - fast.double()).abs()
        tol = 1e-6 if dtype == torch.float64 else 1e-6 * max(1.0, float(fast.abs().max()))
        assert float(diff[~near].max()) <= tol, (K, float(diff[~near].max()))


def test_eval_mode_uses_lookup_and_train_mode_simulates():
    n = FSNeuron(8, generator=torch.Generator().manual_seed(0))
    x = torch.randn(100)
    n.train()
    assert n(x).requires_grad
    n.eval()
    assert not n(x).requires_grad  # the exact table has no gradient


def test_lookup_table_follows_parameter_updates():
    n = FSNeuron.from_params([1.0], [1.0], [0.0])
    n.eval()
    x = torch.tensor([0.5])
    assert float(n(x)) == 1.0
    with torch.no_grad():
        n.d.fill_(2.0)
    assert float(n(x)) == 2.0


def test_spike_counts_agree_between_backends_and_only_a_hook_counts_them():
    n = FSNeuron(8, generator=torch.Generator().manual_seed(5))
    x = torch.randn(4, 3, 5, 5) * 3
    counts = {}
    handle = n.register_spike_hook(lambda neuron, out, count: counts.__setitem__(neuron.backend, count.clone()))
    with torch.no_grad():
        for backend in ("simulate", "lookup"):
            n.backend = backend
            n(x)
    handle.remove()
    assert torch.equal(counts["simulate"], counts["lookup"]) and counts["lookup"].shape == x.shape
    assert 0 < float(counts["lookup"].mean()) <= 8
    n(x)  # the hook is gone: nothing more is counted
    assert len(counts) == 2


def test_set_backend_for_a_model_and_for_a_block():
    from fs_neurons.functional import backend, set_backend

    model = torch.nn.Sequential(FSNeuron(4), torch.nn.Linear(3, 3), FSNeuron(4, backend="lookup"))
    with backend(model, "simulate"):
        assert [m.backend for m in model if isinstance(m, FSNeuron)] == ["simulate", "simulate"]
    assert [m.backend for m in model if isinstance(m, FSNeuron)] == ["auto", "lookup"]
    set_backend(model, "lookup")
    assert all(m.backend == "lookup" for m in model if isinstance(m, FSNeuron))
    with pytest.raises(ValueError, match="backend must be one of"):
        set_backend(model, "fast")


def test_set_params_checks_and_keeps_device_and_dtype():
    n = FSNeuron(3).double()
    n.set_params([1.0, 0.5, 0.25], [1.0, 0.5, 0.25], [0.5, 0.25, 0.125])
    assert n.h.dtype == torch.float64 and n.params()["T"] == [0.5, 0.25, 0.125]
    with pytest.raises(ValueError, match="do not fit"):
        n.set_params([1.0], [1.0], [1.0])
    with pytest.raises(ValueError, match="NaN"):
        n.set_params([1.0, float("inf"), 0.0], [1.0] * 3, [1.0] * 3)


@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16, torch.float32, torch.float64])
def test_any_shape_and_dtype(dtype):
    n = FSNeuron.from_params([1.0, 0.5, 0.25], [1.0, 0.5, 0.25], [0.5, 0.25, 0.125])
    x = torch.linspace(-1, 2, 2 * 3 * 4 * 5).reshape(2, 3, 4, 5).to(dtype)
    for backend in ("simulate", "lookup"):
        n.backend = backend
        y = n(x)
        assert y.shape == x.shape and y.dtype == dtype
        assert float(y.detach().float().max()) == 1.75
    assert n(torch.tensor(0.9, dtype=dtype)).shape == ()


def test_nan_input_propagates():
    n = FSNeuron.from_params([1.0], [1.0], [0.0])
    x = torch.tensor([float("nan"), 1.0])
    for backend in ("simulate", "lookup"):
        n.backend = backend
        y = n(x)
        assert torch.isnan(y[0]) and y[1] == 1.0


def test_vectorised_neurons_equal_separate_neurons():
    g = torch.Generator().manual_seed(7)
    multi = FSNeuron(6, num_neurons=3, neuron_dim=1, generator=g)
    x = torch.randn(2, 3, 10, generator=g) * 3
    singles = [FSNeuron.from_params(multi.h[i], multi.d[i], multi.T[i]) for i in range(3)]
    for backend in ("simulate", "lookup"):
        multi.backend = backend
        for s in singles:
            s.backend = backend
        y = multi(x)
        for i, s in enumerate(singles):
            assert torch.equal(y[:, i], s(x[:, i]))
    # gradients stay per neuron
    multi.backend = "simulate"
    multi(x)[:, 1].sum().backward()
    assert multi.T.grad[0].abs().sum() == 0 and multi.T.grad[2].abs().sum() == 0
    assert multi.T.grad[1].abs().sum() > 0


def test_piecewise_table_counts_pieces():
    # a 2-step binary ADC on [0, 2): levels 0, 0.5, 1, 1.5
    table = fs_piecewise(torch.tensor([1.0, 0.5]), torch.tensor([1.0, 0.5]), torch.tensor([1.0, 0.5]))
    assert table.breakpoints[0].tolist() == [0.5, 1.0, 1.5]
    assert table.levels[0].tolist() == [0.0, 0.5, 1.0, 1.5]
    assert table.spikes[0].tolist() == [0.0, 1.0, 1.0, 2.0]


def test_bad_neuron_arguments():
    with pytest.raises(ValueError, match="K"):
        FSNeuron(0)
    with pytest.raises(ValueError, match="K"):
        FSNeuron(2.5)
    with pytest.raises(ValueError, match="same shape"):
        FSNeuron.from_params([1.0, 2.0], [1.0], [1.0, 2.0])
    with pytest.raises(ValueError, match="NaN"):
        FSNeuron.from_params([1.0, float("nan")], [1.0, 1.0], [1.0, 1.0])
    with pytest.raises(ValueError, match="backend"):
        FSNeuron(2, backend="fast")
    with pytest.raises(TypeError, match="floating"):
        FSNeuron(2)(torch.tensor([1, 2]))
    with pytest.raises(ValueError, match="neurons"):
        FSNeuron(2, num_neurons=3)(torch.randn(4, 5))


@pytest.mark.integration
def test_lookup_kernel_gives_the_same_result_on_one_thread_and_starts_no_workers():
    n = FSNeuron.from_bank("swish", K=8, method="ours").eval()
    x = torch.randn(20_000, generator=torch.Generator().manual_seed(0)) * 4
    threads = torch.get_num_threads()
    try:
        torch.set_num_threads(1)
        one = n(x)
        torch.set_num_threads(2)
        two = n(x)
    finally:
        torch.set_num_threads(threads)
    assert torch.equal(one, two)
    # A single-thread process (e.g. each torchrun worker) runs the serial kernel: no OpenMP
    # workers spinning on a core another process needs.
    code = ("import torch, numba; from fs_neurons import FSNeuron; torch.set_num_threads(1); "
            "n = FSNeuron.from_bank('swish', K=8, method='ours').eval(); n(torch.randn(10000)); "
            "from fs_neurons import kernels; assert kernels.available()\n"
            "try:\n    numba.threading_layer(); print('workers')\nexcept ValueError:\n    print('none')")
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=ROOT)
    assert r.returncode == 0 and r.stdout.strip() == "none", r.stderr[-2000:]


def test_reset_net_forgets_the_state_of_every_stateful_module_and_a_stateful_module_must_say_how():
    class Counter(Stateful):  # a toy module with state across calls
        def __init__(self):
            super().__init__()
            self.calls = 0

        def forward(self, x):
            self.calls += 1
            return x

        def reset(self):
            self.calls = 0

    model = nn.Sequential(Counter(), nn.Linear(2, 2), nn.Sequential(Counter()))
    model(torch.zeros(1, 2))
    model(torch.zeros(1, 2))
    assert [m.calls for m in model.modules() if isinstance(m, Counter)] == [2, 2]
    reset_net(model)
    assert [m.calls for m in model.modules() if isinstance(m, Counter)] == [0, 0]
    with pytest.raises(NotImplementedError, match="must say how to reset"):
        reset_net(nn.Sequential(Stateful()))
