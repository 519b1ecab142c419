"""Exit codes of every ``provision`` subcommand and the one exception that carries them to ``main``."""

from __future__ import annotations

EXIT_OK = 0
EXIT_CHECK_FAILED = 1  # selftest/status: a check failed or the unit is not healthy
EXIT_BAD_INPUT = 2  # bad flag, bad answer, invalid config, file exists without --force
EXIT_CENTRAL = 3  # central unreachable, TLS failure, unexpected answer
EXIT_HARDWARE = 4  # GPIO, serial port or Modbus bus cannot be used
EXIT_PERMISSION = 5  # not allowed: by the OS (not root, file mode) or by the central (claim key, token refused)

EXIT_CODES_HELP = """\
exit codes:
  0  ok
  1  a check failed (selftest, status)
  2  bad input: a flag, an answer or the config is invalid, or a file exists and --force was not given
  3  central or network error: unreachable, TLS failure, unexpected reply
  4  hardware error: a GPIO pin, serial port or the Modbus bus cannot be used
  5  permission: not allowed by the OS (run as root?) or refused by the central (claim key, token)
  130 interrupted (Ctrl-C); nothing was left half-written
"""


class ProvisionError(Exception):
    """A failure to report in one clear line and exit with ``exit_code``; never carries a secret."""

    def __init__(self, exit_code: int, message: str, hints: list[str] | None = None) -> None:
        super().__init__(message)
        self.exit_code = exit_code
        self.message = message
        self.hints = hints or []
