"""The fork rehearsal: what a user who forks the template does first, on data sets it never saw.

For each data set below, in a scratch copy of the repository (its git-tracked files, as a
clone has them): write the data file, edit params.yaml as docs/training.md's "Bring your own
data" says, `dvc repro`, start the service as the image does, predict a record taken from the
data over loopback HTTP, and check GET /model (target, task, classes, input schema), the drift
profile and that ONNX serves (every data set's estimator is one skl2onnx converts). Two
data sets, one per task, also run the template's own tests there, `pytest -m "not
example_data"`, then edit serving/deployment/cdk.json as a fork does and run the deployment
tests, which must follow.

    python -m bench.fork [--only cars] [--keep]     # from serving/; `make fork-test`

The data come only from what packages ship (vega_datasets' local data, scikit-learn's bundled
loaders): nothing is downloaded. Exits non-zero when any check of any data set fails.
"""

from __future__ import annotations

import argparse
import json
import math
import re
import shutil
import subprocess
import sys
import tempfile
import textwrap
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pandas as pd
import yaml
from ruamel.yaml import YAML
from ruamel.yaml.comments import CommentedSeq
from sklearn import datasets
from vega_datasets import local_data  # type: ignore[import-untyped]

from bench import imagecmd, procs

REPO = imagecmd.SERVING_DIR.parent
DOCS = REPO / "docs" / "training.md"
DOCS_SECTION = "## Bring your own data"


def _sklearn(name: str) -> Callable[[], pd.DataFrame]:
    return lambda: getattr(datasets, name)(as_frame=True).frame


@dataclass(frozen=True)
class DataSet:
    name: str
    load: Callable[[], pd.DataFrame]
    params: dict[str, dict[str, Any]]
    """The params.yaml keys the fork sets, per block; a mapping merges into the one there."""
    covers: str
    dvc_add: bool = False
    """Commit the file with `dvc add`, as the docs suggest for large files."""
    dates: tuple[str, ...] = ()
    """Its columns of ISO date text, which the service must take as dates."""
    run_tests: bool = False

    @property
    def file(self) -> str:
        """Where the fork puts the data, relative to the repository root."""
        return str(self.params["prepare"]["source"])


DATA_SETS = (
    DataSet(
        name="cars",
        load=local_data.cars,
        params={
            "prepare": {"source": "data/cars.csv", "target": "Origin", "drop_columns": ["Name"]},
            # Two thirds of the cars are American: logistic regression beats that by ~0.11.
            "evaluate": {"min_improvement_over_baseline": 0.05},
        },
        covers="vega_datasets cars: string multiclass target, missing numbers, a date-string "
        "column (Year), a high-cardinality identifier dropped (Name)",
        dates=("Year",),
        run_tests=True,
    ),
    DataSet(
        name="breast_cancer",
        load=_sklearn("load_breast_cancer"),
        params={
            "prepare": {
                "source": "data/breast_cancer.parquet",
                "target": "target",
                "drop_columns": [],
            },
            "train": {
                "estimator": "sklearn.ensemble.GradientBoostingClassifier",
                "hyperparameters": {
                    "sklearn.ensemble.GradientBoostingClassifier": {"n_estimators": 50}
                },
            },
        },
        covers="sklearn load_breast_cancer: binary integer target, names with spaces, "
        "gradient boosting by import path (served through ONNX)",
        dvc_add=True,
    ),
    DataSet(
        name="wine",
        load=_sklearn("load_wine"),
        params={
            "prepare": {"source": "data/wine.csv", "target": "target", "drop_columns": []},
            "train": {
                "estimator": "sklearn.ensemble.ExtraTreesClassifier",
                "hyperparameters": {"sklearn.ensemble.ExtraTreesClassifier": {"n_estimators": 50}},
            },
        },
        covers="sklearn load_wine: multiclass integer target, a name with a slash, an "
        "estimator by import path (a tree ensemble, served through ONNX)",
    ),
    DataSet(
        name="diabetes",
        load=_sklearn("load_diabetes"),
        params={
            "prepare": {
                "source": "data/diabetes.csv",
                "target": "target",
                "drop_columns": [],
                "task": "regression",
            },
            "evaluate": {"min_improvement_over_baseline": 0.1},
            "compare": {"metrics": ["rmse", "r2"]},
        },
        covers="sklearn load_diabetes: regression target, the task's default estimator",
        run_tests=True,
    ),
)


# What a fork changes in cdk.json's context: its names, a larger task, more of them, slower
# health checks, longer retention, its own alarm thresholds; and what it switches: its domain,
# an alarm e-mail, API keys in a secret it made, operational paths public.
FORK_DEPLOYMENT = {
    "domainName": "api.acme.dev",
    "hostedZoneId": "Z0ACME",
    "hostedZoneName": "acme.dev",
    "alarmEmail": "oncall@acme.dev",
    "apiKeysSecretName": "acme/forecast-keys",
    "publicOperationalEndpoints": True,
    "stackName": "AcmeForecast",
    "serviceName": "forecast-api",
    "metricsNamespace": "Acme/Forecast",
    "cpu": 1024,
    "memoryMiB": 2048,
    "desiredCount": 3,
    "minCapacity": 3,
    "maxCapacity": 6,
    "healthCheckIntervalSeconds": 15,
    "logRetentionDays": 90,
    "alarmPeriodSeconds": 120,
    "target5xxRatePercent": 2,
    "latencyP99Milliseconds": 500,
}
DEPLOYMENT_TESTS = "serving/tests/deployment"


class CheckFailed(AssertionError):
    pass


def check(condition: bool, message: str) -> None:
    if not condition:
        raise CheckFailed(message)


@dataclass
class Outcome:
    name: str
    seconds: float = 0.0
    backend: str = "-"
    error: str | None = None
    notes: list[str] = field(default_factory=list)


def documented_keys() -> set[str]:
    """The params.yaml keys docs/training.md's swap steps name: `block.key` in the text, or
    under their block in a YAML example."""
    text = DOCS.read_text(encoding="utf-8")
    check(DOCS_SECTION in text, f"{DOCS.name}: no {DOCS_SECTION!r} section")
    section = text.split(DOCS_SECTION, 1)[1].split("\n## ", 1)[0]
    keys = set(re.findall(r"`([a-z_]+\.[a-z_]+)[.:`]", section))
    for example in re.findall(r"```yaml\n(.*?)```", section, flags=re.S):
        for block, settings in (yaml.safe_load(textwrap.dedent(example)) or {}).items():
            keys.update(f"{block}.{key}" for key in settings or {})
    return keys


def scratch_copy(destination: Path) -> None:
    """The repository's tracked files as they are in the working tree, committed to a new
    git repository (DVC needs one), as a fresh clone of a fork has them."""
    for name in filter(None, git(REPO, "ls-files", "-z").split("\0")):
        source = REPO / name
        if source.exists() or source.is_symlink():
            (destination / name).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(source, destination / name, follow_symlinks=False)
    git(destination, "init", "--quiet")
    git(destination, "add", "--all")
    git(destination, "commit", "--quiet", "--no-verify", "-m", "the fork")


def git(cwd: Path, *args: str) -> str:
    identity = ["-c", "user.name=fork-test", "-c", "user.email=fork-test@localhost"]
    done = subprocess.run(["git", *identity, *args], cwd=cwd, check=True, capture_output=True)
    return done.stdout.decode()


def run(argv: list[str], cwd: Path, log: Path) -> None:
    """Run a step of the rehearsal; on failure, its output's last lines are the message."""
    with log.open("ab") as out:
        out.write(f"$ {' '.join(argv)}\n".encode())
        out.flush()
        result = subprocess.run(argv, cwd=cwd, env=tool_env(), stdout=out, stderr=out, check=False)
    if result.returncode:
        tail = log.read_text(errors="replace").splitlines()[-15:]
        raise CheckFailed(f"`{' '.join(argv)}` exited {result.returncode}:\n" + "\n".join(tail))


def tool_env(extra: dict[str, str] | None = None) -> dict[str, str]:
    """This environment's tools first on PATH; nothing of the caller's service settings."""
    env = procs.tool_env().items()
    kept = {k: v for k, v in env if not k.startswith("SERVICE_") and k != "PYTHONPATH"}
    # The service image on this machine holds the template's model, not the fork's: an image
    # that does not exist makes the tests that would run it (the rollout's launcher) start
    # the scratch copy's own service as processes instead.
    kept["CONTAINER_IMAGE"] = "localhost/prediction-service:fork-rehearsal-has-no-image"
    return {**kept, **(extra or {})}


def edits(root: Path) -> str:
    """The files the swap changed in the scratch copy, with the lines of the changed ones."""
    git(root, "add", "--all")
    changes = []
    for line in git(root, "diff", "--cached", "--numstat").splitlines():
        added, removed, name = line.split("\t", 2)
        changes.append(f"{name} (+{added} -{removed})" if added != "-" else f"{name} (binary)")
    return ", ".join(changes)


def write_data(frame: pd.DataFrame, path: Path) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    if path.suffix == ".csv":
        frame.to_csv(path, index=False)
    else:
        frame.to_parquet(path, index=False)


def swap_data(dataset: DataSet, root: Path, frame: pd.DataFrame) -> None:
    """The documented steps: the file in the repository, the params that point at it."""
    write_data(frame, root / dataset.file)
    yaml = YAML()  # round trip: the comments and the order stay, as in a hand edit
    # ...and the untouched lines too: null stays `null`, a new list is written `[a, b]`.
    yaml.representer.add_representer(
        type(None), lambda r, _: r.represent_scalar("tag:yaml.org,2002:null", "null")
    )
    params = yaml.load(root / "params.yaml")
    merge(params, dataset.params)
    yaml.dump(params, root / "params.yaml")


def merge(into: dict[str, Any], changes: dict[str, Any]) -> None:
    for key, value in changes.items():
        if isinstance(value, dict) and isinstance(into.get(key), dict):
            merge(into[key], value)
        elif isinstance(value, list):
            into[key] = CommentedSeq(value)
            into[key].fa.set_flow_style()
        else:
            into[key] = value


def edit_deployment(root: Path) -> None:
    """Set FORK_DEPLOYMENT in the scratch copy's cdk.json, as a fork edits it by hand."""
    path = root / "serving" / "deployment" / "cdk.json"
    config = json.loads(path.read_text(encoding="utf-8"))
    config["context"].update(FORK_DEPLOYMENT)
    path.write_text(json.dumps(config, indent=2) + "\n", encoding="utf-8")


def record_from(frame: pd.DataFrame, features: list[str]) -> dict[str, Any]:
    """The first row of the data with every feature present, as JSON gives it."""
    complete = frame[features].dropna()
    check(not complete.empty, "no row of the data has every feature")
    rows = complete.head(1).to_json(orient="records", date_format="iso")
    return dict(json.loads(rows)[0])


def get_json(port: int, path: str) -> Any:
    status, body = procs.request(port, "GET", path)
    check(status == 200, f"GET {path}: {status} {body[:300]!r}")
    return json.loads(body)


def check_service(
    dataset: DataSet, root: Path, frame: pd.DataFrame, outcome: Outcome, log: Path
) -> None:
    """Serve the trained model as the image does and check it over loopback HTTP."""
    prepare = dataset.params["prepare"]
    target, task = prepare["target"], prepare.get("task", "classification")
    data = root / "serving" / "app" / "data"
    export = json.loads((data / "onnx_export.json").read_text())
    # Every data set's estimator is one skl2onnx converts: the slow path is a failure.
    check(export["status"] == "exported", f"ONNX not exported: {export.get('reason')}")
    port = procs.free_port()
    env = tool_env({"SERVICE_BIND": f"127.0.0.1:{port}", "SERVICE_WORKERS": "1"})
    argv = [sys.executable, "-m", "bench.imagecmd"]
    with procs.running(argv, root / "serving", env, log=log.with_suffix(".serve.log")) as server:
        procs.wait_ok(server, port, "GET", "/ready", timeout=90)
        model = get_json(port, "/model")
        features = [f for f in frame.columns if f != target and f not in prepare["drop_columns"]]
        schema = model["input_schema"] or {}
        described = [f["name"] for f in schema.get("features", [])]
        check(described == features, f"/model input_schema features {described} != {features}")
        check(model["target"] == target, f"/model target {model['target']!r} != {target!r}")
        check(model.get("task", "classification") == task, f"/model task {model.get('task')!r}")
        classes = sorted(map(str, frame[target].dropna().unique()))
        if task == "classification":
            check(sorted(model["classes"]) == classes, f"/model classes {model['classes']}")
        else:
            check(model["classes"] == [], f"regression, yet /model classes {model['classes']}")

        profile = model["reference_profile"]
        check(profile is not None, "/model has no reference_profile: no drift is counted")
        profiled = [f["name"] for f in profile["features"]]
        check(profiled == features, f"drift profile features {profiled} != {features}")
        check(profile["target"] == target, f"drift profile target {profile['target']!r}")
        if task == "classification":
            check(sorted(profile["class_priors"]) == classes, "drift profile class priors")

        outcome.backend = model["backend"]
        check(model["backend"] == "onnx", f"backend {model['backend']!r}, yet ONNX was exported")

        record = record_from(frame, features)
        check_dates(dataset, port, schema, profile, record)
        status, body = procs.request(port, "POST", "/predict", json.dumps(record).encode())
        check(status == 200, f"POST /predict {record}: {status} {body[:400]!r}")
        answer = json.loads(body)
        check(answer["model_version"] == model["model_version"], "model_version differs")
        prediction = answer["prediction"]
        if task == "classification":
            check(prediction in classes, f"prediction {prediction!r} not one of {classes}")
        else:
            check(
                isinstance(prediction, float | int) and math.isfinite(prediction),
                f"regression prediction {prediction!r} is not a finite number",
            )
            check("probabilities" not in answer, "a regression answer carries probabilities")


def check_dates(
    dataset: DataSet,
    port: int,
    schema: dict[str, Any],
    profile: dict[str, Any],
    record: dict[str, Any],
) -> None:
    """The date text columns, and only they, are date features of the schema and the drift
    profile, and a day that does not exist is a 422 naming the field."""
    for described in (schema, profile):
        dated = sorted(f["name"] for f in described["features"] if f["type"] == "date")
        check(dated == sorted(dataset.dates), f"date features {dated} != {list(dataset.dates)}")
    for name in dataset.dates:
        check(isinstance(record[name], str), f"{name}: the data's value is not text")
        bad = {**record, name: f"{record[name][:4]}-02-30"}
        status, body = procs.request(port, "POST", "/predict", json.dumps(bad).encode())
        detail = json.loads(body).get("detail") if status == 422 else None
        check(
            detail is not None and detail[0]["loc"] == ["body", name],
            f"POST /predict with {name} {bad[name]!r}: {status} {body[:300]!r}, not a 422 "
            "naming the field",
        )


def check_retrains_on_data_edit(
    dataset: DataSet, root: Path, frame: pd.DataFrame, log: Path
) -> None:
    """An edit of the data file (a row fewer) makes `prepare` out of date: `dvc repro` would
    retrain rather than ship the old model."""
    write_data(frame.iloc[:-1], root / dataset.file)
    status = subprocess.run(
        ["dvc", "status", "--json", "prepare"],
        cwd=root,
        env=tool_env(),
        capture_output=True,
        text=True,
        check=False,
    )
    with log.open("a", encoding="utf-8") as out:
        out.write(
            f"$ dvc status --json prepare (after an edit of {dataset.file})\n{status.stdout}\n"
        )
    check(status.returncode == 0, f"dvc status: {status.stderr[-500:]}")
    check(
        "prepare" in json.loads(status.stdout or "{}"),
        f"editing {dataset.file} does not make prepare out of date",
    )


def rehearse(dataset: DataSet, pytest_paths: list[str], keep: bool) -> Outcome:
    outcome = Outcome(dataset.name)
    started = time.perf_counter()
    root = Path(tempfile.mkdtemp(prefix=f"fork-test-{dataset.name}-")).resolve()
    log = root.with_suffix(".log")
    try:
        missing = {f"{b}.{k}" for b, ks in dataset.params.items() for k in ks} - documented_keys()
        check(not missing, f"{DOCS.name} does not say to set {sorted(missing)}")
        scratch_copy(root)
        frame = dataset.load()
        swap_data(dataset, root, frame)
        if dataset.dvc_add:
            run(["dvc", "add", dataset.file], root, log)
        outcome.notes.append("fork edits: " + edits(root))
        # What the service and the request see: the file as read back (dates are strings).
        reader = pd.read_csv if dataset.file.endswith(".csv") else pd.read_parquet
        frame = reader(root / dataset.file)
        run(["dvc", "repro"], root, log)
        check_service(dataset, root, frame, outcome, log)
        if dataset.run_tests:
            pytest = [sys.executable, "-m", "pytest", "-q", "-m", "not example_data"]
            run([*pytest, *pytest_paths], root, log)
            edit_deployment(root)
            run([*pytest, DEPLOYMENT_TESTS], root, log)
            outcome.notes.append(f"cdk.json edited ({', '.join(FORK_DEPLOYMENT)}): tests pass")
        check_retrains_on_data_edit(dataset, root, frame, log)
    except Exception as error:  # every failure is reported, per data set
        outcome.error = (
            f"{type(error).__name__}: {error}" if not isinstance(error, CheckFailed) else str(error)
        )
    outcome.seconds = time.perf_counter() - started
    if outcome.error is None and not keep:
        shutil.rmtree(root)
        log.unlink(missing_ok=True)
        log.with_suffix(".serve.log").unlink(missing_ok=True)
    else:
        outcome.notes.append(f"scratch copy kept: {root} (log {log})")
    return outcome


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0] if __doc__ else None)
    parser.add_argument("--only", action="append", choices=[d.name for d in DATA_SETS])
    parser.add_argument("--keep", action="store_true", help="keep the scratch copies")
    parser.add_argument(
        "--pytest-paths",
        default="training/tests serving/tests/app",
        help="the tests run in the scratch copy (the Makefile passes CI_MODEL_TESTS)",
    )
    args = parser.parse_args()
    outcomes = []
    total = time.perf_counter()
    for dataset in DATA_SETS:
        if args.only and dataset.name not in args.only:
            continue
        print(f"==> {dataset.name}: {dataset.covers}", flush=True)
        outcome = rehearse(dataset, args.pytest_paths.split(), args.keep)
        verdict = "FAILED" if outcome.error else "passed"
        print(f"    {verdict} in {outcome.seconds:.0f} s, backend {outcome.backend}", flush=True)
        for line in ([outcome.error] if outcome.error else []) + outcome.notes:
            print("    " + line.replace("\n", "\n    "), flush=True)
        outcomes.append(outcome)
    failed = [o.name for o in outcomes if o.error]
    print(
        f"fork rehearsal: {len(outcomes) - len(failed)} of {len(outcomes)} data sets passed "
        f"in {time.perf_counter() - total:.0f} s"
        + (f"; failed: {', '.join(failed)}" if failed else "")
    )
    sys.exit(1 if failed else 0)


if __name__ == "__main__":
    main()
