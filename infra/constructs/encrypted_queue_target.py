"""An EventBridge rule target for a queue under the stage's data key, without the broad key grant.

CDK's `SqsQueue` target, given a queue with a KMS key, grants `events.amazonaws.com`
kms:Encrypt, Decrypt, ReEncrypt* and GenerateDataKey* in the key's policy with an
`aws:SourceAccount` condition only: any EventBridge rule of the account could then use the key
that protects all customer data. Here instead:

- the data key's policy holds `eventbridge_queues_key_policy_statement`: GenerateDataKey and
  Decrypt only (what EventBridge needs to send to an SSE-KMS queue), for this account, and only
  where SQS's encryption context `aws:sqs:arn` names one of this stage's queues;
- `add_encrypted_queue_target` hands CDK's target a key-less reference to the same queue, so the
  target adds no key statement, and it allows the rule (aws:SourceArn) in the queue's policy.
"""

from __future__ import annotations

from aws_cdk import Aws, Duration
from aws_cdk import aws_events as events
from aws_cdk import aws_events_targets as targets
from aws_cdk import aws_iam as iam
from aws_cdk import aws_sqs as sqs

from infra.config import StageConfig

EVENTBRIDGE = "events.amazonaws.com"
# EventBridge generates the data key to send a message and decrypts it to reuse it.
EVENTBRIDGE_QUEUE_KEY_ACTIONS = ("kms:GenerateDataKey", "kms:Decrypt")


def queue_arn_pattern(config: StageConfig) -> str:
    """Every queue of the stage is unnamed, so CloudFormation names it
    `<stack name>-<logical id>-<suffix>`, and each stack is named `<prefix>-<stage>-<name>`."""
    return f"arn:{Aws.PARTITION}:sqs:{Aws.REGION}:{Aws.ACCOUNT_ID}:{config.resource_name('')}*"


def eventbridge_queues_key_policy_statement(config: StageConfig) -> iam.PolicyStatement:
    """Lets EventBridge of this account use the data key to send to this stage's queues only."""
    return iam.PolicyStatement(
        sid="EventBridgeToQueuesOfThisStage",
        principals=[iam.ServicePrincipal(EVENTBRIDGE)],
        actions=list(EVENTBRIDGE_QUEUE_KEY_ACTIONS),
        resources=["*"],
        conditions={
            "StringEquals": {"aws:SourceAccount": Aws.ACCOUNT_ID},
            # SQS passes the queue's ARN as encryption context on every KMS call.
            "ArnLike": {"kms:EncryptionContext:aws:sqs:arn": queue_arn_pattern(config)},
        },
    )


def add_encrypted_queue_target(
    rule: events.Rule,
    queue: sqs.Queue,
    *,
    dead_letter_queue: sqs.IQueue,
    retry_attempts: int,
    max_event_age: Duration,
) -> None:
    """Sends the rule's events to `queue` (under the data key) and its failed deliveries to
    `dead_letter_queue`; only this rule may send to either."""
    # Without a key on the reference, CDK's target neither grants on the key nor falls back to
    # aws:SourceAccount; its grant on an imported queue adds nothing, so the queue policy
    # statement is ours, below. The target's ARN is the real queue's.
    keyless = sqs.Queue.from_queue_attributes(
        rule,
        f"{queue.node.id}Target",
        queue_arn=queue.queue_arn,
        queue_name=queue.queue_name,
        queue_url=queue.queue_url,
    )
    rule.add_target(
        targets.SqsQueue(
            keyless,
            dead_letter_queue=dead_letter_queue,
            retry_attempts=retry_attempts,
            max_event_age=max_event_age,
        )
    )
    queue.add_to_resource_policy(
        iam.PolicyStatement(
            principals=[iam.ServicePrincipal(EVENTBRIDGE)],
            actions=["sqs:SendMessage"],
            resources=[queue.queue_arn],
            conditions={"ArnEquals": {"aws:SourceArn": rule.rule_arn}},
        )
    )
