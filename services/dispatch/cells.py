"""H3 cells for the candidate search (pure computation, no I/O).

Why H3: a courier's cell is one bigint in a btree index, and the cells around a pickup are
a fixed list (`grid_disk`), so a candidate lookup is `cell = ANY(<cells near the pickup>)`
and reads only the index entries of those cells, however many couriers are online
elsewhere. Hexagons have one kind of neighbour (unlike geohash squares), so rings grow
evenly in every direction, and nothing needs PostGIS in the database.

Two levels: fine cells (res 9, ~200 m edge) for the near search, where couriers are dense,
and their coarse parents (res 7, ~1.4 km edge) once the search goes wider, so that even a
15 km search is a couple of hundred cells rather than thousands.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from functools import lru_cache

from h3.api import basic_int as h3

from . import domain


@dataclass(frozen=True)
class SearchStep:
    coarse: bool  # which cell column (and resolution) the step searches
    rings: int


@dataclass(frozen=True)
class Grid:
    fine_resolution: int = 9
    coarse_resolution: int = 7
    fine_rings: int = 4  # widest fine search; beyond it the search goes coarse
    coarse_rings: int = 8  # widest search of all

    def cell(self, lat: float, lng: float) -> int:
        return h3.latlng_to_cell(lat, lng, self.fine_resolution)

    def coarse(self, cell: int) -> int:
        return h3.cell_to_parent(cell, self.coarse_resolution)

    def resolution(self, step: SearchStep) -> int:
        return self.coarse_resolution if step.coarse else self.fine_resolution

    def plan(self) -> list[SearchStep]:
        """The widening search: fine rings 1, 2, 4, then the coarse rings that reach further
        than the widest fine step (2, 4, 8 with the defaults)."""
        fine = [SearchStep(False, k) for k in domain.ring_steps(self.fine_rings)]
        coarse = [SearchStep(True, k) for k in domain.ring_steps(self.coarse_rings)]
        return fine + [s for s in coarse if self.covered_m(s) > self.covered_m(fine[-1])]

    def cells(self, fine_cell: int, step: SearchStep) -> tuple[int, ...]:
        origin = self.coarse(fine_cell) if step.coarse else fine_cell
        return disk(origin, step.rings)

    def covered_m(self, step: SearchStep) -> float:
        """Every point this close to the pickup lies in the step's cells (see rings_covering)."""
        edge = edge_m(self.resolution(step))
        return 1.5 * edge * step.rings - 2 * edge

    def step_covering(self, radius_m: float) -> SearchStep:
        """The narrowest step whose cells hold every point within `radius_m` (capped)."""
        fine = rings_covering(radius_m, self.fine_resolution)
        if fine <= self.fine_rings:
            return SearchStep(False, fine)
        return SearchStep(True, min(self.coarse_rings, rings_covering(radius_m, self.coarse_resolution)))


@lru_cache(maxsize=16384)
def disk(cell: int, rings: int) -> tuple[int, ...]:
    """The cell and every cell within `rings` steps of it (cached: pickups repeat)."""
    return tuple(h3.grid_disk(cell, rings))


@lru_cache(maxsize=32)
def edge_m(resolution: int) -> float:
    return h3.average_hexagon_edge_length(resolution, "m")


def rings_covering(radius_m: float, resolution: int) -> int:
    """Rings around the pickup's cell that contain every point within `radius_m` of the pickup.

    The pickup lies within one edge of its cell's centre, and any point within one edge of
    its own cell's centre; cells k rings apart have centres at least 1.5 edges * k apart.
    """
    edge = edge_m(resolution)
    return max(1, math.ceil((radius_m + 2 * edge) / (1.5 * edge)))
