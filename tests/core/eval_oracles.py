"""Stand-in predictors with upstream's APIs whose answers are known, for exact protocol tests."""

from __future__ import annotations

from typing import Any, Dict, List, Optional, Set, Tuple

import numpy as np

from sam2_plugins.evaluation.vos_protocol import mask_to_box


class OracleVideoPredictor:
    """Upstream's video-predictor API, answering with the GT of each prompted object.

    ``reach``: frames farther than this from every prompted frame of an object come out empty
    (a tracker that drifts), so more interaction helps. ``bad``: ``{obj_id: frames}`` that come
    out empty unless prompted there. ``answers``: ``{(obj_id, frame): mask}`` returned as is.
    ``click_radius``: on a clicked frame the answer is the GT within that distance of the
    positive clicks (so one click does not finish a large object). Records calls, resets and
    the start of each propagation.
    """

    add_all_frames_to_correct_as_cond = True

    def __init__(self, gt: np.ndarray, reach: int = 10**6, bad: Optional[Dict[int, Set[int]]] = None,
                 answers: Optional[Dict[Tuple[int, int], np.ndarray]] = None,
                 click_radius: Optional[float] = None) -> None:
        self.gt = np.asarray(gt)
        self.click_radius = click_radius
        self.points: Dict[Tuple[int, int], Tuple[np.ndarray, np.ndarray]] = {}
        self.reach = reach
        self.bad = bad or {}
        self.answers = answers or {}
        self.calls: List[str] = []
        self.resets = 0
        self.starts: List[int] = []
        self.clicks: List[Tuple[int, int, Tuple[float, float], int]] = []  # (obj, frame, xy, label)

    def init_state(self, video: Any) -> Dict[str, Any]:
        assert video.num_frames == len(self.gt)
        return {"prompted": {}}

    def reset_state(self, state: Dict[str, Any]) -> None:
        state["prompted"].clear()
        self.points.clear()
        self.resets += 1

    def _mask(self, state: Dict[str, Any], k: int, t: int) -> np.ndarray:
        if (k, t) in self.answers:
            return np.asarray(self.answers[(k, t)], bool)
        prompted = state["prompted"][k]
        if self.click_radius is not None and (k, t) in self.points:
            pts, labs = self.points[(k, t)]
            yy, xx = np.mgrid[0:self.gt.shape[1], 0:self.gt.shape[2]]
            near = np.zeros(self.gt.shape[1:], bool)
            for (px, py), lab in zip(pts, labs):
                if lab == 1:
                    near |= (yy - py) ** 2 + (xx - px) ** 2 <= self.click_radius ** 2
            return near & (self.gt[t] == k)
        if t not in prompted and (t in self.bad.get(k, ()) or min(abs(t - f) for f in prompted) > self.reach):
            return np.zeros(self.gt.shape[1:], bool)
        return self.gt[t] == k

    def _logits(self, state: Dict[str, Any], t: int):
        ids = list(state["prompted"])  # in the order objects were first prompted
        out = np.full((len(ids), 1) + self.gt.shape[1:], -10.0, np.float32)
        for i, k in enumerate(ids):
            out[i, 0][self._mask(state, k, t)] = 10.0
        return ids, out

    def add_new_mask(self, state, frame_idx, obj_id, mask):  # noqa: ANN001
        assert np.array_equal(np.asarray(mask, bool), self.gt[frame_idx] == obj_id)
        self.calls.append("mask")
        state["prompted"].setdefault(obj_id, set()).add(frame_idx)
        return (frame_idx, *self._logits(state, frame_idx))

    def add_new_points_or_box(self, state, frame_idx, obj_id, points=None, labels=None,  # noqa: ANN001
                              clear_old_points=True, box=None):
        self.calls.append("box" if box is not None else f"points{len(points)}")
        if box is not None:
            np.testing.assert_array_equal(box, mask_to_box(self.gt[frame_idx] == obj_id))
        else:
            self.clicks.append((obj_id, frame_idx, tuple(points[-1]), int(labels[-1])))
            self.points[(obj_id, frame_idx)] = (np.asarray(points), np.asarray(labels))
        state["prompted"].setdefault(obj_id, set()).add(frame_idx)
        return (frame_idx, *self._logits(state, frame_idx))

    def propagate_in_video(self, state, start_frame_idx=None):  # noqa: ANN001
        start = min(min(v) for v in state["prompted"].values()) if start_frame_idx is None else start_frame_idx
        self.starts.append(start)
        for t in range(start, len(self.gt)):
            yield (t, *self._logits(state, t))


class OracleImagePredictor:
    """SAM image-predictor API: the GT instance under the first click, grown from disks of
    radius 6 around the positive clicks (so more clicks help). ``extra``: pixels added to every
    answer (e.g. a void band around the objects). With ``multimask_output`` the answers are that
    mask, an empty one and a full one, the ``most_confident`` of them with the highest predicted
    IoU. Records the calls' ``mask_input`` and points."""

    def __init__(self, labels: np.ndarray, extra: Optional[np.ndarray] = None, most_confident: int = 0) -> None:
        self.labels = labels
        self.extra = extra
        self.most_confident = most_confident
        self.mask_inputs: List[Optional[np.ndarray]] = []
        self.points: List[np.ndarray] = []

    def set_image(self, image: Any) -> None:
        self.image = image

    def predict(self, point_coords=None, point_labels=None, mask_input=None, multimask_output=True):  # noqa: ANN001
        self.mask_inputs.append(mask_input)
        self.points.append(np.asarray(point_coords))
        h, w = self.labels.shape
        yy, xx = np.mgrid[0:h, 0:w]
        x, y = point_coords[0]
        inst = self.labels == self.labels[int(y), int(x)]
        m = np.zeros((h, w), bool)
        for (px, py), lab in zip(point_coords, point_labels):
            if lab == 1:
                m |= (yy - py) ** 2 + (xx - px) ** 2 <= 36
        m &= inst
        if self.extra is not None:
            m |= self.extra
        if multimask_output:  # three answers: the mask, an empty one, everything
            masks = np.stack([m, np.zeros_like(m), np.ones_like(m)]).astype(np.float32)
            ious = np.full(3, 0.2, np.float32)
            ious[self.most_confident] = 0.9
            return masks, ious, np.zeros((3, 8, 8), np.float32)
        return m[None].astype(np.float32), np.array([0.7], np.float32), np.zeros((1, 8, 8), np.float32)
