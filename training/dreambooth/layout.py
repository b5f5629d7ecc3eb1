"""The dataset layout `dreambooth.prepare` checks and `dreambooth.train` reads (the JumpStart
layout): instance images at the top of the folder, optional class images in `class_data_dir/`,
and `dataset_info.json` with the instance prompt (and the class prompt for prior preservation).
Reading it here once means the checker and the training job agree on what a dataset is.
"""

from __future__ import annotations

import difflib
import json
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from dreambooth.findings import Finding, Rule, error_finding, warning_finding

DATASET_INFO = "dataset_info.json"
CLASS_DATA_DIR = "class_data_dir"
# What training reads as images (case-insensitive); everything else is ignored by it.
IMAGE_SUFFIXES = frozenset({".png", ".jpg", ".jpeg"})
KNOWN_KEYS = ("instance_prompt", "class_prompt")


class DatasetError(ValueError):
    """A dataset the training job cannot use; the message names the file and the fix."""


@dataclass(frozen=True)
class DatasetInfo:
    instance_prompt: str
    class_prompt: str | None


def _image_files(folder: Path) -> list[Path]:
    return sorted(
        path
        for path in folder.iterdir()
        if path.is_file() and path.suffix.lower() in IMAGE_SUFFIXES
    )


def instance_image_paths(dataset_dir: Path) -> list[Path]:
    """The instance images: .png/.jpg/.jpeg files (any case) at the top level, sorted."""
    dataset_dir = Path(dataset_dir)
    if not dataset_dir.is_dir():
        raise DatasetError(f"dataset folder {dataset_dir} does not exist or is not a folder")
    return _image_files(dataset_dir)


def class_image_paths(dataset_dir: Path) -> list[Path]:
    """The class images in `class_data_dir/`, sorted; empty when the folder is absent."""
    folder = Path(dataset_dir) / CLASS_DATA_DIR
    return _image_files(folder) if folder.is_dir() else []


def read_dataset_info(dataset_dir: Path, *, prior_preservation: bool) -> DatasetInfo:
    """The prompts of `dataset_dir/dataset_info.json`, checked by the same rules as the checker.

    Raises DatasetError naming the file and the fix for every error (warnings are not raised).
    """
    path = Path(dataset_dir) / DATASET_INFO
    document, findings = load_dataset_info(path)
    if document is not None:
        findings += prompt_findings(document, prior_preservation=prior_preservation)
    errors = [finding.message for finding in findings if finding.is_error]
    if errors or document is None:
        raise DatasetError(f"{path}: " + "; ".join(errors))
    class_prompt = document.get("class_prompt")
    if not isinstance(class_prompt, str) or not class_prompt.strip():
        class_prompt = None
    return DatasetInfo(
        instance_prompt=str(document["instance_prompt"]).strip(),
        class_prompt=class_prompt.strip() if class_prompt is not None else None,
    )


_EXAMPLE = '{"instance_prompt": "a photo of sks dog", "class_prompt": "a photo of a dog"}'


def load_dataset_info(path: Path) -> tuple[dict[str, Any] | None, list[Finding]]:
    """The JSON object in `path`, or None and the error that says why not."""
    try:
        text = Path(path).read_bytes().decode("utf-8-sig")
    except FileNotFoundError:
        message = (
            f"{DATASET_INFO} is missing: add one like {_EXAMPLE} (--instance-prompt and "
            "--class-prompt write it)"
        )
        return None, [error_finding(Rule.DATASET_INFO, message, DATASET_INFO)]
    except OSError as error:
        message = f"cannot read {DATASET_INFO}: {error.strerror}"
        return None, [error_finding(Rule.DATASET_INFO, message, DATASET_INFO)]
    except UnicodeDecodeError:
        message = f"{DATASET_INFO} is not UTF-8 text: save it as UTF-8 JSON like {_EXAMPLE}"
        return None, [error_finding(Rule.DATASET_INFO, message, DATASET_INFO)]
    try:
        document = json.loads(text)
    except json.JSONDecodeError as error:
        message = f"{DATASET_INFO} is not valid JSON ({error}); expected {_EXAMPLE}"
        return None, [error_finding(Rule.DATASET_INFO, message, DATASET_INFO)]
    if not isinstance(document, dict):
        message = (
            f"{DATASET_INFO} holds a JSON {type(document).__name__}, not an object; "
            f"expected {_EXAMPLE}"
        )
        return None, [error_finding(Rule.DATASET_INFO, message, DATASET_INFO)]
    return document, []


def prompt_findings(document: dict[str, Any], *, prior_preservation: bool) -> list[Finding]:
    """The rules on the prompts and keys of a dataset_info.json object."""
    findings = [*_unknown_keys(document)]
    instance = document.get("instance_prompt")
    if "instance_prompt" not in document or instance is None:
        findings.append(
            error_finding(
                Rule.INSTANCE_PROMPT,
                "instance_prompt is missing: name the subject with a rare identifier, e.g. "
                '"a photo of sks dog" (--instance-prompt)',
                DATASET_INFO,
            )
        )
    elif not isinstance(instance, str) or not instance.strip():
        what = "empty" if isinstance(instance, str) else f"a JSON {type(instance).__name__}"
        findings.append(
            error_finding(
                Rule.INSTANCE_PROMPT,
                f'instance_prompt is {what}: it must be text such as "a photo of sks dog"',
                DATASET_INFO,
            )
        )
    klass = document.get("class_prompt")
    if not isinstance(klass, str) or not klass.strip():
        findings.extend(_class_prompt_missing(klass, prior_preservation=prior_preservation))
    elif isinstance(instance, str) and instance.strip():
        findings.extend(_compare_prompts(instance, klass, prior_preservation=prior_preservation))
    return findings


def _unknown_keys(document: dict[str, Any]) -> list[Finding]:
    findings = []
    for key in document:
        if key in KNOWN_KEYS:
            continue
        close = difflib.get_close_matches(str(key).replace(" ", "_").lower(), KNOWN_KEYS, n=1)
        hint = f" (did you mean {close[0]!r}?)" if close else ""
        findings.append(
            warning_finding(
                Rule.UNKNOWN_KEY,
                f"unknown key {key!r}{hint}: training reads only instance_prompt and "
                "class_prompt, and a build does not copy it",
                DATASET_INFO,
            )
        )
    return findings


def _class_prompt_missing(klass: object, *, prior_preservation: bool) -> list[Finding]:
    if klass is None:
        if not prior_preservation:
            return []
        return [
            error_finding(
                Rule.CLASS_PROMPT,
                "class_prompt is required with prior preservation: the job generates and trains "
                'class images with it, e.g. "a photo of a dog" (--class-prompt)',
                DATASET_INFO,
            )
        ]
    what = "empty" if isinstance(klass, str) else f"a JSON {type(klass).__name__}"
    if prior_preservation:
        message = (
            f'class_prompt is {what}: prior preservation needs text such as "a photo of a dog"'
        )
        return [error_finding(Rule.CLASS_PROMPT, message, DATASET_INFO)]
    message = (
        f"class_prompt is {what}: ignored without prior preservation, but a prior-preservation "
        'run would fail; write the class (e.g. "a photo of a dog") or remove the key'
    )
    return [warning_finding(Rule.CLASS_PROMPT, message, DATASET_INFO)]


def _words(prompt: str) -> list[str]:
    return re.findall(r"\w+", prompt.casefold())


def _compare_prompts(instance: str, klass: str, *, prior_preservation: bool) -> list[Finding]:
    """The instance prompt should be the class prompt plus a rare identifier ("sks")."""
    if _words(instance) == _words(klass):
        if prior_preservation:
            message = (
                "class_prompt is the same as instance_prompt: prior preservation would teach the "
                "class prompt your subject; add a rare identifier to the instance prompt "
                '("a photo of sks dog" vs "a photo of a dog")'
            )
            return [error_finding(Rule.CLASS_PROMPT, message, DATASET_INFO)]
        message = (
            "class_prompt is the same as instance_prompt: give the instance prompt a rare "
            'identifier ("a photo of sks dog" vs "a photo of a dog")'
        )
        return [warning_finding(Rule.CLASS_PROMPT, message, DATASET_INFO)]
    rare = set(_words(instance)) - set(_words(klass))
    if not rare:
        message = (
            f"instance_prompt {instance!r} has no word that class_prompt {klass!r} lacks: the "
            "model cannot tell your subject from the class; add a rare identifier such as sks"
        )
        return [warning_finding(Rule.IDENTIFIER, message, DATASET_INFO)]
    return []
