"""`make image`'s last lines: the image's size and what makes it up, layer by layer.

    python -m container.size --engine podman [--base IMAGE] prediction-service:local

The base is the image the Dockerfile builds on by default (the `python-base` stage's, pinned
by digest) unless --base names the one the build used (the offline stand-in).
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
from pathlib import Path

from container import dockerfile

DOCKERFILE = Path(__file__).resolve().parent.parent / "app" / "Dockerfile"
MB = 1_000_000


def _engine(engine: str, *args: str) -> str:
    completed = subprocess.run([engine, *args], capture_output=True, text=True, check=False)
    if completed.returncode != 0:
        raise LookupError(completed.stderr.strip() or f"{engine} {args[0]} failed")
    return completed.stdout


def size_bytes(engine: str, image: str) -> int:
    return int(_engine(engine, "image", "inspect", "--format", "{{.Size}}", image).strip())


def layers(engine: str, image: str) -> list[tuple[int, str]]:
    """(size in bytes, instruction) per layer, newest first, empty layers left out."""
    out = _engine(engine, "history", "--no-trunc", "--human=false", "--format", "{{json .}}", image)
    # podman prints one JSON array, docker one object per line.
    stripped = out.strip()
    entries = (
        json.loads(stripped)
        if stripped.startswith("[")
        else [json.loads(line) for line in stripped.splitlines()]
    )
    found = []
    for entry in entries:
        size = int(entry.get("Size") or entry.get("size") or 0)
        created_by = str(entry.get("CreatedBy") or entry.get("createdBy") or "")
        if size:
            created_by = created_by.removeprefix("/bin/sh -c ").removeprefix("#(nop) ").strip()
            found.append((size, " ".join(created_by.split())))
    return found


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--engine", required=True)
    parser.add_argument("--base", help="the base image the build used")
    parser.add_argument("image")
    args = parser.parse_args(argv)
    base = args.base or dockerfile.default_base_image(DOCKERFILE)
    try:
        total = size_bytes(args.engine, args.image)
        own = layers(args.engine, args.image)
        base_size = size_bytes(args.engine, base)
    except LookupError as error:
        print(f"size of {args.image}: {error}", file=sys.stderr)
        return 1
    own = own[: max(0, len(own) - len(layers(args.engine, base)))]
    # History names a COPY by a content hash; the Dockerfile says what it copied.
    instructions = list(reversed(dockerfile.read(DOCKERFILE).layers))
    if len(instructions) == len(own):
        own = [
            (size, instruction) for (size, _), instruction in zip(own, instructions, strict=True)
        ]
    print(f"{args.image}: {total / MB:.0f} MB")
    print(f"  {base_size / MB:8.1f} MB  base image {base}")
    print(f"  {(total - base_size) / MB:8.1f} MB  the Dockerfile's own layers:")
    for size, created_by in own:
        print(f"  {size / MB:8.1f} MB    {created_by[:80]}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
