"""The Train workflow's pull-request steps, one subcommand each, run the same way off GitHub.

data-pointers  copy the .dvc files of the PR's head (checked out in build/ci/pr-head) into this
               base-branch checkout: data=tracked|none to $GITHUB_OUTPUT (the data job).
pull-data      `dvc pull` them into build/ci/data (data=pulled); without AWS credentials (a
               fork's PR) data=unavailable and a notice in the job summary.
report         build/ci/pr-comment.md, also in the job summary: the regression check, `dvc params
               diff` and `dvc metrics diff` against BASE_REF, Mermaid charts, the per-class,
               confusion and baseline tables, the training report; `dvc plots diff` as HTML
               in build/ci/plots.
gate           exit 1 when a metric of compare.metrics (params.yaml) is worse than BASE_REF's by
               more than compare.max_regression.

The data job holds credentials, so it runs the base branch's code and reads only the PR's .dvc
pointers. BASE_REF defaults to origin/main; values come from the environment. Importing this
needs only the standard library: data-pointers runs on any python3.
"""

from __future__ import annotations

import argparse
import csv
import json
import os
import shutil
import subprocess
import sys
from collections import Counter
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

DATA = Path("serving/app/data")
CI_DIR = Path("build/ci")
PR_HEAD, PR_DATA = CI_DIR / "pr-head", CI_DIR / "data"
COMMENT, PLOTS = CI_DIR / "pr-comment.md", CI_DIR / "plots"
MAX_REPORT_CHARS = 40_000  # GitHub refuses comments over 65,536 characters: report.md is cut
ROOT = Path(__file__).resolve().parents[2]  # `report` and `gate` read params.yaml as training does
Metrics = dict[str, Any]


class ReportError(Exception):
    """An input is missing or malformed; the message says which."""


def run(*argv: str) -> str:
    # No terminal: a command that asks for input (git's credentials) fails instead of waiting.
    done = subprocess.run(argv, input="", capture_output=True, text=True, check=False)
    if done.returncode != 0:
        raise ReportError(f"`{' '.join(argv[:4])}` failed: {done.stderr.strip()[-2000:]}")
    return done.stdout


def dvc(*args: str) -> str:
    return run(sys.executable, "-m", "dvc", *args).strip()  # in CI .venv/bin is not on PATH


def diff(*args: str) -> str:
    """`dvc <args> --md`; empty when it finds no change (dvc prints a header alone)."""
    table = dvc(*args, "--md")
    return table if len(table.splitlines()) > 2 else ""


def append(variable: str, text: str) -> None:
    """To the file GitHub Actions names in `variable` (GITHUB_OUTPUT, GITHUB_STEP_SUMMARY)."""
    if path := os.environ.get(variable):
        with Path(path).open("a", encoding="utf-8") as handle:
            handle.write(text)


def base_ref() -> str:
    ref = os.environ.get("BASE_REF") or "origin/main"
    try:
        run("git", "rev-parse", "--verify", f"{ref}^{{commit}}")
    except ReportError:
        raise ReportError(
            f"BASE_REF={ref} is not a commit here: fetch it or set BASE_REF"
        ) from None
    return ref


def at_base(ref: str, name: str) -> str | None:
    """The model file as `ref` has it, or None when it has no model yet."""
    try:
        return run("git", "show", f"{ref}:{(DATA / name).as_posix()}")
    except ReportError:
        return None


def metrics(ref: str) -> tuple[Metrics, Metrics | None]:
    """metrics.json of this PR and of `ref` (None: no model there yet)."""
    base = at_base(ref, "metrics.json")
    return json.loads((DATA / "metrics.json").read_text("utf-8")), json.loads(base or "null")


def scores(found: Metrics | None, block: str) -> Metrics:
    return ((found or {}).get(block) or {}).get("test") or {}


def table(header: Sequence[str], rows: Sequence[Sequence[object]]) -> str:
    lines = [header, ["---", *["---:"] * (len(header) - 1)], *rows]
    return "\n".join("| " + " | ".join(map(str, line)) + " |" for line in lines)


def verdict(new: Metrics, base: Metrics | None, params: Path, ref: str) -> tuple[bool, str]:
    """(passed, Markdown): the outcome and one row per test metric, the gated ones first."""
    if str(ROOT) not in sys.path:
        sys.path.insert(0, str(ROOT))
    from training.params import ParamsError, read_params
    from training.tasks import HIGHER_IS_BETTER, RELATIVE

    try:
        valid = read_params(params)
    except ParamsError as error:
        raise ReportError(str(error)) from error
    higher = HIGHER_IS_BETTER[valid.prepare.task]
    gated, limit = valid.compare.metrics or [], valid.compare.max_regression  # Params fills in None
    pr, main = ({m: v for m, v in scores(x, "model").items() if m in higher} for x in (new, base))
    if missing := [m for m in gated if m not in pr]:
        raise ReportError(f"the new metrics.json has no model.test.{missing[0]}")
    # How much worse than the base's, in each metric's direction (negative: better); an error
    # in the target's units (rmse...) has no fixed scale: a fraction of the base's value.
    scale = {m: (abs(main[m]) or 1.0) if m in RELATIVE else 1.0 for m in main}
    worse = {m: (main[m] - pr[m]) * (1 if higher[m] else -1) / scale[m] for m in pr if m in main}
    # Metrics are rounded when written: a change of exactly the limit is no failure.
    failed = [m for m in gated if worse.get(m, 0.0) > limit + 1e-9]
    rows = []
    for m in sorted(pr, key=lambda m: (m not in gated, m)):
        label = f"**{m}** (gated)" if m in gated else m
        row = [f"{label}, {'higher' if higher[m] else 'lower'} is better", "—", f"{pr[m]:.4f}", "—"]
        if m in main:
            word = "same" if abs(worse[m]) < 5e-5 else "worse" if worse[m] > 0 else "better"
            row[1], row[3] = f"{main[m]:.4f}", f"{pr[m] - main[m]:+.4f} ({word})"
        rows.append(row)
    than = f"worse than `{ref}`'s by more than {limit:g}"
    if not main:
        head = f"✅ **Check passed:** `{ref}` has no model yet, so nothing to compare with."
    elif failed:
        head = f"❌ **Check failed:** {', '.join(failed)} {than}"
    else:
        head = f"✅ **Check passed:** no gated metric {than}"
    header = ["Test metric", f"`{ref}`", "This PR", "Change"]
    return not failed, f"{head} (`compare` in `params.yaml`).\n\n{table(header, rows)}"


def chart(title: str, labels: Sequence[str], y_axis: str, *series: Sequence[float] | None) -> str:
    """A Mermaid xychart, which GitHub renders: this PR as bars, the base branch as a line."""
    names = json.dumps([label.replace('"', "'") for label in labels])
    lines = [f'title "{title}"', f"x-axis {names}", f"y-axis {y_axis}"]
    for kind, values in zip(("bar", "line"), series, strict=False):
        if values is not None:
            lines.append(f"{kind} [{', '.join(f'{v:.4g}' for v in values)}]")
    return "```mermaid\nxychart-beta\n  " + "\n  ".join(lines) + "\n```"


def per_class(new: Metrics, base: Metrics | None, ref: str) -> str:
    pr, main = (scores(m, "model").get("per_class") or {} for m in (new, base))
    keys = [(c, s) for c in sorted(pr) for s in ("precision", "recall")]
    pairs = [(pr[c][s], main.get(c, {}).get(s)) for c, s in keys]  # (this PR's, ref's or None)
    cells = [f"{n:.4f}" + ("" if o in (None, n) else f" ({o:.4f})") for n, o in pairs]
    rows = [[c, *cells[2 * i : 2 * i + 2]] for i, c in enumerate(sorted(pr))]
    title = f"Per class, test split: this PR (bars), {ref} (line)"
    labels = [f"{c} {s[0].upper()}" for c, s in keys]
    y_axis = '"P = precision, R = recall" 0 --> 1'
    line = [o or 0.0 for _, o in pairs] if main else None
    bars = chart(title, labels, y_axis, [n for n, _ in pairs], line)
    text = f"In brackets: `{ref}`'s value where it differs."
    table_ = table(["Class", "Precision", "Recall"], rows)
    return f"### Per class (test split)\n\n{bars}\n\n{text}\n\n{table_}" if pr else ""


Rows = list[tuple[str, str]]


def predictions(text: str | None, where: str) -> Rows | None:
    """(actual, predicted) of each row of test_predictions.csv."""
    if text is None:
        return None
    reader = csv.DictReader(text.splitlines())
    if not {"actual", "predicted"} <= set(reader.fieldnames or []):
        found = (reader.fieldnames or [])[:10]
        raise ReportError(f"{where}: expected the columns actual and predicted, found {found}")
    return [(row["actual"], row["predicted"]) for row in reader]


def confusion(new: Rows, base: Rows | None, ref: str) -> str:
    """A row per actual class: this PR's counts and, in brackets, the change from BASE_REF's."""
    classes = sorted({label for pair in [*new, *(base or [])] for label in pair})
    now, then = Counter(new), Counter(base if base is not None else new)

    def cell(a: str, p: str) -> str:
        return f"{now[a, p]}" + (f" ({d:+d})" if (d := now[a, p] - then[a, p]) else "")

    rows = [[f"**{a}**", *(cell(a, p) for p in classes)] for a in classes]
    right = f"{sum(now[c, c] for c in classes)} of {len(new)} test rows predicted right"
    if base is not None:
        right += f" (`{ref}`: {sum(then[c, c] for c in classes)} of {len(base)})"
    matrix = table(["actual \\ predicted", *classes], rows)
    text = f"In brackets: the change from `{ref}`."
    return f"### Confusion matrix (test split)\n\n{text}\n\n{matrix}\n\n{right}."


def residuals(new: Rows, base: Rows | None, ref: str) -> str:
    """Histogram of predicted - actual, in ten bins shared by this PR and the base branch."""
    import numpy as np

    pr, main = (np.array([float(p) - float(a) for a, p in rows or []]) for rows in (new, base))
    widest = float(np.abs(np.concatenate([pr, main])).max()) or 1.0
    edges = np.linspace(-widest, widest, 11)
    counts = [np.histogram(errors, edges)[0].tolist() for errors in (pr, main)]
    title = f"Residuals (predicted - actual), test split: this PR (bars), {ref} (line)"
    labels = [f"{v:.3g}" for v in (edges[:-1] + edges[1:]) / 2]
    bars = chart(title, labels, '"test rows"', counts[0], counts[1] if base else None)
    return f"### Residuals (test split)\n\n{bars}"


def comment(base_ref: str, metric_diff: str, param_diff: str) -> str:
    new, base = metrics(base_ref)
    ref = base_ref.removeprefix("origin/")
    _, check = verdict(new, base, Path("params.yaml"), ref)
    meta = json.loads((DATA / "model_metadata.json").read_text(encoding="utf-8"))
    hyper = meta.get("hyperparameters") or {}
    model = f"Model `{meta.get('model_version')}`: `{meta.get('estimator')}`" + (
        " with " + ", ".join(f"`{k}={hyper[k]}`" for k in sorted(hyper)) if hyper else ""
    )
    csv_file = DATA / "test_predictions.csv"
    rows = predictions(csv_file.read_text(encoding="utf-8"), str(csv_file)) or []
    base_rows = predictions(at_base(base_ref, csv_file.name), f"{ref}:{csv_file}")
    plot = residuals if meta.get("task") == "regression" else confusion
    pr, dummy = scores(new, "model"), scores(new, "baseline")
    numbers = sorted(m for m in pr if isinstance(dummy.get(m), int | float))  # not per_class
    baseline = [[m, f"{dummy[m]:.4f}", f"{pr[m]:.4f}"] for m in numbers]
    run_id = os.environ.get("GITHUB_RUN_ID")
    server, repo = os.environ.get("GITHUB_SERVER_URL"), os.environ.get("GITHUB_REPOSITORY")
    where = f"[this run's artifacts]({server}/{repo}/actions/runs/{run_id})" if run_id else PLOTS
    text = (DATA / "report.md").read_text(encoding="utf-8").strip()
    if len(text) > MAX_REPORT_CHARS:
        text = text[:MAX_REPORT_CHARS] + "\n\n*(cut here; the full report.md is in the PR)*"
    details = "<details><summary>{}</summary>\n\n{}\n\n</details>".format
    metrics_title = f"Every metric that changed (<code>dvc metrics diff {ref}</code>)"
    sections = [
        "## Model report",
        model + ".",
        check,
        "### Params changed (`dvc params diff`)",
        param_diff or f"None: the same params as `{ref}`.",
        details(metrics_title, metric_diff or "None."),
        per_class(new, base, ref),
        plot(rows, base_rows, ref) if rows else "",
        "### Against the baseline (same split; the report says which)",
        table(["Test metric", "Baseline", "This PR"], baseline),
        f"The DVC plots against `{ref}` (`dvc plots diff`, HTML): `plots` in {where}.",
        details("Training report (<code>report.md</code>)", text),
    ]  # fmt: skip
    return "\n\n".join(s for s in sections if s) + "\n"


def report() -> int:
    ref = base_ref()
    shutil.rmtree(PLOTS, ignore_errors=True)
    CI_DIR.mkdir(parents=True, exist_ok=True)
    with ThreadPoolExecutor() as pool:  # each DVC command spends seconds starting up
        plots = pool.submit(dvc, "plots", "diff", ref, "--out", str(PLOTS))
        metric_diff = pool.submit(diff, "metrics", "diff", ref, "--precision", "4")
        param_diff = pool.submit(diff, "params", "diff", ref)
        text = comment(ref, metric_diff.result(), param_diff.result())
        plots.result()
    COMMENT.write_text(text, encoding="utf-8", newline="\n")
    append("GITHUB_STEP_SUMMARY", text)
    print(f"wrote {COMMENT} and {PLOTS}/index.html")
    return 0


def gate() -> int:
    ref = base_ref()
    passed, text = verdict(*metrics(ref), Path("params.yaml"), ref.removeprefix("origin/"))
    print(text.replace("**", ""))
    return 0 if passed else 1


def pointers() -> list[str]:
    """Copy the .dvc files git tracks in the PR's head here; their paths."""
    listed = run("git", "-C", str(PR_HEAD), "ls-files", "-z", "--", "*.dvc")
    names = [name for name in listed.split("\0") if name]
    for name in names:
        Path(name).parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(PR_HEAD / name, name)
    return names


def data_pointers() -> int:
    found = pointers()
    print(f"DVC-tracked data in the PR: {', '.join(found) or 'none'}")
    append("GITHUB_OUTPUT", f"data={'tracked' if found else 'none'}\n")
    return 0


def pull_data() -> int:
    import yaml

    if not (found := pointers()):
        append("GITHUB_OUTPUT", "data=none\n")
    elif not os.environ.get("AWS_ACCESS_KEY_ID"):
        notice = (
            f"Not retrained: the data ({', '.join(found)}) is tracked by DVC and this run has no "
            "credentials to pull it (a pull request from a fork gets none; re-open it from a "
            "branch of this repository, or set AWS_DATA_ROLE_ARN)."
        )
        print(f"::notice::{notice}")
        append("GITHUB_STEP_SUMMARY", notice + "\n")
        append("GITHUB_OUTPUT", "data=unavailable\n")
    else:
        dvc("pull", *found)
        for pointer in map(Path, found):
            for out in yaml.safe_load(pointer.read_text(encoding="utf-8"))["outs"]:
                path = pointer.parent / out["path"]
                (PR_DATA / path).parent.mkdir(parents=True, exist_ok=True)
                copy = shutil.copytree if path.is_dir() else shutil.copy2
                copy(path, PR_DATA / path)
        append("GITHUB_OUTPUT", "data=pulled\n")
    return 0


STEPS = (data_pointers, pull_data, report, gate)
COMMANDS = {step.__name__.replace("_", "-"): step for step in STEPS}


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("command", choices=COMMANDS)
    try:
        return COMMANDS[parser.parse_args(argv).command]()
    except (ReportError, OSError) as error:
        print(f"error: {error}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
