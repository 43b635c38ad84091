"""Gaussian rendering: one `render()` entry point over two rasterizers with the same semantics.

Backends: "gsplat" (CUDA, gsplat 1.5.x) and "torch" (pure torch, CPU or GPU; what CI runs). Models call
`render()`, never a backend. Conventions: OpenCV cameras (x right, y down, z forward), camera-to-world
4x4 poses, pinhole intrinsics in pixels of the rendered size, pixel centres at (j + 0.5, i + 0.5),
depth = z-depth.

Validation: `render(check=True)` (the default) validates the Gaussians and cameras at the cost of a device
sync for each. A caller that cannot afford it per frame (SLARM streaming) passes check=False and validates the same
way without a sync: cameras on the host with `check_cameras` (numpy, before they are sent), Gaussians with a
`GaussianCheck` (the checks of `Gaussians.validate` as one device flag, copied to the host asynchronously and
read where the host waits for the device anyway); both raise the RenderError that check=True would.
"""

from __future__ import annotations

import numbers

import numpy as np
import torch
from torch import Tensor

from slarm_bench.errors import check_name
from slarm_bench.render.gaussians import Gaussians, Render, RenderError, TimeLike

__all__ = ["BACKENDS", "GaussianCheck", "Gaussians", "Render", "RenderError", "check_cameras", "render",
           "resolve_backend", "validity_flag"]

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


_POSE_ERROR = ("cam_to_world has a non-finite or non-invertible pose; each camera needs a rigid 4x4 OpenCV "
               "camera-to-world matrix.")
_INTRINSICS_ERROR = "intrinsics must be finite with positive focal lengths fx = K[0,0], fy = K[1,1]."


def _check_camera_shapes(c2w_shape: tuple[int, ...], k_shape: tuple[int, ...], batch: int,
                         size: tuple[int, int]) -> None:
    if len(c2w_shape) != 4 or c2w_shape[0] != batch or tuple(c2w_shape[-2:]) != (4, 4):
        raise RenderError(f"cam_to_world must be [B,V,4,4] with B={batch}, got {list(c2w_shape)}.")
    if tuple(k_shape) != (*c2w_shape[:2], 3, 3):
        raise RenderError(f"intrinsics must be [B,V,3,3] = {[*c2w_shape[:2], 3, 3]}, got {list(k_shape)}.")
    h, w = size
    if int(h) <= 0 or int(w) <= 0:
        raise RenderError(f"image size must be positive (H, W), got {size}.")


def _check_cameras(cam_to_world: Tensor, intrinsics: Tensor, batch: int, size: tuple[int, int]) -> Tensor:
    """Validate cameras; return world-to-camera matrices [B,V,4,4]."""
    _check_camera_shapes(tuple(cam_to_world.shape), tuple(intrinsics.shape), batch, size)
    det = torch.linalg.det(cam_to_world.detach().double())
    k = intrinsics.detach()
    ok = torch.stack([torch.isfinite(cam_to_world).all(), torch.isfinite(k).all(),
                      (det.abs() > 1e-12).all(), ((k[..., 0, 0] > 0) & (k[..., 1, 1] > 0)).all()]).cpu()
    if not ok[0] or not ok[2]:
        raise RenderError(_POSE_ERROR)
    if not ok[1] or not ok[3]:
        raise RenderError(_INTRINSICS_ERROR)
    # invertible (checked above), so inv_ex: torch.linalg.inv would sync again on CUDA to raise on singular
    return torch.linalg.inv_ex(cam_to_world).inverse


def check_cameras(cam_to_world: np.ndarray, intrinsics: np.ndarray, batch: int, size: tuple[int, int]) -> None:
    """Validate cameras on the host, before they are sent: cam_to_world [B,V,4,4], intrinsics [B,V,3,3]
    (numpy; pass the arrays as they will be sent, e.g. float32). The checks and RenderError messages of
    render(check=True), with no device work; for callers that render with check=False."""
    c2w, k = np.asarray(cam_to_world), np.asarray(intrinsics)
    _check_camera_shapes(c2w.shape, k.shape, batch, size)
    # finiteness first: the determinant of a non-finite matrix is not needed (and numpy warns on it)
    if not np.isfinite(c2w).all() or not (np.abs(np.linalg.det(c2w.astype(np.float64))) > 1e-12).all():
        raise RenderError(_POSE_ERROR)
    if not np.isfinite(k).all() or not ((k[..., 0, 0] > 0) & (k[..., 1, 1] > 0)).all():
        raise RenderError(_INTRINSICS_ERROR)


def validity_flag(means: Tensor, quats: Tensor, scales: Tensor, opacities: Tensor,
                  *others: Tensor | None) -> Tensor:
    """A device bool scalar, True iff Gaussians with these fields pass `Gaussians.validate()`: all values
    finite (`others`: colors, features, motion, origin_time, each optional), no zero-norm quaternion, scales
    >= 0, opacities in [0, 1]. Any leading shape (e.g. a network's [B,T,V,H,W,...] outputs). No host sync,
    so torch.compile can fuse it into the graph that produces the Gaussians."""
    fields = [x for x in (means, quats, scales, opacities, *others) if x is not None]
    checks = [torch.isfinite(x).all() for x in fields]
    checks += [(quats.detach().norm(dim=-1) > 1e-12).all(), (scales.detach() >= 0).all(),
               ((opacities.detach() >= 0) & (opacities.detach() <= 1)).all()]
    return torch.stack(checks).all()


class GaussianCheck:
    """`Gaussians.validate()` without its host sync. The checks run on the device (`validity_flag`, or a
    flag already computed by the caller for these Gaussians); on CUDA the flag is copied to pinned host
    memory asynchronously behind an event. `raise_if_invalid` reads it: at no cost once the device has got
    there, which it has wherever the host has waited for the device since (gsplat waits inside every
    rasterization); else it waits for the device to reach the check (wait=True) or returns False (wait=False).
    Invalid Gaussians raise the RenderError that `validate()` raises (re-run then, on these Gaussians, for
    its message), prefixed with `where`."""

    def __init__(self, gaussians: Gaussians, flag: Tensor | None = None, where: str = ""):
        self.gaussians, self.where = gaussians, where
        if flag is None:
            g = gaussians
            flag = validity_flag(g.means, g.quats, g.scales, g.opacities, g.colors, g.features, g.motion,
                                 g.origin_time)
        self._event: torch.cuda.Event | None = None
        self._ok: bool | None = None
        if flag.device.type == "cuda":
            self._host = torch.empty((), dtype=torch.bool, pin_memory=True)
            self._host.copy_(flag, non_blocking=True)
            self._event = torch.cuda.Event()
            self._event.record()
        else:
            self._host = flag            # on the CPU the flag is computed by now: reading it costs nothing

    def ready(self) -> bool:
        """Whether the result can be read without waiting for the device (never waits)."""
        return self._ok is not None or self._event is None or self._event.query()

    def raise_if_invalid(self, wait: bool = True) -> bool:
        """Raise RenderError if the Gaussians are invalid (every call, once found so). True when checked;
        False only with wait=False while the device has not reached the check."""
        if self._ok is None:
            if not self.ready():
                if not wait:
                    return False
                self._event.synchronize()
            self._ok = bool(self._host)
        if not self._ok:
            try:
                self.gaussians.validate()
            except RenderError as err:
                raise RenderError(f"{self.where}{err}") from err
            raise RenderError(f"{self.where}the device-side check (render.validity_flag) found these Gaussians "
                              f"invalid but Gaussians.validate() passes them; the two checks disagree (a bug).")
        return True


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
    check: validate inputs (a device sync each for the Gaussians and the cameras). With check=False nothing
    is validated here: the caller must (module doc: `check_cameras`, `GaussianCheck`), or get garbage out.
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
        # inv_ex: torch.linalg.inv syncs on CUDA to raise on a singular pose; unchecked input is the caller's
        viewmats = torch.linalg.inv_ex(cam_to_world).inverse
    if isinstance(time, numbers.Real):
        # a device fill of the same value: torch.as_tensor(number, device=cuda), as at_time() and the flow
        # below would do, is a host-to-device copy that waits for the device
        time = torch.full((), float(time), dtype=gaussians.means.dtype, device=gaussians.means.device)
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
