"""Batch scoring: `python -m app.score --input ... --output ...` (`make score`).

Scores a CSV or Parquet file, or every such file under a directory or an `s3://` prefix,
with the service's own artifacts, checks and contract (`app.contract`: a row `/predict`
would refuse goes to the rejects file, never to the output), streaming one Arrow batch at a
time, and writes Parquet that appears whole or not at all. docs/scoring.md describes the
outputs, the summary, sharding (`--shards`) and why a retried shard never duplicates rows.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import posixpath
import sys
import time
from collections.abc import Iterator, Sequence
from concurrent.futures import Executor, Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.csv as pacsv
import pyarrow.fs as pafs
import pyarrow.parquet as pq
from pydantic import TypeAdapter

from app import columnar
from app.artifacts import (
    ModelIntegrityError,
    ModelMetadata,
    ReferenceProfile,
    load_metadata,
    load_profile,
)
from app.contract import Checked, Contract, ContractError
from app.drift import InputMonitor
from app.messages import MAX_MESSAGE_CHARS, cut
from app.predictor import BackendChoice, Predictor, load_predictor
from app.schemas import record_type
from app.settings import Settings

log = logging.getLogger("app.score")

ROW_NUMBER = "row_number"
MESSAGE = "message"
FORMATS = {".parquet": "parquet", ".pq": "parquet", ".csv": "csv"}
COMPRESSED = (".gz", ".bz2", ".zst", ".lz4")
# Rows per batch: large enough that per-batch overheads (an ONNX call, a Parquet row group)
# are amortised, small enough that a batch of wide rows stays within tens of megabytes.
BATCH_ROWS = 1 << 17
# The CSV reader reads up to 32 blocks ahead of the batch being scored (Arrow's background
# reader): 16 MB blocks held half a gigabyte. Its small batches are joined up to `batch_rows`.
CSV_BLOCK_BYTES = 1 << 20
EXIT_FAILED = 1


class ScoreError(RuntimeError):
    """The run cannot go on; the message says why."""


@dataclass(frozen=True)
class Job:
    input: str
    output: str
    keep: tuple[str, ...] = ()
    label: str | None = None
    model_dir: Path = field(default_factory=lambda: Settings().model_dir)
    backend: BackendChoice = "auto"
    rejects: str | None = None
    max_reject_fraction: float = 0.01
    force: bool = False
    shards: int | None = None
    shard: int = 0
    batch_rows: int = BATCH_ROWS


# --- where files are ------------------------------------------------------------------


def locate(uri: str) -> tuple[pafs.FileSystem, str]:
    """The filesystem and path of a local path or a URI (`s3://bucket/key`). S3 reads the
    standard AWS configuration: credentials, region and AWS_ENDPOINT_URL."""
    if "://" in uri:
        filesystem, path = pafs.FileSystem.from_uri(uri)
        return filesystem, path
    return pafs.LocalFileSystem(), str(Path(uri).absolute())


def file_format(path: str) -> str | None:
    stem = path
    for suffix in COMPRESSED:
        stem = stem.removesuffix(suffix)
    return FORMATS.get(posixpath.splitext(stem)[1].lower())


def input_files(filesystem: pafs.FileSystem, path: str) -> list[str]:
    """`path` itself, or every CSV and Parquet file under it in name order (names starting
    with `_` or `.`, such as markers, are not data)."""
    info = filesystem.get_file_info(path)
    if info.type == pafs.FileType.File:
        if file_format(path) is None:
            raise ScoreError(f"{path}: not a CSV or Parquet file (by its suffix)")
        return [path]
    if info.type == pafs.FileType.NotFound:
        raise ScoreError(f"input {path} does not exist")
    selector = pafs.FileSelector(path.rstrip("/"), recursive=True)
    found = sorted(
        entry.path
        for entry in filesystem.get_file_info(selector)
        if entry.type == pafs.FileType.File
        and file_format(entry.path)
        and not any(p.startswith(("_", ".")) for p in entry.path[len(path) :].split("/"))
    )
    if not found:
        raise ScoreError(f"no CSV or Parquet file under {path}")
    return found


def sibling(path: str, tag: str, suffix: str) -> str:
    """`out.parquet` -> `out.<tag><suffix>`, beside it."""
    stem, _ = posixpath.splitext(path)
    return f"{stem}.{tag}{suffix}"


# --- reading --------------------------------------------------------------------------


def _csv_header(filesystem: pafs.FileSystem, path: str) -> list[str]:
    with filesystem.open_input_stream(path, compression="detect") as stream:
        reader = pacsv.open_csv(
            stream,
            read_options=pacsv.ReadOptions(block_size=1 << 16),
            convert_options=pacsv.ConvertOptions(column_types={}),
        )
        return list(reader.schema.names)


def read_batches(
    filesystem: pafs.FileSystem,
    path: str,
    wanted: set[str],
    batch_rows: int,
    categories: frozenset[str] = frozenset(),
) -> tuple[list[str], Iterator[pa.RecordBatch]]:
    """The file's column names, and its batches holding the `wanted` columns it has. A CSV
    is read with the contract's types: every wanted column as text (never inferred), an
    empty field as null; `app.contract` parses the numbers. Parquet text columns named in
    `categories` are read dictionary-encoded, as they are stored: a few strings each, and
    no string per row to build and then look up."""
    if file_format(path) == "parquet":
        schema = pq.read_schema(filesystem.open_input_file(path))
        text = [f.name for f in schema if f.name in categories and f.type == pa.string()]
        parquet = pq.ParquetFile(filesystem.open_input_file(path), read_dictionary=text)
        names = list(parquet.schema_arrow.names)
        columns = [n for n in names if n in wanted]
        # A file with none of the wanted columns still has rows: read one column to count them.
        # One reader per row group: a reader pre-buffers (coalesced reads, fewer S3 requests)
        # every row group it is given and frees none until it is destroyed, so one reader over
        # the whole file holds all of its compressed bytes (apache/arrow#39808).
        batches = (
            batch
            for group in range(parquet.num_row_groups)
            for batch in parquet.iter_batches(
                batch_size=batch_rows, row_groups=[group], columns=columns or names[:1]
            )
        )
        return names, (b if columns else b.select([]) for b in batches)
    names = _csv_header(filesystem, path)
    columns = [n for n in names if n in wanted]
    stream = filesystem.open_input_stream(path, compression="detect")
    reader = pacsv.open_csv(
        stream,
        read_options=pacsv.ReadOptions(block_size=CSV_BLOCK_BYTES),
        convert_options=pacsv.ConvertOptions(
            column_types={n: pa.string() for n in columns},
            include_columns=columns or names[:1],
            null_values=[""],
            strings_can_be_null=True,
        ),
    )
    return names, (b if columns else b.select([]) for b in _joined(reader, batch_rows))


def _joined(batches: Iterator[pa.RecordBatch], rows: int) -> Iterator[pa.RecordBatch]:
    """The batches concatenated into batches of at least `rows` rows (the last may be short)."""
    pending: list[pa.RecordBatch] = []
    for batch in batches:
        pending.append(batch)
        if sum(b.num_rows for b in pending) >= rows:
            yield pa.concat_batches(pending)
            pending = []
    if pending:
        yield pa.concat_batches(pending)


def row_count(filesystem: pafs.FileSystem, path: str) -> int:
    """Rows in a file: a Parquet footer says it; a CSV is read through (one column)."""
    if file_format(path) == "parquet":
        return int(pq.ParquetFile(filesystem.open_input_file(path)).metadata.num_rows)
    _, batches = read_batches(filesystem, path, set(), BATCH_ROWS)
    return sum(batch.num_rows for batch in batches)


# --- writing --------------------------------------------------------------------------


class Staged:
    """A Parquet file written under a temporary name and moved into place by `publish`, so
    readers never see a partial file (S3: an object appears when its upload completes)."""

    def __init__(self, filesystem: pafs.FileSystem, path: str) -> None:
        self.filesystem, self.path = filesystem, path
        self.staging = f"{path}.incomplete"
        self._writer: pq.ParquetWriter | None = None
        self._stream: pa.NativeFile | None = None
        self._schema: pa.Schema | None = None

    def write(self, batch: pa.RecordBatch) -> None:
        if self._writer is None:
            self._schema = batch.schema
            parent = posixpath.dirname(self.path)
            if isinstance(self.filesystem, pafs.LocalFileSystem):
                self.filesystem.create_dir(parent, recursive=True)
            self._stream = self.filesystem.open_output_stream(self.staging)
            self._writer = pq.ParquetWriter(
                self._stream,
                batch.schema,
                # Dictionary-encode only what already is: trying it on millions of distinct
                # probabilities, then giving up, costs more than the model (measured: 7x
                # the write time).
                use_dictionary=[f.name for f in batch.schema if pa.types.is_dictionary(f.type)],
            )
        elif batch.schema != self._schema:
            assert self._schema is not None
            batch = batch.cast(self._schema)
        self._writer.write_batch(batch)

    def publish(self, empty: pa.Schema) -> None:
        if self._writer is None:
            self.write(_empty_batch(empty))
        self._close()
        self.filesystem.move(self.staging, self.path)

    def discard(self) -> None:
        if self._writer is not None:
            self._close()
            self.filesystem.delete_file(self.staging)

    def _close(self) -> None:
        # The writer does not close a stream it was handed; S3 completes the upload then.
        assert self._writer is not None
        assert self._stream is not None
        self._writer.close()
        self._stream.close()


def _empty_batch(schema: pa.Schema) -> pa.RecordBatch:
    return pa.RecordBatch.from_arrays([pa.array([], f.type) for f in schema], schema=schema)


def write_json(filesystem: pafs.FileSystem, path: str, value: Any) -> None:
    if isinstance(filesystem, pafs.LocalFileSystem):
        filesystem.create_dir(posixpath.dirname(path), recursive=True)
    with filesystem.open_output_stream(path) as stream:
        stream.write(json.dumps(value, indent=2).encode() + b"\n")


def exists(filesystem: pafs.FileSystem, path: str) -> bool:
    return bool(filesystem.get_file_info(path).type != pafs.FileType.NotFound)


# --- scoring --------------------------------------------------------------------------


@dataclass
class Tally:
    """What the summary reports, accumulated batch by batch."""

    rows: int = 0
    scored: int = 0
    rejected: int = 0
    ignored: dict[str, None] = field(default_factory=dict)
    missing: dict[str, int] = field(default_factory=dict)
    out_of_range: dict[str, int] = field(default_factory=dict)
    unseen: dict[str, int] = field(default_factory=dict)

    def add(self, counts: dict[str, int], into: dict[str, int]) -> None:
        for name, count in counts.items():
            if count:
                into[name] = into.get(name, 0) + count


class Scorer:
    """One model, its contract and its drift reference, applied to batches."""

    def __init__(self, job: Job) -> None:
        self.job = job
        self.metadata: ModelMetadata = load_metadata(job.model_dir)
        self.predictor: Predictor = load_predictor(job.model_dir, self.metadata, job.backend)
        self.contract = Contract(self.metadata, TypeAdapter(record_type(self.metadata)))
        self.profile: ReferenceProfile | None = load_profile(job.model_dir, self.metadata)
        self.monitor = InputMonitor(self.metadata, self.profile)
        named = {*job.keep, *([job.label] if job.label else [])}
        outputs = {ROW_NUMBER, columnar.MODEL_VERSION}
        clashes = named & outputs | {*job.keep} & {
            f.name for f in columnar.output_schema(self.metadata)
        }
        if clashes:
            raise ScoreError(f"--keep/--label name output columns: {sorted(clashes)}")
        self.wanted = {*self.metadata.feature_names, *job.keep} | (
            {job.label} if job.label else set()
        )
        self.evaluation = columnar.evaluation(self.metadata) if job.label else None
        # Copied columns keep the type they are stored with.
        self.categories = frozenset(
            f.name for f in self.metadata.features if f.type == "category"
        ) - {*job.keep, job.label}
        self.tally = Tally()

    def output_schema(self, keep_types: dict[str, pa.DataType]) -> pa.Schema:
        return pa.schema(
            [
                pa.field(ROW_NUMBER, pa.int64()),
                *columnar.output_schema(self.metadata),
                pa.field(columnar.MODEL_VERSION, pa.dictionary(pa.int32(), pa.string())),
                *(pa.field(k, keep_types.get(k, pa.string())) for k in self.job.keep),
            ]
        )

    def rejects_schema(self, keep_types: dict[str, pa.DataType]) -> pa.Schema:
        return pa.schema(
            [
                pa.field(ROW_NUMBER, pa.int64()),
                pa.field(MESSAGE, pa.string()),
                *(pa.field(k, keep_types.get(k, pa.string())) for k in self.job.keep),
            ]
        )

    def score(self, batch: pa.RecordBatch, first_row: int, text: bool) -> tuple[Any, Any]:
        """(output batch or None, rejects batch or None) for one input batch."""
        checked = self.contract.check(batch, parse_text=text)
        n = batch.num_rows
        tally = self.tally
        tally.rows += n
        tally.add(checked.missing, tally.missing)
        tally.add(self.contract.unseen(checked), tally.unseen)
        keep_types = {k: batch.schema.field(k).type for k in self.job.keep}
        output = rejects = None
        if checked.n_accepted:
            output = self._output(batch, checked, first_row, keep_types)
        if len(checked.rejected):
            tally.rejected += len(checked.rejected)
            rejects = pa.RecordBatch.from_arrays(
                [
                    pa.array(checked.rejected + first_row, pa.int64()),
                    pa.array(self.contract.messages(checked), pa.string()),
                    *(batch.column(k).take(pa.array(checked.rejected)) for k in self.job.keep),
                ],
                schema=self.rejects_schema(keep_types),
            )
        return output, rejects

    def _output(
        self,
        batch: pa.RecordBatch,
        checked: Checked,
        first_row: int,
        keep_types: dict[str, pa.DataType],
    ) -> pa.RecordBatch:
        n = checked.n_accepted
        predictions = columnar.predict(self.predictor, self.metadata, checked.columns, n)
        self.tally.scored += n
        self._drift(checked)
        rows = np.arange(first_row, first_row + batch.num_rows, dtype=np.int64)
        if n < batch.num_rows:
            batch = batch.filter(pa.array(checked.accepted))
            rows = rows[checked.accepted]
        if self.evaluation is not None and self.job.label:
            self.evaluation.add(batch.column(self.job.label), predictions)
        keep = [batch.column(k) for k in self.job.keep]
        return pa.RecordBatch.from_arrays(
            [
                pa.array(rows),
                *columnar.output_columns(self.metadata, predictions),
                columnar.constant(self.metadata.model_version, n),
                *keep,
            ],
            schema=self.output_schema(keep_types),
        )

    def _drift(self, checked: Checked) -> None:
        """Scored values outside the training split's range, per number or date feature."""
        if self.monitor.counts_drift:
            out_of_range, _, _ = self.monitor.range_counts(checked.columns)
            self.tally.add(dict(out_of_range), self.tally.out_of_range)

    def summary(self, seconds: float) -> dict[str, Any]:
        tally = self.tally
        summary: dict[str, Any] = {
            "model_version": self.metadata.model_version,
            "backend": self.predictor.backend,
            "rows": tally.rows,
            "scored": tally.scored,
            "rejected": tally.rejected,
            "reject_fraction": round(tally.rejected / tally.rows, 6) if tally.rows else 0.0,
            "ignored_columns": list(tally.ignored),
            "missing": tally.missing,
            "seconds": round(seconds, 3),
            "rows_per_second": round(tally.rows / seconds) if seconds > 0 else None,
        }
        if self.profile is not None:
            summary["drift"] = {"out_of_range": tally.out_of_range, "unseen": tally.unseen}
        if self.evaluation is not None:
            summary["label_metrics"] = self.evaluation.metrics()
        return summary


class Progress:
    """A progress bar on a terminal; otherwise one log line per batch."""

    def __init__(self, total: int | None) -> None:
        self.started = time.monotonic()
        self.bar: Any = None
        if sys.stderr.isatty():
            from tqdm import tqdm  # type: ignore[import-untyped]

            self.bar = tqdm(total=total, unit="rows", unit_scale=True, dynamic_ncols=True)

    def update(self, path: str, rows: int, scored: int, rejected: int, done: int) -> None:
        if self.bar is not None:
            self.bar.update(rows)
            return
        elapsed = time.monotonic() - self.started
        log.info(
            "%s: %d rows (%d scored, %d rejected); %d rows so far, %.0f rows/s",
            path,
            rows,
            scored,
            rejected,
            done,
            done / elapsed if elapsed > 0 else 0.0,
        )

    def close(self) -> None:
        if self.bar is not None:
            self.bar.close()


def _read_ahead(batches: Iterator[pa.RecordBatch], io: Executor) -> Iterator[pa.RecordBatch]:
    """`batches`, each read on `io` while the caller works on the one before."""
    ahead = io.submit(next, batches, None)
    while (batch := ahead.result()) is not None:
        ahead = io.submit(next, batches, None)
        yield batch


def run(job: Job) -> dict[str, Any]:
    """Score `job`; returns the summary. Raises ScoreError when the run fails."""
    started = time.monotonic()
    in_fs, in_path = locate(job.input)
    out_fs, out_path = locate(job.output)
    files = input_files(in_fs, in_path)
    first_row = 0
    if job.shards is not None:
        if not 0 <= job.shard < job.shards:
            raise ScoreError(f"shard {job.shard} is not one of 0..{job.shards - 1}")
        start, end = (len(files) * i // job.shards for i in (job.shard, job.shard + 1))
        # Row numbers continue across the files before this shard's, as a single run counts.
        first_row = sum(row_count(in_fs, f) for f in files[:start]) if start < end else 0
        files = files[start:end]
        part = f"part-{job.shard:05d}"
        base = out_path.rstrip("/")
        output_path = f"{base}/{part}.parquet"
        rejects_path = f"{base}/_rejects/{part}.parquet"
        summary_path = f"{base}/_done/{part}.json"
        metrics_path = f"{base}/_metrics/{part}.json"
        if exists(out_fs, summary_path):
            log.info(
                "shard %d of %d is done already (%s): skipped", job.shard, job.shards, summary_path
            )
            done: dict[str, Any] = json.loads(out_fs.open_input_stream(summary_path).read())
            return done
    else:
        output_path = out_path
        if file_format(output_path) != "parquet":
            raise ScoreError(f"--output {job.output} must end in .parquet")
        if exists(out_fs, output_path) and not job.force:
            raise ScoreError(f"{job.output} exists: pass --force (FORCE=1) to replace it")
        rejects_path = (
            locate(job.rejects)[1] if job.rejects else sibling(output_path, "rejects", ".parquet")
        )
        summary_path = sibling(output_path, "summary", ".json")
        metrics_path = sibling(output_path, "metrics", ".json")

    scorer = Scorer(job)
    output = Staged(out_fs, output_path)
    rejects = Staged(out_fs if not job.rejects else locate(job.rejects)[0], rejects_path)
    keep_types: dict[str, pa.DataType] = {}
    progress = Progress(None)
    # Reading the next batch and writing the last one's output overlap with checking and
    # predicting this one: pyarrow decodes and encodes without the GIL, so on two cores a
    # run takes about as long as its slowest half (measured: 0.11 s of CPU per million
    # rows reading and writing, 0.19 s checking and predicting).
    io = ThreadPoolExecutor(max_workers=2, thread_name_prefix="score-io")
    written: Future[None] | None = None
    try:
        for path in files:
            names, unread = read_batches(
                in_fs, path, scorer.wanted, job.batch_rows, scorer.categories
            )
            batches = _read_ahead(unread, io)
            absent = [c for c in (*job.keep, job.label) if c and c not in names]
            if absent:
                raise ScoreError(f"{path} has no column {absent} (--keep/--label)")
            features = scorer.metadata.feature_names
            if lacking := [f for f in features if f not in names]:
                # Scored as omitted fields, imputed; with none present, surely the wrong file
                # (or headers that differ, e.g. in case): no row would carry any input.
                if len(lacking) == len(features):
                    raise ScoreError(
                        f"{path} has none of the model's feature columns "
                        f"({cut(', '.join(features), MAX_MESSAGE_CHARS)}); its columns: "
                        f"{cut(', '.join(names), MAX_MESSAGE_CHARS)}"
                    )
                log.warning("%s has no column %s: every row scores it as missing", path, lacking)
            for name in names:
                if name not in scorer.wanted:
                    scorer.tally.ignored[name] = None
            text = file_format(path) == "csv"
            for batch in batches:
                scored_before, rejected_before = scorer.tally.scored, scorer.tally.rejected
                out, refused = scorer.score(batch, first_row, text)
                keep_types = keep_types or {k: batch.schema.field(k).type for k in job.keep}
                if out is not None:
                    if written is not None:
                        written.result()
                    written = io.submit(output.write, out)
                if refused is not None:
                    rejects.write(refused)
                first_row += batch.num_rows
                progress.update(
                    path,
                    batch.num_rows,
                    scorer.tally.scored - scored_before,
                    scorer.tally.rejected - rejected_before,
                    scorer.tally.rows,
                )
        if written is not None:
            written.result()
    except BaseException as error:
        # Lets the read or write under way finish, so the files can be closed.
        io.shutdown(wait=True, cancel_futures=True)
        output.discard()
        rejects.discard()
        if isinstance(error, ContractError | pa.ArrowException | OSError):
            raise ScoreError(f"{path}: {error}") from error
        raise
    finally:
        io.shutdown()
        progress.close()
    summary = scorer.summary(time.monotonic() - started)
    summary.update(input=job.input, output=job.output, rejects=rejects_path)
    rejects.publish(scorer.rejects_schema(keep_types))
    fraction = summary["reject_fraction"]
    if fraction > job.max_reject_fraction:
        output.discard()
        raise ScoreError(
            f"{summary['rejected']} of {summary['rows']} rows rejected ({fraction:.2%}), more "
            f"than --max-reject-fraction {job.max_reject_fraction:.2%}: see {rejects_path}; "
            f"nothing was written to {job.output}"
        )
    output.publish(scorer.output_schema(keep_types))
    if scorer.evaluation is not None:
        write_json(out_fs, metrics_path, summary["label_metrics"])
    # Last: in a sharded run, the summary is the marker that the shard is complete.
    write_json(out_fs, summary_path, summary)
    return summary


def parse_args(argv: Sequence[str] | None = None) -> Job:
    settings = Settings()
    parser = argparse.ArgumentParser(
        prog="python -m app.score", description=__doc__.split("\n\n")[0]
    )
    parser.add_argument("--input", required=True, help="CSV/Parquet file, directory or s3:// URI")
    parser.add_argument(
        "--output", required=True, help="the .parquet to write (a prefix with --shards)"
    )
    parser.add_argument(
        "--keep",
        default="",
        type=lambda names: tuple(name for name in names.split(",") if name),
        help="comma-separated columns copied to the output",
    )
    parser.add_argument(
        "--label", type=lambda name: name or None, help="the column holding the true target"
    )
    parser.add_argument(
        "--model",
        dest="model_dir",
        metavar="MODEL",
        type=Path,
        default=settings.model_dir,
        help="artifact directory",
    )
    parser.add_argument("--backend", choices=["auto", "sklearn", "onnx"], default=settings.backend)
    parser.add_argument("--rejects", default=None, help="rejects file (default: beside --output)")
    parser.add_argument("--max-reject-fraction", type=float, default=0.01)
    parser.add_argument("--force", action="store_true", help="replace an existing --output")
    parser.add_argument("--shards", type=int, default=None, help="score one of N shards")
    parser.add_argument(
        "--shard",
        type=int,
        default=int(os.environ.get("AWS_BATCH_JOB_ARRAY_INDEX", "0")),
        help="which shard (default: AWS_BATCH_JOB_ARRAY_INDEX, else 0)",
    )
    parser.add_argument("--batch-rows", type=int, default=BATCH_ROWS)
    args = parser.parse_args(argv)
    if args.shards is not None and args.shards < 1:
        parser.error("--shards must be at least 1")
    if not 0 <= args.max_reject_fraction <= 1:
        parser.error("--max-reject-fraction must be between 0 and 1")
    return Job(**vars(args))


def main(argv: Sequence[str] | None = None) -> int:
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(message)s")
    job = parse_args(argv)
    try:
        summary = run(job)
    except (ScoreError, ModelIntegrityError) as error:
        log.error("scoring failed: %s", error)
        return EXIT_FAILED
    print(json.dumps(summary))
    return 0


if __name__ == "__main__":
    sys.exit(main())
