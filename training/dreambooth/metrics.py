r"""Names of the metric lines `dreambooth/train.py` logs (format: `metric_lines`).

Per optimizer step: `[metric] epoch=1 step=12 step_loss=0.11 instance_loss=0.08 prior_loss=0.03
learning_rate=2e-06` (`prior_loss` only with prior preservation); per epoch:
`[metric] epoch=1 epoch_loss=0.12`. The training workflow's MetricDefinitions read each value as
` <name>=(\S+)`.
"""

from __future__ import annotations

STEP_LOSS = "step_loss"
INSTANCE_LOSS = "instance_loss"
PRIOR_LOSS = "prior_loss"
EPOCH_LOSS = "epoch_loss"
LEARNING_RATE = "learning_rate"
DREAMBOOTH_METRICS = (STEP_LOSS, INSTANCE_LOSS, PRIOR_LOSS, EPOCH_LOSS, LEARNING_RATE)
