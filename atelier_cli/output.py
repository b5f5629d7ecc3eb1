"""How a command answers: one JSON document with `--json`, rich text otherwise.

The JSON document on stdout is the whole answer, so scripts can parse it:
`{"version": 1, "command": "train vqa", "ok": true, "result": {...}}`, or on failure
`{"version": 1, "command": ..., "ok": false, "error": {"code", "message", "fix"?, "details"?}}`
with a non-zero exit status. Progress bars and notes go to stderr, and never in JSON mode.
"""

from __future__ import annotations

import json
import sys
from collections.abc import Callable, Mapping
from typing import Any

from rich.console import Console, RenderableType

from atelier_cli.errors import CliError

JSON_SCHEMA_VERSION = 1
Human = RenderableType | Callable[[Console], None] | None


class Printer:
    def __init__(self, *, json_mode: bool) -> None:
        self.json_mode = json_mode
        # Made per command (not per module) so that the streams are the ones in use now: tests
        # and pipes replace sys.stdout.
        self.out = Console(file=sys.stdout, highlight=False, soft_wrap=False)
        # Progress lines are never wrapped: a script reading stderr gets one line per note.
        self.err = Console(file=sys.stderr, highlight=False, soft_wrap=True)

    def result(self, command: str, result: Mapping[str, Any], human: Human = None) -> None:
        if self.json_mode:
            self._json({"command": command, "ok": True, "result": dict(result)})
        elif callable(human):
            human(self.out)
        elif human is not None:
            self.out.print(human)

    def error(self, command: str, error: CliError) -> None:
        if self.json_mode:
            self._json({"command": command, "ok": False, "error": error.to_dict()})
            return
        self.err.print(f"[bold red]Error:[/] {escape(error.message)}")
        if error.fix:
            self.err.print(f"[bold]Fix:[/] {escape(error.fix)}")

    def note(self, message: str) -> None:
        """A line of progress for people (stderr, plain text); silent in JSON mode."""
        if not self.json_mode:
            self.err.print(escape(message))

    def _json(self, document: dict[str, Any]) -> None:
        text = json.dumps({"version": JSON_SCHEMA_VERSION, **document}, default=str, indent=2)
        sys.stdout.write(text + "\n")
        sys.stdout.flush()


def escape(text: str) -> str:
    """Rich markup off for text that comes from users or AWS (it may hold `[...]`)."""
    from rich.markup import escape as rich_escape

    return rich_escape(text)
