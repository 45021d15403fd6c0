"""Where the Dask backends compute: an existing cluster (`dask_address`, e.g. a `dask scheduler`
with `dask worker`s on many machines), a cluster started for the run (`dask_cluster`: `local`
is a `distributed.LocalCluster`, `local-cuda` a `dask_cuda.LocalCUDACluster` with a worker per
GPU), or, with neither, dask's local threaded scheduler in this process."""
from __future__ import annotations

from typing import Any

from engine.config import check_dask
from engine.errors import ConfigError, HeadwaterError

# What each `dask_cluster` value starts (importable names, as prefect-dask's `cluster_class` takes).
CLUSTER_CLASSES = {"local": "distributed.LocalCluster", "local-cuda": "dask_cuda.LocalCUDACluster"}
UNREACHABLE_HINT = ("start one (`dask scheduler`, then `dask worker <address>` on each machine), "
                    "correct HEADWATER_DASK_ADDRESS (dask_address), or unset it to run on this machine")


class Cluster:
    """A `distributed.Client` to the cluster the settings name (and the cluster, if it started one),
    or none for dask's local scheduler."""

    def __init__(self, address: str | None = None, cluster: str | None = None) -> None:
        check_dask(address, cluster)
        self.address = address
        self.kind = cluster
        self.cluster: Any = None
        self.client: Any = None
        if address or cluster:
            self._start(address, cluster)

    def _start(self, address: str | None, cluster: str | None) -> None:
        try:
            from distributed import Client
        except ImportError as exc:
            raise ConfigError(f"a Dask cluster needs dask.distributed, which is not installed ({exc})",
                              'pip install "headwater[dask]"') from exc
        if address:
            try:
                self.client = Client(address)
            except (OSError, TimeoutError) as exc:  # refused, unresolvable, or no answer in time
                raise HeadwaterError(f"cannot reach the Dask scheduler at {address}: "
                                     f"{type(exc).__name__}: {exc}", UNREACHABLE_HINT, retryable=True) from exc
            return
        if cluster == "local-cuda":
            try:
                from dask_cuda import LocalCUDACluster
            except ImportError as exc:
                raise ConfigError(f"dask_cluster 'local-cuda' needs dask-cuda, which is not installed "
                                  f"({exc})", 'pip install "headwater[dask,gpu]" on a machine with '
                                  "NVIDIA GPUs") from exc
            self.cluster = LocalCUDACluster()  # one worker per visible GPU (CUDA_VISIBLE_DEVICES)
        else:
            from distributed import LocalCluster

            self.cluster = LocalCluster()  # a worker process per few cores of this machine
        try:
            self.client = Client(self.cluster)
        except BaseException:
            self.cluster.close()
            raise

    def compute(self, collection: Any) -> Any:
        """The collection's value, computed on the cluster (or dask's local scheduler)."""
        if self.client is None:
            return collection.compute()
        return collection.compute(scheduler=self.client)

    def partitions(self, frame: Any) -> list[Any]:
        """Each partition of a dask DataFrame or Series, computed on the cluster and brought back
        separately (on dask's local scheduler: computed whole, as one). Not `frame.compute()` on a
        cluster: that concatenates every partition into one on a worker first, so a result larger
        than a worker's memory limit gets the worker killed even when the client could hold it."""
        if self.client is None:
            return [frame.compute()]
        from distributed import futures_of

        # released when these futures are dropped on return (not cancelled: a cancel still in
        # flight would cancel the same keys if the same frame is computed again at once)
        futures = sorted(futures_of(self.client.persist(frame)), key=lambda f: f.key[1])  # (name, i)
        return self.client.gather(futures)

    def describe(self) -> str:
        """Where the work runs, in words."""
        if self.client is None:
            return "dask's local threaded scheduler"
        workers = len(self.client.scheduler_info(n_workers=-1).get("workers", {}))
        where = f"the scheduler at {self.address}" if self.address else \
            f"a new {CLUSTER_CLASSES[self.kind or 'local'].rsplit('.', 1)[1]} at {self.client.scheduler.address}"
        return f"{where} with {workers} worker{'s' if workers != 1 else ''}"

    def close(self) -> None:
        """Disconnect, and stop the cluster if it was started here; safe to call twice."""
        client, cluster, self.client, self.cluster = self.client, self.cluster, None, None
        if client is not None:
            client.close()
        if cluster is not None:
            cluster.close()
