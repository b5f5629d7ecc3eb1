"""The base of every stack that builds on the Data stack (its buckets, key and tables): one
constructor, so each stack only says what it builds."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from aws_cdk import Stack
from constructs import Construct

from infra.config import StageConfig

if TYPE_CHECKING:
    from infra.stacks.data import DataStack


class StageStack(Stack):
    """Keeps the stage's configuration and the Data stack as `config` and `data`, then calls
    `build()`, where a subclass creates its resources."""

    def __init__(
        self,
        scope: Construct,
        construct_id: str,
        *,
        config: StageConfig,
        data: DataStack,
        **kwargs: Any,
    ) -> None:
        super().__init__(scope, construct_id, **kwargs)
        self.config = config
        self.data = data
        self.build()

    def build(self) -> None:
        raise NotImplementedError(f"{type(self).__name__} must build its resources")
