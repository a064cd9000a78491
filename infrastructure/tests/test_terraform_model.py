"""The expression evaluator the other tests rely on: right where it answers, loud elsewhere."""

from __future__ import annotations

import pytest

from .terraform_model import evaluate, render


@pytest.mark.parametrize(
    ("expression", "variables", "expected"),
    [
        ('var.mode == "oidc" ? 1 : 0', {"mode": "oidc"}, 1),
        ('var.mode == "oidc" ? 1 : 0', {"mode": "access_key"}, 0),
        ('var.mode == "oidc" && var.arn == null ? 1 : 0', {"mode": "oidc", "arn": "x"}, 0),
        ('var.mode == "oidc" && var.arn == null ? 1 : 0', {"mode": "oidc", "arn": None}, 1),
        ('(var.arn != null || var.mode != "oidc")', {"mode": "oidc", "arn": None}, False),
        ("!var.flag", {"flag": False}, True),
        ("var.arn == null ? [] : [var.arn]", {"arn": "k"}, ["k"]),
        ('var.a ? (var.b ? "ab" : "a") : "none"', {"a": True, "b": False}, "a"),
        ('var.a ? "x:y" : "z"', {"a": True}, "x:y"),  # a colon inside a string literal
    ],
)
def test_supported_expressions_evaluate_like_terraform(make_scope, expression, variables, expected):
    assert evaluate(expression, make_scope(**variables)) == expected


def test_interpolations_render_inside_strings(make_scope):
    scope = make_scope(github_repository="o/r")
    assert render("repo:${var.github_repository}:pull_request", scope) == "repo:o/r:pull_request"
    assert render("$${aws:username}", scope) == "${aws:username}"


@pytest.mark.parametrize(
    "expression",
    [
        "length(var.github_repository)",  # a function the evaluator does not know
        "var.noncurrent_version_expiration_days + 1",  # arithmetic
        "var.noncurrent_version_expiration_days > 1",  # ordering comparisons
    ],
)
def test_unsupported_expressions_raise_instead_of_guessing(make_scope, expression):
    with pytest.raises(NotImplementedError):
        evaluate(expression, make_scope())


def test_unknown_references_raise(make_scope):
    with pytest.raises(KeyError):
        evaluate("aws_s3_bucket.other.arn", make_scope())
    with pytest.raises(KeyError):
        evaluate("var.does_not_exist", make_scope())
