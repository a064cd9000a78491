"""The Train workflow's pull-request steps, one subcommand each, run the same way off GitHub.

report       build/ci/pr-comment.md (also appended to the job summary): the verdict of the
             regression check, `dvc metrics diff` and `dvc params diff` against BASE_REF,
             Mermaid charts (GitHub renders them in the comment), the per-class table, the
             confusion matrix or residuals with their change, the baseline and the training
             report; `dvc plots diff` as HTML in build/ci/plots for the workflow artifact.
gate         exit 1 when a metric of params.yaml's compare.metrics is worse than BASE_REF's
             by more than compare.max_regression.
stage        copy dvc.lock and every `cache: false` output of dvc.yaml to build/ci/training-outputs.
commit-back  commit those onto the trained commit, push it to BRANCH (a fast-forward or
             nothing) and dispatch the Tests workflow there (a GITHUB_TOKEN push starts none).
post         create, or edit, the one comment of github-actions[bot] whose first line is MARKER.

BASE_REF (default origin/main) names the commit to compare with; values come from the
environment, never pasted into a shell. `stage`, `commit-back` and `post` need only the
standard library and git/gh, so the jobs without the project's environment run them.
"""

from __future__ import annotations

import argparse
import csv
import importlib
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

MARKER = "<!-- mlops-template:model-report -->"
DATA = Path("serving/app/data")
CI_DIR = Path("build/ci")
COMMENT = CI_DIR / "pr-comment.md"
PLOTS = CI_DIR / "plots"
STAGED = CI_DIR / "training-outputs"
TESTS_WORKFLOW = "tests.yml"
BOT = "github-actions[bot]"
BOT_EMAIL = "41898282+github-actions[bot]@users.noreply.github.com"
# GitHub refuses comments over 65,536 characters: the report is cut first.
MAX_REPORT_CHARS = 40_000
# The repository this file belongs to: `report` and `gate` read params.yaml with training's
# own model and metric directions (training/params.py, training/tasks.py), in the train job,
# which has the project's environment; `stage`, `commit-back` and `post` import nothing more.
ROOT = Path(__file__).resolve().parents[2]
RESIDUAL_BINS = 10


class ReportError(Exception):
    """An input is missing or malformed; the message says which."""


def run(*argv: str, stdin: str | None = None, check: bool = True) -> str:
    done = subprocess.run(argv, input=stdin, capture_output=True, text=True, check=False)
    if check and done.returncode != 0:
        raise ReportError(f"`{' '.join(argv[:4])}` failed: {done.stderr.strip()[-2000:]}")
    return done.stdout


def base_ref() -> str:
    ref = os.environ.get("BASE_REF") or "origin/main"
    if (
        subprocess.run(
            ["git", "rev-parse", "--verify", "--quiet", f"{ref}^{{commit}}"],
            capture_output=True,
            check=False,
        ).returncode
        != 0
    ):
        raise ReportError(f"BASE_REF={ref} is not a commit here: fetch it or set BASE_REF")
    return ref


def base_name(ref: str) -> str:
    return ref.removeprefix("origin/")


def at_base(ref: str, name: str) -> str | None:
    """The file as BASE_REF has it, or None when the base branch has no model yet."""
    done = subprocess.run(
        ["git", "show", f"{ref}:{(DATA / name).as_posix()}"],
        capture_output=True,
        text=True,
        check=False,
    )
    return done.stdout if done.returncode == 0 else None


def load_yaml(path: Path) -> Any:
    import yaml  # only the train job's steps read YAML, and it has the project's environment

    return yaml.safe_load(path.read_text(encoding="utf-8"))


def training(module: str) -> Any:
    if str(ROOT) not in sys.path:
        sys.path.insert(0, str(ROOT))
    return importlib.import_module(f"training.{module}")


def gate_config(params: Path) -> tuple[dict[str, bool], list[str], float]:
    """The task's test metrics with their direction (True: higher is better), the gated ones
    and the limit, as training validates params.yaml."""
    try:
        valid = training("params").read_params(params)
    except ValueError as error:  # training.params.ParamsError, naming the key
        raise ReportError(str(error)) from error
    directions = training("tasks").HIGHER_IS_BETTER[valid.prepare.task]
    return directions, list(valid.compare.metrics), float(valid.compare.max_regression)


def scores(metrics: dict[str, Any] | None, block: str, known: dict[str, bool]) -> dict[str, float]:
    test = ((metrics or {}).get(block) or {}).get("test") or {}
    return {k: float(v) for k, v in test.items() if k in known}


def verdict(
    new: dict[str, Any], base: dict[str, Any] | None, params: Path, name: str
) -> tuple[bool, str]:
    """(passed, Markdown): one row per test metric, the gated ones in bold with the limit."""
    higher, gated, limit = gate_config(params)
    pr, main = scores(new, "model", higher), scores(base, "model", higher)
    if missing := [m for m in gated if m not in pr]:
        raise ReportError(f"the new metrics.json has no model.test.{missing[0]}")
    # How much worse than the base's, each in its direction (negative: better); an error
    # without a fixed scale (rmse...) as a fraction of the base's value.
    relative = training("tasks").RELATIVE
    scale = {m: (abs(main[m]) or 1.0) if m in relative else 1.0 for m in main}
    worse = {m: (main[m] - pr[m]) * (1 if higher[m] else -1) / scale[m] for m in pr if m in main}
    # Metrics are rounded when written: a change of exactly the limit is not a failure.
    failed = [m for m in gated if worse.get(m, 0.0) > limit + 1e-9]
    ref = f"`{name}`"
    rows = ["| Test metric | " + ref + " | This PR | Change |", "|---|---:|---:|---:|"]
    for m in sorted(pr, key=lambda m: (m not in gated, m)):
        label = f"**{m}** (gated)" if m in gated else m
        direction = "higher is better" if higher[m] else "lower is better"
        change = "—"
        if m in worse:
            word = "same" if abs(worse[m]) < 5e-5 else "worse" if worse[m] > 0 else "better"
            change = f"{pr[m] - main[m]:+.4f} ({word})"
        old = f"{main[m]:.4f}" if m in main else "—"
        rows.append(f"| {label}, {direction} | {old} | {pr[m]:.4f} | {change} |")
    if not main:
        head = f"✅ **Check passed:** {ref} has no model yet, so nothing to compare with."
    elif failed:
        head = f"❌ **Check failed:** {', '.join(failed)} worse than {ref}'s by more than {limit:g}"
    else:
        head = f"✅ **Check passed:** no gated metric worse than {ref}'s by more than {limit:g}"
    head += " (`compare` in `params.yaml`)."
    return not failed, "\n".join([head, "", *rows])


def bars(title: str, labels: Sequence[str], pr: Sequence[float], main: Sequence[float] | None,
         y: str) -> str:  # fmt: skip
    """A Mermaid xychart (GitHub renders it): this PR as bars, the base branch as a line."""
    names = ", ".join('"' + label.replace('"', "'") + '"' for label in labels)
    series = [("bar", pr), *([("line", main)] if main is not None else [])]
    data = "".join(
        f"\n  {kind} [{', '.join(f'{v:.4g}' for v in values)}]" for kind, values in series
    )
    return (
        f'```mermaid\nxychart-beta\n  title "{title}"\n  x-axis [{names}]\n  y-axis {y}{data}\n```'
    )


def per_class(new: dict[str, Any], base: dict[str, Any] | None, ref: str) -> str:
    pr = new["model"].get("test", {}).get("per_class") or {}
    main = ((base or {}).get("model") or {}).get("test", {}).get("per_class") or {}
    stats = [(c, s) for c in sorted(pr) for s in ("precision", "recall")]

    def cell(c: str, s: str) -> str:
        old = main.get(c, {}).get(s)
        return f"{pr[c][s]:.4f}" + ("" if old in (None, pr[c][s]) else f" ({old:.4f})")

    rows = "".join(f"\n| {c} | {cell(c, 'precision')} | {cell(c, 'recall')} |" for c in sorted(pr))
    chart = bars(
        f"Per class, test split: this PR (bars), {ref} (line)",
        [f"{c} {s[0].upper()}" for c, s in stats],
        [pr[c][s] for c, s in stats],
        [main.get(c, {}).get(s, 0.0) for c, s in stats] if main else None,
        '"P = precision, R = recall" 0 --> 1',
    )
    table = f"In brackets: `{ref}`'s value where it differs.\n\n| Class | Precision | Recall |"
    return f"### Per class (test split)\n\n{chart}\n\n{table}\n|---|---:|---:|{rows}" if pr else ""


Rows = list[tuple[str, str]]


def read_predictions(text: str | None, where: str) -> Rows | None:
    if text is None:
        return None
    reader = csv.DictReader(text.splitlines())
    if not {"actual", "predicted"} <= set(reader.fieldnames or []):
        found = (reader.fieldnames or [])[:10]
        raise ReportError(f"{where}: expected the columns actual and predicted, found {found}")
    return [(row["actual"], row["predicted"]) for row in reader]


def confusion(new: Rows, base: Rows | None, ref: str) -> str:
    """Rows are the actual class; each cell is this PR's count and, where it differs, the
    change from the base branch's in brackets."""
    classes = sorted({label for pair in [*new, *(base or [])] for label in pair})
    now, then = Counter(new), Counter(base or [])

    def cell(a: str, p: str) -> str:
        change = now[a, p] - then[a, p]
        return f"{now[a, p]}" + (f" ({change:+d})" if base is not None and change else "")

    rows = "".join(
        f"\n| **{a}** | " + " | ".join(cell(a, p) for p in classes) + " |" for a in classes
    )
    right = f"{sum(now[c, c] for c in classes)} of {len(new)} test rows predicted right"
    if base is not None:
        right += f" (`{ref}`: {sum(then[c, c] for c in classes)} of {len(base)})"
    header = "| actual \\ predicted | " + " | ".join(classes) + " |\n|---" + "|---:" * len(classes)
    return (
        f"### Confusion matrix (test split)\n\nIn brackets: the change from `{ref}`.\n\n"
        f"{header}|{rows}\n\n{right}."
    )


def residuals(new: Rows, base: Rows | None, ref: str) -> str:
    """Histogram of predicted - actual, in bins shared by this PR and the base branch."""
    pr, main = ([float(p) - float(a) for a, p in rows or []] for rows in (new, base))
    widest = max(abs(e) for e in [*pr, *main]) or 1.0
    width = 2 * widest / RESIDUAL_BINS

    def counts(errors: list[float]) -> list[float]:
        found = Counter(min(int((e + widest) / width), RESIDUAL_BINS - 1) for e in errors)
        return [float(found[i]) for i in range(RESIDUAL_BINS)]

    labels = [f"{-widest + (i + 0.5) * width:.3g}" for i in range(RESIDUAL_BINS)]
    title = f"Residuals (predicted - actual), test split: this PR (bars), {ref} (line)"
    chart = bars(title, labels, counts(pr), counts(main) if base else None, '"test rows"')
    return f"### Residuals (test split)\n\n{chart}"


def baseline(new: dict[str, Any], higher: dict[str, bool]) -> str:
    pr, dummy = scores(new, "model", higher), scores(new, "baseline", higher)
    rows = "".join(f"\n| {m} | {dummy[m]:.4f} | {pr[m]:.4f} |" for m in sorted(pr) if m in dummy)
    return (
        "### Against the baseline (same split; the report says which)\n\n"
        f"| Test metric | Baseline | This PR |\n|---|---:|---:|{rows}"
    )


def dvc(*args: str) -> str:
    # The interpreter's own DVC: in CI the project's environment is not on PATH.
    return run(sys.executable, "-m", "dvc", *args).strip()


def details(summary: str, body: str) -> str:
    return f"<details><summary>{summary}</summary>\n\n{body}\n\n</details>"


def build_comment(params: Path, ref: str, metric_diff: str, param_diff: str) -> str:
    name = base_name(ref)
    new = json.loads((DATA / "metrics.json").read_text(encoding="utf-8"))
    base_text = at_base(ref, "metrics.json")
    base = json.loads(base_text) if base_text else None
    _, check = verdict(new, base, params, name)
    metadata = json.loads((DATA / "model_metadata.json").read_text(encoding="utf-8"))
    hyper = metadata.get("hyperparameters") or {}
    model = f"Model `{metadata.get('model_version')}`: `{metadata.get('estimator')}`" + (
        " with " + ", ".join(f"`{k}={hyper[k]}`" for k in sorted(hyper)) if hyper else ""
    )
    path = DATA / "test_predictions.csv"
    rows = read_predictions(path.read_text(encoding="utf-8"), str(path)) or []
    base_rows = read_predictions(at_base(ref, path.name), f"{ref}:{path}")
    plot = residuals if metadata.get("task") == "regression" else confusion
    run_id = os.environ.get("GITHUB_RUN_ID")
    server, repo = os.environ.get("GITHUB_SERVER_URL"), os.environ.get("GITHUB_REPOSITORY")
    where = f"[this run's artifacts]({server}/{repo}/actions/runs/{run_id})" if run_id else PLOTS
    text = (DATA / "report.md").read_text(encoding="utf-8").strip()
    if len(text) > MAX_REPORT_CHARS:
        text = text[:MAX_REPORT_CHARS] + "\n\n*(cut here; the full report.md is in the PR)*"
    sections = [
        f"{MARKER}\n## Model report",
        model + ".",
        check,
        "### Params changed (`dvc params diff`)",
        param_diff or f"None: the same params as `{name}`.",
        details(
            f"Every metric that changed (<code>dvc metrics diff {name}</code>)",
            metric_diff or "None.",
        ),
        per_class(new, base, name),
        plot(rows, base_rows, name) if rows else "",
        baseline(new, gate_config(params)[0]),
        f"The DVC plots against `{name}` (`dvc plots diff`, HTML): `plots` in {where}.",
        details("Training report (<code>report.md</code>)", text),
    ]
    return "\n\n".join(s for s in sections if s) + "\n"


def report(args: argparse.Namespace) -> int:
    ref = base_ref()
    shutil.rmtree(PLOTS, ignore_errors=True)
    CI_DIR.mkdir(parents=True, exist_ok=True)
    # Each DVC command spends seconds starting up: run them side by side.
    with ThreadPoolExecutor() as pool:
        plots = pool.submit(dvc, "plots", "diff", ref, "--out", str(PLOTS))
        metric_diff = pool.submit(dvc, "metrics", "diff", ref, "--md", "--precision", "4")
        param_diff = pool.submit(dvc, "params", "diff", ref, "--md")
        text = build_comment(args.params, ref, metric_diff.result(), param_diff.result())
        plots.result()
    COMMENT.write_text(text, encoding="utf-8", newline="\n")
    if summary := os.environ.get("GITHUB_STEP_SUMMARY"):
        with Path(summary).open("a", encoding="utf-8") as handle:
            handle.write(text)
    print(f"wrote {COMMENT} and {PLOTS}/index.html")
    return 0


def gate(args: argparse.Namespace) -> int:
    ref = base_ref()
    base_text = at_base(ref, "metrics.json")
    new = json.loads((DATA / "metrics.json").read_text(encoding="utf-8"))
    base = json.loads(base_text) if base_text else None
    passed, text = verdict(new, base, args.params, base_name(ref))
    print(text.replace("**", ""))
    return 0 if passed else 1


def tracked_outputs(dvc_yaml: Path) -> list[Path]:
    """dvc.lock, then every output of dvc.yaml declared with `cache: false`, in file order."""
    paths = [dvc_yaml.parent / "dvc.lock"]
    for stage in ((load_yaml(dvc_yaml) or {}).get("stages") or {}).values():
        for kind in ("outs", "metrics", "plots"):
            for entry in stage.get(kind) or []:
                for path, options in entry.items() if isinstance(entry, dict) else []:
                    if (options or {}).get("cache", True) is False:
                        paths.append(dvc_yaml.parent / path)
    return list(dict.fromkeys(paths))


def stage(args: argparse.Namespace) -> int:
    paths = tracked_outputs(args.dvc_yaml)
    if missing := [str(p) for p in paths if not p.is_file()]:
        raise ReportError(f"not produced (run `make train`): {', '.join(missing)}")
    shutil.rmtree(STAGED, ignore_errors=True)
    for path in paths:
        target = STAGED / path.relative_to(args.dvc_yaml.parent)
        target.parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(path, target)
    print("\n".join(map(str, paths)))
    return 0


def commit_back(args: argparse.Namespace) -> int:
    """Runs on a checkout of the trained commit, so the push is a fast-forward or fails:
    outputs of an older run never land on top of newer commits."""
    branch = os.environ.get("BRANCH")
    if not branch or not STAGED.is_dir():
        raise ReportError(f"needs BRANCH=<pr branch> and {STAGED} (the `stage` step's artifact)")
    files = sorted(p.relative_to(STAGED) for p in STAGED.rglob("*") if p.is_file())
    for path in files:
        path.parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(STAGED / path, path)
    run("git", "add", "--", *map(str, files))
    if subprocess.run(["git", "diff", "--cached", "--quiet"], check=False).returncode == 0:
        print("training outputs unchanged: nothing to commit")
        return 0
    head = run("git", "rev-parse", "--short", "HEAD").strip()
    run(
        "git",
        "-c",
        f"user.name={BOT}",
        "-c",
        f"user.email={BOT_EMAIL}",
        "commit",
        "--quiet",
        "-m",
        "Update model outputs from the train workflow",
        "-m",
        f"dvc repro on {head}; the model itself is in the DVC remote.",
    )
    run("git", "push", "origin", f"HEAD:refs/heads/{branch}")
    run("gh", "workflow", "run", TESTS_WORKFLOW, "--ref", branch)
    print(f"pushed the outputs to {branch} and dispatched {TESTS_WORKFLOW}")
    return 0


def post(args: argparse.Namespace) -> int:
    repo, pr = os.environ.get("GITHUB_REPOSITORY", ""), os.environ.get("PR", "")
    if "/" not in repo or not pr.isdigit():
        raise ReportError("needs GITHUB_REPOSITORY=owner/name and PR=<number>")
    body = COMMENT.read_text(encoding="utf-8")
    if body.split("\n", 1)[0] != MARKER:
        raise ReportError(f"{COMMENT} does not start with its marker {MARKER}")
    # One JSON line per comment: [id, author, first line]; a marker quoted lower down is no match.
    listing = run(
        "gh",
        "api",
        "--paginate",
        f"repos/{repo}/issues/{pr}/comments",
        "--jq",
        '.[] | [.id, .user.login, (.body | split("\\n") | .[0])] | @json',
    )
    found = [json.loads(line) for line in listing.splitlines() if line.strip()]
    ours = next((c[0] for c in found if c[1] == BOT and c[2].strip() == MARKER), None)
    where = f"repos/{repo}/issues/comments/{ours}" if ours else f"repos/{repo}/issues/{pr}/comments"
    run(
        "gh",
        "api",
        "--method",
        "PATCH" if ours else "POST",
        where,
        "--input",
        "-",
        stdin=json.dumps({"body": body}),
    )
    print(f"updated comment {ours}" if ours else f"created a comment on {repo}#{pr}")
    return 0


COMMANDS = {
    "report": report,
    "gate": gate,
    "stage": stage,
    "commit-back": commit_back,
    "post": post,
}


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("command", choices=COMMANDS)
    parser.add_argument("--params", type=Path, default=Path("params.yaml"))
    parser.add_argument("--dvc-yaml", type=Path, default=Path("dvc.yaml"))
    args = parser.parse_args(argv)
    try:
        return COMMANDS[args.command](args)
    except (ReportError, OSError) as error:
        print(f"error: {error}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
