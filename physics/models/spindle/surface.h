/*
 * The floor's feed-mark profile of a flat-bottom end mill: pure geometry, in mm.
 */
#ifndef SPINDLE_SURFACE_H
#define SPINDLE_SURFACE_H

/* Samples of one period of the floor profile when its Ra is computed. */
#define FLOOR_SAMPLES 8192

/* Height (mm) of a tooth's profile above its lowest point, at u mm along the feed from
 * that point (+ toward the periphery): the corner arc of radius r, the peripheral edge
 * (vertical) beyond u = r, and toward the centre the end cutting edge, rising at the
 * dish angle (rad) from the point where it meets the arc tangentially. */
double tooth_profile(double u, double r, double dish);

/* Ra and Rt (mm) of the floor left by z teeth at fz (mm) apart, one of them e (mm)
 * longer than the others (face runout): the lower envelope of the teeth's profiles,
 * periodic over z fz, sampled at FLOOR_SAMPLES midpoints. */
double floor_ra(double fz, int z, double r, double dish, double e, double *rt);

#endif
