"""Every path the pipeline reads or writes, built in one place.

`serving/app/data/` is the only contract between training and serving: the service reads
what lands there and imports nothing from this package.
"""

from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
PARAMS = ROOT / "params.yaml"

# A `source` path must lie here: `prepare` depends on the directory, so editing the data retrains.
DATA_DIR = ROOT / "data"

PREPARED_DIR = ROOT / "training" / "data" / "prepared"
LIBRARY_VERSIONS = ROOT / "training" / "data" / "library_versions.json"
TRAIN_SPLIT = PREPARED_DIR / "train.parquet"
TEST_SPLIT = PREPARED_DIR / "test.parquet"

ARTIFACTS_DIR = ROOT / "serving" / "app" / "data"
MODEL = ARTIFACTS_DIR / "model.joblib"
METADATA = ARTIFACTS_DIR / "model_metadata.json"
PROFILE = ARTIFACTS_DIR / "reference_profile.json"
METRICS = ARTIFACTS_DIR / "metrics.json"
REPORT = ARTIFACTS_DIR / "report.md"
TEST_PREDICTIONS = ARTIFACTS_DIR / "test_predictions.csv"
