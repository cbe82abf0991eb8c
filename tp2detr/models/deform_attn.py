"""1-D multi-scale deformable attention: the sampling op, its backend registry and the module.

The op (``ms_deform_attn_1d``) reads, for every query and head, ``L × P`` linearly interpolated
samples from a multi-level value sequence and returns their attention-weighted sum. Sampling
follows ``grid_sample`` with ``align_corners=False`` and zero padding on a level of length
``T_l``: the continuous index is ``t = loc · T_l − 0.5``; the taps ``⌊t⌋`` and ``⌊t⌋ + 1`` get the
weights ``1 − frac`` and ``frac``; a tap outside ``[0, T_l − 1]`` reads 0, so a sample with
``t ≤ −1`` or ``t ≥ T_l`` contributes nothing.

Backends. ``ms_deform_attn_1d`` dispatches to a named backend. ``"pytorch"`` (always present)
runs on any device. A compiled op (C++/CUDA) plugs in with ``register_backend(name, fn,
device_types)`` behind the same signature; ``backend="auto"`` then picks the first registered
compiled backend that supports the value tensor's device type, else ``"pytorch"``. The registry
is the module-level dict ``_BACKENDS``; it is the only mutable state of this module and changes
only through ``register_backend`` / ``unregister_backend``.

Compiled backends ``"cpp"`` (CPU) and ``"cuda"`` come from ``tp2detr.ops`` and are registered
lazily by ``resolve_backend``: asking for one by name builds it if needed (an error if that fails);
``"auto"`` uses them only when already built or when ``$TP2DETR_BUILD_OPS=1`` (policy in
``tp2detr.ops``), so "auto" never starts a compile on a fresh clone.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Callable, Iterable
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import Tensor, nn

logger = logging.getLogger(__name__)

DeformAttnFn = Callable[[Tensor, Tensor, Tensor, Tensor, Tensor], Tensor]

# With gradients, the dense strategy costs ∝ S per (query, head) and the sparse one ∝ its 2·L·P taps
# (measured crossover on a 2-core CPU: S ≈ 10 keys per tap). "auto" uses dense while
# S ≤ DENSE_KEYS_PER_TAP · 2·L·P (320 keys for L·P = 16: THUMOS's 240 keys go dense).
DENSE_KEYS_PER_TAP = 10


def _check_op_shapes(
    value: Tensor,
    level_lengths: Tensor,
    level_start_index: Tensor,
    sampling_locations: Tensor,
    attention_weights: Tensor,
) -> None:
    if value.dim() != 4:
        raise ValueError(f"value: expected shape [N, S, M, D], found {tuple(value.shape)}")
    if sampling_locations.dim() != 5:
        raise ValueError(
            "sampling_locations: expected shape [N, Lq, M, L, P], "
            f"found {tuple(sampling_locations.shape)}"
        )
    if attention_weights.shape != sampling_locations.shape:
        raise ValueError(
            f"attention_weights: expected the shape of sampling_locations "
            f"{tuple(sampling_locations.shape)}, found {tuple(attention_weights.shape)}"
        )
    n, _, m, _ = value.shape
    n_loc, _, m_loc, n_levels, _ = sampling_locations.shape
    if (n_loc, m_loc) != (n, m):
        raise ValueError(
            f"sampling_locations: expected batch and heads (N, M) = {(n, m)} as in value, "
            f"found {(n_loc, m_loc)}"
        )
    for name, tensor in (("level_lengths", level_lengths), ("level_start_index", level_start_index)):
        if tensor.shape != (n_levels,) or tensor.dtype != torch.int64:
            raise ValueError(
                f"{name}: expected an int64 tensor of shape [{n_levels}] (one entry per level), "
                f"found dtype {tensor.dtype} and shape {tuple(tensor.shape)}"
            )


def _linear_taps(
    level_lengths: Tensor,
    level_start_index: Tensor,
    sampling_locations: Tensor,
    attention_weights: Tensor,
) -> tuple[Tensor, Tensor]:
    """The two interpolation taps of every sample, as flat key indices and weights.

    Returns:
        index: ``[N, Lq, M, L, P, 2]`` int64 key index into the flattened levels ``[0, S)``;
            out-of-range taps are clamped into their level and carry weight 0.
        weight: ``[N, Lq, M, L, P, 2]`` attention weight × interpolation weight of each tap.
    """
    lengths = level_lengths.to(device=sampling_locations.device)
    starts = level_start_index.to(device=sampling_locations.device)
    lengths_f = lengths.to(sampling_locations.dtype).view(1, 1, 1, -1, 1)
    position = sampling_locations * lengths_f - 0.5  # continuous index within the level
    low = torch.floor(position)
    frac = position - low
    low_index = low.long()
    index = torch.stack((low_index, low_index + 1), dim=-1)  # [N, Lq, M, L, P, 2]
    lengths_i = lengths.view(1, 1, 1, -1, 1, 1)
    inside = (index >= 0) & (index < lengths_i)
    weight = torch.stack((1.0 - frac, frac), dim=-1) * attention_weights.unsqueeze(-1)
    weight = weight * inside.to(weight.dtype)
    index = torch.minimum(index.clamp(min=0), lengths_i - 1) + starts.view(1, 1, 1, -1, 1, 1)
    return index, weight


def _sample_sparse(value: Tensor, index: Tensor, weight: Tensor) -> Tensor:
    """Weighted tap sum with ``embedding_bag``: no intermediate larger than the taps.

    value ``[N, S, M, D]``; index / weight ``[N, Lq, M, L, P, 2]`` → ``[N, Lq, M·D]``.
    Low-precision values (bf16/fp16 under autocast) are summed in the weights' precision (fp32)
    and the result is returned in the value's dtype.
    """
    n, s, m, d = value.shape
    lq = index.shape[1]
    batch_offset = torch.arange(n, device=index.device).view(n, 1, 1, 1, 1, 1) * (s * m)
    head_offset = torch.arange(m, device=index.device).view(1, 1, m, 1, 1, 1)
    rows = index * m + batch_offset + head_offset  # rows of value viewed as [N·S·M, D]
    out = F.embedding_bag(
        rows.reshape(n * lq * m, -1),
        value.reshape(n * s * m, d).to(weight.dtype),
        mode="sum",
        per_sample_weights=weight.reshape(n * lq * m, -1),
    )
    return out.view(n, lq, m * d).to(value.dtype)


def _sample_dense(value: Tensor, index: Tensor, weight: Tensor) -> Tensor:
    """Weighted tap sum as a batched matmul with a scattered ``[N·M, Lq, S]`` weight matrix.

    value ``[N, S, M, D]``; index / weight ``[N, Lq, M, L, P, 2]`` → ``[N, Lq, M·D]``.
    Fastest with gradients for small S; memory grows with ``Lq · S``. The result is in the value's
    dtype; outside autocast, low-precision values are summed in the weights' precision.
    """
    n, s, m, d = value.shape
    lq = index.shape[1]
    index = index.permute(0, 2, 1, 3, 4, 5).reshape(n * m, lq, -1)
    weight = weight.permute(0, 2, 1, 3, 4, 5).reshape(n * m, lq, -1)
    matrix = weight.new_zeros(n * m, lq, s).scatter_add(2, index, weight)  # [N·M, Lq, S]
    per_head_value = value.permute(0, 2, 1, 3).reshape(n * m, s, d)
    if per_head_value.dtype != matrix.dtype and not torch.is_autocast_enabled(value.device.type):
        # bf16/fp16 values with fp32 weights outside autocast: sum in the weights' precision
        # (as the sparse path and the compiled op do); autocast would pick bf16 for bmm itself.
        per_head_value = per_head_value.to(matrix.dtype)
    out = torch.bmm(matrix, per_head_value)  # [N·M, Lq, D]
    return out.view(n, m, lq, d).permute(0, 2, 1, 3).reshape(n, lq, m * d).to(value.dtype)


def ms_deform_attn_1d_pytorch(
    value: Tensor,
    level_lengths: Tensor,
    level_start_index: Tensor,
    sampling_locations: Tensor,
    attention_weights: Tensor,
    *,
    strategy: str = "auto",
) -> Tensor:
    """Pure-PyTorch 1-D multi-scale deformable sampling (differentiable in value, locations, weights).

    Args:
        value: ``[N, S, M, D]`` per-head values of all levels, flattened along time (S = ΣT_l).
        level_lengths: ``[L]`` int64, T_l in snippets.
        level_start_index: ``[L]`` int64, first key of each level in S.
        sampling_locations: ``[N, Lq, M, L, P]`` normalised locations (0 = level start, 1 = end).
        attention_weights: ``[N, Lq, M, L, P]`` weights of the samples.
        strategy: ``"sparse"`` (``embedding_bag``: leanest, fastest without gradients), ``"dense"``
            (scatter into an ``[N·M, Lq, S]`` matrix + ``bmm``: fastest with gradients at small S)
            or ``"auto"`` (dense when a gradient is needed and S ≤ ``DENSE_KEYS_PER_TAP``·2·L·P).

    Returns:
        ``[N, Lq, M·D]`` sampled and weighted values, heads concatenated.
    """
    _check_op_shapes(value, level_lengths, level_start_index, sampling_locations, attention_weights)
    if strategy == "auto":
        needs_grad = torch.is_grad_enabled() and (
            value.requires_grad or sampling_locations.requires_grad or attention_weights.requires_grad
        )
        n_taps = 2 * sampling_locations.shape[3] * sampling_locations.shape[4]
        use_dense = needs_grad and value.shape[1] <= DENSE_KEYS_PER_TAP * n_taps
        strategy = "dense" if use_dense else "sparse"
    index, weight = _linear_taps(level_lengths, level_start_index, sampling_locations, attention_weights)
    if strategy == "dense":
        return _sample_dense(value, index, weight)
    if strategy == "sparse":
        return _sample_sparse(value, index, weight)
    raise ValueError(f"strategy: expected 'auto', 'sparse' or 'dense', found {strategy!r}")


@dataclass(frozen=True)
class _Backend:
    fn: DeformAttnFn
    device_types: frozenset[str]  # device types that "auto" may pick it for; empty = any device
    compiled: bool


_BACKENDS: dict[str, _Backend] = {
    "pytorch": _Backend(fn=ms_deform_attn_1d_pytorch, device_types=frozenset(), compiled=False),
}


def register_backend(name: str, fn: DeformAttnFn, device_types: Iterable[str] = ("cuda",)) -> None:
    """Register a compiled implementation of the op under ``name``.

    ``fn`` takes the arguments of ``ms_deform_attn_1d_pytorch`` (value, level_lengths,
    level_start_index, sampling_locations, attention_weights) and returns ``[N, Lq, M·D]``.
    ``device_types`` lists the ``torch.device.type`` values it runs on (e.g. ``("cuda",)``).
    """
    if name in ("auto", "pytorch"):
        raise ValueError(f"register_backend: the name {name!r} is reserved")
    if name in _BACKENDS:
        raise ValueError(f"register_backend: a backend named {name!r} is already registered")
    if not callable(fn):
        raise ValueError(f"register_backend: fn for {name!r} must be callable, found {type(fn)!r}")
    types = frozenset(device_types)
    if not types:
        raise ValueError(f"register_backend: backend {name!r} must name at least one device type")
    _BACKENDS[name] = _Backend(fn=fn, device_types=types, compiled=True)
    logger.info("registered deformable-attention backend %r for %s", name, sorted(types))


def unregister_backend(name: str) -> None:
    """Remove a backend added with ``register_backend``."""
    backend = _BACKENDS.get(name)
    if backend is None or not backend.compiled:
        raise ValueError(
            f"unregister_backend: expected one of the registered compiled backends "
            f"{sorted(k for k, b in _BACKENDS.items() if b.compiled)}, found {name!r}"
        )
    del _BACKENDS[name]


def available_backends(device_type: str | None = None) -> list[str]:
    """Names of the registered backends (those that run on ``device_type`` when it is given)."""
    return [
        name
        for name, backend in _BACKENDS.items()
        if device_type is None or not backend.device_types or device_type in backend.device_types
    ]


COMPILED_BACKEND_NAMES = ("cpp", "cuda")  # provided by tp2detr.ops, registered on first use


def _provide_compiled_backends(backend: str) -> None:
    """Let ``tp2detr.ops`` register its compiled backends: for ``"auto"`` only as its policy allows
    (never raises), for ``"cpp"`` / ``"cuda"`` building them if needed (raises on failure)."""
    if backend == "auto" or (backend in COMPILED_BACKEND_NAMES and backend not in _BACKENDS):
        from tp2detr import ops  # lazy: importing the package compiles nothing

        ops.register_compiled_backends(None if backend == "auto" else backend)


def resolve_backend(backend: str, device_type: str) -> str:
    """The concrete backend name that ``backend`` means for a tensor on ``device_type``."""
    _provide_compiled_backends(backend)
    if backend == "auto":
        for name, entry in _BACKENDS.items():
            if entry.compiled and device_type in entry.device_types:
                return name
        return "pytorch"
    entry = _BACKENDS.get(backend)
    if entry is None:
        raise ValueError(
            f"backend: expected 'auto' or one of {sorted(_BACKENDS)}, found {backend!r}"
        )
    if entry.device_types and device_type not in entry.device_types:
        raise ValueError(
            f"backend: {backend!r} runs on {sorted(entry.device_types)}, "
            f"but the value tensor is on {device_type!r}"
        )
    return backend


def ms_deform_attn_1d(
    value: Tensor,
    level_lengths: Tensor,
    level_start_index: Tensor,
    sampling_locations: Tensor,
    attention_weights: Tensor,
    backend: str = "pytorch",
) -> Tensor:
    """1-D multi-scale deformable sampling through the chosen backend.

    Same arguments and result as ``ms_deform_attn_1d_pytorch``: value ``[N, S, M, D]``,
    level_lengths / level_start_index ``[L]`` int64, sampling_locations and attention_weights
    ``[N, Lq, M, L, P]`` → ``[N, Lq, M·D]``. ``backend`` is a registered name or ``"auto"``.
    """
    name = resolve_backend(backend, value.device.type)
    return _BACKENDS[name].fn(value, level_lengths, level_start_index, sampling_locations, attention_weights)


class MSDeformAttn1D(nn.Module):
    """Multi-scale deformable attention over a flattened multi-level sequence.

    Each query predicts, per head, level and point, a 1-D sampling offset and an attention weight
    (softmax over the ``L·P`` samples of a head) from its own features.

    Args:
        d_model: channels C (divisible by ``n_heads``).
        n_levels: L, number of levels in the value sequence.
        n_heads: M.
        n_points: P, samples per head and level.
        backend: op backend name or ``"auto"`` (see ``ms_deform_attn_1d``).
    """

    def __init__(
        self,
        d_model: int = 512,
        n_levels: int = 4,
        n_heads: int = 8,
        n_points: int = 4,
        backend: str = "auto",
    ) -> None:
        super().__init__()
        if d_model % n_heads != 0:
            raise ValueError(f"d_model: expected a multiple of n_heads={n_heads}, found {d_model}")
        if min(n_levels, n_heads, n_points) < 1:
            raise ValueError(
                f"n_levels, n_heads, n_points: expected ≥ 1, found {(n_levels, n_heads, n_points)}"
            )
        if backend in COMPILED_BACKEND_NAMES:
            _provide_compiled_backends(backend)  # build / load now: a failed build fails here
        if backend != "auto" and backend not in _BACKENDS:
            raise ValueError(f"backend: expected 'auto' or one of {sorted(_BACKENDS)}, found {backend!r}")
        self.d_model = d_model
        self.n_levels = n_levels
        self.n_heads = n_heads
        self.n_points = n_points
        self.backend = backend
        n_samples = n_heads * n_levels * n_points
        self.sampling_offsets = nn.Linear(d_model, n_samples)
        self.attention_weights = nn.Linear(d_model, n_samples)
        self.value_proj = nn.Linear(d_model, d_model)
        self.output_proj = nn.Linear(d_model, d_model)
        self.reset_parameters()

    def reset_parameters(self) -> None:
        """Offsets: zero weight; head h starts at cos(2πh/M) / max_h|cos| (= cos(2πh/M), since
        head 0 gives 1) cells, × (i+1) for point i, on every level.
        Attention weights: zero (uniform attention). Value/output projections: xavier, zero bias."""
        nn.init.zeros_(self.sampling_offsets.weight)
        angles = torch.arange(self.n_heads, dtype=torch.float64) * (2.0 * math.pi / self.n_heads)
        direction = angles.cos()  # already max-|cos|-normalised: head 0 has cos(0) = 1
        point_scale = torch.arange(1, self.n_points + 1, dtype=torch.float64)
        bias = direction.view(-1, 1, 1) * point_scale.view(1, 1, -1)  # [M, 1, P]
        bias = bias.expand(self.n_heads, self.n_levels, self.n_points)
        with torch.no_grad():
            self.sampling_offsets.bias.copy_(bias.reshape(-1))
        nn.init.zeros_(self.attention_weights.weight)
        nn.init.zeros_(self.attention_weights.bias)
        nn.init.xavier_uniform_(self.value_proj.weight)
        nn.init.zeros_(self.value_proj.bias)
        nn.init.xavier_uniform_(self.output_proj.weight)
        nn.init.zeros_(self.output_proj.bias)

    def sampling_locations(self, query: Tensor, reference_points: Tensor, level_lengths: Tensor) -> Tensor:
        """Normalised sampling locations ``[N, Lq, M, L, P]``.

        ``reference_points`` ``[N, Lq, L, 1]`` (center): ref + offset / T_l (offsets in level cells);
        ``[N, Lq, L, 2]`` (center, width): center + offset / P · width · 0.5.
        """
        n, lq, _ = query.shape
        offsets = self.sampling_offsets(query).view(n, lq, self.n_heads, self.n_levels, self.n_points)
        if reference_points.shape[:3] != (n, lq, self.n_levels) or reference_points.dim() != 4:
            raise ValueError(
                f"reference_points: expected shape [{n}, {lq}, {self.n_levels}, 1 or 2], "
                f"found {tuple(reference_points.shape)}"
            )
        if reference_points.shape[-1] == 1:
            lengths = level_lengths.to(device=query.device, dtype=query.dtype).view(1, 1, 1, -1, 1)
            center = reference_points[:, :, None, :, :1]  # [N, Lq, 1, L, 1]
            return center + offsets / lengths
        if reference_points.shape[-1] == 2:
            center = reference_points[:, :, None, :, 0:1]
            width = reference_points[:, :, None, :, 1:2]
            return center + offsets / self.n_points * width * 0.5
        raise ValueError(
            "reference_points: expected 1 (center) or 2 (center, width) coordinates, "
            f"found {reference_points.shape[-1]}"
        )

    def forward(
        self,
        query: Tensor,
        reference_points: Tensor,
        value_input: Tensor,
        level_lengths: Tensor,
        level_start_index: Tensor,
        padding_mask: Tensor | None = None,
    ) -> Tensor:
        """Attend from each query to ``L·P`` samples per head of the multi-level value sequence.

        Args:
            query: ``[N, Lq, C]``.
            reference_points: ``[N, Lq, L, 1]`` centers or ``[N, Lq, L, 2]`` (center, width),
                normalised to each level's padded length.
            value_input: ``[N, S, C]`` flattened levels, S = ΣT_l.
            level_lengths: ``[L]`` int64 T_l. level_start_index: ``[L]`` int64.
            padding_mask: ``[N, S]`` bool, True = pad (those values are zeroed).

        Returns:
            ``[N, Lq, C]``.
        """
        n, lq, c = query.shape
        s = value_input.shape[1]
        if value_input.shape != (n, s, c) or c != self.d_model:
            raise ValueError(
                f"value_input: expected shape [{n}, S, {self.d_model}] for query {tuple(query.shape)}, "
                f"found {tuple(value_input.shape)}"
            )
        value = self.value_proj(value_input)
        if padding_mask is not None:
            if padding_mask.shape != (n, s):
                raise ValueError(
                    f"padding_mask: expected shape [{n}, {s}], found {tuple(padding_mask.shape)}"
                )
            value = value.masked_fill(padding_mask[..., None], 0.0)
        value = value.view(n, s, self.n_heads, c // self.n_heads)
        weights = self.attention_weights(query).view(n, lq, self.n_heads, self.n_levels * self.n_points)
        weights = weights.softmax(dim=-1).view(n, lq, self.n_heads, self.n_levels, self.n_points)
        locations = self.sampling_locations(query, reference_points, level_lengths)
        sampled = ms_deform_attn_1d(
            value, level_lengths, level_start_index, locations, weights, backend=self.backend
        )
        return self.output_proj(sampled)
