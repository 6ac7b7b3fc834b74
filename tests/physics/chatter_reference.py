"""The spindle's chatter physics written again in numpy/scipy (stability.c's laws).

* the tool as a clamped stepped beam: its first bending mode by finite elements
  (Hermite cubic elements, consistent mass, scipy's symmetric eigensolver) and its
  static compliance by quadrature of the unit-load integral;
* the tool tip of two modes, the cut linearised about the mean chip, process damping;
* the semi-discretization of one tooth period (scipy's expm, numpy's eigenvalues);
* the zeroth-order solution at a spindle speed by a dense frequency scan.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any

import numpy as np
from scipy import integrate, linalg, optimize

from tests.physics import spindle_reference as ref

# ---- the tool as a stepped beam ------------------------------------------------------------


@dataclass
class Beam:
    """Uniform segments from the clamp to the tip (SI units)."""

    length: list[float]
    ei: list[float]
    mu: list[float]

    @property
    def total(self) -> float:
        return float(sum(self.length))

    def at(self, x: float) -> int:
        edges = np.cumsum(self.length)
        return int(min(np.searchsorted(edges, x, side="right"), len(edges) - 1))


def tool_beam(p: dict[str, Any]) -> Beam:
    """The tool's segments (spindle_reference.tool_segments) in SI units."""
    beam = Beam([], [], [])
    for length, dia in ref.tool_segments(p):
        dm = 1e-3 * dia
        beam.length.append(1e-3 * length)
        beam.ei.append(1e6 * p["tool_modulus"] * math.pi * dm**4 / 64)
        beam.mu.append(p["tool_density"] * math.pi * dm**2 / 4)
    return beam


def beam_compliance(beam: Beam, a: float) -> float:
    """Tip deflection per N of a load at a from the clamp: unit-load integral by quad."""
    edges = [0.0, *np.cumsum(beam.length)]
    total = 0.0
    for i in range(len(beam.length)):
        lo, hi = edges[i], min(edges[i + 1], a)
        if hi > lo:
            total += integrate.quad(
                lambda x, ei=beam.ei[i]: (a - x) * (beam.total - x) / ei,
                lo,
                hi,
                epsabs=0,
                epsrel=1e-13,
            )[0]
    return total


def beam_first_mode(beam: Beam, elements: int = 60) -> tuple[float, float]:
    """First natural frequency (rad/s) and modal mass at the tip (kg) by Hermite
    cubic finite elements, elements spread over the segments by length."""
    edges = np.cumsum([0.0, *beam.length])
    nodes = np.unique(
        np.concatenate(
            [
                np.linspace(
                    edges[i],
                    edges[i + 1],
                    max(2, round(elements * beam.length[i] / beam.total) + 1),
                )
                for i in range(len(beam.length))
            ]
        )
    )
    n = len(nodes)
    k = np.zeros((2 * n, 2 * n))
    m = np.zeros((2 * n, 2 * n))
    for e in range(n - 1):
        h = nodes[e + 1] - nodes[e]
        seg = beam.at(0.5 * (nodes[e] + nodes[e + 1]))
        ei, mu = beam.ei[seg], beam.mu[seg]
        ke = (
            ei
            / h**3
            * np.array(
                [
                    [12, 6 * h, -12, 6 * h],
                    [6 * h, 4 * h * h, -6 * h, 2 * h * h],
                    [-12, -6 * h, 12, -6 * h],
                    [6 * h, 2 * h * h, -6 * h, 4 * h * h],
                ]
            )
        )
        me = (
            mu
            * h
            / 420
            * np.array(
                [
                    [156, 22 * h, 54, -13 * h],
                    [22 * h, 4 * h * h, 13 * h, -3 * h * h],
                    [54, 13 * h, 156, -22 * h],
                    [-13 * h, -3 * h * h, -22 * h, 4 * h * h],
                ]
            )
        )
        idx = np.arange(2 * e, 2 * e + 4)
        k[np.ix_(idx, idx)] += ke
        m[np.ix_(idx, idx)] += me
    free = np.arange(2, 2 * n)  # clamped: no deflection or slope at x = 0
    w2, vec = linalg.eigh(k[np.ix_(free, free)], m[np.ix_(free, free)], subset_by_index=[0, 0])
    phi = vec[:, 0]
    tip = phi[-2]
    modal_mass = float(phi @ m[np.ix_(free, free)] @ phi) / tip**2
    return math.sqrt(w2[0]), modal_mass


# ---- the cut ----------------------------------------------------------------------------------


@dataclass
class Cut:
    modes: list[tuple[float, float, float]]  # (k N/m, wn rad/s, zeta)
    z: int
    phi_st: float
    phi_ex: float
    kappa: float  # rad/m
    kt: float  # N/m^2
    kr: float
    pd: float  # N s/m^2
    omega: float  # rad/s
    extra: dict[str, float] = field(default_factory=dict)


def tool_mode(p: dict[str, Any]) -> tuple[float, float]:
    """(frequency Hz, modal stiffness N/um) of the tool mode the FMU uses."""
    w, mm = beam_first_mode(tool_beam(p))
    f = p["tool_mode_frequency"] or w / (2 * math.pi)
    k = p["tool_mode_stiffness"] or 1e-6 * w * w * mm
    return f, k


def tangent_kt(p: dict[str, Any]) -> float:
    """Kt = dF_t/dh of the Kienzle law at the mean chip [N/mm2]."""
    m = ref.material(p)
    hm = ref.geometry(p)["hm"]
    return (1 - m["mc"]) * m["kc11"] * hm ** (-m["mc"])


def cut_of(p: dict[str, Any]) -> Cut:
    m = ref.material(p)
    g = ref.geometry(p)
    f_tool, k_tool = tool_mode(p)
    vc = math.pi * p["tool_diameter"] * p["spindle_speed"] / 1000
    w = 1e-3 * (p["edge_contact_width"] + p["tool_wear_start"])
    return Cut(
        modes=[
            (1e6 * k_tool, 2 * math.pi * f_tool, p["tool_damping_ratio"]),
            (
                1e6 * p["spindle_stiffness"],
                2 * math.pi * p["spindle_natural_frequency"],
                p["spindle_damping_ratio"],
            ),
        ],
        z=int(p["n_teeth"]),
        phi_st=math.pi - g["phi"],
        phi_ex=math.pi,
        kappa=1e3 * 2 * math.tan(math.radians(p["helix_angle"])) / p["tool_diameter"],
        kt=1e6 * tangent_kt(p),
        kr=p["radial_force_ratio"],
        pd=1e9 * m["indentation_coefficient"] * w * w / (4 * vc / 60),
        omega=2 * math.pi * p["spindle_speed"] / 60,
    )


def cutting_matrix(phi: float, kr: float) -> np.ndarray:
    """Force per unit Kt b of a chip thickened by a tip displacement, at immersion phi."""
    s, c = math.sin(phi), math.cos(phi)
    return np.array([[-c - kr * s], [s - kr * c]]) @ np.array([[s, c]])


def damping_matrix(phi: float) -> np.ndarray:
    n = np.array([[math.sin(phi)], [math.cos(phi)]])
    return n @ n.T


def engaged(cut: Cut, ap: float, theta: float) -> tuple[np.ndarray, np.ndarray]:
    """H (N/m) and R (N s/m) of the engaged flutes by quadrature along the flute."""
    h = np.zeros((2, 2))
    r = np.zeros((2, 2))
    for j in range(cut.z):
        bottom = theta - 2 * math.pi * j / cut.z

        def in_cut(zh: float, bottom: float = bottom) -> float:
            phi = bottom - cut.kappa * zh
            return float(
                cut.phi_st <= (phi - cut.phi_st) % (2 * math.pi) + cut.phi_st <= cut.phi_ex
            )

        if cut.kappa * ap < 1e-9:
            phi = bottom
            if in_cut(0.0):
                h += ap * cutting_matrix(phi, cut.kr)
                r += ap * damping_matrix(phi)
            continue
        # the engaged heights: where the flute's angle lies in [phi_st, phi_ex] mod 2 pi
        first = math.floor((bottom - cut.kappa * ap - cut.phi_ex) / (2 * math.pi))
        last = math.ceil((bottom - cut.phi_st) / (2 * math.pi))
        for wrap in range(first, last + 1):
            lo_phi = cut.phi_st + 2 * math.pi * wrap
            hi_phi = cut.phi_ex + 2 * math.pi * wrap
            z_hi = (bottom - lo_phi) / cut.kappa
            z_lo = (bottom - hi_phi) / cut.kappa
            a, b = max(z_lo, 0.0), min(z_hi, ap)
            if b > a:
                for i in range(2):
                    for k in range(2):
                        h[i, k] += integrate.quad(
                            lambda zh, b0=bottom, i=i, k=k: cutting_matrix(
                                b0 - cut.kappa * zh, cut.kr
                            )[i, k],
                            a,
                            b,
                            epsabs=0,
                            epsrel=1e-12,
                        )[0]
                        r[i, k] += integrate.quad(
                            lambda zh, b0=bottom, i=i, k=k: damping_matrix(b0 - cut.kappa * zh)[
                                i, k
                            ],
                            a,
                            b,
                            epsabs=0,
                            epsrel=1e-12,
                        )[0]
    return cut.kt * h, cut.pd * r


# ---- semi-discretization -------------------------------------------------------------------------


def _plant(cut: Cut) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Mass, damping, stiffness of the modal coordinates (x modes, y modes) and the
    map P from them to the tip displacement."""
    nm = len(cut.modes)
    k = np.array([m[0] for m in cut.modes] * 2)
    wn = np.array([m[1] for m in cut.modes] * 2)
    zeta = np.array([m[2] for m in cut.modes] * 2)
    mass = k / wn**2
    p = np.zeros((2, 2 * nm))
    p[0, :nm] = 1
    p[1, nm:] = 1
    return np.diag(mass), np.diag(2 * zeta * mass * wn), np.diag(k), p


def sdm_rho(cut: Cut, ap: float, m: int) -> float:
    """Spectral radius of the tooth period's transition matrix: m in-cut steps with
    the coefficients at each step's middle, the delayed displacement linear between
    the previous period's nodes, the free flight exact (first-order semi-discretization)."""
    mass, damp, stiff, p = _plant(cut)
    nq = mass.shape[0]
    ny = 2 * nq
    minv = np.linalg.inv(mass)
    pitch = 2 * math.pi / cut.z
    span = min(cut.phi_ex - cut.phi_st + cut.kappa * ap, pitch)
    dt = span / cut.omega / m
    t_free = (pitch - span) / cut.omega
    dim = ny + 2 * (m + 1)

    def a_of(h: np.ndarray, r: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        a = np.zeros((ny, ny))
        a[:nq, nq:] = np.eye(nq)
        a[nq:, :nq] = -minv @ (stiff - p.T @ h @ p)
        a[nq:, nq:] = -minv @ (damp + p.T @ r @ p)
        b = np.zeros((ny, 2))
        b[nq:, :] = -minv @ p.T @ h
        return a, b

    y = np.zeros((ny, dim))
    y[:, :ny] = np.eye(ny)
    mono = np.zeros((dim, dim))
    for k in range(m + 1):
        mono[ny + 2 * k : ny + 2 * k + 2] = p @ y[:nq]
        if k == m:
            break
        h, r = engaged(cut, ap, cut.phi_st + (k + 0.5) * span / m)
        a, b = a_of(h, r)
        # response to a constant and to a ramp input over the step, by quadrature
        # of the exponential: int_0^dt e^{A (dt - s)} B ds and int_0^dt e^{A (dt - s)} B s / dt ds
        phi = linalg.expm(a * dt)
        aug = np.zeros((ny + 4, ny + 4))
        aug[:ny, :ny] = a * dt
        aug[:ny, ny : ny + 2] = b * dt
        aug[ny : ny + 2, ny + 2 :] = np.eye(2)
        e = linalg.expm(aug)
        g_const, g_ramp = e[:ny, ny : ny + 2], e[:ny, ny + 2 :]
        ynew = phi @ y
        ynew[:, ny + 2 * k : ny + 2 * k + 2] += g_const - g_ramp
        ynew[:, ny + 2 * k + 2 : ny + 2 * k + 4] += g_ramp
        y = ynew
    a0, _ = a_of(np.zeros((2, 2)), np.zeros((2, 2)))
    mono[:ny] = linalg.expm(a0 * t_free) @ y
    return float(np.max(np.abs(np.linalg.eigvals(mono))))


def sdm_limit(cut: Cut, m: int, ap_hi: float) -> float:
    """Smallest depth with rho = 1 below ap_hi (a doubling scan, then brentq)."""
    lo = ap_hi / 2**12
    hi = lo
    while hi < ap_hi:
        lo, hi = hi, min(2 * hi, ap_hi)
        if sdm_rho(cut, hi, m) >= 1:
            return float(
                optimize.brentq(
                    lambda a: math.log(sdm_rho(cut, a, m)), lo, hi, xtol=1e-12, rtol=1e-10
                )
            )
    return ap_hi


# ---- zeroth order --------------------------------------------------------------------------------


def zoa_limit(cut: Cut, ap_max: float, scan: int = 20000) -> float:
    """The lowest lobe through the spindle speed of the average-directional-factor
    characteristic equation det(I - a (1 - e^{-i w T}) H0 G_eff(w, a)) = 0, with the
    process damping along each eigenvector of H0: a dense scan of w, then brentq."""
    h0 = np.zeros((2, 2))
    r0 = np.zeros((2, 2))
    for i in range(2):
        for k in range(2):
            h0[i, k] = integrate.quad(
                lambda f, i=i, k=k: cutting_matrix(f, cut.kr)[i, k], cut.phi_st, cut.phi_ex
            )[0]
            r0[i, k] = integrate.quad(
                lambda f, i=i, k=k: damping_matrix(f)[i, k], cut.phi_st, cut.phi_ex
            )[0]
    h0 *= cut.kt * cut.z / (2 * math.pi)
    r0 *= cut.pd * cut.z / (2 * math.pi)
    lam, vec = np.linalg.eig(h0.astype(complex))
    tooth = 2 * math.pi / (cut.z * cut.omega)
    wlo = 0.5 * min(m[1] for m in cut.modes)
    whi = 3.0 * max(m[1] for m in cut.modes)

    def receptance(w: float) -> complex:
        return complex(
            sum(1 / (k * (1 - (w / wn) ** 2 + 2j * zeta * w / wn)) for k, wn, zeta in cut.modes)
        )

    best = ap_max
    for e in range(2):
        v = vec[:, e]
        pd = float(np.real(np.conj(v) @ r0 @ v) / np.real(np.conj(v) @ v))

        def depth(w: float, e: int = e, pd: float = pd) -> tuple[float, float]:
            a = 0.0
            for _ in range(200):
                q = (1 / receptance(w) + 1j * w * a * pd) / lam[e]
                if q.real <= 0:
                    return math.nan, math.nan
                nxt = abs(q) ** 2 / (2 * q.real)
                if nxt > 10:
                    return math.inf, math.nan
                if abs(nxt - a) <= 1e-13 * nxt:
                    a = nxt
                    break
                a = nxt
            return a, 2 * math.atan2(q.real, q.imag)

        ws = wlo * (whi / wlo) ** np.linspace(0, 1, scan)
        psi = []
        depths = []
        for w in ws:
            a, eps = depth(w)
            depths.append(a)
            psi.append(w * tooth - eps if math.isfinite(a) else math.nan)
        for i in range(1, scan):
            p0, p1 = psi[i - 1], psi[i]
            if not (math.isfinite(p0) and math.isfinite(p1)) or p1 <= p0:
                continue
            for k in range(
                max(0, math.floor(p0 / (2 * math.pi)) + 1), math.floor(p1 / (2 * math.pi)) + 1
            ):
                w_star = optimize.brentq(
                    lambda w, k=k: w * tooth - depth(w)[1] - 2 * math.pi * k,
                    ws[i - 1],
                    ws[i],
                    xtol=1e-12,
                )
                best = min(best, depth(w_star)[0])
    return best
