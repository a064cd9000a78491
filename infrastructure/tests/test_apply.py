"""The bootstrap applied for real, against moto's S3/IAM/STS server with IAM enforced.

For each mode, the committed configuration is applied (through a provider override that
exists only in the scratch copy), then the identities it created are used with their own
credentials: real `dvc push`/`dvc pull` through the project's DVC config, and every call
they must be refused. Then a plain `terraform destroy` must change nothing on a bucket that
holds data, and the documented teardown must remove everything. The tests of one mode run in
file order on one deployment: the last two destroy it.

What moto cannot judge is pinned at plan level in bootstrap.tftest.hcl instead:
- it accepts any web-identity token, so the OIDC trust conditions (audience, subjects) are
  not exercised here: the roles are assumed with a dummy token;
- it ignores `StringLike` conditions, so the `s3:prefix` limit on listing is not either;
- it matches trust principals literally, so a trust in the account's `:root` (how the CDK
  bootstrap roles trust) admits nobody: the stand-in CDK roles trust "*", and who may
  assume them is decided here by the callers' own policies, as in AWS;
- it evaluates every Secrets Manager call against the resource "*", so a grant on one
  secret's ARN (the deploy identity's read of the API keys) admits nothing here: the calls
  below show that no Secrets Manager right is granted beyond that ARN, and the read itself is
  pinned in bootstrap.tftest.hcl;
- it ignores bucket-policy conditions, so the TLS-only denies would deny every object call,
  over HTTPS or not. The fixture asserts the policy is in place, then deletes it for the
  permission checks; the destroy-guard test re-applies it before destroying.
"""

from __future__ import annotations

import json
import re
import shutil
import subprocess
import sys
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import boto3
import pytest
from botocore.config import Config
from botocore.exceptions import ClientError

from bench import procs

from .terraform import REPO_ROOT, Terraform

pytestmark = [pytest.mark.slow, pytest.mark.needs("terraform")]

REGION = "eu-west-1"
ACCOUNT_ID = "123456789012"  # moto's default account
REPOSITORY = "octo-org/penguins-mlops"
CDK_QUALIFIER = "hnb659fds"
# Unauthenticated calls moto allows before enforcing IAM: exactly the three that create
# the administrator below (CreateUser, PutUserPolicy, CreateAccessKey).
UNAUTHENTICATED_CALLS = 3
ADMIN_POLICY = {
    "Version": "2012-10-17",
    "Statement": [{"Effect": "Allow", "Action": "*", "Resource": "*"}],
}


def trust(principal: str) -> str:
    """A trust policy that lets `principal` assume the role: the account's `:root` would let
    anyone in the account in."""
    statement = {"Effect": "Allow", "Principal": {"AWS": principal}, "Action": "sts:AssumeRole"}
    return json.dumps({"Version": "2012-10-17", "Statement": [statement]})


def cdk_role_arn(role: str) -> str:
    return f"arn:aws:iam::{ACCOUNT_ID}:role/cdk-{CDK_QUALIFIER}-{role}-role-{ACCOUNT_ID}-{REGION}"


@dataclass(frozen=True)
class Credentials:
    access_key_id: str
    secret_access_key: str
    session_token: str | None = None

    def env(self) -> dict[str, str]:
        env = {
            "AWS_ACCESS_KEY_ID": self.access_key_id,
            "AWS_SECRET_ACCESS_KEY": self.secret_access_key,
            "AWS_DEFAULT_REGION": REGION,
            "AWS_REGION": REGION,
            "AWS_EC2_METADATA_DISABLED": "true",
        }
        if self.session_token:
            env["AWS_SESSION_TOKEN"] = self.session_token
        return env


@dataclass
class Moto:
    endpoint: str
    admin: Credentials = field(default_factory=lambda: Credentials("unset", "unset"))

    def client(self, service: str, credentials: Credentials) -> Any:
        return boto3.client(
            service,
            endpoint_url=self.endpoint,
            region_name=REGION,
            aws_access_key_id=credentials.access_key_id,
            aws_secret_access_key=credentials.secret_access_key,
            aws_session_token=credentials.session_token,
            config=Config(s3={"addressing_style": "path"}, retries={"max_attempts": 1}),
        )


def tool(name: str) -> str:
    """The tool installed beside this interpreter (the project's .venv)."""
    return str(Path(sys.executable).with_name(name))


@pytest.fixture(scope="module")
def moto(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Moto]:
    """moto's server on a free loopback port with IAM enforced, an administrator, and the
    roles `cdk bootstrap` would have created; stopped whatever happens."""
    port = procs.free_port()
    log = tmp_path_factory.mktemp("moto") / "moto.log"
    env = {key: value for key, value in procs.tool_env().items() if not key.startswith("AWS_")}
    env["INITIAL_NO_AUTH_ACTION_COUNT"] = str(UNAUTHENTICATED_CALLS)
    argv = [tool("moto_server"), "-H", "127.0.0.1", "-p", str(port)]
    with procs.running(argv, cwd=log.parent, env=env, log=log) as server:
        if not procs.wait_listening(port, server):
            pytest.fail(f"moto's server did not start:\n{log.read_text()}")
        server_ = Moto(endpoint=f"http://127.0.0.1:{port}")
        iam = server_.client("iam", Credentials("bootstrap", "bootstrap"))
        iam.create_user(UserName="admin")
        iam.put_user_policy(
            UserName="admin", PolicyName="admin", PolicyDocument=json.dumps(ADMIN_POLICY)
        )
        key = iam.create_access_key(UserName="admin")["AccessKey"]
        server_.admin = Credentials(key["AccessKeyId"], key["SecretAccessKey"])
        # From here on every call is authenticated and authorised.
        admin_iam = server_.client("iam", server_.admin)
        with pytest.raises(ClientError):
            server_.client("iam", Credentials("nobody", "nobody")).list_users()
        # `cdk bootstrap`'s roles trust the account (`:root`): in AWS, any principal of the
        # account whose own policy allows it. moto matches trust principals literally and
        # has one account, so "*" stands in for that here; the callers' own policies decide.
        trust_account = trust("*")
        for role in ("deploy", "file-publishing", "image-publishing", "lookup"):
            admin_iam.create_role(
                RoleName=cdk_role_arn(role).rsplit("/", 1)[1],
                AssumeRolePolicyDocument=trust_account,
            )
        admin_iam.create_role(RoleName="unrelated-admin", AssumeRolePolicyDocument=trust_account)
        server_.client("s3", server_.admin).create_bucket(
            Bucket="another-teams-bucket",
            CreateBucketConfiguration={"LocationConstraint": REGION},
        )
        yield server_


def provider_override(endpoint: str) -> str:
    """The provider settings that point the committed configuration at moto: written into
    the scratch copy only (Terraform merges *_override.tf files over the configuration)."""
    return f"""provider "aws" {{
  s3_use_path_style       = true
  skip_metadata_api_check = true
  endpoints {{
    iam = "{endpoint}"
    s3  = "{endpoint}"
    sts = "{endpoint}"
  }}
}}
"""


@dataclass
class Deployment:
    mode: str
    terraform: Terraform
    moto: Moto
    outputs: dict[str, Any]
    bucket_policy: dict[str, Any]
    second_plan: subprocess.CompletedProcess[str]

    @property
    def bucket(self) -> str:
        return str(self.outputs["dvc_bucket_name"])

    def admin(self, service: str) -> Any:
        return self.moto.client(service, self.moto.admin)

    def state(self) -> set[str]:
        return set(self.terraform.run("state", "list").stdout.split())

    def identity(self, job: str) -> Credentials:
        """The identity of a workflow job, "train", "deploy" or "data" (pulls a pull
        request's data): that job's role, or the access-key user."""
        if self.mode == "oidc":
            return self.assume_with_web_identity(self.outputs[f"aws_{job}_role_arn"])
        return self.user()

    def user(self) -> Credentials:
        secret = self.terraform.run("output", "-raw", "aws_secret_access_key").stdout
        return Credentials(self.outputs["aws_access_key_id"], secret)

    def assume_with_web_identity(self, role_arn: str) -> Credentials:
        # AWS takes this call unsigned, the token being the only proof; moto verifies no
        # token (see the module docstring) but fails on an unsigned request once IAM is
        # enforced, so it is sent signed, as the administrator: a handler registered before
        # botocore's own (which leaves this operation unsigned) asks for SigV4.
        sts = self.moto.client("sts", self.moto.admin)
        sts.meta.events.register_first(
            "choose-signer.sts.AssumeRoleWithWebIdentity", lambda **_: "v4"
        )
        issued = sts.assume_role_with_web_identity(
            RoleArn=role_arn,
            RoleSessionName="github-actions",
            WebIdentityToken="unverified-by-moto",
        )["Credentials"]
        return Credentials(issued["AccessKeyId"], issued["SecretAccessKey"], issued["SessionToken"])

    def role_name(self, job: str) -> str:
        """The name of a job's role (OIDC mode)."""
        return str(self.outputs[f"aws_{job}_role_arn"]).rsplit("/", 1)[1]


def user_tfvars(mode: str, force_destroy: bool = False) -> dict[str, object]:
    return {
        "aws_region": REGION,
        "github_repository": REPOSITORY,
        "github_auth": mode,
        "name_prefix": f"apply-{mode.replace('_', '-')}",
        "bucket_name_prefix": f"apply-{mode.replace('_', '-')}-",
        "cdk_qualifier": CDK_QUALIFIER,
        "force_destroy": force_destroy,
    }


def apply(mode: str, moto: Moto, terraform: Terraform) -> Deployment:
    """init, apply, a second plan, the outputs; then the bucket policy recorded and removed."""
    terraform.env = moto.admin.env()
    (terraform.workdir / "moto_override.tf").write_text(
        provider_override(moto.endpoint), encoding="utf-8"
    )
    (terraform.workdir / "terraform.tfvars.json").write_text(json.dumps(user_tfvars(mode)), "utf-8")
    terraform.run("init", "-input=false")
    try:
        terraform.run("apply", "-auto-approve", "-input=false", timeout=900)
    except AssertionError as error:
        if mode != "oidc" or "EntityAlreadyExists" not in str(error):
            raise
        # Seen once under `make test`'s load: the configuration's only create of the OIDC
        # provider was answered 409 by a fresh moto (no error before it in moto's log): most
        # likely the SDK's retry of a request moto had already carried out when the connection
        # broke. The provider exists as configured: take it into the state, apply the rest.
        provider = f"arn:aws:iam::{ACCOUNT_ID}:oidc-provider/token.actions.githubusercontent.com"
        terraform.run(
            "import", "-input=false", "aws_iam_openid_connect_provider.github[0]", provider
        )
        terraform.run("apply", "-auto-approve", "-input=false", timeout=900)
    # 0: no change at all; 2 would be a change Terraform wants right after its own apply.
    second_plan = terraform.run("plan", "-detailed-exitcode", "-input=false", check=False)
    outputs = {
        name: value["value"]
        for name, value in json.loads(terraform.run("output", "-json").stdout).items()
    }
    s3 = moto.client("s3", moto.admin)
    bucket = outputs["dvc_bucket_name"]
    policy = json.loads(s3.get_bucket_policy(Bucket=bucket)["Policy"])
    # moto denies every object call under this policy (it ignores the TLS conditions); the
    # policy was recorded above and is checked by test_bucket_is_protected.
    s3.delete_bucket_policy(Bucket=bucket)
    return Deployment(mode, terraform, moto, outputs, policy, second_plan)


MODES = ["oidc", "access_key"]


# Under `make test` each mode runs on its own worker (SPLIT_BY_PARAMETER in the root
# conftest.py), so the two applies overlap: most of an apply is the provider waiting for S3
# to report the lifecycle rules consistently.
@pytest.fixture(scope="module", params=MODES)
def deployment(
    request: pytest.FixtureRequest, moto: Moto, make_terraform: Callable[[str], Terraform]
) -> Deployment:
    mode: str = request.param
    return apply(mode, moto, make_terraform(f"apply-{mode}"))


def denied(call: Callable[..., object], **arguments: object) -> None:
    """The call, with the caller's credentials, is refused by IAM."""
    with pytest.raises(ClientError) as refused:
        call(**arguments)
    error = refused.value.response["Error"]
    assert error["Code"] in {"AccessDenied", "403", "AccessDeniedException"}, error


# --- The apply --------------------------------------------------------------------------

EXPECTED_STATE = {
    "oidc": {
        "aws_iam_openid_connect_provider.github[0]",
        "aws_iam_role.github_train[0]",
        "aws_iam_role_policy.github_train_dvc[0]",
        "aws_iam_role.github_data[0]",
        "aws_iam_role_policy.github_data_dvc[0]",
        "aws_iam_role.github_deploy[0]",
        "aws_iam_role_policy.github_deploy[0]",
    },
    "access_key": {
        "aws_iam_group.github_actions[0]",
        "aws_iam_group_policy.github_actions[0]",
        "aws_iam_user.github_actions[0]",
        "aws_iam_user_group_membership.github_actions[0]",
        "aws_iam_access_key.github_actions[0]",
    },
}
BUCKET_STATE = {
    "aws_s3_bucket.dvc",
    "aws_s3_bucket_public_access_block.dvc",
    "aws_s3_bucket_ownership_controls.dvc",
    "aws_s3_bucket_versioning.dvc",
    "aws_s3_bucket_server_side_encryption_configuration.dvc",
    "aws_s3_bucket_lifecycle_configuration.dvc",
    "aws_s3_bucket_policy.dvc",
    "terraform_data.destroy_guard",
}


def test_apply_creates_exactly_the_modes_resources_and_a_second_plan_is_empty(deployment):
    managed = {address for address in deployment.state() if not address.startswith("data.")}
    assert managed == BUCKET_STATE | EXPECTED_STATE[deployment.mode]
    plan = deployment.second_plan
    assert plan.returncode == 0, plan.stdout[-4000:] + plan.stderr[-4000:]


def test_next_steps_name_outputs_that_exist(deployment):
    steps = deployment.outputs["next_steps"]
    assert f"make configure-dvc BUCKET={deployment.bucket}" in steps
    for name in re.findall(r"output -raw (\w+)", steps):
        assert deployment.terraform.run("output", "-raw", name).stdout, name


def test_bucket_is_protected(deployment):
    s3 = deployment.admin("s3")
    bucket = deployment.bucket
    assert bucket.startswith(f"apply-{deployment.mode.replace('_', '-')}-")
    ownership = s3.get_bucket_ownership_controls(Bucket=bucket)["OwnershipControls"]
    assert ownership["Rules"] == [{"ObjectOwnership": "BucketOwnerEnforced"}]
    (rule,) = s3.get_bucket_encryption(Bucket=bucket)["ServerSideEncryptionConfiguration"]["Rules"]
    assert rule["ApplyServerSideEncryptionByDefault"] == {"SSEAlgorithm": "AES256"}
    rules = {r["ID"]: r for r in s3.get_bucket_lifecycle_configuration(Bucket=bucket)["Rules"]}
    assert (
        rules["expire-noncurrent-versions"]["NoncurrentVersionExpiration"]["NoncurrentDays"] == 90
    )
    assert rules["abort-incomplete-multipart-uploads"]["AbortIncompleteMultipartUpload"] == {
        "DaysAfterInitiation": 7
    }
    statements = deployment.bucket_policy["Statement"]
    assert {(s["Effect"], s["Action"], s["Principal"]) for s in statements} == {
        ("Deny", "s3:*", "*")
    }
    assert [s["Condition"] for s in statements] == [
        {"Bool": {"aws:SecureTransport": "false"}},
        {"NumericLessThan": {"s3:TlsVersion": "1.2"}},
    ]


def test_identities_hold_only_the_inline_policies_terraform_wrote(deployment):
    iam = deployment.admin("iam")
    if deployment.mode == "oidc":
        for job, policy in (
            ("train", "dvc-read-write"),
            ("data", "dvc-read"),
            ("deploy", "dvc-read-and-cdk-deploy"),
        ):
            role = deployment.role_name(job)
            assert iam.list_role_policies(RoleName=role)["PolicyNames"] == [policy]
            assert iam.list_attached_role_policies(RoleName=role)["AttachedPolicies"] == []
        prefix = str(user_tfvars(deployment.mode)["name_prefix"])
        assert not [u for u in iam.list_users()["Users"] if u["UserName"].startswith(prefix)]
    else:
        user = deployment.outputs["ci_user_name"]
        assert iam.list_user_policies(UserName=user)["PolicyNames"] == []
        assert iam.list_attached_user_policies(UserName=user)["AttachedPolicies"] == []
        (group,) = iam.list_groups_for_user(UserName=user)["Groups"]
        assert iam.list_group_policies(GroupName=group["GroupName"])["PolicyNames"] == [
            "dvc-read-write-and-cdk-deploy"
        ]
        assert (
            iam.list_attached_group_policies(GroupName=group["GroupName"])["AttachedPolicies"] == []
        )
        assert [
            key["AccessKeyId"] for key in iam.list_access_keys(UserName=user)["AccessKeyMetadata"]
        ] == [deployment.outputs["aws_access_key_id"]]


# --- What the identities may do ---------------------------------------------------------


def dvc_prefix_from_makefile() -> str:
    """The prefix `make configure-dvc` points the remote at: the grants must cover it."""
    makefile = (REPO_ROOT / "Makefile").read_text(encoding="utf-8")
    match = re.search(r'remote modify storage url "s3://\$\(BUCKET\)/([^"]+)"', makefile)
    assert match, "configure-dvc no longer sets the remote URL the way this test reads it"
    return match.group(1)


def dvc(workspace: Path, credentials: Credentials, *args: str) -> subprocess.CompletedProcess[str]:
    env = {key: value for key, value in procs.tool_env().items() if not key.startswith("AWS_")}
    env.update(credentials.env())
    return subprocess.run(
        [tool("dvc"), *args],
        cwd=workspace,
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )


def dvc_workspace(root: Path, deployment: Deployment) -> Path:
    """A DVC project with this repository's .dvc/config, pointed at the bucket the way
    `make configure-dvc` does, plus moto's endpoint in the git-ignored local config."""
    root.mkdir(parents=True)
    # A git repository, as the project is (its DVC config autostages into git).
    subprocess.run(["git", "init", "-q"], cwd=root, check=True, timeout=60)
    subprocess.run([tool("dvc"), "init", "-q"], cwd=root, check=True, timeout=120)
    shutil.copy2(REPO_ROOT / ".dvc" / "config", root / ".dvc" / "config")
    url = f"s3://{deployment.bucket}/{dvc_prefix_from_makefile()}"
    assert url == deployment.outputs["dvc_remote_url"]
    admin = deployment.moto.admin
    for args in (
        ("remote", "modify", "storage", "url", url),
        ("remote", "modify", "--local", "storage", "endpointurl", deployment.moto.endpoint),
    ):
        result = dvc(root, admin, *args)
        assert result.returncode == 0, result.stderr
    return root


def test_training_identity_pushes_and_deploy_identity_pulls_with_dvc(deployment, tmp_path):
    pusher = dvc_workspace(tmp_path / "pusher", deployment)
    payload = f"model trained for {deployment.mode}\n"
    (pusher / "model.bin").write_text(payload)
    assert dvc(pusher, deployment.identity("train"), "add", "model.bin").returncode == 0
    pushed = dvc(pusher, deployment.identity("train"), "push")
    assert pushed.returncode == 0, pushed.stdout + pushed.stderr

    puller = dvc_workspace(tmp_path / "puller", deployment)
    shutil.copy2(pusher / "model.bin.dvc", puller / "model.bin.dvc")
    pulled = dvc(puller, deployment.identity("deploy"), "pull")
    assert pulled.returncode == 0, pulled.stdout + pulled.stderr
    assert (puller / "model.bin").read_text() == payload

    if deployment.mode == "oidc":
        # The deploy and data roles read the model; neither can ever replace it.
        data_puller = dvc_workspace(tmp_path / "data-puller", deployment)
        shutil.copy2(pusher / "model.bin.dvc", data_puller / "model.bin.dvc")
        pulled = dvc(data_puller, deployment.identity("data"), "pull")
        assert pulled.returncode == 0, pulled.stdout + pulled.stderr
        assert (data_puller / "model.bin").read_text() == payload
        (puller / "model.bin").write_text("tampered\n")
        assert dvc(puller, deployment.identity("deploy"), "add", "model.bin").returncode == 0
        for reader in (deployment.identity("deploy"), deployment.identity("data")):
            refused = dvc(puller, reader, "push")
            assert refused.returncode != 0, refused.stdout


def test_ci_identities_are_refused_everything_outside_dvc(deployment):
    bucket = deployment.bucket
    admin_s3 = deployment.admin("s3")
    admin_s3.put_object(Bucket=bucket, Key="private/notes.txt", Body=b"not for CI")
    public_policy = json.dumps(
        {
            "Version": "2012-10-17",
            "Statement": [
                {
                    "Effect": "Allow",
                    "Principal": "*",
                    "Action": "s3:GetObject",
                    "Resource": f"arn:aws:s3:::{bucket}/*",
                }
            ],
        }
    )
    for credentials in {deployment.identity(job) for job in ("train", "deploy", "data")}:
        s3 = deployment.moto.client("s3", credentials)
        iam = deployment.moto.client("iam", credentials)
        denied(s3.put_object, Bucket=bucket, Key="private/x", Body=b"x")
        denied(s3.get_object, Bucket=bucket, Key="private/notes.txt")
        denied(s3.delete_object, Bucket=bucket, Key="private/notes.txt")
        denied(s3.get_object, Bucket="another-teams-bucket", Key="x")
        denied(s3.list_objects_v2, Bucket="another-teams-bucket")
        denied(s3.delete_bucket, Bucket=bucket)
        denied(s3.put_bucket_policy, Bucket=bucket, Policy=public_policy)
        denied(
            s3.put_bucket_versioning,
            Bucket=bucket,
            VersioningConfiguration={"Status": "Suspended"},
        )
        denied(s3.delete_public_access_block, Bucket=bucket)
        denied(s3.delete_bucket_encryption, Bucket=bucket)
        denied(
            s3.create_bucket,
            Bucket="ci-made-bucket",
            CreateBucketConfiguration={"LocationConstraint": REGION},
        )
        denied(iam.create_user, UserName="ci-made-user")
        denied(iam.create_access_key, UserName="admin")
        denied(
            iam.put_user_policy,
            UserName="admin",
            PolicyName="x",
            PolicyDocument=json.dumps(ADMIN_POLICY),
        )
    # Nothing above took effect.
    assert admin_s3.get_bucket_versioning(Bucket=bucket)["Status"] == "Enabled"
    assert admin_s3.get_object(Bucket=bucket, Key="private/notes.txt")["Body"].read()


def test_no_ci_identity_can_widen_its_own_permissions(deployment):
    admin_policy = json.dumps(ADMIN_POLICY)
    if deployment.mode == "oidc":
        for job in ("train", "data", "deploy"):
            role = deployment.role_name(job)
            own = deployment.moto.client("iam", deployment.identity(job))
            denied(own.put_role_policy, RoleName=role, PolicyName="x", PolicyDocument=admin_policy)
            denied(
                own.attach_role_policy,
                RoleName=role,
                PolicyArn="arn:aws:iam::aws:policy/AdministratorAccess",
            )
            denied(
                own.update_assume_role_policy,
                RoleName=role,
                PolicyDocument=trust(f"arn:aws:iam::{ACCOUNT_ID}:root"),
            )
    else:
        user = deployment.outputs["ci_user_name"]
        own = deployment.moto.client("iam", deployment.user())
        (group,) = deployment.admin("iam").list_groups_for_user(UserName=user)["Groups"]
        denied(own.put_user_policy, UserName=user, PolicyName="x", PolicyDocument=admin_policy)
        denied(
            own.put_group_policy,
            GroupName=group["GroupName"],
            PolicyName="x",
            PolicyDocument=admin_policy,
        )
        denied(own.create_access_key, UserName=user)
        denied(own.add_user_to_group, UserName=user, GroupName=group["GroupName"])


def test_only_the_deploy_identity_assumes_the_cdk_bootstrap_roles(deployment):
    deployer = deployment.moto.client("sts", deployment.identity("deploy"))
    for role in ("deploy", "file-publishing"):
        assumed = deployer.assume_role(RoleArn=cdk_role_arn(role), RoleSessionName="cdk")
        role_name = cdk_role_arn(role).rsplit("/", 1)[1]
        assert assumed["AssumedRoleUser"]["Arn"].startswith(
            f"arn:aws:sts::{ACCOUNT_ID}:assumed-role/{role_name}/"
        )
    unrelated = f"arn:aws:iam::{ACCOUNT_ID}:role/unrelated-admin"
    denied(deployer.assume_role, RoleArn=unrelated, RoleSessionName="ci")
    if deployment.mode == "oidc":
        trainer = deployment.moto.client("sts", deployment.identity("train"))
        denied(trainer.assume_role, RoleArn=cdk_role_arn("deploy"), RoleSessionName="ci")
        denied(
            trainer.assume_role,
            RoleArn=deployment.outputs["aws_deploy_role_arn"],
            RoleSessionName="ci",
        )


# The deploy identity's one secret (`secretsmanager:GetSecretValue` on the API-key secret and
# nothing else) is not checked here: moto evaluates Secrets Manager calls against the resource
# `*` and answers a refused one with a 500, so neither the allowed read nor a refusal can be
# told apart from a server error. `bootstrap.tftest.hcl` pins the exact statement instead.


# --- Destroy ----------------------------------------------------------------------------


def protections(deployment: Deployment) -> dict[str, Any]:
    """Everything a destroy could strip, as the administrator reads it from the API."""
    s3 = deployment.admin("s3")
    iam = deployment.admin("iam")
    bucket = deployment.bucket
    found: dict[str, Any] = {
        "public_access_block": s3.get_public_access_block(Bucket=bucket)[
            "PublicAccessBlockConfiguration"
        ],
        "ownership": s3.get_bucket_ownership_controls(Bucket=bucket)["OwnershipControls"],
        "versioning": s3.get_bucket_versioning(Bucket=bucket).get("Status"),
        "encryption": s3.get_bucket_encryption(Bucket=bucket)["ServerSideEncryptionConfiguration"],
        "lifecycle": s3.get_bucket_lifecycle_configuration(Bucket=bucket)["Rules"],
        "policy": s3.get_bucket_policy(Bucket=bucket)["Policy"],
        "objects": sorted(
            (v["Key"], v["VersionId"])
            for v in s3.list_object_versions(Bucket=bucket).get("Versions", [])
        ),
    }
    if deployment.mode == "oidc":
        for job in ("train", "data", "deploy"):
            role = deployment.role_name(job)
            found[job] = iam.get_role_policy(
                RoleName=role, PolicyName=iam.list_role_policies(RoleName=role)["PolicyNames"][0]
            )["PolicyDocument"]
    else:
        user = deployment.outputs["ci_user_name"]
        found["user"] = iam.get_user(UserName=user)["User"]["Arn"]
        found["keys"] = iam.list_access_keys(UserName=user)["AccessKeyMetadata"]
    return found


def test_plain_destroy_changes_nothing_on_a_bucket_that_holds_data(deployment):
    deployment.admin("s3").put_object(
        Bucket=deployment.bucket, Key="dvc/files/md5/00/guard", Body=b"a model version"
    )
    # Put the bucket policy back (see the module docstring): the destroy must keep it too.
    deployment.terraform.run("apply", "-auto-approve", "-input=false")
    state = deployment.state()
    before = protections(deployment)
    assert before["objects"]

    refused = deployment.terraform.run("destroy", "-auto-approve", "-input=false", check=False)

    assert refused.returncode != 0
    assert "Refusing to destroy: force_destroy is false" in refused.stdout + refused.stderr
    assert deployment.state() == state
    assert protections(deployment) == before


def test_documented_teardown_removes_everything(deployment):
    deployment.terraform.run("apply", "-auto-approve", "-input=false", "-var", "force_destroy=true")
    deployment.terraform.run(
        "destroy", "-auto-approve", "-input=false", "-var", "force_destroy=true"
    )

    assert not {a for a in deployment.state() if not a.startswith("data.")}
    s3 = deployment.admin("s3")
    with pytest.raises(ClientError) as missing:
        s3.head_bucket(Bucket=deployment.bucket)
    assert missing.value.response["Error"]["Code"] in {"404", "NoSuchBucket"}
    iam = deployment.admin("iam")
    prefix = str(user_tfvars(deployment.mode)["name_prefix"])
    for listed in (
        iam.list_users()["Users"],
        iam.list_roles()["Roles"],
        iam.list_groups()["Groups"],
    ):
        names = {
            item.get("UserName") or item.get("RoleName") or item["GroupName"] for item in listed
        }
        assert not {name for name in names if name.startswith(prefix)}
    # Only OIDC mode creates the provider, and the other mode's deployment has none.
    assert iam.list_open_id_connect_providers()["OpenIDConnectProviderList"] == []
