"""The catalog functions' configuration, read once per cold start from environment variables.

Every catalog Lambda gets the same two documents: the catalog workflow's own settings and the
description pipeline's (questions, categories, languages, image limits, prompt settings), so the
batch path validates and prompts exactly like the online path.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass, field

from descriptions.handlers.environment import attribute_source_settings
from shared.environment import json_settings
from shared.models.attributes import AttributeSourceSettings
from shared.models.catalog import CatalogSettings
from shared.models.descriptions import PipelineSettings


@dataclass(frozen=True)
class CatalogEnvironment:
    catalog: CatalogSettings
    descriptions: PipelineSettings
    # The online step's attribute source (the same variables as the description functions').
    attributes: AttributeSourceSettings = field(default_factory=AttributeSourceSettings)

    @classmethod
    def load(cls, environ: Mapping[str, str] = os.environ) -> CatalogEnvironment:
        return cls(
            catalog=json_settings("CATALOG_SETTINGS", CatalogSettings, environ),
            descriptions=json_settings("DESCRIPTIONS_SETTINGS", PipelineSettings, environ),
            attributes=attribute_source_settings(environ),
        )
