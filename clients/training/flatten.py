"""A model's shareable state as one flat float vector, and back.

The protocol sees fixed-shape vectors only. The spec lists every floating
entry of the backbone's ``state_dict`` (parameters and BatchNorm running
statistics, as FedAvg with BN sends them) in a fixed order; integer
buffers such as ``num_batches_tracked`` stay local.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch


@dataclass(frozen=True)
class ParamSpec:
    """Names, shapes and offsets of the flattened entries."""

    names: tuple[str, ...]
    shapes: tuple[tuple[int, ...], ...]

    @property
    def sizes(self) -> tuple[int, ...]:
        """Elements per entry."""
        return tuple(int(np.prod(s)) for s in self.shapes)

    @property
    def size(self) -> int:
        """Length of the flat vector."""
        return sum(self.sizes)


def spec_of(module: torch.nn.Module) -> ParamSpec:
    """The spec of every floating-point state entry, in ``state_dict`` order."""
    items = [(k, v) for k, v in module.state_dict().items() if v.is_floating_point()]
    return ParamSpec(tuple(k for k, _ in items), tuple(tuple(v.shape) for _, v in items))


def flatten(module: torch.nn.Module, spec: ParamSpec) -> np.ndarray:
    """The state as a float64 vector (on the CPU)."""
    state = module.state_dict()
    parts = [state[name].detach().to("cpu", torch.float64).reshape(-1) for name in spec.names]
    return torch.cat(parts).numpy() if parts else np.zeros(0)


def unflatten_into(module: torch.nn.Module, spec: ParamSpec, vector: np.ndarray) -> None:
    """Load a flat vector back into the module's state, in place."""
    if vector.shape != (spec.size,):
        raise ValueError(f"vector has shape {vector.shape}, spec needs ({spec.size},)")
    state = module.state_dict()
    offset = 0
    with torch.no_grad():
        for name, shape, size in zip(spec.names, spec.shapes, spec.sizes, strict=True):
            target = state[name]
            chunk = torch.from_numpy(np.ascontiguousarray(vector[offset : offset + size]))
            target.copy_(chunk.reshape(shape).to(target.dtype))
            offset += size
