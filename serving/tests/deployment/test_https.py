"""HTTPS: with a hosted zone (the stack requests the certificate and creates the record) and
with an existing certificate ARN (DNS managed elsewhere)."""

from __future__ import annotations

from typing import Any

import pytest

from deployment.stack.service_stack import SERVICE_URL_OUTPUT

from .conftest import CERTIFICATE_ARN, ZONE_ID, Synthesized

pytestmark = pytest.mark.slow

MODERN_TLS_POLICY = "ELBSecurityPolicy-TLS13-1-2-2021-06"


def listeners(synth: Synthesized) -> dict[int, dict[str, Any]]:
    found = synth.resources("AWS::ElasticLoadBalancingV2::Listener").values()
    return {listener["Properties"]["Port"]: listener["Properties"] for listener in found}


@pytest.fixture(params=["hosted_zone", "certificate"])
def https(request: pytest.FixtureRequest) -> Synthesized:
    synth: Synthesized = request.getfixturevalue(request.param)
    return synth


def test_https_listener_uses_a_modern_tls_policy(https: Synthesized) -> None:
    listener = listeners(https)[443]
    assert listener["Protocol"] == "HTTPS"
    assert listener["SslPolicy"] == MODERN_TLS_POLICY
    # Forwarding the public paths only, the rest a 404 (test_access).
    assert listener["DefaultActions"][0]["Type"] == "fixed-response"
    assert len(listener["Certificates"]) == 1


def test_port_80_only_redirects_to_https(https: Synthesized) -> None:
    listener = listeners(https)[80]
    assert listener["Protocol"] == "HTTP"
    assert listener["DefaultActions"] == [
        {
            "RedirectConfig": {"Port": "443", "Protocol": "HTTPS", "StatusCode": "HTTP_301"},
            "Type": "redirect",
        }
    ]
    assert set(listeners(https)) == {80, 443}


def test_load_balancer_accepts_only_http_and_https_from_the_internet(https: Synthesized) -> None:
    (group,) = [
        group["Properties"]
        for logical_id, group in https.resources("AWS::EC2::SecurityGroup").items()
        if "LoadBalancer" in logical_id
    ]
    assert sorted(rule["FromPort"] for rule in group["SecurityGroupIngress"]) == [80, 443]


def test_hosted_zone_gets_a_dns_validated_certificate_and_an_alias_record(
    hosted_zone: Synthesized,
) -> None:
    certificate = hosted_zone.only("AWS::CertificateManager::Certificate")
    assert certificate["DomainName"] == "api.example.com"
    assert certificate["ValidationMethod"] == "DNS"
    assert certificate["DomainValidationOptions"] == [
        {"DomainName": "api.example.com", "HostedZoneId": ZONE_ID}
    ]
    record = hosted_zone.only("AWS::Route53::RecordSet")
    assert (record["Name"], record["Type"], record["HostedZoneId"]) == (
        "api.example.com.",
        "A",
        ZONE_ID,
    )
    assert "AliasTarget" in record
    (certificate_id,) = hosted_zone.resources("AWS::CertificateManager::Certificate")
    assert listeners(hosted_zone)[443]["Certificates"] == [
        {"CertificateArn": {"Ref": certificate_id}}
    ]


def test_certificate_arn_is_used_as_given_without_dns_changes(certificate: Synthesized) -> None:
    assert listeners(certificate)[443]["Certificates"] == [{"CertificateArn": CERTIFICATE_ARN}]
    assert not certificate.resources("AWS::CertificateManager::Certificate")
    assert not certificate.resources("AWS::Route53::RecordSet")


@pytest.mark.parametrize(
    ("variant", "url"),
    [("hosted_zone", "https://api.example.com"), ("certificate", "https://api.example.org")],
)
def test_service_url_output_is_the_https_domain(
    variant: str, url: str, request: pytest.FixtureRequest
) -> None:
    synth: Synthesized = request.getfixturevalue(variant)
    synth.template.has_output(SERVICE_URL_OUTPUT, {"Value": url})
