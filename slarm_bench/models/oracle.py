"""Oracle models: one Gaussian per context pixel built from ground truth, the pipeline's sanity ceiling.

`oracle` places a Gaussian at every context pixel with a surface (exact dense depth where the dataset has
it, else lidar depth), coloured by the pixel, carrying the one-hot ground-truth class as a feature and
moving with the ground-truth velocity at its own context time (constant velocity, order 1): where agents
keep a constant velocity over the window its flow error is near zero, and the error elsewhere is exactly
what a first-order motion model misses. `oracle-static` is the same without motion. `oracle-accel` adds
each pixel's ground-truth acceleration (order 2): that of its agent's box at the context time (the box
centre's; the rotational terms of a point off the centre are left out), so oracle-accel against oracle is
what exact acceleration buys this reconstruction, in which moving things come from the nearest context
time only.

Three choices make it a ceiling rather than a blur (each measured in benchmarks/bench_oracle_ceiling.py):
- Surface splats: each Gaussian is a thin disc spanning its pixel's footprint on the surface (axes from the
  neighbouring pixels' positions), so a slanted surface seen from another pose stays closed.
- Colour prefilter: overlapping splats blur (and the depth order biases the blur toward nearer
  neighbours), so each context view's colours are solved, by a few Jacobi iterations of the renderer
  itself, for the colours whose render at that view reproduces the image.
- Layering and holes: per target camera the Gaussians of the same camera at the nearest context time are
  rendered first, everything else behind what that layer leaves uncovered (one depth-sorted pass would
  interleave samples of the same surface from other times and exposures); moving things come only from
  the nearest context time, since their older samples are ghosts wherever the motion is not constant;
  another view's surface goes in front where it is clearly nearer (an occluder the nearest view missed);
  other cameras' colours are brought to the target camera's exposure with gains measured on the overlaps.
  What is still uncovered is sky where the nearest context image of that camera saw sky along the same
  direction, and otherwise a surface no context frame saw: it is filled from the rendered surroundings
  (push-pull, farther surfaces first), not with whatever the context image showed at that pixel (usually
  the object that hid it). Datasets without a sky mask keep the nearest context image as the background.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor

from slarm_bench.clip import SLARM_CLASSES, Clip
from slarm_bench.errors import SlarmBenchError
from slarm_bench.geometry import camera_rays
from slarm_bench.models.base import Model, Prediction, Scene
from slarm_bench.models.oracle_geometry import depth_interior, fill_holes, sky_lookup, surfel_frames
from slarm_bench.render import Gaussians, render, resolve_backend

#: Splat size as a fraction of the pixel footprint, and the renderer's 2D low-pass variance (px^2) the
#: oracle renders with. With the colour prefilter undoing the blur, smaller splats reproduce texture more
#: sharply from nearby poses; where they open gaps the other views and the hole filling take over. A sweep
#: on synthetic-mini v2 (H100; README "Oracle") put static-region PSNR at 30.82 / 30.70 / 29.93 / 27.86 /
#: 24.61 dB for 0.35 / 0.4 / 0.5 / 0.6 / 0.7 (0.3: no better, and worse on moving things). Drawing the
#: other views' samples larger (0.45, 0.5) closes the ~10% see-through between samples that do not sit on
#: the target's pixel grid, but blurs more than it helps: 30.30 / 29.90 dB.
FOOTPRINT = 0.35
EPS2D = 0.1
OPACITY = 0.99
#: Jacobi iterations of the colour prefilter: each shrinks the re-render error of a view about fourfold.
PREFILTER_ITERATIONS = 6
#: Prefiltered colours may overshoot [0, 1] (that is how they undo the blur), within this range.
COLOR_RANGE = (-0.5, 1.5)
#: Largest prefilter correction of a splat at a depth edge (see _prefilter).
EDGE_CORRECTION = 0.1
#: Splat size of moving things: they come from one context time only, so there are no other views to fill
#: the gaps of smaller splats (dynamic PSNR 26.99 dB at 0.5 against 24.7 at 0.35 in that sweep).
MOVING_FOOTPRINT = 0.5
#: 1: moving things come from the nearest context time only (older samples are ghosts wherever the motion
#: model is wrong); 0: from every context time, which tests how much a better motion model (oracle-accel)
#: recovers from older samples (benchmarks/bench_oracle_sweep.py MOVING_NEAREST_ONLY=0).
MOVING_NEAREST_ONLY = 1
#: Ground-truth speed (m/s) above which a pixel belongs to something moving.
MOVING_SPEED = 0.05
#: Another view's surface goes in front of the nearest view's only when it is this much (relative depth)
#: nearer: samples of one surface from several views agree far better than that.
DEPTH_MARGIN = 0.05
#: ... where the other views cover the pixel at least this much.
BACK_COVERAGE = 0.5


class GroundTruthOracle(Model):
    context_fields = ("depth_dense", "depth", "flow", "semantic", "sky")
    produces = ("rgb", "depth", "flow", "semantic")

    def __init__(self, motion: bool = True, device: str = "cpu", backend: str = "auto",
                 acceleration: bool = False, **_: Any):
        if acceleration and not motion:
            raise SlarmBenchError("an oracle with acceleration but no motion is not a model; use one of them")
        self.motion = motion
        self.acceleration = acceleration
        if acceleration:
            self.context_fields = (*type(self).context_fields, "instance", "boxes")
        self.device = device
        self.backend = resolve_backend(backend)

    def reconstruct(self, context: Clip) -> Scene:
        depth = context.depth_dense if context.depth_dense is not None else context.depth
        if depth is None:
            raise SlarmBenchError(f"{self.name} needs ground-truth depth in the context; this dataset has "
                                  "none")
        if self.acceleration and (context.instance is None or context.boxes is None or context.flow is None):
            raise SlarmBenchError(f"{self.name} needs instance masks, boxes and flow in the context; this "
                                  "dataset lacks them: use `oracle` instead")
        t, v, h, w = depth.shape
        parts: dict[str, list[np.ndarray]] = {k: [] for k in ("means", "quats", "scales", "colors", "feats",
                                                               "vels", "accs", "times", "views", "pixels",
                                                               "moving", "interior")}
        num_classes = len(SLARM_CLASSES)
        for ti in range(t):
            origins, dirs = camera_rays(context.intrinsics[ti], context.cam_to_world[ti], h, w)  # [V,H,W,3]
            for vi in range(v):
                valid = depth[ti, vi] > 0
                pts = origins[vi] + depth[ti, vi][..., None] * dirs[vi]
                quats, scales = surfel_frames(pts, valid, depth[ti, vi], context.cam_to_world[ti, vi],
                                              context.intrinsics[ti, vi], FOOTPRINT)
                count = int(valid.sum())
                parts["means"].append(pts[valid])
                parts["quats"].append(quats)
                moving = (np.zeros(count, bool) if context.flow is None
                          else np.linalg.norm(context.flow[ti, vi][valid], axis=-1) > MOVING_SPEED)
                parts["moving"].append(moving)
                parts["scales"].append(np.where(moving[:, None], scales * (MOVING_FOOTPRINT / FOOTPRINT),
                                                scales))
                parts["colors"].append(context.images[ti, vi][valid].astype(np.float32) / 255.0)
                if context.semantic is not None:
                    labels = context.semantic[ti, vi][valid].astype(np.int64)
                    onehot = np.zeros((count, num_classes), np.float32)
                    ok = labels < num_classes
                    onehot[np.nonzero(ok)[0], labels[ok]] = 1.0
                    parts["feats"].append(onehot)
                use_flow = self.motion and context.flow is not None
                parts["vels"].append(context.flow[ti, vi][valid] if use_flow else np.zeros((count, 3), np.float32))
                if self.acceleration:
                    parts["accs"].append(box_acceleration(context, ti, context.instance[ti, vi][valid]))
                parts["times"].append(np.full(count, context.time[ti]))
                parts["views"].append(np.full(count, ti * v + vi))
                parts["pixels"].append(np.flatnonzero(valid))
                parts["interior"].append(depth_interior(depth[ti, vi], DEPTH_MARGIN)[valid])

        dev = self.device
        cat = {k: np.concatenate(a) for k, a in parts.items() if a}
        as_t = lambda a: torch.from_numpy(np.ascontiguousarray(a)).float().to(dev)  # noqa: E731
        n = cat["means"].shape[0]
        motion = as_t(cat["vels"])[None, :, None, :]
        if self.acceleration:
            motion = torch.cat([motion, as_t(cat["accs"])[None, :, None, :]], dim=2)      # [1,N,2,3]
        gaussians = Gaussians(
            means=as_t(cat["means"])[None], quats=as_t(cat["quats"])[None], scales=as_t(cat["scales"])[None],
            opacities=torch.full((1, n), OPACITY, device=dev), colors=as_t(cat["colors"])[None],
            features=as_t(cat["feats"])[None] if "feats" in cat else None,
            motion=motion, origin_time=as_t(cat["times"])[None])
        images = torch.from_numpy(context.images).to(dev).float() / 255.0
        views = torch.from_numpy(cat["views"]).to(dev)
        self._prefilter(gaussians, views, torch.from_numpy(cat["pixels"]).to(dev),
                        torch.from_numpy(cat["interior"]).to(dev), images, context)
        gains = torch.from_numpy(_camera_gains(context, depth)).float().to(dev)
        sky = None if context.sky is None else torch.from_numpy(np.asarray(context.sky, bool)).to(dev)
        return Scene(gaussians=gaussians, payload={
            "images": images, "sky": sky, "moving": torch.from_numpy(cat["moving"]).to(dev),
            "gains": gains, "time": np.asarray(context.time), "view": views, "num_cameras": v,
            "cam_to_world": torch.from_numpy(context.cam_to_world).float().to(dev),
            "intrinsics": torch.from_numpy(context.intrinsics).float().to(dev)})

    def _prefilter(self, g: Gaussians, views: Tensor, pixels: Tensor, interior: Tensor, images: Tensor,
                   context: Clip) -> None:
        """Solve each view's splat colours so that rendering them at that view gives back its image.

        With the geometry fixed a render is linear in the colours, and each splat dominates its own pixel,
        so Jacobi iterations (add the residual at the splat's pixel) converge. The background of these
        renders is the image itself, as it is behind the same-camera layer when the target is that view.
        Splats at depth edges move at most EDGE_CORRECTION from their colour: there the blur mixes two
        surfaces, and a colour that cancels the neighbour's bleed in this view shows up as a false rim as
        soon as parallax moves the neighbour away."""
        t, v, h, w = images.shape[:4]
        colors = g.colors.clone()
        for vi in range(t * v):
            ti, cam = divmod(vi, v)
            sel = views == vi
            if not bool(sel.any()):
                continue
            sub = g.select(sel)
            image = images[ti, cam]
            c2w = torch.from_numpy(context.cam_to_world[ti, cam]).float().to(image.device)[None, None]
            k = torch.from_numpy(context.intrinsics[ti, cam]).float().to(image.device)[None, None]
            own = pixels[sel]
            edge = ~interior[sel][None, :, None]
            original = sub.colors
            for _ in range(PREFILTER_ITERATIONS):
                out = render(sub, c2w, k, (h, w), time=float(context.time[ti]), backend=self.backend,
                             background=image[None, None], eps2d=EPS2D, flow=False, features=False)
                residual = (image - out.rgb[0, 0]).reshape(-1, 3)[own]
                updated = (sub.colors + residual[None]).clamp(*COLOR_RANGE)
                limited = torch.minimum(torch.maximum(updated, original - EDGE_CORRECTION),
                                        original + EDGE_CORRECTION)
                sub.colors = torch.where(edge, limited, updated)
            colors[:, sel] = sub.colors
        g.colors = colors

    def render(self, scene: Scene, cam_to_world: np.ndarray, intrinsics: np.ndarray, time: float,
               size: tuple[int, int]) -> Prediction:
        dev = self.device
        nearest = int(np.argmin(np.abs(scene.payload["time"] - time)))
        c2w = torch.from_numpy(cam_to_world).float().to(dev)
        ks = torch.from_numpy(intrinsics).float().to(dev)
        parts = [self._render_camera(scene, nearest, cam, c2w[cam], ks[cam], time, size)
                 for cam in range(c2w.shape[0])]
        rgb, depth, flow, feats = (torch.stack([p[i] for p in parts]) for i in range(4))
        semantic = feats.argmax(-1) if feats.shape[-1] else None
        return Prediction(rgb=rgb.clamp(0, 1), depth=depth, flow=flow, semantic=semantic)

    def _background(self, scene: Scene, nearest: int, cam: int, c2w: Tensor, k: Tensor,
                    size: tuple[int, int]) -> tuple[Tensor, Tensor]:
        """Sky colour [H,W,3] along the target's rays and where it is known to be sky [H,W]."""
        image = scene.payload["images"][nearest, cam]
        if scene.payload["sky"] is None or image.shape[:2] != tuple(size):
            return image, torch.ones(image.shape[:2], dtype=torch.bool, device=image.device)
        h, w = size
        kn = k.new_tensor([[1.0 / k[0, 0], 0, -k[0, 2] / k[0, 0]], [0, 1.0 / k[1, 1], -k[1, 2] / k[1, 1]],
                           [0, 0, 1]])
        ys, xs = torch.meshgrid(torch.arange(h, device=k.device) + 0.5, torch.arange(w, device=k.device) + 0.5,
                                indexing="ij")
        dirs = torch.stack([xs, ys, torch.ones_like(xs)], -1) @ kn.T @ c2w[:3, :3].T
        return sky_lookup(image, scene.payload["sky"][nearest, cam], dirs,
                          scene.payload["cam_to_world"][nearest, cam], scene.payload["intrinsics"][nearest, cam])

    def _render_camera(self, scene: Scene, nearest: int, cam: int, c2w: Tensor, k: Tensor,
                       time: float, size: tuple[int, int]) -> tuple[Tensor, ...]:
        """Two layers (same camera at the nearest context time, then the rest), then sky and holes."""
        g = scene.gaussians
        v = scene.payload["num_cameras"]
        view = scene.payload["view"]
        best = view == nearest * v + cam
        # Moving things only from the nearest context time: their samples from other times land elsewhere
        # as soon as the motion is not constant velocity (and anywhere for the static variant): ghosts.
        # MOVING_NEAREST_ONLY = 0 keeps them, for the sweep that measures exactly that.
        others = ~best & (~scene.payload["moving"] | (view // v == nearest)) if MOVING_NEAREST_ONLY else ~best
        rest = g.select(others)
        gains = scene.payload["gains"]                                      # [V,3]
        source = (view[others] % v).long()
        rest.colors = rest.colors * (gains[cam] / gains[source])[None]      # to this camera's exposure
        front, back = (render(part, c2w[None, None], k[None, None], size, time=time, backend=self.backend,
                              flow=True, eps2d=EPS2D) for part in (g.select(best), rest))
        a1, a2 = front.alpha[0, 0], back.alpha[0, 0]
        d1, d2 = front.depth[0, 0], back.depth[0, 0]
        # The nearest view goes first unless another view saw a surface clearly in front of what it saw
        # there (an occluder that has left the nearest view's field of view or was hidden from it).
        # Only where the whole 3x3 neighbourhood agrees: along silhouettes other views' samples of the
        # foreground spill a pixel past it, and must not cover the nearest view's background there.
        nearer = ((a2 > BACK_COVERAGE) & (d2 < d1 * (1 - DEPTH_MARGIN))).float()
        back_first = (-F.max_pool2d(-nearer[None, None], 3, stride=1, padding=1))[0, 0, ..., None] > 0.5

        def over(first: Tensor, second: Tensor, a_first: Tensor) -> Tensor:
            return first + (1 - a_first)[..., None] * second

        def layered(x1: Tensor, x2: Tensor) -> Tensor:
            # Inside such an occluder its samples' coverage gaps are sampling, not transparency: the
            # surface behind must not show through them, so the occluder is taken at full coverage.
            return torch.where(back_first, x2 / a2.clamp_min(1e-6)[..., None], over(x1, x2, a1))

        alpha = torch.where(back_first[..., 0], torch.ones_like(a1), a1 + (1 - a1) * a2)
        weighted_depth = layered((a1 * d1)[..., None], (a2 * d2)[..., None])[..., 0]
        depth = weighted_depth / alpha.clamp_min(1e-10)
        flow = layered(front.flow[0, 0], back.flow[0, 0])
        sky_rgb, is_sky = self._background(scene, nearest, cam, c2w, k, size)
        sky_weight = (1 - alpha)[..., None] * is_sky[..., None].float()
        known = alpha[..., None] + sky_weight
        rgb = layered(front.rgb[0, 0], back.rgb[0, 0]) + sky_weight * sky_rgb
        # Sky counts as the farthest thing around a hole.
        fill_depth = torch.where(alpha > 0.5, depth, depth[alpha > 0.5].max() if bool((alpha > 0.5).any())
                                 else depth.new_tensor(1.0))
        rgb = rgb + (1 - known) * fill_holes(rgb, known[..., 0], fill_depth)
        if front.features is None:
            return rgb, depth, flow, rgb.new_zeros((*size, 0))
        sky = torch.zeros_like(front.features[0, 0])
        sky[..., SLARM_CLASSES.index("sky")] = 1.0
        feats = layered(front.features[0, 0], back.features[0, 0]) + sky_weight * sky
        feats = feats + (1 - known) * fill_holes(feats, known[..., 0], fill_depth)
        return rgb, depth, flow, feats

    def provenance(self) -> dict[str, Any]:
        motion = ("ground-truth velocity and box acceleration, order 2" if self.acceleration
                  else "ground-truth velocity, order 1" if self.motion else "none")
        return {"model": self.name, "motion": motion,
                "renderer_backend": self.backend, "uses_ground_truth": True,
                "reconstruction": f"surface splats, colour prefilter ({PREFILTER_ITERATIONS} iterations), "
                                  "layered, push-pull hole filling"
                                  + ("" if MOVING_NEAREST_ONLY else ", moving things from every context time")}


def _camera_gains(context: Clip, depth: np.ndarray) -> np.ndarray:
    """Relative colour gains [V,3] of the cameras (exposure x white balance), from where they overlap.

    Pixels of camera b are projected with their depth into camera a at the same time; where a sees the
    same surface (depth within 1%) the ratio of the two colour sums is gain_a / gain_b. The log gains are
    then the least-squares solution of all pairs (mean log gain 0); a camera that overlaps no other keeps
    gain 1. Sums, not per-pixel ratios: texture and anti-aliasing noise averages out."""
    t, v, h, w = depth.shape
    sums = np.zeros((v, v, 2, 3))                      # [a, b, (colour of a, colour of b), channel]
    for ti in range(t):
        origins, dirs = camera_rays(context.intrinsics[ti], context.cam_to_world[ti], h, w)
        for b in range(v):
            valid_b = depth[ti, b] > 0
            pts = (origins[b] + depth[ti, b][..., None] * dirs[b])[valid_b]
            colour_b = context.images[ti, b][valid_b].astype(np.float64)
            for a in range(v):
                if a == b:
                    continue
                c2w = context.cam_to_world[ti, a]
                local = (pts - c2w[:3, 3]) @ c2w[:3, :3]
                z = local[:, 2]
                uv = (local @ context.intrinsics[ti, a].T)[:, :2] / np.maximum(z, 1e-6)[:, None]
                col, row = np.floor(uv[:, 0]).astype(np.int64), np.floor(uv[:, 1]).astype(np.int64)
                inside = (z > 0) & (col >= 0) & (col < w) & (row >= 0) & (row < h)
                col, row, z_in = col[inside], row[inside], z[inside]
                same = np.abs(depth[ti, a][row, col] - z_in) < 0.01 * z_in
                colour_a = context.images[ti, a][row[same], col[same]].astype(np.float64)
                unclipped = (colour_a.max(-1) < 250) & (colour_b[inside][same].max(-1) < 250)
                sums[a, b, 0] += colour_a[unclipped].sum(0)
                sums[a, b, 1] += colour_b[inside][same][unclipped].sum(0)
    rows, rhs = [], []
    for a in range(v):
        for b in range(v):
            if a != b and sums[a, b, 1].min() > 0 and sums[a, b, 0].min() > 0:
                row_ = np.zeros(v)
                row_[a], row_[b] = 1.0, -1.0
                rows.append(row_)
                rhs.append(np.log(sums[a, b, 0] / sums[a, b, 1]))
    if not rows:
        return np.ones((v, 3))
    rows.append(np.ones(v))                             # fixes the free scale: mean log gain 0
    rhs.append(np.zeros(3))
    log_gain = np.linalg.lstsq(np.stack(rows), np.stack(rhs), rcond=None)[0]
    return np.exp(log_gain)


def box_acceleration(context: Clip, frame: int, instance: np.ndarray) -> np.ndarray:
    """Acceleration [N,3] (m/s^2, world) of the box each pixel's `instance` id [N] belongs to at `frame`;
    zero for pixels of no box and where the box's acceleration is unknown (NaN)."""
    boxes = context.boxes
    at = boxes.frame == frame
    ids = boxes.track_id[at].astype(np.int64)
    acc = np.nan_to_num(boxes.acceleration[at].astype(np.float32), nan=0.0)
    out = np.zeros((instance.shape[0], 3), np.float32)
    if ids.size == 0:
        return out
    order = np.argsort(ids)
    pos = np.clip(np.searchsorted(ids[order], instance), 0, ids.size - 1)
    hit = (instance != 0) & (ids[order][pos] == instance)
    out[hit] = acc[order][pos[hit]]
    return out


def make_oracle(**options: Any) -> GroundTruthOracle:
    return GroundTruthOracle(motion=True, **options)


def make_static_oracle(**options: Any) -> GroundTruthOracle:
    return GroundTruthOracle(motion=False, **options)


def make_accel_oracle(**options: Any) -> GroundTruthOracle:
    return GroundTruthOracle(motion=True, acceleration=True, **options)
