"""What the Titan customization functions exchange with their adapters: plain frozen records.

The tag names are the contract between the customize workflow (which writes them), the sweeper
(which reads them) and whoever extends a throughput's life (`aws bedrock tag-resource`).
infra/workflows/titan_common.py writes the same names; a test keeps the two equal.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime

# ISO 8601 UTC time after which the sweeper releases the throughput, e.g. 2026-08-01T18:00:00Z.
EXPIRES_AT_TAG = "atelier:expires-at"
# `<name_prefix>-<stage>`: which deployment created (and may release) the throughput.
DEPLOYMENT_TAG = "atelier:deployment"
# The expires-at value a past-expiry notice was sent for (throughputs with a commitment term,
# which cannot be deleted before the term ends): one notice per expiry, not one per sweep.
EXPIRY_NOTIFIED_TAG = "atelier:expiry-notified"


@dataclass(frozen=True)
class ProvisionedThroughput:
    """One entry of ListProvisionedModelThroughputs, with the tags read separately."""

    arn: str
    name: str
    status: str
    model_arn: str
    # None: no commitment term (billed hourly, deletable at any time).
    commitment: str | None = None
    commitment_expires: datetime | None = None
    tags: Mapping[str, str] = field(default_factory=dict)

    @property
    def resource_id(self) -> str:
        """The last part of the ARN (`provisioned-model/<id>`)."""
        return self.arn.rsplit("/", 1)[-1]
