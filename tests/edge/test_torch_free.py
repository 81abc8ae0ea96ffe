"""``turborec.edge`` runs where only numpy and onnxruntime are installed.

A fresh interpreter installs an import hook that refuses torch, scipy, pandas, safetensors, the onnx
package and every turborec subpackage but ``errors``, ``_version`` (a string) and ``edge`` (as if they were not installed), then
loads a bundle and re-ranks; the result must equal the in-process runtime's.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np

from turborec.edge import EdgeReranker, load_bundle

CHILD = textwrap.dedent(
    """
    import importlib.abc, json, sys

    BLOCKED = {"torch", "scipy", "pandas", "safetensors", "onnx", "sklearn", "faiss", "tqdm", "sympy"}
    ALLOWED = ("turborec", "turborec._version", "turborec.errors", "turborec.edge")

    class NotInstalled(importlib.abc.MetaPathFinder):
        def find_spec(self, name, path=None, target=None):
            top = name.split(".")[0]
            allowed = name in ALLOWED or name.startswith("turborec.edge.")
            if top in BLOCKED or (top == "turborec" and not allowed):
                raise ModuleNotFoundError(f"No module named {name!r} (blocked: only numpy and onnxruntime exist)")
            return None

    sys.meta_path.insert(0, NotInstalled())
    from turborec.edge import EdgeReranker, load_bundle
    from turborec.errors import UnknownIdError

    bundle = load_bundle(sys.argv[1])
    reranker = EdgeReranker(bundle, threads=1)
    clicks = list(bundle.item_ids[3:6])
    ids, scores = reranker.rerank(clicks, k=25)
    try:
        reranker.rerank(["no-such-item"])
        unknown = "accepted"
    except UnknownIdError as exc:
        unknown = str(exc)
    loaded = sorted({m.split(".")[0] for m in sys.modules} & BLOCKED)
    turborec = sorted(m for m in sys.modules if m.startswith("turborec"))
    print(json.dumps({"ids": [str(i) for i in ids], "scores": scores.tolist(), "unknown": unknown,
                      "blocked_loaded": loaded, "turborec_modules": turborec}))
    """
)


def test_edge_runtime_without_torch(mlp_bundle_dir: Path) -> None:
    proc = subprocess.run(
        [sys.executable, "-I", "-c", CHILD, str(mlp_bundle_dir)],
        capture_output=True, text=True, timeout=120, env={**os.environ, "OMP_NUM_THREADS": "1"},
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr
    out = json.loads(proc.stdout)
    assert out["blocked_loaded"] == []
    allowed = {"turborec", "turborec._version", "turborec.errors"}
    assert all(m in allowed or m.startswith("turborec.edge") for m in out["turborec_modules"])
    assert "is not in this edge bundle" in out["unknown"]

    bundle = load_bundle(mlp_bundle_dir)
    ids, scores = EdgeReranker(bundle).rerank(list(bundle.item_ids[3:6]), k=25)
    assert out["ids"] == [str(i) for i in ids]
    np.testing.assert_allclose(out["scores"], scores, rtol=1e-6)


def test_the_hook_really_blocks_torch() -> None:
    """The isolation above is only evidence if importing torch under it fails."""
    probe = CHILD.split("from turborec.edge import")[0] + "import torch\n"
    proc = subprocess.run([sys.executable, "-I", "-c", probe], capture_output=True, text=True, timeout=60)
    assert proc.returncode != 0 and "blocked: only numpy and onnxruntime exist" in proc.stderr
