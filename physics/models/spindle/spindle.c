/*
 * CNC milling motor spindle with its cutting tool.
 *
 * States (integrated with fixed-step RK4, steps aligned with phase changes):
 *   motor, front-bearing/nose and housing temperatures (degC), tool flank wear
 *   VB (mm), front-bearing Palmgren-Miner damage (-), electrical energy (J).
 *
 * A work order is a sequence of parts: per part a cutting phase of
 * cut_time = 60 path_length / (fz z n) seconds, then load_time seconds with the
 * spindle stopped. Within a phase every heat source is constant except for
 * the slow rise of the cutting force with flank wear, so the fixed step only
 * has to resolve the thermal time constants; it is kept below half the fastest.
 *
 * The units, values and sources of every constant are in model.yaml.
 */
#include <math.h>
#include <stdio.h>

#include "model.h"

#define PI 3.14159265358979323846
#define KELVIN 273.15
/* ISO 281: life exponent for ball bearings; L10 in units of 10^6 revolutions. */
#define BALL_LIFE_EXPONENT 3.0
#define MILLION_REVOLUTIONS 1.0e6

enum { X_TM, X_TB, X_TH, X_VB, X_D, X_E, NX };

/* What stays constant over one phase (cutting or load/unload). */
typedef struct {
    int cutting;
    double n;            /* rpm, 0 while stopped */
    double omega;        /* rad/s */
    double force_sharp;  /* N, tangential force of a sharp tool (0 when not cutting) */
    double kw;           /* 1/mm */
    double vc;           /* m/min */
    double bearing_m0;   /* N mm per bearing, load-independent friction torque */
    double wear_rate;    /* mm/s, 0 when not cutting */
    double t_ambient;    /* degC */
    double t_coolant;    /* degC */
    double flood;        /* 1 when flood coolant is on */
} Phase;

static int material_row(const ModelState *s) { return (int)V(material) - 1; }

/* Tangential force of a sharp tool while cutting: Kienzle kc times chip area
 * times the mean number of teeth in the cut. */
static double sharp_force(const ModelState *s) {
    int m = material_row(s);
    double hm = V(chip_thickness);
    if (hm <= 0.0 || V(axial_depth) <= 0.0) return 0.0;
    double kc = material_data_kc11[m] * pow(hm, -material_data_mc[m]);
    double phi = V(engagement_angle) * PI / 180.0;
    double teeth_in_cut = V(n_teeth) * phi / (2.0 * PI);
    return kc * V(axial_depth) * hm * teeth_in_cut;
}

/* Chip-tool interface temperature (degC) of the process, cutting or not. */
static double interface_temperature(const ModelState *s, double t_env) {
    int m = material_row(s);
    double rise = material_data_dT_ref[m] *
                  pow(V(cutting_speed) / material_data_vc_ref[m], V(temperature_speed_exponent)) *
                  pow(V(feed_per_tooth) / material_data_fz_ref[m], V(temperature_feed_exponent)) *
                  (V(coolant_on) != 0.0 ? 1.0 - V(coolant_temperature_reduction) : 1.0);
    return t_env + rise;
}

/* Usui-type wear law, calibrated so that at the material's reference
 * condition (dry, 20 degC) VB reaches vb_limit after life_ref minutes:
 *   dVB/dt = vb_limit / life_ref * (vc / vc_ref) * exp(lambda (1/theta_ref - 1/theta)). */
static double wear_rate(const ModelState *s, double t_env) {
    int m = material_row(s);
    double theta = interface_temperature(s, t_env) + KELVIN;
    double theta_ref = 20.0 + material_data_dT_ref[m] + KELVIN;
    double base = V(vb_limit) / (60.0 * material_data_life_ref[m]);
    return base * (V(cutting_speed) / material_data_vc_ref[m]) *
           exp(V(wear_activation) * (1.0 / theta_ref - 1.0 / theta));
}

/* ISO 281 equivalent dynamic load of one front bearing (N) under a resultant
 * force at the tool, with the axial preload. */
static double bearing_equivalent_load(const ModelState *s, double tool_force) {
    double lever = 1.0 + (V(nose_to_holder) + V(tool_overhang)) / V(spindle_bearing_span);
    double fr = tool_force * lever / V(bearing_count);
    double fa = V(bearing_preload);
    if (fr > 0.0 && fa / fr <= V(bearing_e)) return fr;
    return V(bearing_X) * fr + V(bearing_Y) * fa;
}

static double resultant(const ModelState *s, double tangential) {
    return tangential * sqrt(1.0 + V(radial_force_ratio) * V(radial_force_ratio));
}

/* Flank wear at which the tool snaps from bending: the resultant force, growing
 * with wear, reaches sigma W / L (W = pi d^3 / 32 of the core diameter). -inf
 * when even a sharp tool is overloaded, +inf when no wear gets there. */
static double overload_wear(const ModelState *s) {
    double sharp = resultant(s, sharp_force(s));
    if (sharp <= 0.0) return HUGE_VAL;
    double d = V(tool_core_ratio) * V(tool_diameter);
    double limit = V(tool_bending_strength) * PI * d * d * d / 32.0 / V(tool_overhang);
    if (sharp >= limit) return -HUGE_VAL;
    double kw = V(wear_force_coefficient);
    return kw > 0.0 ? (limit / sharp - 1.0) / kw : HUGE_VAL;
}

/* Heat flows and powers at one instant of a phase. */
typedef struct {
    double force, power_cut, load, q_bearing, q_motor, q_nose, p_el, torque;
} Flows;

static Flows flows(const ModelState *s, const Phase *ph, double vb) {
    Flows f = {0};
    f.force = ph->force_sharp * (1.0 + ph->kw * vb);
    f.load = bearing_equivalent_load(s, resultant(s, f.force));
    if (ph->n <= 0.0) return f;
    f.power_cut = f.force * ph->vc / 60.0;
    /* Palmgren friction torque: M0 + f1 P dm, per bearing, N mm. */
    double m_bearing = V(bearing_count) * (ph->bearing_m0 + V(bearing_f1) * f.load *
                                                                V(bearing_pitch_diameter));
    f.q_bearing = m_bearing * 1e-3 * ph->omega;
    double p_shaft = f.power_cut + f.q_bearing;
    f.p_el = p_shaft / V(motor_efficiency) + V(motor_speed_loss) * ph->n;
    f.q_motor = f.p_el - p_shaft;
    f.q_nose = V(cutting_heat_fraction) * f.power_cut;
    f.torque = f.force * V(tool_diameter) / 2000.0 + m_bearing * 1e-3;
    return f;
}

static void derivatives(const ModelState *s, const Phase *ph, const double *x, double *dx) {
    Flows f = flows(s, ph, x[X_VB]);
    double tm = x[X_TM], tb = x[X_TB], th = x[X_TH];
    double tc = ph->t_coolant, ta = ph->t_ambient;
    double q_mh = V(conductance_motor_housing) * (tm - th);
    double q_bh = V(conductance_bearing_housing) * (tb - th);
    dx[X_TM] = (f.q_motor - q_mh - V(conductance_motor_jacket) * (tm - tc)) / V(motor_heat_capacity);
    dx[X_TB] = (f.q_bearing + f.q_nose - q_bh - V(conductance_bearing_jacket) * (tb - tc) -
                ph->flood * V(conductance_bearing_flood) * (tb - tc) -
                V(conductance_bearing_ambient) * (tb - ta)) /
               V(bearing_heat_capacity);
    dx[X_TH] = (q_mh + q_bh - V(conductance_housing_ambient) * (th - ta)) / V(housing_heat_capacity);
    dx[X_VB] = ph->wear_rate;
    /* Miner: each revolution uses 1 / L10 of the life; L10 = a (C/P)^3 10^6 rev. */
    double life_rev = 0.0;
    if (ph->n > 0.0 && f.load > 0.0) {
        double ratio = V(bearing_dynamic_load_rating) / f.load;
        life_rev = V(bearing_life_factor) * pow(ratio, BALL_LIFE_EXPONENT) * MILLION_REVOLUTIONS;
    }
    dx[X_D] = life_rev > 0.0 ? (ph->n / 60.0) / life_rev : 0.0;
    dx[X_E] = f.p_el;
}

static void set_phase(const ModelState *s, int cutting, Phase *ph) {
    ph->cutting = cutting;
    ph->n = cutting ? V(spindle_speed) : 0.0;
    ph->omega = 2.0 * PI * ph->n / 60.0;
    ph->force_sharp = cutting ? sharp_force(s) : 0.0;
    ph->kw = V(wear_force_coefficient);
    ph->vc = V(cutting_speed);
    double nu_n = V(lubricant_viscosity) * ph->n;
    double dm3 = pow(V(bearing_pitch_diameter), 3.0);
    /* Palmgren: M0 = 1e-7 f0 (nu n)^(2/3) dm^3 for nu n >= 2000, else 160e-7 f0 dm^3. */
    ph->bearing_m0 = nu_n >= 2000.0 ? 1e-7 * V(bearing_f0) * pow(nu_n, 2.0 / 3.0) * dm3
                                    : 160e-7 * V(bearing_f0) * dm3;
    ph->t_ambient = V(ambient_temperature);
    ph->t_coolant = V(coolant_temperature);
    ph->flood = V(coolant_on) != 0.0 ? 1.0 : 0.0;
    double t_env = ph->flood > 0.0 ? ph->t_coolant : ph->t_ambient;
    ph->wear_rate = cutting ? wear_rate(s, t_env) : 0.0;
}

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
    x[X_TB] = V(bearing_temperature);
    x[X_TH] = V(housing_temperature);
    x[X_VB] = V(tool_wear);
    x[X_D] = V(bearing_damage);
    x[X_E] = V(energy);
}

/* Outputs at time t from the states. Quality outputs describe a part cut now,
 * with the process's cutting force, whether or not the tool is in the cut. */
static void update_outputs(ModelState *s, double t, const double *x) {
    double ends;
    int cutting = V(tool_broken) != 0.0 ? 0 : phase_at(s, t, &ends);
    Phase ph, proc;
    set_phase(s, cutting, &ph);
    set_phase(s, 1, &proc);
    Flows f = flows(s, &ph, x[X_VB]);
    Flows fp = flows(s, &proc, x[X_VB]);

    V(motor_temperature) = x[X_TM];
    V(bearing_temperature) = x[X_TB];
    V(housing_temperature) = x[X_TH];
    V(tool_wear) = x[X_VB];
    V(bearing_damage) = x[X_D];
    V(energy) = x[X_E];

    V(cutting) = cutting ? 1.0 : 0.0;
    double tol = 1e-9 * fmax(1.0, V(cycle_time));
    /* A broken tool halts the machine: no part is finished after the breakage. */
    double t_parts = V(tool_broken) != 0.0 ? fmin(t, V(breakage_time)) : t;
    V(parts_completed) = floor((t_parts + tol) / V(cycle_time));
    if (V(tool_broken) == 0.0) V(breakage_time) = t;
    int m = material_row(s);
    V(specific_cutting_force) = V(chip_thickness) > 0.0
        ? material_data_kc11[m] * pow(V(chip_thickness), -material_data_mc[m]) *
              (1.0 + V(wear_force_coefficient) * x[X_VB])
        : 0.0;
    V(cutting_force) = f.force;
    V(spindle_torque) = f.torque;
    V(cutting_power) = f.power_cut;
    V(bearing_load) = f.load;
    V(bearing_heat) = f.q_bearing;
    V(motor_heat) = f.q_motor;
    V(nose_cutting_heat) = f.q_nose;
    V(spindle_power) = f.p_el;
    double t_env = ph.flood > 0.0 ? ph.t_coolant : ph.t_ambient;
    V(cutting_temperature) = cutting ? interface_temperature(s, t_env) : t_env;
    V(tool_wear_rate) = ph.wear_rate * 60.0;

    double shaft = 0.5 * (x[X_TM] + x[X_TB]);
    V(thermal_elongation) =
        1e3 * V(expansion_coefficient) * V(spindle_length) * (shaft - V(reference_temperature));
    double d = V(tool_core_ratio) * V(tool_diameter);
    double inertia = PI * d * d * d * d / 64.0; /* mm^4 */
    double l = V(tool_overhang);
    V(tool_deflection) =
        1e3 * resultant(s, fp.force) * l * l * l / (3.0 * V(tool_modulus) * inertia);
    V(wear_offset) = 1e3 * x[X_VB] * tan(V(clearance_angle) * PI / 180.0);
    V(part_deviation) = V(thermal_elongation) + V(tool_deflection) + V(wear_offset);
    double fz = V(feed_per_tooth);
    /* Feed marks of a corner radius: Ra ~ fz^2 / (32 r) (Shaw; Boothroyd & Knight). */
    double ra_kinematic = 1e3 * fz * fz / (32.0 * V(corner_radius));
    V(surface_roughness) =
        (ra_kinematic + V(roughness_floor)) * (1.0 + V(roughness_wear_coefficient) * x[X_VB]);
}

ModelStatus model_initialize(ModelState *s, char *msg, size_t msg_len) {
    if (V(radial_width) > V(tool_diameter)) {
        snprintf(msg, msg_len, "radial_width = %g mm exceeds tool_diameter = %g mm",
                 V(radial_width), V(tool_diameter));
        return MODEL_ERROR;
    }
    double n = V(spindle_speed), d = V(tool_diameter);
    V(cutting_speed) = PI * d * n / 1000.0;
    V(feed_rate) = V(feed_per_tooth) * V(n_teeth) * n;
    double phi = acos(1.0 - 2.0 * V(radial_width) / d);
    V(engagement_angle) = phi * 180.0 / PI;
    /* Mean of h = fz sin(phi) over the engagement angle. */
    V(chip_thickness) = 2.0 * V(feed_per_tooth) * V(radial_width) / (d * phi);
    V(cut_time) = 60.0 * V(path_length) / V(feed_rate);
    V(cycle_time) = V(cut_time) + V(load_time);
    if (!(V(cycle_time) > 0.0)) {
        snprintf(msg, msg_len, "cycle_time is 0: path_length and load_time are both 0");
        return MODEL_ERROR;
    }
    V(motor_temperature) = V(motor_temperature_start);
    V(bearing_temperature) = V(bearing_temperature_start);
    V(housing_temperature) = V(housing_temperature_start);
    V(tool_wear) = V(tool_wear_start);
    V(bearing_damage) = V(bearing_damage_start);
    V(energy) = 0.0;
    V(tool_broken) = V(tool_wear_start) >= V(vb_breakage) ? 1.0 : 0.0;
    V(breakage_cause) = V(tool_broken);
    V(breakage_time) = s->time;
    double x[NX];
    load_states(s, x);
    update_outputs(s, s->time, x);
    return MODEL_OK;
}

/* Largest stable and accurate step: half the fastest node time constant. */
static double internal_step(const ModelState *s) {
    double g_m = V(conductance_motor_housing) + V(conductance_motor_jacket);
    double g_b = V(conductance_bearing_housing) + V(conductance_bearing_jacket) +
                 V(conductance_bearing_flood) + V(conductance_bearing_ambient);
    double g_h = V(conductance_motor_housing) + V(conductance_bearing_housing) +
                 V(conductance_housing_ambient);
    double dt = V(solver_step);
    if (g_m > 0.0) dt = fmin(dt, 0.5 * V(motor_heat_capacity) / g_m);
    if (g_b > 0.0) dt = fmin(dt, 0.5 * V(bearing_heat_capacity) / g_b);
    if (g_h > 0.0) dt = fmin(dt, 0.5 * V(housing_heat_capacity) / g_h);
    return dt;
}

ModelStatus model_do_step(ModelState *s, double h, char *msg, size_t msg_len) {
    double x[NX], k1[NX], k2[NX], k3[NX], k4[NX], xt[NX];
    load_states(s, x);
    double t = s->time, t_end = s->time + h;
    double dt_max = internal_step(s);
    double tol = 1e-12 * fmax(1.0, fabs(t_end));
    while (t < t_end - tol) {
        double ends;
        int broken = V(tool_broken) != 0.0, breaks = 0;
        phase_at(s, t, &ends);
        double t1 = broken ? t_end : fmin(ends, t_end);
        /* Decide the phase at the middle of the interval: robust at its edges. */
        double dummy;
        Phase ph;
        set_phase(s, broken ? 0 : phase_at(s, 0.5 * (t + t1), &dummy), &ph);
        /* The tool breaks when VB reaches the smaller of vb_breakage and the wear at
         * which it is overloaded. VB is linear in cutting time within a phase, so
         * the breakage time is exact; an overloaded tool breaks as the cut starts. */
        double vb_start = x[X_VB], vb_overload = HUGE_VAL, vb_break = V(vb_breakage);
        if (ph.cutting) {
            vb_overload = overload_wear(s);
            vb_break = fmin(vb_break, vb_overload);
            double t_break = vb_break <= vb_start   ? t
                             : ph.wear_rate > 0.0 ? t + (vb_break - vb_start) / ph.wear_rate
                                                  : HUGE_VAL;
            if (t_break < t1) {
                t1 = t_break;
                breaks = 1;
            }
        }
        int n = (int)ceil((t1 - t) / dt_max - 1e-9);
        if (n < 1) n = 1;
        double dt = (t1 - t) / n;
        for (int i = 0; i < n; i++) {
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
            if (vb_break > vb_start) x[X_VB] = vb_break; /* exactly, not RK4's rounding */
            V(tool_broken) = 1.0;
            V(breakage_time) = t1;
            V(breakage_cause) = vb_overload <= V(vb_breakage) ? 2.0 : 1.0;
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
