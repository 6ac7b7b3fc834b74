/*
 * Test FMU: dosing tank with a hysteresis-controlled outlet valve.
 *
 * With the valve in one state the level changes at a constant rate, so the
 * level is piecewise linear and each threshold crossing has an exact time.
 * model_do_step walks from one crossing to the next inside the communication
 * step instead of checking the thresholds only at its end: the valve switches
 * at the crossing, however many crossings one step holds. This is what a
 * co-simulation FMU with internal state events looks like from outside.
 *
 * The state is the three outputs (level, valve_open, switches); nothing else
 * survives a step, so get/set FMU state needs no extra care.
 */
#include <math.h>
#include <stdio.h>

#include "model.h"

/* Level rate of change (m/s) with the valve open or shut. */
static double level_rate(const ModelState *s, int open) {
    return (V(inflow) - (open ? V(outflow) : 0.0)) / V(area);
}

/* An opening needs room in the budget for itself and the closing after it,
 * so the count never exceeds max_switches and the valve always ends shut. */
static int may_open(const ModelState *s) { return V(switches) + 2.0 <= V(max_switches); }

/* Advance the level by h seconds, switching the valve at every crossing met on
 * the way. A crossing exactly at the end of the interval is taken (so h = 0
 * takes the crossings at the current instant). */
static void advance(ModelState *s, double h) {
    double left = h;
    for (;;) {
        int open = V(valve_open) != 0.0;
        double to_event = HUGE_VAL;
        if (open)
            to_event = (V(level) - V(level_low)) / -level_rate(s, 1);
        else if (may_open(s))
            to_event = (V(level_high) - V(level)) / level_rate(s, 0);
        if (to_event > left) break;
        /* Land exactly on the threshold, so rounding never drifts the level
         * over many cycles, and the next crossing is a full half-cycle away. */
        V(level) = open ? V(level_low) : V(level_high);
        V(valve_open) = open ? 0.0 : 1.0;
        V(switches) += 1.0;
        left -= to_event;
    }
    V(level) += level_rate(s, V(valve_open) != 0.0) * left;
}

ModelStatus model_initialize(ModelState *s, char *msg, size_t msg_len) {
    if (!(V(inflow) > 0.0) || !(V(area) > 0.0)) {
        snprintf(msg, msg_len, "inflow = %g m3/s and area = %g m2 must both be > 0", V(inflow),
                 V(area));
        return MODEL_ERROR;
    }
    if (!(V(outflow) > V(inflow))) {
        snprintf(msg, msg_len,
                 "outflow = %g m3/s must exceed inflow = %g m3/s, or the open valve never "
                 "lowers the level",
                 V(outflow), V(inflow));
        return MODEL_ERROR;
    }
    if (!(V(level_low) < V(level_high))) {
        snprintf(msg, msg_len, "level_low = %g m must be below level_high = %g m", V(level_low),
                 V(level_high));
        return MODEL_ERROR;
    }
    if (V(level_start) < V(level_low) || V(level_start) > V(level_high)) {
        snprintf(msg, msg_len, "level_start = %g m is outside [level_low, level_high] = [%g, %g] m",
                 V(level_start), V(level_low), V(level_high));
        return MODEL_ERROR;
    }
    double band = V(level_high) - V(level_low);
    V(period) = band / level_rate(s, 0) + band / -level_rate(s, 1);
    V(level) = V(level_start);
    V(valve_open) = V(start_open);
    V(switches) = 0.0;
    /* A level starting on the threshold of its valve state switches at t = 0. */
    advance(s, 0.0);
    return MODEL_OK;
}

ModelStatus model_do_step(ModelState *s, double h, char *msg, size_t msg_len) {
    (void)msg;
    (void)msg_len;
    advance(s, h);
    return MODEL_OK;
}

/* ---- model exchange -------------------------------------------------------------
 * The same tank for an ODE solver: the level is the one continuous state, and
 * the valve switches where the one event indicator, the distance to the
 * threshold that switches the valve in its present state, reaches zero. The
 * solver locates that root; the co-simulation step above computes it. */

ModelStatus model_derivatives(ModelState *s, char *msg, size_t msg_len) {
    (void)msg;
    (void)msg_len;
    V(der_level) = level_rate(s, V(valve_open) != 0.0);
    return MODEL_OK;
}

void model_event_indicators(const ModelState *s, double z[]) {
    if (V(valve_open) != 0.0)
        z[0] = V(level) - V(level_low);
    else if (may_open(s))
        z[0] = V(level_high) - V(level);
    else
        z[0] = 1.0; /* locked shut: nothing left to switch */
}

ModelStatus model_event_update(ModelState *s, int *states_changed, char *msg, size_t msg_len) {
    (void)msg;
    (void)msg_len;
    double z;
    model_event_indicators(s, &z);
    /* The solver stops at the root to within its tolerance, on either side. */
    if (z > 1e-9 * (V(level_high) - V(level_low))) return MODEL_OK;
    int open = V(valve_open) != 0.0;
    V(level) = open ? V(level_low) : V(level_high);
    V(valve_open) = open ? 0.0 : 1.0;
    V(switches) += 1.0;
    *states_changed = 1;
    return MODEL_OK;
}
