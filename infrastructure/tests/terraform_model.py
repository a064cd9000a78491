"""Parse infrastructure/*.tf with python-hcl2 and evaluate the parts the tests reason about.

No provider can be downloaded here, so `terraform plan` cannot tell us what the configuration
creates. Instead the tests read the parsed HCL and evaluate the small expression language it
uses where it matters (references, `==`/`!=`, `&&`/`||`/`!`, `cond ? a : b`, lists, `one()`):
enough to compute each resource's `count` in a given mode and to render every IAM policy
document into concrete statements for a sample account. An expression outside that subset
raises instead of being guessed, so a change the evaluator does not understand fails loudly.
"""

from __future__ import annotations

import ast
import re
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import hcl2
from hcl2.utils import SerializationOptions

INFRA_DIR = Path(__file__).resolve().parents[1]
REPO_ROOT = INFRA_DIR.parent

# Sample environment the expressions are evaluated in.
ACCOUNT_ID = "123456789012"
REGION = "eu-west-1"
PARTITION = "aws"
BUCKET = "mlops-dvc-20261128000000000000000001"
REPOSITORY = "octo-org/penguins-mlops"
OIDC_PROVIDER_ARN = f"arn:aws:iam::{ACCOUNT_ID}:oidc-provider/token.actions.githubusercontent.com"

# Plain strings without quotes, blocks as lists of dicts, no comment entries: the shape the
# assertions read most naturally. Expressions stay as "${...}" strings.
_OPTIONS = SerializationOptions(
    with_comments=False, strip_string_quotes=True, explicit_blocks=False
)


def load_hcl(path: Path) -> dict[str, Any]:
    with path.open(encoding="utf-8") as handle:
        parsed: dict[str, Any] = hcl2.load(handle, serialization_options=_OPTIONS)
    return parsed


class TerraformConfig:
    """The top-level blocks of every .tf file in one directory, keyed by type and name."""

    def __init__(self, directory: Path) -> None:
        self.directory = directory
        self.files = sorted(directory.glob("*.tf"))
        self.resources: dict[str, dict[str, dict[str, Any]]] = {}
        self.data: dict[str, dict[str, dict[str, Any]]] = {}
        self.variables: dict[str, dict[str, Any]] = {}
        self.locals: dict[str, Any] = {}
        self.outputs: dict[str, dict[str, Any]] = {}
        self.terraform: list[dict[str, Any]] = []
        self.providers: dict[str, dict[str, Any]] = {}
        for path in self.files:
            for kind, blocks in load_hcl(path).items():
                self._add(kind, blocks, path)

    def _add(self, kind: str, blocks: list[dict[str, Any]], path: Path) -> None:
        for block in blocks:
            if kind in ("resource", "data"):
                target = self.resources if kind == "resource" else self.data
                for type_, by_name in block.items():
                    for name, body in by_name.items():
                        assert name not in target.setdefault(type_, {}), f"{type_}.{name} twice"
                        target[type_][name] = body
            elif kind == "variable":
                self.variables.update(block)
            elif kind == "output":
                self.outputs.update(block)
            elif kind == "locals":
                for name in block:
                    assert name not in self.locals, f"local.{name} defined twice ({path.name})"
                self.locals.update(block)
            elif kind == "terraform":
                self.terraform.append(block)
            elif kind == "provider":
                self.providers.update(block)
            else:  # pragma: no cover - a new kind of block deserves a test of its own
                raise AssertionError(f"unexpected top-level block {kind!r} in {path.name}")

    def resource(self, type_: str, name: str) -> dict[str, Any]:
        return self.resources[type_][name]

    def policy_document(self, name: str) -> dict[str, Any]:
        return self.data["aws_iam_policy_document"][name]

    def iter_resources(self) -> Iterator[tuple[str, str, dict[str, Any]]]:
        for type_, by_name in self.resources.items():
            for name, body in by_name.items():
                yield type_, name, body

    def variable_defaults(self) -> dict[str, Any]:
        return {name: body["default"] for name, body in self.variables.items() if "default" in body}

    def validation_pattern(self, name: str) -> re.Pattern[str]:
        """The regex of a `can(regex("...", var.NAME))` validation, for Python's re."""
        (validation,) = self.variables[name]["validation"]
        condition = validation["condition"]
        match = re.fullmatch(rf'\$\{{can\(regex\("(.+)", var\.{name}\)\)\}}', condition)
        assert match, f"var.{name}: {condition}"
        # HCL string escapes (only \\ appears in these patterns) to the regex text.
        return re.compile(match.group(1).replace("\\\\", "\\"))


@dataclass(frozen=True)
class Scope:
    """Values of the references an expression may use."""

    config: TerraformConfig
    variables: Mapping[str, Any]
    refs: Mapping[str, Any]
    # The value of `statement.value` inside a dynamic "statement" block.
    iteration: Any = None
    # The locals being evaluated, to report a reference cycle instead of recursing forever.
    locals_stack: tuple[str, ...] = field(default=())


# --- Expression evaluation ----------------------------------------------------------------

_STRING_LITERAL = re.compile(r'"(?:[^"\\]|\\.)*"')
_REFERENCE = re.compile(
    r"\b(?:var|local|data|statement|aws_[a-z0-9_]+)(?:\.[A-Za-z0-9_]+|\[(?:\*|\d+)\])+"
)


def _one(values: list[Any]) -> Any:
    assert len(values) <= 1, f"one() of {values!r}"
    return values[0] if values else None


# Terraform functions the evaluator knows; any other call raises.
_FUNCTIONS: dict[str, Callable[..., Any]] = {"one": _one}


def _resolve(path: str, scope: Scope) -> Any:
    head, _, rest = path.partition(".")
    if head == "var":
        if rest not in scope.variables:
            raise KeyError(f"var.{rest} has no default and no value in this scope")
        return scope.variables[rest]
    if head == "local":
        if rest in scope.locals_stack:
            raise AssertionError(f"local.{rest} refers to itself")
        inner = replace(scope, locals_stack=(*scope.locals_stack, rest))
        return render(scope.config.locals[rest], inner)
    if path == "statement.value":
        return scope.iteration
    if path not in scope.refs:
        raise KeyError(f"no value for {path} in this scope")
    return scope.refs[path]


def _split_ternary(code: str) -> tuple[str, str, str] | None:
    """Split `c ? a : b` at its top level (string literals are already placeholders)."""
    depth = 0
    question = None
    nested = 0
    for index, char in enumerate(code):
        if char in "([{":
            depth += 1
        elif char in ")]}":
            depth -= 1
        elif depth == 0 and char == "?":
            if question is None:
                question = index
            else:
                nested += 1
        elif depth == 0 and char == ":" and question is not None:
            if nested:
                nested -= 1
            else:
                return code[:question], code[question + 1 : index], code[index + 1 :]
    return None


def _wrapped_in_parentheses(code: str) -> bool:
    if not (code.startswith("(") and code.endswith(")")):
        return False
    depth = 0
    for index, char in enumerate(code):
        depth += {"(": 1, ")": -1}.get(char, 0)
        if depth == 0:
            return index == len(code) - 1
    return False


def _to_python(code: str) -> str:
    code = code.strip()
    if _wrapped_in_parentheses(code):
        return f"({_to_python(code[1:-1])})"
    split = _split_ternary(code)
    if split is not None:
        condition, then, otherwise = (_to_python(part) for part in split)
        return f"(({then}) if ({condition}) else ({otherwise}))"
    code = code.replace("&&", " and ").replace("||", " or ")
    code = re.sub(r"!(?!=)", " not ", code)
    code = re.sub(r"\bnull\b", "None", code)
    code = re.sub(r"\btrue\b", "True", code)
    return re.sub(r"\bfalse\b", "False", code)


def evaluate(expression: str, scope: Scope) -> Any:
    """Evaluate one HCL expression (the text between `${` and `}`)."""
    names: dict[str, Any] = {}

    def keep_string(match: re.Match[str]) -> str:
        key = f"__s{len(names)}"
        names[key] = render(ast.literal_eval(match.group(0)), scope)
        return key

    def keep_reference(match: re.Match[str]) -> str:
        key = f"__r{len(names)}"
        names[key] = _resolve(match.group(0), scope)
        return key

    code = _STRING_LITERAL.sub(keep_string, expression)
    code = _REFERENCE.sub(keep_reference, code)
    tree = ast.parse(_to_python(code).strip(), mode="eval")
    return _walk(tree.body, names)


def _walk(node: ast.AST, names: dict[str, Any]) -> Any:
    if isinstance(node, ast.Constant):
        return node.value
    if isinstance(node, ast.Name):
        return names[node.id]
    if isinstance(node, ast.List):
        return [_walk(element, names) for element in node.elts]
    if isinstance(node, ast.IfExp):
        branch = node.body if _walk(node.test, names) else node.orelse
        return _walk(branch, names)
    if isinstance(node, ast.BoolOp):
        values = [_walk(value, names) for value in node.values]
        return all(values) if isinstance(node.op, ast.And) else any(values)
    if isinstance(node, ast.UnaryOp) and isinstance(node.op, ast.Not):
        return not _walk(node.operand, names)
    if isinstance(node, ast.Compare) and len(node.ops) == 1:
        left, right = _walk(node.left, names), _walk(node.comparators[0], names)
        if isinstance(node.ops[0], ast.Eq):
            return left == right
        if isinstance(node.ops[0], ast.NotEq):
            return left != right
    if (
        isinstance(node, ast.Call)
        and isinstance(node.func, ast.Name)
        and node.func.id in _FUNCTIONS
        and not node.keywords
    ):
        return _FUNCTIONS[node.func.id](*(_walk(arg, names) for arg in node.args))
    raise NotImplementedError(f"expression not supported by the test evaluator: {ast.dump(node)}")


def _interpolations(text: str) -> Iterator[tuple[int, int]]:
    """(start, end) of every top-level `${...}` in text, braces balanced."""
    index = 0
    while (start := text.find("${", index)) != -1:
        if start > 0 and text[start - 1] == "$":  # `$${` is an escaped literal
            index = start + 2
            continue
        depth = 0
        for end in range(start + 1, len(text)):
            if text[end] == "{":
                depth += 1
            elif text[end] == "}":
                depth -= 1
                if depth == 0:
                    yield start, end + 1
                    break
        else:
            raise AssertionError(f"unbalanced interpolation in {text!r}")
        index = end + 1


def render(value: Any, scope: Scope) -> Any:
    """A parsed HCL value with every interpolation evaluated in scope."""
    if isinstance(value, list):
        return [render(item, scope) for item in value]
    if isinstance(value, dict):
        return {key: render(item, scope) for key, item in value.items()}
    if not isinstance(value, str):
        return value
    spans = list(_interpolations(value))
    if len(spans) == 1 and spans[0] == (0, len(value)):
        return evaluate(value[2:-1], scope)
    pieces, last = [], 0
    for start, end in spans:
        pieces += [value[last:start], str(evaluate(value[start + 2 : end - 1], scope))]
        last = end
    return "".join([*pieces, value[last:]]).replace("$${", "${")


def count_of(body: Mapping[str, Any], scope: Scope) -> int:
    """How many instances a resource or data block has in scope (no count: one)."""
    if "count" not in body:
        return 1
    count = render(body["count"], scope)
    assert isinstance(count, int), f"count evaluated to {count!r}"
    return count


# --- IAM policy documents -----------------------------------------------------------------


@dataclass(frozen=True)
class Statement:
    sid: str | None
    effect: str
    actions: tuple[str, ...]
    not_actions: tuple[str, ...]
    resources: tuple[str, ...]
    not_resources: tuple[str, ...]
    principals: tuple[tuple[str, tuple[str, ...]], ...]
    conditions: tuple[tuple[str, str, tuple[str, ...]], ...]

    def condition(self, test: str, variable: str) -> tuple[str, ...] | None:
        for test_, variable_, values in self.conditions:
            if (test_, variable_) == (test, variable):
                return values
        return None


def _statement(body: Mapping[str, Any], scope: Scope) -> Statement:
    rendered = render(dict(body), scope)
    return Statement(
        sid=rendered.get("sid"),
        effect=rendered.get("effect", "Allow"),
        actions=tuple(rendered.get("actions", ())),
        not_actions=tuple(rendered.get("not_actions", ())),
        resources=tuple(rendered.get("resources", ())),
        not_resources=tuple(rendered.get("not_resources", ())),
        principals=tuple(
            (p["type"], tuple(p["identifiers"])) for p in rendered.get("principals", ())
        ),
        conditions=tuple(
            (c["test"], c["variable"], tuple(c["values"])) for c in rendered.get("condition", ())
        ),
    )


_DOCUMENT_JSON = re.compile(r"\$\{data\.aws_iam_policy_document\.(\w+)(?:\[0\])?\.json\}")


def document_name(reference: str) -> str:
    """`${data.aws_iam_policy_document.NAME.json}` -> NAME (fails for anything else)."""
    match = _DOCUMENT_JSON.fullmatch(reference)
    assert match, f"{reference!r} is not the JSON of an aws_iam_policy_document"
    return match.group(1)


def policy_statements(config: TerraformConfig, name: str, scope: Scope) -> list[Statement]:
    """Every statement of a policy document as Terraform would merge it."""
    document = config.policy_document(name)
    assert set(document) <= {
        "count",
        "statement",
        "dynamic",
        "source_policy_documents",
    }, f"{name} uses attributes the tests do not read: {sorted(document)}"
    statements: list[Statement] = []
    for source in document.get("source_policy_documents", ()):
        statements += policy_statements(config, document_name(source), scope)
    statements += [_statement(body, scope) for body in document.get("statement", ())]
    for dynamic in document.get("dynamic", ()):
        for label, block in dynamic.items():
            assert label == "statement", f"dynamic {label!r} in {name}"
            (content,) = block["content"]
            for item in render(block["for_each"], scope):
                statements.append(_statement(content, replace(scope, iteration=item)))
    sids = [s.sid for s in statements if s.sid]
    assert len(sids) == len(set(sids)), f"duplicate Sid in {name}: {sids}"
    return statements


def grants(statements: list[Statement]) -> set[tuple[str, str]]:
    """(action, resource) pairs the Allow statements grant, conditions aside."""
    return {
        (action, resource)
        for statement in statements
        if statement.effect == "Allow"
        for action in statement.actions
        for resource in statement.resources
    }


def sample_refs() -> dict[str, Any]:
    return {
        "data.aws_partition.current.partition": PARTITION,
        "data.aws_partition.current.dns_suffix": "amazonaws.com",
        "data.aws_caller_identity.current.account_id": ACCOUNT_ID,
        "data.aws_region.current.region": REGION,
        "aws_s3_bucket.dvc.id": BUCKET,
        "aws_s3_bucket.dvc.arn": f"arn:aws:s3:::{BUCKET}",
        "aws_iam_openid_connect_provider.github[*].arn": [OIDC_PROVIDER_ARN],
    }
