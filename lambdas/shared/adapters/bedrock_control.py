"""Bedrock's control plane for the throughput sweeper: list throughputs, read and write tags."""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from typing import Any

from botocore.exceptions import BotoCoreError, ClientError

from shared.adapters.aws import as_dependency_error, client
from shared.models.customization import ProvisionedThroughput
from shared.models.errors import DependencyError

# ListProvisionedModelThroughputs returns at most this many per page (1-1000).
PAGE_SIZE = 100


class BedrockThroughputs:
    def __init__(self, *, bedrock: Any | None = None) -> None:
        self._client = bedrock or client("bedrock")

    def list(self) -> Iterator[ProvisionedThroughput]:
        arguments: dict[str, Any] = {"maxResults": PAGE_SIZE}
        while True:
            try:
                page = self._client.list_provisioned_model_throughputs(**arguments)
            except (ClientError, BotoCoreError) as error:
                raise self._error(error, "listing provisioned throughputs") from error
            for summary in page.get("provisionedModelSummaries", []):
                yield ProvisionedThroughput(
                    arn=summary["provisionedModelArn"],
                    name=summary["provisionedModelName"],
                    status=summary["status"],
                    model_arn=summary["modelArn"],
                    commitment=summary.get("commitmentDuration"),
                    commitment_expires=summary.get("commitmentExpirationTime"),
                )
            token = page.get("nextToken")
            if not token:
                return
            arguments["nextToken"] = token

    def tags(self, arn: str) -> dict[str, str]:
        try:
            response = self._client.list_tags_for_resource(resourceARN=arn)
        except (ClientError, BotoCoreError) as error:
            raise self._error(error, f"reading the tags of {arn}") from error
        return {tag["key"]: tag["value"] for tag in response.get("tags", [])}

    def tag(self, arn: str, tags: Mapping[str, str]) -> None:
        try:
            self._client.tag_resource(
                resourceARN=arn, tags=[{"key": key, "value": value} for key, value in tags.items()]
            )
        except (ClientError, BotoCoreError) as error:
            raise self._error(error, f"tagging {arn}") from error

    @staticmethod
    def _error(error: ClientError | BotoCoreError, what: str) -> DependencyError:
        return as_dependency_error(error, code_prefix="bedrock", what=f"Bedrock ({what})")
