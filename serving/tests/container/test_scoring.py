"""The image as the remote scoring job runs it: shard i of N against S3 (moto's server on the
host's loopback), the shards together equal to the single-machine output, and a re-run after a
killed shard complete without duplicated rows."""

from __future__ import annotations

import uuid
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from app.artifacts import load_metadata
from app.score import main as score_here

BUCKET = "scoring"
SHARDS = 3


def _input(model_dir: Path, rows: int) -> pa.Table:
    metadata = load_metadata(model_dir)
    rng = np.random.default_rng(7)
    columns: dict[str, Any] = {"id": np.arange(rows)}
    for feature in metadata.features:
        if feature.type == "number":
            assert feature.minimum is not None
            assert feature.maximum is not None
            values = rng.uniform(feature.minimum, feature.maximum, rows)
            values[::11] = feature.maximum + 1  # refused: lands in the rejects
            columns[feature.name] = values
        else:
            columns[feature.name] = pa.array(
                rng.choice(np.array(feature.categories, dtype=object), rows), pa.string()
            )
    return pa.table(columns)


def _parts(s3: Any, prefix: str) -> pa.Table:
    listed = s3.list_objects_v2(Bucket=BUCKET, Prefix=prefix)["Contents"]
    keys = sorted(
        o["Key"]
        for o in listed
        if o["Key"].startswith(f"{prefix}part-") and o["Key"].endswith(".parquet")
    )
    tables = [
        pq.read_table(pa.BufferReader(s3.get_object(Bucket=BUCKET, Key=k)["Body"].read()))
        for k in keys
    ]
    return pa.concat_tables(tables)


def test_shards_in_the_image_make_the_single_run_output_even_after_a_killed_shard(
    engine: Any, image: str, s3: Any, model_dir: Path, tmp_path: Path
) -> None:
    data = _input(model_dir, 4000)
    (tmp_path / "in").mkdir()
    for index in range(5):
        local = tmp_path / "in" / f"{index:02d}.parquet"
        pq.write_table(data.slice(index * 800, 800), local)
        s3.put_object(Bucket=BUCKET, Key=f"in/{index:02d}.parquet", Body=local.read_bytes())
    # The single-machine run over the same files (the same batches, so the same floats).
    args = ("--keep", "id", "--max-reject-fraction", "1")
    single_args = ["--input", str(tmp_path / "in"), "--output", str(tmp_path / "single.parquet")]
    assert score_here([*single_args, *args]) == 0
    single = pq.read_table(tmp_path / "single.parquet")

    environment = [f"--env={k}={v}" for k, v in s3.env.items()]
    scorer = ["python", "-m", "app.score", "--input", f"s3://{BUCKET}/in/"]
    scorer += ["--output", f"s3://{BUCKET}/out/", "--shards", str(SHARDS), *args]

    def shard(index: int, *run: str) -> None:
        engine.run(
            "run", *run, "--network=host", *environment, image, *scorer, "--shard", str(index)
        )

    for index in range(SHARDS):
        shard(index, "--rm")
    parts = _parts(s3, "out/")
    for name in single.column_names:
        assert parts.column(name).equals(single.column(name)), name
    assert parts.equals(single)

    # Shard 1 is killed while it runs; its earlier part and marker are gone.
    s3.delete_object(Bucket=BUCKET, Key="out/part-00001.parquet")
    s3.delete_object(Bucket=BUCKET, Key="out/_done/part-00001.json")
    name = f"prediction-service-test-{uuid.uuid4().hex[:8]}"
    shard(1, "-d", f"--name={name}")
    engine.run("kill", name, check=False)
    engine.run("rm", "-f", name, check=False)
    for index in range(SHARDS):
        shard(index, "--rm")
    assert _parts(s3, "out/").equals(single)
