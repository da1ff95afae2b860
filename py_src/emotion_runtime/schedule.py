"""When a video's face detector must run again.

The detector is the costliest step of a camera frame (in onnxruntime-web's WASM backend more than the emotion model).
Between its runs the faces of its last run are kept (moved on at their tracks' velocity, FramePipeline.keep_faces),
cut from each new frame and classified again, as face trackers do (MediaPipe runs its detector only when tracking is
lost; human's `skipFrames`). A kept box is only as good as its prediction, so the detector runs again on the next
frame as soon as a kept face's crop has changed since that run: the face moved otherwise than predicted or turned,
or its expression changed.
"""

from __future__ import annotations

from typing import Hashable

import numpy as np

from .preprocess import NORM_STD

# Mean absolute change of a crop (grey levels of 0..255, each crop's mean removed so exposure drifts do not count)
# above which its face has moved. Measured on 2,000 FER-2013 faces (48 px): a 1 px shift (2% of the crop) changes a
# crop by 22 on average (10th percentile 16), 2 px by 35; sensor noise of sigma 4 grey levels by 4.5 at full
# resolution, and less in a crop area-averaged down from a face of ~100-300 px.
MOVED_ABOVE = 8.0


class DetectionSchedule:
    """Decides, frame by frame, whether the face detector runs (`due`) or the last run's faces are kept. It runs when
    - the caller wants it on every frame (`every` <= 1: photos, or tracking turned off),
    - its last run found no face (a face may enter at any time),
    - the frame size or the detector (`key`) changed,
    - `every` frames have passed since its last run,
    - a kept face's crop differs from its crop at that run by more than `moved_above` (see MOVED_ABOVE).
    """

    def __init__(self, moved_above: float = MOVED_ABOVE):
        self.moved_above = float(moved_above)
        self.every = 1
        self.forget()

    def forget(self) -> None:
        """No run to keep faces from (a new source, a reset)."""
        self.key: Hashable | None = None  # the last run's frame size and detector, when its faces may be kept
        self.since = 0  # frames since the last run
        self.reference: np.ndarray | None = None  # the kept faces' crops at the last run, flat, mean removed
        self.moved = False

    def due(self, key: Hashable, every: int) -> bool:
        """Whether the detector must run on this frame (`key`: its size and detector), if it is to run at least every
        `every` frames."""
        self.every = max(1, int(every))
        return (self.every == 1 or key != self.key or self.reference is None or len(self.reference) == 0
                or self.moved or self.since + 1 >= self.every)

    def ran(self, key: Hashable) -> None:
        """The detector ran on a frame of `key`; its faces may be kept on the next frames only if they were asked
        for at most every `every` > 1 frames."""
        self.forget()
        if self.every > 1:
            self.key = key

    def kept(self, key: Hashable) -> None:
        """The last run's faces are kept for this frame (the caller checked `due`)."""
        if key != self.key or self.reference is None:
            raise RuntimeError("no face detection to keep for this frame: run the detector (detection_due said so)")
        self.since += 1

    def crops(self, crops: np.ndarray) -> None:
        """This frame's crops of the current faces, normalised (N, ...): the reference at a run, compared with it
        on the frames that keep its faces."""
        if self.key is None:
            return
        flat = np.asarray(crops, np.float32).reshape(len(crops), -1)
        flat = flat - flat.mean(axis=1, keepdims=True)
        if self.since == 0:
            self.reference = flat
        elif len(flat) == len(self.reference):
            change = np.abs(flat - self.reference).mean(axis=1) * NORM_STD
            self.moved = bool((change > self.moved_above).any())
        else:
            self.moved = True
