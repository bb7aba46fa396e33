"""stylelab: neural style transfer where style is a distribution of deep features."""

from .config import Config, ConfigError
from .errors import StylelabError
from .optimize import Step, stylize

__version__ = "0.1.0"
__all__ = ["Config", "ConfigError", "Step", "StylelabError", "stylize", "__version__"]
