"""Hugging Face Hub base models are loaded at a pinned commit, never at a branch.

A branch (`main`) or tag on the Hub can move or disappear under a running product: in November
2025 Stability AI removed its whole Stable Diffusion 2 family, and every job that named
`stabilityai/stable-diffusion-2-1-base` failed at start. A 40-hex commit hash names exactly the
files that were tested, and keeps naming them as long as the repository exists. So every
`from_pretrained` of a hub id in the training and packaging code passes `revision=<hash>`, and a
hub id without one is refused here, with the way to look the hash up.

A local folder (a SageMaker `model` channel, a downloaded snapshot) is what it is: it needs no
revision. docs/base-models.md lists the pinned defaults and where the copies come from.
"""

from __future__ import annotations

import re
from pathlib import Path

# A Hub commit: 40 lower-case hex digits (what `HfApi().model_info(repo).sha` returns).
REVISION_PATTERN = re.compile(r"^[0-9a-f]{40}$")
# `owner/name`, as the Hub spells repository ids.
HUB_ID_PATTERN = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,95}/[A-Za-z0-9][A-Za-z0-9._-]{0,95}$")
LOOKUP_HINT = (
    'look the commit up with `python -c "from huggingface_hub import HfApi; '
    "print(HfApi().model_info('{model}').sha)\"` (or the `sha` field of "
    "https://huggingface.co/api/models/{model})"
)


class UnpinnedModelError(ValueError):
    """A hub id without a commit hash, or with a branch or tag where the hash belongs."""


def hub_revision(model: str, revision: str | None, *, flag: str) -> str | None:
    """The revision to pass to `from_pretrained` for `model`: None for a local folder, the
    commit hash for a hub id. `flag` names the setting that holds the revision, for the error.

    Raises UnpinnedModelError for a hub id without a 40-hex revision, and for something that is
    neither a folder nor a hub id.
    """
    if Path(model).is_dir():
        return None
    if not HUB_ID_PATTERN.match(model):
        raise UnpinnedModelError(
            f"{model!r} is neither a local folder nor a Hugging Face model id (owner/name)"
        )
    hint = LOOKUP_HINT.format(model=model)
    if revision is None or revision == "":
        raise UnpinnedModelError(
            f"{model} is a Hugging Face Hub id without a pinned revision: set {flag} to the "
            "40-hex commit hash to load. A branch such as main can change or vanish (the "
            "stabilityai Stable Diffusion 2 repositories were removed in November 2025), so "
            f"unpinned hub models are refused; {hint}"
        )
    if not REVISION_PATTERN.match(revision):
        raise UnpinnedModelError(
            f"{flag} {revision!r} for {model} is not a commit hash (40 lower-case hex digits): "
            f"branches and tags move, so they are refused; {hint}"
        )
    return revision
