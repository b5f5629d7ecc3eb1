"""Cold import of every function's handler module in the deployed layout (`make bench`).

What a Lambda cold start imports is the function asset (`lambdas/`, as
infra/constructs/python_function.py packages it), the public Powertools layer at the version in
cdk.json, and the runtime's boto3. This benchmark rebuilds that layout outside the dev venv:

- `runtime/`: boto3 and its closure at the pins of `lambdas/requirements/aws-sdk.txt` (the
  runtime ships its own boto3; the functions that bundle the SDK get these same files in their
  asset, so one copy stands for both);
- `layer/python/`: aws-lambda-powertools with its tracer extra (aws-xray-sdk, wrapt) and pydantic,
  at the pins of requirements/lock.txt, as Powertools' layer ships them;
- `asset/`: `lambdas/` without the patterns the packaging leaves out, copied fresh each run.

The wheels are manylinux for the CPython nearest the configured runtime that this machine has
(the layout is cached under `.bench/cold-start/`, keyed by the pins and that version). Every
module is imported in a fresh interpreter started with `-I -S` (no site-packages, no PYTHON*
variables, no user site), with only those three folders on `sys.path`, in Lambda's order.

Everything is compiled to bytecode first, as the runtime's own packages and the layer ship it.
The asset as the zip ships it today has no bytecode (packaging drops `*.pyc` and `/var/task` is
read-only, so Python compiles our modules again at every cold start): the third column measures
that, with `-B`.

Each figure is a ratio of CPU times (an import is CPU work once the files are in the page cache,
and CPU time moves less than wall time when other processes share the machine): in each of RUNS
rounds, `import boto3` alone and then the module's three variants, each in its own fresh process,
so a change in the machine's load moves both sides of a ratio; the median ratio over the rounds
is printed (goal: at most 1.5x with bytecode). Tracing off
is `POWERTOOLS_TRACE_DISABLED=true`; tracing on is what deployed functions run (X-Ray active,
`LAMBDA_TASK_ROOT` set, so Powertools enables its Tracer and patches botocore), and for a module
whose tracer is built at its first invocation, the import plus building it (what the first
request waits for before the handler's own work).
"""

from __future__ import annotations

import ast
import hashlib
import json
import os
import re
import shutil
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]

CACHE = ROOT / ".bench" / "cold-start"
RUNS = int(os.environ.get("ATELIER_BENCH_IMPORT_RUNS", "5"))
TARGET_RATIO = 1.5

# What the Powertools layer carries beyond Powertools itself (its tracer and parser extras).
LAYER_PACKAGES = (
    "aws-lambda-powertools",
    "aws-xray-sdk",
    "wrapt",
    "jmespath",
    "typing-extensions",
    "pydantic",
    "pydantic-core",
    "typing-inspection",
    "annotated-types",
)
# The handlers of infra/stacks/api.py, bedrock.py and constructs/model_lifecycle.py.
FUNCTION_MODULES = (
    "descriptions.handlers.api",
    "descriptions.handlers.uploads",
    "images.handlers.api",
    "diffusion.handlers.api",
    "customization.handlers.manifest",
    "customization.handlers.sweep",
    "lifecycle.handlers.check",
)


def catalog_modules() -> list[str]:
    """Every catalog step module (infra/stacks/catalog_functions.py deploys one function per
    step; the vision-LLM step only with that attribute source): each module with a `handler`."""
    folder = ROOT / "lambdas" / "catalog" / "handlers"
    return [
        f"catalog.handlers.{path.stem}"
        for path in sorted(folder.glob("*.py"))
        if re.search(r"^(def handler|handler = )", path.read_text(), re.MULTILINE)
    ]


def lock_pins() -> dict[str, str]:
    pins = {}
    for line in (ROOT / "requirements" / "lock.txt").read_text().splitlines():
        match = re.match(r"^([A-Za-z0-9_.-]+)==([^\s;]+)", line)
        if match:
            pins[re.sub(r"[-_.]+", "-", match.group(1)).lower()] = match.group(2)
    return pins


class LayoutUnavailableError(Exception):
    """The deployed layout cannot be built on this machine; the message says why."""


def runtime_python() -> Path:
    """The newest CPython here not newer than the configured runtime (python3.X in cdk.json)."""
    context = json.loads((ROOT / "cdk.json").read_text())["context"]
    runtime = context["atelier"]["defaults"]["lambdas"]["runtime"]
    wanted = tuple(int(part) for part in runtime.removeprefix("python").split("."))
    found = []
    for home in (Path.home() / ".pyenv" / "versions").glob("3.*"):
        version = tuple(int(part) for part in home.name.split(".")[:2])
        if (3, 12) <= version <= wanted and (home / "bin" / "python").exists():
            found.append((version, home / "bin" / "python"))
    if not found:
        raise LayoutUnavailableError(
            f"no CPython 3.12-{runtime.removeprefix('python')} under ~/.pyenv/versions"
            f" to stand in for {runtime}"
        )
    return max(found)[1]


def pip_target(python_version: str, target: Path, requirements: list[str]) -> None:
    subprocess.run(  # noqa: S603 - pip, fixed arguments and pinned requirements
        [
            sys.executable,
            "-m",
            "pip",
            "install",
            "--quiet",
            "--disable-pip-version-check",
            "--no-deps",
            "--only-binary=:all:",
            "--platform=manylinux2014_x86_64",
            "--implementation=cp",
            f"--python-version={python_version}",
            f"--target={target}",
            *requirements,
        ],
        check=True,
    )


def build_layout(python: Path) -> tuple[Path, Path, Path, Path]:
    """(asset, asset without bytecode, layer, runtime) folders: layer and runtime cached, the
    asset copied fresh."""
    version = subprocess.run(  # noqa: S603
        [str(python), "-c", "import sys; print('%d.%d' % sys.version_info[:2])"],
        check=True,
        capture_output=True,
        text=True,
    ).stdout.strip()
    pins = lock_pins()
    layer_requirements = [f"{name}=={pins[name]}" for name in LAYER_PACKAGES]
    sdk_requirements = [
        line.strip()
        for line in (ROOT / "lambdas" / "requirements" / "aws-sdk.txt").read_text().splitlines()
        if line.strip() and not line.startswith("#")
    ]
    pinned = "\n".join(layer_requirements + sdk_requirements)
    key = f"py{version}-{hashlib.sha256(pinned.encode()).hexdigest()[:12]}"
    home = CACHE / key
    layer, runtime, asset = home / "layer" / "python", home / "runtime", home / "asset"
    if not (home / "done").exists():
        shutil.rmtree(home, ignore_errors=True)
        print(f"building the deployed layout for Python {version} in {home} ...", flush=True)
        pip_target(version, layer, layer_requirements)
        pip_target(version, runtime, sdk_requirements)
        for folder in (layer, runtime):
            subprocess.run(  # noqa: S603
                [str(python), "-m", "compileall", "-q", "-j0", str(folder)], check=True
            )
        (home / "done").write_text(pinned + "\n")
    source = home / "asset-source"
    for folder in (asset, source):
        shutil.rmtree(folder, ignore_errors=True)
        shutil.copytree(
            ROOT / "lambdas",
            folder,
            ignore=shutil.ignore_patterns(*ignored_source_patterns(), "requirements"),
        )
    subprocess.run([str(python), "-m", "compileall", "-q", "-j0", str(asset)], check=True)  # noqa: S603
    return asset, source, layer, runtime


def ignored_source_patterns() -> tuple[str, ...]:
    """infra.constructs.local_bundling.IGNORED_SOURCE_PATTERNS, read without importing the CDK."""
    source = (ROOT / "infra" / "constructs" / "local_bundling.py").read_text()
    match = re.search(r"^IGNORED_SOURCE_PATTERNS = (\(.*?\))$", source, re.MULTILINE)
    if match is None:
        sys.exit("IGNORED_SOURCE_PATTERNS moved: update benchmarks/cold_start_bench.py")
    patterns: tuple[str, ...] = ast.literal_eval(match.group(1))
    return patterns


def import_seconds(
    python: Path, paths: list[Path], module: str, *, tracing: bool, source_only: bool = False
) -> float:
    """CPU seconds of `import module` in a fresh `-I -S` interpreter (plus building the
    function's tracer, when tracing is on and the module leaves that to its first invocation)."""
    build_tracer = (
        "import shared.telemetry as t; t.get_tracer(); " if tracing and module != "boto3" else ""
    )
    code = (
        f"import sys; sys.path[:0] = {[str(path) for path in paths]!r}; "
        "import time; started = time.process_time(); "
        f"import {module}; {build_tracer}print(time.process_time() - started)"
    )
    environment = {
        "PATH": os.environ.get("PATH", "/usr/bin:/bin"),
        "HOME": tempfile.gettempdir(),
        "AWS_REGION": "us-east-1",
        "AWS_DEFAULT_REGION": "us-east-1",
        "AWS_LAMBDA_FUNCTION_NAME": "bench",
        "LAMBDA_TASK_ROOT": str(paths[0]),
        "ATELIER_STAGE": "dev",
        "POWERTOOLS_SERVICE_NAME": "bench",
        "POWERTOOLS_METRICS_NAMESPACE": "AtelierBench",
        "POWERTOOLS_LOG_LEVEL": "WARNING",
        **({} if tracing else {"POWERTOOLS_TRACE_DISABLED": "true"}),
    }
    # -B: /var/task is read-only, so Python can never cache the asset's bytecode there.
    flags = ["-I", "-S", *(["-B"] if source_only else [])]
    output = subprocess.run(  # noqa: S603 - the stand-in runtime and a fixed module name
        [str(python), *flags, "-c", code],
        check=True,
        capture_output=True,
        text=True,
        cwd=tempfile.gettempdir(),
        env=environment,
    ).stdout
    return float(output.strip().splitlines()[-1])


def ratios(
    python: Path, asset: Path, source: Path, others: list[Path], module: str
) -> tuple[list[float], float]:
    """Medians over RUNS rounds of the module's ratios to `import boto3` measured in the same
    round (tracing off, tracing on, asset without bytecode), so the load of other processes
    on the machine moves numerator and denominator together; and its median CPU seconds."""
    rounds: list[list[float]] = []
    seconds = []
    for _ in range(RUNS):
        baseline = import_seconds(python, [asset, *others], "boto3", tracing=False)
        off = import_seconds(python, [asset, *others], module, tracing=False)
        on = import_seconds(python, [asset, *others], module, tracing=True)
        plain = import_seconds(python, [source, *others], module, tracing=False, source_only=True)
        rounds.append([off / baseline, on / baseline, plain / baseline])
        seconds.append(off)
    medians = [statistics.median(column) for column in zip(*rounds, strict=True)]
    return medians, statistics.median(seconds)


def main() -> int:
    try:
        python = runtime_python()
        asset, source, layer, runtime = build_layout(python)
    except (LayoutUnavailableError, subprocess.CalledProcessError) as error:
        # The other benchmarks of `make bench` still run; this one says why it has no figures.
        print(f"cold import in the deployed layout: SKIPPED, {error}")
        return 0
    others = [layer, runtime]
    modules = [*FUNCTION_MODULES, *catalog_modules()]
    boto3_seconds = statistics.median(
        import_seconds(python, [asset, *others], "boto3", tracing=False) for _ in range(RUNS)
    )
    print(
        f"cold import in the deployed layout ({python.parent.parent.name} for the configured "
        f"runtime, -I -S), CPU time, each ratio the median of {RUNS} rounds against "
        f"`import boto3` in the same round (boto3 alone: {boto3_seconds * 1000:.0f} ms):"
    )
    print(f"  {'module':36} {'tracing off':>12} {'tracing on':>12} {'asset w/o .pyc':>15}")
    worst = 0.0
    for module in modules:
        (off, on, plain), seconds = ratios(python, asset, source, others, module)
        worst = max(worst, off)
        print(
            f"  {module:36} {off:11.2f}x {on:11.2f}x {plain:14.2f}x"
            f"   ({seconds * 1000:.0f} ms, tracing off)",
            flush=True,
        )
    print(f"  worst, tracing off, bytecode: {worst:.2f}x (goal <= {TARGET_RATIO}x)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
