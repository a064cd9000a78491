"""Fixtures of the infrastructure tests: the parsed configuration and evaluation scopes."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

import pytest

from .terraform_model import (
    INFRA_DIR,
    REGION,
    REPOSITORY,
    Scope,
    TerraformConfig,
    sample_refs,
)

# --- Fixtures -----------------------------------------------------------------------------


@pytest.fixture(scope="session")
def tf() -> TerraformConfig:
    config = TerraformConfig(INFRA_DIR)
    assert config.files, f"no .tf files in {INFRA_DIR}"
    return config


@pytest.fixture
def make_scope(tf: TerraformConfig) -> Callable[..., Scope]:
    """Scope factory: variable defaults, the required variables set, overrides as keywords."""

    def factory(refs: Mapping[str, Any] | None = None, **variables: Any) -> Scope:
        values = {
            **tf.variable_defaults(),
            "aws_region": REGION,
            "github_repository": REPOSITORY,
            **variables,
        }
        return Scope(config=tf, variables=values, refs={**sample_refs(), **(refs or {})})

    return factory
