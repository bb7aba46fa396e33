"""stylelab: neural style transfer where style is a distribution of deep features.

The public names are imported on first use (PEP 562), so `import stylelab` and the command line's start-up do
not load torch before they need it (a Ctrl-C while torch loads is then the CLI's to handle: exit 130).
"""

from __future__ import annotations

import importlib
from typing import Any

__version__ = "0.4.0"
_PUBLIC = {
    "Checkpoint": "engine.checkpoint", "Config": "config", "ConfigError": "config", "Region": "config",
    "StylelabError": "errors", "Step": "engine.events", "ScaleEnd": "engine.events", "stylize": "engine.optimize",
    "synthesize": "engine.optimize", "BatchEvent": "jobs.executors", "BatchReport": "jobs.executors",
    "InProcess": "jobs.executors", "LocalProcesses": "jobs.executors", "RayActors": "jobs.executors",
    "batch": "jobs.executors", "JobResult": "jobs.spec", "JobSpec": "jobs.spec", "run_job": "jobs.spec",
    "stylize_video": "video.temporal", "stylize_video_ray": "video.ray",
}
__all__ = [*_PUBLIC, "__version__"]


def __getattr__(name: str) -> Any:
    if name in _PUBLIC:
        return getattr(importlib.import_module(f".{_PUBLIC[name]}", __name__), name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def __dir__() -> list[str]:
    return sorted(__all__)
