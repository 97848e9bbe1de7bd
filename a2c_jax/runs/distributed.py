"""Many devices and many hosts through JAX's own machinery: meshes, NamedShardings of TrainState and
of populations, and `jax.distributed` start-up. Nothing in the pure core changes for it.

The core keeps every per-env leaf with a leading env axis N and every per-member leaf with a leading
population axis P. A `Layout` names those axes on a device mesh ("pop" x "env"); `jit` with these
shardings lets XLA's SPMD partitioner split the rollout over the env axis and insert the all-reduces
that make the loss mean, the gradient, the normalisation statistics and the episode metrics global.
Random numbers do not depend on the layout (`jax_threefry_partitionable`), so the same seed gives
the same result on 1 or D devices, to float32 reduction order.

Many hosts: every process runs the same program over the global mesh (`jax.devices()`); `jit` with
out_shardings makes each process materialise only its own shards of the env state (the envs live on
the devices, so no host data is fed in); replicated outputs (metrics, parameters) are readable on
every process; only process 0 writes run files.
"""

from __future__ import annotations

import dataclasses
import json
import math
import os
import socket
import time
from collections.abc import Mapping
from typing import Any

import jax
import numpy as np
from jax.sharding import Mesh, NamedSharding
from jax.sharding import PartitionSpec as P

from a2c_jax.config import ConfigError, invalid

POP, ENV = "pop", "env"


@dataclasses.dataclass(frozen=True)
class Layout:
    """A device mesh with axes ("pop", "env"); either may have size 1. Hashable (a jit cache key)."""

    mesh: Mesh

    @property
    def pop_devices(self) -> int:
        return int(self.mesh.shape[POP])

    @property
    def env_devices(self) -> int:
        return int(self.mesh.shape[ENV])

    @property
    def size(self) -> int:
        return self.pop_devices * self.env_devices

    def sharding(self, *spec: str | None) -> NamedSharding:
        return NamedSharding(self.mesh, P(*spec))

    @property
    def replicated(self) -> NamedSharding:
        return self.sharding()


def parse_devices(text: str | int) -> int | None:
    """`--devices` as a count: "all" -> None (every device), "K" -> K; ConfigError otherwise."""
    if isinstance(text, int) and not isinstance(text, bool):
        value = text
    elif isinstance(text, str) and text.strip().lower() == "all":
        return None
    else:
        try:
            value = int(str(text))
        except ValueError:
            raise ConfigError(f"devices={text!r} is invalid: must be 'all' or a positive integer") from None
    if value <= 0:
        raise ConfigError(f"devices={text!r} is invalid: must be 'all' or a positive integer")
    return value


def _divisors(n: int) -> list[int]:
    return [d for d in range(1, n + 1) if n % d == 0]


def round_up(n: int, multiple: int) -> int:
    """The smallest multiple of `multiple` that is >= n (n, multiple > 0)."""
    return multiple * math.ceil(n / multiple)


def visible_devices(devices: str | int) -> tuple[list[Any], int]:
    """(the visible devices, how many `--devices` asks for); ConfigError when it asks for more."""
    available = jax.devices()
    want = parse_devices(devices)
    count = len(available) if want is None else want
    if count > len(available):
        raise ConfigError(
            f"devices={devices!r} is invalid: only {len(available)} device(s) are visible "
            f"({available[0].platform}); use --devices all or at most {len(available)}"
        )
    return available, count


def make_layout(devices: str | int, num_envs: int, population: int = 1) -> Layout:
    """A ("pop", "env") mesh over `devices` devices for `population` members of `num_envs` envs.

    The population axis takes as many devices as divide both the device count and the population;
    the env axis takes the rest (a 2-D mesh when the population is smaller than the device count).
    ConfigError naming what would work when the envs do not divide, or too many devices are asked.
    """
    available, count = visible_devices(devices)
    pop = max(d for d in _divisors(count) if population % d == 0) if population > 1 else 1
    env = count // pop
    if num_envs % env:
        nearest = round_up(num_envs, env)
        counts = [str(d) for d in _divisors(len(available)) if num_envs % d == 0]
        raise ConfigError(
            f"num_envs={num_envs} does not divide over {env} devices: use a multiple of {env} such as {nearest}, "
            f"or --devices {' / '.join(counts)}"
        )
    grid = np.asarray(available[:count]).reshape(pop, env)
    return Layout(Mesh(grid, (POP, ENV)))


def layout_for(devices: str | int, num_envs: int, population: int = 1) -> Layout | None:
    """The mesh of a program; None for one device in one process (a plain `jit`, no shardings)."""
    if parse_devices(devices) == 1 and jax.process_count() == 1:
        return None
    return make_layout(devices, num_envs, population)


def cpu_population_devices() -> int:
    """How many devices a population is split over by default: on a CPU backend in one process, every
    local CPU device (`a2c-jax sweep` and `pbt` start one per core, see `cli.one_device_per_core`);
    on accelerators and in multi-process runs, 1 (`--devices` asks for more there)."""
    if jax.process_count() > 1 or jax.default_backend() != "cpu":
        return 1
    return jax.local_device_count()


def population_layout(devices: str | int | None, num_envs: int, population: int) -> Layout | None:
    """The mesh of a program over `population` members of `num_envs` envs each.

    `devices` None (the default of sweep and pbt): the members alone are split over as many of
    `cpu_population_devices()` as divide the population, each member's envs staying on one device
    (XLA runs a one-device CPU program on about one core, so a population split over one device per
    core uses them all; splitting a member's few envs would add an all-reduce per update instead).
    Otherwise as `layout_for`.
    """
    if devices is not None:
        return layout_for(devices, num_envs, population)
    count = max(d for d in _divisors(cpu_population_devices()) if population % d == 0)
    return None if count == 1 else make_layout(count, num_envs, population)


def single_device_layout() -> Layout:
    return Layout(Mesh(np.asarray(jax.devices()[:1]).reshape(1, 1), (POP, ENV)))


def state_shardings(state: Any, layout: Layout, population: bool = False) -> Any:
    """NamedShardings for a TrainState (or a population of them with `population=True`).

    Per-env leaves (gymnax state, running episode sums, obs, recurrent carry) split their env axis
    over "env"; parameters, optimizer state, normalisation statistics, key and step counter are
    replicated over "env". With a population every leaf also splits its leading axis over "pop".
    """
    lead = (POP,) if population else ()
    member = layout.sharding(*lead) if population else layout.replicated
    per_env = layout.sharding(*lead, ENV)
    every = lambda tree, s: jax.tree.map(lambda _: s, tree)
    env_shardings = state.env_state.map_groups(lambda t: every(t, per_env), lambda t: every(t, member))
    return dataclasses.replace(
        every(state, member), env_state=env_shardings, obs=per_env, carry=every(state.carry, per_env)
    )


def abstract_with_shardings(tree: Any, shardings: Any) -> Any:
    """ShapeDtypeStructs that carry the target shardings (what orbax restores into)."""
    return jax.tree.map(lambda x, s: jax.ShapeDtypeStruct(x.shape, x.dtype, sharding=s), tree, shardings)


def is_primary() -> bool:
    """True on the process that prints, logs and writes run files (process 0)."""
    return jax.process_index() == 0


def barrier(name: str) -> None:
    """Wait for every process (a no-op with one process)."""
    if jax.process_count() > 1:
        from jax.experimental import multihost_utils

        multihost_utils.sync_global_devices(name)


def any_process(flag: bool) -> bool:
    """True when `flag` is true on any process.

    Host decisions such as checkpointing now or stopping must be taken by every process together,
    or a collective save would wait forever.
    """
    if jax.process_count() == 1:
        return flag
    from jax.experimental import multihost_utils

    return bool(np.any(multihost_utils.process_allgather(np.asarray(flag))))


def _leaves(settings: Mapping[str, Any]) -> dict[str, Any]:
    """Nested settings -> {leaf name: value} (a run record's sections hold distinct names)."""
    out: dict[str, Any] = {}
    for key, value in settings.items():
        out.update(_leaves(value) if isinstance(value, Mapping) else {key: value})
    return out


def check_processes_agree(settings: Mapping[str, Any]) -> None:
    """Compare this process's resolved `settings` (JSON-able) with process 0's; when any process
    differs, every process raises ConfigError (exit 2): the ones that differ name the first field with
    both values, process 0 says that another process does. A no-op with one process."""
    if jax.process_count() == 1:
        return
    from jax.experimental import multihost_utils

    mine = json.dumps(settings, sort_keys=True, default=str).encode()
    size = int(multihost_utils.broadcast_one_to_all(np.int32(len(mine))))
    buffer = np.zeros(size, np.uint8)
    buffer[: min(size, len(mine))] = np.frombuffer(mine[:size], np.uint8)
    first = json.loads(bytes(np.asarray(multihost_utils.broadcast_one_to_all(buffer), np.uint8)).decode())
    ours, theirs = _leaves(json.loads(mine)), _leaves(first)
    field = next((k for k in sorted(set(ours) | set(theirs)) if ours.get(k) != theirs.get(k)), None)
    if not any_process(field is not None):
        return
    if field is None:
        raise ConfigError(
            "another process of this run was started with other settings (it names the field): every process of "
            "a run needs the same settings"
        )
    raise ConfigError(
        f"process {jax.process_index()} was started with {field}={ours.get(field)!r} but process 0 with "
        f"{field}={theirs.get(field)!r}: every process of a run needs the same settings"
    )


def check_address(address: str) -> tuple[str, int]:
    """(host, port) of a coordinator address 'host:port' ('[v6]:port' for IPv6); ConfigError naming the
    flag and what is allowed otherwise (a port outside 1-65535, an empty or malformed host)."""
    host, sep, port = address.rpartition(":")
    bare = host[1:-1] if host.startswith("[") and host.endswith("]") else host
    valid_host = bool(bare) and all(c.isalnum() or c in ".-_:" for c in bare)
    if not sep or not valid_host or not port.isdigit() or not 1 <= int(port) <= 65535:
        raise ConfigError(
            f"coordinator_address={address!r} is invalid: must be host:port with a host name or IP address and a "
            "port in 1-65535 (e.g. 10.0.0.1:1234)"
        )
    return bare, int(port)


@dataclasses.dataclass(frozen=True)
class DistributedOptions:
    """How this process joins a multi-process run (all None: a single process).

    Attributes:
        coordinator_address: host:port of process 0's coordinator (e.g. 10.0.0.1:1234).
        num_processes: number of processes in the run.
        process_id: this process's index in [0, num_processes).
        auto: detect the cluster from its environment (SLURM, TPU pods, Open MPI) instead of flags.
        timeout: seconds to wait for every process to join before giving up.
    """

    coordinator_address: str | None = None
    num_processes: int | None = None
    process_id: int | None = None
    auto: bool = False
    timeout: int = 60

    @property
    def enabled(self) -> bool:
        return self.auto or self.coordinator_address is not None

    def validate(self) -> DistributedOptions:
        explicit = (self.coordinator_address, self.num_processes, self.process_id)
        if not self.auto and any(v is not None for v in explicit) and any(v is None for v in explicit):
            raise ConfigError(
                "--coordinator-address, --num-processes and --process-id go together (or use --distributed "
                "to detect the cluster from its environment)"
            )
        if self.num_processes is not None and self.num_processes < 1:
            raise invalid("num_processes", self.num_processes, "a positive integer")
        if self.process_id is not None and not 0 <= self.process_id < (self.num_processes or 1):
            raise invalid("process_id", self.process_id, f"in [0, {self.num_processes})")
        if self.coordinator_address is not None:
            check_address(self.coordinator_address)
        if self.timeout <= 0:
            raise invalid("distributed_timeout", self.timeout, "a positive integer")
        return self


class DistributedError(RuntimeError):
    """The processes of a multi-process run could not join (a fault: exit 1)."""


def initialize(options: DistributedOptions) -> None:
    """`jax.distributed.initialize` from the options (before any other JAX call). On CPU the
    collectives go through gloo. A coordinator that cannot be reached is a DistributedError after
    `options.timeout` seconds, never a hang."""
    if not options.enabled:
        return
    options.validate()
    jax.config.update("jax_cpu_collectives_implementation", "gloo")
    kwargs: dict[str, Any] = {
        "initialization_timeout": options.timeout,
        "heartbeat_timeout_seconds": max(10, options.timeout),
        "shutdown_timeout_seconds": max(10, options.timeout),
    }
    if not options.auto:
        assert options.coordinator_address is not None and options.num_processes is not None
        assert options.process_id is not None
        rendezvous(options.coordinator_address, options.num_processes, options.process_id, options.timeout)
        kwargs.update(
            coordinator_address=options.coordinator_address,
            num_processes=options.num_processes,
            process_id=options.process_id,
        )
    try:
        jax.distributed.initialize(**kwargs)
    except Exception as err:
        first = str(err).strip().splitlines()[0] if str(err).strip() else type(err).__name__
        raise DistributedError(
            f"could not join the multi-process run (coordinator {options.coordinator_address or 'from the cluster'}, "
            f"timeout {options.timeout}s): {first[:200]}"
        ) from None


def rendezvous(address: str, num_processes: int, process_id: int, timeout: float) -> None:
    """Check that every process can reach the coordinator before `jax.distributed.initialize`.

    JAX's coordination client aborts the whole process (a C++ fatal error, exit 134, a page of stack)
    when the coordinator cannot be reached in time. This plain TCP handshake on the coordinator's own
    port turns that into a DistributedError: process 0 listens until the others have said hello (or
    `timeout`), the others connect until it answers (or `timeout`), then the port is freed for JAX.
    """
    if num_processes == 1:
        return
    host, _, port_text = address.rpartition(":")
    port = int(port_text)
    deadline = time.monotonic() + timeout
    if process_id == 0:
        with socket.create_server((host, port), reuse_port=False) as server:
            server.settimeout(0.2)
            joined: dict[int, socket.socket] = {}
            try:
                while len(joined) < num_processes - 1:
                    if time.monotonic() > deadline:
                        missing = sorted(set(range(1, num_processes)) - set(joined))
                        raise DistributedError(
                            f"process(es) {missing} did not reach the coordinator {address} within {timeout:g}s"
                        )
                    try:
                        conn, _ = server.accept()
                    except TimeoutError:
                        continue
                    conn.settimeout(max(0.1, deadline - time.monotonic()))
                    joined[int(conn.recv(16).decode() or -1)] = conn
                for conn in joined.values():
                    conn.sendall(b"go")
                for conn in joined.values():
                    conn.recv(1)  # wait until the other side closes: its port, not ours, keeps TIME_WAIT
            finally:
                for conn in joined.values():
                    conn.close()
        return
    while True:
        try:
            with socket.create_connection((host, port), timeout=max(0.1, deadline - time.monotonic())) as conn:
                conn.sendall(str(process_id).encode())
                if conn.recv(2) == b"go":
                    return
        except OSError:
            pass
        if time.monotonic() > deadline:
            raise DistributedError(f"the coordinator {address} could not be reached within {timeout:g}s")
        time.sleep(0.2)


def forced_host_devices() -> int | None:
    """The device count forced by XLA_FLAGS=--xla_force_host_platform_device_count, if any."""
    for flag in os.environ.get("XLA_FLAGS", "").split():
        if flag.startswith("--xla_force_host_platform_device_count="):
            return int(flag.split("=", 1)[1])
    return None
