"""Starting Step Functions executions and publishing SNS notices (the throughput sweeper's)."""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import Any

from botocore.exceptions import BotoCoreError, ClientError

from shared.adapters.aws import as_dependency_error, client, error_code

# SNS subjects: at most 100 printable ASCII characters.
MAX_SUBJECT_CHARACTERS = 100


class StepFunctionsWorkflow:
    def __init__(self, state_machine_arn: str, *, stepfunctions: Any | None = None) -> None:
        self.state_machine_arn = state_machine_arn
        self._client = stepfunctions or client("stepfunctions")

    def start(self, *, name: str, payload: Mapping[str, Any]) -> str:
        """The execution's ARN; an execution of that name that already exists counts as started."""
        try:
            response = self._client.start_execution(
                stateMachineArn=self.state_machine_arn, name=name, input=json.dumps(payload)
            )
        except ClientError as error:
            if error_code(error) == "ExecutionAlreadyExists":
                prefix = self.state_machine_arn.replace(":stateMachine:", ":execution:", 1)
                return f"{prefix}:{name}"
            raise self._error(error) from error
        except BotoCoreError as error:
            raise self._error(error) from error
        return str(response["executionArn"])

    def _error(self, error: ClientError | BotoCoreError) -> Exception:
        return as_dependency_error(
            error, code_prefix="workflow", what=f"Step Functions {self.state_machine_arn}"
        )


class SnsNotifier:
    def __init__(self, topic_arn: str, *, sns: Any | None = None) -> None:
        self.topic_arn = topic_arn
        self._client = sns or client("sns")

    def publish(self, *, subject: str, message: str) -> None:
        plain = "".join(c if " " <= c <= "~" else " " for c in subject)
        try:
            self._client.publish(
                TopicArn=self.topic_arn,
                Subject=plain[:MAX_SUBJECT_CHARACTERS],
                Message=message,
            )
        except (ClientError, BotoCoreError) as error:
            raise as_dependency_error(
                error, code_prefix="notifications", what=f"SNS topic {self.topic_arn}"
            ) from error
