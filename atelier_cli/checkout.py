"""The checkout's code that some commands import: the training code, the model registry and the
functions' modules.

training/ is the root of the SageMaker code asset (its modules import as `vqa.prepare`,
`common.s3_upload`...), not a package of this distribution; lambdas/ likewise is the functions'
asset root (`shared`, `descriptions`). `atelier` is installed editable from the checkout (`make
install`), so each folder is found beside this package and put on the path.
"""

from __future__ import annotations

import sys
from pathlib import Path

from atelier_cli.errors import UsageError

CHECKOUT_DIR = Path(__file__).resolve().parent.parent
TRAINING_DIR = CHECKOUT_DIR / "training"
LAMBDAS_DIR = CHECKOUT_DIR / "lambdas"


def use_training_code() -> None:
    """Make `vqa`, `titan`, `dreambooth` and `common` importable, or say why not."""
    _use_folder(
        TRAINING_DIR,
        marker=TRAINING_DIR / "common" / "s3_upload.py",
        missing=f"the dataset builders are not here: {TRAINING_DIR} is missing",
    )


def use_model_registry() -> None:
    """Make `infra.models` importable: the one declaration of every model (standard library
    only, so the command does not load the CDK)."""
    registry = CHECKOUT_DIR / "infra" / "models.py"
    _use_folder(
        CHECKOUT_DIR,
        marker=registry,
        missing=f"the model registry is not here: {registry} is missing",
    )


def use_lambdas_code() -> None:
    """Make the functions' modules (`shared`, `descriptions`) importable from the checkout."""
    _use_folder(
        LAMBDAS_DIR,
        marker=LAMBDAS_DIR / "descriptions" / "logic" / "vision.py",
        missing=f"the description functions' code is not here: {LAMBDAS_DIR} is missing",
    )


def _use_folder(folder: Path, *, marker: Path, missing: str) -> None:
    """Put `folder` on the import path when `marker` (a file it must hold) is there."""
    if not marker.is_file():
        raise UsageError(
            missing,
            fix="run atelier from an Atelier checkout, installed with make install",
            code="checkout_missing",
        )
    path = str(folder)
    if path not in sys.path:
        sys.path.append(path)
