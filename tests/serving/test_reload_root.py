"""``/admin/reload`` loads only from the artifacts root (issue 15.10), and its refusal says nothing about
what exists outside it: the same 400 and the same words for a real artifact, a missing path, a file, and a
link out of the root."""

from __future__ import annotations

import shutil
from pathlib import Path

from tests.serving.test_app import TOKEN, Client, make_service, run
from turborec.serving.net_model import NetServingModel
from turborec.serving.settings import ServeSettings

AUTH = {"authorization": f"Bearer {TOKEN}"}


def test_default_root_is_the_served_artifacts_parent(tmp_path: Path) -> None:
    assert ServeSettings(artifact=tmp_path / "runs" / "a").reload_root == tmp_path / "runs"
    assert ServeSettings(artifact=tmp_path / "a", artifacts_root=tmp_path / "x").reload_root == tmp_path / "x"
    assert ServeSettings().reload_root is None


def test_reload_outside_the_root_is_refused_alike(model: NetServingModel, artifact: Path, artifact_b: Path,
                                                  tmp_path: Path) -> None:
    root = tmp_path / "served"
    root.mkdir()
    inside = shutil.copytree(artifact_b, root / "b")
    served = shutil.copytree(artifact, root / "a")
    (root / "escape").symlink_to(artifact_b.parent, target_is_directory=True)
    (tmp_path / "a-file").write_text("x")
    service = make_service(model, artifact=served, artifacts_root=None)  # the default: the served one's parent
    outside = [str(artifact_b), str(tmp_path / "no-such-dir"), str(tmp_path / "a-file"), "/etc",
               str(root / ".." / "a-file"), str(root / "escape" / artifact_b.name)]

    async def body(c: Client) -> None:
        answers = [await c.post("/admin/reload", json={"artifact": p}, headers=AUTH) for p in outside]
        assert {r.status_code for r in answers} == {400}
        assert {r.text for r in answers} == {'{"detail":"the artifact path is outside the artifacts root"}'}
        assert (await c.post("/v1/recommend", json={"user": "1"})).json()["model_version"] == model.version
        r = await c.post("/admin/reload", json={"artifact": str(inside)}, headers=AUTH)
        assert r.status_code == 200, r.text
        r = await c.post("/admin/reload", json={"artifact": str(root / "missing")}, headers=AUTH)
        assert r.status_code == 409  # inside the root, a missing artifact is an ordinary refusal

    run(service, body)
