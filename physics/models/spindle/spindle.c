/*
 * CNC milling motor spindle with a solid-carbide end mill, down (climb) milling.
 *
 * States (fixed-step RK4, steps aligned with phase changes and events):
 *   four temperatures (stator, shaft, front bearing outer ring, housing; degC),
 *   the tool's wear clock s (share of its life used; VB = F(s)), front-bearing
 *   Palmgren-Miner damage and electrical energy.
 *
 * A work order is a sequence of parts: per part a cutting phase of
 * cut_time = 60 path_length / (fz z n) seconds, then load_time seconds with the
 * spindle stopped. Within a cutting phase the wear clock runs at the constant
 * rate 1 / tool life (the median life: lives scatter lognormally), so the
 * deterministic breakages (worn out at the fracture wear, fatigue; both thresholds
 * on VB) happen at exactly computed times. Beside them a breakage hazard (a
 * weakest-link fracture probability per tooth entry) is integrated as a state.
 *
 * Forces on the tool are the Kienzle law applied to each element of the helical
 * flutes, h = fz sin(phi); their sum over the teeth in the cut, at each rotation
 * angle, gives the peak force (breakage, bearings) and, at the angle where a flute
 * generates the wall, the wall-normal force (surface error). Mean force, torque
 * and power use Kienzle at the mean chip thickness (the textbook Pc = ap ae vf kc).
 *
 * The units, values and sources of every constant are in model.yaml. The material
 * table's values are parameters too (kc11_steel_c45, ...): T(material_data, kc11, m)
 * reads the one of material row m, so a run may override them like any parameter.
 */
#include <math.h>
#include <stdio.h>

#include "model.h"
#include "stability.h"
#include "surface.h"

#define PI 3.14159265358979323846
/* ISO 281: life exponent for ball bearings; L10 in units of 10^6 revolutions. */
#define BALL_LIFE_EXPONENT 3.0
#define MILLION_REVOLUTIONS 1.0e6
/* Ra of a parabolic (circular-arc) feed-mark profile over its peak-to-valley
 * height: integral_0^1 |u^2 - 1/3| du = 4 / (9 sqrt 3). */
#define RA_OF_RT 0.25660011963983365
/* Rotation angles sampled per tooth pitch when looking for the peak force. */
#define PEAK_SAMPLES 90

enum { X_TM, X_TS, X_TB, X_TH, X_S, X_D, X_E, X_H, NX };
enum { NODES = 4 };

static int material_row(const ModelState *s) { return (int)V(material) - 1; }
static double deg(double x) { return x * PI / 180.0; }

/* ---- wear curve ----------------------------------------------------------------------- */

/* Three-stage flank wear over the wear clock s (s = 1: VB = vb_limit):
 *   F(s) = a (1 - exp(-s/s1)) + b s + c (exp(s/s2) - 1)
 * break-in, steady (linear) and accelerated wear. */
typedef struct {
    double a, s1, b, c, s2;
} WearCurve;

static WearCurve wear_curve(const ModelState *s) {
    WearCurve w;
    w.a = V(wear_breakin);
    w.s1 = V(wear_breakin_life);
    w.s2 = V(wear_acceleration_life);
    w.c = V(wear_acceleration_at_limit) / expm1(1.0 / w.s2);
    w.b = V(vb_limit) - w.a * (1.0 - exp(-1.0 / w.s1)) - V(wear_acceleration_at_limit);
    return w;
}

static double wear_vb(const WearCurve *w, double s) {
    return w->a * (1.0 - exp(-s / w->s1)) + w->b * s + w->c * expm1(s / w->s2);
}

static double wear_slope(const WearCurve *w, double s) {
    return w->a / w->s1 * exp(-s / w->s1) + w->b + w->c / w->s2 * exp(s / w->s2);
}

/* s at which VB = vb (F is increasing): bracket, then bisection polished by Newton. */
static double wear_clock(const WearCurve *w, double vb) {
    if (vb <= 0.0) return 0.0;
    double lo = 0.0, hi = 1.0;
    while (wear_vb(w, hi) < vb) {
        lo = hi;
        hi *= 2.0;
        if (hi > 1e6) return HUGE_VAL;
    }
    double x = 0.5 * (lo + hi);
    for (int i = 0; i < 200; i++) {
        double f = wear_vb(w, x) - vb;
        if (f == 0.0 || hi - lo < 1e-15 * fmax(1.0, hi)) break;
        if (f > 0.0) hi = x;
        else lo = x;
        double nx = x - f / wear_slope(w, x);
        x = (nx > lo && nx < hi) ? nx : 0.5 * (lo + hi);
    }
    return x;
}

/* ---- cutting geometry and forces ---------------------------------------------------------- */

/* Engagement of down milling: the tooth enters at pi - phi_e and leaves at pi,
 * the angle (from the feed-normal axis, clockwise) where it generates the wall. */
static double phi_entry(const ModelState *s) { return PI - deg(V(engagement_angle)); }

/* Forces per mm of flute height on a sharp tool at immersion phi (Altintas, Manufacturing
 * Automation, 2nd ed. 2012, ch. 2: the linear edge-force model, db = dz): a shear part
 * on the local chip h = fz sin(phi), Kienzle's kc11 h^(1 - mc) tangentially, Kr times
 * it radially and Ka times it axially, plus the edge (ploughing) forces Kte, Kre, Kae
 * that the hone rubs on the surface whatever the chip. ft along the cutting speed, fr
 * toward the tool axis, fa along it (+ pulling the tool out of the holder). */
typedef struct {
    double ft, fr, fa;
} ElementForce;

/* Axial over tangential shear force of an oblique edge at the helix angle i, with
 * Stabler's chip-flow rule (eta = i): (cos(bn - an) tan i - tan i sin bn) /
 * (cos(bn - an) + tan^2 i sin bn), bn the normal friction angle, an the normal rake
 * (Armarego & Whitfield, CIRP Annals 34, 1985; Budak, Altintas & Armarego, ASME J. Manuf.
 * Sci. Eng. 118, 1996). The shear force itself stays Kienzle's. */
static double axial_force_ratio(const ModelState *s) {
    double t = tan(deg(V(helix_angle))), bn = deg(V(friction_angle)), an = deg(V(rake_angle));
    return (cos(bn - an) * t - t * sin(bn)) / (cos(bn - an) + t * t * sin(bn));
}

static ElementForce element_force(const ModelState *s, double phi) {
    int m = material_row(s);
    double h = V(feed_per_tooth) * sin(phi);
    double shear = h > 0.0 ? T(material_data, kc11, m) * pow(h, 1.0 - T(material_data, mc, m)) : 0.0;
    ElementForce e;
    e.ft = shear + T(material_data, edge_tangential, m);
    e.fr = V(radial_force_ratio) * shear + T(material_data, edge_radial, m);
    e.fa = V(axial_force_ratio) * shear + T(material_data, edge_axial, m);
    return e;
}

/* The resultant of the flute elements in the cut: Fx along the feed, Fy normal to the
 * down-milled wall (+ away from it), Fa axial; and, where a point of the tool is
 * given (gauge > 0, mm from the holder face), its wall-normal deflection (mm) under
 * that distributed load: sum of dFy times the influence compliance of the element's
 * height and the point's. */
typedef struct {
    double fx, fy, fa;
    double gauge, deflection;
    const Beam *beam;
} Load;

/* Static compliance (mm/N) at distance c (mm) from the holder face of a load at
 * distance a, by the unit-load method: integral_0^min(a, c) (a - x)(c - x) / EI dx of
 * the stepped beam, plus the spindle-holder spring at the holder face. */
static double influence(const ModelState *s, const Beam *b, double a, double c) {
    double lo = fmin(a, c), x0 = 0.0, sum = 0.0;
    a *= 1e-3;
    c *= 1e-3;
    lo *= 1e-3;
    for (int i = 0; i < b->n && x0 < lo; i++) {
        double x1 = fmin(x0 + b->length[i], lo);
#define F(x) (a * c * (x) - 0.5 * (a + c) * (x) * (x) + (x) * (x) * (x) / 3.0)
        sum += (F(x1) - F(x0)) / b->ei[i];
#undef F
        x0 += b->length[i];
    }
    return 1e3 * sum + 1.0 / (1e3 * V(spindle_stiffness));
}

static void add_element(const ModelState *s, double phi, double dz, double height, Load *l) {
    ElementForce e = element_force(s, phi);
    double fy = e.ft * sin(phi) - e.fr * cos(phi);
    l->fx += (-e.ft * cos(phi) - e.fr * sin(phi)) * dz;
    l->fy += fy * dz;
    l->fa += e.fa * dz;
    if (l->beam) l->deflection += fy * dz * influence(s, l->beam, V(tool_overhang) - height, l->gauge);
}

/* The flute elements whose immersion lies in [p1, p2] (radians, the engagement window's
 * branch), at height (origin - phi) / kappa above the tip (dz = dphi / kappa). The
 * quadrature is split where an element passes the gauge point, the kink of the
 * influence compliance. */
static void flute_segment(const ModelState *s, double p1, double p2, double origin, double kappa,
                          Load *l) {
    if (l->beam) {
        double at = origin - kappa * (V(tool_overhang) - l->gauge);
        if (at > p1 && at < p2) {
            flute_segment(s, p1, at, origin, kappa, l);
            p1 = at;
        }
    }
    double half = 0.5 * (p2 - p1), mid = 0.5 * (p1 + p2);
    for (int i = 0; i < 16; i++) {
        double phi = mid + (i < 8 ? -1.0 : 1.0) * half * GAUSS16_X[i % 8];
        add_element(s, phi, GAUSS16_W[i % 8] * half / kappa, (origin - phi) / kappa, l);
    }
}

/* Load on a sharp tool when the bottom point of tooth 0 is at immersion theta; the other
 * teeth trail by multiples of the pitch, and along each flute the elements at height z
 * trail by kappa z (kappa = 2 tan(helix) / D). */
static void tool_load(const ModelState *s, double theta, Load *l) {
    int z = (int)V(n_teeth);
    double ap = V(axial_depth), st = phi_entry(s), ex = PI;
    double kappa = 2.0 * tan(deg(V(helix_angle))) / V(tool_diameter);
    l->fx = l->fy = l->fa = l->deflection = 0.0;
    for (int j = 0; j < z; j++) {
        double top = theta - 2.0 * PI * j / z;
        top -= 2.0 * PI * floor((top - st) / (2.0 * PI)); /* into [st, st + 2 pi) */
        if (kappa * ap < 1e-9) { /* straight flute: the whole ap at one angle */
            if (top > ex) continue;
            /* Along the height, split at the gauge point (the influence's kink). */
            double cut = l->beam ? fmin(ap, fmax(0.0, V(tool_overhang) - l->gauge)) : ap;
            double parts[3] = {0.0, cut, ap};
            for (int k = 0; k < 2; k++) {
                double half = 0.5 * (parts[k + 1] - parts[k]), mid = 0.5 * (parts[k] + parts[k + 1]);
                if (!(half > 0.0)) continue;
                for (int i = 0; i < 16; i++) {
                    double zz = mid + (i < 8 ? -1.0 : 1.0) * half * GAUSS16_X[i % 8];
                    add_element(s, top, GAUSS16_W[i % 8] * half, zz, l);
                }
            }
            continue;
        }
        double bottom = top - kappa * ap;
        /* This revolution's engagement window and, for long helical flutes, earlier ones. */
        for (int w = 0; ex - 2.0 * PI * w > bottom; w++) {
            double lo = fmax(bottom, st - 2.0 * PI * w), hi = fmin(top, ex - 2.0 * PI * w);
            if (hi > lo) flute_segment(s, lo + 2.0 * PI * w, hi + 2.0 * PI * w, top + 2.0 * PI * w, kappa, l);
        }
    }
}

static void tool_force(const ModelState *s, double theta, double *fx, double *fy, double *fa) {
    Load l = {0};
    tool_load(s, theta, &l);
    *fx = l.fx;
    *fy = l.fy;
    *fa = l.fa;
}

static double force_magnitude(const ModelState *s, double theta) {
    double fx, fy, fa;
    tool_force(s, theta, &fx, &fy, &fa);
    return hypot(fx, fy);
}

static double axial_magnitude(const ModelState *s, double theta) {
    double fx, fy, fa;
    tool_force(s, theta, &fx, &fy, &fa);
    return fabs(fa);
}

/* Largest value of f over a revolution: sampled over one tooth pitch, then refined by
 * golden-section search around the best sample. */
static double peak_over_revolution(const ModelState *s, double (*f)(const ModelState *, double)) {
    int z = (int)V(n_teeth);
    double pitch = 2.0 * PI / z, step = pitch / PEAK_SAMPLES, best = -1.0, at = 0.0;
    for (int i = 0; i < PEAK_SAMPLES; i++) {
        double th = phi_entry(s) + i * step, v = f(s, th);
        if (v > best) {
            best = v;
            at = th;
        }
    }
    double a = at - step, b = at + step, g = 0.5 * (sqrt(5.0) - 1.0);
    double c = b - g * (b - a), d = a + g * (b - a);
    double fc = f(s, c), fd = f(s, d);
    for (int i = 0; i < 60; i++) {
        if (fc > fd) {
            b = d;
            d = c;
            fd = fc;
            c = b - g * (b - a);
            fc = f(s, c);
        } else {
            a = c;
            c = d;
            fc = fd;
            d = a + g * (b - a);
            fd = f(s, d);
        }
    }
    return fmax(best, fmax(fc, fd));
}

/* Forces of a sharp tool averaged over a revolution: the shear part by Kienzle at the
 * mean chip thickness times the mean number of teeth in the cut (the textbook
 * Pc = ae ap vf kc), the edge part exactly (each mm of flute is in the cut phi_e / 2 pi
 * of a revolution): tangential, radial and axial. */
typedef struct {
    double ft, fr, fa;
} MeanForce;

static MeanForce mean_force_sharp(const ModelState *s) {
    MeanForce f = {0.0, 0.0, 0.0};
    int m = material_row(s);
    double hm = V(chip_thickness);
    if (hm <= 0.0) return f;
    double kc = T(material_data, kc11, m) * pow(hm, -T(material_data, mc, m));
    double engaged = V(axial_depth) * V(n_teeth) * deg(V(engagement_angle)) / (2.0 * PI);
    double shear = kc * hm * engaged;
    f.ft = shear + T(material_data, edge_tangential, m) * engaged;
    f.fr = V(radial_force_ratio) * shear + T(material_data, edge_radial, m) * engaged;
    f.fa = V(axial_force_ratio) * shear + T(material_data, edge_axial, m) * engaged;
    return f;
}

/* The tool as a clamped stepped beam from the holder face (SI units): the shank at D,
 * the neck, the flutes at their equivalent bending diameter tool_core_ratio D (Kops &
 * Vo 1990), with the flutes at the tip. */
static Beam tool_beam(const ModelState *s) {
    double d = V(tool_diameter), l = V(tool_overhang);
    double flute = fmin(V(flute_length_ratio) * d, l);
    double neck = fmin(V(neck_length), l - flute);
    double len[3] = {l - flute - neck, neck, flute};
    double dia[3] = {d, V(neck_ratio) * d, V(tool_core_ratio) * d};
    Beam b;
    b.n = 0;
    for (int i = 0; i < 3; i++) {
        if (!(len[i] > 1e-9 * l)) continue;
        double dm = 1e-3 * dia[i];
        b.length[b.n] = 1e-3 * len[i];
        b.ei[b.n] = 1e6 * V(tool_modulus) * PI * pow(dm, 4.0) / 64.0;
        b.mu[b.n] = V(tool_density) * PI * dm * dm / 4.0;
        b.n++;
    }
    return b;
}

/* Static compliance (mm/N) at the tip for a load at distance a (mm) from the holder:
 * the stepped beam's, integral_0^a (a - x)(L - x) / EI dx, plus the spindle's. */
static double tip_compliance(const ModelState *s, double a) {
    Beam b = tool_beam(s);
    return 1e3 * beam_compliance(&b, 1e-3 * a) + 1.0 / (1e3 * V(spindle_stiffness));
}

/* The force centroid sits half the axial depth above the tip. */
static double load_arm(const ModelState *s) { return V(tool_overhang) - 0.5 * V(axial_depth); }

/* ---- the walls' form error ------------------------------------------------------------------ */

/* Heights at which the wall error is evaluated, evenly over the engaged flute. */
#define WALL_HEIGHTS 33

/* Wall-normal deflection, + = material left, that a sharp tool leaves on its walls: the
 * point of the wall at height z is generated when the flute element at z passes the
 * wall's angle, phi = pi for the down-milled wall (tooth 0's tip then at pi + kappa z,
 * the helix carrying the generating point up the flute), and, in a slot, phi = 0 for
 * the up-milled wall opposite it, where + is the other way. At that instant the tool
 * bends under the distributed load of every element in the cut; its deflection at z is
 * the sum of the elements' forces times the stepped beam's influence compliance
 * (unit-load method) plus the spindle's. Returns the extremes over the heights and
 * walls (mm, per unit wear factor). */
static void wall_deflections(const ModelState *s, double *lo, double *hi) {
    Beam b = tool_beam(s);
    double ap = V(axial_depth), big_l = V(tool_overhang);
    double kappa = 2.0 * tan(deg(V(helix_angle))) / V(tool_diameter);
    int slot = V(radial_width) >= V(tool_diameter) * (1.0 - 1e-12);
    *lo = HUGE_VAL;
    *hi = -HUGE_VAL;
    for (int i = 0; i < WALL_HEIGHTS; i++) {
        double z = ap * i / (WALL_HEIGHTS - 1.0);
        Load l = {0};
        l.beam = &b;
        l.gauge = big_l - z;
        tool_load(s, PI + kappa * z, &l);
        *lo = fmin(*lo, l.deflection);
        *hi = fmax(*hi, l.deflection);
        if (slot) {
            tool_load(s, kappa * z, &l);
            *lo = fmin(*lo, -l.deflection);
            *hi = fmax(*hi, -l.deflection);
        }
    }
}

/* ---- chatter stability (stability.c) ------------------------------------------------------ */

/* The tool's first bending mode and the spindle-holder mode at the tool tip, the cut
 * linearised about the mean chip, and process damping, in SI units. */
static Cut chatter_cut(const ModelState *s) {
    Cut c;
    c.n_modes = 2;
    c.modes[0].k = 1e6 * V(tool_modal_stiffness);
    c.modes[0].wn = 2.0 * PI * V(tool_frequency);
    c.modes[0].zeta = V(tool_damping_ratio);
    c.modes[1].k = 1e6 * V(spindle_stiffness);
    c.modes[1].wn = 2.0 * PI * V(spindle_natural_frequency);
    c.modes[1].zeta = V(spindle_damping_ratio);
    c.z = (int)V(n_teeth);
    c.phi_st = phi_entry(s);
    c.phi_ex = PI;
    c.kappa = 1e3 * 2.0 * tan(deg(V(helix_angle))) / V(tool_diameter);
    c.kt = 1e6 * V(tangent_cutting_coefficient);
    c.kr = V(radial_force_ratio);
    /* Process damping c = K_d w^2 / (4 v) per m of engaged flute (Tyler & Schmitz 2013),
     * with the flank contact of the edge and the tool's wear at the start. */
    double w = 1e-3 * (V(edge_contact_width) + V(tool_wear_start));
    double v = V(cutting_speed) / 60.0;
    c.pd = 1e9 * T(material_data, indentation_coefficient, material_row(s)) * w * w / (4.0 * v);
    c.omega = 2.0 * PI * V(spindle_speed) / 60.0;
    return c;
}

/* ---- what stays constant over one phase ------------------------------------------------------- */

typedef struct {
    int cutting;
    double n, omega;      /* rpm and rad/s; 0 while stopped */
    MeanForce force_sharp; /* N, mean forces of a sharp tool (0 when not cutting) */
    double clock_rate;    /* 1/s, rate of the wear clock (0 when not cutting) */
    double bearing_m0;    /* N mm per bearing, load-independent friction torque */
    double flood;         /* 1 when flood coolant is on */
} Phase;

static double lever(const ModelState *s) {
    return 1.0 + (V(nose_to_holder) + V(tool_overhang)) / V(spindle_bearing_span);
}

/* Median seconds of cutting for a new tool to reach vb_limit at this order's data:
 * extended Taylor in engaged time,
 *   T_engaged = T_ref eps_ref (vc_ref / vc)^(w/n) (hex_ref / hex_long)^(y/n) K_coolant,
 * with hex_ref = hex_ref_ratio D, the catalogue's chip thickness for this diameter,
 * hex_long the longest tooth's (runout), whose flank wears first, and the edge
 * engaged for eps = phi_e / 2 pi of each revolution; w = flank_wear_life (0 where
 * flank wear does not end the life and the life does not follow the speed). */
static double tool_life_seconds(const ModelState *s) {
    int m = material_row(s);
    double n = T(material_data, taylor_n, m);
    double eps = deg(V(engagement_angle)) / (2.0 * PI);
    double eps_ref = acos(1.0 - 2.0 * V(life_reference_engagement)) / (2.0 * PI);
    double life = 60.0 * T(material_data, life_ref, m) * (eps_ref / eps) *
                  pow(T(material_data, vc_ref, m) / V(cutting_speed),
                      T(material_data, flank_wear_life, m) / n) *
                  pow(T(material_data, hex_ref_ratio, m) * V(tool_diameter) /
                          V(longest_chip_thickness),
                      V(taylor_feed_exponent) / n);
    return V(coolant_on) != 0.0 ? life * T(material_data, coolant_factor, m) : life;
}

/* Probability that a tool whose wear clock reads `clock` median lives has reached
 * vb_limit: its life is lognormal with the median tool_life and sigma_ln =
 * sqrt(ln(1 + cv^2)), so P = Phi(ln(clock) / sigma_ln). */
static double life_probability(const ModelState *s, double clock) {
    if (clock <= 0.0) return 0.0;
    double cv = T(material_data, life_cv, material_row(s));
    if (cv <= 0.0) return clock >= 1.0 ? 1.0 : 0.0;
    return 0.5 * erfc(-log(clock) / (sqrt(2.0 * log1p(cv * cv))));
}

/* ---- breakage hazard ------------------------------------------------------------------------ */

/* Edge load of a tooth over the reference condition's, from its largest chip h and its
 * chip at entry h_in. The force per mm of edge follows Kienzle, ~ h^(1 - mc); the
 * entry strikes with entry_impact_factor. The reference (hex_ref at ae/D 0.25, down
 * milling) enters at its thickest chip, so its load is the impact factor. */
static double edge_load(const ModelState *s, double h, double h_in) {
    int m = material_row(s);
    double e = 1.0 - T(material_data, mc, m), k = V(entry_impact_factor);
    double ref = T(material_data, hex_ref_ratio, m) * V(tool_diameter);
    return fmax(pow(h / ref, e) / k, pow(h_in / ref, e));
}

/* Breakage hazard rate (1/s) of a sharp tool in the cut. Carbide fractures as a weakest
 * link (Weibull): a tooth entry with edge load S breaks the edge with probability
 * breakage_hazard_ref S^m. The longest tooth takes the chip min(h + e, z h) (runout e),
 * the others the nominal one (conservative: the tooth behind the longest takes less).
 * Chatter (stability_margin below 1) thickens every chip, up to chatter_chip_factor at
 * a margin of 0. The rate at wear VB is this times (1 + k_w VB)^m (breakage_rate). */
static double sharp_breakage_rate(const ModelState *s) {
    double z = V(n_teeth), e = 1e-3 * V(tool_runout), wm = V(carbide_weibull_modulus);
    double h = V(max_chip_thickness), h_in = V(feed_per_tooth) * sin(deg(V(engagement_angle)));
    double margin = V(stability_margin); /* NaN or inf (no chatter limit): no amplification */
    double amp = 1.0 + (V(chatter_chip_factor) - 1.0) * (margin < 1.0 ? fmin(1.0, 1.0 - margin) : 0.0);
    double lon = pow(edge_load(s, amp * fmin(h + e, z * h), amp * fmin(h_in + e, z * h_in)), wm);
    double nom = pow(edge_load(s, amp * h, amp * h_in), wm);
    return V(spindle_speed) / 60.0 * V(breakage_hazard_ref) * (lon + (z - 1.0) * nom);
}

static double breakage_rate(const ModelState *s, double vb) {
    return V(breakage_rate_sharp) * pow(1.0 + V(wear_force_coefficient) * vb, V(carbide_weibull_modulus));
}

/* A phase: cutting at the order's speed, or turning at speed n without cutting
 * (n = 0: stopped, the load/unload phase). */
static void set_phase_at(const ModelState *s, int cutting, double n, Phase *ph) {
    ph->cutting = cutting;
    ph->n = n;
    ph->omega = 2.0 * PI * n / 60.0;
    MeanForce none = {0.0, 0.0, 0.0};
    ph->force_sharp = cutting ? mean_force_sharp(s) : none;
    ph->clock_rate = cutting ? 1.0 / (60.0 * V(tool_life)) : 0.0;
    double nu_n = V(lubricant_viscosity) * n;
    double dm3 = pow(V(bearing_pitch_diameter), 3.0);
    /* Palmgren: M0 = 1e-7 f0 (nu n)^(2/3) dm^3 for nu n >= 2000, else 160e-7 f0 dm^3. */
    ph->bearing_m0 = n <= 0.0           ? 0.0
                     : nu_n >= 2000.0 ? 1e-7 * V(bearing_f0) * pow(nu_n, 2.0 / 3.0) * dm3
                                      : 160e-7 * V(bearing_f0) * dm3;
    ph->flood = V(coolant_on) != 0.0 ? 1.0 : 0.0;
}

static void set_phase(const ModelState *s, int cutting, Phase *ph) {
    set_phase_at(s, cutting, cutting ? V(spindle_speed) : 0.0, ph);
}

/* Heat flows and powers at one instant of a phase. */
typedef struct {
    double force, force_axial, power_cut, fr, fa, load, q_bearing, q_motor, p_shaft, p_el, torque;
} Flows;

/* Radial load per front bearing from a force at the tool (mean, or peak). */
static double bearing_radial(const ModelState *s, double tool_force) {
    return tool_force * lever(s) / V(bearing_count);
}

static double axial_load(const ModelState *s, double t_shaft, double t_bearing) {
    return fmax(0.0, V(bearing_preload) + V(thermal_preload_coefficient) * (t_shaft - t_bearing));
}

/* ISO 281 equivalent dynamic load of one bearing. */
static double equivalent_load(const ModelState *s, double fr, double fa) {
    if (fr > 0.0 && fa / fr <= V(bearing_e)) return fr;
    return V(bearing_X) * fr + V(bearing_Y) * fa;
}

static Flows flows(const ModelState *s, const Phase *ph, const double *x) {
    Flows f = {0};
    WearCurve w = wear_curve(s);
    double vb = wear_vb(&w, x[X_S]);
    double k = 1.0 + V(wear_force_coefficient) * vb;
    f.force = ph->force_sharp.ft * k;
    f.force_axial = ph->force_sharp.fa * k;
    f.fr = bearing_radial(s, hypot(ph->force_sharp.ft, ph->force_sharp.fr) * k);
    f.fa = axial_load(s, x[X_TS], x[X_TB]);
    f.load = equivalent_load(s, f.fr, f.fa);
    if (ph->n <= 0.0) return f;
    f.power_cut = f.force * V(cutting_speed) / 60.0;
    /* Palmgren friction torque M0 + f1 P1 dm per bearing (N mm), with Harris's
     * friction load of an angular-contact bearing P1 = max(0.9 Fa cot a - 0.1 Fr, Fr). */
    double p1 = fmax(0.9 * f.fa / tan(deg(V(bearing_contact_angle))) - 0.1 * f.fr, f.fr);
    double m_bearing = V(bearing_count) * (ph->bearing_m0 + V(bearing_f1) * p1 * V(bearing_pitch_diameter));
    f.q_bearing = m_bearing * 1e-3 * ph->omega;
    f.p_shaft = f.power_cut + f.q_bearing;
    f.p_el = f.p_shaft / V(motor_efficiency) + V(motor_speed_loss) * ph->n;
    f.q_motor = f.p_el - f.p_shaft;
    f.torque = f.force * V(tool_diameter) / 2000.0 + m_bearing * 1e-3;
    return f;
}

/* Thermal network: C dT/dt = q - G T + sources, nodes stator, shaft, bearing, housing. */
static void network(const ModelState *s, double flood, double g[NODES][NODES], double src[NODES]) {
    double gmj = V(conductance_motor_jacket), gmh = V(conductance_motor_housing);
    double gms = V(conductance_motor_shaft), gsb = V(conductance_shaft_bearing);
    double gsa = V(conductance_shaft_ambient), gbj = V(conductance_bearing_jacket);
    double gbf = flood * V(conductance_bearing_flood), gba = V(conductance_bearing_ambient);
    double gbh = V(conductance_bearing_housing), gha = V(conductance_housing_ambient);
    double tc = V(coolant_temperature), ta = V(ambient_temperature);
    double m[NODES][NODES] = {
        {gmj + gmh + gms, -gms, 0.0, -gmh},
        {-gms, gms + gsb + gsa, -gsb, 0.0},
        {0.0, -gsb, gsb + gbj + gbf + gba + gbh, -gbh},
        {-gmh, 0.0, -gbh, gmh + gbh + gha},
    };
    for (int i = 0; i < NODES; i++)
        for (int j = 0; j < NODES; j++) g[i][j] = m[i][j];
    src[0] = gmj * tc;
    src[1] = gsa * ta;
    src[2] = (gbj + gbf) * tc + gba * ta;
    src[3] = gha * ta;
}

static void node_heat(const ModelState *s, const Flows *f, double q[NODES]) {
    double rotor = V(rotor_loss_share), inner = V(bearing_inner_heat_share);
    q[0] = (1.0 - rotor) * f->q_motor;
    q[1] = rotor * f->q_motor + inner * f->q_bearing + V(cutting_heat_fraction) * f->power_cut;
    q[2] = (1.0 - inner) * f->q_bearing;
    q[3] = 0.0;
}

static double capacity(const ModelState *s, int i) {
    switch (i) {
        case 0: return V(motor_heat_capacity);
        case 1: return V(shaft_heat_capacity);
        case 2: return V(bearing_heat_capacity);
        default: return V(housing_heat_capacity);
    }
}

static void derivatives(const ModelState *s, const Phase *ph, const double *x, double *dx) {
    Flows f = flows(s, ph, x);
    double g[NODES][NODES], src[NODES], q[NODES];
    network(s, ph->flood, g, src);
    node_heat(s, &f, q);
    for (int i = 0; i < NODES; i++) {
        double sum = q[i] + src[i];
        for (int j = 0; j < NODES; j++) sum -= g[i][j] * x[X_TM + j];
        dx[X_TM + i] = sum / capacity(s, i);
    }
    dx[X_S] = ph->clock_rate;
    /* Miner: each revolution uses 1 / L10 of the life; L10 = a (C/P)^3 10^6 rev. */
    double life_rev = 0.0;
    if (ph->n > 0.0 && f.load > 0.0) {
        double ratio = V(bearing_dynamic_load_rating) / f.load;
        life_rev = V(bearing_life_factor) * pow(ratio, BALL_LIFE_EXPONENT) * MILLION_REVOLUTIONS;
    }
    dx[X_D] = life_rev > 0.0 ? (ph->n / 60.0) / life_rev : 0.0;
    dx[X_E] = f.p_el;
    if (ph->cutting) {
        WearCurve w = wear_curve(s);
        dx[X_H] = breakage_rate(s, wear_vb(&w, x[X_S]));
    } else {
        dx[X_H] = 0.0;
    }
}

/* ---- start temperatures --------------------------------------------------------------------- */

/* Solve a x = b in place (Gaussian elimination with partial pivoting). */
static int solve4(double a[NODES][NODES], double b[NODES]) {
    for (int c = 0; c < NODES; c++) {
        int p = c;
        for (int r = c + 1; r < NODES; r++)
            if (fabs(a[r][c]) > fabs(a[p][c])) p = r;
        if (fabs(a[p][c]) < 1e-300) return 0;
        for (int k = 0; k < NODES; k++) {
            double t = a[c][k];
            a[c][k] = a[p][k];
            a[p][k] = t;
        }
        double t = b[c];
        b[c] = b[p];
        b[p] = t;
        for (int r = c + 1; r < NODES; r++) {
            double f = a[r][c] / a[c][c];
            for (int k = c; k < NODES; k++) a[r][k] -= f * a[c][k];
            b[r] -= f * b[c];
        }
    }
    for (int c = NODES - 1; c >= 0; c--) {
        for (int k = c + 1; k < NODES; k++) b[c] -= a[c][k] * b[k];
        b[c] /= a[c][c];
    }
    return 1;
}

/* Steady temperatures of the network with the spindle idling at speed n (0: at
 * rest). Bearing heat depends on the temperatures through the thermal preload, so
 * the linear network is solved again until the temperatures stop changing. */
static int steady_state(const ModelState *s, double n, double t_out[NODES]) {
    Phase ph;
    set_phase_at(s, 0, n, &ph);
    double x[NX] = {0};
    for (int i = 0; i < NODES; i++) x[X_TM + i] = V(coolant_temperature);
    x[X_S] = V(tool_life_used);
    for (int it = 0; it < 200; it++) {
        Flows f = flows(s, &ph, x);
        double g[NODES][NODES], src[NODES], q[NODES];
        network(s, ph.flood, g, src);
        node_heat(s, &f, q);
        for (int i = 0; i < NODES; i++) src[i] += q[i];
        if (!solve4(g, src)) return 0;
        double change = 0.0;
        for (int i = 0; i < NODES; i++) {
            change = fmax(change, fabs(src[i] - x[X_TM + i]));
            x[X_TM + i] = src[i];
        }
        if (change < 1e-11) break;
    }
    for (int i = 0; i < NODES; i++) t_out[i] = x[X_TM + i];
    return 1;
}

/* ---- phases and outputs ------------------------------------------------------------------------ */

/* Phase at time t, and the time the phase ends. The load/unload phase of a
 * part starts exactly at k * cycle + cut_time. */
static int phase_at(const ModelState *s, double t, double *ends) {
    double cycle = V(cycle_time), cut = V(cut_time);
    double tol = 1e-9 * fmax(1.0, cycle);
    double k = floor((t + tol) / cycle);
    double pos = t - k * cycle;
    if (pos < cut - tol) {
        *ends = k * cycle + cut;
        return 1;
    }
    *ends = (k + 1.0) * cycle;
    return 0;
}

static void load_states(const ModelState *s, double *x) {
    x[X_TM] = V(motor_temperature);
    x[X_TS] = V(shaft_temperature);
    x[X_TB] = V(bearing_temperature);
    x[X_TH] = V(housing_temperature);
    x[X_S] = V(tool_life_used);
    x[X_D] = V(bearing_damage);
    x[X_E] = V(energy);
    x[X_H] = V(breakage_hazard);
}

static double wear_factor(const ModelState *s, double vb) {
    return 1.0 + V(wear_force_coefficient) * vb;
}

static double root_stress(const ModelState *s, double force) {
    double d = V(tool_core_ratio) * V(tool_diameter);
    return force * load_arm(s) / (PI * d * d * d / 32.0);
}

/* Ra (um) of the finished surface's geometric marks, a sharp tool.
 * Wall: the cutter's radius D/2 sweeps feed marks fz apart, raised by the radial runout e
 * until only the longest tooth cuts and the marks are z fz apart; a circular-arc profile
 * has Ra = 4 / (9 sqrt 3) Rt.
 * Floor: the end cutting edge (corner radius, dish angle) with the teeth's face runout,
 * the envelope's Ra computed over one period (surface.c). */
static double feed_mark_roughness(const ModelState *s) {
    double fz = V(feed_per_tooth), z = V(n_teeth);
    if (V(finished_surface) == 1.0) {
        double e = 1e-3 * V(tool_runout), r = 0.5 * V(tool_diameter);
        return RA_OF_RT * 1e3 * fmin(fz * fz / (8.0 * r) + e, z * z * fz * fz / (8.0 * r));
    }
    double rt;
    return 1e3 * floor_ra(fz, (int)z, V(corner_radius), deg(V(dish_angle)), 1e-3 * V(axial_runout), &rt);
}

/* Ra (um) of chatter marks on a wall. A regenerative vibration grows until the tooth leaves
 * the cut (Tlusty & Ismail, CIRP Annals 30, 1981: the basic non-linearity of chatter), so
 * in fully developed chatter the wall's waviness reaches the chip's own scale: peak to
 * valley (chatter_chip_factor - 1) hex at a margin of 0, the share 1 - margin of it
 * between (a monotone interpolation; typical, not a fitted law). A sinusoidal waviness
 * has Ra = Rt / pi. Floors are generated by the end edge, which the bending modes move
 * little: no term there. */
static double chatter_mark_roughness(const ModelState *s) {
    double margin = V(stability_margin); /* NaN or inf (no chatter limit): no marks */
    if (V(finished_surface) != 1.0 || !(margin < 1.0)) return 0.0;
    double rt = (V(chatter_chip_factor) - 1.0) * V(max_chip_thickness) * fmin(1.0, 1.0 - margin);
    return 1e3 * rt / PI;
}

/* Outputs at time t from the states. Quality and breakage figures describe a
 * part cut now, with the current wear, whether or not the tool is in the cut. */
static void update_outputs(ModelState *s, double t, const double *x) {
    double ends;
    int cutting = V(tool_broken) != 0.0 ? 0 : phase_at(s, t, &ends);
    Phase ph;
    set_phase(s, cutting, &ph);
    Flows f = flows(s, &ph, x);
    WearCurve w = wear_curve(s);
    double vb = wear_vb(&w, x[X_S]);

    V(motor_temperature) = x[X_TM];
    V(shaft_temperature) = x[X_TS];
    V(bearing_temperature) = x[X_TB];
    V(housing_temperature) = x[X_TH];
    V(tool_life_spent) += x[X_S] - V(tool_life_used);
    V(tool_life_used) = x[X_S];
    V(bearing_damage) = x[X_D];
    V(bearing_damage_order) = x[X_D] - V(bearing_damage_start);
    V(energy) = x[X_E];
    V(breakage_hazard) = x[X_H];
    V(breakage_probability) = -expm1(-x[X_H]);

    V(cutting) = cutting ? 1.0 : 0.0;
    double tol = 1e-9 * fmax(1.0, V(cycle_time));
    /* A broken tool halts the machine: no part is finished after the breakage. */
    double t_parts = V(tool_broken) != 0.0 ? fmin(t, V(breakage_time)) : t;
    V(parts_completed) = floor((t_parts + tol) / V(cycle_time));
    if (V(tool_broken) == 0.0) V(breakage_time) = t;

    int m = material_row(s);
    V(specific_cutting_force) = T(material_data, kc11, m) *
                                pow(V(chip_thickness), -T(material_data, mc, m)) *
                                wear_factor(s, vb);
    V(cutting_force) = f.force;
    V(axial_cutting_force) = f.force_axial;
    V(spindle_torque) = f.torque;
    V(cutting_power) = f.power_cut;
    double s1_power = V(rated_power) * fmin(1.0, V(spindle_speed) / V(base_speed));
    V(spindle_load) = f.p_shaft / s1_power;
    /* Intermittent periodic duty (IEC 60034-1 S3): the spindle stands still during
     * load/unload, so a short cycle that cuts for at most the rated share of it may
     * load the spindle up to its S3 curve. */
    int s3 = V(cut_time) <= V(s3_duty_cycle) * V(cycle_time) && V(cycle_time) <= V(s3_period);
    V(spindle_rating_load) = V(spindle_load) / (s3 ? V(s3_power_factor) : 1.0);
    V(spindle_power) = f.p_el;
    V(bearing_heat) = f.q_bearing;
    V(motor_heat) = f.q_motor;
    V(bearing_axial_load) = f.fa;
    V(preload_ratio) = V(bearing_preload) > 0.0 ? f.fa / V(bearing_preload) : 0.0;
    V(bearing_load) = f.load;

    double k = wear_factor(s, vb);
    /* Peak and wall-normal forces scale with the wear factor 1 + k_w VB. */
    double peak = V(peak_force_sharp) * k;
    double fr_peak = bearing_radial(s, peak);
    double p0 = fmax(V(bearing_X0) * fr_peak + V(bearing_Y0) * f.fa, fr_peak);
    V(static_safety) = p0 > 0.0 ? V(bearing_static_load_rating) / p0 : 1e6;
    V(peak_tool_force) = peak;
    V(peak_axial_force) = V(peak_axial_force_sharp) * k;
    V(tool_stress_ratio) = root_stress(s, peak) / V(tool_fatigue_strength);
    double c_load = tip_compliance(s, load_arm(s));
    V(tool_deflection) = 1e3 * peak * c_load;
    V(tool_deflection_ratio) = peak * c_load / V(tool_deflection_limit);
    V(wear_offset) = 1e3 * vb * tan(deg(V(clearance_angle)));
    /* The tool setter's radius offset compensates the radius lost to wear when the tool
     * was measured; the wear since then is left on the walls. The error is linear in the
     * deflection, so its largest magnitude over the heights and walls is at one of the
     * deflection's extremes. */
    double offset = 1e-3 * V(wear_offset) - V(radius_compensation);
    double e_lo = k * V(wall_deflection_min) + offset, e_hi = k * V(wall_deflection_max) + offset;
    V(wall_error) = 1e3 * (fabs(e_hi) >= fabs(e_lo) ? e_hi : e_lo);

    /* Only what lies in front of the locating (front) bearing moves the tool tip:
     * the shaft from the bearing to the tip, and the housing from its flange. */
    V(axial_drift) = 1e3 * V(expansion_coefficient) *
                     ((V(nose_to_holder) + V(tool_overhang)) * (x[X_TS] - V(drift_reference_shaft)) +
                      V(flange_to_bearing) * (x[X_TH] - V(drift_reference_housing)));

    double ra_marks = V(feed_mark_roughness), ra_chatter = V(chatter_mark_roughness);
    V(surface_roughness) = sqrt(ra_marks * ra_marks + ra_chatter * ra_chatter +
                                V(roughness_floor) * V(roughness_floor)) *
                           (1.0 + V(roughness_wear_coefficient) * vb);
    V(tool_wear) = vb;
    V(tool_wear_rate) = ph.clock_rate * wear_slope(&w, x[X_S]) * 60.0;
    double price = V(tool_price_per_mm) * V(tool_diameter);
    V(tool_cost_per_part) = V(parts_completed) > 0.0
                                ? price * V(tool_life_spent) / V(parts_completed)
                                : price / V(parts_per_tool);
    double left = fmax(0.0, 1.0 - x[X_S]);
    V(tool_remaining_life) = left * V(tool_life);
    V(tool_remaining_parts) = left * V(parts_per_tool);
    V(tool_life_probability) = life_probability(s, x[X_S]);
    V(breakage_hazard_rate) = 60.0 * breakage_rate(s, vb);
}

/* Wear at which the tool breaks in the cut, and the cause: the smaller of the fracture
 * wear and the wear at which the peak root stress, growing with 1 + k_w VB, reaches the
 * fatigue allowable (-inf: a sharp tool is already over it). The deflection limit is a
 * set-up and quality limit: a tool bent past it does not fracture there. */
static double breakage_wear(const ModelState *s, int *cause) {
    double kw = V(wear_force_coefficient), vb = V(fracture_wear);
    *cause = 1;
    double ratio = root_stress(s, V(peak_force_sharp)) / V(tool_fatigue_strength);
    if (ratio > 0.0) {
        double at = ratio >= 1.0 ? -HUGE_VAL : kw > 0.0 ? (1.0 / ratio - 1.0) / kw : HUGE_VAL;
        if (at < vb) {
            vb = at;
            *cause = 2;
        }
    }
    return vb;
}

/* ---- FMI entry points ------------------------------------------------------------------------ */

ModelStatus model_initialize(ModelState *s, char *msg, size_t msg_len) {
    double d = V(tool_diameter);
    if (V(radial_width) > d) {
        snprintf(msg, msg_len, "radial_width = %g mm exceeds tool_diameter = %g mm",
                 V(radial_width), d);
        return MODEL_ERROR;
    }
    if (V(axial_depth) >= V(tool_overhang)) {
        snprintf(msg, msg_len, "axial_depth = %g mm must be below tool_overhang = %g mm",
                 V(axial_depth), V(tool_overhang));
        return MODEL_ERROR;
    }
    V(fracture_wear) = V(vb_breakage) * pow(d / V(vb_breakage_diameter), V(vb_breakage_exponent));
    if (V(fracture_wear) <= V(vb_limit)) {
        snprintf(msg, msg_len,
                 "the fracture wear %g mm of a %g mm tool (vb_breakage = %g mm at %g mm) must "
                 "exceed vb_limit = %g mm",
                 V(fracture_wear), d, V(vb_breakage), V(vb_breakage_diameter), V(vb_limit));
        return MODEL_ERROR;
    }
    WearCurve w = wear_curve(s);
    if (!(w.b > 0.0)) {
        snprintf(msg, msg_len,
                 "wear_breakin = %g mm and wear_acceleration_at_limit = %g mm leave no steady "
                 "wear below vb_limit = %g mm",
                 V(wear_breakin), V(wear_acceleration_at_limit), V(vb_limit));
        return MODEL_ERROR;
    }
    double n = V(spindle_speed);
    V(cutting_speed) = PI * d * n / 1000.0;
    V(feed_rate) = V(feed_per_tooth) * V(n_teeth) * n;
    double phi = acos(1.0 - 2.0 * V(radial_width) / d);
    V(engagement_angle) = phi * 180.0 / PI;
    /* Mean of h = fz sin(phi) over the engagement angle. */
    V(chip_thickness) = 2.0 * V(feed_per_tooth) * V(radial_width) / (d * phi);
    V(max_chip_thickness) = phi < 0.5 * PI ? V(feed_per_tooth) * sin(phi) : V(feed_per_tooth);
    /* Runout e: the longest tooth cuts e more than the tooth before it left, at most
     * the whole feed of a revolution. */
    V(longest_chip_thickness) = fmin(V(max_chip_thickness) + 1e-3 * V(tool_runout),
                                     V(n_teeth) * V(max_chip_thickness));
    V(cut_time) = 60.0 * V(path_length) / V(feed_rate);
    V(cycle_time) = V(cut_time) + V(load_time);
    if (!(V(cycle_time) > 0.0)) {
        snprintf(msg, msg_len, "cycle_time is 0: path_length and load_time are both 0");
        return MODEL_ERROR;
    }
    double l = V(tool_overhang);
    V(tip_stiffness) = 1e-3 / tip_compliance(s, l);
    double ca = deg(V(bearing_contact_angle));
    V(thermal_preload_coefficient) = 1e3 * V(bearing_axial_stiffness) * V(expansion_coefficient) *
                                     0.5 * V(bearing_pitch_diameter) / tan(ca);

    /* Constant outputs of the order. */
    V(tool_life) = tool_life_seconds(s) / 60.0;
    /* Capped so that an order without cutting gives finite outputs. */
    V(parts_per_tool) = fmin(1e9, 60.0 * V(tool_life) / fmax(V(cut_time), 1e-300));
    V(part_cycle_time) = V(cycle_time);
    int mat = material_row(s);
    V(cutting_speed_ratio) = V(cutting_speed) / T(material_data, vc_ref, mat);
    V(tool_life_in_window) = T(material_data, flank_wear_life, mat) == 0.0 ||
                             (V(cutting_speed_ratio) >= V(taylor_speed_ratio_min) &&
                              V(cutting_speed_ratio) <= V(taylor_speed_ratio_max));
    /* Tool-tip dynamics: a tap test's tool mode where one is given, else the stepped
     * beam's first bending mode; and the stability limit at this speed. */
    Beam beam = tool_beam(s);
    double w_tool = 0.0, m_tool = 0.0;
    if (!beam_first_mode(&beam, &w_tool, &m_tool)) {
        snprintf(msg, msg_len, "the tool's bending mode was not found (tool_overhang = %g mm)", l);
        return MODEL_ERROR;
    }
    V(tool_frequency) = V(tool_mode_frequency) > 0.0 ? V(tool_mode_frequency) : w_tool / (2.0 * PI);
    V(tool_modal_stiffness) =
        V(tool_mode_stiffness) > 0.0 ? V(tool_mode_stiffness) : 1e-6 * w_tool * w_tool * m_tool;
    V(axial_force_ratio) = axial_force_ratio(s);
    V(tangent_cutting_coefficient) = (1.0 - T(material_data, mc, mat)) * T(material_data, kc11, mat) *
                                     pow(V(chip_thickness), -T(material_data, mc, mat));
    Cut cut = chatter_cut(s);
    int method = 0;
    V(stability_limit) = 1e3 * stability_limit(&cut, 1e-3 * V(axial_depth), 3e-3 * V(axial_depth),
                                               (int)V(stability_nodes_per_cycle),
                                               (int)V(stability_max_nodes), &method);
    V(stability_method) = method;
    V(stability_margin) = fmin(3.0, V(stability_limit) / V(axial_depth));
    V(bearing_speed_factor) = n * V(bearing_pitch_diameter);
    V(bearing_speed_ratio) = V(bearing_speed_factor) / V(bearing_speed_limit);

    /* Start state. */
    V(tool_life_used) = wear_clock(&w, V(tool_wear_start));
    V(tool_life_spent) = 0.0;
    V(tool_changes) = 0.0;
    double t0[NODES];
    if (V(explicit_start_temperatures) != 0.0) {
        t0[0] = V(motor_temperature_start);
        t0[1] = V(shaft_temperature_start);
        t0[2] = V(bearing_temperature_start);
        t0[3] = V(housing_temperature_start);
    } else {
        double cold[NODES], warm[NODES];
        double warm_speed = V(warmup_speed) > 0.0 ? V(warmup_speed) : n;
        if (!steady_state(s, 0.0, cold) || !steady_state(s, warm_speed, warm)) {
            snprintf(msg, msg_len, "the thermal network has no steady state (check the conductances)");
            return MODEL_ERROR;
        }
        for (int i = 0; i < NODES; i++) t0[i] = cold[i] + V(warmup_fraction) * (warm[i] - cold[i]);
    }
    V(motor_temperature) = t0[0];
    V(shaft_temperature) = t0[1];
    V(bearing_temperature) = t0[2];
    V(housing_temperature) = t0[3];
    V(drift_reference_shaft) = t0[1];
    V(drift_reference_housing) = t0[3];
    V(bearing_damage) = V(bearing_damage_start);
    V(energy) = 0.0;
    V(tool_broken) = V(tool_wear_start) >= V(fracture_wear) ? 1.0 : 0.0;
    V(breakage_cause) = V(tool_broken);
    V(breakage_time) = s->time;
    V(peak_force_sharp) = peak_over_revolution(s, force_magnitude);
    V(peak_axial_force_sharp) = peak_over_revolution(s, axial_magnitude);
    double lo, hi;
    wall_deflections(s, &lo, &hi);
    V(wall_deflection_min) = lo;
    V(wall_deflection_max) = hi;
    int cause = 1;
    double vb_break = breakage_wear(s, &cause);
    V(breakage_clock) = vb_break == -HUGE_VAL ? -HUGE_VAL : wear_clock(&w, vb_break);
    V(breakage_mode) = cause;
    /* After the stability margin: chatter raises the hazard. */
    V(breakage_rate_sharp) = sharp_breakage_rate(s);
    V(feed_mark_roughness) = feed_mark_roughness(s);
    V(chatter_mark_roughness) = chatter_mark_roughness(s);
    V(breakage_hazard) = 0.0;
    double x[NX];
    load_states(s, x);
    update_outputs(s, s->time, x);
    return MODEL_OK;
}

/* Largest stable and accurate step: half the fastest node time constant. */
static double internal_step(const ModelState *s) {
    double g[NODES][NODES], src[NODES];
    network(s, 1.0, g, src);
    double dt = V(solver_step);
    for (int i = 0; i < NODES; i++)
        if (g[i][i] > 0.0) dt = fmin(dt, 0.5 * capacity(s, i) / g[i][i]);
    return dt;
}

ModelStatus model_do_step(ModelState *s, double h, char *msg, size_t msg_len) {
    double x[NX], k1[NX], k2[NX], k3[NX], k4[NX], xt[NX];
    load_states(s, x);
    double t = s->time, t_end = s->time + h;
    double dt_max = internal_step(s);
    double tol = 1e-12 * fmax(1.0, fabs(t_end));
    double s_break = V(breakage_clock);
    while (t < t_end - tol) {
        double ends;
        int broken = V(tool_broken) != 0.0, breaks = 0;
        phase_at(s, t, &ends);
        double t1 = broken ? t_end : fmin(ends, t_end);
        double dummy;
        Phase ph;
        /* Decide the phase at the middle of the interval: robust at its edges. */
        int cutting = broken ? 0 : phase_at(s, 0.5 * (t + t1), &dummy);
        set_phase(s, cutting, &ph);
        double cycle = V(cycle_time), k = floor((t + 1e-9 * fmax(1.0, cycle)) / cycle);
        if (cutting && fabs(t - k * cycle) <= 1e-9 * fmax(1.0, cycle)) {
            /* Before a part: a tool-length measurement re-takes the Z reference ... */
            int every = (int)V(tool_measure_interval);
            if (every > 0 && k > 0.0 && fmod(k, every) == 0.0) {
                V(drift_reference_shaft) = x[X_TS];
                V(drift_reference_housing) = x[X_TH];
            }
            /* ... and tool-life management changes a tool that could not finish the
             * part within its life; the life left on it is spent as well. */
            if (V(replace_worn_tool) != 0.0 && x[X_S] > 0.0 &&
                x[X_S] + V(cut_time) * ph.clock_rate > 1.0 + 1e-12) {
                V(tool_life_spent) += x[X_S] - V(tool_life_used) + fmax(0.0, 1.0 - x[X_S]);
                x[X_S] = 0.0;
                V(tool_life_used) = 0.0;
                V(tool_changes) += 1.0;
            }
        }
        if (cutting) {
            /* The wear clock is linear in cutting time: the breakage time is exact. */
            double t_break = s_break <= x[X_S] ? t : t + (s_break - x[X_S]) / ph.clock_rate;
            if (t_break < t1) {
                t1 = t_break;
                breaks = 1;
            }
        }
        double s_start = x[X_S];
        int n = (int)ceil((t1 - t) / dt_max - 1e-9);
        if (n < 1) n = 1;
        double dt = (t1 - t) / n;
        for (int i = 0; i < n && t1 > t; i++) {
            derivatives(s, &ph, x, k1);
            for (int j = 0; j < NX; j++) xt[j] = x[j] + 0.5 * dt * k1[j];
            derivatives(s, &ph, xt, k2);
            for (int j = 0; j < NX; j++) xt[j] = x[j] + 0.5 * dt * k2[j];
            derivatives(s, &ph, xt, k3);
            for (int j = 0; j < NX; j++) xt[j] = x[j] + dt * k3[j];
            derivatives(s, &ph, xt, k4);
            for (int j = 0; j < NX; j++)
                x[j] += dt / 6.0 * (k1[j] + 2.0 * k2[j] + 2.0 * k3[j] + k4[j]);
        }
        if (breaks) {
            if (s_break > s_start) x[X_S] = s_break; /* exactly, not RK4's rounding */
            V(tool_broken) = 1.0;
            V(breakage_time) = t1;
            V(breakage_cause) = V(breakage_mode);
        }
        t = t1;
    }
    for (int j = 0; j < NX; j++) {
        if (!isfinite(x[j])) {
            snprintf(msg, msg_len, "state %d is not finite at t = %g", j, t_end);
            return MODEL_ERROR;
        }
    }
    update_outputs(s, t_end, x);
    return MODEL_OK;
}
