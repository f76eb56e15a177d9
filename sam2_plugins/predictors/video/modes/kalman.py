"""A constant-velocity Kalman filter on boxes, batched over objects, on the device.

The state of each object is 8 numbers: box centre ``x, y``, aspect ratio ``a = w / h``, height
``h``, and their velocities (the SORT / ByteTrack parametrisation SAMURAI uses). The motion is
constant velocity with ``dt = 1`` frame; the box ``(x, y, a, h)`` is observed directly. Noise
scales with the box height: process noise of the position terms ``h / 20`` and of the velocity
terms ``h / 160`` (standard deviations), the aspect ratio ``1e-2`` / ``1e-5``; measurement
noise ``h / 20`` and ``1e-1`` for the aspect ratio; a new track starts with twice the position
and ten times the velocity deviations.

Every method works on ``(B, 8)`` means and ``(B, 8, 8)`` covariances at once and never reads a
value back to the host, so a tracking step can filter all its objects without synchronising.
"""

from __future__ import annotations

from typing import Tuple

import torch
from torch import Tensor

__all__ = ["BoxKalman", "xyxy_to_xyah", "xyah_to_xyxy"]


def xyxy_to_xyah(box: Tensor) -> Tensor:
    """``(..., 4)`` ``(x0, y0, x1, y1)`` -> ``(x_c, y_c, w / h, h)``; a zero height counts as 1."""
    x0, y0, x1, y1 = box.unbind(-1)
    w, h = x1 - x0, y1 - y0
    h = torch.where(h == 0, torch.ones_like(h), h)
    return torch.stack([(x0 + x1) / 2, (y0 + y1) / 2, w / h, h], dim=-1)


def xyah_to_xyxy(xyah: Tensor) -> Tensor:
    """``(..., 4)`` ``(x_c, y_c, a, h)`` -> ``(x0, y0, x1, y1)``."""
    x, y, a, h = xyah.unbind(-1)
    w = a * h
    return torch.stack([x - w / 2, y - h / 2, x + w / 2, y + h / 2], dim=-1)


class BoxKalman:
    """Constant-velocity Kalman filter over ``(x, y, a, h)`` boxes (see the module docstring).

    Args:
        std_position: weight of the position noise relative to the box height (1/20).
        std_velocity: weight of the velocity noise relative to the box height (1/160).
    """

    def __init__(self, std_position: float = 1.0 / 20, std_velocity: float = 1.0 / 160) -> None:
        if not (std_position > 0 and std_velocity > 0):
            raise ValueError(f"noise weights must be > 0, got {std_position}, {std_velocity}")
        self.wp = float(std_position)
        self.wv = float(std_velocity)

    @staticmethod
    def _motion(like: Tensor) -> Tensor:
        f = torch.eye(8, dtype=like.dtype, device=like.device)
        f[:4, 4:] = torch.eye(4, dtype=like.dtype, device=like.device)
        return f

    def _std(self, h: Tensor, pos: float, vel: float, a_pos: float, a_vel: float) -> Tensor:
        """``(B,)`` heights -> ``(B, 8)`` deviations ``[pos*h, pos*h, a_pos, pos*h, vel*h, vel*h, a_vel, vel*h]``."""
        one = torch.ones_like(h)
        return torch.stack([pos * h, pos * h, a_pos * one, pos * h, vel * h, vel * h, a_vel * one, vel * h], -1)

    def initiate(self, xyah: Tensor) -> Tuple[Tensor, Tensor]:
        """New tracks from ``(B, 4)`` measurements: mean ``(B, 8)`` (zero velocity) and a
        diagonal covariance ``(B, 8, 8)``."""
        mean = torch.cat([xyah, torch.zeros_like(xyah)], dim=-1)
        std = self._std(xyah[:, 3], 2 * self.wp, 10 * self.wv, 1e-2, 1e-5)
        return mean, torch.diag_embed(std * std)

    def predict(self, mean: Tensor, cov: Tensor) -> Tuple[Tensor, Tensor]:
        """One frame ahead: ``x' = F x``, ``P' = F P F^T + Q`` (Q from the *previous* height)."""
        std = self._std(mean[:, 3], self.wp, self.wv, 1e-2, 1e-5)
        f = self._motion(mean)
        mean = mean @ f.T
        cov = f @ cov @ f.T + torch.diag_embed(std * std)
        return mean, cov

    def project(self, mean: Tensor, cov: Tensor) -> Tuple[Tensor, Tensor]:
        """The state as a measurement: ``(B, 4)`` mean and ``(B, 4, 4)`` covariance ``H P H^T + R``."""
        h = mean[:, 3]
        one = torch.ones_like(h)
        std = torch.stack([self.wp * h, self.wp * h, 1e-1 * one, self.wp * h], -1)
        return mean[:, :4], cov[:, :4, :4] + torch.diag_embed(std * std)

    def update(self, mean: Tensor, cov: Tensor, xyah: Tensor) -> Tuple[Tensor, Tensor]:
        """Correct ``(B, 8)`` / ``(B, 8, 8)`` with ``(B, 4)`` measurements: gain
        ``K = P H^T S^-1``, ``x + K (z - H x)``, ``P - K S K^T``."""
        z_mean, s = self.project(mean, cov)
        pht = cov[:, :, :4]  # P H^T with H = [I 0]
        # S is symmetric, so K^T = S^-1 (P H^T)^T; solve_ex without error checks never syncs
        gain = torch.linalg.solve_ex(s, pht.transpose(1, 2), check_errors=False)[0].transpose(1, 2)
        mean = mean + (gain @ (xyah - z_mean).unsqueeze(-1)).squeeze(-1)
        cov = cov - gain @ s @ gain.transpose(1, 2)
        return mean, cov
