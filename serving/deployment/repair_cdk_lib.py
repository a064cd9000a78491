"""Restore aws-cdk-lib's files that another package overwrote in the environment.

aws-cdk-lib and its dependency aws-cdk.cloud-assembly-schema both ship
`aws_cdk/cloud_assembly_schema/__init__.py`, with different contents. Whichever pip installs
last wins; `pipenv sync` installs without dependency order, and when the schema package's copy
wins, aws-cdk-lib's assertions fail with "Unknown interface:
aws-cdk-lib.cloud_assembly_schema.MetadataEntry" as soon as `Annotations.find_*` returns an entry.

`make setup-development-pipenv` runs this after `pipenv sync`: it compares every file
aws-cdk-lib shares with another installed package against aws-cdk-lib's own RECORD and, only
when one differs, reinstalls aws-cdk-lib alone, at the version and hashes in Pipfile.lock.
"""

from __future__ import annotations

import argparse
import base64
import hashlib
import json
import subprocess
import sys
import tempfile
from importlib import metadata
from pathlib import Path

DISTRIBUTION = "aws-cdk-lib"
LOCK_CATEGORY = "deployment"


def _record_hash(path: Path) -> str:
    digest = hashlib.sha256(path.read_bytes()).digest()
    return "sha256=" + base64.urlsafe_b64encode(digest).rstrip(b"=").decode()


def overwritten_files(distribution: str = DISTRIBUTION) -> list[str]:
    """Files of `distribution` also installed by another package, whose content now differs."""
    own = metadata.distribution(distribution)
    others: set[str] = set()
    for dist in metadata.distributions():
        name = (dist.metadata["Name"] or "").lower().replace("_", "-")
        if name and name != distribution:
            others.update(str(file) for file in dist.files or ())
    changed = []
    for file in own.files or ():
        if str(file) not in others or file.hash is None:
            continue
        located = Path(str(file.locate()))
        if not located.is_file() or _record_hash(located) != f"{file.hash.mode}={file.hash.value}":
            changed.append(str(file))
    return changed


def locked_requirement(lock_file: Path, distribution: str = DISTRIBUTION) -> str:
    """`name==version --hash=...` for `distribution`, exactly as Pipfile.lock pins it."""
    lock = json.loads(lock_file.read_text(encoding="utf-8"))
    try:
        entry = lock[LOCK_CATEGORY][distribution]
    except KeyError as error:
        raise SystemExit(f"{lock_file}: no {distribution} in [{LOCK_CATEGORY}]") from error
    hashes = " ".join(f"--hash={value}" for value in entry["hashes"])
    return f"{distribution}{entry['version']} {hashes}"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--lock", type=Path, default=Path("Pipfile.lock"))
    args = parser.parse_args(argv)

    try:
        changed = overwritten_files()
    except metadata.PackageNotFoundError:
        print(f"{DISTRIBUTION} is not installed: nothing to check")
        return 0
    if not changed:
        print(f"{DISTRIBUTION}: no file overwritten by another package")
        return 0

    print(f"{DISTRIBUTION}: overwritten by another package: {', '.join(changed)}; reinstalling")
    with tempfile.TemporaryDirectory() as directory:
        requirements = Path(directory) / "requirements.txt"
        requirements.write_text(locked_requirement(args.lock) + "\n", encoding="utf-8")
        pip = [sys.executable, "-m", "pip", "install", "--quiet", "--no-deps"]
        subprocess.run(
            [*pip, "--force-reinstall", "--require-hashes", "-r", str(requirements)], check=True
        )
    still_changed = overwritten_files()
    if still_changed:
        print(f"{DISTRIBUTION}: still differs after reinstalling: {', '.join(still_changed)}")
        return 1
    print(f"{DISTRIBUTION}: restored")
    return 0


if __name__ == "__main__":
    sys.exit(main())
