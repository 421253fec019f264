"""The dense backward warp: for each output pixel of the head region, the photo pixel it shows.

Control points are the mesh and three rings around the face outline (1.3, 1.75 and 2.3 times its size about its
centre) that carry 1, 0.5 and 0 of the nearest outline point's rigid move (0.5, 0.2, 0 of the expression's): the
hair follows the head part of the way and the outer ring stays still, so the warp is exactly the identity at the
edge of the head region and outside it. Below the chin the rings carry 0.15 of the rigid move (the collar stays, the
neck stretches), and the inner ring keeps 0.4 of its distance outside its outline point (a dropping chin pushes the
neck ahead instead of folding over it). Ring points near the image's border carry less (nothing at the border).

Piecewise-affine over a Delaunay triangulation of the neutral points (cv2.Subdiv2D), not a thin-plate spline: a
spline from the moved points would need a new dense solve every frame and cannot tear the lips apart (the inner
lips of a closed mouth share their neutral positions), while the triangles open the mouth exactly and cost a few
milliseconds. Fold-overs (a turned nose over the far cheek) are resolved by drawing the moved triangles from far
to near, so the nearer surface wins as in a real view. The triangles are rasterized into a coarse grid (one cell
per `grid_step` output pixels) where each cell gets its triangle's affine map; the displacement is upsampled
bilinearly to full resolution and `cv2.remap` reads the photo there. Around the face (cells of triangles with a ring
corner) the grid's displacement is blurred (sigma 0.04 face widths), faded in from the outline: the fans of long
triangles from the outline to the rings would otherwise bend a straight collar or hair line at every ring point.
"""

from __future__ import annotations

import cv2
import numpy as np

from avatar_desktop.face import landmarks as lm

RING_SCALES = (1.3, 1.75, 2.3)
RING_CARRY = (1.0, 0.5, 0.0)  # of the head's rigid move (the neck below the jaw: NECK_CARRY of that)
NECK_CARRY = 0.15  # the rings below the chin (on the collar, mostly) stay nearly still: the neck stretches
NECK_CARRY_EXPRESSION = 0.5
RING_CARRY_EXPRESSION = (0.5, 0.2, 0.0)  # of the outline's move by the expression (the jaw's drop)
RING_KEEP = 0.4  # of its neutral distance from its outline point that the inner ring keeps
RING_SMOOTHING_FW = 0.04  # the Gaussian's sigma (face widths) that smooths the move around the face
_SUBPIXEL_BITS = 4
_SMALL_CELLS = 6  # triangles whose bounding box spans fewer grid cells than this are rasterized at once
_TINY_CELLS = 3  # (in two buckets: these and the rest, so that the tiny ones test fewer cells)


def _triangulate(points: np.ndarray) -> np.ndarray:
    """float32 (M, 2) distinct points -> int32 (T, 3) Delaunay triangles (indices)."""
    low, high = points.min(0) - 10, points.max(0) + 10
    subdiv = cv2.Subdiv2D((int(low[0]), int(low[1]), int(high[0] - low[0]) + 1, int(high[1] - low[1]) + 1))
    index_of = {}
    for index, point in enumerate(points.astype(np.float32)):
        subdiv.insert((float(point[0]), float(point[1])))
        index_of[(float(point[0]), float(point[1]))] = index
    triangles = []
    for triangle in subdiv.getTriangleList().reshape(-1, 3, 2).astype(np.float32):
        indices = [index_of.get((float(x), float(y))) for x, y in triangle]
        if None not in indices:  # not one of the bounding box's virtual vertices
            triangles.append(indices)
    return np.unique(np.sort(np.array(triangles, np.int32), axis=1), axis=0)


class HeadWarp:
    """Builds the backward map of the head region from moved mesh points.

    neutral: float32 (468, 3) mesh points at the output scale; face_width in pixels; frame_size (width, height).
    """

    def __init__(self, neutral: np.ndarray, face_width: float, frame_size: tuple[int, int], *,
                 grid_step: int | None = None, topology_points: np.ndarray | None = None):
        width, height = frame_size
        self.step = grid_step or int(np.clip(round(face_width / 60), 2, 8))
        margin = 2 * self.step + 2
        xy = np.asarray(neutral, np.float32)[:, :2]
        oval = xy[list(lm.FACE_OVAL)]
        centre = oval.mean(0)
        # the hair reaches above the outline's top, the neck below the chin: stretch the rings up a little
        rings, carries, owners, ring_of = [], [], [], []
        # the neck: outline points below the mouth carry less of the head's turn than the hair above
        mouth = (xy[78] + xy[308]) / 2
        down = np.array([-(xy[263] - xy[33])[1], (xy[263] - xy[33])[0]]) / np.linalg.norm(xy[263] - xy[33])
        below = np.clip((oval - mouth) @ down / (0.3 * face_width), 0, 1)
        below = below * below * (3 - 2 * below)
        neck = 1 - (1 - NECK_CARRY) * below  # (O,) of the rigid move
        neck_expression = 1 - (1 - NECK_CARRY_EXPRESSION) * below  # (O,) of the expression's move
        for scale, carry, expression_carry in zip(RING_SCALES, RING_CARRY, RING_CARRY_EXPRESSION):
            ring = centre + scale * (oval - centre) - [0, 0.08 * (scale - 1) * face_width]
            ring = np.clip(ring, margin, [width - 1 - margin, height - 1 - margin])
            border = np.minimum.reduce([ring[:, 0], ring[:, 1], width - 1 - ring[:, 0], height - 1 - ring[:, 1]])
            rings.append(ring)
            near_border = np.clip((border - margin) / (0.25 * face_width), 0, 1)
            carries.append(np.stack([carry * neck * near_border, expression_carry * neck_expression * near_border], 1))
            owners.append(np.array(lm.FACE_OVAL))
            ring_of.append(np.full(len(oval), len(rings) - 1))
        ring_points = np.concatenate(rings)
        ring_carry = np.concatenate(carries)
        ring_owner = np.concatenate(owners)
        keep = np.ones(len(ring_points), bool)  # drop ring points that the clipping piled onto others
        for index in range(len(ring_points)):
            others = ring_points[index + 1:][keep[index + 1:]]
            if len(others) and np.linalg.norm(others - ring_points[index], axis=1).min() < 1.0:
                keep[index] = False
        self.ring_points, self.ring_carry, self.ring_owner = ring_points[keep], ring_carry[keep], ring_owner[keep]
        outward = self.ring_points - xy[self.ring_owner]  # (R, 2)
        distance = np.linalg.norm(outward, axis=1)
        self._ring_out = (outward / np.maximum(distance, 1e-6)[:, None]).astype(np.float32)  # (R, 2) unit
        inner = np.concatenate(ring_of)[keep] == 0
        self._ring_keep = np.where(inner, RING_KEEP * distance, 0).astype(np.float32)  # (R,) pixels
        # (R, 2): carries of the rigid and the expression move
        self.neutral = np.concatenate([xy, self.ring_points]).astype(np.float32)  # (M, 2)
        topology = xy if topology_points is None else np.asarray(topology_points, np.float32)[:, :2]
        self.triangles = _triangulate(np.concatenate([topology, self.ring_points]))  # (T, 3)
        corners = np.concatenate([self.neutral[self.triangles], np.ones((len(self.triangles), 3, 1), np.float32)], 2)
        self._orientation = np.sign(np.linalg.det(corners))  # (T,) of the neutral triangles
        self._around_face = np.append((self.triangles >= len(xy)).any(1), False)  # (T + 1,) with a ring corner
        self._smoothing = RING_SMOOTHING_FW * face_width / self.step  # grid cells
        outer = self.ring_points[np.concatenate(ring_of)[keep] == len(RING_SCALES) - 1]
        hull = cv2.convexHull(outer.astype(np.float32)).reshape(-1, 2)
        # a ring point moves at most 0.8 of its way to the still outer ring, so it never crosses it
        self.ring_reach = np.array([0.8 * max(cv2.pointPolygonTest(hull, (float(x), float(y)), True), 0.0)
                                    for x, y in self.ring_points], np.float32)
        # the head region: the outer ring's hull, grown by the upsampling's reach
        mask = np.zeros((height, width), np.uint8)
        cv2.fillConvexPoly(mask, np.round(hull).astype(np.int32), 1)
        inside_hull = mask.astype(bool)
        mask = cv2.dilate(mask, np.ones((4 * self.step + 1,) * 2, np.uint8))
        self.head_mask = mask.astype(bool)  # (H, W)
        ys, xs = np.nonzero(self.head_mask)
        x0, y0 = xs.min() // self.step * self.step, ys.min() // self.step * self.step
        x1 = min(-(-(xs.max() + 1) // self.step) * self.step, width // self.step * self.step)
        y1 = min(-(-(ys.max() + 1) // self.step) * self.step, height // self.step * self.step)
        self.box = (int(x0), int(y0), int(x1), int(y1))  # the region the maps cover, multiples of the step
        grid_x = x0 + (np.arange((x1 - x0) // self.step) + 0.5) * self.step - 0.5
        grid_y = y0 + (np.arange((y1 - y0) // self.step) + 0.5) * self.step - 0.5
        self.grid = np.stack(np.meshgrid(grid_x, grid_y), -1).astype(np.float32)  # (Hg, Wg, 2) pixel centres
        centres = np.round(self.grid).astype(int)
        # grid cells outside the hull keep zero displacement: the upsampled field is exactly zero outside head_mask
        self.grid_inside = inside_hull[centres[..., 1], centres[..., 0]]  # (Hg, Wg)
        pixels = np.meshgrid(np.arange(x0, x1, dtype=np.float32), np.arange(y0, y1, dtype=np.float32))
        self.pixels = np.stack(pixels, -1)  # (h, w, 2) pixel coordinates of the box

    def control_points(self, moved: np.ndarray, head_only: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Moved mesh float32 (468, 3) and the mesh moved by the head's rigid motion alone (468, 3) -> moved
        control points float32 (M, 2) and their depth (M,)."""
        moved_xy = moved[:, :2]
        rigid = head_only[self.ring_owner, :2] - self.neutral[self.ring_owner]
        expression = moved_xy[self.ring_owner] - head_only[self.ring_owner, :2]
        shift = self.ring_carry[:, :1] * rigid + self.ring_carry[:, 1:] * expression  # (R, 2)
        # the inner ring keeps a part of its distance outside its outline point: a chin that drops (an open
        # mouth, a nod) pushes the neck's ring ahead of it instead of folding over it
        along = np.sum((self.ring_points + shift - moved_xy[self.ring_owner]) * self._ring_out, 1)
        shift += np.maximum(self._ring_keep - along, 0)[:, None] * self._ring_out
        length = np.linalg.norm(shift, axis=1, keepdims=True)
        shift *= np.minimum(1.0, self.ring_reach[:, None] / np.maximum(length, 1e-6))
        rings = self.ring_points + shift
        depth = np.concatenate([moved[:, 2], np.full(len(rings), moved[:, 2].max() + 1, np.float32)])
        return np.concatenate([moved_xy, rings]).astype(np.float32), depth

    def _rasterize(self, cells: np.ndarray, rank: np.ndarray, valid: np.ndarray) -> np.ndarray:
        """Triangles float32 (T, 3, 2) in grid cells -> the highest rank covering each cell, int32 (Hg, Wg), -1 none.

        Small triangles (most of the mesh) are tested against the cells of their bounding box all at once; the few
        large ones (the rings) are filled one by one.
        """
        grid_height, grid_width = self.grid.shape[:2]
        best = np.full(grid_height * grid_width, -1, np.int32)
        low = np.ceil(cells.min(1) - 1e-4).astype(np.int32)  # (T, 2)
        high = np.floor(cells.max(1) + 1e-4).astype(np.int32)
        span = (high - low).max(1)
        small = valid & (span < _SMALL_CELLS)
        for size in (_TINY_CELLS, _SMALL_CELLS):  # the candidates of a bucket: its bounding box's first size**2 cells
            bucket = small & (span < size) & (span >= (_TINY_CELLS if size == _SMALL_CELLS else 0))
            if not bucket.any():
                continue
            offsets = np.stack(np.meshgrid(np.arange(size), np.arange(size)), -1).reshape(-1, 2)
            candidates = low[bucket, None, :] + offsets[None]  # (S, C, 2) x, y cells
            points = candidates.astype(np.float32)
            a, b, c = (cells[bucket, k, None, :] for k in range(3))  # (S, 1, 2)

            def edge(p: np.ndarray, q: np.ndarray) -> np.ndarray:  # (S, C): which side of p -> q each candidate is
                return (q[..., 0] - p[..., 0]) * (points[..., 1] - p[..., 1]) - (q[..., 1] - p[..., 1]) * (
                    points[..., 0] - p[..., 0])
            area = (b[..., 0] - a[..., 0]) * (c[..., 1] - a[..., 1]) - (b[..., 1] - a[..., 1]) * (c[..., 0] - a[..., 0])
            tolerance = -1e-4 * np.abs(area)
            signs = np.sign(area)
            inside = ((edge(b, c) * signs >= tolerance) & (edge(c, a) * signs >= tolerance)
                      & (edge(a, b) * signs >= tolerance))
            inside &= (candidates[..., 0] >= 0) & (candidates[..., 0] < grid_width)
            inside &= (candidates[..., 1] >= 0) & (candidates[..., 1] < grid_height)
            triangle, candidate = np.nonzero(inside)
            flat = candidates[triangle, candidate, 1] * grid_width + candidates[triangle, candidate, 0]
            np.maximum.at(best, flat, rank[bucket][triangle])
        large = np.nonzero(valid & ~small)[0]
        if len(large):
            large_best = np.full((grid_height, grid_width), -1, np.int32)
            fixed = np.round(cells * (1 << _SUBPIXEL_BITS)).astype(np.int32)
            for index in large[np.argsort(rank[large])]:
                cv2.fillConvexPoly(large_best, fixed[index], int(rank[index]), cv2.LINE_8, _SUBPIXEL_BITS)
            np.maximum(best, large_best.ravel(), out=best)
        return best.reshape(grid_height, grid_width)

    def grid_displacement(self, moved: np.ndarray, head_only: np.ndarray) -> np.ndarray:
        """Moved mesh float32 (468, 3) and the mesh moved by the head alone (468, 3) -> backward displacement
        float32 (Hg, Wg, 2) on the coarse grid (pixels)."""
        points, depth = self.control_points(moved, head_only)
        x0, y0 = self.box[:2]
        corners = points[self.triangles]  # (T, 3, 2) moved
        sources = self.neutral[self.triangles]  # (T, 3, 2)
        # affine maps moved -> neutral: [x y 1] @ coefficients = source
        homogeneous = np.concatenate([corners, np.ones((len(corners), 3, 1), np.float32)], 2)
        determinant = np.linalg.det(homogeneous)
        valid = np.abs(determinant) > 1e-3
        coefficients = np.zeros((len(corners), 3, 2), np.float32)
        coefficients[valid] = np.linalg.solve(homogeneous[valid], sources[valid])
        # back-face culling: a triangle that the move turned over only fills what no other triangle covers;
        # the others are drawn from far to near
        flipped = np.sign(determinant) != self._orientation
        order = np.lexsort((-depth[self.triangles].mean(1), ~flipped))
        rank = np.empty(len(order), np.int32)
        rank[order] = np.arange(len(order), dtype=np.int32)  # the later drawn wins
        best = self._rasterize((corners - [x0, y0] + 0.5) / self.step - 0.5, rank, valid)  # (Hg, Wg)
        # each cell's triangle; cells no triangle covers (or outside the hull) get the identity (index T)
        covered = (best >= 0) & self.grid_inside
        chosen = np.where(covered, order[np.maximum(best, 0)], len(order))  # (Hg, Wg)
        coefficients = np.concatenate([coefficients, [[[1, 0], [0, 1], [0, 0]]]]).astype(np.float32)[chosen]
        grid = self.grid
        displacement = grid[..., :1] * coefficients[..., 0, :] + grid[..., 1:] * coefficients[..., 1, :]
        displacement += coefficients[..., 2, :]
        displacement -= grid  # (Hg, Wg, 2), exactly zero where the identity was chosen
        # around the face the move is smoothed: the fans from the outline to the rings would bend straight edges
        # (a collar, the hair's line) at every ring point; the face's own triangles stay exact (the lips' tear).
        # A normalized blur of the ring cells alone (the face's own move does not leak out past its outline),
        # faded in away from the face (exact at its outline, which the blur would tear from the face's own move).
        around = self._around_face[chosen]  # (Hg, Wg) bool
        weight = around.astype(np.float32)[..., None]
        smooth = cv2.GaussianBlur(np.concatenate([displacement * weight, weight], 2), (0, 0), self._smoothing)
        from_face = cv2.distanceTransform((around | ~covered).astype(np.uint8), cv2.DIST_L2, 3)
        fade = np.minimum(from_face * (0.5 / self._smoothing), 1) * weight[..., 0]
        fade /= np.maximum(smooth[..., 2], 1e-6)
        displacement += fade[..., None] * (smooth[..., :2] - displacement * smooth[..., 2:])
        return displacement

    def map(self, moved: np.ndarray, head_only: np.ndarray) -> np.ndarray:
        """Moved mesh (468, 3), the mesh moved by the head alone (468, 3) -> cv2.remap map float32 (h, w, 2) over
        `box`: the photo pixel each pixel shows.

        Outside `head_mask` the displacement is exactly zero (the outer ring stays still and the upsampling
        reaches at most one grid step beyond the outer ring's hull).
        """
        x0, y0, x1, y1 = self.box
        displacement = cv2.resize(self.grid_displacement(moved, head_only), (x1 - x0, y1 - y0),
                                  interpolation=cv2.INTER_LINEAR)
        return np.add(displacement, self.pixels, out=displacement)
