"""Stage `versions`: the versions of the libraries the model's pickle needs, in the file the
`train` stage depends on.

Unpickling with another scikit-learn (or numpy, or the estimator's own package) than the
one that pickled is unsupported, so the service refuses such a model (exit 78). DVC runs
this stage on every `dvc repro` (it is `always_changed`, and cheap); its output changes only
when one of these versions does, and then `train` runs again. So a lock file that moves
scikit-learn retrains the model, while a bump of a development tool retrains nothing, and
`make train` never reports "up to date" for a model the service would refuse.

The metadata records the same dict (`library_versions`), built by the same function.
"""

from __future__ import annotations

import logging
import platform
from importlib.metadata import packages_distributions, version

from training import paths
from training.io import run_stage, write_json
from training.params import read_params

log = logging.getLogger(__name__)

# scikit-learn and the libraries its fitted estimators are pickled with.
BASE = ("scikit-learn", "numpy", "scipy", "joblib")


def library_versions(estimator: type) -> dict[str, str]:
    """Python's version (for the record) and every library the pickle of a Pipeline ending
    in `estimator` needs: BASE and the distribution that ships the estimator's package."""
    package = estimator.__module__.partition(".")[0]
    names = sorted({*BASE, *packages_distributions().get(package, [])})
    return {"python": platform.python_version()} | {name: version(name) for name in names}


def main() -> None:
    # Imported here: train imports this module for `library_versions`.
    from training.train import estimator_class

    params = read_params(paths.PARAMS)
    estimator = estimator_class(str(params.train.estimator), params.prepare.task)
    versions = library_versions(estimator)
    paths.LIBRARY_VERSIONS.parent.mkdir(parents=True, exist_ok=True)
    write_json(paths.LIBRARY_VERSIONS, versions)
    log.info("library versions the model records: %s", versions)


if __name__ == "__main__":
    run_stage(main)
