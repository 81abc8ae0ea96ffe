"""Helpers shared by the benchmark scripts: machine facts, JSON + markdown output, medians."""

from __future__ import annotations

import contextlib
import json
import os
import platform
import statistics
import subprocess
import time
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
RESULTS = REPO / "benchmarks" / "results"
SHARED_DATA = Path(os.environ.get("TURBOREC_SHARED_DATA", REPO.parent / "shared" / "data"))


def machine() -> dict[str, Any]:
    info: dict[str, Any] = {
        "python": platform.python_version(),
        "cpu_count": os.cpu_count(),
        "platform": platform.platform(),
        "date": time.strftime("%Y-%m-%d %H:%M:%S"),
    }
    try:
        import torch

        info["torch"] = torch.__version__
        info["torch_threads"] = torch.get_num_threads()
        if torch.cuda.is_available():
            info["gpu"] = torch.cuda.get_device_name(0)
    except ImportError:
        pass
    with contextlib.suppress(OSError):
        info["git"] = subprocess.run(
            ["git", "rev-parse", "--short", "HEAD"], cwd=REPO, capture_output=True, text=True, timeout=10
        ).stdout.strip()
    return info


def markdown_table(rows: Sequence[Mapping[str, Any]], floatfmt: str = ".4f") -> str:
    if not rows:
        return "(no rows)"
    cols = list(dict.fromkeys(k for r in rows for k in r))

    def cell(v: Any) -> str:
        if isinstance(v, float):
            return format(v, floatfmt) if abs(v) < 1000 else f"{v:,.0f}"
        return str(v)

    out = ["| " + " | ".join(cols) + " |", "|" + "|".join("---" for _ in cols) + "|"]
    out += ["| " + " | ".join(cell(r.get(c, "")) for c in cols) + " |" for r in rows]
    return "\n".join(out)


def write_results(name: str, payload: Mapping[str, Any], table: str) -> Path:
    RESULTS.mkdir(parents=True, exist_ok=True)
    path = RESULTS / f"{name}.json"
    tmp = path.with_suffix(".json.tmp")
    tmp.write_text(json.dumps({"machine": machine(), **payload}, indent=1, default=str))
    tmp.replace(path)
    (RESULTS / f"{name}.md").write_text(table + "\n")
    print(table)
    print(f"\nwrote {path}")
    return path


def median(values: Sequence[float]) -> float:
    return float(statistics.median(values))


def parse_spec(spec: str) -> tuple[str, dict[str, str]]:
    """``name[:key=value,...]`` -> (name, options): the model specs the benchmark scripts take."""
    name, _, rest = spec.partition(":")
    return name, parse_options(rest)


def parse_options(text: str) -> dict[str, str]:
    """``a=1,b=2`` -> {a: 1, b: 2}; a part without "=" continues the previous value (``hidden=512,256``)."""
    out: dict[str, str] = {}
    key = None
    for part in filter(None, text.split(",")):
        name, sep, value = part.partition("=")
        if sep:
            key = name.strip()
            out[key] = value.strip()
        elif key is not None:
            out[key] += "," + part.strip()
        else:
            raise SystemExit(f"option {part!r} is not KEY=VALUE")
    return out
