"""The simulated AWS estate behind the sample lake.

Built once per seed, small (hundreds of entities), and fully deterministic:

* accounts × regions = *sites*; each site has VPCs with private CIDRs, subnets in availability zones,
  EC2 instances (``i-`` + 17 hex) with one ENI each, NAT gateway addresses and internal load balancers;
* every instance has a stable set of *conversations*: peers inside its VPC (by role: web → app → db …),
  load balancer nodes, internet services from a fixed catalogue (package mirrors, SaaS, AWS endpoints),
  background internet scanners (public instances), administrators' SSH (bastions), some over IPv6;
* people with home, office and VPN networks, IAM users or SSO sessions, and machine principals
  (instance roles, Lambda roles, CI, service-linked roles, AWS services), each with API *channels*
  (operation catalogue, user agents, where calls come from).

Public address pools are drawn from disjoint sets of first octets, so addresses reserved for injected
anomalies can never appear in normal traffic.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from .gen_common import StrDict, hex_id, ip4, ip4_int, rng_for, upper_id

# ----------------------------------------------------------------------------- address pools
RESIDENTIAL_OCTETS = (24, 67, 68, 71, 73, 76, 98, 108, 174, 81, 82, 86, 90, 92, 109, 176, 178, 217)
OFFICE_OCTETS = (63, 64, 65, 204, 206, 208, 212, 213)
TRAVEL_OCTETS = (118, 119, 121, 122, 125, 177, 179, 186, 187, 189, 190, 200, 201)
RUNNER_OCTETS = (4, 13, 20, 40)
AWS_OCTETS = (3, 18, 44, 52, 54)
SCANNER_OCTETS = (162, 167, 170, 184)
SERVICE_OCTETS = (91, 104, 140, 151, 185, 199)  # the fixed internet-service catalogue below
#: first octets used only by injected anomalies
ANOMALY_OCTETS = (5, 31, 37, 45, 46, 62, 77, 79, 80, 89, 94, 103, 141, 156, 193, 194, 195)
BENIGN_OCTETS = frozenset(
    RESIDENTIAL_OCTETS + OFFICE_OCTETS + TRAVEL_OCTETS + RUNNER_OCTETS + AWS_OCTETS + SCANNER_OCTETS + SERVICE_OCTETS
)
assert not BENIGN_OCTETS & set(ANOMALY_OCTETS)

REGION_UTC_OFFSET = {
    "us-east-1": -5, "us-east-2": -5, "us-west-1": -8, "us-west-2": -8, "ca-central-1": -5,
    "sa-east-1": -3, "eu-west-1": 0, "eu-west-2": 0, "eu-west-3": 1, "eu-central-1": 1,
    "eu-north-1": 1, "ap-south-1": 5.5, "ap-southeast-1": 8, "ap-southeast-2": 10,
    "ap-northeast-1": 9, "ap-northeast-2": 9,
}  # fmt: skip
_DIRECTION_ABBR = {
    "east": "e", "west": "w", "north": "n", "south": "s", "central": "c",
    "northeast": "ne", "northwest": "nw", "southeast": "se", "southwest": "sw",
}  # fmt: skip


def az_prefix(region: str) -> str:
    """``us-east-1`` → ``use1`` (the AZ id prefix)."""
    parts = region.split("-")
    mid = "".join(_DIRECTION_ABBR.get(p, p[:1]) for p in parts[1:-1])
    return f"{parts[0]}{mid}{parts[-1]}"


def random_public_ip(rng: np.random.Generator, octets: tuple[int, ...]) -> int:
    return ip4_int(int(rng.choice(octets)), int(rng.integers(0, 256)), int(rng.integers(0, 256)), int(rng.integers(1, 255)))


def random_net24(rng: np.random.Generator, octets: tuple[int, ...]) -> int:
    return ip4_int(int(rng.choice(octets)), int(rng.integers(0, 256)), int(rng.integers(0, 256)), 0)


# ----------------------------------------------------------------------------- internet services
@dataclass(frozen=True)
class Service:
    host: str
    ips: tuple[str, ...]
    ips6: tuple[str, ...] = ()
    port: int = 443
    proto: int = 6
    svc_name: str = "-"  # pkt-dst-aws-service as flow logs report it
    cname: str | None = None
    group: str = "saas"  # ubuntu / amazon (mirrors), saas, ntp, aws


INTERNET_SERVICES: tuple[Service, ...] = (
    Service("archive.ubuntu.com", ("91.189.91.81", "91.189.91.82", "185.125.190.36"), ("2620:2d:4000:1::101",), 80, group="ubuntu"),
    Service("security.ubuntu.com", ("91.189.91.83", "185.125.190.39"), ("2620:2d:4002:1::102",), 80, group="ubuntu"),
    Service("ntp.ubuntu.com", ("185.125.190.56", "185.125.190.57", "185.125.190.58"), (), 123, 17, group="ubuntu"),
    Service("api.snapcraft.io", ("185.125.188.54", "185.125.188.55"), (), 443, group="ubuntu"),
    Service("pypi.org", ("151.101.0.223", "151.101.64.223"), ("2a04:4e42::223",), 443),
    Service("files.pythonhosted.org", ("151.101.1.63", "151.101.65.63"), ("2a04:4e42:200::319",), 443, cname="dualstack.python.map.fastly.net."),
    Service("deb.debian.org", ("151.101.2.132", "151.101.130.132"), (), 80, cname="debian.map.fastly.net."),
    Service("github.com", ("140.82.112.3", "140.82.113.3", "140.82.114.4"), (), 443),
    Service("objects.githubusercontent.com", ("185.199.108.133", "185.199.109.133"), ("2606:50c0:8000::154",), 443),
    Service("registry.npmjs.org", ("104.16.1.35", "104.16.2.35"), ("2606:4700::6810:123",), 443),
    Service("hooks.slack.com", ("199.232.70.94", "104.18.20.87"), (), 443),
    Service("api.datadoghq.com", ("199.232.10.43", "104.19.141.10"), (), 443),
)

# regional AWS endpoints: (host pattern, number of addresses, pkt-dst-aws-service, port)
AWS_ENDPOINTS: tuple[tuple[str, int, str], ...] = (
    ("s3.{r}.amazonaws.com", 8, "S3"),
    ("ssm.{r}.amazonaws.com", 3, "AMAZON"),
    ("ec2messages.{r}.amazonaws.com", 3, "AMAZON"),
    ("ssmmessages.{r}.amazonaws.com", 3, "AMAZON"),
    ("sts.{r}.amazonaws.com", 3, "AMAZON"),
    ("logs.{r}.amazonaws.com", 3, "AMAZON"),
    ("monitoring.{r}.amazonaws.com", 3, "AMAZON"),
    ("dynamodb.{r}.amazonaws.com", 4, "DYNAMODB"),
    ("api.ecr.{r}.amazonaws.com", 3, "AMAZON"),
    ("kms.{r}.amazonaws.com", 3, "AMAZON"),
    ("al2023-repos-{r}-de612dc2.s3.dualstack.{r}.amazonaws.com", 4, "S3"),
)

ROLES = ("web", "app", "db", "cache", "worker", "bastion", "batch", "app", "web", "worker", "app", "db")
LISTEN_PORTS = {"web": 443, "app": 8080, "db": 5432, "cache": 6379, "bastion": 22, "worker": 9100, "batch": 9100}
CLIENT_OF = {
    "web": ("app", "cache"),
    "app": ("db", "cache", "app"),
    "worker": ("db", "app"),
    "batch": ("db",),
    "bastion": ("db", "app", "web"),
    "db": (),
    "cache": (),
}
SCAN_PORTS = np.array([22, 23, 80, 443, 445, 1433, 2375, 3306, 3389, 5432, 5900, 6379, 8080, 8443, 9200], dtype=np.int32)

K_INTERNAL, K_LB, K_INTERNET, K_AWS, K_SCANNER, K_ADMIN, K_ANOMALY = range(7)


@dataclass
class Instance:
    uid: str
    eni: str
    vpc_uid: str
    subnet_uid: str
    zone: str
    ip: str
    ip6: str | None
    role: str
    public: bool
    distro: str
    activity: float
    vpc_index: int


@dataclass
class Site:
    """One account in one region, with its VPCs and instances and their traffic model."""

    index: int
    account_index: int
    account: str
    region: str
    utc_offset: float
    instances: list[Instance] = field(default_factory=list)
    vpc_uids: list[str] = field(default_factory=list)
    vpc_second: list[int] = field(default_factory=list)  # second octet of each VPC's 10.x.0.0/16
    nat_ips: list[list[str]] = field(default_factory=list)  # per VPC
    vpce_uids: list[str] = field(default_factory=list)  # per VPC (interface endpoint for SSM etc.)
    firewall: list[tuple[str, str] | None] = field(default_factory=list)  # per VPC: DNS firewall rule group, domain list
    ips: StrDict = field(default_factory=StrDict)  # every address string used in this site's flows
    svc_names: StrDict = field(default_factory=lambda: StrDict(["-"]))
    conv: dict[str, np.ndarray] = field(default_factory=dict)
    dns: dict[str, np.ndarray] = field(default_factory=dict)
    open_ports: np.ndarray | None = None  # (instances, len(SCAN_PORTS)) bool
    inst_strings: dict[str, StrDict] = field(default_factory=dict)  # uid/eni/vpc/subnet/zone dictionaries
    inst_index: dict[str, np.ndarray] = field(default_factory=dict)  # per instance: index into inst_strings

    def inst_take(self, key: str, owner: np.ndarray, valid: np.ndarray | None = None):
        """Strings ``key`` (uid, eni, vpc, subnet, zone) of the instances ``owner`` (null where not ``valid``)."""
        idx = self.inst_index[key][owner]
        return self.inst_strings[key].take(idx, np.ones(len(idx), dtype=bool) if valid is None else valid)
    inst_ip: np.ndarray | None = None  # site-ip index of each instance's IPv4 address
    inst_ip6: np.ndarray | None = None  # site-ip index of its IPv6 address (-1 none)
    flow_weight: float = 0.0
    dns_weight: float = 0.0


@dataclass
class Human:
    name: str
    email: str
    account_index: int
    kind: str  # iam | sso
    utc_offset: float
    home_region: str
    admin: bool
    mfa: bool
    browser_ua: int
    cli_ua: int
    cli_share: float
    networks: np.ndarray  # (3 categories home/office/vpn, 4 slots) → ct ip ids


@dataclass
class Principal:
    arn: str | None
    uid: str | None  # principal id
    name: str | None
    type: str  # IAMUser | AssumedRole | Root | AWSService
    account_index: int
    account: str
    profile: str
    human: int = -1
    site: int = -1  # machine principal bound to one site
    region: str | None = None  # bound to one region (Lambda, service-linked)
    issuer: str | None = None
    invoked_by: str | None = None
    domain: str | None = None
    akia: str | None = None
    asia: str | None = None
    vpc_index: int = -1
    private_ip: int = -1  # ct ip id of the instance's private address (calls through a VPC endpoint)
    vpce: str | None = None


# ----------------------------------------------------------------------------- API catalogues
# (service prefix, operation, weight, resource kind)
CATALOGS: dict[str, tuple[tuple[str, str, float, str | None], ...]] = {
    "console": (
        ("ec2", "DescribeInstances", 10, None), ("ec2", "DescribeSecurityGroups", 4, None),
        ("ec2", "DescribeVpcs", 3, None), ("ec2", "DescribeSubnets", 2, None),
        ("ec2", "DescribeVolumes", 2, None), ("s3", "ListBuckets", 6, None),
        ("s3", "GetBucketLocation", 3, "s3"), ("s3", "GetBucketPolicy", 2, "s3"),
        ("iam", "ListRoles", 3, None), ("iam", "ListUsers", 2, None), ("iam", "GetRole", 2, "iam_role"),
        ("iam", "ListPolicies", 2, None), ("cloudtrail", "LookupEvents", 2, None),
        ("cloudtrail", "DescribeTrails", 1, None), ("lambda", "ListFunctions20150331", 3, None),
        ("lambda", "GetFunction20150331v2", 2, "lambda"), ("kms", "ListKeys", 1, None),
        ("kms", "DescribeKey", 1, "kms"), ("logs", "DescribeLogGroups", 3, None),
        ("monitoring", "DescribeAlarms", 2, None), ("monitoring", "GetMetricData", 3, None),
        ("ec2", "StartInstances", 0.3, None), ("ec2", "StopInstances", 0.3, None),
        ("ec2", "CreateTags", 0.5, None), ("ec2", "AuthorizeSecurityGroupIngress", 0.2, None),
        ("iam", "CreateAccessKey", 0.05, None), ("iam", "AttachRolePolicy", 0.1, "iam_role"),
    ),
    "cli": (
        ("sts", "GetCallerIdentity", 5, None), ("ec2", "DescribeInstances", 6, None),
        ("s3", "ListBuckets", 3, None), ("iam", "GetUser", 1, None), ("iam", "ListAccessKeys", 1, None),
        ("lambda", "UpdateFunctionCode20150331v2", 1, "lambda"), ("ecr", "GetAuthorizationToken", 2, None),
        ("ssm", "StartSession", 1, None), ("ssm", "GetParameter", 3, None), ("kms", "Decrypt", 1, "kms"),
        ("cloudformation", "DescribeStacks", 2, None), ("cloudformation", "CreateChangeSet", 0.3, None),
        ("logs", "DescribeLogStreams", 1, None), ("sts", "AssumeRole", 2, "iam_role"),
        ("secretsmanager", "GetSecretValue", 1, "secret"),
    ),
    "ci": (
        ("sts", "GetCallerIdentity", 3, None), ("ec2", "DescribeInstances", 2, None),
        ("ec2", "DescribeSecurityGroups", 2, None), ("ec2", "DescribeVpcs", 2, None),
        ("iam", "GetRole", 3, "iam_role"), ("iam", "GetPolicy", 2, None), ("iam", "GetPolicyVersion", 2, None),
        ("iam", "ListAttachedRolePolicies", 2, "iam_role"), ("s3", "GetBucketPolicy", 2, "s3"),
        ("s3", "GetBucketVersioning", 2, "s3"), ("s3", "GetBucketAcl", 1, "s3"),
        ("lambda", "GetFunction20150331v2", 2, "lambda"), ("lambda", "UpdateFunctionCode20150331v2", 0.5, "lambda"),
        ("ecr", "DescribeRepositories", 1, None), ("ecr", "PutImage", 0.5, None),
        ("dynamodb", "DescribeTable", 1, None), ("kms", "DescribeKey", 1, "kms"), ("kms", "GetKeyPolicy", 1, "kms"),
        ("ec2", "CreateTags", 0.3, None), ("ec2", "RunInstances", 0.1, None), ("ec2", "TerminateInstances", 0.1, None),
    ),
    "instance": (
        ("ssm", "UpdateInstanceInformation", 30, None), ("ssm", "ListInstanceAssociations", 8, None),
        ("ssm", "GetParameters", 4, None), ("kms", "Decrypt", 6, "kms"), ("kms", "GenerateDataKey", 3, "kms"),
        ("secretsmanager", "GetSecretValue", 4, "secret"), ("sts", "GetCallerIdentity", 1, None),
        ("ecr", "GetAuthorizationToken", 2, None), ("logs", "CreateLogStream", 1, None),
        ("logs", "DescribeLogStreams", 1, None), ("ec2", "DescribeTags", 2, None),
        ("ec2", "DescribeInstances", 1, None), ("autoscaling", "DescribeAutoScalingInstances", 1, None),
    ),
    "lambda": (
        ("dynamodb", "DescribeTable", 1, None), ("kms", "Decrypt", 5, "kms"),
        ("secretsmanager", "GetSecretValue", 3, "secret"), ("sts", "AssumeRole", 1, "iam_role"),
        ("ssm", "GetParameter", 3, None), ("logs", "CreateLogStream", 2, None),
        ("ec2", "CreateNetworkInterface", 0.2, None), ("ec2", "DescribeNetworkInterfaces", 1, None),
    ),
    "autoscaling": (
        ("ec2", "RunInstances", 1, None), ("ec2", "TerminateInstances", 1, None),
        ("ec2", "DescribeInstances", 3, None), ("ec2", "DescribeInstanceStatus", 2, None),
        ("elasticloadbalancing", "RegisterTargets", 0.5, None),
        ("elasticloadbalancing", "DeregisterTargets", 0.5, None),
    ),
    "config": (
        ("ec2", "DescribeSecurityGroups", 2, None), ("iam", "GetAccountAuthorizationDetails", 1, None),
        ("s3", "GetBucketAcl", 2, "s3"), ("lambda", "ListFunctions20150331", 1, None),
        ("kms", "ListKeys", 1, None), ("ec2", "DescribeVpcs", 1, None),
    ),
    "aws_service": (("sts", "AssumeRole", 10, "iam_role"),),
    "recon": (
        ("sts", "GetCallerIdentity", 4, None), ("s3", "ListBuckets", 3, None), ("iam", "ListUsers", 2, None),
        ("iam", "GetAccountAuthorizationDetails", 1, None), ("ec2", "DescribeInstances", 2, None),
        ("ec2", "DescribeRegions", 1, None), ("secretsmanager", "ListSecrets", 2, None),
        ("iam", "ListAttachedUserPolicies", 1, None), ("lambda", "ListFunctions20150331", 1, None),
    ),
}  # fmt: skip

# error behaviour per channel profile: (denied, throttled, not found) probabilities
ERROR_RATES = {
    "console": (0.025, 0.0, 0.005),
    "cli": (0.04, 0.002, 0.01),
    "ci": (0.02, 0.004, 0.03),
    "instance": (0.003, 0.006, 0.001),
    "lambda": (0.005, 0.003, 0.002),
    "autoscaling": (0.001, 0.002, 0.0),
    "config": (0.002, 0.01, 0.0),
    "aws_service": (0.0, 0.0005, 0.0),
    "recon": (0.35, 0.0, 0.02),
}

#: CloudTrail data-event catalogues (same shape as :data:`CATALOGS`; built into their own
#: :class:`OpCatalog`, so the management catalogue and its operation ids stay as they are):
#: ``s3_data`` and ``lambda_data`` are the everyday mixes, ``s3_recon`` the injected bucket sweep
DATA_CATALOGS: dict[str, tuple[tuple[str, str, float, str | None], ...]] = {
    "s3_data": (
        ("s3", "GetObject", 46, "s3"), ("s3", "PutObject", 20, "s3"), ("s3", "HeadObject", 16, "s3"),
        ("s3", "ListObjectsV2", 8, "s3"), ("s3", "ListObjects", 2, "s3"), ("s3", "DeleteObject", 3, "s3"),
        ("s3", "GetObjectTagging", 2, "s3"),
    ),
    "lambda_data": (("lambda", "Invoke", 1, "lambda"),),
    "s3_recon": (("s3", "ListBuckets", 1, None), ("s3", "ListObjectsV2", 3, "s3"), ("s3", "GetObject", 8, "s3")),
}  # fmt: skip
#: S3 data operations whose second resource is the object (``arn:aws:s3:::<bucket>/<key>``)
S3_OBJECT_OPERATIONS = frozenset({"GetObject", "PutObject", "HeadObject", "DeleteObject", "GetObjectTagging"})
#: error behaviour per data catalogue: (denied, throttled, not found) probabilities
DATA_ERROR_RATES = {"s3_data": (0.008, 0.001, 0.02), "lambda_data": (0.002, 0.004, 0.001), "s3_recon": (0.3, 0.0, 0.02)}

RESOURCE_TYPES = {
    "s3": "AWS::S3::Bucket",
    "kms": "AWS::KMS::Key",
    "iam_role": "AWS::IAM::Role",
    "lambda": "AWS::Lambda::Function",
    "secret": "AWS::SecretsManager::Secret",
}
RESOURCE_KINDS = tuple(RESOURCE_TYPES)

ACTIVITY_PREFIXES = (
    (1, ("Create", "Run", "Put", "Attach", "Authorize", "Register", "Start", "Generate", "Allocate", "Import")),
    (2, ("Describe", "List", "Get", "Head", "Lookup", "Search", "Filter", "Decrypt")),
    (3, ("Update", "Modify", "Set", "Enable", "Tag", "Associate", "Replace", "Reset", "Change", "Stop")),
    (4, ("Delete", "Terminate", "Detach", "Remove", "Revoke", "Deregister", "Disable", "Release", "Untag")),
)
ACTIVITY_NAMES = {1: "Create", 2: "Read", 3: "Update", 4: "Delete", 99: "Other"}


def activity_of(operation: str) -> int:
    for act, prefixes in ACTIVITY_PREFIXES:
        if operation.startswith(prefixes):
            return act
    return 99


_DENIED_CODE = {"ec2": "Client.UnauthorizedOperation", "s3": "AccessDenied", "iam": "AccessDenied", "sts": "AccessDenied",
                "autoscaling": "AccessDenied", "elasticloadbalancing": "AccessDenied", "monitoring": "AccessDenied",
                "cloudformation": "AccessDenied", "cloudtrail": "AccessDeniedException"}  # fmt: skip
_THROTTLE_CODE = {"ec2": "Client.RequestLimitExceeded", "iam": "Throttling", "sts": "Throttling", "autoscaling": "Throttling",
                  "cloudformation": "Throttling", "elasticloadbalancing": "Throttling", "monitoring": "Throttling"}  # fmt: skip
_NOTFOUND = {
    ("iam", "Get"): ("NoSuchEntityException", "The role with the specified name cannot be found."),
    ("lambda", "Get"): ("ResourceNotFoundException", "Function not found."),
    ("lambda", "Update"): ("ResourceNotFoundException", "Function not found."),
    ("secretsmanager", "Get"): ("ResourceNotFoundException", "Secrets Manager can't find the specified secret."),
    ("ssm", "Get"): ("ParameterNotFound", None),
    ("ec2", "Describe"): ("Client.InvalidInstanceID.NotFound", "The instance ID does not exist"),
    ("dynamodb", "Describe"): ("ResourceNotFoundException", "Requested resource not found"),
    ("s3", "Get"): ("NoSuchBucketPolicy", "The bucket policy does not exist"),
}
_DATA_NOTFOUND = {
    ("s3", "Get"): ("NoSuchKey", "The specified key does not exist."),
    ("s3", "Head"): ("NoSuchKey", "The specified key does not exist."),
    ("s3", "List"): ("NoSuchBucket", "The specified bucket does not exist"),
    ("lambda", "Invoke"): ("ResourceNotFoundException", "Function not found."),
}
_DATA_THROTTLE_CODE = {"s3": "SlowDown", "lambda": "TooManyRequestsException"}


@dataclass
class OpCatalog:
    """All operations of all catalogues, flattened, with per-catalogue cumulative weights."""

    service: StrDict
    operation: StrDict
    op_service: np.ndarray
    op_operation: np.ndarray
    op_activity: np.ndarray
    op_resource: np.ndarray  # index into RESOURCE_KINDS or -1
    op_console_ua: np.ndarray  # ua id of console.<svc>.amazonaws.com
    op_action: StrDict  # "ec2:DescribeInstances" per op (index = op id)
    cat_ops: dict[str, np.ndarray]
    cat_cum: dict[str, np.ndarray]
    errors: list[tuple[str, str | None]]  # (code, fixed message or None = "User: <arn> is not authorized …")
    op_denied: np.ndarray
    op_throttle: np.ndarray
    op_notfound: np.ndarray


def _build_catalog(
    uas: StrDict,
    catalogs: dict[str, tuple[tuple[str, str, float, str | None], ...]] = CATALOGS,
    notfound: dict[tuple[str, str], tuple[str, str | None]] = _NOTFOUND,
    throttle_codes: dict[str, str] = _THROTTLE_CODE,
) -> OpCatalog:
    """Flatten ``catalogs`` (management :data:`CATALOGS` by default, or :data:`DATA_CATALOGS`)."""
    service, operation, actions = StrDict(), StrDict(), StrDict()
    errors: list[tuple[str, str | None]] = []

    def err(code: str, message: str | None) -> int:
        if (code, message) not in errors:
            errors.append((code, message))
        return errors.index((code, message))

    key_to_op: dict[tuple[str, str], int] = {}
    op_rows: list[tuple[int, int, int, int, int, int, int, int]] = []
    cat_ops: dict[str, np.ndarray] = {}
    cat_cum: dict[str, np.ndarray] = {}
    for cat, entries in catalogs.items():
        ids, weights = [], []
        for prefix, op, w, res in entries:
            key = (prefix, op)
            if key not in key_to_op:
                key_to_op[key] = len(op_rows)
                actions.add(f"{prefix}:{op}")
                denied_code = _DENIED_CODE.get(prefix, "AccessDeniedException")
                denied = err(denied_code, "You are not authorized to perform this operation." if prefix == "ec2" else None)
                throttle_code = throttle_codes.get(prefix, "ThrottlingException")
                throttle = err(throttle_code, "Request limit exceeded." if prefix == "ec2" else "Rate exceeded")
                nf = -1
                for (p, verb), (code, msg) in notfound.items():
                    if p == prefix and op.startswith(verb):
                        nf = err(code, msg)
                        break
                op_rows.append(
                    (
                        service.add(f"{prefix}.amazonaws.com"),
                        operation.add(op),
                        activity_of(op),
                        RESOURCE_KINDS.index(res) if res else -1,
                        uas.add(f"console.{prefix}.amazonaws.com"),
                        denied,
                        throttle,
                        nf,
                    )
                )
            ids.append(key_to_op[key])
            weights.append(w)
        cat_ops[cat] = np.array(ids, dtype=np.int32)
        cat_cum[cat] = np.cumsum(np.array(weights, dtype=np.float64))
    arr = np.array(op_rows, dtype=np.int32)
    return OpCatalog(
        service=service,
        operation=operation,
        op_service=arr[:, 0],
        op_operation=arr[:, 1],
        op_activity=arr[:, 2],
        op_resource=arr[:, 3],
        op_console_ua=arr[:, 4],
        op_action=actions,
        cat_ops=cat_ops,
        cat_cum=cat_cum,
        errors=errors,
        op_denied=arr[:, 5],
        op_throttle=arr[:, 6],
        op_notfound=arr[:, 7],
    )


# ----------------------------------------------------------------------------- user agents
BROWSERS = (
    "Mozilla/5.0 (Macintosh; Intel Mac OS X 10_15_7) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/124.0.0.0 Safari/537.36",
    "Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/124.0.0.0 Safari/537.36 Edg/124.0.0.0",
    "Mozilla/5.0 (Macintosh; Intel Mac OS X 14.4; rv:125.0) Gecko/20100101 Firefox/125.0",
    "Mozilla/5.0 (X11; Linux x86_64; rv:125.0) Gecko/20100101 Firefox/125.0",
    "Mozilla/5.0 (Macintosh; Intel Mac OS X 10_15_7) AppleWebKit/605.1.15 (KHTML, like Gecko) Version/17.4 Safari/605.1.15",
    "Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/123.0.0.0 Safari/537.36",
)
CLI_AGENTS = (
    "aws-cli/2.15.30 md/awscrt#0.19.19 ua/2.0 os/macos#23.4.0 md/arch#arm64 lang/python#3.11.8 md/pyimpl#CPython cfg/retry-mode#standard md/installer#exe md/prompt#off",
    "aws-cli/2.15.38 md/awscrt#0.19.19 ua/2.0 os/linux#6.5.0-1017-aws md/arch#x86_64 lang/python#3.11.8 md/pyimpl#CPython cfg/retry-mode#standard md/installer#exe md/prompt#off",
    "aws-cli/2.13.25 Python/3.11.5 Windows/10 exe/AMD64 prompt/off",
    "Boto3/1.34.84 md/Botocore#1.34.84 ua/2.0 os/macos#23.4.0 md/arch#arm64 lang/python#3.12.2 md/pyimpl#CPython cfg/retry-mode#legacy Botocore/1.34.84",
    "aws-sdk-go-v2/1.26.1 os/linux lang/go#1.22.2 md/GOOS#linux md/GOARCH#amd64 api/sts#1.28.6",
)
TERRAFORM_AGENT = (
    "APN/1.0 HashiCorp/1.0 Terraform/1.7.5 (+https://www.terraform.io) terraform-provider-aws/5.45.0 "
    "(+https://registry.terraform.io/providers/hashicorp/aws) aws-sdk-go-v2/1.26.1 os/linux lang/go#1.22.1 "
    "md/GOOS#linux md/GOARCH#amd64"
)
INSTANCE_AGENTS = (
    "aws-sdk-go/1.50.20 (go1.21.8; linux; amd64) amazon-ssm-agent/3.3.131.0",
    "Boto3/1.34.70 md/Botocore#1.34.70 ua/2.0 os/linux#6.1.79-99.167.amzn2023.x86_64 md/arch#x86_64 lang/python#3.9.16 md/pyimpl#CPython cfg/retry-mode#legacy Botocore/1.34.70",
    "aws-sdk-java/2.25.16 Linux/5.10.213-201.855.amzn2.x86_64 OpenJDK_64-Bit_Server_VM/17.0.10+7-LTS Java/17.0.10 vendor/Amazon.com_Inc. io/sync http/Apache cfg/retry-mode/legacy",
)
LAMBDA_AGENTS = (
    "Boto3/1.34.42 md/Botocore#1.34.42 ua/2.0 os/linux#5.10.213-221.813.amzn2.x86_64 md/arch#x86_64 lang/python#3.12.2 md/pyimpl#CPython exec-env/AWS_Lambda_python3.12 cfg/retry-mode#legacy Botocore/1.34.42",
    "aws-sdk-nodejs/2.1467.0 linux/v18.20.2 exec-env/AWS_Lambda_nodejs18.x promise",
)
#: user agents of injected API calls from unseen networks (ordinary tools, nothing that marks them)
UNSEEN_API_AGENTS = (
    "aws-cli/2.9.19 Python/3.9.11 Linux/5.15.0-1031-aws exe/x86_64.ubuntu.22 prompt/off",
    "Boto3/1.26.90 Python/3.10.6 Linux/5.15.0-67-generic Botocore/1.29.90",
    "aws-cli/1.27.85 Python/3.8.10 Linux/5.4.0-144-generic botocore/1.29.85",
)

FIRST_NAMES = (
    "alice", "bob", "carol", "dave", "erin", "frank", "grace", "heidi", "ivan", "judy", "mallory", "nia",
    "oscar", "peggy", "quinn", "rupert", "sybil", "trent", "uma", "victor", "wendy", "xavier", "yara", "zane",
    "amir", "bea", "chen", "dana", "emre", "fatima", "goran", "hana", "ines", "jonas", "kai", "lena",
    "marta", "nikhil", "olga", "pavel", "rosa", "sven", "tariq", "ugo", "vera", "wei", "yusuf", "zoe",
)  # fmt: skip
LAST_NAMES = (
    "smith", "garcia", "mueller", "nguyen", "kowalski", "rossi", "silva", "tanaka", "kim", "okafor", "novak",
    "jensen", "murphy", "dubois", "haddad", "ivanova", "lopez", "patel", "schmidt", "berg", "costa", "sato",
)  # fmt: skip
SSO_PERMISSION_SETS = ("AdministratorAccess", "PowerUserAccess", "ReadOnlyAccess", "DeveloperAccess")
SERVICE_LINKED = (
    ("AWSServiceRoleForAutoScaling", "AutoScaling", "autoscaling.amazonaws.com", "autoscaling"),
    ("AWSServiceRoleForConfig", "AWSConfig", "config.amazonaws.com", "config"),
)
AWS_SERVICE_CALLERS = ("ec2.amazonaws.com", "lambda.amazonaws.com")


@dataclass
class Channel:
    """One way a principal calls AWS APIs: catalogue, user agent and where the calls come from."""

    principal: int
    catalog: str
    weight: float  # calls per day on a working day (relative)
    human: bool  # follows working hours
    ua: int  # ua id, or -1 = console UA of the operation
    net: str  # human | pool | domain
    pool: np.ndarray | None = None  # ct ip ids for net == "pool"
    vpce_share: float = 0.0  # share of calls through the VPC's interface endpoint (private IP + vpce id)


@dataclass
class Environment:
    seed: int
    accounts: list[str]
    regions: list[str]
    sites: list[Site]
    humans: list[Human]
    principals: list[Principal]
    channels: list[Channel]
    ct_ips: StrDict  # every address or endpoint string used in CloudTrail rows
    uas: StrDict
    catalog: OpCatalog
    travel_pool: np.ndarray  # ct ip ids of hotel / mobile networks
    resources: dict[tuple[int, str], list[str]]  # (site, kind) -> resource ARNs
    dns_hosts: StrDict
    dns_rdata: StrDict
    dns_keys: dict[str, np.ndarray]
    signin_principals: list[tuple[int, float]]  # (principal, sign-ins per working day)
    used_ips: set[str] = field(default_factory=set)
    data_catalog: OpCatalog | None = None  # CloudTrail data events (:data:`DATA_CATALOGS`)

    def site_of(self, account_index: int, region: str) -> Site:
        return self.sites[account_index * len(self.regions) + self.regions.index(region)]

    def home_site(self, principal: Principal) -> Site:
        """The site a principal acts from: its own (workload principals) or its human's home region."""
        if principal.site >= 0:
            return self.sites[principal.site]
        return self.site_of(principal.account_index, self.humans[principal.human].home_region)


# ----------------------------------------------------------------------------- building
def build_environment(
    seed: int,
    accounts: int = 3,
    regions: tuple[str, ...] = ("us-east-1", "eu-west-1"),
    vpcs_per_site: int = 1,
    instances_per_vpc: int = 8,
    users_per_account: int = 6,
) -> Environment:
    rng = rng_for(seed, 1)
    account_ids: list[str] = []
    while len(account_ids) < accounts:
        a = f"{int(rng.integers(10**11, 10**12)):012d}"
        if a not in account_ids:
            account_ids.append(a)
    regions = list(regions)

    used_private: set[int] = set()
    sites: list[Site] = []
    for ai, acct in enumerate(account_ids):
        for region in regions:
            site = Site(
                index=len(sites),
                account_index=ai,
                account=acct,
                region=region,
                utc_offset=float(REGION_UTC_OFFSET.get(region, 0)),
            )
            _build_site_vpcs(rng, site, vpcs_per_site, instances_per_vpc, used_private)
            sites.append(site)

    uas = StrDict(["AWS Internal"])
    catalog = _build_catalog(uas)
    ct_ips = StrDict()
    dns_hosts, dns_rdata = StrDict(), StrDict()

    # ---- people and their networks
    offices = []
    for _ in range(3):  # each office egresses through a few addresses of one /24
        net = random_net24(rng, OFFICE_OCTETS)
        offices.append([ip4(net + 16 + k) for k in range(int(rng.integers(3, 7)))])
    vpn_net = random_net24(rng, OFFICE_OCTETS)
    vpn = [ip4(vpn_net + 200 + k) for k in range(2)]
    humans: list[Human] = []
    names_seen: set[str] = set()
    n_humans = max(1, users_per_account * accounts)
    for h in range(n_humans):
        while True:
            name = f"{rng.choice(FIRST_NAMES)}.{rng.choice(LAST_NAMES)}"
            if name not in names_seen:
                names_seen.add(name)
                break
        us_based = bool(rng.random() < 0.55)
        tz = float(rng.choice([-5.0, -8.0, -6.0])) if us_based else float(rng.choice([0.0, 1.0, 2.0]))
        home_region = _closest_region(regions, tz)
        home_net = random_net24(rng, RESIDENTIAL_OCTETS)
        home_ips = [ip4(home_net + int(x)) for x in rng.choice(np.arange(2, 254), size=2, replace=False)]
        office = offices[int(rng.integers(0, len(offices)))]
        nets = np.zeros((3, 4), dtype=np.int32)
        for slot in range(4):
            nets[0, slot] = ct_ips.add(home_ips[0] if slot < 3 else home_ips[1])
            nets[1, slot] = ct_ips.add(office[int(rng.integers(0, len(office)))])
            nets[2, slot] = ct_ips.add(vpn[slot % 2])
        humans.append(
            Human(
                name=name,
                email=f"{name}@example.com",
                account_index=h % accounts,
                kind="iam" if rng.random() < 0.5 else "sso",
                utc_offset=tz,
                home_region=home_region,
                admin=bool(h < accounts or rng.random() < 0.15),
                mfa=bool(rng.random() < 0.85),
                browser_ua=uas.add(BROWSERS[int(rng.integers(0, len(BROWSERS)))]),
                cli_ua=uas.add(CLI_AGENTS[int(rng.integers(0, len(CLI_AGENTS)))]),
                cli_share=float(rng.uniform(0.1, 0.7)),
                networks=nets,
            )
        )
    travel_pool = np.array([ct_ips.add(ip4(random_public_ip(rng, TRAVEL_OCTETS))) for _ in range(400)], dtype=np.int32)
    runner_pool = np.array([ct_ips.add(ip4(random_public_ip(rng, RUNNER_OCTETS))) for _ in range(60)], dtype=np.int32)

    principals: list[Principal] = []
    channels: list[Channel] = []
    signin: list[tuple[int, float]] = []

    def add(p: Principal) -> int:
        principals.append(p)
        return len(principals) - 1

    # ---- human principals
    for hi, hu in enumerate(humans):
        if hu.kind == "iam":
            acct = account_ids[hu.account_index]
            pi = add(
                Principal(
                    arn=f"arn:aws:iam::{acct}:user/{hu.name}",
                    uid=upper_id(rng, "AIDA"),
                    name=hu.name,
                    type="IAMUser",
                    account_index=hu.account_index,
                    account=acct,
                    profile="human",
                    human=hi,
                    akia=upper_id(rng, "AKIA", 16),
                    asia=upper_id(rng, "ASIA", 16),
                )
            )
            _human_channels(channels, pi, hu, scale=1.0)
            signin.append((pi, 1.2))
        else:
            n_acc = min(accounts, int(rng.integers(1, 4)))
            accs = [hu.account_index] + [a for a in rng.permutation(accounts).tolist() if a != hu.account_index][: n_acc - 1]
            pset = SSO_PERMISSION_SETS[0 if hu.admin else int(rng.integers(1, len(SSO_PERMISSION_SETS)))]
            for k, a in enumerate(accs):
                acct = account_ids[a]
                role = f"AWSReservedSSO_{pset}_{hex_id(rng, '', 16)}"
                role_id = upper_id(rng, "AROA")
                pi = add(
                    Principal(
                        arn=f"arn:aws:sts::{acct}:assumed-role/{role}/{hu.email}",
                        uid=f"{role_id}:{hu.email}",
                        name=role,
                        type="AssumedRole",
                        account_index=a,
                        account=acct,
                        profile="human",
                        human=hi,
                        issuer=f"arn:aws:iam::{acct}:role/aws-reserved/sso.amazonaws.com/{hu.home_region}/{role}",
                        asia=upper_id(rng, "ASIA", 16),
                    )
                )
                share = 1.0 if k == 0 else 0.35
                _human_channels(channels, pi, hu, scale=share)
                signin.append((pi, 0.9 * share))
    # ---- root of every account (used by that account's first admin, rarely)
    for ai, acct in enumerate(account_ids):
        admin = next((i for i, hu in enumerate(humans) if hu.account_index == ai and hu.admin), ai % len(humans))
        pi = add(
            Principal(
                arn=f"arn:aws:iam::{acct}:root", uid=acct, name=None, type="Root", account_index=ai, account=acct,
                profile="root", human=admin,
            )
        )
        channels.append(Channel(pi, "console", 0.4, True, -1, "human"))
        signin.append((pi, 0.04))
    # ---- machine principals
    lambda_pools: dict[str, np.ndarray] = {}
    for region in regions:
        lambda_pools[region] = np.array(
            [ct_ips.add(ip4(random_public_ip(rng, AWS_OCTETS))) for _ in range(40)], dtype=np.int32
        )
    instance_agent_ids = [uas.add(a) for a in INSTANCE_AGENTS]
    lambda_agent_ids = [uas.add(a) for a in LAMBDA_AGENTS]
    terraform_ua = uas.add(TERRAFORM_AGENT)
    for ai, acct in enumerate(account_ids):
        ci_role = "github-actions-deploy"
        pi = add(
            Principal(
                arn=f"arn:aws:sts::{acct}:assumed-role/{ci_role}/GitHubActions",
                uid=f"{upper_id(rng, 'AROA')}:GitHubActions",
                name=ci_role,
                type="AssumedRole",
                account_index=ai,
                account=acct,
                profile="ci",
                issuer=f"arn:aws:iam::{acct}:role/{ci_role}",
                asia=upper_id(rng, "ASIA", 16),
            )
        )
        channels.append(Channel(pi, "ci", 60.0, True, terraform_ua, "pool", runner_pool))
    for site in sites:
        acct = site.account
        for ii, inst in enumerate(site.instances):
            role = f"{inst.role}-ec2-role"
            pi = add(
                Principal(
                    arn=f"arn:aws:sts::{acct}:assumed-role/{role}/{inst.uid}",
                    uid=f"{upper_id(rng, 'AROA')}:{inst.uid}",
                    name=role,
                    type="AssumedRole",
                    account_index=site.account_index,
                    account=acct,
                    profile="instance",
                    site=site.index,
                    region=site.region,
                    issuer=f"arn:aws:iam::{acct}:role/{role}",
                    asia=upper_id(rng, "ASIA", 16),
                    vpc_index=inst.vpc_index,
                    private_ip=ct_ips.add(inst.ip),
                    vpce=site.vpce_uids[inst.vpc_index],
                )
            )
            nat = np.array([ct_ips.add(ip) for ip in site.nat_ips[inst.vpc_index]], dtype=np.int32)
            ua = instance_agent_ids[int(rng.integers(0, len(instance_agent_ids)))]
            channels.append(Channel(pi, "instance", 40.0 * inst.activity, False, ua, "pool", nat, vpce_share=0.3))
        for k in range(2):
            fn = f"{rng.choice(['orders', 'billing', 'ingest', 'reports', 'notify', 'thumbnails'])}-{k}"
            role = f"{fn}-role-{hex_id(rng, '', 8)}"
            pi = add(
                Principal(
                    arn=f"arn:aws:sts::{acct}:assumed-role/{role}/{fn}",
                    uid=f"{upper_id(rng, 'AROA')}:{fn}",
                    name=role,
                    type="AssumedRole",
                    account_index=site.account_index,
                    account=acct,
                    profile="lambda",
                    site=site.index,
                    region=site.region,
                    issuer=f"arn:aws:iam::{acct}:role/service-role/{role}",
                    asia=upper_id(rng, "ASIA", 16),
                )
            )
            ua = lambda_agent_ids[int(rng.integers(0, len(lambda_agent_ids)))]
            channels.append(Channel(pi, "lambda", 25.0, False, ua, "pool", lambda_pools[site.region]))
        for role, session, svc, cat in SERVICE_LINKED:
            pi = add(
                Principal(
                    arn=f"arn:aws:sts::{acct}:assumed-role/{role}/{session}",
                    uid=f"{upper_id(rng, 'AROA')}:{session}",
                    name=role,
                    type="AssumedRole",
                    account_index=site.account_index,
                    account=acct,
                    profile=cat,
                    site=site.index,
                    region=site.region,
                    issuer=f"arn:aws:iam::{acct}:role/aws-service-role/{svc}/{role}",
                    invoked_by=svc,
                    domain=svc,
                )
            )
            channels.append(Channel(pi, cat, 12.0, False, uas.add(svc), "domain"))
        for svc in AWS_SERVICE_CALLERS:
            pi = add(
                Principal(
                    arn=None, uid=None, name=None, type="AWSService", account_index=site.account_index, account=acct,
                    profile="aws_service", site=site.index, region=site.region, invoked_by=svc, domain=svc,
                )
            )
            channels.append(Channel(pi, "aws_service", 3.0 * max(1, len(site.instances)), False, uas.add(svc), "domain"))
    for p in principals:
        if p.domain:
            ct_ips.add(p.domain)

    # ---- resources per site
    resources: dict[tuple[int, str], list[str]] = {}
    for site in sites:
        acct, region = site.account, site.region
        resources[(site.index, "s3")] = [f"arn:aws:s3:::{b}-{acct}-{region}" for b in ("app-assets", "logs", "backups", "data-lake")]
        resources[(site.index, "kms")] = [f"arn:aws:kms:{region}:{acct}:key/{_uuid(rng)}" for _ in range(3)]
        resources[(site.index, "iam_role")] = [f"arn:aws:iam::{acct}:role/{r}" for r in ("app-ec2-role", "deploy", "ReadOnly", "lambda-exec")]
        resources[(site.index, "lambda")] = [f"arn:aws:lambda:{region}:{acct}:function:{f}" for f in ("orders-0", "ingest-1", "reports-0")]
        resources[(site.index, "secret")] = [
            f"arn:aws:secretsmanager:{region}:{acct}:secret:{s}-{hex_id(rng, '', 6)}" for s in ("db-password", "api-token")
        ]

    # ---- network conversations and DNS
    dns_key_rows: list[tuple[int, int, int, int, int]] = []  # host, qtype(0 A/1 AAAA), rcode, ans_off, ans_len
    ans_type: list[int] = []
    ans_rdata: list[int] = []
    key_index: dict[tuple[str, int, int], int] = {}

    def dns_key(host: str, qtype: int, rcode: int, answers: list[tuple[int, str]]) -> int:
        k = (host, qtype, rcode)
        if k not in key_index:
            off = len(ans_type)
            for t, r in answers:
                ans_type.append(t)
                ans_rdata.append(dns_rdata.add(r))
            key_index[k] = len(dns_key_rows)
            dns_key_rows.append((dns_hosts.add(host), qtype, rcode, off, len(answers)))
        return key_index[k]

    aws_by_region: dict[str, list[Service]] = {}
    for region in regions:
        lst = []
        for pattern, n_ips, svc in AWS_ENDPOINTS:
            ips = tuple(ip4(random_public_ip(rng, AWS_OCTETS)) for _ in range(n_ips))
            ips6 = (f"2600:1f18:{int(rng.integers(0, 65536)):x}:{int(rng.integers(0, 65536)):x}::{int(rng.integers(1, 65536)):x}",) if svc == "S3" else ()
            lst.append(Service(pattern.format(r=region), ips, ips6, 443, 6, svc, group="aws"))
        aws_by_region[region] = lst
    scanners = [ip4(random_public_ip(rng, SCANNER_OCTETS)) for _ in range(60)]
    for site in sites:
        admins = [hu for hu in humans if hu.admin and hu.account_index == site.account_index] or humans[:1]
        admin_ips = sorted({ct_ips[i] for hu in admins for i in hu.networks[:2].ravel()})
        _build_site_traffic(rng, site, aws_by_region[site.region], scanners, admin_ips, dns_key)

    dns_keys = {
        "host": np.array([r[0] for r in dns_key_rows], dtype=np.int32),
        "qtype": np.array([r[1] for r in dns_key_rows], dtype=np.int8),
        "rcode": np.array([r[2] for r in dns_key_rows], dtype=np.int8),
        "ans_off": np.array([r[3] for r in dns_key_rows], dtype=np.int64),
        "ans_len": np.array([r[4] for r in dns_key_rows], dtype=np.int64),
        "ans_type": np.array(ans_type, dtype=np.int8),
        "ans_rdata": np.array(ans_rdata, dtype=np.int32),
    }
    first_a = np.full(len(dns_key_rows), -1, dtype=np.int32)
    for k, (_, _, _, off, length) in enumerate(dns_key_rows):
        for j in range(off, off + length):
            if ans_type[j] in (0, 2):
                first_a[k] = ans_rdata[j]
                break
    dns_keys["first_ip"] = first_a
    env = Environment(
        seed=seed,
        accounts=account_ids,
        regions=regions,
        sites=sites,
        humans=humans,
        principals=principals,
        channels=channels,
        ct_ips=ct_ips,
        uas=uas,
        catalog=catalog,
        travel_pool=travel_pool,
        resources=resources,
        dns_hosts=dns_hosts,
        dns_rdata=dns_rdata,
        dns_keys=dns_keys,
        signin_principals=signin,
        # after everything else: its console user agents (s3, lambda) are already known, so no id moves
        data_catalog=_build_catalog(uas, DATA_CATALOGS, _DATA_NOTFOUND, _DATA_THROTTLE_CODE),
    )
    env.used_ips = {ct_ips[i] for i in range(len(ct_ips))} | {s.ips[i] for s in sites for i in range(len(s.ips))}
    return env


def _uuid(rng: np.random.Generator) -> str:
    h = hex_id(rng, "", 32)
    return f"{h[:8]}-{h[8:12]}-4{h[13:16]}-a{h[17:20]}-{h[20:]}"


def _closest_region(regions: list[str], tz: float) -> str:
    return min(regions, key=lambda r: (abs(REGION_UTC_OFFSET.get(r, 0) - tz), regions.index(r)))


def _human_channels(channels: list[Channel], pi: int, hu: Human, scale: float) -> None:
    base = 120.0 * scale
    channels.append(Channel(pi, "console", base * (1 - hu.cli_share), True, -1, "human"))
    channels.append(Channel(pi, "cli", base * hu.cli_share, True, hu.cli_ua, "human"))


def _build_site_vpcs(rng: np.random.Generator, site: Site, n_vpcs: int, n_inst: int, used: set[int]) -> None:
    prefix = az_prefix(site.region)
    for v in range(n_vpcs):
        while True:
            second = int(rng.integers(0, 256))
            if second not in used:
                used.add(second)
                break
        vpc_uid = hex_id(rng, "vpc-")
        site.vpc_uids.append(vpc_uid)
        site.vpc_second.append(second)
        zones = [f"{prefix}-az{k}" for k in rng.choice(np.arange(1, 4), size=3, replace=False)]
        subnets = [(hex_id(rng, "subnet-"), 10 + k, zones[k]) for k in range(3)]
        public_subnet = (hex_id(rng, "subnet-"), 100, zones[0])
        site.nat_ips.append([ip4(random_public_ip(rng, AWS_OCTETS)) for _ in range(1 + int(rng.random() < 0.5))])
        site.vpce_uids.append(hex_id(rng, "vpce-"))
        site.firewall.append((hex_id(rng, "rslvr-frg-"), hex_id(rng, "rslvr-fdl-")) if rng.random() < 0.5 else None)
        v6_prefix = f"2600:1f18:{int(rng.integers(0, 65536)):x}:{int(rng.integers(0, 256)):x}"
        taken: set[int] = set()
        for i in range(n_inst):
            role = ROLES[i % len(ROLES)] if i < len(ROLES) else str(rng.choice(ROLES))
            public = role == "bastion" or (role == "web" and rng.random() < 0.5)
            sn_uid, third, zone = public_subnet if public else subnets[int(rng.integers(0, 3))]
            while True:
                host = int(rng.integers(4, 251))
                if (third, host) not in taken:
                    taken.add((third, host))
                    break
            ip = f"10.{second}.{third}.{host}"
            ip6 = f"{v6_prefix}{third:02x}:{hex_id(rng, '', 4)}:{hex_id(rng, '', 4)}:{hex_id(rng, '', 4)}:{hex_id(rng, '', 4)}" if rng.random() < 0.4 else None
            site.instances.append(
                Instance(
                    uid=hex_id(rng, "i-"),
                    eni=hex_id(rng, "eni-"),
                    vpc_uid=vpc_uid,
                    subnet_uid=sn_uid,
                    zone=zone,
                    ip=ip,
                    ip6=ip6,
                    role=role,
                    public=public,
                    distro="ubuntu" if rng.random() < 0.6 else "amazon",
                    activity=float(rng.lognormal(0.0, 0.6)),
                    vpc_index=v,
                )
            )


def _build_site_traffic(rng, site: Site, aws: list[Service], scanners: list[str], admin_ips: list[str], dns_key) -> None:
    inst = site.instances
    ips = site.ips
    ips.add("-")
    site.inst_ip = np.array([ips.add(x.ip) for x in inst], dtype=np.int32)
    site.inst_ip6 = np.array([ips.add(x.ip6) if x.ip6 else -1 for x in inst], dtype=np.int32)
    for key, attr in (("uid", "uid"), ("eni", "eni"), ("vpc", "vpc_uid"), ("subnet", "subnet_uid"), ("zone", "zone")):
        d = StrDict()
        site.inst_index[key] = np.array([d.add(getattr(x, attr)) for x in inst], dtype=np.int32)
        site.inst_strings[key] = d
    site.open_ports = np.array([[int(p) == LISTEN_PORTS.get(x.role, -1) or (int(p) == 22 and x.role == "bastion") for p in SCAN_PORTS] for x in inst], dtype=bool).reshape(len(inst), len(SCAN_PORTS))

    rows: list[tuple] = []  # owner, peer, client_owner, port, proto, v6, kind, weight, svc, accept_p, inbound_only, bytes_mu

    def conv(owner, peer, client_owner, port, proto, v6, kind, weight, svc="-", accept_p=0.999, inbound_only=False, mu=7.0):
        rows.append((owner, ips.add(peer), client_owner, port, proto, v6, kind, weight, site.svc_names.add(svc), accept_p, inbound_only, mu))

    dns_rows: list[tuple[int, int, float]] = []
    by_vpc_role: dict[tuple[int, str], list[int]] = {}
    for i, x in enumerate(inst):
        by_vpc_role.setdefault((x.vpc_index, x.role), []).append(i)
    lbs = {v: [f"10.{second}.101.{200 + k}" for k in range(2)] for v, second in enumerate(site.vpc_second)}

    for i, x in enumerate(inst):
        act = x.activity
        # internal peers by role (both ENIs log the conversation)
        for target_role in CLIENT_OF.get(x.role, ()):
            cands = [j for j in by_vpc_role.get((x.vpc_index, target_role), []) if j != i]
            if not cands:
                continue
            for j in rng.choice(cands, size=min(2, len(cands)), replace=False):
                j = int(j)
                port = LISTEN_PORTS[inst[j].role]
                w = 6.0 * act
                mu = 9.0 if target_role == "db" else 8.0
                conv(i, inst[j].ip, True, port, 6, False, K_INTERNAL, w, mu=mu)
                conv(j, x.ip, False, port, 6, False, K_INTERNAL, w, mu=mu)
                if x.ip6 and inst[j].ip6 and rng.random() < 0.5:
                    conv(i, inst[j].ip6, True, port, 6, True, K_INTERNAL, 0.3 * w, mu=mu)
                    conv(j, x.ip6, False, port, 6, True, K_INTERNAL, 0.3 * w, mu=mu)
                dns_rows.append((i, dns_key(f"{inst[j].role}-{j}.{site.vpc_uids[x.vpc_index]}.internal.", 0, 0, [(0, inst[j].ip)]), 2.0))
        # monitoring: every instance is scraped on 9100 by one worker/app in its VPC
        scrapers = [j for j in by_vpc_role.get((x.vpc_index, "worker"), []) if j != i]
        if scrapers:
            j = scrapers[0]
            conv(i, inst[j].ip, False, 9100, 6, False, K_INTERNAL, 1.5, mu=8.0)
            conv(j, x.ip, True, 9100, 6, False, K_INTERNAL, 1.5, mu=8.0)
        # load balancer nodes in front of web servers
        if x.role == "web":
            for lb in lbs.get(x.vpc_index, []):
                conv(i, lb, False, 443, 6, False, K_LB, 5.0 * act, mu=9.0)
        # internet services
        pool = [s for s in INTERNET_SERVICES if s.group in ("saas", x.distro)]
        if x.distro == "amazon":
            pool = pool + [s for s in aws if s.host.startswith("al2023-repos")]
        chosen = [pool[int(k)] for k in rng.choice(len(pool), size=min(len(pool), int(rng.integers(3, 7))), replace=False)]
        chosen += [s for s in aws if s.host.split(".")[0] in ("ssm", "ec2messages", "ssmmessages", "logs", "monitoring")]
        chosen += [aws[int(k)] for k in rng.choice([0, 4, 7, 8, 9], size=2, replace=False)]
        for s in chosen:
            kind = K_AWS if s.group == "aws" else K_INTERNET
            w = (2.0 if kind == K_AWS else 1.2) * act / len(s.ips)
            for ip in s.ips:
                conv(i, ip, True, s.port, s.proto, False, kind, w, s.svc_name, mu=8.5 if s.port == 80 else 7.5)
            if x.ip6 and s.ips6:
                for ip in s.ips6:
                    conv(i, ip, True, s.port, s.proto, True, kind, 0.6 * act, s.svc_name, mu=8.0)
            answers = ([(1, s.cname)] if s.cname else []) + [(0, ip) for ip in s.ips]
            dns_rows.append((i, dns_key(s.host + ".", 0, 0, answers), 3.0 * act))
            if s.ips6:
                a6 = ([(1, s.cname)] if s.cname else []) + [(2, ip) for ip in s.ips6]
                dns_rows.append((i, dns_key(s.host + ".", 1, 0, a6), 0.8 * act))
            elif rng.random() < 0.5:
                dns_rows.append((i, dns_key(s.host + ".", 1, 0, [(1, s.cname)] if s.cname else []), 0.4 * act))
        # search-domain misses and typos: NXDOMAIN
        dns_rows.append((i, dns_key(f"{chosen[0].host}.ec2.internal.", 0, 3, []), 0.3))
        dns_rows.append((i, dns_key(f"wpad.{site.vpc_uids[x.vpc_index]}.internal.", 0, 3, []), 0.1))
        # ICMPv6 / ICMP health checks inside the VPC
        if x.role in ("web", "app"):
            conv(i, lbs.get(x.vpc_index, [x.ip])[0], False, 0, 1, False, K_LB, 0.2, mu=5.0)
        # internet background scanning of public instances
        if x.public:
            for s in rng.choice(len(scanners), size=12, replace=False):
                conv(i, scanners[int(s)], False, 0, 6, False, K_SCANNER, 0.08, accept_p=0.0, inbound_only=True, mu=4.0)
        # administrators reach bastions over SSH from home and office
        if x.role == "bastion":
            for ip in admin_ips:
                conv(i, ip, False, 22, 6, False, K_ADMIN, 0.4, mu=9.5)

    if rows:
        cols = list(zip(*rows))
        names = ("owner", "peer", "client_owner", "port", "proto", "v6", "kind", "weight", "svc", "accept_p", "inbound_only", "mu")
        dtypes = (np.int32, np.int32, bool, np.int32, np.int16, bool, np.int8, np.float64, np.int32, np.float64, bool, np.float64)
        site.conv = {n: np.array(c, dtype=d) for n, c, d in zip(names, cols, dtypes)}
        site.conv["cum"] = np.cumsum(site.conv["weight"])
        site.flow_weight = float(site.conv["weight"].sum())
    if dns_rows:
        site.dns = {
            "owner": np.array([r[0] for r in dns_rows], dtype=np.int32),
            "key": np.array([r[1] for r in dns_rows], dtype=np.int32),
            "cum": np.cumsum(np.array([r[2] for r in dns_rows], dtype=np.float64)),
        }
        site.dns_weight = float(site.dns["cum"][-1])
