"""The Api stack's REST API: IAM (or Cognito) auth, throttling per route, access logs and traces,
our error body for every API Gateway-generated error, and the request models API Gateway checks
before a function runs."""

from __future__ import annotations

import json
from dataclasses import dataclass

from aws_cdk import Stack
from aws_cdk import aws_apigateway as apigateway
from aws_cdk import aws_cognito as cognito
from aws_cdk import aws_lambda as lambda_

from infra.checkov_skips import skip_check
from infra.config import StageConfig
from infra.constructs.log_groups import create_log_group
from infra.nag import acknowledge

# Room in API Gateway's check of an inline image for a `data:image/...;base64,` prefix.
DATA_URL_PREFIX_CHARACTERS = 64
# The API function checks the same pattern (lambdas/shared/models/descriptions.py).
PRODUCT_ID_PATTERN = r"^[A-Za-z0-9][A-Za-z0-9._-]{0,127}$"


@dataclass(frozen=True)
class ApiFunctions:
    """The functions behind the routes."""

    descriptions: lambda_.IFunction
    images: lambda_.IFunction
    diffusion: lambda_.IFunction


def base64_length(size: int) -> int:
    """Characters of standard, padded base64 for `size` bytes."""
    return (size + 2) // 3 * 4


# API Gateway-generated errors (by response type) → our error codes; every other 4xx/5xx falls to
# the two defaults.
GATEWAY_ERROR_CODES = {
    "BAD_REQUEST_BODY": "invalid_request",
    "BAD_REQUEST_PARAMETERS": "invalid_request",
    "ACCESS_DENIED": "access_denied",
    # Also what an unknown route answers: REST APIs report it as a missing token, not a 404.
    "MISSING_AUTHENTICATION_TOKEN": "unauthenticated",
    "EXPIRED_TOKEN": "unauthenticated",
    "INVALID_SIGNATURE": "unauthenticated",
    "UNAUTHORIZED": "unauthenticated",
    "THROTTLED": "throttled",
    "QUOTA_EXCEEDED": "quota_exceeded",
    "REQUEST_TOO_LARGE": "request_too_large",
    "INTEGRATION_TIMEOUT": "timeout",
    "DEFAULT_4XX": "bad_request",
    "DEFAULT_5XX": "internal_error",
}
# Request validation failures: a fixed message that names the rules.
VALIDATION_RESPONSE_TYPES = ("BAD_REQUEST_BODY", "BAD_REQUEST_PARAMETERS")


def gateway_error_template(code: str, *, validation: bool = False) -> str:
    """Our `{"error": {"code", "message"}}` body for an API Gateway-generated error.

    Gateway response templates are plain substitution, not VTL. `messageString` arrives quoted
    and escaped as a JSON string, so it goes in bare. `validationErrorString` is documented
    neither as quoted nor as escaped (it contains quotes, e.g. `(["image"])`), so a validation
    failure gets a fixed message naming the rules instead of risking a body that is not JSON.
    """
    message = (
        json.dumps(
            "the request does not match the API's request model: POST /descriptions needs a JSON "
            "object with string fields productId (1-128 letters, digits, '.', '_' or '-') and "
            "image (base64); POST /images needs a JSON object with a string prompt and integers "
            "width and height; POST /generations needs a JSON object with a string prompt; POST "
            "/styling needs a JSON object with a string prompt and an image object holding "
            "base64 or key, and an inline (base64) image or mask may not exceed the stage's "
            "limit: upload larger ones to the uploads bucket under styling/ and pass their key; "
            "see the OpenAPI documents"
        )
        if validation
        else "$context.error.messageString"
    )
    return f'{{"error":{{"code":{json.dumps(code)},"message":{message}}}}}'


def rest_api(scope: Stack, config: StageConfig, functions: ApiFunctions) -> apigateway.RestApi:
    """The REST API, its gateway responses, request models and routes, built in the stack's own
    scope (so every construct keeps the id it was deployed with)."""
    if config.api.auth == "cognito":
        assert config.api.cognito_user_pool_arn is not None  # checked by the config
        authorizer = apigateway.CognitoUserPoolsAuthorizer(
            scope,
            "Authorizer",
            cognito_user_pools=[
                cognito.UserPool.from_user_pool_arn(
                    scope, "UserPool", config.api.cognito_user_pool_arn
                )
            ],
        )
        method_options = apigateway.MethodOptions(
            authorization_type=apigateway.AuthorizationType.COGNITO, authorizer=authorizer
        )
    else:
        method_options = apigateway.MethodOptions(
            authorization_type=apigateway.AuthorizationType.IAM
        )
    cors = (
        apigateway.CorsOptions(
            allow_origins=list(config.api.cors_allowed_origins),
            allow_methods=["GET", "POST", "OPTIONS"],
            allow_headers=apigateway.Cors.DEFAULT_HEADERS,
        )
        if config.api.cors_allowed_origins
        else None
    )
    access_logs = create_log_group(scope, "AccessLogs", config=config)
    api = apigateway.RestApi(
        scope,
        "Api",
        rest_api_name=config.resource_name("api"),
        description=f"Atelier {config.stage}: product descriptions from photos, personalized "
        "images",
        endpoint_types=[apigateway.EndpointType.REGIONAL],
        disable_execute_api_endpoint=False,
        # Execution logging needs the account-wide API Gateway CloudWatch role, which one
        # app must not take over from every other API in the account.
        cloud_watch_role=False,
        default_method_options=method_options,
        default_cors_preflight_options=cors,
        deploy_options=apigateway.StageOptions(
            stage_name="v1",
            throttling_rate_limit=config.api.throttle_rate_limit,
            throttling_burst_limit=config.api.throttle_burst_limit,
            # Image generation is bound by a few provisioned model units, and diffusion by a
            # few GPU instances.
            method_options={
                "/images/POST": apigateway.MethodDeploymentOptions(
                    throttling_rate_limit=config.images.throttle_rate_limit,
                    throttling_burst_limit=config.images.throttle_burst_limit,
                ),
                **{
                    f"/{route}/POST": apigateway.MethodDeploymentOptions(
                        throttling_rate_limit=config.diffusion.throttle_rate_limit,
                        throttling_burst_limit=config.diffusion.throttle_burst_limit,
                    )
                    for route in ("generations", "styling")
                },
            },
            tracing_enabled=True,
            access_log_destination=apigateway.LogGroupLogDestination(access_logs),
            access_log_format=apigateway.AccessLogFormat.json_with_standard_fields(
                caller=True,
                http_method=True,
                ip=True,
                protocol=True,
                request_time=True,
                resource_path=True,
                response_length=True,
                status=True,
                user=True,
            ),
        ),
    )
    for response_type, code in GATEWAY_ERROR_CODES.items():
        api.add_gateway_response(
            f"{response_type}Response",
            type=apigateway.ResponseType.of(response_type),
            templates={
                "application/json": gateway_error_template(
                    code, validation=response_type in VALIDATION_RESPONSE_TYPES
                )
            },
        )

    # One validator for both methods: POST has a body model, GET a required path parameter.
    validator = api.add_request_validator(
        "RequestValidator", validate_request_body=True, validate_request_parameters=True
    )
    request_model = request_body_model(
        api,
        "DescribeRequest",
        "the function",
        {
            "productId": apigateway.JsonSchema(
                type=apigateway.JsonSchemaType.STRING, pattern=PRODUCT_ID_PATTERN
            ),
            "image": apigateway.JsonSchema(type=apigateway.JsonSchemaType.STRING),
        },
        required=["productId", "image"],
    )
    integration = apigateway.LambdaIntegration(
        functions.descriptions, proxy=True, allow_test_invoke=False
    )
    descriptions = api.root.add_resource("descriptions")
    post = post_method(descriptions, integration, validator, request_model)
    get = descriptions.add_resource("{productId}").add_method(
        "GET",
        integration,
        request_validator=validator,
        request_parameters={"method.request.path.productId": True},
    )
    images_model = request_body_model(
        api,
        "GenerateImagesRequest",
        "the images function",
        {
            "prompt": apigateway.JsonSchema(type=apigateway.JsonSchemaType.STRING),
            "width": apigateway.JsonSchema(type=apigateway.JsonSchemaType.INTEGER),
            "height": apigateway.JsonSchema(type=apigateway.JsonSchemaType.INTEGER),
        },
        required=["prompt", "width", "height"],
    )
    images = post_method(
        api.root.add_resource("images"),
        apigateway.LambdaIntegration(functions.images, proxy=True, allow_test_invoke=False),
        validator,
        images_model,
    )
    generations, styling = _diffusion_routes(api, config, validator, functions.diffusion)

    stage = api.deployment_stage
    acknowledge(
        stage,
        "AwsSolutions-APIG3",
        "No WAF web ACL by default: every request must be IAM-signed (or carry a Cognito "
        "token) and the stage is throttled; a web ACL costs per month and is left to the "
        "account owner to associate.",
    )
    acknowledge(
        stage,
        "AwsSolutions-APIG6",
        "Execution logging needs the account-wide API Gateway CloudWatch role, a singleton "
        "this app must not take over; JSON access logs, X-Ray traces and the function's "
        "own logs cover each request.",
    )
    skip_check(
        stage,
        "CKV_AWS_120",
        "No response cache: every POST must reach its function (each describes or generates "
        "anew), and GET answers are per product and change when a description is stored; a "
        "cache would serve stale results and bills per hour.",
    )
    if config.api.auth == "iam":
        for method in (post, get, images, generations, styling):
            acknowledge(
                method,
                "AwsSolutions-COG4",
                "IAM SigV4 is the designed default for server-to-server callers; a Cognito "
                "user pool authorizer is used when api.auth is 'cognito'.",
            )
    return api


def _diffusion_routes(
    api: apigateway.RestApi,
    config: StageConfig,
    validator: apigateway.RequestValidator,
    function: lambda_.IFunction,
) -> tuple[apigateway.Method, apigateway.Method]:
    """POST /generations and POST /styling, both proxied to the diffusion function.

    API Gateway checks little (the function names each bad field), but it does refuse an
    inline image longer than the stage allows: a body over Lambda's 6 MB event limit would
    otherwise never reach the function that explains what to do instead.
    """
    string = apigateway.JsonSchema(type=apigateway.JsonSchemaType.STRING)
    inline = base64_length(config.diffusion.max_inline_image_bytes)
    image = apigateway.JsonSchema(
        type=apigateway.JsonSchemaType.OBJECT,
        properties={
            "base64": apigateway.JsonSchema(
                type=apigateway.JsonSchemaType.STRING,
                max_length=inline + DATA_URL_PREFIX_CHARACTERS,
            ),
            "key": string,
        },
    )
    invoked = "the diffusion function"
    models = {
        "generations": request_body_model(
            api, "GenerationRequest", invoked, {"prompt": string}, required=["prompt"]
        ),
        "styling": request_body_model(
            api,
            "StylingRequest",
            invoked,
            {"image": image, "mask": image, "prompt": string},
            required=["image", "prompt"],
        ),
    }
    integration = apigateway.LambdaIntegration(function, proxy=True, allow_test_invoke=False)
    generations, styling = (
        post_method(api.root.add_resource(route), integration, validator, models[route])
        for route in ("generations", "styling")
    )
    return generations, styling


def request_body_model(
    api: apigateway.RestApi,
    name: str,
    invoked: str,
    properties: dict[str, apigateway.JsonSchema],
    *,
    required: list[str],
) -> apigateway.Model:
    """The JSON Schema (draft 4) of a POST body, object `name`, that API Gateway checks before
    invoking `invoked` (the function's name in the model's description)."""
    return api.add_model(
        name,
        content_type="application/json",
        description=f"The fields API Gateway checks before invoking {invoked}",
        schema=apigateway.JsonSchema(
            schema=apigateway.JsonSchemaVersion.DRAFT4,
            title=name,
            type=apigateway.JsonSchemaType.OBJECT,
            required=required,
            properties=properties,
        ),
    )


def post_method(
    resource: apigateway.IResource,
    integration: apigateway.Integration,
    validator: apigateway.IRequestValidator,
    model: apigateway.IModel,
) -> apigateway.Method:
    """`POST` on `resource`, its JSON body checked against `model` before `integration` runs."""
    return resource.add_method(
        "POST",
        integration,
        request_validator=validator,
        request_models={"application/json": model},
    )
