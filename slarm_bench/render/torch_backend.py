"""Pure-torch Gaussian rasterizer with the semantics of gsplat 1.5's "classic" mode (CPU or GPU).

Same math as gsplat's CUDA kernels, step by step:
- project: camera z outside [near, far] culled; covariance R S S^T R^T from the normalised quaternion;
  EWA Jacobian with x/z and y/z clamped to 1.3x the image's half field of view (beyond the principal
  point's side); 2D covariance + eps2d on the diagonal; det <= 0 culled; opacity < 1/255 culled;
  opacity-aware box radius ceil(min(3.33, sqrt(2 ln(255 opacity))) * sqrt(cov_ii)) per axis;
  boxes outside the image culled.
- tiles: a Gaussian goes to tiles [floor((m - r)/ts), ceil((m + r)/ts)) per axis, sorted by camera z
  within a tile (ties by index, as gsplat's stable radix sort).
- pixels: evaluated at centres (j + 0.5, i + 0.5); alpha = min(0.999, o exp(-sigma)), skipped when
  alpha < 1/255 (gsplat also skips sigma < 0, which a positive-definite conic only reaches by
  rounding); front-to-back, a pixel stops before the Gaussian that would bring its
  transmittance to <= 1e-4 (that Gaussian and all after it do not contribute).

Differentiable through torch autograd. Memory is bounded by processing tiles in groups of at most
`budget` (pixel, Gaussian) pairs; with gradients on, each group is recomputed in the backward pass
(activation checkpointing) instead of being stored.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import Tensor
from torch.utils.checkpoint import checkpoint

ALPHA_THRESHOLD = 1.0 / 255.0
MAX_ALPHA = 0.999
T_THRESHOLD = 1e-4
BOX_EXTEND = 3.33


def quat_scale_to_covar(quats: Tensor, scales: Tensor) -> Tensor:
    """quats [...,4] (w,x,y,z, any norm), scales [...,3] -> covariances [...,3,3] = R S S^T R^T."""
    w, x, y, z = F.normalize(quats, dim=-1).unbind(-1)
    rot = torch.stack([
        1 - 2 * (y * y + z * z), 2 * (x * y - w * z), 2 * (x * z + w * y),
        2 * (x * y + w * z), 1 - 2 * (x * x + z * z), 2 * (y * z - w * x),
        2 * (x * z - w * y), 2 * (y * z + w * x), 1 - 2 * (x * x + y * y),
    ], dim=-1).reshape(*quats.shape[:-1], 3, 3)
    m = rot * scales[..., None, :]
    return m @ m.transpose(-1, -2)


def project(means: Tensor, covars: Tensor, opacities: Tensor, viewmat: Tensor, K: Tensor,
            height: int, width: int, near: float, far: float, eps2d: float) -> dict[str, Tensor]:
    """Project N Gaussians into one camera, gsplat-style.

    means [N,3], covars [N,3,3], opacities [N], viewmat [4,4] world-to-camera, K [3,3] ->
    dict with ids [M] (indices of the kept Gaussians), means2d [M,2], conics [M,3] (a, b, c of the
    inverse 2D covariance [[a,b],[b,c]]), depths [M], opacities [M], radii [M,2] (int, no grad).
    """
    rot, trans = viewmat[:3, :3], viewmat[:3, 3]
    mean_c = means @ rot.T + trans
    z = mean_c[:, 2]
    keep = (z >= near) & (z <= far)
    ids = keep.nonzero()[:, 0]
    mean_c, covar = mean_c[ids], covars[ids]
    x, y, z = mean_c.unbind(-1)
    covar_c = rot @ covar @ rot.T

    fx, fy, cx, cy = K[0, 0], K[1, 1], K[0, 2], K[1, 2]
    tan_fovx, tan_fovy = 0.5 * width / fx, 0.5 * height / fy
    lim_x_pos = (width - cx) / fx + 0.3 * tan_fovx
    lim_x_neg = cx / fx + 0.3 * tan_fovx
    lim_y_pos = (height - cy) / fy + 0.3 * tan_fovy
    lim_y_neg = cy / fy + 0.3 * tan_fovy
    rz = 1.0 / z
    rz2 = rz * rz
    # The clamp keeps the linearisation sane for Gaussians far outside the view (as in 3DGS / gsplat).
    tx = z * torch.minimum(lim_x_pos, torch.maximum(-lim_x_neg, x * rz))
    ty = z * torch.minimum(lim_y_pos, torch.maximum(-lim_y_neg, y * rz))
    zero = torch.zeros_like(z)
    jac = torch.stack([fx * rz, zero, -fx * tx * rz2, zero, fy * rz, -fy * ty * rz2], -1).reshape(-1, 2, 3)
    cov2d = jac @ covar_c @ jac.transpose(-1, -2)
    a = cov2d[:, 0, 0] + eps2d
    b = cov2d[:, 0, 1]
    c = cov2d[:, 1, 1] + eps2d
    det = a * c - b * b
    mean2d = torch.stack([fx * x * rz + cx, fy * y * rz + cy], -1)
    opac = opacities[ids]

    with torch.no_grad():
        ok = (det > 0) & (opac >= ALPHA_THRESHOLD)
        extend = torch.clamp(torch.sqrt(2.0 * torch.log(opac.clamp_min(ALPHA_THRESHOLD) / ALPHA_THRESHOLD)),
                             max=BOX_EXTEND)
        rx = torch.ceil(extend * torch.sqrt(a.clamp_min(0)))
        ry = torch.ceil(extend * torch.sqrt(c.clamp_min(0)))
        ok &= (rx > 0) | (ry > 0)
        mx, my = mean2d[:, 0], mean2d[:, 1]
        ok &= ~((mx + rx <= 0) | (mx - rx >= width) | (my + ry <= 0) | (my - ry >= height))
        ok &= (rx > 0) & (ry > 0)  # gsplat's tile intersection skips a zero radius on either axis
        sel = ok.nonzero()[:, 0]
    det = det[sel]
    conics = torch.stack([c[sel] / det, -b[sel] / det, a[sel] / det], -1)
    return {"ids": ids[sel], "means2d": mean2d[sel], "conics": conics, "depths": z[sel],
            "opacities": opac[sel], "radii": torch.stack([rx[sel], ry[sel]], -1).long()}


def _tile_lists(means2d: Tensor, radii: Tensor, depths: Tensor, tile_size: int, tiles_x: int,
                tiles_y: int) -> tuple[Tensor, Tensor, Tensor]:
    """gsplat's tile intersection and per-tile depth sort.

    -> flat_ids [I] (index into the projected Gaussians, grouped by tile, each tile sorted by depth),
    tile_start [T], tile_count [T] with T = tiles_y * tiles_x.
    """
    dev = means2d.device
    m = means2d.detach().double() / tile_size
    r = radii.double() / tile_size
    lo = torch.floor(m - r).clamp(min=0)
    hi = torch.ceil(m + r)
    lo_x, lo_y = lo[:, 0].clamp(max=tiles_x).long(), lo[:, 1].clamp(max=tiles_y).long()
    hi_x, hi_y = hi[:, 0].clamp(0, tiles_x).long(), hi[:, 1].clamp(0, tiles_y).long()
    span_x = (hi_x - lo_x).clamp_min(0)
    counts = span_x * (hi_y - lo_y).clamp_min(0)
    n_tiles = tiles_x * tiles_y
    total = int(counts.sum())
    if total == 0:
        empty = torch.zeros(0, dtype=torch.long, device=dev)
        return empty, torch.zeros(n_tiles, dtype=torch.long, device=dev), \
            torch.zeros(n_tiles, dtype=torch.long, device=dev)
    gid = torch.repeat_interleave(torch.arange(len(counts), device=dev), counts)
    first = torch.cumsum(counts, 0) - counts
    k = torch.arange(total, device=dev) - first[gid]
    sx = span_x[gid]
    tile = (lo_y[gid] + k // sx) * tiles_x + lo_x[gid] + k % sx
    # Rank by depth (stable: equal depths keep index order), then sort by (tile, depth rank).
    order = torch.argsort(depths.detach(), stable=True)
    rank = torch.empty_like(order)
    rank[order] = torch.arange(len(order), device=dev)
    key = tile * len(order) + rank[gid]
    flat = gid[torch.argsort(key)]
    tile_count = torch.bincount(tile, minlength=n_tiles)
    tile_start = torch.cumsum(tile_count, 0) - tile_count
    return flat, tile_start, tile_count


def _quadratic_coefficients(means2d: Tensor, conics: Tensor, opacities: Tensor) -> Tensor:
    """Per Gaussian, the 6 coefficients of -log(alpha before clamping) as a quadratic in the pixel
    position (1, u, v, u^2, v^2, u v), u, v measured from the Gaussian's tile origin: [M,6] given the
    means relative to that origin. Relative coordinates keep the expansion accurate in float32
    (terms stay within a tile's extent)."""
    mx, my = means2d.unbind(-1)
    a, b, c = conics.unbind(-1)
    return torch.stack([0.5 * a * mx * mx + 0.5 * c * my * my + b * mx * my - torch.log(opacities),
                        -a * mx - b * my, -c * my - b * mx, 0.5 * a, 0.5 * c, b], -1)


def _composite_segment(pix: Tensor, coef: Tensor, values: Tensor,
                       trans_in: Tensor) -> tuple[Tensor, Tensor, Tensor]:
    """Blend one depth-ordered segment of Gaussians into a group of tiles.

    pix [G,P,6] pixel monomials, coef [G,6,S] quadratic coefficients (padding: a huge constant, so
    alpha = 0), values [G,S,D], trans_in [G,P] transmittance before the segment (0 for pixels already
    stopped) -> blended values [G,P,D], weight sum [G,P], transmittance after [G,P] (0 where stopped).
    """
    power = pix @ coef                                        # sigma - log(opacity), [G,P,S]
    alpha = torch.clamp_max(torch.exp(-power), MAX_ALPHA)
    keep = alpha >= ALPHA_THRESHOLD
    alpha = torch.where(keep, alpha, torch.zeros_like(alpha))
    trans = trans_in[..., None] * torch.cumprod(1.0 - alpha, dim=-1)   # transmittance after each one
    live = trans > T_THRESHOLD                                # exclusive early stop (gsplat semantics)
    trans_before = torch.cat([trans_in[..., None], trans[..., :-1]], dim=-1)
    weights = torch.where(live, alpha * trans_before, torch.zeros_like(alpha))
    wsum = weights.sum(-1)
    # A pixel that met a Gaussian it could not take is finished: later segments must not add to it.
    stopped = (keep & ~live).any(-1)
    trans_out = torch.where(stopped, torch.zeros_like(wsum), trans_in - wsum)
    return weights @ values, wsum, trans_out


def rasterize_image(means2d: Tensor, conics: Tensor, opacities: Tensor, values: Tensor, radii: Tensor,
                    depths: Tensor, height: int, width: int, tile_size: int = 8, segment: int = 128,
                    budget: int = 1 << 21) -> tuple[Tensor, Tensor]:
    """Composite M projected Gaussians into one image.

    means2d [M,2], conics [M,3], opacities [M], values [M,D] (channels to blend), radii [M,2],
    depths [M] (sort key) -> image [H,W,D], alpha [H,W].
    Tiles are processed in groups, each group's depth-sorted lists in segments of `segment`
    Gaussians, dropping tiles whose pixels have all stopped (the CPU analogue of gsplat's early exit).
    With opacities in [0,1] the tile size does not change the result: every pixel with
    alpha >= 1/255 lies inside the Gaussian's box.
    """
    dev, dtype = means2d.device, values.dtype
    d = values.shape[-1]
    tiles_x, tiles_y = math.ceil(width / tile_size), math.ceil(height / tile_size)
    flat, start, count = _tile_lists(means2d, radii, depths, tile_size, tiles_x, tiles_y)
    ts2 = tile_size * tile_size
    n_tiles = tiles_y * tiles_x
    out = values.new_zeros(n_tiles, ts2, d)
    alpha = values.new_zeros(n_tiles, ts2)
    local = torch.arange(ts2, device=dev)
    lu = (local % tile_size).to(means2d.dtype) + 0.5
    lv = (local // tile_size).to(means2d.dtype) + 0.5
    pix = torch.stack([torch.ones_like(lu), lu, lv, lu * lu, lv * lv, lu * lv], -1)   # [P,6]
    order = torch.argsort(count, descending=True)
    order = order[count[order] > 0]
    grad = torch.is_grad_enabled() and any(t.requires_grad for t in (means2d, conics, opacities, values))
    # Each intersection's coefficients relative to its own tile's origin; padding slot at the end.
    isect_tile = torch.repeat_interleave(torch.arange(n_tiles, device=dev), count)
    origin = torch.stack([isect_tile % tiles_x, isect_tile // tiles_x], -1).to(means2d.dtype) * tile_size
    coef = _quadratic_coefficients(means2d[flat] - origin, conics[flat], opacities[flat])
    pad = torch.zeros(1, 6, dtype=coef.dtype, device=dev)
    pad[0, 0] = 1e4  # exp(-1e4) = 0: padding never contributes
    coef = torch.cat([coef, pad])
    vals = torch.cat([values[flat], values.new_zeros(1, d)])
    n_isect = len(flat)
    group = max(1, budget // (ts2 * segment))
    ar = torch.arange(segment, device=dev)
    for g0 in range(0, len(order), group):
        tiles = order[g0:g0 + group]
        trans = values.new_ones(len(tiles), ts2)
        img = values.new_zeros(len(tiles), ts2, d)
        acc = values.new_zeros(len(tiles), ts2)
        rows = torch.arange(len(tiles), device=dev)
        n_max = int(count[tiles[0]])
        for k0 in range(0, n_max, segment):
            # Tiles with Gaussians left in this segment and a pixel still accumulating.
            active = (count[tiles] > k0) & (trans.detach() > T_THRESHOLD).any(-1)
            sel = rows[active]
            if len(sel) == 0:
                break
            t_sel = tiles[sel]
            pos = start[t_sel][:, None] + k0 + ar[None, :]
            pos = torch.where(k0 + ar[None, :] < count[t_sel][:, None], pos, torch.full_like(pos, n_isect))
            args = (pix.expand(len(sel), -1, -1), coef[pos].transpose(1, 2), vals[pos], trans[sel])
            if grad:
                seg_img, seg_w, seg_t = checkpoint(_composite_segment, *args, use_reentrant=False)
            else:
                seg_img, seg_w, seg_t = _composite_segment(*args)
            img = img.index_add(0, sel, seg_img)
            acc = acc.index_add(0, sel, seg_w)
            trans = trans.index_copy(0, sel, seg_t)
        out = out.index_copy(0, tiles, img)
        alpha = alpha.index_copy(0, tiles, acc)
    # [tiles_y, tiles_x, ts, ts, D] -> [H, W, D]
    out = out.reshape(tiles_y, tiles_x, tile_size, tile_size, d).permute(0, 2, 1, 3, 4)
    out = out.reshape(tiles_y * tile_size, tiles_x * tile_size, d)[:height, :width]
    alpha = alpha.reshape(tiles_y, tiles_x, tile_size, tile_size).permute(0, 2, 1, 3)
    alpha = alpha.reshape(tiles_y * tile_size, tiles_x * tile_size)[:height, :width]
    return out, alpha.to(dtype)


def rasterize(means: Tensor, quats: Tensor, scales: Tensor, opacities: Tensor, values: Tensor,
              viewmats: Tensor, Ks: Tensor, height: int, width: int, *, near: float, far: float,
              eps2d: float = 0.3, tile_size: int = 8) -> tuple[Tensor, Tensor, Tensor]:
    """Backend entry point shared with gsplat_backend.rasterize.

    means [B,N,3], quats [B,N,4], scales [B,N,3], opacities [B,N], values [B,N,D], viewmats [B,V,4,4]
    (world-to-camera), Ks [B,V,3,3] -> values [B,V,H,W,D], expected depth [B,V,H,W] (sum w z / alpha,
    gsplat "ED"), alpha [B,V,H,W].
    """
    b, v = viewmats.shape[:2]
    images, depths, alphas = [], [], []
    for bi in range(b):
        covars = quat_scale_to_covar(quats[bi], scales[bi])
        for vi in range(v):
            p = project(means[bi], covars, opacities[bi], viewmats[bi, vi], Ks[bi, vi], height, width,
                        near, far, eps2d)
            chans = torch.cat([values[bi][p["ids"]], p["depths"][:, None].to(values.dtype)], -1)
            img, acc = rasterize_image(p["means2d"], p["conics"], p["opacities"], chans, p["radii"],
                                       p["depths"], height, width, tile_size)
            images.append(img[..., :-1])
            depths.append(img[..., -1] / acc.clamp_min(1e-10))
            alphas.append(acc)
    shape = (b, v, height, width)
    return (torch.stack(images).reshape(*shape, values.shape[-1]), torch.stack(depths).reshape(shape),
            torch.stack(alphas).reshape(shape))
