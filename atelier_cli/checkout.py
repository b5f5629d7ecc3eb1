"""The checkout's training code, imported by the commands that wrap it.

training/ is the root of the SageMaker code asset (its modules import as `vqa.prepare`,
`common.s3_upload`...), not a package of this distribution. `atelier` is installed editable from
the checkout (`make install`), so the folder is found beside this package and put on the path.
"""

from __future__ import annotations

import sys
from pathlib import Path

from atelier_cli.errors import UsageError

CHECKOUT_DIR = Path(__file__).resolve().parent.parent
TRAINING_DIR = CHECKOUT_DIR / "training"


def use_training_code() -> None:
    """Make `vqa`, `titan`, `dreambooth` and `common` importable, or say why not."""
    if not (TRAINING_DIR / "common" / "s3_upload.py").is_file():
        raise UsageError(
            f"the dataset builders are not here: {TRAINING_DIR} is missing",
            fix="run atelier from an Atelier checkout, installed with make install",
            code="checkout_missing",
        )
    path = str(TRAINING_DIR)
    if path not in sys.path:
        sys.path.append(path)


def use_model_registry() -> None:
    """Make `infra.models` importable: the one declaration of every model (standard library
    only, so the command does not load the CDK)."""
    if not (CHECKOUT_DIR / "infra" / "models.py").is_file():
        raise UsageError(
            f"the model registry is not here: {CHECKOUT_DIR / 'infra' / 'models.py'} is missing",
            fix="run atelier from an Atelier checkout, installed with make install",
            code="checkout_missing",
        )
    path = str(CHECKOUT_DIR)
    if path not in sys.path:
        sys.path.append(path)
