"""`network`: optional private networking. Off by default (all three keys empty); when set, the
training jobs, the SageMaker models behind endpoints and Batch Transform, and every Lambda function
run in the given VPC's subnets with the given security groups (docs/networking.md says which VPC
endpoints such subnets need)."""

from __future__ import annotations

import re

from pydantic import ValidationInfo, model_validator

from infra.config.rules import (
    HERE,
    is_loading,
    matching,
    parsed,
    refuse_section,
    section,
    string_list,
)

# EC2 ids: a prefix and 8 (older resources) or 17 lowercase hex digits.
VPC_ID_PATTERN = re.compile(r"^vpc-([0-9a-f]{8}|[0-9a-f]{17})$")
SUBNET_ID_PATTERN = re.compile(r"^subnet-([0-9a-f]{8}|[0-9a-f]{17})$")
SECURITY_GROUP_ID_PATTERN = re.compile(r"^sg-([0-9a-f]{8}|[0-9a-f]{17})$")
# SageMaker's VpcConfig takes 1-16 subnets and 1-5 security groups (API reference, checked
# 2026-12-08); two subnets at least, so an endpoint or a job has a second Availability Zone.
MIN_SUBNETS = 2
MAX_SUBNETS = 16
MAX_SECURITY_GROUPS = 5

_SUBNETS_EXPECTED, _subnets = string_list(
    SUBNET_ID_PATTERN,
    "subnet ids such as 'subnet-0123456789abcdef0'",
    min_items=0,
    max_items=MAX_SUBNETS,
)
_GROUPS_EXPECTED, _security_groups = string_list(
    SECURITY_GROUP_ID_PATTERN,
    "security group ids such as 'sg-0123456789abcdef0'",
    min_items=0,
    max_items=MAX_SECURITY_GROUPS,
)
_ALL_THREE = (
    "private networking needs vpc_id, subnet_ids and security_group_ids together "
    "(leave all three empty to keep it off)"
)


@section
class NetworkConfig:
    """Optional private networking: a VPC, its private subnets and security groups."""

    vpc_id: str | None = matching(
        VPC_ID_PATTERN,
        "a VPC id such as 'vpc-0123456789abcdef0' or null",
        "VPC that jobs, models and functions run in; `null` (with both lists empty): private "
        "networking off",
        allowed="a VPC id or null",
        default=None,
    )
    subnet_ids: tuple[str, ...] = parsed(
        _SUBNETS_EXPECTED,
        _subnets,
        f"private subnets of `vpc_id` ({MIN_SUBNETS} at least, in different Availability "
        "Zones), with the VPC endpoints of docs/networking.md; empty: off",
        f"empty, or {MIN_SUBNETS}-{MAX_SUBNETS} subnet ids",
        default=(),
    )
    security_group_ids: tuple[str, ...] = parsed(
        _GROUPS_EXPECTED,
        _security_groups,
        "security groups of `vpc_id` for the jobs', models' and functions' network interfaces "
        "(HTTPS out to the VPC endpoints; traffic within the group for distributed training); "
        "empty: off",
        f"empty, or 1-{MAX_SECURITY_GROUPS} security group ids",
        default=(),
    )

    @model_validator(mode="after")
    def _all_or_nothing(self, info: ValidationInfo) -> NetworkConfig:
        if not is_loading(info) or not self.enabled:
            return self
        if self.vpc_id is None:
            raise refuse_section(f"{HERE}vpc_id is missing; {_ALL_THREE}")
        if not self.subnet_ids:
            raise refuse_section(f"{HERE}subnet_ids is missing; {_ALL_THREE}")
        if not self.security_group_ids:
            raise refuse_section(f"{HERE}security_group_ids is missing; {_ALL_THREE}")
        if len(self.subnet_ids) < MIN_SUBNETS:
            raise refuse_section(
                f"{HERE}subnet_ids = {list(self.subnet_ids)!r} names {len(self.subnet_ids)} "
                f"subnet; expected at least {MIN_SUBNETS} private subnets in different "
                "Availability Zones"
            )
        return self

    @property
    def enabled(self) -> bool:
        """Whether any key is set (a loaded stage has all three or none)."""
        return bool(self.vpc_id or self.subnet_ids or self.security_group_ids)
