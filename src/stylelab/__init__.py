"""stylelab: neural style transfer where style is a distribution of deep features."""

from .checkpoint import Checkpoint
from .config import Config, ConfigError, Region
from .errors import StylelabError
from .optimize import Step, stylize, synthesize
from .video import stylize_video

__version__ = "0.2.0"
__all__ = ["Checkpoint", "Config", "ConfigError", "Region", "Step", "StylelabError", "stylize", "stylize_video",
           "synthesize", "__version__"]
