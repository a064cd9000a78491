"""`make score-remote INPUT=s3://... OUTPUT=s3://... [SHARDS=] [KEEP=]`: submit the scoring job
the stack defines (context `scoringJob`) as an AWS Batch array job, one child per shard.

The queue and job definition come from the stack's outputs (`make deploy` writes
cdk-outputs.json). Without SHARDS there is one shard per input object, at most
`MAX_SHARDS` (AWS Batch's array size limit is 10,000); a child scores a contiguous share of
the objects in name order, so the parts under OUTPUT are the single-machine output in order.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import boto3

from deployment.stack.scoring_job import DEFINITION_OUTPUT, QUEUE_OUTPUT

MAX_SHARDS = 1000
OUTPUTS = Path(__file__).with_name("cdk-outputs.json")


def count_objects(uri: str) -> int:
    bucket, _, prefix = uri.removeprefix("s3://").partition("/")
    pages = (
        boto3.client("s3").get_paginator("list_objects_v2").paginate(Bucket=bucket, Prefix=prefix)
    )
    return sum(
        1
        for page in pages
        for item in page.get("Contents", [])
        if item["Key"].endswith((".csv", ".parquet", ".pq", ".csv.gz"))
    )


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--input", required=True)
    parser.add_argument("--output", required=True)
    parser.add_argument("--shards", type=int, default=0)
    parser.add_argument("--keep", default="")
    parser.add_argument("--max-reject-fraction", default="0.01")
    parser.add_argument("--outputs", type=Path, default=OUTPUTS)
    args = parser.parse_args(argv)
    if not (args.input.startswith("s3://") and args.output.startswith("s3://")):
        parser.error("INPUT and OUTPUT must be s3:// prefixes")
    stacks = json.loads(args.outputs.read_text(encoding="utf-8"))
    outputs = next((o for o in stacks.values() if QUEUE_OUTPUT in o), None)
    if outputs is None:
        sys.exit(f"{args.outputs} has no {QUEUE_OUTPUT}: deploy with -c scoringJob=true first")
    shards = args.shards or max(1, min(count_objects(args.input), MAX_SHARDS))
    request: dict[str, object] = {
        "jobName": "scoring",
        "jobQueue": outputs[QUEUE_OUTPUT],
        "jobDefinition": outputs[DEFINITION_OUTPUT],
        "parameters": {
            "input": args.input,
            "output": args.output.rstrip("/") + "/",
            "shards": str(shards),
            "keep": args.keep,
            "maxRejectFraction": args.max_reject_fraction,
        },
    }
    if shards > 1:  # an array job has at least two children
        request["arrayProperties"] = {"size": shards}
    job = boto3.client("batch").submit_job(**request)
    print(f"submitted job {job['jobId']} ({shards} shard(s)); its parts land under {args.output}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
