"""`api`: the REST API in front of the pipelines."""

from __future__ import annotations

from pydantic import ValidationInfo, model_validator

from infra.config.constants import API_AUTH_TYPES, ORIGIN_PATTERN, USER_POOL_ARN_PATTERN, ApiAuth
from infra.config.rules import (
    HERE,
    choice,
    is_loading,
    matching,
    parsed,
    refuse_section,
    section,
    string_list,
    whole,
)

_ORIGINS_EXPECTED, _origins = string_list(
    ORIGIN_PATTERN, "https origins such as 'https://shop.example.com'", min_items=0
)


@section
class ApiConfig:
    """The REST API in front of the pipelines."""

    auth: ApiAuth = choice(API_AUTH_TYPES, "`iam` (SigV4) or `cognito`")
    cognito_user_pool_arn: str | None = matching(
        USER_POOL_ARN_PATTERN,
        "a Cognito user pool ARN or null",
        "user pool whose tokens the API accepts; required when `auth` is `cognito`",
        default=None,
    )
    throttle_rate_limit: int = whole(1, 10_000, "steady-state requests per second on the stage")
    throttle_burst_limit: int = whole(1, 5_000, "burst requests on the stage")
    # Empty: CORS off (SigV4 callers are servers and tools, not browsers).
    cors_allowed_origins: tuple[str, ...] = parsed(
        _ORIGINS_EXPECTED,
        _origins,
        "https origins allowed by CORS; empty: CORS off (SigV4 callers are servers, not browsers)",
        "0-50 https origins",
    )

    @model_validator(mode="after")
    def _pool_for_cognito(self, info: ValidationInfo) -> ApiConfig:
        if is_loading(info) and self.auth == "cognito" and self.cognito_user_pool_arn is None:
            raise refuse_section(
                f"{HERE}cognito_user_pool_arn is missing; auth 'cognito' needs the ARN of the "
                "user pool whose tokens the API accepts"
            )
        return self
