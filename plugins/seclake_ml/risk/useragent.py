"""User-agent families: which kind of client made a CloudTrail call.

Families: ``console`` (the AWS console and its per-service consoles), ``browser`` (a browser string,
console sign-ins), ``aws-service`` (a service acting for the principal, ``AWS Internal``), ``cli``,
``sdk-python``, ``sdk-go``, ``sdk-java``, ``sdk-js``, ``sdk-dotnet``, ``sdk-ruby``, ``sdk-php``,
``sdk-rust``, ``sdk-cpp``, ``iac`` (Terraform, Pulumi, CDK, CloudFormation), ``agent`` (SSM and other
host agents), ``pentest-os`` (an SDK or CLI reporting a penetration-testing distribution such as Kali,
Parrot or Pentoo, which GuardDuty also reports), ``http-tool`` (curl, python-requests, Postman...),
``none`` (empty) and ``other``.
"""

from __future__ import annotations

import re

FAMILIES = (
    "console", "browser", "aws-service", "cli", "sdk-python", "sdk-go", "sdk-java", "sdk-js", "sdk-dotnet",
    "sdk-ruby", "sdk-php", "sdk-rust", "sdk-cpp", "iac", "agent", "pentest-os", "http-tool", "none", "other",
)  # fmt: skip

_PENTEST = re.compile(r"kali|parrot|pentoo", re.IGNORECASE)
_RULES: tuple[tuple[re.Pattern[str], str], ...] = tuple(
    (re.compile(p, re.IGNORECASE), fam)
    for p, fam in (
        (r"^console\.[a-z0-9.-]*amazonaws\.com|^signin\.amazonaws\.com|^AWS Signin", "console"),
        (r"terraform|pulumi|aws-cdk|cloudformation|HashiCorp|crossplane", "iac"),
        (r"amazon-ssm-agent|ec2-instance-connect|aws-codedeploy-agent|cwagent|AmazonCloudWatchAgent", "agent"),
        (r"^aws-cli/|^aws-shell|aws-powershell|AWSPowerShell", "cli"),
        (r"^boto3/|^botocore/|^boto/|aws-sdk-pandas|awswrangler", "sdk-python"),
        (r"^aws-sdk-go", "sdk-go"),
        (r"^aws-sdk-java|^aws-sdk-kotlin", "sdk-java"),
        (r"^aws-sdk-nodejs|^aws-sdk-js|^aws-amplify", "sdk-js"),
        (r"^aws-sdk-dotnet", "sdk-dotnet"),
        (r"^aws-sdk-ruby", "sdk-ruby"),
        (r"^aws-sdk-php", "sdk-php"),
        (r"^aws-sdk-rust", "sdk-rust"),
        (r"^aws-sdk-cpp", "sdk-cpp"),
        (r"^AWS Internal$|^[a-z0-9-]+(\.[a-z0-9-]+)*\.amazonaws\.com$", "aws-service"),
        (r"^curl/|^python-requests/|^PostmanRuntime/|^Wget/|^Go-http-client/|^okhttp/|^insomnia/", "http-tool"),
        (r"^Mozilla/|^Opera/", "browser"),
    )
)


def family(user_agent: str | None) -> str:
    """The family of one user-agent string (see the module docstring)."""
    if not user_agent or not isinstance(user_agent, str) or not user_agent.strip():
        return "none"
    ua = user_agent.strip()
    for pattern, fam in _RULES:
        if pattern.search(ua):
            if fam in ("cli", "sdk-python", "sdk-go", "sdk-java", "sdk-js", "http-tool", "other") and _PENTEST.search(ua):
                return "pentest-os"
            return fam
    return "pentest-os" if _PENTEST.search(ua) else "other"
