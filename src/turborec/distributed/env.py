"""Process-group setup for workers started by torchrun, with every connection on loopback by default.

torchrun hands each worker its rank and the rendezvous address through the
environment (``RANK``, ``WORLD_SIZE``, ``LOCAL_RANK``, ``MASTER_ADDR``,
``MASTER_PORT``): that is torch.distributed's contract, so this module and
``turborec.distributed.worker`` read them; nothing else in turborec does.
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Iterator, Mapping, MutableMapping
from dataclasses import dataclass

import torch
import torch.distributed as dist

from turborec.errors import ConfigError

LOOPBACK = "127.0.0.1"
BACKENDS = ("gloo", "nccl")


def loopback_environment(environ: Mapping[str, str] | None = None) -> dict[str, str]:
    """Variables that keep torch.distributed (and gloo's own sockets) on 127.0.0.1, merged over ``environ``.

    The TCPStore still listens on all interfaces at MASTER_PORT, but the traffic stays on loopback.
    """
    env = dict(os.environ if environ is None else environ)
    env.setdefault("MASTER_ADDR", LOOPBACK)
    env.setdefault("GLOO_SOCKET_IFNAME", "lo")
    env.setdefault("OMP_NUM_THREADS", "1")  # two ranks on a small machine: oversubscription costs 50x
    # NVLink multicast can take a shared host's GPUs down; it is never needed here
    env.setdefault("NCCL_NVLS_ENABLE", "0")
    env.setdefault("TORCH_SYMM_MEM_DISABLE_MULTICAST", "1")
    return env


@dataclass(frozen=True)
class DistContext:
    """Where this process sits in the job."""

    rank: int
    world_size: int
    local_rank: int
    backend: str
    device: torch.device

    @property
    def is_main(self) -> bool:
        return self.rank == 0

    def barrier(self) -> None:
        if self.world_size > 1 or dist.is_initialized():
            dist.barrier()


def resolve_backend(backend: str, device: str) -> str:
    if backend == "auto":
        return "nccl" if device.startswith("cuda") else "gloo"
    if backend not in BACKENDS:
        raise ConfigError(f"backend {backend!r}: expected auto, {', '.join(BACKENDS)}")
    if backend == "nccl" and not device.startswith("cuda"):
        raise ConfigError("backend nccl needs --device cuda (use gloo on CPU)")
    return backend


def _int_env(environ: Mapping[str, str], key: str, default: int) -> int:
    raw = environ.get(key)
    if raw is None:
        return default
    try:
        return int(raw)
    except ValueError:
        raise ConfigError(f"environment variable {key}={raw!r} is not an integer") from None


@contextlib.contextmanager
def process_group(
    backend: str = "auto", device: str = "cpu", environ: MutableMapping[str, str] | None = None
) -> Iterator[DistContext]:
    """Join the job torchrun started (or a one-process job when run directly) and leave it on exit."""
    env = os.environ if environ is None else environ
    rank = _int_env(env, "RANK", 0)
    world = _int_env(env, "WORLD_SIZE", 1)
    local = _int_env(env, "LOCAL_RANK", 0)
    if world == 1 and "MASTER_PORT" not in env:  # a plain single process: a private rendezvous on loopback
        from turborec.distributed.launch import free_port

        env.setdefault("MASTER_ADDR", LOOPBACK)
        env["MASTER_PORT"] = str(free_port())
    env.setdefault("MASTER_ADDR", LOOPBACK)
    env.setdefault("GLOO_SOCKET_IFNAME", "lo")
    name = resolve_backend(backend, device)
    if device.startswith("cuda"):
        if not torch.cuda.is_available():
            raise ConfigError(f"device {device!r} requested but CUDA is not available")
        dev = torch.device("cuda", local)
        torch.cuda.set_device(dev)
    else:
        dev = torch.device("cpu")
    dist.init_process_group(name, rank=rank, world_size=world, device_id=dev if dev.type == "cuda" else None)
    try:
        yield DistContext(rank, world, local, name, dev)
        # every rank reaches here before any tears down: a rank that destroyed its group while a peer was
        # still finishing (rank 0 evaluates and saves) made gloo abort at exit ("terminate called without an
        # active exception"), after the work was done
        dist.barrier()
    finally:
        dist.destroy_process_group()
