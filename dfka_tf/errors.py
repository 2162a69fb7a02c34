"""User-facing errors.

Every error a user can cause derives from `DfkaError`. Its message names the problem and the
fix in one line; the runners print it without a traceback and exit non-zero.
"""


class DfkaError(Exception):
  """Base class of errors caused by user input or environment (not by a bug)."""


class DataNotFoundError(DfkaError):
  """A dataset is not prepared on disk (and must never be downloaded implicitly)."""


class ConfigError(DfkaError):
  """Flags or arguments that cannot work together."""


class TeacherError(DfkaError):
  """A teacher file is missing, is not a Keras model, or does not fit the others."""


class CheckpointError(DfkaError):
  """A checkpoint or a workdir that cannot be restored."""


class NonFiniteLossError(DfkaError):
  """A loss became NaN or inf; the message names stage, step and term."""


class WorkdirBusyError(DfkaError):
  """Another live process holds the workdir's lock."""


class PreemptedError(DfkaError):
  """SIGTERM stopped the run after checkpointing the running stage (resume to continue)."""
