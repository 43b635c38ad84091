"""The procedural world of the synthetic dataset: road layout, static scenery, agents, ego rig, lighting.

Everything is drawn from one numpy Generator seeded by the sequence seed, in a fixed order, so a seed fully
determines the scene. World frame: the ego vehicle at t = 0, x forward along the road, y left, z up, z = 0
on the road. The ego drives straight along +x in the rightmost lane (y = 0).
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from slarm_bench.data.synthetic_motion import BUMP_INTEGRAL, HeadingProfile, SpeedProfile, Trajectory
from slarm_bench.data.synthetic_raycast import BOX, CYLINDER, SPHERE, Primitives

# Class indices into clip.SLARM_CLASSES.
OTHERS, VEHICLE, BICYCLE, MOTORCYCLE, PEOPLE, BUILDINGS, ROAD, SIDEWALK, SKY = range(9)
# Materials (textures) of primitives; the ground has its own (road / sidewalk) chosen per pixel.
(M_FACADE, M_CAR_BODY, M_CAR_CABIN, M_TRUCK, M_CLOTHES, M_HEAD, M_POLE, M_TRUNK, M_CANOPY, M_BIKE) = range(10)

CAMERA_NAMES = ("FRONT_LEFT", "FRONT", "FRONT_RIGHT")
CAMERA_YAW_DEG = (45.0, 0.0, -45.0)
CAMERA_HFOV_DEG = 50.0
# Mount positions in the ego frame (x forward, y left, z up), metres.
CAMERA_MOUNTS = ((1.45, 0.25, 1.95), (1.55, 0.0, 1.95), (1.45, -0.25, 1.95))
LIDAR_MOUNT = (1.2, 0.0, 2.15)
MIN_MOVING_SPEED = 1.0


@dataclass
class RoadLayout:
    """Cross-section of the road along x (metres, world y). Traffic lanes span [y_right, y_left]; parking
    strips of `parking` width lie outside them; sidewalks (and paved ground) beyond the road edges."""

    lane_width: float
    n_same: int
    n_opp: int
    parking: float
    sidewalk: float
    cross_x: float | None
    cross_half: float

    @property
    def y_right(self) -> float:
        return -0.5 * self.lane_width

    @property
    def y_centre(self) -> float:
        return self.y_right + self.n_same * self.lane_width

    @property
    def y_left(self) -> float:
        return self.y_right + (self.n_same + self.n_opp) * self.lane_width

    @property
    def road_edges(self) -> tuple[float, float]:
        return self.y_right - self.parking, self.y_left + self.parking

    def same_lanes(self) -> list[float]:
        return [self.y_right + (i + 0.5) * self.lane_width for i in range(self.n_same)]

    def opp_lanes(self) -> list[float]:
        return [self.y_centre + (i + 0.5) * self.lane_width for i in range(self.n_opp)]

    def is_road(self, x: np.ndarray, y: np.ndarray) -> np.ndarray:
        lo, hi = self.road_edges
        road = (y >= lo) & (y <= hi)
        if self.cross_x is not None:
            road |= np.abs(x - self.cross_x) <= self.cross_half
        return road


@dataclass
class Agent:
    """A rigid agent. `parts` rows are (kind, offset3 in the body frame with z above the ground, yaw offset,
    half3, material, colour3, param); the annotation box is `size` (length, width, height) on the ground."""

    track_id: int
    label: int
    size: tuple[float, float, float]
    trajectory: Trajectory
    parts: list[tuple] = field(default_factory=list)


@dataclass
class Scene:
    seed: int
    duration: float
    static: bool
    road: RoadLayout
    ego: Trajectory
    scenery: Primitives
    agents: list[Agent]
    sun: np.ndarray
    sky_zenith: np.ndarray
    sky_horizon: np.ndarray
    cloud_phase: np.ndarray
    camera_gain: np.ndarray  # [V,3] exposure x white balance
    asphalt: float

    def agent_states(self, times: np.ndarray) -> list[dict[str, np.ndarray]]:
        """Per agent, `Trajectory.state` at all `times` at once (one vectorised quadrature per agent)."""
        return [agent.trajectory.state(np.asarray(times, np.float64)) for agent in self.agents]

    def agent_primitives(
        self, t: float, states: list[dict[str, np.ndarray]] | None = None, i: int = 0
    ) -> tuple[Primitives, dict[str, np.ndarray]]:
        """World-space primitives of all agents at time t, and their kinematics (arrays over agents).

        `states` (from `agent_states`) with position `i` in its time axis replaces the per-call evaluation.
        """
        n = len(self.agents)
        pos = np.zeros((n, 3))
        yaw = np.zeros(n)
        vel = np.zeros((n, 3))
        acc = np.zeros((n, 3))
        rate = np.zeros(n)
        speed = np.zeros(n)
        rows = []
        for a, agent in enumerate(self.agents):
            if states is None:
                st = agent.trajectory.state(np.array(t))
            else:
                st = {key: val[i] for key, val in states[a].items()}
            pos[a], yaw[a], vel[a], acc[a] = st["position"], st["yaw"], st["velocity"], st["acceleration"]
            rate[a], speed[a] = st["yaw_rate"], st["speed"]
            c, s = np.cos(yaw[a]), np.sin(yaw[a])
            for kind, off, dyaw, half, mat, colour, param in agent.parts:
                centre = (pos[a, 0] + c * off[0] - s * off[1], pos[a, 1] + s * off[0] + c * off[1], off[2])
                rows.append((kind, centre, yaw[a] + dyaw, half, mat, colour, param, agent.label, a))
        kin = {
            "position": pos,
            "yaw": yaw,
            "velocity": vel,
            "acceleration": acc,
            "yaw_rate": rate,
            "speed": speed,
        }
        return Primitives.from_rows(rows), kin


def make_scene(seed: int, duration: float, num_cameras: int = 3) -> Scene:
    """Draw the whole scene of one sequence from `seed` (see module docstring)."""
    rng = np.random.default_rng(np.random.SeedSequence([int(seed), 0x5EED]))
    road = RoadLayout(
        lane_width=float(rng.uniform(3.2, 3.8)),
        n_same=int(rng.integers(1, 3)),
        n_opp=int(rng.integers(1, 3)),
        parking=float(rng.uniform(2.2, 2.8)),
        sidewalk=float(rng.uniform(3.0, 5.0)),
        cross_x=float(rng.uniform(35, 90)) if rng.random() < 0.5 else None,
        cross_half=float(rng.uniform(4.0, 6.0)),
    )
    ego = _ego_trajectory(rng, duration)
    ego_end = float(ego.position(np.array(duration))[0])
    scenery = _scenery(rng, road, x_max=ego_end + 220.0)
    static = bool(rng.random() < 0.1)
    agents = [] if static else _agents(rng, road, ego, duration)
    sun_el, sun_az = rng.uniform(0.5, 1.1), rng.uniform(-np.pi, np.pi)
    sun = np.array([np.cos(sun_el) * np.cos(sun_az), np.cos(sun_el) * np.sin(sun_az), np.sin(sun_el)])
    gain = rng.uniform(0.92, 1.08, (num_cameras, 1)) * rng.uniform(0.95, 1.05, (num_cameras, 3))
    return Scene(
        seed=int(seed),
        duration=duration,
        static=static,
        road=road,
        ego=ego,
        scenery=scenery,
        agents=agents,
        sun=sun,
        sky_zenith=np.array([0.25, 0.45, 0.85]) + rng.uniform(-0.05, 0.05, 3),
        sky_horizon=np.array([0.75, 0.82, 0.92]) + rng.uniform(-0.04, 0.04, 3),
        cloud_phase=rng.uniform(0, 2 * np.pi, 4),
        camera_gain=gain,
        asphalt=float(rng.uniform(0.26, 0.36)),
    )


def _ego_trajectory(rng: np.random.Generator, duration: float) -> Trajectory:
    v0 = float(rng.uniform(5.0, 15.0))
    speed = SpeedProfile(v0=v0)
    if rng.random() < 0.5:  # accelerate or brake once, staying within 5..15 m/s
        dv = float(rng.uniform(5.0 - v0, 15.0 - v0))
        speed = SpeedProfile(
            v0=v0, dv=dv, t_step=float(rng.uniform(0, duration * 0.6)), d_step=max(1.0, 1.875 * abs(dv) / 2.5)
        )
    return Trajectory(start=(0.0, 0.0), z=0.0, speed=speed, heading=HeadingProfile(psi0=0.0))


def _palette(rng: np.random.Generator) -> tuple[float, float, float]:
    base = np.array(
        [
            [0.75, 0.7, 0.62],
            [0.62, 0.38, 0.3],
            [0.55, 0.56, 0.6],
            [0.8, 0.78, 0.72],
            [0.45, 0.4, 0.35],
            [0.7, 0.6, 0.45],
        ]
    )[rng.integers(0, 6)]
    return tuple(np.clip(base + rng.uniform(-0.06, 0.06, 3), 0, 1))


def _scenery(rng: np.random.Generator, road: RoadLayout, x_max: float) -> Primitives:
    rows = []
    lo, hi = road.road_edges
    for side in (-1, 1):
        curb = hi if side > 0 else lo
        front = curb + side * (road.sidewalk + rng.uniform(0.0, 2.5))
        x = -40.0 + rng.uniform(0, 10)
        while x < x_max:
            length = rng.uniform(8, 30)
            depth, height = rng.uniform(8, 20), rng.uniform(5, 30)
            x_lo, x_hi = x, x + length
            cross = road.cross_x
            if (
                cross is not None
                and x_hi > cross - road.cross_half - 2
                and x_lo < cross + road.cross_half + 2
            ):
                x = cross + road.cross_half + 2 + rng.uniform(0, 3)
                continue
            setback = rng.uniform(0, 1.5)
            yc = front + side * (setback + depth / 2)
            # param packs the facade pattern: 100 * style (0 plain, 1 bricks, 2 panels) + 10 * window spacing.
            param = float(100 * rng.integers(0, 3) + np.round(rng.uniform(2.4, 4.2) * 10))
            rows.append(
                (
                    BOX,
                    (x + length / 2, yc, height / 2),
                    0.0,
                    (length / 2, depth / 2, height / 2),
                    M_FACADE,
                    _palette(rng),
                    param,
                    BUILDINGS,
                    -1,
                )
            )
            x = x_hi + rng.uniform(0, 6)
        # Street furniture along the curb: poles and trees.
        x = -30.0 + rng.uniform(0, 10)
        while x < x_max:
            y = curb + side * rng.uniform(0.6, 1.2)
            if road.cross_x is not None and abs(x - road.cross_x) < road.cross_half + 1:
                x += 5
                continue
            if rng.random() < 0.4:
                h = rng.uniform(6, 9)
                rows.append(
                    (
                        CYLINDER,
                        (x, y, h / 2),
                        0.0,
                        (0.12, 0.12, h / 2),
                        M_POLE,
                        (0.5, 0.5, 0.52),
                        0.0,
                        OTHERS,
                        -1,
                    )
                )
            else:
                h, r = rng.uniform(2.0, 3.2), rng.uniform(1.4, 2.4)
                rows.append(
                    (
                        CYLINDER,
                        (x, y, h / 2),
                        0.0,
                        (0.18, 0.18, h / 2),
                        M_TRUNK,
                        (0.4, 0.28, 0.18),
                        0.0,
                        OTHERS,
                        -1,
                    )
                )
                green = (rng.uniform(0.15, 0.3), rng.uniform(0.35, 0.55), rng.uniform(0.12, 0.22))
                rows.append(
                    (
                        SPHERE,
                        (x, y, h + 0.7 * r),
                        0.0,
                        (r, r, r),
                        M_CANOPY,
                        green,
                        rng.uniform(0, 6.28),
                        OTHERS,
                        -1,
                    )
                )
            x += rng.uniform(8, 22)
    return Primitives.from_rows(rows)


def _vehicle_parts(rng: np.random.Generator, truck: bool) -> tuple[tuple[float, float, float], list[tuple]]:
    colour = tuple(
        np.clip(
            rng.choice(
                [
                    [0.8, 0.8, 0.8],
                    [0.12, 0.12, 0.14],
                    [0.6, 0.1, 0.1],
                    [0.15, 0.25, 0.55],
                    [0.55, 0.57, 0.6],
                    [0.9, 0.9, 0.88],
                    [0.2, 0.4, 0.25],
                ]
            )
            + rng.uniform(-0.04, 0.04, 3),
            0,
            1,
        )
    )
    if truck:
        size = (rng.uniform(7, 12), rng.uniform(2.4, 2.6), rng.uniform(2.8, 3.4))
        parts = [
            (
                BOX,
                (0.0, 0.0, size[2] / 2),
                0.0,
                (size[0] / 2, size[1] / 2, size[2] / 2 - 0.02),
                M_TRUCK,
                colour,
                0.0,
            )
        ]
        return size, parts
    size = (rng.uniform(4.0, 4.9), rng.uniform(1.75, 2.0), rng.uniform(1.4, 1.75))
    body_h = 0.6 * size[2]
    parts = [
        (
            BOX,
            (0.0, 0.0, body_h / 2 + 0.02),
            0.0,
            (size[0] / 2, size[1] / 2, body_h / 2 - 0.01),
            M_CAR_BODY,
            colour,
            0.0,
        ),
        (
            BOX,
            (-0.06 * size[0], 0.0, (body_h + size[2]) / 2),
            0.0,
            (0.28 * size[0], size[1] / 2 - 0.06, (size[2] - body_h) / 2 - 0.005),
            M_CAR_CABIN,
            colour,
            0.0,
        ),
    ]
    return size, parts


def _person_parts(rng: np.random.Generator, rider: str | None) -> tuple[tuple[float, float, float], list]:
    shirt = tuple(rng.uniform(0.1, 0.9, 3))
    if rider is None:
        body_h, r = rng.uniform(1.4, 1.6), rng.uniform(0.2, 0.26)
        parts = [
            (CYLINDER, (0.0, 0.0, body_h / 2), 0.0, (r, r, body_h / 2), M_CLOTHES, shirt, 0.0),
            (SPHERE, (0.0, 0.0, body_h + 0.12), 0.0, (0.115,) * 3, M_HEAD, (0.8, 0.62, 0.5), 0.0),
        ]
        return (2 * r, 2 * r, body_h + 0.24), parts
    length, width, frame_h = (1.75, 0.2, 0.95) if rider == "bicycle" else (2.1, 0.6, 1.0)
    frame = (0.12, 0.12, 0.13) if rider == "bicycle" else (0.15, 0.15, 0.17)
    parts = [
        (BOX, (0.0, 0.0, frame_h / 2 + 0.02), 0.0, (length / 2, width / 2, frame_h / 2), M_BIKE, frame, 0.0),
        (CYLINDER, (-0.1, 0.0, frame_h + 0.35), 0.0, (0.2, 0.2, 0.35), M_CLOTHES, shirt, 1.0),
        (SPHERE, (-0.05, 0.0, frame_h + 0.82), 0.0, (0.13,) * 3, M_HEAD, (0.2, 0.2, 0.22), 0.0),
    ]
    return (length, max(width, 0.4) + 0.02, frame_h + 0.97), parts


def _discs(size: tuple[float, float, float], pos: np.ndarray, yaw: np.ndarray) -> tuple[np.ndarray, float]:
    """Three discs covering a footprint: centres [T,3,2] and a radius, for conservative collision tests."""
    offs = np.array([-1.0, 0.0, 1.0]) * max(size[0] / 2 - size[1] / 2, 0.0)
    cx = pos[:, None, 0] + offs[None] * np.cos(yaw)[:, None]
    cy = pos[:, None, 1] + offs[None] * np.sin(yaw)[:, None]
    return np.stack([cx, cy], -1), size[1] / 2 + 0.35


def _collides(a: tuple[np.ndarray, float], b: tuple[np.ndarray, float]) -> bool:
    d = a[0][:, :, None, :] - b[0][:, None, :, :]
    return bool(((d**2).sum(-1) < (a[1] + b[1]) ** 2).any())


def _agents(rng: np.random.Generator, road: RoadLayout, ego: Trajectory, duration: float) -> list[Agent]:
    times = np.arange(-0.2, duration + 0.45, 0.1)
    ego_pos = ego.position(times) + np.array([1.2, 0.0, 0.0])
    placed = [_discs((4.8, 2.0, 1.6), ego_pos, np.zeros(times.size))]
    agents: list[Agent] = []
    lo, hi = road.road_edges
    plans = (
        ["car"] * int(rng.integers(5, 13))
        + ["parked"] * int(rng.integers(2, 9))
        + ["pedestrian"] * int(rng.integers(3, 11))
        + ["cyclist"] * int(rng.integers(0, 4))
        + ["turner"] * (int(rng.integers(1, 3)) if road.cross_x is not None else 0)
    )
    for plan in plans:
        for _attempt in range(6):
            made = _draw_agent(rng, plan, road, lo, hi, duration)
            if made is None:
                continue
            label, size, traj, parts = made
            st = traj.state(times)
            discs = _discs(size, st["position"], st["yaw"])
            if any(_collides(discs, other) for other in placed):
                continue
            placed.append(discs)
            agents.append(
                Agent(track_id=len(agents) + 1, label=label, size=size, trajectory=traj, parts=parts)
            )
            break
    return agents


def _speed(rng: np.random.Generator, v0: float, duration: float, max_acc: float) -> SpeedProfile:
    """A non-uniform speed profile around v0: a smooth speed change and/or an oscillation, never < 0."""
    mode = rng.integers(0, 4)
    dv = t_step = a = 0.0
    d_step, w, phi = 1.0, 1.0, 0.0
    if mode in (1, 3):
        dv = float(rng.uniform(-v0, 6.0))
        t_step = float(rng.uniform(-0.5, duration * 0.7))
        d_step = float(max(1.875 * abs(dv) / max_acc, 0.8) * rng.uniform(1.0, 1.6))
    if mode in (2, 3):
        w = float(rng.uniform(0.6, 2.5))
        a = float(rng.uniform(0.5, max_acc))
        phi = float(rng.uniform(0, 2 * np.pi))
    profile = SpeedProfile(v0=v0, dv=dv, t_step=t_step, d_step=d_step, a=a, w=w, phi=phi)
    grid = np.linspace(-0.5, duration + 0.5, 200)
    while profile.a > 0 and profile.speed(grid).min() < 0:
        profile.a *= 0.5
        if profile.a < 0.05:
            profile.a = 0.0
    return profile


def _draw_agent(rng: np.random.Generator, plan: str, road: RoadLayout, lo: float, hi: float, duration: float):
    if plan in ("car", "parked", "turner"):
        truck = plan != "parked" and rng.random() < 0.15
        size, parts = _vehicle_parts(rng, truck)
        label = VEHICLE
        if plan == "parked":
            y = lo + road.parking / 2 if rng.random() < 0.5 else hi - road.parking / 2
            psi = 0.0 if y < road.y_centre else np.pi
            speed = SpeedProfile(v0=0.0)
            heading = HeadingProfile(psi0=psi)
            if rng.random() < 0.3:  # pulls out into traffic: accelerates from rest and changes lane
                dv = float(rng.uniform(3, 7))
                t0 = float(rng.uniform(0, duration * 0.5))
                speed = SpeedProfile(v0=0.0, dv=dv, t_step=t0, d_step=1.875 * dv / rng.uniform(2, 3.5))
                # Towards the road centre is to the left of travel on both sides.
                dy = road.parking / 2 + road.lane_width / 2
                heading = _lane_change(psi, dy, 0.5 * dv, t0 + 0.4 * speed.d_step, 3.0)
            x = float(rng.uniform(-20, 110))
            return label, size, Trajectory((x, y), 0.0, speed, heading), parts
        if plan == "turner":
            same = rng.random() < 0.5
            v0 = float(rng.uniform(3.5, 6.0))
            d_turn = 0.75 * v0 + float(rng.uniform(0.3, 1.2))
            t_turn = float(rng.uniform(0.0, max(duration - d_turn, 0.5)))
            psi0 = 0.0 if same else np.pi
            # Turn right (towards the near side of the cross street) or left, then shift to hit its lanes.
            turn = float(rng.choice([-1.0, 1.0])) * np.pi / 2
            heading = HeadingProfile(psi0=psi0, turn=turn, t_turn=t_turn, d_turn=d_turn)
            speed = SpeedProfile(
                v0=v0,
                a=float(rng.uniform(0.3, 1.2)),
                w=float(rng.uniform(0.6, 1.5)),
                phi=float(rng.uniform(0, 2 * np.pi)),
            )
            speed.a = min(speed.a, 0.45 * v0 * speed.w)
            # A right turn starts from the outer lane of its direction, a left turn from the inner one.
            if same:
                lane_y = road.same_lanes()[0 if turn < 0 else -1]
            else:
                lane_y = road.opp_lanes()[-1 if turn < 0 else 0]
            probe = Trajectory((0.0, 0.0), 0.0, speed, heading)
            end = probe.position(np.array(t_turn + d_turn))
            # Right-hand traffic: moving towards +y keeps to +x of the cross street's centre line.
            lane_x = road.cross_x + np.sign(np.sin(psi0 + turn)) * road.lane_width / 2
            return label, size, Trajectory((lane_x - end[0], lane_y), 0.0, speed, heading), parts
        same = rng.random() < 0.55
        lanes = road.same_lanes() if same else road.opp_lanes()
        k = int(rng.integers(0, len(lanes)))
        psi = 0.0 if same else np.pi
        v0 = float(rng.uniform(5, 15))
        x = float(rng.uniform(-40, 130))
        if same and k == 0:  # the ego lane: only a lead vehicle well ahead
            x = float(rng.uniform(25, 60))
            v0 = float(rng.uniform(10, 15))
        speed = _speed(rng, v0, duration, 4.0)
        heading = HeadingProfile(psi0=psi)
        if len(lanes) > 1 and rng.random() < 0.35 and not (same and k == 1 and x < 30):
            target = 1 - k
            dy = (lanes[target] - lanes[k]) * (1 if same else -1)
            heading = _lane_change(
                psi, dy, v0, float(rng.uniform(0, duration * 0.6)), float(rng.uniform(2.5, 4.5))
            )
        return label, size, Trajectory((x, lanes[k]), 0.0, speed, heading), parts
    if plan == "pedestrian":
        size, parts = _person_parts(rng, None)
        side = rng.choice([-1.0, 1.0])
        curb = hi if side > 0 else lo
        x = float(rng.uniform(-10, 80))
        standing = rng.random() < 0.2
        v0 = 0.0 if standing else float(rng.uniform(0.8, 1.8))
        speed = SpeedProfile(v0=v0)
        if not standing:
            speed = SpeedProfile(
                v0=v0,
                a=float(rng.uniform(0.3, 1.2)) * min(v0, 1.0),
                w=float(rng.uniform(2.5, 6.0)),
                phi=float(rng.uniform(0, 2 * np.pi)),
            )
            speed.a = min(speed.a, 0.45 * v0 * speed.w)
        if rng.random() < 0.2 and not standing:  # crossing the road
            y = curb + side * 0.5
            return PEOPLE, size, Trajectory((x, y), 0.0, speed, HeadingProfile(psi0=-side * np.pi / 2)), parts
        y = curb + side * float(rng.uniform(1.5, road.sidewalk - 0.5))
        psi = float(rng.choice([0.0, np.pi]))
        return PEOPLE, size, Trajectory((x, y), 0.0, speed, HeadingProfile(psi0=psi)), parts
    # cyclist (bicycle) or motorcyclist, riding in the parking strip or the traffic lanes
    motor = rng.random() < 0.3
    size, parts = _person_parts(rng, "motorcycle" if motor else "bicycle")
    same = rng.random() < 0.6
    y = (lo + 0.6 * road.parking) if same else (hi - 0.6 * road.parking)
    v0 = float(rng.uniform(6, 12)) if motor else float(rng.uniform(3, 7))
    speed = _speed(rng, v0, duration, 3.0)
    return (
        (MOTORCYCLE if motor else BICYCLE),
        size,
        Trajectory((float(rng.uniform(-20, 90)), y), 0.0, speed, HeadingProfile(psi0=0.0 if same else np.pi)),
        parts,
    )


def _lane_change(psi: float, dy: float, speed: float, t0: float, dur: float) -> HeadingProfile:
    """A heading sway whose lateral displacement is about dy (left of travel, m) at `speed` (m/s)."""
    sway = float(np.clip(dy / (max(speed, 1.0) * dur * BUMP_INTEGRAL), -0.35, 0.35))
    return HeadingProfile(psi0=psi, sway=sway, t_sway=t0, d_sway=dur)
