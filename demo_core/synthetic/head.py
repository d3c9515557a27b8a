"""Procedural 2.5-D talking-head renderer (pure torch, batched over frames, any resolution).

Geometry: orthographic camera looking down -z (image x right, y up, both -1..1). The head is an
ellipsoid; nose and hair volumes are smaller ellipsoids rigidly attached to it. Each pixel's ray is
intersected with them analytically, and the hit point is mapped back to head-local coordinates
``(u, v)`` where eyes, brows, lids, mouth and hairline are painted as soft signed-distance masks.
So every feature sits on the 3-D surface and foreshortens / occludes correctly under yaw, pitch and
roll, while the neck and shoulders only follow ``tx, ty, scale``. All masks use a one-pixel
smoothstep ramp, so pixel values are continuous (Lipschitz) in every parameter, and a parameter only
changes the pixels of its own features (mouth params never touch the eye region and vice versa).

Factors and units: :mod:`demo_core.synthetic.params`. Appearance: :mod:`.identity`.
"""

from __future__ import annotations

import math

import torch

from .identity import Identity
from .params import FrameParams

__all__ = ["render", "HeadRenderer", "HEAD_RADII", "HEAD_CENTER_Y"]

HEAD_RADII = (0.45, 0.57, 0.43)  # head ellipsoid radii at face_w = face_h = 1 (image half-size units)
HEAD_CENTER_Y = 0.06  # head centre height in the body frame
ZOOM = 1.15  # body-frame units -> image half-size units at scale = 1
_GAZE_X, _GAZE_Y = 0.042, 0.022  # iris travel at gaze = ±1 (local units, scaled by eye size)


def _ramp(d: torch.Tensor, k) -> torch.Tensor:
    """Soft coverage of a signed distance ``d`` (> 0 inside), ``k`` pixels per unit: 1-px smoothstep."""
    t = (d * k + 0.5).clamp(0.0, 1.0)
    return t * t * (3.0 - 2.0 * t)


def _paint(img: torch.Tensor, col, m: torch.Tensor) -> None:
    """In place: img (N,3,H,W) <- lerp(img, col, m); col is (3,) or (N,3,H,W); m (N,H,W)."""
    if not isinstance(col, torch.Tensor) or col.ndim == 1:
        col = torch.as_tensor(col, dtype=img.dtype, device=img.device).view(1, 3, 1, 1)
    img.lerp_(col, m.unsqueeze(1))  # exact at m = 0 and m = 1, so hidden layers never leak


def _rotation(yaw: torch.Tensor, pitch: torch.Tensor, roll: torch.Tensor) -> torch.Tensor:
    """Local->camera rotation R = Rz(roll) Rx(pitch) Ry(yaw), angles in degrees; (N,3,3)."""
    y, p, r = (torch.deg2rad(a) for a in (yaw, pitch, roll))
    one, zero = torch.ones_like(y), torch.zeros_like(y)
    cy, sy, cp, sp, cr, sr = y.cos(), y.sin(), p.cos(), p.sin(), r.cos(), r.sin()
    ry = torch.stack([cy, zero, sy, zero, one, zero, -sy, zero, cy], -1).view(-1, 3, 3)
    rx = torch.stack([one, zero, zero, zero, cp, sp, zero, -sp, cp], -1).view(-1, 3, 3)
    rz = torch.stack([cr, -sr, zero, sr, cr, zero, zero, zero, one], -1).view(-1, 3, 3)
    return rz @ rx @ ry


def _cast(q0, d, center, radii):
    """Front intersection of rays q0 + z d with an ellipsoid (all in head-local coordinates).

    Args:
        q0: three (N,H,W) tensors, ray points on the camera plane. d: (N,3) ray direction.
        center, radii: 3 floats each.

    Returns:
        (m, z, g): unit-sphere hit coordinates (3 tensors), ray parameter of the front hit, and the
        silhouette function g (< 0 inside, ~2 * relative distance outside the outline).
    """
    o = [(q0[k] - center[k]) / radii[k] for k in range(3)]
    e = [d[:, k].view(-1, 1, 1) / radii[k] for k in range(3)]
    a = e[0] * e[0] + e[1] * e[1] + e[2] * e[2]
    b = o[0] * e[0] + o[1] * e[1] + o[2] * e[2]
    c = o[0] * o[0] + o[1] * o[1] + o[2] * o[2] - 1.0
    disc = b * b - a * c
    z = (disc.clamp(min=0.0).sqrt() - b) / a
    m = [o[k] + z * e[k] for k in range(3)]
    return m, z, -disc / a


def _lambert(m, radii, l_loc, ambient=0.55, diffuse=0.55):
    """Shading factor (N,H,W) from unit-sphere coords ``m`` and the local light (N,3)."""
    n = [m[k] / radii[k] for k in range(3)]
    inv = torch.rsqrt(n[0] * n[0] + n[1] * n[1] + n[2] * n[2] + 1e-12)
    dot = (n[0] * l_loc[:, 0, None, None] + n[1] * l_loc[:, 1, None, None] + n[2] * l_loc[:, 2, None, None]) * inv
    return ambient + diffuse * dot.clamp(min=0.0), n, inv


class HeadRenderer:
    """Renders one identity at one resolution; reuse it for many frame batches.

    Args:
        identity: appearance (:class:`~.identity.Identity`).
        size: output height and width in pixels (any size >= 8; 64 and 128 are the defaults used).
        device: torch device for the output.
        chunk_pixels: frames are rendered in chunks of about this many pixels to bound memory.
    """

    def __init__(self, identity: Identity, size: int = 64, device: torch.device | str = "cpu",
                 chunk_pixels: int = 1 << 19):
        self.identity, self.size, self.device = identity, int(size), torch.device(device)
        self.chunk = max(1, chunk_pixels // (self.size * self.size))
        s = self.size
        coords = (torch.arange(s, device=self.device, dtype=torch.float32) + 0.5) * (2.0 / s) - 1.0
        self.xs, self.ys = coords.view(1, 1, s), coords.flip(0).view(1, s, 1)
        self.background = self._background()
        idt = identity
        self.radii = (HEAD_RADII[0] * idt.face_w, HEAD_RADII[1] * idt.face_h, HEAD_RADII[2] * idt.face_w)
        self.col = {k: torch.tensor(getattr(idt, k), device=self.device).view(1, 3, 1, 1)
                    for k in ("skin", "hair", "brow", "iris", "lip", "shirt")}

    def _background(self) -> torch.Tensor:
        idt, x, y = self.identity, self.xs, self.ys
        ca, sa = math.cos(idt.bg_angle), math.sin(idt.bg_angle)
        t = (x * ca + y * sa) * (0.5 / 1.42) + 0.5
        c0 = torch.tensor(idt.bg0, device=self.device).view(3, 1, 1)
        c1 = torch.tensor(idt.bg1, device=self.device).view(3, 1, 1)
        bg = c0 + (c1 - c0) * t
        f = idt.bg_freq * math.pi
        if idt.bg_pattern == 1:
            pat = torch.sin(f * (x * sa - y * ca))
        elif idt.bg_pattern == 2:
            pat = (torch.sin(f * x) * torch.sin(f * y)).clamp(min=0.0) * 2.0 - 0.5
        elif idt.bg_pattern == 3:
            pat = torch.sin(f * y + 1.5 * torch.sin(0.7 * f * x))
        else:
            pat = torch.zeros_like(x * y)
        vignette = 1.0 - 0.12 * (x * x + y * y)
        return ((bg + idt.bg_amp * pat) * vignette).clamp(0.0, 1.0)

    @torch.no_grad()
    def render(self, params: FrameParams) -> torch.Tensor:
        """Render frames; returns (N,3,size,size) float32 in [0,1] on ``device``."""
        params = params.to(self.device)
        outs = [self._render_chunk(params[i:i + self.chunk]) for i in range(0, len(params), self.chunk)]
        if not outs:
            return torch.empty(0, 3, self.size, self.size, device=self.device)
        return torch.cat(outs)

    def _render_chunk(self, p: FrameParams) -> torch.Tensor:
        idt, col, (ax, ay, az) = self.identity, self.col, self.radii
        n, s = len(p), self.size
        sc = p.scale.view(-1, 1, 1) * ZOOM
        kpx = sc * (s / 2.0)  # pixels per local unit (before foreshortening)
        img = self.background.unsqueeze(0).repeat(n, 1, 1, 1)
        bx = (self.xs - p.tx.view(-1, 1, 1)) / sc  # body-frame coordinates, (N,1,W) and (N,H,1)
        by = (self.ys - p.ty.view(-1, 1, 1)) / sc

        rot = _rotation(p.yaw, p.pitch, p.roll)
        d = rot[:, 2, :]  # camera +z axis in local coordinates (ray direction)
        yy = by - HEAD_CENTER_Y
        q0 = [rot[:, 0, k].view(-1, 1, 1) * bx + rot[:, 1, k].view(-1, 1, 1) * yy for k in range(3)]
        light = torch.tensor(idt.light, device=self.device)
        l_loc = (rot * light.view(1, 3, 1)).sum(1)  # R^T l, (N,3)
        v = idt.hair_volume
        if idt.hair_length > 0.35:  # long hair hangs behind the neck, down behind the shoulders
            rl = (ax * 1.2 * v, ay * (0.95 + 0.6 * idt.hair_length), az * 0.85)
            m, _, g = _cast(q0, d, (0.0, -0.2 * ay, -0.3 * az), rl)
            shade, _, _ = _lambert(m, rl, l_loc)
            _paint(img, col["hair"] * shade.unsqueeze(1) * 0.8, _ramp(-g * 0.5 * math.sqrt(rl[0] * rl[1]), kpx))

        # Shoulders and neck: follow translation / zoom only.
        sh = (1.0 - ((bx / 0.95) ** 2 + ((by + 1.0) / 0.38) ** 2).sqrt()) * 0.38
        shirt = col["shirt"] * (0.7 + 0.9 * (by + 0.9).clamp(0, 1)).clamp(max=1.0).unsqueeze(1)
        _paint(img, shirt, _ramp(sh, kpx))
        neck_top = HEAD_CENTER_Y - 0.25 * idt.face_h
        neck = torch.minimum(0.19 * idt.face_w - bx.abs(), neck_top - by)
        neck_shade = 0.7 + 0.18 * ((neck_top - by) / 0.35).clamp(0, 1)
        _paint(img, col["skin"] * neck_shade.unsqueeze(1), _ramp(neck, kpx))

        # Hair volume behind the head (rotates with it).
        rh = (ax * 1.05 * v, ay * 0.97 * v, az * 1.1 * v)
        m, _, g = _cast(q0, d, (0.0, 0.1 * ay, -0.1 * az), rh)
        shade, _, _ = _lambert(m, rh, l_loc)
        tex = 1.0 + 0.04 * torch.sin(22.0 * m[0] + 4.0 * m[1]) * torch.sin(9.0 * m[1] - 3.0 * m[0] + 1.0)
        _paint(img, col["hair"] * (shade * tex).unsqueeze(1), _ramp(-g * 0.5 * math.sqrt(rh[0] * rh[1]), kpx))

        if idt.ears:
            self._ears(img, p, rot, bx, by, kpx)

        # Head ellipsoid with painted features.
        m, zh, g = _cast(q0, d, (0.0, 0.0, 0.0), self.radii)
        shade, nrm, inv = _lambert(m, self.radii, l_loc)
        nz = (nrm[0] * d[:, 0, None, None] + nrm[1] * d[:, 1, None, None] + nrm[2] * d[:, 2, None, None]) * inv
        k = kpx * nz.clamp(0.3, 1.0)  # feature AA: pixels per local unit, with foreshortening
        u, vv = m[0] * ax, m[1] * ay
        alb = col["skin"].expand(n, 3, s, s).clone()
        self._face(alb, p, u, vv, m, k)
        _paint(img, alb * shade.unsqueeze(1), _ramp(-g * 0.5 * math.sqrt(ax * ay), kpx))

        # Nose: a small ellipsoid half buried in the face (parallax under rotation).
        ns = idt.nose_size
        rn = (0.055 * ns * idt.face_w, 0.12 * ns * idt.face_h, 0.09 * ns)
        ny = -0.07 * idt.face_h
        zc = az * math.sqrt(max(0.0, 1.0 - (ny / ay) ** 2)) - 0.3 * rn[2]
        mn, zn, gn = _cast(q0, d, (0.0, ny - 0.3 * rn[1], zc), rn)
        nshade, _, _ = _lambert(mn, rn, l_loc, ambient=0.45, diffuse=0.65)
        nost = _ramp(0.28 - ((mn[0].abs() - 0.45) ** 2 + ((mn[1] + 0.62) * 1.7) ** 2).sqrt(), k * rn[0])
        ncol = col["skin"] * torch.tensor([1.02, 0.96, 0.95], device=self.device).view(1, 3, 1, 1)
        ncol = ncol * (1.0 - 0.6 * nost).unsqueeze(1)
        cov = _ramp(-gn * 0.5 * math.sqrt(rn[0] * rn[1]), kpx) * _ramp(zn - zh, kpx)
        _paint(img, ncol * nshade.unsqueeze(1), cov)
        return img.clamp_(0.0, 1.0)

    def _ears(self, img, p, rot, bx, by, kpx) -> None:
        idt, (ax, ay, az) = self.identity, self.radii
        for side in (-1.0, 1.0):
            q = torch.tensor([side * ax * 0.97, -0.03 * ay, -0.05 * az], device=self.device)
            c = rot @ q  # camera-frame offsets (N,3)
            ex = bx - c[:, 0].view(-1, 1, 1)
            ey = by - HEAD_CENTER_Y - c[:, 1].view(-1, 1, 1)
            rx, ry = 0.055 * idt.face_w, 0.1 * idt.face_h
            outer = (1.0 - ((ex / rx) ** 2 + (ey / ry) ** 2).sqrt()) * rx
            inner = (1.0 - (((ex + side * 0.012) / (0.55 * rx)) ** 2 + (ey / (0.65 * ry)) ** 2).sqrt()) * rx * 0.55
            ear = self.col["skin"] * (0.88 - 0.25 * _ramp(inner, kpx)).unsqueeze(1)
            _paint(img, ear, _ramp(outer, kpx))

    def _face(self, alb, p, u, v, m, k) -> None:
        """Paint eyes, brows, mouth, cheeks and hairline into the head albedo (N,3,H,W)."""
        idt, col = self.identity, self.col
        fw, fh, es = idt.face_w, idt.face_h, idt.eye_size
        view = lambda t: t.view(-1, 1, 1)  # noqa: E731
        au = u.abs()
        sgn = torch.sign(u)

        # Cheeks and eye sockets (static shading).
        cheek = ((au - 0.25 * fw) ** 2 + (v + 0.16 * fh) ** 2) * (1.0 / 0.012)
        _paint(alb, (0.85, 0.35, 0.35), idt.blush * (1.0 - cheek).clamp(min=0.0))
        ex0, ey0, ew, eh = 0.165 * fw * idt.eye_spacing, 0.05 * fh, 0.085 * es, 0.05 * es
        xe, ye = au - ex0, v - ey0
        sock = (1.0 - (xe / (1.5 * ew)) ** 2 - ((ye - 0.2 * eh) / (2.4 * eh)) ** 2).clamp(min=0.0)
        alb.mul_((1.0 - 0.12 * sock).unsqueeze(1))

        # Brows.
        bw, bt = 0.1 * es, 0.02 * idt.brow_thick
        xb, yb = (au - ex0 - 0.01) / bw, v - (ey0 + 0.105 * es)
        yc = 0.018 * (1.0 - xb * xb) - 0.008 * xb
        brow = _ramp(torch.minimum(bt * (1.0 - 0.45 * xb * xb) - (yb - yc).abs(), bw * (1.0 - xb.abs())), k)
        _paint(alb, col["brow"], brow)

        # Eyes: aperture between the lids; blink moves the upper lid down to the lower one.
        sx = xe / ew
        env = (1.0 - sx * sx).clamp(min=0.0)
        blink = view(p.blink).clamp(0.0, 1.0)
        y_lo = -0.72 * eh * env
        y_open = eh * env
        y_up = y_open + (y_lo - y_open) * blink
        side = _ramp(ew - xe.abs(), k)
        lid = _ramp(torch.minimum(y_open + 0.004 - ye, ye - y_up), k) * side
        _paint(alb, col["skin"] * 0.86, lid)
        ap = _ramp(torch.minimum(y_up - ye, ye - y_lo), k) * ((y_up - y_lo) * k).clamp(0.0, 1.0) * side
        _paint(alb, (0.95, 0.94, 0.91), ap * (1.0 - 0.35 * sx * sx))
        ri = 0.042 * es
        ix, iy = view(p.gaze_x) * (_GAZE_X * es) * sgn, view(p.gaze_y) * (_GAZE_Y * es)
        dist = ((xe - ix) ** 2 + (ye - iy) ** 2).sqrt()
        iris_col = col["iris"] * (1.25 - 0.6 * (dist / ri)).clamp(0.5, 1.25).unsqueeze(1)
        _paint(alb, iris_col, _ramp(ri - dist, k) * ap)
        _paint(alb, (0.03, 0.03, 0.04), _ramp(0.42 * ri - dist, k) * ap)
        hl = ((xe - ix + 0.35 * ri * sgn) ** 2 + (ye - iy - 0.35 * ri) ** 2).sqrt()
        _paint(alb, (1.0, 1.0, 1.0), 0.85 * _ramp(0.22 * ri - hl, k) * ap)
        lash = _ramp(0.011 * es * (1.0 + 0.6 * sx.clamp(min=0.0)) - (ye - y_up).abs(), k)
        lash = lash * _ramp(ew * 1.08 - xe.abs(), k)
        _paint(alb, (0.08, 0.06, 0.06), lash)
        _paint(alb, col["skin"] * 0.7, 0.5 * _ramp(0.004 - (ye - y_lo + 0.004).abs(), k) * side)

        # Mouth: lip contours around an inner opening; corners lift when spread.
        mo = view(p.mouth_open).clamp(0.0, 1.0)
        mwid = view(p.mouth_width).clamp(-1.0, 1.0)
        mrd = view(p.mouth_round).clamp(0.0, 1.0)
        w = 0.145 * idt.mouth_w * fw * (1.0 + 0.25 * mwid) * (1.0 - 0.3 * mrd)
        oh = 0.16 * fh * mo
        xm, ym = u / w, v + 0.27 * fh
        env = (1.0 - xm * xm).clamp(min=0.0)
        sq = env.sqrt()
        envp = env + (sq - env) * mrd
        lift = 0.014 * mwid * xm * xm
        y_ui = lift + 0.25 * oh * envp
        y_li = lift - 0.75 * oh * envp
        bow = (1.0 - (xm / 0.3) ** 2).clamp(min=0.0)
        y_uo = y_ui + 0.03 * (1.0 + 0.4 * mrd) * sq * (1.0 - 0.3 * bow * bow)
        y_lo = y_li - 0.038 * (1.0 + 0.4 * mrd) * sq
        corner = _ramp(w * (1.0 - xm.abs()), k)
        lips = _ramp(torch.minimum(y_uo - ym, ym - y_lo), k) * ((y_uo - y_lo) * k).clamp(0.0, 1.0) * corner
        lip_col = col["lip"] * (1.05 - 0.2 * _ramp(ym - 0.5 * (y_ui + y_li), k)).unsqueeze(1)
        _paint(alb, lip_col, lips)
        inner = _ramp(torch.minimum(y_ui - ym, ym - y_li), k) * ((y_ui - y_li) * k).clamp(0.0, 1.0) * corner
        _paint(alb, (0.2, 0.05, 0.06), inner)
        _paint(alb, (0.7, 0.32, 0.36), inner * _ramp(y_li + 0.3 * oh * envp - ym, k))
        teeth = _ramp(ym - (y_ui - 0.026 * fh), k) + _ramp(y_li + 0.012 * fh - ym, k)
        _paint(alb, (0.93, 0.91, 0.86), inner * teeth.clamp(max=1.0) * _ramp(0.8 * w - u.abs(), k))
        _paint(alb, (0.25, 0.07, 0.08), 0.75 * _ramp(0.005 - (ym - y_ui).abs(), k) * corner)

        # Hair on the scalp: above a wavy hairline, and everywhere on the back/sides.
        mx, my, mz = m
        drop = idt.fringe * max(0.0, idt.hairline - 0.37)  # bangs never come below the brows' top
        hl = idt.hairline - 0.3 * mx * mx - drop * (1.0 - mx * mx * 2.5).clamp(min=0.0)
        hl = hl + 0.035 * torch.sin(7.0 * mx + idt.hair_wave)
        front = _ramp((my - hl) * 0.57 * fh, k)
        back = _ramp((0.12 - mz) * 0.43 * fw, k) * _ramp((my + 0.25) * 0.57 * fh, k)
        tex = (1.0 + 0.04 * torch.sin(22.0 * mx + 4.0 * my) * torch.sin(9.0 * my - 3.0 * mx + 1.0)).unsqueeze(1)
        _paint(alb, col["hair"] * tex, torch.maximum(front, back))


def render(params: FrameParams, identity: Identity, size: int = 64, *,
           device: torch.device | str = "cpu") -> torch.Tensor:
    """Render frames of one identity.

    Args:
        params: per-frame factors, N frames (:class:`~.params.FrameParams`).
        identity: appearance.
        size: output height = width in pixels.
        device: torch device.

    Returns:
        (N, 3, size, size) float32 RGB in [0, 1].
    """
    return HeadRenderer(identity, size, device).render(params)
