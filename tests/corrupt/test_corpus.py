"""Every consumer of an artifact refuses every case of the corrupted corpus cleanly (issue 15.3-15.6):
one line naming the artifact and the problem, exit 2 from the CLI, 409 from a hot reload, and the old
model goes on serving -- also under load, with no failed request."""

from __future__ import annotations

import asyncio
import tempfile
import threading
import time
from pathlib import Path

import httpx
import numpy as np
import pytest

from tests.corrupt.corpus import Case
from turborec.bench.loadgen import LoadSpec, RequestTemplate, run_load
from turborec.cli.main import main
from turborec.errors import ArtifactError
from turborec.loading import load as load_model
from turborec.serving.server import background_server, build_service
from turborec.serving.service import RecommendService, ReloadRefused
from turborec.serving.settings import ServeSettings

TOKEN = "corpus-admin-token"


def one_line(capsys: pytest.CaptureFixture[str]) -> str:
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1, err
    return err[0]


def names_the_problem(message: str, case: Case, path: Path) -> None:
    assert case.expect in message, message
    assert path.name in message, message  # the file or the artifact directory, so the operator knows which
    assert "Traceback" not in message


def test_the_good_artifact_passes_every_check(good_artifact: Path, capsys: pytest.CaptureFixture[str]) -> None:
    load_model(good_artifact)
    assert main(["recommend", str(good_artifact), "--user", "1", "-k", "5"]) == 0
    assert len(capsys.readouterr().out.strip().splitlines()) == 5


def test_load_refuses(damaged: tuple[Case, Path]) -> None:
    case, path = damaged
    with pytest.raises(ArtifactError) as err:
        load_model(path)
    names_the_problem(str(err.value), case, path)


def test_recommend_refuses_with_one_line(damaged: tuple[Case, Path], capsys: pytest.CaptureFixture[str]) -> None:
    case, path = damaged
    assert main(["recommend", str(path), "--user", "1", "-k", "5"]) == 2
    names_the_problem(one_line(capsys), case, path)


def test_evaluate_refuses_with_one_line(damaged: tuple[Case, Path], capsys: pytest.CaptureFixture[str]) -> None:
    case, path = damaged
    assert main(["evaluate", str(path)]) == 2
    names_the_problem(one_line(capsys), case, path)


def test_serve_refuses_before_binding(damaged: tuple[Case, Path], capsys: pytest.CaptureFixture[str]) -> None:
    case, path = damaged
    with pytest.raises(ArtifactError) as err:
        build_service(ServeSettings(artifact=path))
    names_the_problem(str(err.value), case, path)
    # the command itself, in a thread so that a case it failed to refuse would not block the run
    codes: list[int] = []
    thread = threading.Thread(target=lambda: codes.append(main(["serve", str(path), "--port", "0"])), daemon=True)
    thread.start()
    thread.join(120)
    assert codes == [2]
    names_the_problem(one_line(capsys), case, path)


@pytest.fixture(scope="module")
def good_service(good_artifact: Path) -> RecommendService:
    return build_service(ServeSettings(artifact=good_artifact, admin_token=TOKEN, slo_p99_ms=5000.0,
                                       artifacts_root=Path(tempfile.gettempdir())))


def test_hot_reload_refuses_and_keeps_the_old_model(damaged: tuple[Case, Path], good_service: RecommendService) -> None:
    case, path = damaged
    before = good_service.model

    async def reload() -> None:
        await good_service.reload(path)

    with pytest.raises(ReloadRefused) as err:
        asyncio.run(reload())
    names_the_problem(str(err.value), case, path)
    assert good_service.model is before


def test_reloads_of_the_whole_corpus_under_load_fail_no_request(
    good_artifact: Path, corpus: dict[str, tuple[Case, Path]]
) -> None:
    service = build_service(ServeSettings(artifact=good_artifact, admin_token=TOKEN, slo_p99_ms=5000.0,
                                       artifacts_root=Path(tempfile.gettempdir())))
    version = service.model.version
    bodies = tuple(RequestTemplate("POST", "/v1/recommend", f'{{"user": "{u}", "k": 10}}'.encode()) for u in range(50))
    answers: list[int] = []
    with background_server(service) as srv:

        def reload_everything() -> None:
            time.sleep(0.5)
            with httpx.Client(base_url=srv.url, timeout=30) as c:
                for _case, path in corpus.values():
                    r = c.post("/admin/reload", json={"artifact": str(path)},
                               headers={"authorization": f"Bearer {TOKEN}"})
                    answers.append(r.status_code)

        thread = threading.Thread(target=reload_everything)
        thread.start()
        result = run_load(LoadSpec(url=srv.url, rate=100, duration_s=2.5, requests=bodies, connections=16,
                                   timeout_s=10))
        thread.join(60)
        with httpx.Client(base_url=srv.url) as c:
            after = c.post("/v1/recommend", json={"user": "1", "k": 10}).json()
    assert answers == [409] * len(corpus)
    assert len(result.status) > 100
    assert np.all(result.status == 200), np.unique(result.status, return_counts=True)
    assert after["model_version"] == version and len(after["items"]) == 10
