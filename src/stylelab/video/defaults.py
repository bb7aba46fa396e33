"""Defaults of the video command that its parser needs: plain data (no torch), so `--help` answers at once."""

from __future__ import annotations

__all__ = ["DEFAULT_TEMPORAL_WEIGHT", "FLOW_PRESETS"]

FLOW_PRESETS = ("ultrafast", "fast", "medium", "fine")  # OpenCV's DIS optical flow presets (stylelab.video.flow)
DEFAULT_TEMPORAL_WEIGHT = 100.0  # not yet tuned: bench/video.py --temporal-weight 100 1000 compares weights
