"""The whole DVC pipeline, run for real in a scratch copy of the repository.

Covers what only the assembled pipeline shows: `dvc repro` produces every artifact,
training is deterministic, the baseline gate stops a bad model, and the artifacts make a
byte-identical round trip through an S3 remote (moto's S3 server on a loopback port).
"""

from __future__ import annotations

import hashlib
import json
import shutil
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import boto3
import pytest
import yaml

from bench import procs
from training import paths
from training.data import BUNDLED_SOURCE
from training.params import read_params
from training.tasks import GATED

pytestmark = pytest.mark.slow

# What a fresh clone holds that the pipeline reads; everything else is produced.
COPIED = ["training", "serving/app", "data", "dvc.yaml", "params.yaml", ".dvcignore"]
ARTIFACTS = [
    "model.joblib",
    "model_metadata.json",
    "reference_profile.json",
    "metrics.json",
    "report.md",
    "test_predictions.csv",
]
BUCKET = "dvc-roundtrip"


def run(
    cmd: list[str], cwd: Path, env: dict[str, str] | None = None
) -> subprocess.CompletedProcess[str]:
    result = subprocess.run(cmd, cwd=cwd, env=env, capture_output=True, text=True, timeout=300)
    if result.returncode != 0:
        pytest.fail(
            f"{' '.join(cmd)} exited {result.returncode}:\n{result.stdout}\n{result.stderr}"
        )
    return result


def tool(name: str) -> str:
    """The tool installed beside this interpreter (the project's .venv)."""
    return str(Path(sys.executable).with_name(name))


@pytest.fixture(scope="module")
def workspace(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A git + DVC repository holding the pipeline's sources, trained once with `dvc repro`."""
    root = tmp_path_factory.mktemp("repo")
    for name in COPIED:
        source = paths.ROOT / name
        if source.is_dir():
            shutil.copytree(
                source, root / name, ignore=shutil.ignore_patterns("__pycache__", "data", "tests")
            )
        else:
            shutil.copy2(source, root / name)
    # The configured data, when it is a file of the repository (a fork's own).
    data = read_params(paths.PARAMS).prepare.source
    if data != BUNDLED_SOURCE and not Path(data).is_absolute():
        (root / data).parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(paths.ROOT / data, root / data)
    env = procs.tool_env()
    run(["git", "init", "-q"], root, env)
    run([tool("dvc"), "init", "-q"], root, env)
    shutil.copy2(paths.ROOT / ".dvc" / "config", root / ".dvc" / "config")
    run([tool("dvc"), "repro", "--quiet"], root, env)
    return root


def test_repro_again_is_a_no_op(workspace: Path) -> None:
    """Only `versions` is listed, as always run; its output, and so everything after it,
    is unchanged."""
    result = run([tool("dvc"), "status", "--json"], workspace, procs.tool_env())
    assert json.loads(result.stdout) == {"versions": ["always changed"]}
    before = (workspace / "dvc.lock").read_bytes()
    result = run([tool("dvc"), "repro"], workspace, procs.tool_env())
    assert "Running stage 'train'" not in result.stdout
    assert (workspace / "dvc.lock").read_bytes() == before


# Everything `dvc repro` writes that git tracks (beside the model, which dvc.lock records).
TRACKED = [
    "dvc.lock",
    *(f"serving/app/data/{name}" for name in ARTIFACTS if name != "model.joblib"),
]
TRACKED.append("serving/app/data/onnx_export.json")


def _outputs(root: Path) -> dict[str, bytes]:
    return {
        name: (root / name).read_bytes() for name in [*TRACKED, "serving/app/data/model.joblib"]
    }


def test_the_checkout_holds_what_its_pipeline_reproduces(workspace: Path) -> None:
    """The committed outputs (or the ones `make test` just rebuilt) are a function of the
    sources alone: no time, commit or machine-dependent figure in them."""
    scratch, checkout = _outputs(workspace), _outputs(paths.ROOT)
    # dvc.lock lists the checkout's test files as deps nowhere; compare its stage outputs.
    assert [
        name for name in TRACKED if name != "dvc.lock" and scratch[name] != checkout[name]
    ] == []
    assert _lock_outputs(workspace) == _lock_outputs(paths.ROOT)


def _lock_outputs(root: Path) -> dict[str, Any]:
    lock = yaml.safe_load((root / "dvc.lock").read_text())
    return {
        name: [(out["path"], out["md5"]) for out in stage.get("outs", [])]
        for name, stage in lock["stages"].items()
    }


def test_retraining_with_another_blas_kernel_and_thread_count_rewrites_no_byte(
    workspace: Path,
) -> None:
    """What makes a fresh clone's `make serve` leave git clean on another CPU.

    OpenBLAS picks its kernels by CPU; forcing the SSE3 (Prescott) ones, single-threaded,
    stands in here for a different machine. (lbfgs, with BLAS in its fit, fails this.)
    """
    before = _outputs(workspace)
    env = procs.tool_env({"OPENBLAS_CORETYPE": "Prescott", "OPENBLAS_NUM_THREADS": "1"})
    for stage in ("train", "profile", "export", "evaluate"):
        run([tool("dvc"), "repro", "--force", "--single-item", "--quiet", stage], workspace, env)
    after = _outputs(workspace)
    estimator = read_params(workspace / "params.yaml").train.estimator
    assert [name for name in before if after[name] != before[name]] == [], (
        f"train.estimator {estimator or '(the default)'} fits other bytes under another BLAS "
        "kernel: another CPU retrains another model; docs/training.md, What is reproducible where"
    )


def test_model_that_does_not_beat_the_baseline_fails_training(workspace: Path) -> None:
    params_file = workspace / "params.yaml"
    original = params_file.read_text()
    params = yaml.safe_load(original)
    params["evaluate"]["min_improvement_over_baseline"] = 0.99
    params_file.write_text(yaml.safe_dump(params))
    try:
        result = subprocess.run(
            [sys.executable, "-m", "training.evaluate"],
            cwd=workspace,
            capture_output=True,
            text=True,
            timeout=300,
            env=procs.tool_env({"PYTHONPATH": str(workspace / "serving")}),  # as dvc.yaml
        )
    finally:
        params_file.write_text(original)
    assert result.returncode != 0
    gated = GATED[read_params(params_file).prepare.task][0]
    assert f"model rejected: {gated} improves on the baseline by" in result.stderr
    assert (
        "less than the required 0.9900 (params.yaml: evaluate.min_improvement_over_baseline)"
        in result.stderr
    )


@pytest.fixture
def s3_endpoint() -> Iterator[str]:
    """moto's S3 server on a free loopback port, stopped by its PID whatever happens."""
    port = procs.free_port()
    server = subprocess.Popen(
        [tool("moto_server"), "-H", "127.0.0.1", "-p", str(port)],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    endpoint = f"http://127.0.0.1:{port}"
    try:
        if not procs.wait_listening(port, server):
            pytest.fail("moto's S3 server did not start")
        boto3.client(
            "s3",
            endpoint_url=endpoint,
            region_name="us-east-1",
            aws_access_key_id="testing",
            aws_secret_access_key="testing",
        ).create_bucket(Bucket=BUCKET)
        yield endpoint
    finally:
        procs.stop(server)


def test_artifacts_round_trip_byte_for_byte_through_the_s3_remote(
    workspace: Path, s3_endpoint: str
) -> None:
    env = procs.tool_env(
        {
            "AWS_ACCESS_KEY_ID": "testing",
            "AWS_SECRET_ACCESS_KEY": "testing",
            "AWS_DEFAULT_REGION": "us-east-1",
            "AWS_EC2_METADATA_DISABLED": "true",
        }
    )
    dvc = tool("dvc")
    run(
        [dvc, "remote", "modify", "--local", "storage", "url", f"s3://{BUCKET}/dvc"], workspace, env
    )
    run([dvc, "remote", "modify", "--local", "storage", "endpointurl", s3_endpoint], workspace, env)
    model = workspace / "serving" / "app" / "data" / "model.joblib"
    original = model.read_bytes()

    run([dvc, "push"], workspace, env)
    shutil.rmtree(workspace / ".dvc" / "cache")
    model.unlink()
    shutil.rmtree(workspace / "training" / "data" / "prepared")
    run([dvc, "pull"], workspace, env)

    assert model.read_bytes() == original
    assert (workspace / "training" / "data" / "prepared" / "train.parquet").exists()
    metadata = json.loads((model.parent / "model_metadata.json").read_text())
    assert hashlib.sha256(model.read_bytes()).hexdigest() == metadata["model_sha256"]
