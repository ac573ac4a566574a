"""The one fan-out of independent work: in this process, on a local Ray, or on a Ray cluster.

    from mednns.utils.parallel import run_tasks
    results = run_tasks(fn, items, workers=4, num_cpus=1, num_gpus=0.25, desc="fine-tune")

- `workers == 1`: a plain loop here (`fn(item)` for each item, in order); Ray is never imported.
- `workers > 1`: each item is one Ray task, at most `workers` of them running at once. With
  `RAY_ADDRESS` set (or `address=`) they go to that cluster; otherwise a local Ray is started with
  `workers * num_cpus` CPUs and kept for later calls in this process (Ray stops it at exit).
- `fn` is pickled once and put in Ray's object store, so a callable object carrying large read-only
  state (numpy arrays, a network) is shipped once, not once per task. It must be picklable: a
  module-level function or a callable object (a lambda or closure works too: Ray uses cloudpickle).
- Results come back in the order of `items`. `on_result(index, result)`, when given, is called here in
  the driver as each result arrives (in completion order), and what it returns is kept in the result's
  place: write a result to disk there (an interrupted run keeps what was done) and return None, so
  large results are not held until the end.
- A task whose worker process dies (killed, out of memory, a node lost) is re-run by Ray, up to
  `retries` times; an exception raised by `fn` is not retried and is raised here (a MedNNSError as
  itself), after the tasks still pending are cancelled.
- One progress bar over the whole fan-out. Ray's dashboard stays off unless `MEDNNS_RAY_DASHBOARD=1`
  (it needs `ray[default]`).

Inside a task Ray sets OMP_NUM_THREADS to `num_cpus`, so a torch task uses that many threads.
"""

from __future__ import annotations

import logging
import os
import sys
from typing import Any, Callable, Iterable, Sequence, TypeVar

from tqdm.auto import tqdm

from mednns.utils.errors import MedNNSError

log = logging.getLogger(__name__)

T = TypeVar("T")
R = TypeVar("R")

RAY_PIN = "ray==2.60.0"
_started_here = False   # whether this process started the local Ray it is connected to
_remote_call = None


def _ray():
    try:
        import ray
    except ImportError:
        raise MedNNSError(f"workers > 1 needs Ray: pip install {RAY_PIN} (or set workers: 1)") from None
    return ray


def ensure_ray(workers: int, num_cpus: float = 1, num_gpus: float = 0, address: str | None = None):
    """Connect to the cluster in `address` / RAY_ADDRESS, or start (or reuse) a local Ray big enough for
    `workers` tasks of `num_cpus` CPUs each. Returns the `ray` module."""
    global _started_here
    ray = _ray()
    address = address or os.environ.get("RAY_ADDRESS")
    need = workers * num_cpus
    if ray.is_initialized():
        if address or not _started_here or ray.cluster_resources().get("CPU", 0) >= need:
            return ray
        ray.shutdown()  # our own local Ray, too small for this fan-out: start a bigger one
    dashboard = os.environ.get("MEDNNS_RAY_DASHBOARD", "") not in ("", "0")
    if address:
        log.info("connecting to the Ray cluster at %s", address)
        ray.init(address=address, log_to_driver=True)  # its dashboard is the cluster's
        _started_here = False
    else:
        log.info("starting a local Ray with %g CPUs", need)
        ray.init(num_cpus=max(1, int(round(need))), include_dashboard=dashboard, log_to_driver=True)
        _started_here = True
    return ray


def _call(fn: Callable, item):
    return fn(item)


def run_tasks(fn: Callable[[T], R], items: Iterable[T], workers: int = 1, *, num_cpus: float = 1,
              num_gpus: float = 0, desc: str | None = None, unit: str = "task",
              on_result: Callable[[int, R], Any] | None = None, address: str | None = None,
              retries: int = 3, progress: bool = True) -> list[R]:
    """`[fn(item) for item in items]`, fanned out over `workers` (see the module docstring)."""
    return _run_tasks(fn, items, workers, num_cpus=num_cpus, num_gpus=num_gpus, desc=desc, unit=unit,
                      on_result=on_result, address=address, retries=retries, progress=progress, ray=workers > 1)


def _run_tasks(fn, items, workers: int = 1, *, num_cpus: float = 1, num_gpus: float = 0, desc=None,
               unit: str = "task", on_result=None, address=None, retries: int = 3, progress: bool = True,
               ray: bool = False) -> list:
    """`run_tasks` with the engine chosen: `ray=True` sends even a single worker's tasks to Ray (what
    benchmarks/scale_out.py measures Ray's own overhead with)."""
    items = list(items)
    if workers < 1:
        raise MedNNSError(f"workers must be at least 1, not {workers}")
    bar = tqdm(total=len(items), desc=desc, unit=unit, disable=not progress,
               mininterval=1.0 if sys.stderr.isatty() else 30.0)
    try:
        if not ray:
            results = []
            for i, item in enumerate(items):
                result = fn(item)
                results.append(on_result(i, result) if on_result else result)
                bar.update(1)
            return results
        return _run_on_ray(fn, items, workers, num_cpus, num_gpus, on_result, address, retries, bar)
    finally:
        bar.close()


def _run_on_ray(fn, items: Sequence, workers: int, num_cpus: float, num_gpus: float, on_result,
                address: str | None, retries: int, bar) -> list:
    global _remote_call
    ray = ensure_ray(workers, num_cpus, num_gpus, address)
    if _remote_call is None:
        # max_calls=0: workers are reused (GPU tasks too), so what a task caches survives to the next.
        _remote_call = ray.remote(max_calls=0)(_call)
    task = _remote_call.options(num_cpus=num_cpus, num_gpus=num_gpus, max_retries=retries, retry_exceptions=False)
    fn_ref = ray.put(fn)
    results: list[Any] = [None] * len(items)
    pending: dict = {}
    queue = iter(enumerate(items))
    try:
        while True:
            while len(pending) < workers:
                nxt = next(queue, None)
                if nxt is None:
                    break
                pending[task.remote(fn_ref, nxt[1])] = nxt[0]
            if not pending:
                return results
            done, _ = ray.wait(list(pending), num_returns=1)
            for ref in done:
                i = pending.pop(ref)
                result = _get(ray, ref)
                results[i] = on_result(i, result) if on_result else result
                bar.update(1)
    except BaseException:
        for ref in pending:
            ray.cancel(ref, force=True)
        raise


def _get(ray, ref):
    try:
        return ray.get(ref)
    except ray.exceptions.RayTaskError as e:
        cause = e.cause if isinstance(getattr(e, "cause", None), BaseException) else None
        if isinstance(cause, MedNNSError):
            raise cause from None
        raise
