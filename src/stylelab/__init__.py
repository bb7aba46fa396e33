"""stylelab: neural style transfer where style is a distribution of deep features."""

from .checkpoint import Checkpoint
from .config import Config, ConfigError, Region
from .errors import StylelabError
from .optimize import Step, stylize, synthesize

__version__ = "0.2.0"
__all__ = ["Checkpoint", "Config", "ConfigError", "Region", "Step", "StylelabError", "stylize", "synthesize",
           "__version__"]
