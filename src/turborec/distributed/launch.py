"""Start N training processes through torchrun (``torch.distributed.run``) on this machine.

``turborec train ... --nproc N`` calls :func:`launch`: it runs
``python -m torch.distributed.run --nproc-per-node N ... -m turborec.distributed.worker``
in a child process with a loopback rendezvous, so a user's shell never needs to
know torchrun's flags. With ``max_restarts``, a job whose rank died is started
again (all ranks, fresh rendezvous) and the workers resume from the last checkpoint.
"""

from __future__ import annotations

import socket
import subprocess
import sys
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path

from turborec.distributed.env import LOOPBACK, loopback_environment
from turborec.distributed.spec import ShardedTrainSpec
from turborec.errors import ConfigError


def free_port(host: str = LOOPBACK) -> int:
    """A TCP port that was free on ``host`` a moment ago (the rendezvous binds it next)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind((host, 0))
        return int(s.getsockname()[1])


def torchrun_command(
    nproc: int,
    module: str,
    args: Sequence[str],
    *,
    port: int | None = None,
    max_restarts: int = 0,
    python: str | None = None,
    script: str | None = None,
) -> list[str]:
    """The argv that runs ``python -m module args`` (or ``python script args``) in ``nproc`` ranks on this host."""
    if nproc < 1:
        raise ConfigError(f"--nproc must be >= 1, got {nproc}")
    if max_restarts < 0:
        raise ConfigError(f"max_restarts must be >= 0, got {max_restarts}")
    return [
        python or sys.executable, "-m", "torch.distributed.run",
        f"--nproc-per-node={nproc}", "--nnodes=1",
        f"--master-addr={LOOPBACK}", f"--master-port={port or free_port()}",
        f"--max-restarts={max_restarts}", "--monitor-interval=0.5",
        *([script] if script else ["-m", module]), *args,
    ]


def launch(
    nproc: int,
    module: str,
    args: Sequence[str],
    *,
    max_restarts: int = 0,
    env: Mapping[str, str] | None = None,
    cwd: str | Path | None = None,
    log: Callable[[str], None] = print,
) -> int:
    """Run the job to completion; 0 when every rank finished, else the last attempt's exit code.

    A failed attempt (a rank crashed or was killed) is started again, up to ``max_restarts``
    times, as a fresh torchrun with a fresh rendezvous; the workers resume from their last
    checkpoint. (torchrun's own ``--max-restarts`` reuses the rendezvous store, and on this
    torch the restarted gloo ranks were seen to hang while connecting.)
    """
    if max_restarts < 0:
        raise ConfigError(f"max_restarts must be >= 0, got {max_restarts}")
    code = 0
    for attempt in range(max_restarts + 1):
        if attempt:
            log(f"attempt {attempt} failed with exit code {code}; restarting all {nproc} processes "
                f"({max_restarts - attempt + 1} restart(s) left)")
        code = subprocess.call(torchrun_command(nproc, module, args), env=loopback_environment(env), cwd=cwd)
        if code == 0:
            return 0
    return code


def start_training(spec: ShardedTrainSpec, nproc: int, *, max_restarts: int = 0, log: Path | None = None,
                   env: Mapping[str, str] | None = None) -> subprocess.Popen[bytes]:
    """Run :func:`launch_training` in a child process without waiting (fault drills kill its workers)."""
    cmd = [sys.executable, "-m", "turborec.distributed.launch", "--nproc", str(nproc),
           "--max-restarts", str(max_restarts), "--spec", spec.to_json()]
    out = open(log, "wb") if log is not None else subprocess.DEVNULL  # noqa: SIM115 (handed to the child)
    return subprocess.Popen(cmd, env=loopback_environment(env), stdout=out, stderr=subprocess.STDOUT)


def train_command_args(spec_json: str) -> list[str]:
    return ["--spec", spec_json]


def launch_training(spec: ShardedTrainSpec, nproc: int, *, max_restarts: int = 0,
                    env: Mapping[str, str] | None = None) -> int:
    """``turborec train --nproc N``: run the sharded job in N local processes; torchrun's exit code."""
    from turborec.distributed.worker import MODULE

    return launch(nproc, MODULE, train_command_args(spec.to_json()), max_restarts=max_restarts, env=env,
                  log=lambda msg: print(msg, flush=True))


def main(argv: Sequence[str] | None = None) -> int:
    """``python -m turborec.distributed.launch --nproc N --spec JSON``: what ``turborec train --nproc`` runs."""
    import argparse

    parser = argparse.ArgumentParser(prog="python -m turborec.distributed.launch")
    parser.add_argument("--nproc", type=int, required=True)
    parser.add_argument("--max-restarts", type=int, default=0)
    parser.add_argument("--spec", required=True, help="ShardedTrainSpec as JSON")
    args = parser.parse_args(argv)
    return launch_training(ShardedTrainSpec.from_json(args.spec), args.nproc, max_restarts=args.max_restarts)


if __name__ == "__main__":
    sys.exit(main())
