"""Video: frames in and out, optical flow, and temporal consistency on top of the engine.

    io.py        decoding and encoding with PyAV (H.264, audio kept), frame folders
    flow.py      DIS optical flow (OpenCV), warping, the consistency mask, the warping error
    temporal.py  stylize_video(): each frame warm-started from the previous one, with a temporal loss
    ray.py       the same on Ray: flows in parallel tasks, the clip in chunks
    defaults.py  the defaults the command's parser shows (plain data)
"""

__all__ = []
