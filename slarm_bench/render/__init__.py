"""Gaussian rendering: one `render()` entry point over two rasterizers with the same semantics.

Backends: "gsplat" (CUDA, gsplat 1.5.x) and "torch" (pure torch, CPU or GPU; what CI runs). Models call
`render()`, never a backend. Conventions: OpenCV cameras (x right, y down, z forward), camera-to-world
4x4 poses, pinhole intrinsics in pixels of the rendered size, pixel centres at (j + 0.5, i + 0.5),
depth = z-depth.
"""

from __future__ import annotations

import torch
from torch import Tensor

from slarm_bench.errors import check_name
from slarm_bench.render.gaussians import Gaussians, Render, RenderError, TimeLike

__all__ = ["BACKENDS", "Gaussians", "Render", "RenderError", "render", "resolve_backend"]

BACKENDS = ("auto", "gsplat", "torch")


def resolve_backend(name: str = "auto") -> str:
    """"auto" -> "gsplat" when CUDA is present and gsplat imports, else "torch"; other names are checked.

    Raises RenderError when "gsplat" is asked for on a machine that cannot run it.
    """
    from slarm_bench.render import gsplat_backend

    check_name("render backend", name, BACKENDS)
    if name == "torch":
        return "torch"
    usable = torch.cuda.is_available() and gsplat_backend.available()
    if name == "auto":
        return "gsplat" if usable else "torch"
    if not torch.cuda.is_available():
        raise RenderError("render backend 'gsplat' needs a CUDA GPU and none is visible; "
                          "use backend='torch' (or 'auto') on this machine.")
    if not gsplat_backend.available():
        raise RenderError("render backend 'gsplat' was asked for but gsplat does not import; "
                          "install gsplat 1.5.x (pip install gsplat) or use backend='torch'.")
    return "gsplat"


def _check_cameras(cam_to_world: Tensor, intrinsics: Tensor, batch: int, size: tuple[int, int]) -> Tensor:
    """Validate cameras; return world-to-camera matrices [B,V,4,4]."""
    if cam_to_world.dim() != 4 or cam_to_world.shape[0] != batch or cam_to_world.shape[-2:] != (4, 4):
        raise RenderError(f"cam_to_world must be [B,V,4,4] with B={batch}, got {list(cam_to_world.shape)}.")
    if tuple(intrinsics.shape) != (*cam_to_world.shape[:2], 3, 3):
        raise RenderError(f"intrinsics must be [B,V,3,3] = {[*cam_to_world.shape[:2], 3, 3]}, "
                          f"got {list(intrinsics.shape)}.")
    h, w = size
    if int(h) <= 0 or int(w) <= 0:
        raise RenderError(f"image size must be positive (H, W), got {size}.")
    det = torch.linalg.det(cam_to_world.detach().double())
    k = intrinsics.detach()
    ok = torch.stack([torch.isfinite(cam_to_world).all(), torch.isfinite(k).all(),
                      (det.abs() > 1e-12).all(), ((k[..., 0, 0] > 0) & (k[..., 1, 1] > 0)).all()]).cpu()
    if not ok[0] or not ok[2]:
        raise RenderError("cam_to_world has a non-finite or non-invertible pose; each camera needs a "
                          "rigid 4x4 OpenCV camera-to-world matrix.")
    if not ok[1] or not ok[3]:
        raise RenderError("intrinsics must be finite with positive focal lengths fx = K[0,0], fy = K[1,1].")
    return torch.linalg.inv(cam_to_world)


def _expand_per_camera(x: Tensor, v: int) -> Tensor:
    """[B,...] -> [B*V,...] by repeating each scene for its V cameras."""
    return x.repeat_interleave(v, dim=0)


def render(gaussians: Gaussians, cam_to_world: Tensor, intrinsics: Tensor, size: tuple[int, int], *,
           time: TimeLike | None = None, backend: str = "auto", near: float = 0.2, far: float = 400.0,
           background: Tensor | None = None, color_transform: Tensor | None = None,
           features: bool | None = None, flow: bool | None = None, flow_dt: float | None = None,
           eps2d: float = 0.3, check: bool = True) -> Render:
    """Render B scenes of Gaussians into V cameras each.

    gaussians: B scenes. cam_to_world [B,V,4,4] OpenCV camera-to-world; intrinsics [B,V,3,3] for an image
    of `size` = (H, W). time: scalar, [B] or [B,V] seconds; required when the Gaussians move (means are
    taken at `gaussians.at_time(time)`; a [B,V] time renders each camera at its own time).
    background: sky / background colours broadcastable to [B,V,H,W,3], composited as
    rgb + (1 - alpha) * background. color_transform [B,V,3,4]: per-camera affine A[:, :3] rgb + A[:, 3],
    applied after the background is composited. features: render `gaussians.features` (None = when
    present). flow: render world-frame velocities in m/s (None = when the Gaussians move): the analytic
    velocity at `time`, or with `flow_dt` the backward difference (mean(t) - mean(t - flow_dt)) / flow_dt.
    check: validate inputs (one device sync); turn off only in timed inner loops.
    Returns Render (see its docstring: depth is the gsplat "ED" expected depth, flow and features are
    alpha-weighted sums not divided by alpha).
    """
    name = resolve_backend(backend)
    h, w = int(size[0]), int(size[1])
    b, n = gaussians.batch_size, gaussians.num_gaussians
    v = cam_to_world.shape[1] if cam_to_world.dim() == 4 else 0
    if check:
        gaussians.validate()
        viewmats = _check_cameras(cam_to_world, intrinsics, b, (h, w))
    else:
        viewmats = torch.linalg.inv(cam_to_world)
    want_features = gaussians.features is not None if features is None else features
    if want_features and gaussians.features is None:
        raise RenderError("features=True but these Gaussians carry no features; set Gaussians.features.")
    want_flow = gaussians.motion is not None if flow is None else flow
    if gaussians.motion is not None and time is None:
        raise RenderError("these Gaussians move (motion is set): pass time= (seconds) to render them.")

    g = gaussians
    ks = intrinsics
    per_camera_time = isinstance(time, Tensor) and time.dim() == 2
    if per_camera_time:
        if tuple(time.shape) != (b, v):
            raise RenderError(f"a per-camera time must be [B,V] = [{b},{v}], got {list(time.shape)}.")
        # Each camera sees the scene at its own time: render B*V one-camera scenes.
        g = Gaussians(**{k: (None if val is None else _expand_per_camera(val, v))
                         for k, val in vars(gaussians).items()})
        time = time.reshape(b * v)
        viewmats, ks = viewmats.reshape(b * v, 1, 4, 4), intrinsics.reshape(b * v, 1, 3, 3)

    means = g.means if g.motion is None else g.at_time(time)
    chans = [g.colors]
    if want_features:
        chans.append(g.features)
    if want_flow:
        if flow_dt is None:
            velocity = g.velocity_at(time) if g.motion is not None else torch.zeros_like(means)
        else:
            t = torch.as_tensor(time, dtype=means.dtype, device=means.device)
            velocity = (means - g.at_time(t - flow_dt)) / flow_dt
        chans.append(velocity)
    values = torch.cat(chans, dim=-1) if len(chans) > 1 else chans[0]

    if n == 0:
        bb, vv = viewmats.shape[:2]
        img = values.new_zeros(bb, vv, h, w, values.shape[-1])
        depth = values.new_zeros(bb, vv, h, w)
        alpha = values.new_zeros(bb, vv, h, w)
    elif name == "gsplat":
        from slarm_bench.render import gsplat_backend

        f32 = torch.float32
        img, depth, alpha = gsplat_backend.rasterize(
            means.to(f32), g.quats.to(f32), g.scales.to(f32), g.opacities.to(f32), values.to(f32),
            viewmats.to(f32), ks.to(f32), h, w, near=near, far=far, eps2d=eps2d)
    else:
        from slarm_bench.render import torch_backend

        img, depth, alpha = torch_backend.rasterize(
            means, g.quats, g.scales, g.opacities, values, viewmats.to(means.dtype), ks.to(means.dtype),
            h, w, near=near, far=far, eps2d=eps2d)

    if per_camera_time:
        img, depth, alpha = (x.reshape(b, v, *x.shape[2:]) for x in (img, depth, alpha))

    rgb = img[..., :3]
    if background is not None:
        rgb = rgb + (1.0 - alpha)[..., None] * background.to(rgb.dtype)
    if color_transform is not None:
        if tuple(color_transform.shape) != (b, v, 3, 4):
            raise RenderError(f"color_transform must be [B,V,3,4] = [{b},{v},3,4], "
                              f"got {list(color_transform.shape)}.")
        a = color_transform.to(rgb.dtype)
        rgb = torch.einsum("bvij,bvhwj->bvhwi", a[..., :3], rgb) + a[:, :, None, None, :, 3]
    c = 3
    feats = None
    if want_features:
        feats = img[..., c:c + g.features.shape[-1]]
        c += g.features.shape[-1]
    flow_img = img[..., c:c + 3] if want_flow else None
    return Render(rgb=rgb, depth=depth, alpha=alpha, features=feats, flow=flow_img, backend=name)
