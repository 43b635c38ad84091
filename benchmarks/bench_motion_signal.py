"""How much does the photometric loss alone say about motion? A free-velocity probe on exact geometry.

storm-t and slarm-t, trained with the reference losses (no flow supervision) for 3,000 steps, predict
velocities of about 0.1 m/s everywhere: their flow EPE equals the zero-flow EPE. This script asks whether
that is a training-budget problem or a weak-signal problem by giving gradient descent the easiest possible
version of the task: one Gaussian per context pixel at its exact ground-truth position and colour (as the
oracle builds them), and a free velocity per dynamic Gaussian (every other Gaussian static), optimised by
Adam on the same RGB MSE as training, on the non-context frames of one camera. If even this recovers little
of the ground-truth motion in as many steps as a Gaussian of a trained model sees, the loss's gradient with
respect to a position is too local (a splat about a pixel wide only "feels" the image within a pixel or
two, while a car at 10 m/s moves tens of pixels between a context frame and a target) for motion to be
learned at this budget. `--blur SIGMA` adds the same loss on Gaussian-blurred images, a coarse-to-fine
term that widens the basin. `--rate K --near D` generates the scene at K x 10 Hz and supervises only at
times within D fine frames (D / (10 K) s) of a context time: does a target close in time to the context,
where a car has moved a pixel or two rather than tens, give the loss a slope towards the true motion?
(Measured: no. Most of the motion on the front camera is along its rays, which the split printed below
shows; see the README's motion rows.)

`--depth W` adds the training depth term (L1 of depth / max lidar depth on lidar pixels), which sees
motion along a camera ray that the image shows only as a change of scale.

`--tokens K` and `--pool P` take away the known static set: every Gaussian of the camera may move, with
STORM's motion head given a free output per Gaussian (softmax weights over K free bases) or with one free
velocity per P x P pixel block of each context image; the static speed printed is their drift.

`--geometry MODEL[=CHECKPOINT]` (a STORM-family preset: storm-t, static-t) replaces the exact geometry by
the trained model's own reconstruction of the window (its Gaussians of every context pixel of every
camera, its sky and colour transform, rendered as the model renders); the velocities of the Gaussians of
camera `--camera`'s truly moving pixels are again free and every other one static: does the training
loss, at the geometry the network actually has, still point towards the true motion?

    .venv/bin/python benchmarks/bench_motion_signal.py [--scene mini-00001] [--camera 1] [--steps 30]
        [--shared] [--depth 0] [--reg 0] [--blur 0] [--rate 1 --near 0] [--geometry storm-t] [--device cpu]
        [--tokens 16 | --pool 16]

Prints one JSON line every 5 steps: step, mean end-point error on dynamic pixels (m/s), the zero-flow
EPE, and both split into the mean error along each pixel's camera ray and the mean error across it.
Needs the prepared synthetic mini split (`slarm-bench prepare synthetic --split mini`) unless --rate > 1.
"""

from __future__ import annotations

import argparse
import json

import numpy as np
import torch
import torch.nn.functional as F

from slarm_bench import config
from slarm_bench.geometry import camera_rays
from slarm_bench.models.oracle import FOOTPRINT
from slarm_bench.models.storm_net import StormConfig
from slarm_bench.render import Gaussians, render
from slarm_bench.store import Store

CONTEXT = (0, 5, 10, 15)


def gaussian_blur(images: torch.Tensor, sigma: float) -> torch.Tensor:
    """images [N,H,W,C] -> the same, separably blurred (replicate padding)."""
    if sigma <= 0:
        return images
    k = 2 * int(3 * sigma) + 1
    taps = torch.exp(-0.5 * ((torch.arange(k) - k // 2) / sigma) ** 2)
    taps = taps / taps.sum()
    x = images.permute(0, 3, 1, 2)
    c = x.shape[1]
    x = F.pad(x, (k // 2,) * 4, mode="replicate")
    x = F.conv2d(x, taps.view(1, 1, 1, k).expand(c, 1, 1, k), groups=c)
    x = F.conv2d(x, taps.view(1, 1, k, 1).expand(c, 1, k, 1), groups=c)
    return x.permute(0, 2, 3, 1)


def block_ids(index: torch.Tensor, size: tuple[int, int], pool: int) -> torch.Tensor:
    """Pixel-aligned Gaussians' flat indices [M] into [T,V,H,W] -> [M] ids 0..B-1 of the pool x pool pixel
    block of their own context image (frame, camera) they fall in; blocks at the right and bottom edges
    may be partial."""
    h, w = size
    x, y = index % w, (index // w) % h
    image = index // (h * w)                                # frame * cameras + camera
    rows, cols = -(-h // pool), -(-w // pool)
    block = (image * rows + y // pool) * cols + x // pool
    return torch.unique(block, return_inverse=True)[1]


def exact_renderer(means: torch.Tensor, colors: torch.Tensor, times: torch.Tensor, radius: torch.Tensor,
                   window, cam: int, size: tuple[int, int]):
    """Renders the exact-geometry Gaussians [N] moved by motion [N,3] into camera `cam` at frame t, over
    the target image itself as background (the probe is about the Gaussians, not the sky)."""
    n = means.shape[0]
    quats = torch.tensor([1.0, 0, 0, 0]).expand(1, n, 4).contiguous()
    scales = radius[None, :, None].expand(1, n, 3).contiguous()

    def render_target(motion: torch.Tensor, t: int) -> tuple[torch.Tensor, torch.Tensor]:
        g = Gaussians(means=means[None], quats=quats, scales=scales, opacities=torch.full((1, n), 0.95),
                      colors=colors[None], motion=motion[None, :, None, :], origin_time=times[None])
        target = torch.from_numpy(window.images[t, cam] / 255.0).float()[None]
        out = render(g, torch.from_numpy(window.cam_to_world[t, cam:cam + 1]).float()[None],
                     torch.from_numpy(window.intrinsics[t, cam:cam + 1]).float()[None], size,
                     time=float(window.time[t]), backend="torch", background=target[None], flow=False)
        return out.rgb[0], out.depth[0]

    return render_target


def model_geometry(name: str, window, context: tuple[int, ...], cam: int, size: tuple[int, int], device: str):
    """A trained STORM-family model's own Gaussians of the window's context (every camera), fixed, and a
    renderer that moves them by motion [N,3] and renders camera `cam` as the model does (sky, affine).
    Returns (render_target, per-Gaussian parts with "instance" and "ray", true flow [N,3], dynamic [N])."""
    from dataclasses import replace

    from slarm_bench.models.registry import load_model
    from slarm_bench.models.storm import StormModel, render_views

    preset, _, checkpoint = name.partition("=")
    model = load_model(preset, device=device, backend="auto", **({"checkpoint": checkpoint} if checkpoint else {}))
    if not isinstance(model, StormModel):
        raise SystemExit(f"--geometry {preset}: only STORM-family presets (storm-t, static-t) are supported")
    ctx = window.select(list(context))
    scene = model.reconstruct(ctx.replace(flow=None, dynamic=None, instance=None, depth=None, depth_dense=None))
    g = scene.gaussians
    n = g.means.shape[1]
    seconds = torch.as_tensor(np.asarray(ctx.time, np.float64), dtype=torch.float32, device=g.means.device)
    origin = seconds[:, None].expand(len(context), n // len(context)).reshape(1, n)
    dev = g.means.device
    h, w = size

    def render_target(motion: torch.Tensor, t: int) -> tuple[torch.Tensor, torch.Tensor]:
        moving = replace(g, motion=motion[None, :, None, :], origin_time=origin)
        c2w = torch.from_numpy(window.cam_to_world[t, cam:cam + 1]).float().to(dev)[None]
        k = torch.from_numpy(window.intrinsics[t, cam:cam + 1]).float().to(dev)[None]
        affine = None if scene.affine is None else scene.affine[:, cam:cam + 1]
        out = render_views(model.net, moving, scene.sky, affine, c2w, k, float(window.time[t]), (h, w),
                           model.backend)
        return out["rgb"][0].clamp(0, 1), out["depth"][0]

    dirs = np.stack([camera_rays(ctx.intrinsics[i], ctx.cam_to_world[i], h, w)[1] for i in range(len(context))])
    ray = dirs / np.linalg.norm(dirs, axis=-1, keepdims=True)                       # [T,V,H,W,3]
    parts = {"instance": [np.asarray(ctx.instance).reshape(-1)], "ray": [ray.reshape(-1, 3)]}
    flow = torch.from_numpy(np.asarray(ctx.flow, np.float32).reshape(-1, 3)).to(dev)
    # As in the exact probe, only camera `cam`'s Gaussians may move (and are scored); the other cameras'
    # Gaussians stay where the model put them, static.
    of_cam = np.zeros(np.asarray(ctx.dynamic).shape, bool)
    of_cam[:, cam] = True
    of_cam_t = torch.from_numpy(of_cam.reshape(-1)).to(dev)
    dynamic = torch.from_numpy(np.asarray(ctx.dynamic).reshape(-1)).to(dev) & of_cam_t
    return render_target, parts, flow, dynamic, of_cam_t


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--scene", default="mini-00001")
    ap.add_argument("--camera", type=int, default=1)
    ap.add_argument("--steps", type=int, default=30)
    ap.add_argument("--lr", type=float, default=0.3, help="Adam step on the velocities (m/s)")
    ap.add_argument("--blur", type=float, default=0.0, help="sigma (pixels) of an added blurred-image loss")
    ap.add_argument("--targets-per-step", type=int, default=2)
    ap.add_argument("--shared", action="store_true",
                    help="one velocity per moving object (its instance id), as motion tokens can share one "
                         "basis over an object, instead of one per Gaussian")
    ap.add_argument("--reg", type=float, default=0.0,
                    help="weight of the velocity regulariser mean(v^2) over every Gaussian (reference 0.005)")
    ap.add_argument("--rate", type=int, default=1,
                    help="K: generate the scene at K x 10 Hz (the same scene, K times as many frames)")
    ap.add_argument("--near", type=int, default=0,
                    help="D > 0: supervise only at fine frames within D of a context frame (0: every 10 Hz "
                         "non-context frame)")
    ap.add_argument("--depth", type=float, default=0.0,
                    help="weight of the training depth term, L1(depth / max lidar depth) on lidar pixels "
                         "(reference 1.0); depth sees motion along a ray, which the image barely does")
    ap.add_argument("--geometry", default=None, metavar="MODEL[=CHECKPOINT]",
                    help="a trained STORM-family model whose own Gaussians replace the exact geometry")
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--pool", type=int, default=0,
                    help="P > 0 (with --geometry): no known static set; one free velocity per P x P pixel block "
                         "of each context image, shared by its Gaussians (a velocity per patch token)")
    ap.add_argument("--tokens", type=int, default=0,
                    help="K > 0: no known static set; every Gaussian of the camera moves with softmax(w / 0.5) "
                         "over K free shared bases, with its own free weights w (STORM's motion head, given a "
                         "free output per Gaussian); static pixels must learn to pick a still basis")
    args = ap.parse_args()
    torch.manual_seed(0)
    k_rate = args.rate
    if k_rate == 1:
        window = Store(config.data_root(None)).read_window("synthetic", "mini", args.scene, list(range(20)))
    else:
        from slarm_bench.clip import Clip
        from slarm_bench.data.synthetic import FPS, generate_sequence, split_seed

        split, index = args.scene.rsplit("-", 1)
        seq = generate_sequence(split_seed(split, int(index)), num_frames=39 * k_rate + 1, fps=FPS * k_rate,
                                scene=args.scene)
        window = Clip.from_sequence_window(seq, list(range(19 * k_rate + 1)))
    context = tuple(c * k_rate for c in CONTEXT)
    cam, (h, w) = args.camera, window.images.shape[2:4]
    parts: dict[str, list[np.ndarray]] = {k: [] for k in ("means", "colors", "dynamic", "flow", "time", "radius",
                                                           "instance", "ray")}
    for t in context:
        origins, dirs = camera_rays(window.intrinsics[t], window.cam_to_world[t], h, w)
        depth = window.depth_dense[t, cam]
        keep = (depth > 0) & ~window.sky[t, cam]
        parts["means"].append((origins[cam] + depth[..., None] * dirs[cam])[keep])
        parts["ray"].append((dirs[cam] / np.linalg.norm(dirs[cam], axis=-1, keepdims=True))[keep])
        parts["colors"].append(window.images[t, cam][keep] / 255.0)
        parts["dynamic"].append(window.dynamic[t, cam][keep])
        parts["instance"].append(window.instance[t, cam][keep])
        parts["flow"].append(window.flow[t, cam][keep])
        parts["time"].append(np.full(int(keep.sum()), window.time[t]))
        parts["radius"].append(FOOTPRINT * depth[keep] / window.intrinsics[t, cam, 0, 0])
    means, colors, flow, times, radius = (torch.from_numpy(np.concatenate(parts[k])).float()
                                          for k in ("means", "colors", "flow", "time", "radius"))
    dynamic = torch.from_numpy(np.concatenate(parts["dynamic"])).bool()
    render_target = exact_renderer(means, colors, times, radius, window, cam, (h, w))
    movable = torch.ones_like(dynamic)
    if args.geometry:
        render_target, parts, flow, dynamic, movable = model_geometry(args.geometry, window, context, cam,
                                                                      (h, w), args.device)
    n = dynamic.shape[0]
    # Each parameterisation gives the velocities [M,3] of a set of movable Gaussians; all others stay still.
    if args.tokens:  # STORM's motion head with a free output per Gaussian: weights over K shared bases
        logits = (0.01 * torch.randn(int(movable.sum()), args.tokens, device=dynamic.device)).requires_grad_()
        bases = (0.1 * torch.randn(args.tokens, 3, device=dynamic.device)).requires_grad_()
        params = [logits, bases]

        def velocities() -> torch.Tensor:
            return torch.softmax(logits / StormConfig.motion_temperature, dim=1) @ bases
    else:
        if args.pool:  # one free velocity per P x P block of each context image: no known static set
            if not args.geometry:
                raise SystemExit("--pool needs --geometry (the exact-geometry Gaussians are not on a pixel grid)")
            owner = block_ids(torch.nonzero(movable).squeeze(1), (h, w), args.pool)
        else:  # the static set known: only truly moving Gaussians move, per object or each on its own
            movable = dynamic
            owner = torch.arange(int(dynamic.sum()), device=dynamic.device)
            if args.shared:
                instance = torch.from_numpy(np.concatenate(parts["instance"]).astype(np.int64))
                owner = torch.unique(instance.to(dynamic.device)[dynamic], return_inverse=True)[1]
        free = torch.zeros(int(owner.max()) + 1, 3, device=dynamic.device, requires_grad=True)
        params = [free]

        def velocities() -> torch.Tensor:
            return free[owner]
    moving_of_movable = dynamic[movable]
    free_velocities = args.tokens or int(params[0].shape[0])     # bases, or velocities to learn
    opt = torch.optim.Adam(params, lr=args.lr)
    if args.near > 0:
        targets = [t for t in range(window.num_frames)
                   if t not in context and min(abs(t - c) for c in context) <= args.near]
    else:
        targets = [t for t in range(0, window.num_frames, k_rate) if t not in context]
    rng = np.random.default_rng(0)
    zero_epe = float(flow[dynamic].norm(dim=1).mean())
    # The camera sees motion across its rays as image motion, but motion along a ray only as a change of
    # scale: split each error into the part along the ray and the part across it.
    ray = torch.from_numpy(np.concatenate(parts["ray"])).float().to(dynamic.device)[dynamic]

    def split_error(err: torch.Tensor) -> tuple[float, float]:
        along = (err * ray).sum(dim=1, keepdim=True)
        return float(along.abs().mean()), float((err - along * ray).norm(dim=1).mean())

    zero_along, zero_across = split_error(-flow[dynamic])
    for step in range(args.steps + 1):
        moving = velocities()                                       # [movable, 3]
        velocity = moving[moving_of_movable]                        # the truly moving ones
        if step % 5 == 0 or step == args.steps:
            epe = float((velocity.detach() - flow[dynamic]).norm(dim=1).mean())
            along, across = split_error(velocity.detach() - flow[dynamic])
            still = moving[~moving_of_movable].detach()
            drift = float(still.norm(dim=1).mean()) if len(still) else 0.0
            print(json.dumps({"step": step, "epe_dynamic": round(epe, 4), "zero_flow_epe": round(zero_epe, 4),
                              "static_speed": round(drift, 4), "tokens": args.tokens, "pool": args.pool,
                              "error_along_ray": round(along, 4), "error_across_ray": round(across, 4),
                              "zero_along_ray": round(zero_along, 4), "zero_across_ray": round(zero_across, 4),
                              "dynamic_gaussians": int(dynamic.sum()), "free_velocities": free_velocities,
                              "blur": args.blur, "reg": args.reg, "depth": args.depth,
                              "rate": k_rate, "near": args.near}), flush=True)
        if step == args.steps:
            break
        motion = torch.zeros(n, 3, device=moving.device).index_put((movable,), moving)
        loss = args.reg * motion.pow(2).sum(dim=1).mean()
        for t in rng.choice(targets, args.targets_per_step, replace=False):
            target = torch.from_numpy(window.images[t, cam] / 255.0).float().to(motion.device)[None]
            rgb, depth = render_target(motion, int(t))                     # [1,H,W,3], [1,H,W]
            loss = loss + F.mse_loss(rgb, target)
            if args.depth > 0:
                lidar = torch.from_numpy(window.depth[t, cam]).float().to(motion.device)
                valid = lidar > 0
                term = ((depth[0] - lidar).abs() / lidar.max())[valid].mean()
                loss = loss + args.depth * term
            if args.blur > 0:
                loss = loss + F.mse_loss(gaussian_blur(rgb, args.blur), gaussian_blur(target, args.blur))
        opt.zero_grad()
        loss.backward()
        opt.step()


if __name__ == "__main__":
    main()
