"""app.py, as the CDK CLI runs it: a bad context value ends synthesis with one clear line."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from deployment.stack.settings import CLEAR_TEXT_KEYS

from .conftest import CDK_JSON, DEPLOYMENT_DIR, KEYS_OVER_HTTP

pytestmark = pytest.mark.slow


def run_app(
    tmp_path: Path, context: dict[str, object], region: str | None
) -> subprocess.CompletedProcess[str]:
    # The variables the CLI sets for the app it runs (see cdk.json's "app").
    env = {
        **os.environ,
        "PYTHONPATH": str(DEPLOYMENT_DIR.parent),
        "CDK_CONTEXT_JSON": json.dumps(context),
        "CDK_OUTDIR": str(tmp_path),
        "JSII_SILENCE_WARNING_END_OF_LIFE_NODE_VERSION": "20",
    }
    env.pop("CDK_DEFAULT_REGION", None)
    if region is not None:
        env["CDK_DEFAULT_REGION"] = region
    return subprocess.run(
        [sys.executable, "app.py"],
        cwd=DEPLOYMENT_DIR,
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )


def test_invalid_context_value_exits_with_its_key_named_and_no_traceback(tmp_path: Path) -> None:
    context = {**CDK_JSON["context"], "desiredCount": "two", "natGateways": "5"}
    result = run_app(tmp_path, context, region="eu-west-1")
    assert result.returncode == 1
    assert "desiredCount: 'two' is not a whole number" in result.stderr
    assert "natGateways: 5 is out of range" in result.stderr
    assert "Traceback" not in result.stderr
    assert not list(tmp_path.glob("*.template.json"))


def test_a_misspelt_key_exits_naming_it_and_the_setting_it_meant(tmp_path: Path) -> None:
    """Left alone, nothing would read `desiredcount`: the stack would keep cdk.json's count."""
    context = {**CDK_JSON["context"], "allowPlainHttp": "true", "desiredcount": "4"}
    result = run_app(tmp_path, context, region="eu-west-1")
    assert result.returncode == 1
    assert "desiredcount: not a setting; did you mean desiredCount?" in result.stderr
    assert "Traceback" not in result.stderr
    assert not list(tmp_path.glob("*.template.json"))


def test_running_outside_the_cdk_cli_without_a_region_says_how_to_run_it(tmp_path: Path) -> None:
    result = run_app(tmp_path, CDK_JSON["context"], region=None)
    assert result.returncode == 1
    assert "make synth" in result.stderr


def test_api_keys_over_plain_http_end_synthesis_with_one_line(tmp_path: Path) -> None:
    """Keys on, no domain (cdk.json as shipped): keys would cross the internet in clear text."""
    result = run_app(tmp_path, {**CDK_JSON["context"], **KEYS_OVER_HTTP}, region="eu-west-1")
    assert result.returncode == 1
    assert result.stderr.strip() == CLEAR_TEXT_KEYS
    assert not list(tmp_path.glob("*.template.json"))
