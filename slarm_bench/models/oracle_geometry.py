"""Geometry and image helpers of the ground-truth oracle: surface-aligned splats and hole filling.

Kept apart from the model so each piece is tested on its own (tests/test_oracle.py).
"""

from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor

from slarm_bench.geometry import matrix_to_quaternion

#: A tangent axis longer than this many pixel footprints is taken for a depth edge, not a slanted surface
#: (a road seen at grazing angle stretches a few tens of footprints; a pole against a wall far behind it
#: hundreds), and the splat falls back to the fronto-parallel pixel footprint.
MAX_STRETCH = 24.0
#: Splat thickness along the surface normal, as a fraction of its pixel footprint: thin enough that a
#: surface seen from the side stays a surface, thick enough to stay numerically a 3D Gaussian.
THICKNESS = 0.05


#: How strongly hole filling prefers the farther surfaces around a hole (see fill_holes).
HOLE_DEPTH_POWER = 4.0


def _one_sided(points: np.ndarray, valid: np.ndarray, axis: int) -> tuple[np.ndarray, np.ndarray]:
    """Per pixel, the shorter of the forward and backward differences to a valid neighbour along `axis`.

    points [H,W,3], valid [H,W] -> difference [H,W,3], length [H,W] (inf where no neighbour is valid)."""
    diff = np.diff(points, axis=axis)
    both = np.logical_and(np.delete(valid, 0, axis), np.delete(valid, -1, axis))
    length = np.where(both, np.linalg.norm(diff, axis=-1), np.inf)
    pad = [(0, 0)] * 3
    pad[axis] = (1, 0)
    back_d = np.pad(diff, pad)
    back_l = np.pad(length, pad[:2], constant_values=np.inf)
    pad[axis] = (0, 1)
    fwd_d = np.pad(diff, pad)
    fwd_l = np.pad(length, pad[:2], constant_values=np.inf)
    use_fwd = fwd_l < back_l
    return np.where(use_fwd[..., None], fwd_d, back_d), np.minimum(fwd_l, back_l)


def surfel_frames(points: np.ndarray, valid: np.ndarray, depth: np.ndarray, cam_to_world: np.ndarray,
                  intrinsics: np.ndarray, footprint: float) -> tuple[np.ndarray, np.ndarray]:
    """Flat Gaussians that cover each pixel's footprint on the surface it sees.

    points [H,W,3] world positions of the pixels (at their depth), valid [H,W], depth [H,W] (z-depth),
    cam_to_world [4,4], intrinsics [3,3]. The splat's two tangent axes are `footprint` times the world
    offsets to the neighbouring pixels along x and y (the shorter side, so an edge pixel takes the surface
    it belongs to): seen from its own camera it is a disc of `footprint` pixels, seen from elsewhere it
    still tiles the surface without gaps, which a sphere of the same projected size does not once the
    surface is slanted. Where neither neighbour is on the same surface the offsets are the fronto-parallel
    pixel footprint. Returns quats [M,4] (w, x, y, z) and scales [M,3] (metres) of the valid pixels.
    """
    pixel_x = depth / intrinsics[0, 0]                       # metres per pixel at that depth
    pixel_y = depth / intrinsics[1, 1]
    axes = []
    for axis, size, column in ((1, pixel_x, 0), (0, pixel_y, 1)):
        diff, length = _one_sided(points, valid, axis)
        edge = ~(length <= MAX_STRETCH * size)
        fallback = size[..., None] * cam_to_world[:3, column]
        axes.append(np.where(edge[..., None], fallback, diff)[valid])
    du, dv = axes
    normal = np.cross(du, dv)
    normal /= np.maximum(np.linalg.norm(normal, axis=-1, keepdims=True), 1e-12)
    thickness = THICKNESS * footprint * np.minimum(pixel_x, pixel_y)[valid]
    basis = np.stack([footprint * du, footprint * dv, thickness[:, None] * normal], -1)   # columns [M,3,3]
    values, vectors = np.linalg.eigh(basis @ basis.transpose(0, 2, 1))
    vectors[:, :, 2] *= np.sign(np.linalg.det(vectors))[:, None]          # a rotation, not a reflection
    return matrix_to_quaternion(vectors), np.sqrt(np.maximum(values, 0.0))


def depth_interior(depth: np.ndarray, margin: float) -> np.ndarray:
    """[H,W] -> bool [H,W]: the pixel and its 4 neighbours see one smooth surface.

    On a plane inverse depth is linear in the pixel coordinates, so its second difference along x and y
    vanishes however slanted the plane (a road far ahead changes depth by more than 10% per row); it is
    large where a neighbour is on another surface. Sky or missing depth next to the pixel is an edge too;
    image borders count as interior."""
    padded = np.pad(depth, 1, mode="edge")
    inv = np.where(padded > 0, 1.0 / np.maximum(padded, 1e-9), 0.0)
    centre = inv[1:-1, 1:-1]
    h, w = depth.shape
    ok = depth > 0
    for (ay, ax), (by, bx) in (((0, 1), (2, 1)), ((1, 0), (1, 2))):
        a, b = padded[ay:ay + h, ax:ax + w], padded[by:by + h, bx:bx + w]
        curvature = np.abs(inv[ay:ay + h, ax:ax + w] - 2 * centre + inv[by:by + h, bx:bx + w])
        ok &= (a > 0) & (b > 0) & (curvature <= margin * centre)
    return ok


def fill_holes(values: Tensor, weight: Tensor, depth: Tensor | None = None) -> Tensor:
    """Push-pull inpainting: values [H,W,C] premultiplied by weight [H,W] in [0,1] -> colours [H,W,C].

    Each coarser level averages the known values (normalised by their weight); going back up, a pixel keeps
    its own normalised value in proportion to its weight and takes the upsampled coarser estimate for the
    rest. So a hole gets the colour of the surfaces around it, nearest ones weighted most. With `depth`
    [H,W] the known pixels also count by (depth / mean depth)^HOLE_DEPTH_POWER in those averages: a hole
    the camera's motion opens behind an occluder shows what is behind, so its farther side is the better
    guess.
    """
    coverage = weight[None, None].float()
    v = values.permute(2, 0, 1)[None].float()
    w = coverage
    if depth is not None:
        known = weight > 0.5
        scale = depth[known].mean() if bool(known.any()) else depth.new_tensor(1.0)
        far = ((depth / scale.clamp_min(1e-6)) ** HOLE_DEPTH_POWER).clamp(1e-4, 1e4)[None, None].float()
        v, w = v * far, w * far
    levels = [(v, w, coverage)]
    while min(v.shape[-2:]) > 1:
        v, w, coverage = (F.avg_pool2d(x, 2, ceil_mode=True) for x in (v, w, coverage))
        levels.append((v, w, coverage))
    v, w, _ = levels[-1]
    fill = v / w.clamp_min(1e-12)
    for v, w, coverage in reversed(levels[:-1]):
        up = F.interpolate(fill, size=v.shape[-2:], mode="bilinear", align_corners=False)
        own = coverage.clamp(0.0, 1.0)
        fill = torch.where(w > 1e-12, v / w.clamp_min(1e-12), up) * own + (1 - own) * up
    return fill[0].permute(1, 2, 0).to(values.dtype)


def sky_lookup(image: Tensor, sky: Tensor, dirs: Tensor, cam_to_world: Tensor, intrinsics: Tensor
               ) -> tuple[Tensor, Tensor]:
    """The sky of a context image seen along other rays: the sky is at infinity, so only rotation counts.

    image [H,W,3] float, sky [H,W] bool of the context camera; dirs [h,w,3] world ray directions of the
    target pixels. -> colour [h,w,3] and validity [h,w] (the ray lands in the image on a sky pixel)."""
    h, w = image.shape[:2]
    local = dirs @ cam_to_world[:3, :3]                      # world -> camera (rotation only)
    uvw = local @ intrinsics.T
    z = uvw[..., 2:3]
    uv = uvw[..., :2] / z.clamp_min(1e-6)
    grid = torch.stack([uv[..., 0] / w * 2 - 1, uv[..., 1] / h * 2 - 1], -1)[None].float()
    colour = F.grid_sample(image.permute(2, 0, 1)[None].float(), grid, mode="bilinear", padding_mode="border",
                           align_corners=False)[0].permute(1, 2, 0)
    on_sky = F.grid_sample(sky[None, None].float(), grid, mode="nearest", align_corners=False)[0, 0] > 0.5
    inside = (z[..., 0] > 0) & (uv[..., 0] >= 0) & (uv[..., 0] <= w) & (uv[..., 1] >= 0) & (uv[..., 1] <= h)
    return colour.to(image.dtype), on_sky & inside
