"""The FS spike loop as a function, with a memory-light surrogate-gradient backward.

    v = x ; out = 0
    for t in 0..K-1:
        z   = H(v - T[t])        # spike when v > T[t]
        out = out + d[t] * z
        v   = v - h[t] * z       # reset by subtraction

The forward pass keeps only the input; the backward pass replays the loop, storing the
spikes as booleans, and walks back through it with the surrogate dz/du. A neuron inside
a large network therefore costs one input-sized tensor of autograd memory, not K.
"""

from __future__ import annotations

from typing import Optional

import torch

from .surrogate import Surrogate, Triangle

DEFAULT_SURROGATE = Triangle()


def _loop(x: torch.Tensor, h: torch.Tensor, d: torch.Tensor, T: torch.Tensor, count_spikes: bool, keep_spikes: bool):
    v = x
    out = torch.zeros_like(x)
    count = torch.zeros_like(x) if count_spikes else x.new_zeros(())
    spikes = []
    for t in range(h.shape[0]):
        z = v > T[t]
        zf = z.to(x.dtype)
        out = out + d[t] * zf
        v = v - h[t] * zf
        if count_spikes:
            count = count + zf
        if keep_spikes:
            spikes.append(z)
    return out, count, v, spikes


class _FSFunction(torch.autograd.Function):
    @staticmethod
    def forward(ctx, x, h, d, T, surrogate, count_spikes):
        out, count, _, _ = _loop(x, h, d, T, count_spikes, keep_spikes=False)
        ctx.save_for_backward(x, h, d, T)
        ctx.surrogate = surrogate
        ctx.mark_non_differentiable(count)
        return out, count

    @staticmethod
    def backward(ctx, grad_out, _grad_count):
        x, h, d, T = ctx.saved_tensors
        _, _, v, spikes = _loop(x, h, d, T, count_spikes=False, keep_spikes=True)
        adj = torch.zeros_like(x)  # dL/dv after the current step
        gh, gd, gT = torch.zeros_like(h), torch.zeros_like(d), torch.zeros_like(T)
        shape = h.shape[1:]
        for t in reversed(range(h.shape[0])):
            z = spikes[t].to(x.dtype)
            v = v + h[t] * z  # membrane potential before step t
            gz = grad_out * d[t] - adj * h[t]
            gu = gz * ctx.surrogate(v - T[t])
            gd[t] = (grad_out * z).sum_to_size(shape)
            gh[t] = (-adj * z).sum_to_size(shape)
            gT[t] = (-gu).sum_to_size(shape)
            adj = adj + gu
        return adj, gh, gd, gT, None, None


def fs_simulate(
    x: torch.Tensor,
    h: torch.Tensor,
    d: torch.Tensor,
    T: torch.Tensor,
    surrogate: Optional[Surrogate] = None,
    count_spikes: bool = False,
) -> tuple[torch.Tensor, Optional[torch.Tensor]]:
    """Run the spike loop; returns ``(output, spike_count)`` shaped like ``x`` (the count
    is None unless ``count_spikes``).

    ``h``, ``d``, ``T`` have shape (K, *S) where S broadcasts against ``x`` (S empty for a
    single neuron). Gradients reach x, h, d and T through ``surrogate`` (triangle by
    default). NaN inputs give NaN outputs, as any activation would.
    """
    if not torch.is_floating_point(x):
        raise TypeError(f"FS neuron input must be a floating-point tensor, got {x.dtype}")
    work = torch.promote_types(x.dtype, torch.float32)
    xw, hw, dw, Tw = (t.to(work) for t in (x, h, d, T))
    out, count = _FSFunction.apply(xw, hw, dw, Tw, surrogate or DEFAULT_SURROGATE, count_spikes)
    out = torch.where(torch.isnan(xw), xw, out)
    return out.to(x.dtype), (count.to(x.dtype) if count_spikes else None)
