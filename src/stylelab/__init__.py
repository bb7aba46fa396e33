"""stylelab: neural style transfer where style is a distribution of deep features."""

__version__ = "0.2.0"  # first: modules below import it

from .checkpoint import Checkpoint
from .config import Config, ConfigError, Region
from .errors import StylelabError
from .executors import BatchEvent, BatchReport, InProcess, LocalProcesses, RayActors, batch
from .jobs import JobResult, JobSpec, run_job
from .optimize import Step, stylize, synthesize

__all__ = ["BatchEvent", "BatchReport", "Checkpoint", "Config", "ConfigError", "InProcess", "JobResult", "JobSpec",
           "LocalProcesses", "RayActors", "Region", "Step", "StylelabError", "batch", "run_job", "stylize",
           "synthesize", "__version__"]
