"""Camera conventions, rays, Plucker coordinates, projection, pose chains and box transforms.

Conventions (REFERENCE.md section 1):
- Cameras are OpenCV: x right, y down, z forward. `cam_to_world` is a 4x4 OpenCV-camera-to-world matrix.
- Vehicle/"FLU" frames (Waymo cameras and vehicles, the Clip world frame): x forward, y left, z up.
- Pixel (u, v) = (column, row); the centre of pixel (i, j) is at (j + 0.5, i + 0.5).
- Depth is z-depth (distance along the camera's optical axis), not ray length.

Every function here takes numpy arrays unless its name ends in `_torch`; the torch versions exist for
model code that must stay on the GPU and differentiable, and are tested against the numpy ones.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np

if TYPE_CHECKING:
    import torch

    from slarm_bench.clip import Boxes

# Rotation taking OpenCV camera coordinates to FLU camera coordinates (x_flu = z_cv, y_flu = -x_cv, ...).
OPENCV_TO_FLU = np.array([[0.0, 0.0, 1.0], [-1.0, 0.0, 0.0], [0.0, -1.0, 0.0]])
OPENCV_TO_FLU_4x4 = np.eye(4)
OPENCV_TO_FLU_4x4[:3, :3] = OPENCV_TO_FLU


# ---------------------------------------------------------------------------------------------------------
# Frames and poses
def flu_cam_to_opencv(flu_to_world: np.ndarray) -> np.ndarray:
    """[...,4,4] pose of an FLU camera (Waymo's camera axes) -> OpenCV camera-to-world [...,4,4]."""
    return flu_to_world @ OPENCV_TO_FLU_4x4


def opencv_cam_to_flu(cam_to_world: np.ndarray) -> np.ndarray:
    """Inverse of `flu_cam_to_opencv`: the pose of the camera with x forward, y left, z up axes."""
    return cam_to_world @ OPENCV_TO_FLU_4x4.T


def make_pose(rotation: np.ndarray, translation: np.ndarray) -> np.ndarray:
    """[...,3,3] and [...,3] -> [...,4,4] rigid transform."""
    rotation = np.asarray(rotation, dtype=np.float64)
    out = np.zeros((*rotation.shape[:-2], 4, 4))
    out[..., :3, :3] = rotation
    out[..., :3, 3] = translation
    out[..., 3, 3] = 1.0
    return out


def invert_pose(pose: np.ndarray) -> np.ndarray:
    """Closed-form inverse of rigid transforms [...,4,4] (exact for orthonormal rotations)."""
    rot = pose[..., :3, :3]
    rot_t = np.swapaxes(rot, -1, -2)
    return make_pose(rot_t, -(rot_t @ pose[..., :3, 3:4])[..., 0]).astype(pose.dtype)


def transform_poses(transform: np.ndarray, poses: np.ndarray) -> np.ndarray:
    """Left-multiply poses [...,4,4] by a 4x4 transform, computed in float64, returned in poses' dtype."""
    return (transform.astype(np.float64) @ poses.astype(np.float64)).astype(poses.dtype)


def transform_points(transform: np.ndarray, points: np.ndarray) -> np.ndarray:
    """Apply a rigid transform [4,4] (or [...,4,4], broadcast against the points) to points [...,3]."""
    t = np.asarray(transform, dtype=np.float64)
    out = np.einsum("...ij,...j->...i", t[..., :3, :3], np.asarray(points, np.float64)) + t[..., :3, 3]
    return out.astype(points.dtype) if np.issubdtype(points.dtype, np.floating) else out


def rotate_vectors(rotation: np.ndarray, vectors: np.ndarray) -> np.ndarray:
    """Rotate vectors [...,3] (velocities, directions) by a 3x3 rotation; keeps the input dtype."""
    return (vectors.astype(np.float64) @ rotation.astype(np.float64).T).astype(vectors.dtype)


def rotation_z(yaw: np.ndarray | float) -> np.ndarray:
    """Rotation(s) about +z by `yaw` radians: [...,3,3]."""
    yaw = np.asarray(yaw, dtype=np.float64)
    c, s = np.cos(yaw), np.sin(yaw)
    z, o = np.zeros_like(yaw), np.ones_like(yaw)
    return np.stack([np.stack([c, -s, z], -1), np.stack([s, c, z], -1), np.stack([z, z, o], -1)], -2)


def look_at_opencv(eye: np.ndarray, target: np.ndarray, up: np.ndarray = (0.0, 0.0, 1.0)) -> np.ndarray:
    """OpenCV camera-to-world of a camera at `eye` looking at `target` with world `up` pointing up."""
    eye, target, up = (np.asarray(a, dtype=np.float64) for a in (eye, target, up))
    z = target - eye
    z /= np.linalg.norm(z)
    x = np.cross(z, up)
    x /= np.linalg.norm(x)
    y = np.cross(z, x)
    return make_pose(np.stack([x, y, z], axis=1), eye)


def quaternion_to_matrix(quat: np.ndarray) -> np.ndarray:
    """Quaternions (w, x, y, z) [...,4], normalised here, -> rotation matrices [...,3,3]."""
    q = np.asarray(quat, dtype=np.float64)
    q = q / np.linalg.norm(q, axis=-1, keepdims=True)
    w, x, y, z = np.moveaxis(q, -1, 0)
    return np.stack([
        np.stack([1 - 2 * (y * y + z * z), 2 * (x * y - w * z), 2 * (x * z + w * y)], -1),
        np.stack([2 * (x * y + w * z), 1 - 2 * (x * x + z * z), 2 * (y * z - w * x)], -1),
        np.stack([2 * (x * z - w * y), 2 * (y * z + w * x), 1 - 2 * (x * x + y * y)], -1),
    ], -2)


def matrix_to_quaternion(rot: np.ndarray) -> np.ndarray:
    """Rotation matrices [...,3,3] -> unit quaternions (w, x, y, z) with w >= 0.

    Vectorised; each matrix takes the branch of its largest diagonal term (trace first) so the square root
    is of a number >= 1 and the division stays well conditioned."""
    r = np.asarray(rot, dtype=np.float64)
    a = r.reshape(-1, 3, 3)
    m00, m11, m22 = a[:, 0, 0], a[:, 1, 1], a[:, 2, 2]
    tr = m00 + m11 + m22
    branch = np.where(tr > 0, 0, np.where((m00 > m11) & (m00 > m22), 1, np.where(m11 > m22, 2, 3)))
    radicand = np.choose(branch, [tr + 1.0, 1.0 + m00 - m11 - m22, 1.0 + m11 - m00 - m22,
                                  1.0 + m22 - m00 - m11])
    s = np.sqrt(np.maximum(radicand, 1e-300)) * 2
    d21, d02, d10 = a[:, 2, 1] - a[:, 1, 2], a[:, 0, 2] - a[:, 2, 0], a[:, 1, 0] - a[:, 0, 1]
    s01, s02, s12 = a[:, 0, 1] + a[:, 1, 0], a[:, 0, 2] + a[:, 2, 0], a[:, 1, 2] + a[:, 2, 1]
    q = 0.25 * s
    out = np.stack([
        np.choose(branch, [q, d21 / s, d02 / s, d10 / s]),
        np.choose(branch, [d21 / s, q, s01 / s, s02 / s]),
        np.choose(branch, [d02 / s, s01 / s, q, s12 / s]),
        np.choose(branch, [d10 / s, s02 / s, s12 / s, q])], -1)
    out *= np.where(out[:, :1] < 0, -1.0, 1.0)
    return out.reshape(*r.shape[:-2], 4)


def interpolate_pose(pose_a: np.ndarray, pose_b: np.ndarray, alpha: float) -> np.ndarray:
    """Rigid pose between a (alpha=0) and b (alpha=1): linear translation, slerp rotation."""
    qa, qb = matrix_to_quaternion(pose_a[:3, :3]), matrix_to_quaternion(pose_b[:3, :3])
    dot = float(np.dot(qa, qb))
    if dot < 0:
        qb, dot = -qb, -dot
    if dot > 0.9995:
        q = qa + alpha * (qb - qa)
    else:
        theta = np.arccos(dot)
        q = (np.sin((1 - alpha) * theta) * qa + np.sin(alpha * theta) * qb) / np.sin(theta)
    trans = (1 - alpha) * pose_a[:3, 3] + alpha * pose_b[:3, 3]
    return make_pose(quaternion_to_matrix(q), trans)


# ---------------------------------------------------------------------------------------------------------
# Intrinsics, rays, projection
def intrinsics_matrix(fx: float, fy: float, cx: float, cy: float) -> np.ndarray:
    return np.array([[fx, 0.0, cx], [0.0, fy, cy], [0.0, 0.0, 1.0]])


def intrinsics_from_fov(width: int, height: int, horizontal_fov_deg: float) -> np.ndarray:
    """Square-pixel pinhole intrinsics with the principal point at the image centre."""
    fx = 0.5 * width / np.tan(np.deg2rad(horizontal_fov_deg) / 2)
    return intrinsics_matrix(fx, fx, width / 2, height / 2)


def scale_intrinsics(intrinsics: np.ndarray, scale_x: float, scale_y: float) -> np.ndarray:
    """Intrinsics for an image resized by (scale_x, scale_y) (new size / old size), pixel-corner origin."""
    scale = np.diag([scale_x, scale_y, 1.0])
    return (scale @ intrinsics.astype(np.float64)).astype(intrinsics.dtype)


def pixel_centres(height: int, width: int) -> np.ndarray:
    """[H,W,2] (u, v) coordinates of pixel centres."""
    v, u = np.meshgrid(np.arange(height) + 0.5, np.arange(width) + 0.5, indexing="ij")
    return np.stack([u, v], axis=-1)


def camera_rays(intrinsics: np.ndarray, cam_to_world: np.ndarray, height: int, width: int,
                uv: np.ndarray | None = None) -> tuple[np.ndarray, np.ndarray]:
    """World-frame ray origins and directions of pixel centres (or of given `uv` [...,2]).

    intrinsics [...,3,3], cam_to_world [...,4,4] -> origins [...,H,W,3], directions [...,H,W,3].
    Directions are NOT normalised: their camera-frame z is 1, so `origin + depth * direction` is the point
    at z-depth `depth`.
    """
    if uv is None:
        uv = pixel_centres(height, width)
    k = intrinsics.astype(np.float64)
    fx, fy = k[..., 0, 0], k[..., 1, 1]
    cx, cy = k[..., 0, 2], k[..., 1, 2]
    extra = (None,) * (uv.ndim - 1)
    x = (uv[..., 0] - cx[(..., *extra)]) / fx[(..., *extra)]
    y = (uv[..., 1] - cy[(..., *extra)]) / fy[(..., *extra)]
    dirs_cam = np.stack([x, y, np.ones_like(x)], axis=-1)
    rot = cam_to_world[..., :3, :3].astype(np.float64)
    dirs = np.einsum("...ij,...hwj->...hwi", rot, dirs_cam) if uv.ndim == 3 else \
        np.einsum("...ij,...nj->...ni", rot, dirs_cam)
    origins = np.broadcast_to(cam_to_world[(..., *extra, slice(0, 3), 3)].astype(np.float64), dirs.shape)
    return origins, dirs


def plucker(origins: np.ndarray, directions: np.ndarray) -> np.ndarray:
    """Plucker coordinates [..., 6] = (o x d_hat, d_hat) with d_hat the unit direction."""
    d_hat = directions / np.linalg.norm(directions, axis=-1, keepdims=True)
    return np.concatenate([np.cross(origins, d_hat), d_hat], axis=-1)


def camera_rays_torch(intrinsics: torch.Tensor, cam_to_world: torch.Tensor,
                      uv: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Torch version of `camera_rays` for uv [P,2] shared by all cameras.

    intrinsics [...,3,3], cam_to_world [...,4,4], uv [P,2] -> origins, directions [...,P,3] (camera z = 1).
    """
    import torch

    fx = intrinsics[..., 0, 0, None]
    fy = intrinsics[..., 1, 1, None]
    cx = intrinsics[..., 0, 2, None]
    cy = intrinsics[..., 1, 2, None]
    x = (uv[:, 0] - cx) / fx
    y = (uv[:, 1] - cy) / fy
    dirs_cam = torch.stack([x, y, torch.ones_like(x)], dim=-1)
    dirs = torch.einsum("...ij,...pj->...pi", cam_to_world[..., :3, :3], dirs_cam)
    origins = cam_to_world[..., None, :3, 3].expand_as(dirs)
    return origins, dirs


def plucker_torch(origins: torch.Tensor, directions: torch.Tensor) -> torch.Tensor:
    import torch

    d_hat = directions / directions.norm(dim=-1, keepdim=True)
    return torch.cat([torch.linalg.cross(origins, d_hat, dim=-1), d_hat], dim=-1)


def project_points(points_world: np.ndarray, cam_to_world: np.ndarray,
                   intrinsics: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Project world points [N,3] into one camera: -> uv [N,2] (pixel coords), z-depth [N]."""
    world_to_cam = invert_pose(cam_to_world.astype(np.float64))
    pc = transform_points(world_to_cam, points_world.astype(np.float64))
    z = pc[:, 2]
    with np.errstate(divide="ignore", invalid="ignore"):
        uv = (pc[:, :2] / z[:, None]) * np.diag(intrinsics)[:2].astype(np.float64) \
            + intrinsics[:2, 2].astype(np.float64)
    return uv, z


def unproject_depth(depth: np.ndarray, intrinsics: np.ndarray, cam_to_world: np.ndarray) -> np.ndarray:
    """z-depth image [H,W] -> world points [H,W,3] at pixel centres (invalid where depth == 0)."""
    h, w = depth.shape
    origins, dirs = camera_rays(intrinsics, cam_to_world, h, w)
    return origins + depth[..., None].astype(np.float64) * dirs


def z_buffer(uv: np.ndarray, z: np.ndarray, height: int, width: int,
             near: float = 1e-3) -> tuple[np.ndarray, np.ndarray]:
    """Nearest-point-wins rasterisation of projected points.

    uv [N,2], z [N] -> depth [H,W] float32 (0 = no point), index [H,W] int64 of the winning point (-1 = none).
    Points behind `near` or outside the image are dropped; a point falls in pixel floor(u), floor(v).
    """
    depth = np.zeros((height, width), np.float32)
    index = np.full((height, width), -1, np.int64)
    with np.errstate(invalid="ignore"):
        col = np.floor(uv[:, 0])
        row = np.floor(uv[:, 1])
        ok = (z > near) & (col >= 0) & (col < width) & (row >= 0) & (row < height)
    ids = np.nonzero(ok)[0]
    if ids.size == 0:
        return depth, index
    flat = row[ids].astype(np.int64) * width + col[ids].astype(np.int64)
    # Sort by pixel, then by depth: the first entry of each pixel run is the nearest point.
    order = np.lexsort((z[ids], flat))
    flat_sorted = flat[order]
    first = np.ones(order.size, dtype=bool)
    first[1:] = flat_sorted[1:] != flat_sorted[:-1]
    winners = ids[order[first]]
    pix = flat_sorted[first]
    depth.reshape(-1)[pix] = z[winners]
    index.reshape(-1)[pix] = winners
    return depth, index


# ---------------------------------------------------------------------------------------------------------
# Boxes
def box_corners(centre: np.ndarray, size: np.ndarray, yaw: np.ndarray) -> np.ndarray:
    """Corners [N,8,3] of boxes given centre [N,3], size (length, width, height) [N,3], yaw [N]."""
    signs = np.array([[sx, sy, sz] for sx in (-1, 1) for sy in (-1, 1) for sz in (-1, 1)], np.float64)
    local = 0.5 * signs[None] * np.asarray(size, np.float64)[:, None, :]
    return np.einsum("nij,nkj->nki", rotation_z(yaw), local) + np.asarray(centre, np.float64)[:, None, :]


def points_in_box(points: np.ndarray, centre: np.ndarray, size: np.ndarray, yaw: float,
                  margin: float = 0.0) -> np.ndarray:
    """Boolean [N]: which points [N,3] lie inside one yawed box (plus `margin` metres on each side)."""
    local = (np.asarray(points, np.float64) - centre) @ rotation_z(yaw)
    half = 0.5 * np.asarray(size, np.float64) + margin
    return np.all(np.abs(local) <= half, axis=-1)


def transform_boxes(transform: np.ndarray, boxes: Boxes) -> Boxes:
    """Boxes in a new world frame: centres moved, yaw re-measured about the new z, vectors rotated."""
    from slarm_bench.clip import Boxes

    rot = transform[:3, :3].astype(np.float64)
    heading = np.stack([np.cos(boxes.yaw), np.sin(boxes.yaw), np.zeros_like(boxes.yaw)], -1)
    new_heading = heading.astype(np.float64) @ rot.T
    return Boxes(
        frame=boxes.frame.copy(), track_id=boxes.track_id.copy(), label=boxes.label.copy(),
        centre=transform_points(transform, boxes.centre.astype(np.float64)).astype(np.float32),
        size=boxes.size.copy(),
        yaw=np.arctan2(new_heading[:, 1], new_heading[:, 0]).astype(np.float32),
        velocity=rotate_vectors(rot, boxes.velocity), acceleration=rotate_vectors(rot, boxes.acceleration),
        num_points=boxes.num_points.copy(),
    )


def box_rectangle_mask(corners_world: np.ndarray, cam_to_world: np.ndarray, intrinsics: np.ndarray,
                       height: int, width: int) -> np.ndarray:
    """The Waymo-protocol 2D mask: filled bounding rectangles of the projected 8 corners of each box.

    A box contributes only if all 8 corners are in front of the camera (REFERENCE.md section 1).
    corners_world [N,8,3] -> bool [H,W].
    """
    mask = np.zeros((height, width), bool)
    for corners in corners_world:
        uv, z = project_points(corners, cam_to_world, intrinsics)
        if not (z > 0).all():
            continue
        u0, v0 = np.floor(uv.min(axis=0)).astype(int)
        u1, v1 = np.ceil(uv.max(axis=0)).astype(int)
        u0, v0, u1, v1 = max(u0, 0), max(v0, 0), min(u1, width), min(v1, height)
        if u0 < u1 and v0 < v1:
            mask[v0:v1, u0:u1] = True
    return mask


def rigid_box_flow(points: np.ndarray, box_to_world_t0: np.ndarray, box_to_world_t1: np.ndarray,
                   size: np.ndarray, dt: float, margin: float | np.ndarray = 0.0) -> np.ndarray:
    """Scene flow from matched rigid boxes with full 6-DoF poses: world velocity [N,3] (m/s) of points [N,3].

    box_to_world_t0/t1 [M,4,4] are the poses of the same M boxes at t0 and t0 + dt; size [M,3] is length,
    width, height along the box's x, y, z. A point inside box m at t0 (in its own axes, with `margin`
    metres added on each side: a scalar or per-axis [3]) moves with T1 T0^-1; all other points get zero
    velocity. Where boxes overlap, the first wins. Used directly for datasets whose boxes carry pitch and
    roll in the world frame (Argoverse 2 boxes are yaw-only in the tilted ego frame).
    """
    pts = np.asarray(points, np.float64)
    vel = np.zeros(pts.shape, np.float64)
    if pts.shape[0] == 0 or len(box_to_world_t0) == 0:
        return vel.astype(np.float32)
    if dt == 0:
        raise ValueError("box flow needs a non-zero dt")
    pose0 = np.asarray(box_to_world_t0, np.float64)
    pose1 = np.asarray(box_to_world_t1, np.float64)
    half = 0.5 * np.asarray(size, np.float64) + np.asarray(margin, np.float64)
    assigned = np.zeros(pts.shape[0], bool)
    for m in range(pose0.shape[0]):
        local = (pts - pose0[m, :3, 3]) @ pose0[m, :3, :3]
        inside = np.all(np.abs(local) <= half[m], axis=-1) & ~assigned
        if not inside.any():
            continue
        moved = transform_points(pose1[m] @ invert_pose(pose0[m]), pts[inside])
        vel[inside] = (moved - pts[inside]) / dt
        assigned |= inside
    return vel.astype(np.float32)


def box_track_flow(points: np.ndarray, boxes_t0: Boxes, boxes_t1: Boxes, dt: float,
                   margin: float | np.ndarray = 0.0) -> np.ndarray:
    """Scene flow from tracked boxes: world-frame velocity [N,3] (m/s) of points [N,3] seen at time t0.

    A point inside a box of `boxes_t0` (plus `margin` m on each side, a scalar or per-axis [3]) whose
    track_id also appears in `boxes_t1` moves with that box's rigid motion P1 P0^-1 over `dt` seconds
    (P = yaw-about-z rotation and centre); every other point has zero world velocity (it moves only with
    the ego motion, which the world frame removes). Both box sets are in the world frame of the points; a
    negative `dt` (boxes_t1 earlier than boxes_t0) gives the backward difference, for a sequence's last
    frame. Boxes of t0 without a match contribute nothing: their points keep zero velocity. Where boxes
    overlap, the first box in `boxes_t0` wins. See `rigid_box_flow` for boxes with pitch and roll.
    """
    pts = np.asarray(points, np.float64)
    if len(boxes_t0) == 0 or len(boxes_t1) == 0 or pts.shape[0] == 0:
        return np.zeros(pts.shape, np.float32)
    if dt == 0:
        raise ValueError("box_track_flow needs a non-zero dt")
    later = {int(t): i for i, t in enumerate(boxes_t1.track_id)}
    pairs = [(i, later[int(t)]) for i, t in enumerate(boxes_t0.track_id) if int(t) in later]
    if not pairs:
        return np.zeros(pts.shape, np.float32)
    i0, i1 = (np.array(x) for x in zip(*pairs))
    pose0 = make_pose(rotation_z(boxes_t0.yaw[i0].astype(np.float64)), boxes_t0.centre[i0])
    pose1 = make_pose(rotation_z(boxes_t1.yaw[i1].astype(np.float64)), boxes_t1.centre[i1])
    return rigid_box_flow(pts, pose0, pose1, boxes_t0.size[i0], dt, margin)
