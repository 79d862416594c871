"""A job's true speed surface f(p, w) in samples per second: the simulator's ground truth.

Built from a model's measured rows (optimus.simulation.inputs.SpeedTable): piecewise-linear
interpolation over the Delaunay triangulation of the measured (ps, workers) points, the
nearest measured point outside their convex hull, and counts beyond the measured range
clamped to the range's edge (a job never gets faster than the largest measured
configuration suggests). Rows measured on a single PS count (or a single worker count)
interpolate linearly along the other axis. The surface is precomputed on the integer grid
once, so a lookup in the simulator's inner loop is an array index.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
from numpy.typing import NDArray
from scipy.interpolate import griddata

from optimus.simulation.inputs import SpeedRow


@dataclass(frozen=True, eq=False)
class SpeedSurface:
    """Samples per second at every integer (ps, workers) in [ps_min, ps_max] x
    [workers_min, workers_max]; queries outside are clamped to that box."""

    model: str
    ps_min: int
    ps_max: int
    workers_min: int
    workers_max: int
    grid: NDArray[np.float64]  # shape (ps_max - ps_min + 1, workers_max - workers_min + 1)

    def __post_init__(self) -> None:
        # plain nested lists: indexing them is several times faster than numpy scalars, and
        # the allocator asks for speeds millions of times in a long simulation
        object.__setattr__(self, "_rows", [[float(v) for v in row] for row in self.grid])

    def samples_per_sec(self, ps: int, workers: int) -> float:
        if workers <= 0:
            return 0.0
        p = self.ps_min if ps < self.ps_min else self.ps_max if ps > self.ps_max else ps
        w = (self.workers_min if workers < self.workers_min
             else self.workers_max if workers > self.workers_max else workers)
        rows: list[list[float]] = self._rows  # type: ignore[attr-defined]
        return rows[p - self.ps_min][w - self.workers_min]

    @property
    def best(self) -> tuple[int, int, float]:
        """The fastest grid configuration (ps, workers, samples/s)."""
        p, w = np.unravel_index(int(np.argmax(self.grid)), self.grid.shape)
        return int(p) + self.ps_min, int(w) + self.workers_min, float(self.grid[p, w])


def surface_from_rows(rows: Sequence[SpeedRow]) -> SpeedSurface:
    """Interpolate one model's measured rows (all positive; failing rows already dropped)."""
    if not rows:
        raise ValueError("a speed surface needs at least one measured row")
    ps = np.array([row.ps for row in rows], dtype=float)
    workers = np.array([row.workers for row in rows], dtype=float)
    speed = np.array([row.samples_per_sec for row in rows], dtype=float)
    ps_min, ps_max = int(ps.min()), int(ps.max())
    w_min, w_max = int(workers.min()), int(workers.max())
    grid_p, grid_w = np.meshgrid(np.arange(ps_min, ps_max + 1, dtype=float),
                                 np.arange(w_min, w_max + 1, dtype=float), indexing="ij")
    if ps_min == ps_max or w_min == w_max:
        # one-dimensional measurements: Delaunay needs two dimensions
        axis, grid_axis = (workers, grid_w) if ps_min == ps_max else (ps, grid_p)
        order = np.argsort(axis)
        values = np.interp(grid_axis, axis[order], speed[order])
    else:
        points = np.column_stack([ps, workers])
        try:
            values = griddata(points, speed, (grid_p, grid_w), method="linear")
        except Exception:  # collinear points (Qhull cannot triangulate): nearest only
            values = np.full(grid_p.shape, np.nan)
        outside = np.isnan(values)
        if outside.any():
            values[outside] = griddata(points, speed, (grid_p[outside], grid_w[outside]),
                                       method="nearest")
    return SpeedSurface(rows[0].model, ps_min, ps_max, w_min, w_max,
                        np.asarray(values, dtype=np.float64))

