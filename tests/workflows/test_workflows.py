"""The workflows, parsed: triggers, permissions, pinning, fork safety, and that every step that
does work calls a make target that exists or a command of .github/scripts/train_pr.py (so CI and
a developer run the same thing). A privileged trigger (pull_request_target, workflow_run) and an
action not pinned to a full SHA are zizmor's `dangerous-triggers` and `unpinned-uses` errors in
`make scan-workflows`, so no test here restates them."""

from __future__ import annotations

import re
import shlex
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[2]

USES_LINE = re.compile(r"^\s*(?:-\s+)?uses:\s*(\S+)(.*)$")
SAME_REPO = "github.event.pull_request.head.repo.full_name == github.repository"

# What each job may do with GITHUB_TOKEN; anything more is a finding.
EXPECTED_PERMISSIONS = {
    ("tests.yml", "test"): {"contents": "read"},
    ("tests.yml", "fork-test"): {"contents": "read"},
    ("tests.yml", "score-large"): {"contents": "read"},
    ("train.yml", "data"): {"contents": "read", "id-token": "write"},
    ("train.yml", "train"): {"contents": "read", "id-token": "write"},
    ("train.yml", "commit-back"): {"contents": "write", "actions": "write"},
    ("train.yml", "comment"): {"pull-requests": "write"},
    ("deploy.yml", "deploy"): {"contents": "read", "id-token": "write"},
}


def jobs(workflows: dict[str, dict[Any, Any]]) -> Iterator[tuple[str, str, dict[str, Any]]]:
    for name, workflow in workflows.items():
        for job_id, job in workflow["jobs"].items():
            yield name, job_id, job


def steps(workflows: dict[str, dict[Any, Any]]) -> Iterator[tuple[str, str, dict[str, Any]]]:
    for name, job_id, job in jobs(workflows):
        for step in job.get("steps", []):
            yield name, job_id, step


def step_index(job: dict[str, Any], predicate: Any) -> int:
    for index, step in enumerate(job["steps"]):
        if predicate(step):
            return index
    raise AssertionError("no such step")


def first(job: dict[str, Any], predicate: Any) -> dict[str, Any]:
    step: dict[str, Any] = job["steps"][step_index(job, predicate)]
    return step


def uses(action: str) -> Any:
    return lambda step: str(step.get("uses", "")).startswith(f"{action}@")


def artifact(name: str) -> Any:
    return lambda step: step.get("with", {}).get("name") == name


def runs(target: str) -> Any:
    return lambda step: str(step.get("run", "")).strip() == f"make {target}"


TRAIN_PR = ".github/scripts/train_pr.py"


def runs_script(command: str, python: str = ".venv/bin/python") -> Any:
    """The step runs train_pr.py's `command`: with the project's environment in the train job,
    on the runner's python3 in the jobs that have none."""
    return lambda step: str(step.get("run", "")).strip() == f"{python} {TRAIN_PR} {command}"


def test_tests_run_on_pull_requests_pushes_to_main_and_dispatch(triggers, workflows):
    on = triggers(workflows["tests.yml"])
    assert set(on) == {"push", "pull_request", "workflow_dispatch"}
    assert on["push"]["branches"] == ["main"]
    # No path filter: every change is linted and tested.
    assert not (on["pull_request"] or {}).get("paths")


def test_train_runs_only_on_pull_requests_touching_the_model_inputs(triggers, workflows):
    on = triggers(workflows["train.yml"])
    assert set(on) == {"pull_request"}
    assert set(on["pull_request"]["paths"]) == {
        "training/**",
        "params.yaml",
        "dvc.yaml",
        "Pipfile.lock",
        "data/**",
        "**/*.dvc",
    }


def test_deploy_runs_on_main_when_service_model_or_deployment_change_and_by_hand(
    triggers, workflows
):
    on = triggers(workflows["deploy.yml"])
    assert set(on) == {"push", "workflow_dispatch"}
    assert on["push"]["branches"] == ["main"]
    paths = set(on["push"]["paths"])
    assert {"serving/app/**", "serving/deployment/**", "dvc.lock", "Pipfile.lock"} <= paths
    # A manual run from another branch must not reach production.
    assert workflows["deploy.yml"]["jobs"]["deploy"]["if"] == "github.ref == 'refs/heads/main'"


def test_every_workflow_defaults_to_read_only_contents(workflows):
    for name, workflow in workflows.items():
        assert workflow["permissions"] == {"contents": "read"}, name


def test_each_job_has_exactly_the_permissions_it_needs(workflows):
    seen = {}
    for name, job_id, job in jobs(workflows):
        seen[(name, job_id)] = job.get("permissions", workflows[name]["permissions"])
    assert seen == EXPECTED_PERMISSIONS


def test_every_action_pin_names_its_version_in_a_comment_and_one_sha_per_action(workflow_files):
    pins: dict[str, set[str]] = {}
    for path in workflow_files:
        for number, line in enumerate(path.read_text(encoding="utf-8").splitlines(), 1):
            match = USES_LINE.match(line)
            if not match:
                continue
            ref, rest = match.groups()
            where = f"{path.name}:{number}"
            assert re.match(r"^\s+#\s+v\d+(\.\d+)*\b", rest), f"{where}: no `# vX.Y.Z` comment"
            action, sha = ref.split("@")
            pins.setdefault(action, set()).add(sha)
    assert pins, "no `uses:` found; is the line pattern stale?"
    drift = {action: shas for action, shas in pins.items() if len(shas) > 1}
    assert not drift, f"one action pinned to several SHAs: {drift}"


def test_checkout_keeps_no_token_except_in_the_job_that_pushes(workflows):
    for name, job_id, job in jobs(workflows):
        permissions = job.get("permissions", workflows[name]["permissions"])
        for step in job["steps"]:
            if not uses("actions/checkout")(step):
                continue
            persist = step.get("with", {}).get("persist-credentials")
            if permissions.get("contents") == "write":
                assert persist is True, f"{name}/{job_id} pushes, so it keeps the token"
            else:
                assert persist is False, f"{name}/{job_id}: checkout must not keep the token"


# CI-only plumbing a developer never runs, one line each: the commit-back job's hand-over.
CI_ONLY = {"tar", "git", "gh"}


def test_every_run_step_calls_a_make_target_or_a_train_pr_command(workflows, make_targets, script):
    commands = script("train_pr").COMMANDS
    for name, job_id, step in steps(workflows):
        if "run" not in step:
            continue
        script = str(step["run"])
        # Values reach scripts through env:, never pasted into the shell by an expression.
        assert "${{" not in script, f"{name}/{job_id}: expression inside run: {script!r}"
        lines = [ln.strip() for ln in script.splitlines()]
        lines = [ln for ln in lines if ln and not ln.startswith("#")]
        assert lines, f"{name}/{job_id}: empty run step"
        for line in lines:
            words = shlex.split(line)
            if words[1:2] == [TRAIN_PR]:
                assert words[0] in (".venv/bin/python", "python3"), line
                assert words[2:], line
                assert words[2] in commands, line
                continue
            if words[0] in CI_ONLY and job_id in ("train", "commit-back"):
                continue
            assert words[0] == "make", (
                f"{name}/{job_id}: `{line}` goes through neither make nor {TRAIN_PR}"
            )
            targets = [w for w in words[1:] if not w.startswith("-") and "=" not in w]
            assert targets, f"{name}/{job_id}: `{line}` names no target"
            missing = [t for t in targets if t not in make_targets]
            assert not missing, f"{name}/{job_id}: no make target {missing}"


def test_the_test_workflow_lints_and_tests_with_python_from_the_pipfile(workflows):
    job = workflows["tests.yml"]["jobs"]["test"]
    setup = first(job, uses("actions/setup-python"))
    assert setup["with"]["python-version-file"] == "Pipfile"
    assert setup["with"]["cache"] == "pip"
    assert setup["with"]["cache-dependency-path"] == "Pipfile.lock"
    order = [step_index(job, runs(t)) for t in ("setup-development-pipenv", "lint", "test")]
    assert order == sorted(order)


@pytest.mark.parametrize(
    ("job_id", "target"), [("fork-test", "fork-test"), ("score-large", "score-test-large")]
)
def test_each_slow_check_runs_beside_the_tests_and_after_them_in_ci_run(workflows, job_id, target):
    job = workflows["tests.yml"]["jobs"][job_id]
    # Its own job, not waiting for `make test` and not inside its time budget.
    assert "needs" not in job
    assert step_index(job, runs("setup-development-pipenv")) < step_index(job, runs(target))
    ci_run = [ln.strip() for ln in (ROOT / ".ci/run").read_text(encoding="utf-8").splitlines()]
    assert ci_run.index("make test") < ci_run.index(f"make {target}")


def test_train_tests_and_gates_the_model_before_anything_leaves_the_runner(workflows):
    job = workflows["train.yml"]["jobs"]["train"]
    train = step_index(job, runs("train"))
    test_model = step_index(job, runs("test-model"))
    compare = step_index(job, runs_script("gate"))
    push = step_index(job, runs("dvc-push"))
    assert train < test_model < compare < min(aws_steps(job)) < push
    # The report exists even when the comparison fails, for the comment job.
    assert step_index(job, runs_script("report")) < compare


def aws_steps(job: dict[str, Any]) -> list[int]:
    aws = uses("aws-actions/configure-aws-credentials")
    return [index for index, step in enumerate(job["steps"]) if aws(step)]


def test_the_data_is_pulled_by_base_branch_code_and_no_credential_reaches_the_prs_code(
    workflows, script
):
    train_pr = script("train_pr")
    data = workflows["train.yml"]["jobs"]["data"]
    base, head = data["steps"][0], data["steps"][1]
    assert base["with"]["ref"] == "${{ github.event.pull_request.base.sha }}"
    assert "path" not in base["with"], "the base branch's code is what this job runs"
    assert head["with"]["ref"] == "${{ github.event.pull_request.head.sha }}"
    assert Path(head["with"]["path"]) == train_pr.PR_HEAD
    pointers = step_index(data, runs_script("data-pointers", python="python3"))
    setup = step_index(data, runs("setup-development-pipenv"))
    pull = step_index(data, runs_script("pull-data"))
    upload = step_index(data, artifact("pr-data"))
    assert pointers < setup < min(aws_steps(data)) <= max(aws_steps(data)) < pull < upload
    # Only the pointers step decides whether credentials are configured at all.
    for index in aws_steps(data):
        assert "steps.pointers.outputs.data == 'tracked'" in data["steps"][index]["if"]
    assert Path(data["steps"][upload]["with"]["path"]) == train_pr.PR_DATA

    train = workflows["train.yml"]["jobs"]["train"]
    assert train["needs"] == "data"
    # Without credentials (a fork's PR) the data job leaves its notice and nothing trains.
    assert train["if"] == "needs.data.outputs.data != 'unavailable'"
    download = step_index(train, artifact("pr-data"))
    assert train["steps"][download]["if"] == "needs.data.outputs.data == 'pulled'"
    assert download < step_index(train, runs("train")) < min(aws_steps(train))


def test_train_trains_the_pr_head_and_can_compare_with_the_base_branch(workflows):
    job = workflows["train.yml"]["jobs"]["train"]
    checkout = job["steps"][0]
    assert checkout["with"]["ref"] == "${{ github.event.pull_request.head.sha }}"
    assert checkout["with"]["fetch-depth"] == 0
    assert job["env"]["BASE_REF"] == "origin/${{ github.base_ref }}"


def test_fork_prs_get_no_secrets_push_commit_or_comment(workflows):
    workflow = workflows["train.yml"]
    for job_id in ("data", "train"):
        assert workflow["jobs"][job_id]["env"]["SAME_REPO"] == "${{ " + SAME_REPO + " }}"
    for step in workflow["jobs"]["train"]["steps"] + workflow["jobs"]["data"]["steps"]:
        uses_secrets = "secrets." in yaml.safe_dump(step)
        pushes = step.get("run") == "make dvc-push"
        aws = str(step.get("uses", "")).startswith("aws-actions/")
        if uses_secrets or pushes or aws:
            assert "env.SAME_REPO == 'true'" in step.get("if", ""), step.get("name")
    for job_id in ("commit-back", "comment"):
        assert SAME_REPO in workflow["jobs"][job_id]["if"], job_id


def test_commit_back_pushes_the_trained_commit_and_reruns_the_tests(triggers, workflows):
    job = workflows["train.yml"]["jobs"]["commit-back"]
    assert job["needs"] == "train"
    assert job["steps"][0]["with"]["ref"] == "${{ github.event.pull_request.head.sha }}"
    commit = first(job, uses("stefanzweifel/git-auto-commit-action"))["with"]
    # No fetch, no switch to the branch, no force: HEAD (the trained commit plus the outputs)
    # goes to the branch as a fast-forward or is rejected.
    assert commit["skip_fetch"] is commit["skip_checkout"] is True
    assert "push_options" not in commit
    assert commit["branch"] == "${{ github.head_ref }}"
    assert commit["commit_author"].startswith("github-actions[bot] <")
    dispatch = job["steps"][-1]
    assert dispatch["if"] == "steps.commit.outputs.changes_detected == 'true'"
    workflow = shlex.split(dispatch["run"])[3]
    assert shlex.split(dispatch["run"])[:3] == ["gh", "workflow", "run"]
    assert "workflow_dispatch" in triggers(workflows[workflow])


def test_every_output_git_tracks_is_one_the_commit_back_hands_over():
    """The train job hands over what training changed that git does not ignore: dvc.lock and
    each `cache: false` output of dvc.yaml must be tracked, each cached one ignored (in DVC)."""
    stages = yaml.safe_load((ROOT / "dvc.yaml").read_text(encoding="utf-8"))["stages"].values()
    entries = [e for s in stages for k in ("outs", "metrics", "plots") for e in s.get(k) or []]
    outputs: dict[str, Any] = {}
    for entry in entries:  # a path, or {path: options}
        outputs.update(entry if isinstance(entry, dict) else {entry: None})
    tracked = ["dvc.lock", *(p for p, o in outputs.items() if (o or {}).get("cache") is False)]
    cached = [p for p in outputs if p not in tracked]
    ignored = subprocess.run(
        ["git", "check-ignore", "--no-index", *tracked, *cached],
        cwd=ROOT,
        capture_output=True,
        text=True,
        check=False,
    ).stdout.split()
    assert sorted(ignored) == sorted(cached)


def test_the_comment_is_posted_even_when_the_comparison_fails(workflows, script):
    job = workflows["train.yml"]["jobs"]["comment"]
    assert job["needs"] == "train"
    assert job["if"].startswith("always()")
    assert "needs.train.outputs.comment-artifact != ''" in job["if"]
    post = job["steps"][-1]
    assert uses("marocchino/sticky-pull-request-comment")(post)
    assert Path(post["with"]["path"]) == script("train_pr").COMMENT


@pytest.mark.parametrize(
    ("workflow", "job_id", "variable"),
    [
        ("train.yml", "train", "AWS_TRAIN_ROLE_ARN"),
        ("train.yml", "data", "AWS_DATA_ROLE_ARN"),
        ("deploy.yml", "deploy", "AWS_DEPLOY_ROLE_ARN"),
    ],
)
def test_aws_auth_uses_the_oidc_role_when_set_else_the_access_key(
    workflows, workflow, job_id, variable
):
    job = workflows[workflow]["jobs"][job_id]
    assert len(aws_steps(job)) == 2
    oidc, key = (job["steps"][index] for index in aws_steps(job))
    assert f"vars.{variable} != ''" in oidc["if"]
    assert oidc["with"] == {
        "role-to-assume": f"${{{{ vars.{variable} }}}}",
        "aws-region": "${{ vars.AWS_REGION }}",
    }
    assert f"vars.{variable} == ''" in key["if"]
    assert key["with"] == {
        "aws-access-key-id": "${{ secrets.AWS_ACCESS_KEY_ID }}",
        "aws-secret-access-key": "${{ secrets.AWS_SECRET_ACCESS_KEY }}",
        "aws-region": "${{ vars.AWS_REGION }}",
    }


def test_deploys_never_overlap_and_target_the_production_environment(workflows):
    workflow = workflows["deploy.yml"]
    assert workflow["concurrency"]["cancel-in-progress"] is False
    assert workflow["concurrency"]["group"]
    job = workflow["jobs"]["deploy"]
    assert job["environment"] == "production"
    order = [step_index(job, runs(t)) for t in ("dvc-pull", "deploy", "smoke-test")]
    assert order == sorted(order)
    node = first(job, uses("actions/setup-node"))
    assert int(node["with"]["node-version"]) in (20, 22, 24)


def test_deploy_builds_from_the_lock_files_not_from_caches(workflows):
    for step in workflows["deploy.yml"]["jobs"]["deploy"]["steps"]:
        assert "cache" not in step.get("with", {}), step.get("name")


def test_dependabot_updates_the_actions_the_python_lock_and_the_image_base():
    config = yaml.safe_load((ROOT / ".github/dependabot.yml").read_text(encoding="utf-8"))
    # The npm entry names its two directories under `directories`.
    ecosystems = {(u["package-ecosystem"], u.get("directory")) for u in config["updates"]}
    assert {("github-actions", "/"), ("pip", "/"), ("docker", "/serving/app")} <= ecosystems


def test_the_image_base_is_a_literal_from_line_dependabot_can_bump() -> None:
    """Dependabot's docker ecosystem reads FROM lines only, not ARG values (dependabot-core
    #2057): the base must be written, with its digest, in a FROM."""
    dockerfile = (ROOT / "serving/app/Dockerfile").read_text(encoding="utf-8")
    pinned = re.findall(r"^FROM (docker\.io/\S+@sha256:[0-9a-f]{64})\b", dockerfile, re.M)
    assert len(pinned) == 1, "one FROM names the registry image, by digest"
    assert "${" not in "".join(re.findall(r"^FROM .*$", dockerfile, re.M))


@pytest.fixture(scope="module")
def make_variable(make_env):
    def value(name: str) -> str:
        rule = f"print-{name}: ; @echo $({name})"
        argv = ["make", "--no-print-directory", "-s", "--eval", rule, f"print-{name}"]
        return subprocess.check_output(argv, cwd=ROOT, env=make_env, text=True).strip()

    return value


def uploaded_after(job: dict[str, Any], command: str, name: str) -> dict[str, Any]:
    """The upload-artifact step named `name`, which must follow the step running `command`."""
    assert step_index(job, artifact(name)) > step_index(job, runs_script(command)), name
    return first(job, artifact(name))


def test_the_artifacts_carry_what_the_script_writes_to_the_jobs_that_read_them(workflows, script):
    train_pr, jobs = script("train_pr"), workflows["train.yml"]["jobs"]
    comment = uploaded_after(jobs["train"], "report", "pr-comment")
    plots = uploaded_after(jobs["train"], "report", "plots")
    assert Path(comment["with"]["path"]) == train_pr.COMMENT
    assert Path(plots["with"]["path"]) == train_pr.PLOTS
    staged = first(jobs["train"], artifact("training-outputs"))
    archive = Path(staged["with"]["path"])
    assert step_index(jobs["train"], artifact("training-outputs")) > step_index(
        jobs["train"], lambda s: f"-cf {archive}" in s.get("run", "")
    )
    unpack = first(jobs["commit-back"], lambda s: s.get("run", "").startswith("tar -xf"))
    # Nothing lands in .git (hooks, config) in the job that holds a write token.
    assert shlex.split(unpack["run"]) == ["tar", "-xf", str(archive), "--exclude=.git"]
    for job_id, upload in (("commit-back", staged), ("comment", comment)):
        download = first(jobs[job_id], uses("actions/download-artifact"))
        assert download["with"]["name"] == upload["with"]["name"]
        assert Path(download["with"]["path"]) in (Path(upload["with"]["path"]), train_pr.CI_DIR)


def test_the_data_job_finds_the_pointers_before_it_has_the_projects_environment(workflows):
    """data-pointers runs train_pr.py on the runner's python3, before the environment is
    built (most PRs need none): importing it must need nothing outside the standard library."""
    code = (
        "import runpy, sys; runpy.run_path(sys.argv[1]); "
        "print(sorted(m for m in ('yaml', 'dvc', 'pandas') if m in sys.modules))"
    )
    result = subprocess.run(
        [sys.executable, "-c", code, str(ROOT / TRAIN_PR)],
        capture_output=True,
        text=True,
        check=True,
    )
    assert result.stdout.strip() == "[]"
    job = workflows["train.yml"]["jobs"]["data"]
    pointers = step_index(job, runs_script("data-pointers", "python3"))
    assert pointers < step_index(job, runs("setup-development-pipenv"))


def test_the_model_tests_the_train_job_runs_exist(make_variable):
    paths = make_variable("CI_MODEL_TESTS").split()
    assert paths
    for path in paths:
        assert list((ROOT / path).glob("test_*.py")), f"{path} holds no tests"


def test_the_smoke_test_reads_the_outputs_file_that_make_deploy_writes(make_variable, make_env):
    # Dry run, with the environment stamps taken as up to date: prints deploy's recipe only.
    stamps = [make_variable("ENV_STAMP"), make_variable("CDK_STAMP")]
    argv = ["make", "--no-print-directory", "-n", *(f"-o{s}" for s in stamps if s), "deploy"]
    recipe = subprocess.check_output(argv, cwd=ROOT, env=make_env, text=True)
    line = next(ln for ln in recipe.splitlines() if "--outputs-file" in ln)
    directory = re.match(r"^cd (\S+) &&", line)
    outputs = re.search(r"--outputs-file[ =](\S+)", line)
    assert outputs, line
    written = Path(directory.group(1) if directory else ".") / outputs.group(1)
    assert written == Path(make_variable("CI_CDK_OUTPUTS"))
