"""Compiled (numba) loops of the Waymo adapter's lidar path (`waymo_project.frame_pixels_fused`).

`zbuffer_range_image` fuses what the numpy reference does in several passes with [3,N] temporaries
(`waymo_lidar.range_image_to_points`: range image -> points, per-pixel pose transform;
`waymo_project.project_points`: projection, frustum cull, scatter-minimum z-buffer) into one pass over the
pixels of a range image, updating every camera's z-buffer as each point is made; the points are not kept.
`make_points` remakes the few points needed afterwards (the winners, the ground fit's sample),
`collect_winners` lists the z-buffers' hits and winners, `label_velocities_at` reads the winners' velocity
labels straight from a flow range image, and `scatter_hits` writes the winners' fields into the dense planes.

Each kernel performs the same float32 operations in the same order as the numpy code it replaces (kept as
the reference), with no fastmath (so no fused multiply-adds or reassociation) and no threads, so the outputs
are the same bytes (tests/test_waymo_kernels.py). Kernels are compiled on first use (about 3 s) and cached
on disk next to this file (numba's `cache=True`).
"""

from __future__ import annotations

import numpy as np

try:
    import numba
except ImportError as err:  # a hard dependency of the package (pyproject)
    raise ImportError("the Waymo adapter needs numba: install it with `pip install 'numba>=0.60'`") from err

_JIT = {"cache": True, "nogil": True, "error_model": "numpy"}
POSE_NONE, POSE_PER_COLUMN, POSE_PER_PIXEL = 0, 1, 2


@numba.njit(**_JIT)
def zbuffer_range_image(rng, dirs, origin, mats, pose_mode, proj, limits, sizes, near, start, flat, nearest,
                        index) -> int:
    """Points of one range image, numbered after the frame's previous ones and z-buffered into every camera.

    rng [H,W] float32 ranges (<= 0 or NaN: no return; any strides); dirs [3,H*W] and origin [3] float32
    (`LidarGeometry.directions32`, `.origin32`); mats [U,12] float32 pixel-time-to-frame transforms (row-major
    rotation, then translation; `waymo_lidar.pose_matrices`) used per column (pose_mode 1) or per pixel
    (pose_mode 2), ignored for pose_mode 0. proj [V,3,4] float32 K [R|t] of V cameras (rows: u z, v z, z),
    limits [V,2] float32 (width + 0.5, height + 0.5), sizes [V,2] int64 (height, width), near float32.
    The k-th valid pixel (row-major) becomes point start + k, and its flat pixel index goes to
    flat[start + k] (flat int32 [cap]); the points themselves are not kept (`make_points` remakes the few
    needed). nearest [V,P] float32 (inf) and index [V,P] int32 (-1) are the z-buffers (P >= height * width),
    updated in place: a point replaces the winner only if strictly nearer, so on equal depth the lowest
    point index wins, as in `project_points`. Returns the number of points.

    Row by row: the row's points are made (scalar: most pixels of a row are valid or not together) into
    row buffers that stay in the L1 cache, then each camera's projection and in-image test run over the
    row's points without branches (the compiler vectorises that loop), then the few points inside some
    image update the z-buffers.
    """
    h, w = rng.shape
    v_count = proj.shape[0]
    half, zero = np.float32(0.5), np.float32(0.0)
    inside_any = np.empty(w, np.uint8)            # bit v: the point lands in camera v
    depth = np.empty((v_count, w), np.float32)    # its z in camera v
    pixel = np.empty((v_count, w), np.int32)      # its row-major pixel in camera v (where inside)
    x0, x1, x2 = np.empty(w, np.float32), np.empty(w, np.float32), np.empty(w, np.float32)
    d0, d1, d2 = dirs[0], dirs[1], dirs[2]
    o0, o1, o2 = origin[0], origin[1], origin[2]
    n = start
    for row in range(h):
        first = n
        # range_image_to_points: pts = dirs * r, then += origin (two roundings each); with a pose,
        # out_i = m[3i] x, += m[3i+1] y, += m[3i+2] z, += t_i, in that order. One loop per case: the
        # common one (no pose) stays short
        if pose_mode == POSE_NONE:
            for col in range(w):
                r = rng[row, col]
                if not r > 0:
                    continue
                i = row * w + col
                x0[n - first] = d0[i] * r + o0
                x1[n - first] = d1[i] * r + o1
                x2[n - first] = d2[i] * r + o2
                flat[n] = i
                n += 1
        else:
            for col in range(w):
                r = rng[row, col]
                if not r > 0:
                    continue
                i = row * w + col
                x = d0[i] * r + o0
                y = d1[i] * r + o1
                z = d2[i] * r + o2
                u = col if pose_mode == POSE_PER_COLUMN else i
                x0[n - first] = mats[u, 0] * x + mats[u, 1] * y + mats[u, 2] * z + mats[u, 9]
                x1[n - first] = mats[u, 3] * x + mats[u, 4] * y + mats[u, 5] * z + mats[u, 10]
                x2[n - first] = mats[u, 6] * x + mats[u, 7] * y + mats[u, 8] * z + mats[u, 11]
                flat[n] = i
                n += 1
        count = n - first
        inside_any[:count] = 0
        for v in range(v_count):
            a0, a1, a2, a3 = proj[v, 0, 0], proj[v, 0, 1], proj[v, 0, 2], proj[v, 0, 3]
            b0, b1, b2, b3 = proj[v, 1, 0], proj[v, 1, 1], proj[v, 1, 2], proj[v, 1, 3]
            c0, c1, c2, c3 = proj[v, 2, 0], proj[v, 2, 1], proj[v, 2, 2], proj[v, 2, 3]
            lim_u, lim_v = limits[v, 0], limits[v, 1]
            height, width = np.float32(sizes[v, 0]), np.float32(sizes[v, 1])
            bit = np.uint8(1 << v)
            int_width = np.int32(sizes[v, 1])
            depth_v, pixel_v = depth[v], pixel[v]
            for j in range(count):
                x, y, z = x0[j], x1[j], x2[j]
                # project_points: z, u z, v z, its conservative cull, then floor(u z / z), floor(v z / z)
                # in the image; all evaluated (no short cut) so that the loop has no branch
                zc = x * c0 + y * c1 + z * c2 + c3
                uz = x * a0 + y * a1 + z * a2 + a3
                vz = x * b0 + y * b1 + z * b2 + b3
                slack = zc * half
                cu = np.floor(uz / zc)
                cv = np.floor(vz / zc)
                ok = (zc > near) & (uz > -slack) & (uz < zc * lim_u) & (vz > -slack) & (vz < zc * lim_v)
                ok = ok & (cu >= zero) & (cu < width) & (cv >= zero) & (cv < height)
                inside_any[j] |= bit * np.uint8(ok)
                depth_v[j] = zc
                pixel_v[j] = np.int32(cv) * int_width + np.int32(cu) if ok else np.int32(0)
        for j in range(count):
            if inside_any[j] == 0:
                continue
            for v in range(v_count):
                if (inside_any[j] >> v) & 1:
                    pix = pixel[v, j]
                    if depth[v, j] < nearest[v, pix]:
                        nearest[v, pix] = depth[v, j]
                        index[v, pix] = first + j
    return n - start


@numba.njit(**_JIT)
def make_points(rng, dirs, origin, mats, pose_mode, pixels, out) -> None:
    """out[j] = the point of flat pixel pixels[j] of a range image, made as `zbuffer_range_image` makes it
    (same arguments; rng flattened to [H*W], any stride). out [M,3] float32."""
    w = mats.shape[0]  # per column: one transform per column
    for j in range(pixels.shape[0]):
        i = pixels[j]
        r = rng[i]
        x = dirs[0, i] * r + origin[0]
        y = dirs[1, i] * r + origin[1]
        z = dirs[2, i] * r + origin[2]
        if pose_mode != POSE_NONE:
            u = i % w if pose_mode == POSE_PER_COLUMN else i
            px = mats[u, 0] * x + mats[u, 1] * y + mats[u, 2] * z + mats[u, 9]
            py = mats[u, 3] * x + mats[u, 4] * y + mats[u, 5] * z + mats[u, 10]
            pz = mats[u, 6] * x + mats[u, 7] * y + mats[u, 8] * z + mats[u, 11]
            x, y, z = px, py, pz
        out[j, 0], out[j, 1], out[j, 2] = x, y, z


@numba.njit(**_JIT)
def label_velocities_at(flow, pixels, min_speed, out) -> None:
    """out[j] = velocity label of flat pixel pixels[j] of flow [H*W,C>=4] float32 (m/s, vehicle frame), with
    `waymo_lidar.label_velocities`' rules: class -1 (no label) or speed < min_speed (float32) -> 0.
    out [M,3] float32."""
    zero = np.float32(0.0)
    for j in range(pixels.shape[0]):
        p = pixels[j]
        vx, vy, vz = flow[p, 0], flow[p, 1], flow[p, 2]
        speed = np.sqrt(vx * vx + vy * vy + vz * vz)
        if flow[p, 3] == -1 or speed < min_speed:
            vx = vy = vz = zero
        out[j, 0], out[j, 1], out[j, 2] = vx, vy, vz


@numba.njit(**_JIT)
def collect_winners(nearest, index, sizes, n, seen, rank, order):
    """The hits of the z-buffers and their winners, as `waymo_project.frame_pixels` lists them.

    nearest [V,P] float32, index [V,P] int32 (-1 = no point) of V cameras of sizes [V,2] (height, width);
    n points; scratch arrays of at least n + 1 elements (reused from frame to frame): seen uint8, rank
    int32, order int32. Returns, concatenated over the cameras in order: pixel int64 [S] (row-major index
    of each hit pixel, ascending per camera), depth float32 [S], slot int64 [S] (row of the pixel's winner
    among the winners); hits per camera int64 [V]; winners int64 [M] (ascending point indices).
    """
    v_count = index.shape[0]
    hits = np.zeros(v_count, np.int64)
    seen[:n + 1] = 0  # seen[n]: where misses write, so that no loop here needs a branch
    for v in range(v_count):
        count = 0
        for p in range(sizes[v, 0] * sizes[v, 1]):
            k = index[v, p]
            hit = k >= 0
            seen[k if hit else n] = 1
            count += hit
        hits[v] = count
    # rank of each point among the winners, written for every point (winners are a random-looking sixth
    # of the points: branches would mispredict often)
    m = 0
    for k in range(n):
        rank[k] = m
        order[m] = k
        m += seen[k]
    winners = order[:m].astype(np.int64)
    total = hits.sum()
    pixel = np.empty(total + 1, np.int64)
    depth = np.empty(total + 1, np.float32)
    slot = np.empty(total + 1, np.int64)
    rank[n] = 0  # read by misses
    s = 0
    for v in range(v_count):
        for p in range(sizes[v, 0] * sizes[v, 1]):
            k = index[v, p]
            hit = k >= 0
            pixel[s], depth[s], slot[s] = p, nearest[v, p], rank[k if hit else n]
            s += hit
    pixel, depth, slot = pixel[:total], depth[:total], slot[:total]
    return pixel, depth, slot, hits, winners


@numba.njit(**_JIT)
def scatter_hits(pixel, slot, depth, ground, velocity, moving, depth_out, ground_out, flow_out, dynamic_out) -> None:
    """Writes one camera's hits into its dense planes, as numpy's fancy indexing would (tested):
    depth_out[pixel] = depth, ground_out[pixel] = ground[slot], and, when velocity has rows,
    flow_out[pixel] = velocity[slot], dynamic_out[pixel] = moving[slot]. pixel, slot int64 [S]; depth
    float32 [S]; ground, moving bool [M]; velocity float32 [M,3] (or [0,3]: no flow); depth_out float32 [P],
    ground_out, dynamic_out bool [P], flow_out float32 [P,3] (P = the camera's padded plane)."""
    with_flow = velocity.shape[0] > 0
    for j in range(pixel.shape[0]):
        p, k = pixel[j], slot[j]
        depth_out[p] = depth[j]
        ground_out[p] = ground[k]
        if with_flow:
            flow_out[p, 0], flow_out[p, 1], flow_out[p, 2] = velocity[k, 0], velocity[k, 1], velocity[k, 2]
            dynamic_out[p] = moving[k]
