"""The Ray Serve deployment: the single-process server's API tests, shared user state, a replica killed
under load, and every connection on loopback. Starts a local Ray cluster (about a minute here)."""

from __future__ import annotations

import asyncio
import inspect
import os
import re
import socket
import subprocess
import threading
import time
from collections.abc import Awaitable, Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest

# Ray binds 127.0.0.1 only with this, read when Ray is imported (turborec.distributed.ray_serve.LOOPBACK_ENV)
os.environ.setdefault("RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER", "0")
os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")

pytestmark = pytest.mark.ray
ray = pytest.importorskip("ray")
from turborec.distributed.ray_serve import LOOPBACK_ENV, RayServeOptions  # noqa: E402

TOKEN = "test-admin-token"
# the API tests of tests/serving/test_app.py that only talk HTTP; the others inspect or configure one
# in-process service (its admission queue, tier, metrics counters, reload) and have Ray counterparts below
SHARED_API_TESTS = [
    "test_recommend_known_user",
    "test_integer_ids_are_accepted",
    "test_unknown_user_is_served_anonymously_from_recent_items",
    "test_an_event_changes_the_next_recommendation",
    "test_bad_requests_get_422_with_the_field",
    "test_malformed_json_and_oversized_bodies",
    "test_similar",
]


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@pytest.fixture(scope="module")
def redis_url() -> Iterator[str]:
    if not any((Path(d) / "redis-server").exists() for d in os.environ.get("PATH", "").split(os.pathsep)):
        pytest.skip("redis-server is not installed")
    port = _free_port()
    proc = subprocess.Popen(["redis-server", "--port", str(port), "--bind", "127.0.0.1", "--save", "",
                             "--appendonly", "no"], stdout=subprocess.DEVNULL)
    try:
        for _ in range(100):
            with socket.socket() as s:
                if s.connect_ex(("127.0.0.1", port)) == 0:
                    break
            time.sleep(0.05)
        yield f"redis://127.0.0.1:{port}/0"
    finally:
        proc.terminate()
        proc.wait(10)


@pytest.fixture(scope="module")
def artifact(tmp_path_factory: pytest.TempPathFactory) -> Path:
    from turborec.data.synthetic import synthetic
    from turborec.train import TwoTowerRecommender

    data = synthetic(n_users=200, n_items=300, n_interactions=4000, seed=0)
    rec = TwoTowerRecommender(dim=16, hidden=(32,), history_len=20, epochs=1, batch_size=512, seed=0, progress=False)
    return rec.fit(data).save(tmp_path_factory.mktemp("ray") / "tt")


@pytest.fixture(scope="module")
def model(artifact: Path) -> Any:
    from turborec.serving.loading import load_serving_model

    return load_serving_model(artifact)


@dataclass
class RayAPI:
    url: str
    redis_url: str

    def make_service(self, model: Any, artifact: Path | None = None, **options: Any) -> dict[str, Any]:
        return options  # the deployment below already runs with the settings these tests need

    def run(self, service: Any, body: Callable[[httpx.AsyncClient], Awaitable[None]], front_end: str = "asgi") -> None:
        import redis

        redis.Redis.from_url(self.redis_url).flushdb()  # each test starts with no live user state

        async def main() -> None:
            async with httpx.AsyncClient(base_url=self.url, timeout=30) as client:
                await body(client)

        asyncio.run(main())


@pytest.fixture(scope="module")
def ray_api(artifact: Path, redis_url: str) -> Iterator[RayAPI]:
    from turborec.distributed import ray_serve
    from turborec.serving.settings import ServeSettings

    settings = ServeSettings(artifact=artifact, port=_free_port(), store="redis", redis_url=redis_url,
                             admin_token=TOKEN, max_k=50, slo_p99_ms=2000.0, max_body_bytes=1024, history_len=50)
    deployment = ray_serve.deploy(settings, RayServeOptions(replicas=2, cpus_per_replica=0.25), num_cpus=2)
    try:
        yield RayAPI(deployment.url, redis_url)
    finally:
        ray_serve.shutdown()


def _calls(fn: Callable[..., Any]) -> list[dict[str, Any]]:
    """Keyword arguments for each case of a (possibly parametrized) test from test_app."""
    cases: list[dict[str, Any]] = [{}]
    for mark in getattr(fn, "pytestmark", []):
        if mark.name == "parametrize":
            names = [n.strip() for n in mark.args[0].split(",")] if isinstance(mark.args[0], str) else mark.args[0]
            cases = [{**c, **dict(zip(names, values))} for c in cases for values in mark.args[1]]
    return cases


@pytest.mark.parametrize("name", SHARED_API_TESTS)
def test_single_process_api_tests_pass_on_ray(name: str, ray_api: RayAPI, model: Any,
                                              monkeypatch: pytest.MonkeyPatch) -> None:
    from tests.serving import test_app as api

    monkeypatch.setattr(api, "run", ray_api.run)
    monkeypatch.setattr(api, "make_service", ray_api.make_service)
    fn = getattr(api, name)
    params = inspect.signature(fn).parameters
    for case in _calls(fn):
        kwargs = {k: v for k, v in {"model": model, "front_end": "asgi", **case}.items() if k in params}
        fn(**kwargs)


def test_events_through_any_replica_reach_every_replica(ray_api: RayAPI) -> None:
    """Replicas share user state in Redis: after events, every answer (whichever replica) reflects them."""
    ray_api.run(None, _no_op)
    with httpx.Client(base_url=ray_api.url, timeout=30) as c:
        before = c.post("/v1/recommend", json={"user": "shared-user", "k": 10}).json()["items"]
        for item in range(100, 110):
            assert c.post("/v1/events", json={"user": "shared-user", "item": str(item), "kind": "click"}).status_code == 200
        answers = [c.post("/v1/recommend", json={"user": "shared-user", "k": 10}).json()["items"] for _ in range(12)]
    assert all(a == answers[0] for a in answers) and answers[0] != before


async def _no_op(_: httpx.AsyncClient) -> None:
    return None


def test_every_ray_connection_stays_on_loopback(ray_api: RayAPI) -> None:
    with httpx.Client(base_url=ray_api.url, timeout=30) as c:
        assert c.post("/v1/recommend", json={"user": "1"}).status_code == 200
    out = subprocess.run(["ss", "-tnp"], capture_output=True, text=True, timeout=10).stdout
    ours = [line for line in out.splitlines()[1:] if re.search(r'"(ray::[^"]*|raylet|gcs_server|redis-server)"', line)
            or f"pid={os.getpid()}," in line]
    assert ours, "found no Ray connections to check"
    for line in ours:
        local, peer = line.split()[3], line.split()[4]
        for addr in (local, peer):
            host = addr.rsplit(":", 1)[0].strip("[]").removeprefix("::ffff:")
            assert host.startswith("127.") or host == "::1", line


def _replicas() -> list[Any]:
    names = [a["name"] for a in ray.util.list_named_actors(all_namespaces=True) if "SERVE_REPLICA" in a["name"]]
    return [ray.get_actor(n, namespace="serve") for n in names]


def test_killing_a_replica_under_load_loses_no_event(ray_api: RayAPI) -> None:
    """Two clients post events and ask for recommendations while one replica is killed: every request
    succeeds within its retries, few needed one, and every acknowledged event is in the shared store."""
    import redis

    ray_api.run(None, _no_op)
    acked: list[tuple[str, str]] = []
    first_try_failures = 0
    failed: list[str] = []
    sent = 0
    lock = threading.Lock()
    halfway = threading.Event()

    def post(client: httpx.Client, path: str, body: dict[str, Any]) -> bool:
        nonlocal first_try_failures
        for attempt in range(8):
            try:
                r = client.post(path, json=body)
                if r.status_code == 200:
                    return True
            except httpx.HTTPError:
                pass
            with lock:
                first_try_failures += attempt == 0
            time.sleep(0.25 * (attempt + 1))
        return False

    def client_loop(worker: int) -> None:
        nonlocal sent
        with httpx.Client(base_url=ray_api.url, timeout=10) as c:
            for n in range(120):
                user, item = f"fault-{worker}-{n % 20}", f"ev-{worker}-{n}"
                ok = post(c, "/v1/events", {"user": user, "item": item, "kind": "click"})
                with lock:
                    sent += 2
                    (acked.append((user, item)) if ok else failed.append(item))
                if not post(c, "/v1/recommend", {"user": user, "k": 5}):
                    with lock:
                        failed.append(f"recommend {user}")
                if n == 40:
                    halfway.set()

    threads = [threading.Thread(target=client_loop, args=(w,)) for w in range(2)]
    for t in threads:
        t.start()
    assert halfway.wait(120)
    victims = _replicas()
    assert len(victims) == 2
    ray.kill(victims[0], no_restart=True)
    for t in threads:
        t.join(300)
    print(f"replica killed under load: {sent} requests, {first_try_failures} needed a retry, {len(failed)} failed")
    assert not failed, f"requests that failed every retry: {failed[:5]}"
    assert first_try_failures <= 0.1 * sent, f"{first_try_failures} of {sent} needed a retry"
    r = redis.Redis.from_url(ray_api.redis_url, decode_responses=True)
    stored = {(key.removeprefix("turborec:hist:"), item) for key in r.keys("turborec:hist:fault-*")
              for item in r.lrange(key, 0, -1)}
    assert set(acked) <= stored, f"{len(set(acked) - stored)} acknowledged events are missing"
    deadline = time.monotonic() + 120
    while len(_replicas()) < 2 and time.monotonic() < deadline:  # Serve replaces the dead replica
        time.sleep(1)
    assert len(_replicas()) == 2


def test_loopback_switches_are_the_ones_set_here() -> None:
    assert all(os.environ.get(k) == v for k, v in LOOPBACK_ENV.items())


def test_options_validate_and_describe_scaling() -> None:
    from turborec.errors import ConfigError

    auto = RayServeOptions(replicas=1, autoscale=True, max_replicas=3, target_ongoing=4).scaling()
    assert auto["autoscaling_config"]["target_ongoing_requests"] == 4
    assert auto["autoscaling_config"]["max_replicas"] == 3
    assert RayServeOptions(replicas=2).scaling() == {"num_replicas": 2}
    with pytest.raises(ConfigError, match="replicas"):
        RayServeOptions(replicas=0)
    with pytest.raises(ConfigError, match="max_replicas"):
        RayServeOptions(replicas=3, autoscale=True, max_replicas=2)


def test_several_replicas_without_a_shared_store_are_refused(artifact: Path) -> None:
    from turborec.distributed.ray_serve import build_application
    from turborec.errors import ConfigError
    from turborec.serving.settings import ServeSettings

    with pytest.raises(ConfigError, match="redis"):
        build_application(ServeSettings(artifact=artifact), RayServeOptions(replicas=2))
