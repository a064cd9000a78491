"""Running the real `terraform` in the tests, offline where a provider mirror exists.

Every test works on a scratch copy of infrastructure/ (state, plans, .terraform and the lock
file stay out of the tree). When this machine has a filesystem mirror of the AWS provider,
a CLI configuration written for the tests installs it from there and never asks the
registry; without one, Terraform's usual registry install applies (a user with registry
access needs nothing).
"""

from __future__ import annotations

import fcntl
import os
import shutil
import subprocess
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path

INFRA_DIR = Path(__file__).resolve().parents[1]
REPO_ROOT = INFRA_DIR.parent
PROVIDER = "registry.terraform.io/hashicorp/aws"

# Where the mirror lookup is remembered: `find /` takes seconds to minutes on a big disk, and
# the mirror does not move between runs. build/ is git-ignored scratch space.
MIRROR_CACHE = REPO_ROOT / "build" / "terraform-provider-mirror"
# The search for a mirror: every mounted filesystem but the kernel's (a mirror may be a mount
# of its own).
FIND = [
    "find", "/", "(", "-path", "/proc", "-o", "-path", "/sys", "-o", "-path", "/dev", "-o",
    "-path", "/run", ")", "-prune", "-o",
    "-path", f"*{PROVIDER}/*", "-name", "terraform-provider-aws*", "-print",
]  # fmt: skip

# Credentials and settings of the developer's own AWS setup never reach a test's Terraform:
# every run gets exactly the credentials its test passes.
_AWS_ENV_PREFIXES = ("AWS_",)
_KEPT_AWS_ENV = {"AWS_CA_BUNDLE"}


def _holds_provider(mirror: Path) -> bool:
    return any((mirror / PROVIDER).glob("**/terraform-provider-aws*"))


def _mirror_of(binary: str) -> Path | None:
    """The mirror directory a found provider file belongs to (the parent of its host dir)."""
    head, separator, _ = binary.partition(f"/{PROVIDER}/")
    if not separator or "/.terraform/" in binary:
        # .terraform/providers of some working directory is an install, not a mirror.
        return None
    return Path(head)


def find_mirror(search_again: bool = False) -> Path | None:
    """The filesystem mirror holding the AWS provider, or None to use the registry.

    TF_PROVIDER_MIRROR names it explicitly; otherwise the last lookup's answer is reused
    (a mirror while it still holds the provider; "none found" unless `search_again`, so a
    machine that uses the registry pays for the search once), and FIND runs.
    """
    explicit = os.environ.get("TF_PROVIDER_MIRROR")
    if explicit:
        return Path(explicit)
    MIRROR_CACHE.parent.mkdir(parents=True, exist_ok=True)
    with MIRROR_CACHE.open("a+", encoding="utf-8") as cache:
        # pytest's workers ask at the same time: the first searches, the others wait for its
        # answer (and never read the file half written).
        fcntl.flock(cache, fcntl.LOCK_EX)
        cache.seek(0)
        answer = cache.read()  # "" before any lookup, "\n" after one that found nothing
        cached = Path(answer.strip()) if answer.strip() else None
        if (cached is not None and _holds_provider(cached)) or (
            answer == "\n" and not search_again
        ):
            return cached
        found = subprocess.run(FIND, capture_output=True, text=True, timeout=900, check=False)
        mirrors = [_mirror_of(line) for line in sorted(found.stdout.splitlines())]
        mirror = next((m for m in mirrors if m is not None and _holds_provider(m)), None)
        cache.truncate(0)
        cache.write(f"{mirror or ''}\n")
        return mirror


def registry_unreachable() -> str | None:
    """Why Terraform's registry cannot be reached from here (as Terraform would go: through
    the environment's proxy), or None when it can."""
    try:
        urllib.request.urlopen(
            f"https://{PROVIDER.split('/')[0]}/.well-known/terraform.json", timeout=15
        ).close()
    except OSError as error:
        return str(error)
    return None


def write_cli_config(directory: Path, mirror: Path | None) -> Path | None:
    """A CLI configuration that installs the AWS provider from `mirror` and nothing else
    from the network; None when there is no mirror (Terraform then uses the registry)."""
    if mirror is None:
        return None
    config = directory / "terraform.tfrc"
    config.write_text(
        "provider_installation {\n"
        "  filesystem_mirror {\n"
        f'    path    = "{mirror}"\n'
        f'    include = ["{PROVIDER}"]\n'
        "  }\n"
        "  direct {\n"
        f'    exclude = ["{PROVIDER}"]\n'
        "  }\n"
        "}\n",
        encoding="utf-8",
    )
    return config


@dataclass
class Terraform:
    """`terraform` in one scratch working directory."""

    binary: str
    workdir: Path
    cli_config: Path | None
    env: dict[str, str] = field(default_factory=dict)

    def environment(self, extra: dict[str, str] | None = None) -> dict[str, str]:
        env = {
            key: value
            for key, value in os.environ.items()
            if not key.startswith(_AWS_ENV_PREFIXES) or key in _KEPT_AWS_ENV
        }
        env.update(TF_IN_AUTOMATION="1", TF_INPUT="0", CHECKPOINT_DISABLE="1")
        if self.cli_config is not None:
            env["TF_CLI_CONFIG_FILE"] = str(self.cli_config)
        env.update(self.env)
        env.update(extra or {})
        return env

    def run(
        self, *args: str, check: bool = True, timeout: float = 600
    ) -> subprocess.CompletedProcess[str]:
        result = subprocess.run(
            [self.binary, *args, "-no-color"],
            cwd=self.workdir,
            env=self.environment(),
            capture_output=True,
            text=True,
            timeout=timeout,
            check=False,
        )
        if check and result.returncode != 0:
            raise AssertionError(
                f"terraform {' '.join(args)} exited {result.returncode}:\n"
                f"{result.stdout[-6000:]}\n{result.stderr[-6000:]}"
            )
        return result


def copy_configuration(destination: Path) -> Path:
    """infrastructure/'s *.tf and tests/*.tftest.hcl, and nothing a run left there."""
    destination.mkdir(parents=True, exist_ok=True)
    for source in INFRA_DIR.glob("*.tf"):
        shutil.copy2(source, destination / source.name)
    (destination / "tests").mkdir(exist_ok=True)
    for source in (INFRA_DIR / "tests").glob("*.tftest.hcl"):
        shutil.copy2(source, destination / "tests" / source.name)
    return destination
