"""Compare a pull request's model metrics with its base branch's, for reviewers and for CI.

Two commands, both fed plain files so they run (and are tested) without GitHub:

* ``comment`` writes the Markdown of the pull-request comment: the PR's metrics next to the
  base branch's with the change, the confusion matrix of the test split (the DVC plot of
  ``test_predictions.csv``) with the change from the base branch's, the baseline, the verdict
  of the regression check and the training report. Its first line is a hidden marker that
  lets the workflow find and edit the one comment it owns instead of adding a new one per run.
  The output depends only on the inputs (no clock, no environment), so two runs give
  byte-identical files.
* ``compare`` exits 1 when a gated metric is worse than the base branch's by more than
  ``compare.max_regression`` in params.yaml. That exit status is the train check's verdict.

The base branch's metrics are extracted by the caller (``make base-metrics`` runs
``git show``); when the base branch has no model yet, ``--base-metrics`` is omitted and every
check passes: there is nothing to regress from.
"""

from __future__ import annotations

import argparse
import csv
import json
import math
import sys
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

MARKER = "<!-- mlops-template:model-report -->"

# GitHub rejects comments over 65,536 characters; the report is cut well before that so the
# tables above it always arrive.
MAX_REPORT_CHARS = 40_000

# Test-split metrics the regression check may gate on, and whether higher is better.
GATEABLE = {"accuracy": True, "macro_f1": True, "log_loss": False}


@dataclass(frozen=True)
class Row:
    label: str
    path: tuple[str, ...]
    higher_is_better: bool


# The metrics the comment compares, as paths into metrics.json's "model" block.
ROWS = (
    Row("Test accuracy", ("test", "accuracy"), True),
    Row("Test macro F1", ("test", "macro_f1"), True),
    Row("Test log loss", ("test", "log_loss"), False),
    Row("CV accuracy (mean)", ("cv", "accuracy_mean"), True),
    Row("CV accuracy (std)", ("cv", "accuracy_std"), False),
    Row("CV macro F1 (mean)", ("cv", "macro_f1_mean"), True),
    Row("CV macro F1 (std)", ("cv", "macro_f1_std"), False),
)

BASELINE_ROWS = (
    Row("Test accuracy", ("test", "accuracy"), True),
    Row("Test macro F1", ("test", "macro_f1"), True),
    Row("Test log loss", ("test", "log_loss"), False),
)


class ReportError(Exception):
    """An input file is missing or malformed; the message says which and why."""


@dataclass(frozen=True)
class GateConfig:
    metrics: tuple[str, ...]
    max_regression: float


@dataclass(frozen=True)
class GateResult:
    metric: str
    base: float | None
    new: float
    regression: float | None  # how much worse than base; negative means better
    allowed: float

    @property
    def failed(self) -> bool:
        # Metrics are rounded when written; the slack keeps a change of exactly the allowed
        # amount from failing on float noise.
        return self.regression is not None and self.regression > self.allowed + 1e-9


def load_json(path: Path) -> dict[str, Any]:
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError as error:
        raise ReportError(f"{path}: file not found") from error
    except json.JSONDecodeError as error:
        raise ReportError(f"{path}: not valid JSON ({error})") from error
    if not isinstance(data, dict):
        raise ReportError(f"{path}: expected a JSON object, found {type(data).__name__}")
    return data


def load_metrics(path: Path) -> dict[str, Any]:
    metrics = load_json(path)
    if not isinstance(metrics.get("model"), dict):
        raise ReportError(f"{path}: no 'model' block; is this the metrics.json `dvc repro` writes?")
    return metrics


def load_gate_config(params_path: Path) -> GateConfig:
    try:
        params = yaml.safe_load(params_path.read_text(encoding="utf-8"))
    except FileNotFoundError as error:
        raise ReportError(f"{params_path}: file not found") from error
    block = params.get("compare") if isinstance(params, dict) else None
    if not isinstance(block, dict):
        raise ReportError(f"{params_path}: no 'compare' block (compare.metrics, max_regression)")
    metrics = block.get("metrics")
    threshold = block.get("max_regression")
    if not isinstance(metrics, list) or not metrics:
        raise ReportError(f"{params_path}: compare.metrics must be a non-empty list")
    unknown = sorted(str(m) for m in metrics if m not in GATEABLE)
    if unknown:
        raise ReportError(
            f"{params_path}: compare.metrics has {unknown}; choose from {sorted(GATEABLE)}"
        )
    if isinstance(threshold, bool) or not isinstance(threshold, int | float) or threshold < 0:
        raise ReportError(f"{params_path}: compare.max_regression must be a number >= 0")
    return GateConfig(metrics=tuple(str(m) for m in metrics), max_regression=float(threshold))


def lookup(metrics: dict[str, Any] | None, block: str, path: Sequence[str]) -> float | None:
    node: Any = metrics.get(block) if metrics is not None else None
    for key in path:
        if not isinstance(node, dict):
            return None
        node = node.get(key)
    if isinstance(node, bool) or not isinstance(node, int | float) or not math.isfinite(node):
        return None
    return float(node)


def evaluate_gate(
    new: dict[str, Any], base: dict[str, Any] | None, config: GateConfig
) -> list[GateResult]:
    results = []
    for metric in config.metrics:
        new_value = lookup(new, "model", ("test", metric))
        if new_value is None:
            raise ReportError(f"the new metrics have no model.test.{metric}")
        base_value = lookup(base, "model", ("test", metric))
        regression = None
        if base_value is not None:
            difference = base_value - new_value
            regression = difference if GATEABLE[metric] else -difference
        results.append(
            GateResult(
                metric=metric,
                base=base_value,
                new=new_value,
                regression=regression,
                allowed=config.max_regression,
            )
        )
    return results


def fmt(value: float | None) -> str:
    return "—" if value is None else f"{value:.4f}"


def fmt_change(new: float | None, base: float | None, higher_is_better: bool) -> str:
    if new is None or base is None:
        return "—"
    change = new - base
    if abs(change) < 5e-5:
        return "0.0000"
    better = (change > 0) == higher_is_better
    return f"{change:+.4f} ({'better' if better else 'worse'})"


def comparison_rows(
    rows: Sequence[Row],
    before: tuple[dict[str, Any] | None, str],
    after: tuple[dict[str, Any] | None, str],
) -> list[list[str]]:
    """One table row per metric: label, the value before, after, and the change; metrics
    missing from both sides are left out."""
    out = []
    for row in rows:
        old = lookup(before[0], before[1], row.path)
        new = lookup(after[0], after[1], row.path)
        if old is None and new is None:
            continue
        out.append([row.label, fmt(old), fmt(new), fmt_change(new, old, row.higher_is_better)])
    return out


def table(header: Sequence[str], align: Sequence[str], rows: Sequence[Sequence[str]]) -> list[str]:
    lines = ["| " + " | ".join(header) + " |", "|" + "|".join(align) + "|"]
    lines += ["| " + " | ".join(row) + " |" for row in rows]
    return lines


def verdict_lines(results: Sequence[GateResult], config: GateConfig, base_name: str) -> list[str]:
    gated = ", ".join(f"`{r.metric}`" for r in results)
    limit = f"{config.max_regression:g} (`compare.max_regression` in `params.yaml`)"
    if all(r.base is None for r in results):
        return [
            f"✅ **Check passed:** `{base_name}` has no model yet, so there is nothing to compare "
            f"with. Later PRs fail when any of {gated} (test split) is worse than "
            f"`{base_name}`'s by more than {limit}."
        ]
    failures = [r for r in results if r.failed]
    if not failures:
        return [
            f"✅ **Check passed:** none of {gated} (test split) is worse than `{base_name}`'s "
            f"by more than {limit}."
        ]
    lines = [f"❌ **Check failed:** worse than `{base_name}`'s by more than {limit}:"]
    for r in failures:
        lines.append(
            f"- `{r.metric}`: {fmt(r.new)} against {fmt(r.base)}, {r.regression:.4f} worse"
        )
    return lines


def model_line(metadata: dict[str, Any] | None) -> list[str]:
    if metadata is None:
        return []
    version = metadata.get("model_version", "unknown")
    estimator = metadata.get("estimator", "unknown estimator")
    hyper = metadata.get("hyperparameters")
    settings = ""
    if isinstance(hyper, dict) and hyper:
        settings = " with " + ", ".join(f"`{k}={hyper[k]}`" for k in sorted(hyper))
    return [f"Model `{version}`: `{estimator}`{settings}.", ""]


def per_class_rows(new: dict[str, Any], base: dict[str, Any] | None) -> list[list[str]]:
    new_classes = new["model"].get("test", {}).get("per_class", {})
    base_classes: dict[str, Any] = {}
    if base is not None:
        base_classes = base["model"].get("test", {}).get("per_class", {}) or {}
    rows = []
    for cls in sorted(set(new_classes) | set(base_classes)):
        for stat in ("precision", "recall"):
            path = ("test", "per_class", cls, stat)
            new_value = lookup(new, "model", path)
            base_value = lookup(base, "model", path)
            rows.append(
                [
                    f"{cls} {stat}",
                    fmt(base_value),
                    fmt(new_value),
                    fmt_change(new_value, base_value, True),
                ]
            )
    return rows


def build_comment(
    *,
    new: dict[str, Any],
    base: dict[str, Any] | None,
    report: str,
    config: GateConfig,
    base_name: str,
    metadata: dict[str, Any] | None = None,
    predictions: Predictions | None = None,
    base_predictions: Predictions | None = None,
) -> str:
    results = evaluate_gate(new, base, config)
    lines = [MARKER, "## Model report", ""]
    lines += model_line(metadata)
    lines += verdict_lines(results, config, base_name)
    lines.append("")

    base_column = f"`{base_name}`" if base is not None else f"`{base_name}` (no model yet)"
    rows = comparison_rows(ROWS, (base, "model"), (new, "model"))
    lines += table(
        ["Metric", base_column, "This PR", "Change"], ["---", "---:", "---:", "---:"], rows
    )
    lines.append("")

    class_rows = per_class_rows(new, base)
    if class_rows:
        lines += ["<details><summary>Per-class precision and recall (test split)</summary>", ""]
        lines += table(
            ["Class and metric", base_column, "This PR", "Change"],
            ["---", "---:", "---:", "---:"],
            class_rows,
        )
        lines += ["", "</details>", ""]

    if predictions is not None:
        lines += confusion_lines(predictions, base_predictions, base_name)

    lines += [
        "### Against the baseline",
        "",
        "The baseline is scored on the same split as the model; the training report "
        "says what it is.",
        "",
    ]
    baseline_rows = comparison_rows(BASELINE_ROWS, (new, "baseline"), (new, "model"))
    lines += table(
        ["Metric", "Baseline", "This PR", "Improvement"],
        ["---", "---:", "---:", "---:"],
        baseline_rows,
    )
    lines.append("")

    body = report.strip()
    if len(body) > MAX_REPORT_CHARS:
        body = body[:MAX_REPORT_CHARS] + (
            "\n\n*(report truncated here; the full `report.md` is in the PR's files)*"
        )
    lines += [
        "<details><summary>Training report (<code>report.md</code>)</summary>",
        "",
        body,
        "",
        "</details>",
        "",
    ]
    return "\n".join(lines)


Predictions = list[tuple[str, str]]


def load_predictions(path: Path) -> Predictions:
    """(actual, predicted) per test row, from the evaluate stage's test_predictions.csv."""
    try:
        with path.open(encoding="utf-8", newline="") as handle:
            reader = csv.DictReader(handle)
            columns = reader.fieldnames or []
            if not {"actual", "predicted"} <= set(columns):
                raise ReportError(
                    f"{path}: expected the columns actual and predicted, found {columns[:10]}"
                )
            return [(row["actual"], row["predicted"]) for row in reader]
    except FileNotFoundError as error:
        raise ReportError(f"{path}: file not found") from error


def confusion_lines(new: Predictions, base: Predictions | None, base_name: str) -> list[str]:
    """The test split's confusion matrix as a Markdown table; each cell is this PR's count,
    followed by the change from the base branch's where the two differ."""
    classes = sorted({label for pair in [*new, *(base or [])] for label in pair})
    counts = Counter(new)
    base_counts = Counter(base) if base is not None else None
    rows = []
    for actual in classes:
        cells = [f"**{actual}**"]
        for predicted in classes:
            cell = str(counts[actual, predicted])
            if (
                base_counts is not None
                and base_counts[actual, predicted] != counts[actual, predicted]
            ):
                cell += f" ({counts[actual, predicted] - base_counts[actual, predicted]:+d})"
            cells.append(cell)
        rows.append(cells)
    right = sum(counts[c, c] for c in classes)
    if base is None:
        intro = "Rows are the actual class, columns the predicted one."
        summary = f"{right} of {len(new)} test rows predicted right."
    else:
        intro = (
            "Rows are the actual class, columns the predicted one; in brackets, the change "
            f"from `{base_name}`'s count where it differs."
        )
        base_right = sum(base_counts[c, c] for c in classes) if base_counts else 0
        summary = (
            f"{right} of {len(new)} test rows predicted right "
            f"(`{base_name}`: {base_right} of {len(base)})."
        )
    return [
        "### Confusion matrix (test split)",
        "",
        intro,
        "",
        *table(["actual \\ predicted", *classes], ["---", *("---:" for _ in classes)], rows),
        "",
        summary,
        "",
    ]


def read_optional(path: Path | None) -> dict[str, Any] | None:
    return None if path is None else load_json(path)


def command_comment(args: argparse.Namespace) -> int:
    config = load_gate_config(args.params)
    new = load_metrics(args.metrics)
    base = load_metrics(args.base_metrics) if args.base_metrics is not None else None
    try:
        report = args.report.read_text(encoding="utf-8")
    except FileNotFoundError as error:
        raise ReportError(f"{args.report}: file not found") from error
    text = build_comment(
        new=new,
        base=base,
        report=report,
        config=config,
        base_name=args.base_name,
        metadata=read_optional(args.metadata),
        predictions=load_predictions(args.predictions) if args.predictions else None,
        base_predictions=(
            load_predictions(args.base_predictions) if args.base_predictions else None
        ),
    )
    args.output.parent.mkdir(parents=True, exist_ok=True)
    # newline="\n": byte-identical output on every platform.
    with args.output.open("w", encoding="utf-8", newline="\n") as handle:
        handle.write(text)
    print(f"wrote {args.output}")
    return 0


def command_compare(args: argparse.Namespace) -> int:
    config = load_gate_config(args.params)
    new = load_metrics(args.metrics)
    base = load_metrics(args.base_metrics) if args.base_metrics is not None else None
    results = evaluate_gate(new, base, config)
    for line in verdict_lines(results, config, args.base_name):
        print(line.replace("**", ""))
    return 1 if any(r.failed for r in results) else 0


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    commands = parser.add_subparsers(dest="command", required=True)
    for name, help_text in (
        ("comment", "write the pull-request comment (Markdown)"),
        ("compare", "exit 1 when the model regressed beyond compare.max_regression"),
    ):
        sub = commands.add_parser(name, help=help_text)
        sub.add_argument("--metrics", type=Path, required=True, help="this PR's metrics.json")
        sub.add_argument(
            "--base-metrics",
            type=Path,
            help="the base branch's metrics.json; omit when the base branch has no model yet",
        )
        sub.add_argument("--base-name", default="main", help="how to call the base branch")
        sub.add_argument("--params", type=Path, default=Path("params.yaml"))
        if name == "comment":
            sub.add_argument("--report", type=Path, required=True, help="report.md of this PR")
            sub.add_argument("--metadata", type=Path, help="model_metadata.json of this PR")
            sub.add_argument(
                "--predictions",
                type=Path,
                help="test_predictions.csv of this PR (actual,predicted)",
            )
            sub.add_argument(
                "--base-predictions",
                type=Path,
                help="the base branch's test_predictions.csv; omit when it has none",
            )
            sub.add_argument("--output", type=Path, required=True)
    return parser.parse_args(argv)


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    try:
        if args.command == "comment":
            return command_comment(args)
        return command_compare(args)
    except ReportError as error:
        print(f"error: {error}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
