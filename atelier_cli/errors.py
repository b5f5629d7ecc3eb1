"""What can go wrong in a command, each with the exit status scripts can rely on.

Every error carries a stable `code` (for `--json`), a message that names what is wrong (the stack,
the parameter, the permission, the field) and a `fix`: the command or setting that resolves it.
"""

from __future__ import annotations

from enum import IntEnum


class ExitCode(IntEnum):
    """`atelier`'s exit statuses (docs/cli.md, "Scripting"). Never renumber: scripts test them."""

    OK = 0
    INTERNAL = 1  # a bug in atelier itself
    USAGE = 2  # bad arguments, or a request the service refused as invalid
    NOT_DEPLOYED = 3  # a stack, parameter, endpoint, throughput or execution does not exist
    ACCESS = 4  # no credentials, or credentials without the permission
    SERVICE = 5  # AWS (or the Atelier API) failed or throttled: retrying may help
    FAILED = 6  # the work ran and failed: a job, a workflow, or some of several items
    INTERRUPTED = 130  # Ctrl-C; what was started keeps running in AWS


class CliError(Exception):
    """An error a user can act on. Subclasses fix the exit status and default code."""

    exit_code = ExitCode.INTERNAL
    default_code = "internal_error"

    def __init__(
        self,
        message: str,
        *,
        fix: str | None = None,
        code: str | None = None,
        details: object = None,
    ) -> None:
        super().__init__(message)
        self.message = message
        self.fix = fix
        self.code = code or self.default_code
        # Anything machine-readable worth returning with the error (a failed job's reason...).
        self.details = details

    def to_dict(self) -> dict[str, object]:
        document: dict[str, object] = {"code": self.code, "message": self.message}
        if self.fix:
            document["fix"] = self.fix
        if self.details is not None:
            document["details"] = self.details
        return document


class UsageError(CliError):
    exit_code = ExitCode.USAGE
    default_code = "invalid_argument"


class NotDeployedError(CliError):
    exit_code = ExitCode.NOT_DEPLOYED
    default_code = "not_deployed"


class AccessError(CliError):
    exit_code = ExitCode.ACCESS
    default_code = "access_denied"


class ServiceError(CliError):
    exit_code = ExitCode.SERVICE
    default_code = "service_error"


class FailedError(CliError):
    exit_code = ExitCode.FAILED
    default_code = "failed"
