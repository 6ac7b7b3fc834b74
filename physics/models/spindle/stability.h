/*
 * Milling stability of a tool tip with several modes: the tool's stepped-beam
 * mode and the spindle-holder mode, each the same in X and Y, with process damping.
 *
 * SI units throughout (m, N, s, rad). Pure functions: the model (spindle.c) fills
 * the structures from its parameters; tests build them from a small C driver.
 */
#ifndef SPINDLE_STABILITY_H
#define SPINDLE_STABILITY_H

#define STAB_MAX_MODES 3

/* 16-point Gauss-Legendre nodes and weights on [-1, 1], the positive half (the rule is
 * symmetric): shared by the model's quadratures. */
extern const double GAUSS16_X[8], GAUSS16_W[8];
#define BEAM_MAX_SEGMENTS 4

/* One mode at the tool tip: modal stiffness k (N/m), natural frequency wn
 * (rad/s), damping ratio zeta; modal mass k / wn^2. */
typedef struct {
    double k, wn, zeta;
} Mode;

/* A cantilever of uniform segments from the clamp (x = 0) to the tip. */
typedef struct {
    int n;
    double length[BEAM_MAX_SEGMENTS]; /* m */
    double ei[BEAM_MAX_SEGMENTS];     /* bending stiffness, N m^2 */
    double mu[BEAM_MAX_SEGMENTS];     /* mass per length, kg/m */
} Beam;

/* Tip deflection (m) per N of a load at distance a (m) from the clamp:
 * integral_0^a (a - x)(L - x) / EI(x) dx (unit-load method). */
double beam_compliance(const Beam *b, double a);

/* First bending mode of the clamped-free stepped beam: natural frequency (rad/s)
 * from the segments' exact transfer matrices, and the mode's modal mass at the tip,
 * integral mu w^2 dx / w(L)^2 (kg). Returns 0 if no mode is found. */
int beam_first_mode(const Beam *b, double *wn, double *modal_mass);

/* The cut: z teeth, down or up milling given by the engagement [phi_st, phi_ex]
 * (rad, measured as in spindle.c), helix lag kappa (rad per m of height), the
 * tangent cutting coefficient kt (N/m^2, dF_t/dh per unit width) with the radial
 * ratio kr, and process damping pd: the damping (N s/m) per m of engaged flute
 * normal to the cut surface, K_d w^2 / (4 v) (Wu 1989; Tyler & Schmitz 2013). */
typedef struct {
    int n_modes;
    Mode modes[STAB_MAX_MODES];
    int z;
    double phi_st, phi_ex, kappa;
    double kt, kr, pd;
    double omega; /* spindle speed, rad/s */
} Cut;

/* Spectral radius of the tooth-period transition matrix of the semi-discretized
 * system at axial depth ap (m), with m in-cut steps. Below 1: stable. */
double sdm_spectral_radius(const Cut *c, double ap, int m);

/* Depth (m) of the zeroth-order (average directional factor) solution at the
 * spindle speed: the lowest lobe through it, process damping included. */
double zoa_limit(const Cut *c, double ap_max);

/* Axial depth (m) at which the cut starts to chatter at its spindle speed, searched
 * up to ap_max (ap_max is returned when none is found below it). *method is 2 where
 * the semi-discretization resolves the cut at depth ap_ref (at most max_nodes steps
 * in the cut at nodes_per_cycle steps per period of the fastest mode), else 1 (the
 * zeroth-order solution). */
double stability_limit(const Cut *c, double ap_ref, double ap_max, int nodes_per_cycle,
                       int max_nodes, int *method);

/* Eigenvalues of a real n x n matrix (row-major, overwritten) by Householder
 * reduction to Hessenberg form and Francis double-shift QR. Returns 0 when the
 * iteration did not converge. */
int real_eigenvalues(int n, double *a, double *re, double *im);

#endif
