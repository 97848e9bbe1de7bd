"""The RLHF update over several devices, through JAX's own sharding: a ("data", "fsdp") mesh.

The batch of prompts (and so every sample, forward pass and gradient of an update) is split over all
devices of the mesh; the parameters are replicated (fsdp = 1: data parallel) or each sharded along
one axis over the "fsdp" devices (fully sharded: a model larger than one device's memory), and so
are the frozen reference and reward model and Adam's moments. `jit` with these shardings lets XLA's
SPMD partitioner insert the all-gathers and reduce-scatters; the program is the one-device program,
and random numbers do not depend on the layout, so an update gives the one-device result to float32
reduction order.
"""

from __future__ import annotations

import dataclasses
import math
from typing import Any

import jax
import numpy as np
from jax.sharding import Mesh, NamedSharding
from jax.sharding import PartitionSpec as P

from a2c_jax.config import ConfigError
from a2c_jax.runs.distributed import visible_devices

DATA, FSDP = "data", "fsdp"
SHARD_MIN_SIZE = 1024
"""Parameters with fewer elements stay replicated (biases, norms: sharding them saves nothing)."""


@dataclasses.dataclass(frozen=True)
class RLHFLayout:
    """A ("data", "fsdp") device mesh. Hashable (a jit cache key)."""

    mesh: Mesh

    @property
    def size(self) -> int:
        return int(self.mesh.size)

    @property
    def fsdp(self) -> int:
        return int(self.mesh.shape[FSDP])

    @property
    def replicated(self) -> NamedSharding:
        return NamedSharding(self.mesh, P())

    def shard_batch(self, x: jax.Array) -> jax.Array:
        """x [B, ...] constrained to split its batch axis over every device (inside a traced step)."""
        spec = P((DATA, FSDP), *([None] * (x.ndim - 1)))
        return jax.lax.with_sharding_constraint(x, NamedSharding(self.mesh, spec))

    def leaf_sharding(self, shape: tuple[int, ...], lead: int = 0) -> NamedSharding:
        """A parameter's sharding: with fsdp > 1, its largest axis (after `lead` leading axes, e.g. a
        population's) that the fsdp devices divide is split over them; small or indivisible leaves
        are replicated."""
        axes = [i for i in range(lead, len(shape)) if shape[i] % self.fsdp == 0]
        if self.fsdp == 1 or not axes or math.prod(shape) < SHARD_MIN_SIZE:
            return self.replicated
        axis = max(axes, key=lambda i: shape[i])
        spec: list[str | None] = [None] * len(shape)
        spec[axis] = FSDP
        return NamedSharding(self.mesh, P(*spec))

    def shardings(self, tree: Any, lead: int = 0) -> Any:
        """`leaf_sharding` of every array of a pytree (arrays or shape structs); None leaves stay None."""
        return jax.tree.map(lambda x: self.leaf_sharding(tuple(np.shape(x)), lead), tree)


def placed(tree: Any, shardings: Any) -> Any:
    """`jax.device_put(tree, shardings)`; in a multi-process run the arrays this process holds whole
    go in as host values (every process holds the same ones), the others are resharded."""
    if jax.process_count() > 1:
        tree = jax.tree.map(lambda x: np.asarray(x) if getattr(x, "is_fully_addressable", True) else x, tree)
    return jax.device_put(tree, shardings)


def across_processes(tree: Any) -> Any:
    """In a multi-process run, `tree`'s arrays replicated over every device of every process (what the
    processes' shared programs and orbax's multi-host checkpoints take; every process must hold the
    same values); in one process, `tree` unchanged."""
    if jax.process_count() == 1:
        return tree
    return placed(tree, NamedSharding(Mesh(np.asarray(jax.devices()), ("all",)), P()))


def host_values(tree: Any) -> Any:
    """In a multi-process run, `tree`'s arrays as host values (what a program shared by the processes
    may close over or take beside global arrays); in one process, `tree` unchanged."""
    return jax.device_get(tree) if jax.process_count() > 1 else tree


def rlhf_layout(devices: str | int, fsdp: int, batch: int) -> RLHFLayout | None:
    """The mesh of `--devices D --fsdp F` for an update of `batch` prompts: D / F data-parallel groups of
    F devices; None for one device in one process (a plain `jit`). ConfigError naming the flag when D
    exceeds the visible devices, F does not divide D, D does not divide the batch, or a multi-process
    run asks for fewer than all devices of every process."""
    available, count = visible_devices(devices)
    if jax.process_count() > 1 and count != len(available):
        raise ConfigError(
            f"devices={devices!r} is invalid in a run of {jax.process_count()} processes: use --devices all "
            f"(the {len(available)} devices of every process)"
        )
    if fsdp < 1 or count % fsdp:
        raise ConfigError(f"fsdp={fsdp} is invalid: must be a positive divisor of the {count} devices used")
    if batch % count:
        raise ConfigError(
            f"batch={batch} does not divide over {count} devices: use a multiple of {count} such as "
            f"{count * math.ceil(batch / count)}"
        )
    if count == 1:  # never in a multi-process run, which uses every device of each process
        return None
    grid = np.asarray(available[:count]).reshape(count // fsdp, fsdp)
    return RLHFLayout(Mesh(grid, (DATA, FSDP)))
