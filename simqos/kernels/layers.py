"""Layer kernels: one prunable layer, one level's masked weights, one way to compute it.

A :class:`LayerKernel` builds, from a layer module and its masked weights, a function with the
layer's own call signature. ``dense`` runs the module itself with the masked weights (every
layer kind). The sparse kernels pair a format of :mod:`simqos.kernels.formats` with
``Linear`` (``y = W x``) or ``Conv1d``/``Conv2d`` (unfold the input into columns, then
``y = W cols``; groups of 1 and zero padding only). Every kernel's output equals the dense
masked layer's within float32 rounding; :func:`build_kernel` raises ValueError with the reason
when a kernel cannot run a layer. ``nested_direct`` convolves directly over the nested layout
(:class:`simqos.kernels.nested.NestedConv`): no unfold.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from simqos.kernels.formats import FORMATS, SparseFormat
from simqos.kernels.nested import NestedConv, NestedSell

__all__ = ["KERNELS", "BuiltKernel", "LayerKernel", "build_kernel", "kernel_names"]

LayerFn = Callable[..., object]


@dataclass(frozen=True)
class BuiltKernel:
    """A runnable kernel: ``fn`` has the layer's call signature; ``resident_bytes`` is what its
    weight storage occupies (values, indices, bias)."""

    name: str
    fn: LayerFn
    resident_bytes: int


@dataclass(frozen=True)
class LayerKernel:
    """A named way to run a layer; ``build(module, weights, device)`` returns a BuiltKernel or
    raises ValueError saying why it cannot."""

    name: str
    build: Callable[[nn.Module, dict[str, torch.Tensor], str], BuiltKernel]
    devices: tuple[str, ...]


def _bias_bytes(module: nn.Module) -> int:
    bias = getattr(module, "bias", None)
    return 0 if not isinstance(bias, torch.Tensor) else bias.numel() * bias.element_size()


def _build_dense(module: nn.Module, weights: dict[str, torch.Tensor], device: str) -> BuiltKernel:
    fixed = {name: w.detach() for name, w in weights.items()}
    nbytes = sum(w.numel() * w.element_size() for w in fixed.values()) + _bias_bytes(module)
    if isinstance(module, (nn.Linear, nn.Conv1d, nn.Conv2d)) and set(fixed) == {"weight"}:
        # the layer's own op on the masked weight: torch.func.functional_call costs about 50 µs
        # a call at batch 1, more than the arithmetic of most layers of a small model
        weight, bias = fixed["weight"], None if module.bias is None else module.bias.detach()
        if isinstance(module, nn.Linear):
            return BuiltKernel("dense", lambda x: F.linear(x, weight, bias), nbytes)
        return BuiltKernel("dense", lambda x: module._conv_forward(x, weight, bias), nbytes)

    def fn(*args: object, **kwargs: object) -> object:
        return torch.func.functional_call(module, fixed, args, kwargs)

    return BuiltKernel("dense", fn, nbytes)


def _conv_geometry(module: nn.Module) -> tuple[tuple[int, int], ...]:
    """(kernel, stride, padding, dilation) as 2-D pairs; conv1d becomes a 1-row conv2d."""
    if isinstance(module, nn.Conv1d):
        (k,), (s,), (p,), (d,) = module.kernel_size, module.stride, module.padding, module.dilation
        return (1, k), (1, s), (0, p), (1, d)
    return tuple(tuple(getattr(module, a)) for a in ("kernel_size", "stride", "padding", "dilation"))


def _sparse_builder(fmt: SparseFormat) -> Callable[[nn.Module, dict[str, torch.Tensor], str], BuiltKernel]:
    def build(module: nn.Module, weights: dict[str, torch.Tensor], device: str) -> BuiltKernel:
        if device not in fmt.devices:
            raise ValueError(f"{fmt.name} runs on {list(fmt.devices)}, not {device}")
        if not isinstance(module, (nn.Linear, nn.Conv1d, nn.Conv2d)):
            raise ValueError(f"{fmt.name} runs Linear and Conv layers, not {type(module).__name__}")
        weight = weights["weight"].detach()
        bias = None if module.bias is None else module.bias.detach()
        if isinstance(module, nn.Linear):
            if fmt.prepare_rows is not None:
                rows_product, nbytes = fmt.prepare_rows(weight)
            else:
                matmul, nbytes = fmt.prepare(weight)

                def rows_product(flat: torch.Tensor) -> torch.Tensor:
                    return matmul(flat.t().contiguous()).t()

            def fn(x: torch.Tensor) -> torch.Tensor:
                flat = x.reshape(-1, x.shape[-1])
                y = rows_product(flat)
                if bias is not None:
                    y = y + bias
                return y.reshape(*x.shape[:-1], weight.shape[0])

            return BuiltKernel(fmt.name, fn, nbytes + _bias_bytes(module))
        if module.groups != 1 or module.padding_mode != "zeros" or isinstance(module.padding, str):
            raise ValueError("unfold kernels need groups=1, numeric padding and padding_mode='zeros'")
        kernel, stride, padding, dilation = _conv_geometry(module)
        matmul, nbytes = fmt.prepare(weight.reshape(weight.shape[0], -1))
        is_1d = isinstance(module, nn.Conv1d)

        def conv(x: torch.Tensor) -> torch.Tensor:
            x2 = x.unsqueeze(2) if is_1d else x
            h = (x2.shape[2] + 2 * padding[0] - dilation[0] * (kernel[0] - 1) - 1) // stride[0] + 1
            w = (x2.shape[3] + 2 * padding[1] - dilation[1] * (kernel[1] - 1) - 1) // stride[1] + 1
            cols = F.unfold(x2, kernel, dilation=dilation, padding=padding, stride=stride)
            y = torch.stack([matmul(c) for c in cols])
            if bias is not None:
                y = y + bias[:, None]
            y = y.reshape(x2.shape[0], weight.shape[0], h, w)
            return y.squeeze(2) if is_1d else y

        return BuiltKernel(fmt.name, conv, nbytes + _bias_bytes(module))

    return build


def _build_nested_direct(module: nn.Module, weights: dict[str, torch.Tensor], device: str) -> BuiltKernel:
    """Direct sparse convolution over the nested layout (:class:`NestedConv`), one level."""
    if device != "cpu":
        raise ValueError(f"nested_direct runs on the CPU, not {device}")
    if not isinstance(module, (nn.Conv1d, nn.Conv2d)):
        raise ValueError(f"nested_direct runs Conv1d and Conv2d layers, not {type(module).__name__}")
    if module.groups != 1 or module.padding_mode != "zeros" or isinstance(module.padding, str):
        raise ValueError("nested_direct needs groups=1, numeric padding and padding_mode='zeros'")
    kernel, stride, padding, dilation = _conv_geometry(module)
    weight = weights["weight"].detach()
    weight2d = weight.reshape(weight.shape[0], weight.shape[1], *kernel)
    matrix = NestedConv.from_ranks(weight2d, torch.where(weight2d != 0, 0, -1), 1, stride, padding, dilation)
    bias = None if module.bias is None else module.bias.detach()
    is_1d = isinstance(module, nn.Conv1d)

    def conv(x: torch.Tensor) -> torch.Tensor:
        # numpy views, not torch ops, to reshape: each torch call costs a microsecond or more
        xn = x.detach().numpy()
        y = matrix.conv(0, xn[:, :, None, :] if is_1d else xn)
        y = torch.from_numpy(y[:, :, 0, :] if is_1d else y)
        return y if bias is None else y + (bias[:, None] if is_1d else bias[:, None, None])

    return BuiltKernel("nested_direct", conv, matrix.nbytes + _bias_bytes(module))




def _build_nested_lstm(module: nn.Module, weights: dict[str, torch.Tensor], device: str) -> BuiltKernel:
    """A one-layer LSTM whose four gate matrices run as nested SELL products: the input part
    for all time steps at once (SpMM), the recurrence — an SpMV and the gates per step — as one
    compiled call for the whole sequence (:meth:`NestedSell.lstm_steps`)."""
    if device != "cpu":
        raise ValueError(f"nested_lstm runs on the CPU, not {device}")
    if not isinstance(module, nn.LSTM):
        raise ValueError(f"nested_lstm runs LSTM layers, not {type(module).__name__}")
    if module.num_layers != 1 or module.proj_size:
        raise ValueError("nested_lstm runs one-layer LSTMs without projections")
    suffixes = [""] + (["_reverse"] if module.bidirectional else [])

    def sell(w: torch.Tensor) -> NestedSell:
        return NestedSell.from_ranks(w, torch.where(w != 0, 0, -1), n_levels=1)

    parts = []
    for sfx in suffixes:
        w_ih, w_hh = sell(weights[f"weight_ih_l0{sfx}"].detach()), sell(weights[f"weight_hh_l0{sfx}"].detach())
        bias = np.zeros(4 * module.hidden_size, dtype=np.float32)
        if module.bias:
            bias = (getattr(module, f"bias_ih_l0{sfx}") + getattr(module, f"bias_hh_l0{sfx}")).detach().numpy()
        parts.append((w_ih, w_hh, bias))

    def fn(x: torch.Tensor, state: tuple[torch.Tensor, torch.Tensor] | None = None):
        seq = x if module.batch_first else x.transpose(0, 1)  # (B, T, F)
        batch, steps, _ = seq.shape
        hid = module.hidden_size
        rows = seq.detach().reshape(batch * steps, -1).numpy()  # (B*T, F)
        outputs, h_n, c_n = [], [], []
        for d, (w_ih, w_hh, bias) in enumerate(parts):
            pre = (w_ih.matmul_rows(0, rows) + bias).reshape(batch, steps, 4 * hid)
            h = np.zeros((batch, hid), np.float32) if state is None else state[0][d].detach().numpy().copy()
            c = np.zeros((batch, hid), np.float32) if state is None else state[1][d].detach().numpy().copy()
            outputs.append(w_hh.lstm_steps(0, pre, h, c, reverse=d == 1))
            h_n.append(h)
            c_n.append(c)
        y = torch.from_numpy(outputs[0] if len(outputs) == 1 else np.concatenate(outputs, axis=2))  # (B, T, D*H)
        if not module.batch_first:
            y = y.transpose(0, 1)
        return y, (torch.from_numpy(np.stack(h_n)), torch.from_numpy(np.stack(c_n)))

    nbytes = sum(w_ih.nbytes + w_hh.nbytes + b.nbytes for w_ih, w_hh, b in parts)
    return BuiltKernel("nested_lstm", fn, nbytes)


def _build_nested_attention(module: nn.Module, weights: dict[str, torch.Tensor], device: str) -> BuiltKernel:
    """MultiheadAttention whose input and output projections run as nested SELL products (one
    per projection, over all tokens at once); the attention itself is torch's."""
    if device != "cpu":
        raise ValueError(f"nested_attention runs on the CPU, not {device}")
    if not isinstance(module, nn.MultiheadAttention):
        raise ValueError(f"nested_attention runs MultiheadAttention layers, not {type(module).__name__}")
    if module.bias_k is not None or module.add_zero_attn or module.dropout:
        raise ValueError("nested_attention needs no bias_k/bias_v, no add_zero_attn and no dropout")
    e = module.embed_dim
    if "in_proj_weight" in weights:
        w_in = weights["in_proj_weight"].detach()
        w_q, w_k, w_v = w_in[:e], w_in[e : 2 * e], w_in[2 * e :]
    else:
        w_q, w_k, w_v = (weights[f"{n}_proj_weight"].detach() for n in "qkv")
    b_in = torch.zeros(3 * e) if module.in_proj_bias is None else module.in_proj_bias.detach()
    b_out = torch.zeros(e) if module.out_proj.bias is None else module.out_proj.bias.detach()

    def sell(w: torch.Tensor) -> NestedSell:
        return NestedSell.from_ranks(w, torch.where(w != 0, 0, -1), n_levels=1)

    proj = [sell(w) for w in (w_q, w_k, w_v, weights["out_proj.weight"].detach())]
    heads, head_dim = module.num_heads, e // module.num_heads

    def project(matrix: NestedSell, x: torch.Tensor, bias: torch.Tensor) -> torch.Tensor:
        tokens = x.reshape(-1, x.shape[-1]).detach().numpy()  # (tokens, features)
        return torch.from_numpy(matrix.matmul_rows(0, tokens)).reshape(*x.shape[:-1], -1) + bias

    def fn(query, key, value, key_padding_mask=None, need_weights=True, attn_mask=None, average_attn_weights=True, is_causal=False):
        if not module.batch_first:  # to (batch, tokens, features)
            query, key, value = (t.transpose(0, 1) for t in (query, key, value))
        q = project(proj[0], query, b_in[:e])
        k = project(proj[1], key, b_in[e : 2 * e])
        v = project(proj[2], value, b_in[2 * e :])
        b, lq = q.shape[0], q.shape[1]
        q, k, v = (t.reshape(b, -1, heads, head_dim).transpose(1, 2) for t in (q, k, v))
        scores = q @ k.transpose(-1, -2) / head_dim**0.5
        if attn_mask is not None:
            scores = scores.masked_fill(attn_mask, float("-inf")) if attn_mask.dtype == torch.bool else scores + attn_mask
        if key_padding_mask is not None:
            scores = scores.masked_fill(key_padding_mask[:, None, None, :], float("-inf"))
        attention = torch.softmax(scores, dim=-1)
        out = project(proj[3], (attention @ v).transpose(1, 2).reshape(b, lq, e), b_out)
        if not module.batch_first:
            out = out.transpose(0, 1)
        if not need_weights:
            return out, None
        return out, attention.mean(dim=1) if average_attn_weights else attention

    return BuiltKernel("nested_attention", fn, sum(m.nbytes for m in proj) + b_in.numel() * 4 + b_out.numel() * 4)


KERNELS: dict[str, LayerKernel] = (
    {"dense": LayerKernel("dense", _build_dense, ("cpu", "cuda"))}
    | {name: LayerKernel(name, _sparse_builder(fmt), fmt.devices) for name, fmt in FORMATS.items()}
    | {"nested_direct": LayerKernel("nested_direct", _build_nested_direct, ("cpu",))}
    | {"nested_lstm": LayerKernel("nested_lstm", _build_nested_lstm, ("cpu",))}
    | {"nested_attention": LayerKernel("nested_attention", _build_nested_attention, ("cpu",))}
)
"""Kernels by name: ``dense``, one per sparse format, and the nested-layout kernels for
convolutions, LSTMs and attention."""


def kernel_names(device: str | None = None) -> list[str]:
    """Names accepted by :func:`build_kernel`; with ``device``, those that run there."""
    return [name for name, k in KERNELS.items() if device is None or device in k.devices]


def build_kernel(name: str, module: nn.Module, weights: dict[str, torch.Tensor], device: str = "cpu") -> BuiltKernel:
    """Build kernel ``name`` for ``module`` with masked ``weights`` (local parameter names)."""
    return KERNELS[name].build(module, weights, device)
