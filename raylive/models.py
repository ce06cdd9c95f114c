"""Models shared by every stream's processors: one Ray Serve deployment per model, batching the
calls of all processors that use it (`@serve.batch`), on a GPU when the cluster has one.

    class Classifier(raylive.Model):
        def setup(self): self.net = load()                 # once per replica
        def predict(self, batch): return self.net(batch)    # a list in, a list of as many out

    rl.deploy_model(Classifier, name="classifier", max_batch_size=16)
    # in a processor:  label = raylive.model("classifier")(small_frame)

20 streams then share one copy of the weights instead of loading 20. Calls are Ray calls through
Serve's handle (no HTTP); a batch forms from the calls waiting when the replica is free, at most
`max_batch_size`, after waiting at most `batch_wait_s` for more.
"""

from __future__ import annotations

import asyncio
import time
from collections import Counter
from typing import Any

from ray import serve

APP_PREFIX = "model-"  # Serve application of the model NAME: model-NAME (no HTTP route)
DEPLOYMENT = "model"
CALL_TIMEOUT_S = 30.0


class Model:
    """Subclass it: `setup()` loads the weights in the replica (not in `__init__`, which also runs
    pickled where you deploy); `predict(batch)` gets a list of inputs (what processors passed to
    `raylive.model(NAME)(x)`) and returns a list of as many results, in order."""

    def setup(self) -> None:
        """Load weights here."""

    def predict(self, batch: list[Any]) -> list[Any]:
        raise NotImplementedError


class _ModelServer:
    """The Serve replica: one model instance, its calls batched."""

    def __init__(self, cls: type[Model], kwargs: dict[str, Any], max_batch_size: int, batch_wait_s: float) -> None:
        self.model = cls(**kwargs)
        self.model.setup()
        self.batches: Counter[int] = Counter()  # batch size -> batches run
        self.busy_s = 0.0
        self.__call__.set_max_batch_size(max_batch_size)  # type: ignore[attr-defined]
        self.__call__.set_batch_wait_timeout_s(batch_wait_s)  # type: ignore[attr-defined]

    @serve.batch  # sizes are set per replica (set_max_batch_size) from deploy's arguments
    async def __call__(self, batch: list[Any]) -> list[Any]:
        self.batches[len(batch)] += 1
        started = time.perf_counter()
        out = await asyncio.to_thread(self.model.predict, batch)  # the replica keeps taking calls meanwhile
        self.busy_s += time.perf_counter() - started
        if len(out) != len(batch):
            raise ValueError(f"predict returned {len(out)} results for {len(batch)} inputs")
        return out

    def stats(self) -> dict[str, Any]:
        calls = sum(size * n for size, n in self.batches.items())
        batches = sum(self.batches.values())
        return {
            "calls": calls,
            "batches": batches,
            "mean_batch": round(calls / batches, 2) if batches else 0.0,
            "max_batch": max(self.batches, default=0),
            "batch_sizes": dict(sorted(self.batches.items())),
            "busy_s": round(self.busy_s, 3),
        }


class ModelHandle:
    def __init__(self, name: str) -> None:
        self.name = name

    def stats(self) -> dict[str, Any]:
        """Calls, batches, batch sizes (size -> batches) and time spent predicting, of one replica."""
        result: dict[str, Any] = _handle(self.name).stats.remote().result(timeout_s=CALL_TIMEOUT_S)
        return result

    def delete(self) -> None:
        serve.delete(APP_PREFIX + self.name)


def deploy(
    cls: type[Model],
    name: str,
    max_batch_size: int = 16,
    batch_wait_s: float = 0.005,
    num_cpus: float = 1.0,
    num_gpus: float | None = None,
    **kwargs: Any,
) -> ModelHandle:
    """Deploy `cls` once for the cluster (one replica), on a GPU when the cluster has one unless
    `num_gpus` says otherwise. Replaces a model deployed before under the same name."""
    import ray

    if num_gpus is None:
        num_gpus = 1.0 if ray.cluster_resources().get("GPU", 0) >= 1 else 0.0
    options = {"num_cpus": num_cpus, "num_gpus": num_gpus}
    # Requests it may hold at once: a batch can only be as large as what it holds (Serve's default, 5).
    ongoing = max(2 * max_batch_size, 16)
    deployment = serve.deployment(name=DEPLOYMENT, num_replicas=1, max_ongoing_requests=ongoing, ray_actor_options=options)(_ModelServer)
    serve.run(deployment.bind(cls, kwargs, max_batch_size, batch_wait_s), name=APP_PREFIX + name, route_prefix=None)
    return ModelHandle(name)


def _handle(name: str) -> Any:
    """A handle usable from plain threads: raylive's cluster runs Serve throughput-optimized
    (`RAY_SERVE_THROUGHPUT_OPTIMIZED`), whose handles otherwise need the caller's asyncio loop."""
    handle = serve.get_deployment_handle(DEPLOYMENT, app_name=APP_PREFIX + name)
    if not handle.is_initialized:  # Serve hands out one handle per deployment and process
        handle._init(_run_router_in_separate_loop=True)
    return handle


class _ModelCaller:
    def __init__(self, name: str) -> None:
        self.handle = _handle(name)

    def __call__(self, x: Any, timeout_s: float = CALL_TIMEOUT_S) -> Any:
        return self.handle.remote(x).result(timeout_s=timeout_s)


def model(name: str) -> _ModelCaller:
    """The model deployed as `name`, to call from a processor: `model(name)(x)` -> its result."""
    return _ModelCaller(name)
