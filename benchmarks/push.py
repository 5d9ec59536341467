"""Push benchmark: regflow's copy engine against ``skopeo copy``, in the same run.

Starts a source registry and seeds a multi-layer image into it. Then, for each
round and each tool (alternating which goes first), it starts a fresh destination
registry with basic auth and times three copies into it:

- cold: into an empty registry (every blob moves);
- warm: the same image into the same repository again (nothing to move);
- cross-repo: into another repository of that registry, which holds the blobs
  elsewhere (both mount them: skopeo when its local blob-info cache knows where
  they are, regflow from the locations its engine remembers).

Prints medians and the regflow/skopeo ratios and writes every sample to
``.bench/push.json``. Run with ``python -m benchmarks.push``.

regflow is timed in-process (no interpreter start-up), skopeo as a process
(its start-up is included, a few tens of milliseconds). Peak RSS of skopeo is
its process's VmHWM, sampled while it runs; regflow's is the benchmark
process's own high-water mark, measured before and after its copies.
"""

from __future__ import annotations

import asyncio
import base64
import json
import os
import platform
import resource
import shutil
import statistics
import subprocess
import tempfile
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Annotated, Any

import httpx
import typer
from pydantic import SecretStr

from deploy.images import CACHED_TAG, cached_layout, copy_to_registry
from deploy.stack import BasicAuth, Registry, start_registry
from pusher_svc.engine import CopyEngine
from regflow.logging import configure_logging
from regflow.oci import Credentials, RegistryClient

REPO_ROOT = Path(__file__).resolve().parent.parent
BENCH_DIR = REPO_ROOT / ".bench"
MIB = 1024 * 1024
SOURCE_REPOSITORY = "bench/app"
DEFAULT_LAYERS_MIB = "40,30,25,20,15,12,10,8"

app = typer.Typer(add_completion=False)


@dataclass
class Samples:
    """Wall-clock seconds of repeated runs of one tool in one scenario."""

    seconds: list[float] = field(default_factory=list)

    @property
    def median(self) -> float:
        """The median of the samples."""
        return statistics.median(self.seconds)


SCENARIOS = ("cold", "warm", "cross_repo")


@dataclass
class Results:
    """Everything the benchmark measured."""

    image_bytes: int
    layers: int
    rounds: int
    blob_concurrency: int
    regflow: dict[str, Samples] = field(
        default_factory=lambda: {name: Samples() for name in SCENARIOS}
    )
    skopeo: dict[str, Samples] = field(
        default_factory=lambda: {name: Samples() for name in SCENARIOS}
    )
    regflow_requests: dict[str, int] = field(default_factory=dict)
    regflow_rss_before_mib: float = 0.0
    regflow_rss_peak_mib: float = 0.0
    skopeo_rss_peak_mib: float = 0.0


def _max_rss_mib(usage: resource.struct_rusage) -> float:
    # Linux reports ru_maxrss in KiB.
    return usage.ru_maxrss / 1024


def _vm_hwm_kib(pid: int) -> int:
    """Peak resident memory of ``pid`` so far (0 once it is gone)."""
    try:
        status = Path(f"/proc/{pid}/status").read_text(encoding="utf-8")
    except OSError:
        return 0
    for line in status.splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1])
    return 0


class SkopeoRunner:
    """Runs ``skopeo copy`` from the source registry, one process per copy."""

    def __init__(self, source: Registry, scratch: Path) -> None:
        self._source = source
        self._scratch = scratch
        self.peak_rss_mib = 0.0

    def _authfile(self, dest: Registry) -> Path:
        path = self._scratch / f"auth-{dest.port}.json"
        token = base64.b64encode(f"{dest.username}:{dest.password}".encode()).decode()
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "w", encoding="utf-8") as handle:
            json.dump({"auths": {dest.host: {"auth": token}}}, handle)
        return path

    def copy(self, digest: str, dest: Registry, repository: str) -> float:
        """Copy the image; return the wall-clock seconds of the skopeo process."""
        binary = shutil.which("skopeo")
        if binary is None:
            raise RuntimeError("skopeo is not installed (run `make setup`)")
        argv = [
            binary,
            "--insecure-policy",
            "copy",
            "--all",
            "--preserve-digests",
            "--src-tls-verify=false",
            "--dest-tls-verify=false",
            "--dest-authfile",
            str(self._authfile(dest)),
            "--quiet",
            f"docker://{self._source.host}/{SOURCE_REPOSITORY}@{digest}",
            f"docker://{dest.host}/{repository}:v1",
        ]
        started = time.perf_counter()
        process = subprocess.Popen(  # noqa: S603 - argv built above, no shell
            argv, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE
        )
        # rusage of a child is useless here: Linux carries the forking Python
        # process's peak RSS across exec. VmHWM of the new image is skopeo's own.
        peak_kib = 0
        while process.poll() is None:
            peak_kib = max(peak_kib, _vm_hwm_kib(process.pid))
            time.sleep(0.005)
        elapsed = time.perf_counter() - started
        stderr = process.stderr.read().decode() if process.stderr else ""
        if process.stderr:
            process.stderr.close()
        if process.returncode != 0:
            raise RuntimeError(f"skopeo failed ({process.returncode}): {stderr}")
        self.peak_rss_mib = max(self.peak_rss_mib, peak_kib / 1024)
        return elapsed


class RegflowRunner:
    """Runs the copy engine in this process, counting the HTTP requests it sends."""

    def __init__(self, source: Registry, concurrency: int) -> None:
        self.requests = 0
        self._http = httpx.AsyncClient(
            timeout=httpx.Timeout(120.0, connect=10.0),
            limits=httpx.Limits(max_connections=64, max_keepalive_connections=32),
            event_hooks={"request": [self._count]},
        )
        self._source = RegistryClient(source.host, insecure=True, http=self._http)
        self._engine = CopyEngine(blob_concurrency=concurrency)

    async def _count(self, _: httpx.Request) -> None:
        self.requests += 1

    async def copy(self, digest: str, dest: Registry, repository: str) -> float:
        """Copy the image; return the wall-clock seconds."""
        target = RegistryClient(
            dest.host,
            insecure=True,
            http=self._http,
            credentials=Credentials(
                username=dest.username or "",
                password=SecretStr(dest.password or ""),
            ),
        )
        started = time.perf_counter()
        await self._engine.copy_image(
            self._source, SOURCE_REPOSITORY, digest, target, repository, tags=["v1"]
        )
        return time.perf_counter() - started

    async def aclose(self) -> None:
        """Close the shared connection pool."""
        await self._http.aclose()


async def _measure(
    results: Results,
    digest: str,
    scratch: Path,
    regflow: RegflowRunner,
    skopeo: SkopeoRunner,
) -> None:
    results.regflow_rss_before_mib = _max_rss_mib(
        resource.getrusage(resource.RUSAGE_SELF)
    )
    for round_number in range(results.rounds):
        tools = ["regflow", "skopeo"]
        if round_number % 2:
            tools.reverse()
        for tool in tools:
            dest = await asyncio.to_thread(
                start_registry,
                scratch,
                f"dest-{tool}-{round_number}",
                auth=BasicAuth.generate(),
            )
            try:
                for scenario, repository in zip(
                    SCENARIOS, ("team/app", "team/app", "other/app"), strict=True
                ):
                    if tool == "regflow":
                        before = regflow.requests
                        elapsed = await regflow.copy(digest, dest, repository)
                        results.regflow_requests[scenario] = regflow.requests - before
                        results.regflow[scenario].seconds.append(elapsed)
                    else:
                        elapsed = await asyncio.to_thread(
                            skopeo.copy, digest, dest, repository
                        )
                        results.skopeo[scenario].seconds.append(elapsed)
            finally:
                await asyncio.to_thread(dest.stop)
    results.regflow_rss_peak_mib = _max_rss_mib(
        resource.getrusage(resource.RUSAGE_SELF)
    )
    results.skopeo_rss_peak_mib = skopeo.peak_rss_mib


def _print_table(results: Results) -> None:
    size = results.image_bytes / MIB
    lines = [
        (
            f"\nimage: {size:.1f} MiB in {results.layers} layers, {results.rounds} "
            f"rounds, regflow blob concurrency {results.blob_concurrency}\n"
        ),
        (
            f"{'scenario':<12}{'regflow (s)':>13}{'skopeo (s)':>13}{'ratio':>8}"
            f"{'regflow requests':>19}"
        ),
        "-" * 65,
    ]
    for scenario in SCENARIOS:
        ours = results.regflow[scenario].median
        theirs = results.skopeo[scenario].median
        lines.append(
            f"{scenario:<12}{ours:>13.3f}{theirs:>13.3f}{ours / theirs:>8.2f}"
            f"{results.regflow_requests.get(scenario, 0):>19}"
        )
    lines += [
        "",
        (
            f"cold throughput: regflow {size / results.regflow['cold'].median:.0f} "
            f"MiB/s, skopeo {size / results.skopeo['cold'].median:.0f} MiB/s"
        ),
        (
            f"peak RSS: regflow process {results.regflow_rss_peak_mib:.0f} MiB "
            f"(before copying {results.regflow_rss_before_mib:.0f} MiB), "
            f"skopeo {results.skopeo_rss_peak_mib:.0f} MiB"
        ),
    ]
    print("\n".join(lines))  # noqa: T201 - the benchmark reports to people


@app.command()
def main(
    rounds: Annotated[int, typer.Option(min=1, help="Runs per tool and scenario")] = 5,
    layers_mib: Annotated[
        str, typer.Option(help="Comma-separated layer sizes in MiB")
    ] = DEFAULT_LAYERS_MIB,
    concurrency: Annotated[
        int, typer.Option(min=1, help="regflow blob concurrency")
    ] = 4,
    output: Annotated[Path, typer.Option(help="Where to write the JSON results")] = (
        BENCH_DIR / "push.json"
    ),
) -> None:
    """Time regflow's copy engine against skopeo between two local registries."""
    configure_logging("benchmark", log_format="console", level="WARNING")
    layer_sizes = [int(float(part) * MIB) for part in layers_mib.split(",") if part]
    BENCH_DIR.mkdir(exist_ok=True)
    with tempfile.TemporaryDirectory(prefix="regflow-bench-") as scratch_name:
        scratch = Path(scratch_name)
        source = start_registry(scratch, "source")
        try:
            layout = cached_layout(BENCH_DIR / "images", layer_sizes=layer_sizes)
            digest = copy_to_registry(
                layout, CACHED_TAG, source.host, SOURCE_REPOSITORY
            )
            results = Results(
                image_bytes=sum(layer_sizes),
                layers=len(layer_sizes),
                rounds=rounds,
                blob_concurrency=concurrency,
            )

            async def run() -> None:
                regflow = RegflowRunner(source, concurrency)
                try:
                    await _measure(
                        results, digest, scratch, regflow, SkopeoRunner(source, scratch)
                    )
                finally:
                    await regflow.aclose()

            asyncio.run(run())
        finally:
            source.stop()

    _print_table(results)
    document: dict[str, Any] = {
        "machine": {"cpus": os.cpu_count(), "python": platform.python_version()},
        "medians": {
            f"{tool}_{scenario}_s": samples[scenario].median
            for tool, samples in (
                ("regflow", results.regflow),
                ("skopeo", results.skopeo),
            )
            for scenario in SCENARIOS
        },
        "ratios": {
            scenario: results.regflow[scenario].median / results.skopeo[scenario].median
            for scenario in SCENARIOS
        },
        **asdict(results),
    }
    output.parent.mkdir(parents=True, exist_ok=True)
    output.write_text(json.dumps(document, indent=2) + "\n", encoding="utf-8")
    print(f"\nwrote {output}")  # noqa: T201


if __name__ == "__main__":
    app()
