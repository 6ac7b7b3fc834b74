/*
 * Chatter stability of end milling with a tool tip of several modes.
 *
 * The tool tip is the tool's first bending mode (a clamped stepped beam: shank,
 * neck, flutes) and the spindle-holder mode, each the same in X and Y; their
 * receptances add at the tip (the two springs carry the same force). The cutting
 * force is linearised about the mean chip: dF_t = Kt b dh with the tangent
 * coefficient Kt = dF_t/dh of the Kienzle law, dF_r = Kr dF_t. Process damping is
 * the flank's indentation of the wavy surface, a viscous force normal to the cut
 * surface of c = K_d w^2 b / (4 v) per engaged flute element (Wu 1989; Tyler &
 * Schmitz 2013, J. Manuf. Processes 15: its linear form).
 *
 * Two solutions:
 *  - the semi-discretization method (Insperger & Stepan 2002, Int. J. Numer. Meth.
 *    Eng. 55; zeroth order): the tooth period's in-cut part in m steps with the
 *    periodic coefficients held at each step's middle and the delayed displacement
 *    at the middle of the same step one period earlier; the free flight exact. Its
 *    transition matrix's spectral radius below 1 is stability. It is valid at any
 *    immersion (flip lobes included) and is used where m steps resolve the fastest
 *    mode;
 *  - the zeroth-order solution (Altintas & Budak 1995, CIRP Annals 44) where the
 *    lobes are so dense (many vibration periods per tooth pass) that the average
 *    directional factor is accurate and the time steps would be too many.
 */
#include "stability.h"

#include <complex.h>
#include <math.h>
#include <string.h>

#define PI 3.14159265358979323846

/* ---- stepped beam --------------------------------------------------------------------- */

static double beam_length(const Beam *b) {
    double l = 0.0;
    for (int i = 0; i < b->n; i++) l += b->length[i];
    return l;
}

double beam_compliance(const Beam *b, double a) {
    double big_l = beam_length(b), x0 = 0.0, sum = 0.0;
    for (int i = 0; i < b->n && x0 < a; i++) {
        double x1 = fmin(x0 + b->length[i], a);
        /* antiderivative of (a - x)(L - x) = a L - (a + L) x + x^2 */
#define F(x) (a * big_l * (x) - 0.5 * (a + big_l) * (x) * (x) + (x) * (x) * (x) / 3.0)
        sum += (F(x1) - F(x0)) / b->ei[i];
#undef F
        x0 += b->length[i];
    }
    return sum;
}

/* State (w, w', M, Q), M = EI w'', Q = EI w''', carried over a uniform segment of
 * length x at frequency w: the Krylov-Duncan functions of beta x, beta^4 = mu w^2 / EI. */
static void segment_transfer(double ei, double mu, double w, double x, const double in[4],
                             double out[4]) {
    double beta = pow(mu * w * w / ei, 0.25), bx = beta * x;
    double ch = cosh(bx), sh = sinh(bx), c = cos(bx), s = sin(bx);
    double fs = 0.5 * (ch + c), ft = 0.5 * (sh + s), fu = 0.5 * (ch - c), fv = 0.5 * (sh - s);
    double y0 = in[0], y1 = in[1], y2 = in[2] / ei, y3 = in[3] / ei;
    double b2 = beta * beta, b3 = b2 * beta;
    out[0] = fs * y0 + ft / beta * y1 + fu / b2 * y2 + fv / b3 * y3;
    out[1] = beta * fv * y0 + fs * y1 + ft / beta * y2 + fu / b2 * y3;
    out[2] = ei * (b2 * fu * y0 + beta * fv * y1 + fs * y2 + ft / beta * y3);
    out[3] = ei * (b3 * ft * y0 + b2 * fu * y1 + beta * fv * y2 + fs * y3);
}

static void beam_tip(const Beam *b, double w, const double in[4], double out[4]) {
    double s[4];
    memcpy(s, in, sizeof s);
    for (int i = 0; i < b->n; i++) {
        segment_transfer(b->ei[i], b->mu[i], w, b->length[i], s, out);
        memcpy(s, out, sizeof s);
    }
    memcpy(out, s, sizeof s);
}

/* Free-end condition M = Q = 0 for the clamped start (0, 0, M0, Q0): the determinant
 * of the tip's (M, Q) over the two unit starts. */
static double free_end_determinant(const Beam *b, double w, double m[4]) {
    double ea[4] = {0.0, 0.0, 1.0, 0.0}, eb[4] = {0.0, 0.0, 0.0, 1.0}, ta[4], tb[4];
    beam_tip(b, w, ea, ta);
    beam_tip(b, w, eb, tb);
    m[0] = ta[2];
    m[1] = tb[2];
    m[2] = ta[3];
    m[3] = tb[3];
    return ta[2] * tb[3] - tb[2] * ta[3];
}

const double GAUSS16_X[8] = {0.0950125098376374, 0.2816035507792589, 0.4580167776572274,
                             0.6178762444026438, 0.7554044083550030, 0.8656312023878318,
                             0.9445750230732326, 0.9894009349916499};
const double GAUSS16_W[8] = {0.1894506104550685, 0.1826034150449236, 0.1691565193950025,
                             0.1495959888165767, 0.1246289712555339, 0.0951585116824928,
                             0.0622535239386479, 0.0271524594117541};

int beam_first_mode(const Beam *b, double *wn, double *modal_mass) {
    double big_l = beam_length(b), mass = 0.0, m[4];
    for (int i = 0; i < b->n; i++) mass += b->mu[i] * b->length[i];
    if (!(big_l > 0.0) || !(mass > 0.0)) return 0;
    /* A Rayleigh-type estimate (tip compliance, a quarter of the mass) brackets the
     * first root; scan upward for its sign change, then bisect. */
    double est = sqrt(1.0 / (beam_compliance(b, big_l) * 0.25 * mass));
    double lo = 0.3 * est, flo = free_end_determinant(b, lo, m), hi = lo, fhi = flo;
    int found = 0;
    for (int i = 0; i < 400 && !found; i++) {
        hi = lo * 1.01;
        fhi = free_end_determinant(b, hi, m);
        if ((flo <= 0.0) != (fhi <= 0.0)) found = 1;
        else {
            lo = hi;
            flo = fhi;
        }
    }
    if (!found) return 0;
    for (int i = 0; i < 200 && hi - lo > 1e-14 * hi; i++) {
        double mid = 0.5 * (lo + hi), fm = free_end_determinant(b, mid, m);
        if ((fm <= 0.0) == (flo <= 0.0)) {
            lo = mid;
            flo = fm;
        } else hi = mid;
    }
    double w = 0.5 * (lo + hi);
    free_end_determinant(b, w, m);
    /* Null vector of the 2 x 2 (M, Q) map: the start moment and shear of the mode. */
    double st[4] = {0.0, 0.0, 0.0, 0.0};
    if (fabs(m[0]) + fabs(m[1]) >= fabs(m[2]) + fabs(m[3])) {
        st[2] = m[1];
        st[3] = -m[0];
    } else {
        st[2] = m[3];
        st[3] = -m[2];
    }
    double integral = 0.0, s[4], out[4];
    memcpy(s, st, sizeof s);
    for (int i = 0; i < b->n; i++) {
        double half = 0.5 * b->length[i];
        for (int g = 0; g < 16; g++) {
            double x = half + (g < 8 ? -1.0 : 1.0) * half * GAUSS16_X[g % 8];
            segment_transfer(b->ei[i], b->mu[i], w, x, s, out);
            integral += b->mu[i] * out[0] * out[0] * GAUSS16_W[g % 8] * half;
        }
        segment_transfer(b->ei[i], b->mu[i], w, b->length[i], s, out);
        memcpy(s, out, sizeof s);
    }
    if (!(fabs(s[0]) > 0.0)) return 0;
    *wn = w;
    *modal_mass = integral / (s[0] * s[0]);
    return 1;
}

/* ---- directional factors ---------------------------------------------------------------- */

/* Antiderivatives over the immersion phi of the cutting matrix M(phi) (the force per
 * unit Kt b of a chip thickened by a displacement, h = (sin phi, cos phi) . du) and
 * of the process-damping matrix n n^T, n = (sin phi, cos phi), row-major xx xy yx yy. */
static void cutting_terms(double p, double kr, double out[4]) {
    double s2 = 0.5 * p - 0.25 * sin(2.0 * p), c2 = 0.5 * p + 0.25 * sin(2.0 * p);
    double sc = -0.25 * cos(2.0 * p);
    out[0] = -sc - kr * s2;
    out[1] = -c2 - kr * sc;
    out[2] = s2 - kr * sc;
    out[3] = sc - kr * c2;
}

static void damping_terms(double p, double out[4]) {
    double s2 = 0.5 * p - 0.25 * sin(2.0 * p), c2 = 0.5 * p + 0.25 * sin(2.0 * p);
    double sc = -0.25 * cos(2.0 * p);
    out[0] = s2;
    out[1] = sc;
    out[2] = sc;
    out[3] = c2;
}

static void add_integral(double lo, double hi, double kr, double scale, double h[4], double r[4]) {
    double a[4], b[4], da[4], db[4];
    cutting_terms(lo, kr, a);
    cutting_terms(hi, kr, b);
    damping_terms(lo, da);
    damping_terms(hi, db);
    for (int i = 0; i < 4; i++) {
        h[i] += scale * (b[i] - a[i]);
        r[i] += scale * (db[i] - da[i]);
    }
}

/* Cutting matrix H (N/m: force per displacement difference) and process damping
 * R (N s/m) of the whole engaged flute length at depth ap with tooth 0's bottom
 * point at immersion theta. */
static void engaged(const Cut *c, double ap, double theta, double h[4], double r[4]) {
    double st = c->phi_st, ex = c->phi_ex, kh[4] = {0, 0, 0, 0}, rh[4] = {0, 0, 0, 0};
    for (int j = 0; j < c->z; j++) {
        double top = theta - 2.0 * PI * j / c->z;
        top -= 2.0 * PI * floor((top - st) / (2.0 * PI)); /* into [st, st + 2 pi) */
        if (c->kappa * ap < 1e-9) {
            if (top <= ex) {
                double p = top, s = sin(p), co = cos(p);
                kh[0] += ap * (-s * co - c->kr * s * s);
                kh[1] += ap * (-co * co - c->kr * s * co);
                kh[2] += ap * (s * s - c->kr * s * co);
                kh[3] += ap * (s * co - c->kr * co * co);
                rh[0] += ap * s * s;
                rh[1] += ap * s * co;
                rh[2] += ap * s * co;
                rh[3] += ap * co * co;
            }
            continue;
        }
        double bottom = top - c->kappa * ap;
        for (int w = 0; ex - 2.0 * PI * w > bottom; w++) {
            double lo = fmax(bottom, st - 2.0 * PI * w), hi = fmin(top, ex - 2.0 * PI * w);
            if (hi > lo) add_integral(lo, hi, c->kr, 1.0 / c->kappa, kh, rh);
        }
    }
    for (int i = 0; i < 4; i++) {
        h[i] = c->kt * kh[i];
        r[i] = c->pd * rh[i];
    }
}

/* ---- small dense linear algebra ----------------------------------------------------------- */

#define MAXN 16 /* state (4 x 3 modes) plus the delayed input and its slope */

static void matmul(int n, const double *a, const double *b, double *out) {
    for (int i = 0; i < n; i++)
        for (int j = 0; j < n; j++) {
            double s = 0.0;
            for (int k = 0; k < n; k++) s += a[i * n + k] * b[k * n + j];
            out[i * n + j] = s;
        }
}

/* exp(a) by scaling and squaring of a degree-16 Taylor polynomial (n <= MAXN). */
static void expm(int n, const double *a, double *out) {
    double norm = 0.0;
    for (int i = 0; i < n; i++) {
        double row = 0.0;
        for (int j = 0; j < n; j++) row += fabs(a[i * n + j]);
        norm = fmax(norm, row);
    }
    int sq = norm > 0.25 ? (int)ceil(log2(norm / 0.25)) : 0;
    double scale = ldexp(1.0, -sq), x[MAXN * MAXN], term[MAXN * MAXN], tmp[MAXN * MAXN];
    for (int i = 0; i < n * n; i++) x[i] = a[i] * scale;
    for (int i = 0; i < n * n; i++) out[i] = term[i] = (i % (n + 1) == 0) ? 1.0 : 0.0;
    for (int k = 1; k <= 16; k++) {
        matmul(n, term, x, tmp);
        for (int i = 0; i < n * n; i++) {
            term[i] = tmp[i] / k;
            out[i] += term[i];
        }
    }
    for (int s = 0; s < sq; s++) {
        matmul(n, out, out, tmp);
        memcpy(out, tmp, sizeof(double) * n * n);
    }
}

/* Householder reflection of rows/columns k..k+len-1 that maps v onto a multiple of
 * e1, applied from the left on columns c0..c1 and from the right on rows r0..r1. */
static void reflect(int n, double *a, int k, int len, const double *v_in, int c0, int c1, int r0,
                    int r1) {
    double v[3], norm = 0.0;
    for (int i = 0; i < len; i++) norm += v_in[i] * v_in[i];
    norm = sqrt(norm);
    if (norm == 0.0) return;
    double alpha = v_in[0] > 0.0 ? -norm : norm;
    for (int i = 0; i < len; i++) v[i] = v_in[i];
    v[0] -= alpha;
    double vv = 0.0;
    for (int i = 0; i < len; i++) vv += v[i] * v[i];
    if (vv == 0.0) return;
    double beta = 2.0 / vv;
    for (int j = c0; j <= c1; j++) {
        double s = 0.0;
        for (int i = 0; i < len; i++) s += v[i] * a[(k + i) * n + j];
        s *= beta;
        for (int i = 0; i < len; i++) a[(k + i) * n + j] -= s * v[i];
    }
    for (int r = r0; r <= r1; r++) {
        double s = 0.0;
        for (int i = 0; i < len; i++) s += a[r * n + k + i] * v[i];
        s *= beta;
        for (int i = 0; i < len; i++) a[r * n + k + i] -= s * v[i];
    }
}

static void hessenberg(int n, double *a) {
    for (int k = 0; k < n - 2; k++) {
        /* Column k below the subdiagonal, one reflector of length n-k-1 at a time:
         * done as a general Householder on rows k+1..n-1. */
        int len = n - k - 1;
        double norm = 0.0;
        for (int i = k + 1; i < n; i++) norm += a[i * n + k] * a[i * n + k];
        norm = sqrt(norm);
        if (norm == 0.0) continue;
        double x0 = a[(k + 1) * n + k], alpha = x0 > 0.0 ? -norm : norm;
        double v[MAXN * 8], vv = 0.0;
        for (int i = 0; i < len; i++) v[i] = a[(k + 1 + i) * n + k];
        v[0] -= alpha;
        for (int i = 0; i < len; i++) vv += v[i] * v[i];
        if (vv == 0.0) continue;
        double beta = 2.0 / vv;
        for (int j = k; j < n; j++) {
            double s = 0.0;
            for (int i = 0; i < len; i++) s += v[i] * a[(k + 1 + i) * n + j];
            s *= beta;
            for (int i = 0; i < len; i++) a[(k + 1 + i) * n + j] -= s * v[i];
        }
        for (int r = 0; r < n; r++) {
            double s = 0.0;
            for (int i = 0; i < len; i++) s += a[r * n + k + 1 + i] * v[i];
            s *= beta;
            for (int i = 0; i < len; i++) a[r * n + k + 1 + i] -= s * v[i];
        }
        for (int i = k + 2; i < n; i++) a[i * n + k] = 0.0;
    }
}

static void eig2(double a, double b, double c, double d, double *re, double *im) {
    double p = 0.5 * (a - d), disc = p * p + b * c, mean = 0.5 * (a + d);
    if (disc >= 0.0) {
        double q = sqrt(disc);
        re[0] = mean + q;
        re[1] = mean - q;
        im[0] = im[1] = 0.0;
    } else {
        double q = sqrt(-disc);
        re[0] = re[1] = mean;
        im[0] = q;
        im[1] = -q;
    }
}

int real_eigenvalues(int n, double *a, double *re, double *im) {
    if (n > MAXN * 8) return 0;
    hessenberg(n, a);
    double anorm = 0.0;
    for (int i = 0; i < n * n; i++) anorm = fmax(anorm, fabs(a[i]));
    int hi = n - 1, iter = 0, total = 0;
    while (hi >= 0) {
        int l = hi;
        while (l > 0) {
            double s = fabs(a[(l - 1) * n + l - 1]) + fabs(a[l * n + l]);
            if (s == 0.0) s = anorm;
            if (fabs(a[l * n + l - 1]) <= 1e-15 * s) {
                a[l * n + l - 1] = 0.0;
                break;
            }
            l--;
        }
        if (l == hi) {
            re[hi] = a[hi * n + hi];
            im[hi] = 0.0;
            hi--;
            iter = 0;
            continue;
        }
        if (l == hi - 1) {
            eig2(a[(hi - 1) * n + hi - 1], a[(hi - 1) * n + hi], a[hi * n + hi - 1], a[hi * n + hi],
                 re + hi - 1, im + hi - 1);
            hi -= 2;
            iter = 0;
            continue;
        }
        if (++iter > 60 || ++total > 60 * n) return 0;
        double s, t;
        if (iter == 10 || iter == 20 || iter == 40) { /* exceptional shift */
            double w = fabs(a[hi * n + hi - 1]) + fabs(a[(hi - 1) * n + hi - 2]);
            s = 1.5 * w;
            t = w * w;
        } else {
            s = a[(hi - 1) * n + hi - 1] + a[hi * n + hi];
            t = a[(hi - 1) * n + hi - 1] * a[hi * n + hi] - a[(hi - 1) * n + hi] * a[hi * n + hi - 1];
        }
        double v[3];
        v[0] = a[l * n + l] * a[l * n + l] + a[l * n + l + 1] * a[(l + 1) * n + l] -
               s * a[l * n + l] + t;
        v[1] = a[(l + 1) * n + l] * (a[l * n + l] + a[(l + 1) * n + l + 1] - s);
        v[2] = a[(l + 1) * n + l] * a[(l + 2) * n + l + 1];
        for (int k = l; k <= hi - 2; k++) {
            int c0 = k > l ? k - 1 : l, r1 = k + 3 < hi ? k + 3 : hi;
            reflect(n, a, k, 3, v, c0, hi, l, r1);
            v[0] = a[(k + 1) * n + k];
            v[1] = a[(k + 2) * n + k];
            if (k < hi - 2) v[2] = a[(k + 3) * n + k];
        }
        reflect(n, a, hi - 1, 2, v, hi - 2, hi, l, hi);
    }
    return 1;
}

/* ---- semi-discretization ------------------------------------------------------------------ */

/* The system's state is (q, q' / ws) for the modal displacements q (x modes, then y
 * modes) with ws the fastest natural frequency: a similarity scaling that keeps the
 * matrices balanced and leaves the eigenvalues as they are. */
typedef struct {
    int nq, ny;
    double ws;
    double mass[2 * STAB_MAX_MODES], stiff[2 * STAB_MAX_MODES], damp[2 * STAB_MAX_MODES];
} Plant;

static Plant plant_of(const Cut *c) {
    Plant p;
    p.nq = 2 * c->n_modes;
    p.ny = 2 * p.nq;
    p.ws = 0.0;
    for (int i = 0; i < c->n_modes; i++) p.ws = fmax(p.ws, c->modes[i].wn);
    for (int d = 0; d < 2; d++)
        for (int i = 0; i < c->n_modes; i++) {
            const Mode *m = &c->modes[i];
            int j = d * c->n_modes + i;
            p.stiff[j] = m->k;
            p.mass[j] = m->k / (m->wn * m->wn);
            p.damp[j] = 2.0 * m->zeta * p.mass[j] * m->wn;
        }
    return p;
}

/* The augmented step matrix of dimension ny + 4, times dt: [[A, B, 0], [0, 0, I],
 * [0, 0, 0]], with the cutting matrix h and process damping r (row-major 2 x 2)
 * acting at the tip. Its exponential holds the response to a delayed input that is
 * constant over the step (columns ny, ny+1) and to one that rises linearly from 0 to
 * 1 (columns ny+2, ny+3): the delayed displacement interpolated between its nodes. */
static void step_matrix(const Cut *c, const Plant *p, const double h[4], const double r[4],
                        double dt, double *out) {
    int n = p->ny + 4, nm = c->n_modes;
    memset(out, 0, sizeof(double) * n * n);
    for (int i = 0; i < p->nq; i++) {
        out[i * n + p->nq + i] = p->ws * dt;
        int di = i / nm; /* direction of mode coordinate i: 0 x, 1 y */
        int row = (p->nq + i) * n;
        for (int j = 0; j < p->nq; j++) {
            int dj = j / nm;
            /* Tip force from the tip displacement: P^T h P couples every pair. */
            double kq = (i == j ? p->stiff[i] : 0.0) - h[di * 2 + dj];
            double cq = (i == j ? p->damp[i] : 0.0) + r[di * 2 + dj];
            out[row + j] = -kq / p->mass[i] / p->ws * dt;
            out[row + p->nq + j] = -cq / p->mass[i] * dt;
        }
        /* The delayed tip displacement (x, y): force -h u_delayed. */
        out[row + p->ny + 0] = -h[di * 2 + 0] / p->mass[i] / p->ws * dt;
        out[row + p->ny + 1] = -h[di * 2 + 1] / p->mass[i] / p->ws * dt;
    }
    out[p->ny * n + p->ny + 2] = 1.0;
    out[(p->ny + 1) * n + p->ny + 3] = 1.0;
}

#define SDM_MAX_DIM (4 * STAB_MAX_MODES + 2 * 41)

double sdm_spectral_radius(const Cut *c, double ap, int m) {
    Plant p = plant_of(c);
    int ny = p.ny, na = ny + 4, nm = c->n_modes;
    if (m < 1) m = 1;
    if (m > 40) m = 40;
    int dim = ny + 2 * (m + 1);
    double pitch = 2.0 * PI / c->z;
    double span = fmin(c->phi_ex - c->phi_st + c->kappa * ap, pitch);
    double t_cut = span / c->omega, t_free = (pitch - span) / c->omega, dt = t_cut / m;
    double y[4 * STAB_MAX_MODES][SDM_MAX_DIM], ynew[4 * STAB_MAX_MODES][SDM_MAX_DIM];
    double mono[SDM_MAX_DIM * SDM_MAX_DIM];
    double aug[MAXN * MAXN], e[MAXN * MAXN], h[4], r[4];
    memset(mono, 0, sizeof(double) * dim * dim);
    for (int i = 0; i < ny; i++)
        for (int j = 0; j < dim; j++) y[i][j] = (i == j) ? 1.0 : 0.0;
    for (int k = 0; k <= m; k++) {
        /* u_k = P y_k: the tip displacement at node k is the sum of its modes. */
        for (int d = 0; d < 2; d++)
            for (int j = 0; j < dim; j++) {
                double s = 0.0;
                for (int i = 0; i < nm; i++) s += y[d * nm + i][j];
                mono[(ny + 2 * k + d) * dim + j] = s;
            }
        if (k == m) break;
        engaged(c, ap, c->phi_st + (k + 0.5) * span / m, h, r);
        step_matrix(c, &p, h, r, dt, aug);
        expm(na, aug, e);
        for (int i = 0; i < ny; i++) {
            for (int j = 0; j < dim; j++) {
                double s = 0.0;
                for (int l = 0; l < ny; l++) s += e[i * na + l] * y[l][j];
                ynew[i][j] = s;
            }
            /* The delayed displacement over the step, linear between this step's
             * nodes one period earlier: (E_const - E_ramp) u_k + E_ramp u_k+1. */
            for (int d = 0; d < 2; d++) {
                double g_const = e[i * na + ny + d], g_ramp = e[i * na + ny + 2 + d];
                ynew[i][ny + 2 * k + d] += g_const - g_ramp;
                ynew[i][ny + 2 * (k + 1) + d] += g_ramp;
            }
        }
        for (int i = 0; i < ny; i++) memcpy(y[i], ynew[i], sizeof(double) * dim);
    }
    /* Free flight to the next tooth's entry. */
    double zero[4] = {0, 0, 0, 0};
    step_matrix(c, &p, zero, zero, t_free, aug);
    expm(na, aug, e);
    for (int i = 0; i < ny; i++)
        for (int j = 0; j < dim; j++) {
            double s = 0.0;
            for (int l = 0; l < ny; l++) s += e[i * na + l] * y[l][j];
            mono[i * dim + j] = s;
        }
    double re[SDM_MAX_DIM], im[SDM_MAX_DIM];
    if (!real_eigenvalues(dim, mono, re, im)) return NAN;
    double rho = 0.0;
    for (int i = 0; i < dim; i++) rho = fmax(rho, hypot(re[i], im[i]));
    return rho;
}

/* ---- zeroth-order solution ------------------------------------------------------------------ */

typedef struct {
    double complex lambda; /* eigenvalue of the average cutting matrix per m of depth */
    double pd;             /* process damping along its eigenvector per m of depth */
} Direction;

static double complex tip_receptance(const Cut *c, double w) {
    double complex g = 0.0;
    for (int i = 0; i < c->n_modes; i++) {
        double r = w / c->modes[i].wn;
        g += 1.0 / (c->modes[i].k * (1.0 - r * r + 2.0 * I * c->modes[i].zeta * r));
    }
    return g;
}

/* Depth (m) and phase eps = w T mod 2 pi of the chatter at frequency w along d:
 * a (1 - e^{-i w T}) = q, q = (1/G + i w a pd) / lambda, solved for a by fixed-point
 * iteration (process damping grows with a). NAN: no chatter at w. */
static double zoa_depth(const Cut *c, const Direction *d, double w, double *eps) {
    double complex inv_g = 1.0 / tip_receptance(c, w);
    double a = 0.0;
    for (int it = 0; it < 60; it++) {
        double complex q = (inv_g + I * w * a * d->pd) / d->lambda;
        double re = creal(q), im = cimag(q);
        if (re <= 0.0) return NAN;
        double next = (re * re + im * im) / (2.0 * re);
        *eps = 2.0 * atan2(re, im);
        if (next > 10.0) return HUGE_VAL;
        if (fabs(next - a) <= 1e-10 * next) {
            a = next;
            break;
        }
        a = next;
    }
    return a;
}

static void directions(const Cut *c, Direction d[2]) {
    double h[4] = {0, 0, 0, 0}, r[4] = {0, 0, 0, 0};
    add_integral(c->phi_st, c->phi_ex, c->kr, c->z / (2.0 * PI), h, r);
    for (int i = 0; i < 4; i++) {
        h[i] *= c->kt;
        r[i] *= c->pd;
    }
    double tr = h[0] + h[3], det = h[0] * h[3] - h[1] * h[2];
    double complex disc = csqrt(0.25 * tr * tr - det + 0.0 * I);
    for (int e = 0; e < 2; e++) {
        double complex lam = 0.5 * tr + (e ? -disc : disc);
        /* Eigenvector (h01, lam - h00), or (lam - h11, h10) when that one vanishes. */
        double complex v0 = h[1], v1 = lam - h[0];
        if (cabs(v0) + cabs(v1) < 1e-12 * (fabs(h[0]) + fabs(h[3]) + 1e-300)) {
            v0 = lam - h[3];
            v1 = h[2];
        }
        double nv = creal(v0 * conj(v0) + v1 * conj(v1));
        double complex rq = conj(v0) * (r[0] * v0 + r[1] * v1) + conj(v1) * (r[2] * v0 + r[3] * v1);
        d[e].lambda = lam;
        d[e].pd = nv > 0.0 ? creal(rq) / nv : 0.0;
    }
}

#define ZOA_SCAN 800

double zoa_limit(const Cut *c, double ap_max) {
    Direction dir[2];
    directions(c, dir);
    double wlo = HUGE_VAL, whi = 0.0, best = ap_max;
    for (int i = 0; i < c->n_modes; i++) {
        wlo = fmin(wlo, c->modes[i].wn);
        whi = fmax(whi, c->modes[i].wn);
    }
    wlo *= 0.5;
    whi *= 3.0;
    /* psi(w) = w T - eps(w) with T the tooth period: a lobe k crosses the speed where
     * psi = 2 pi k, k = 0, 1, ... */
    double tooth = 2.0 * PI / (c->z * c->omega);
    for (int e = 0; e < 2; e++) {
        double w0 = NAN, a0 = NAN, psi0 = NAN;
        for (int i = 0; i <= ZOA_SCAN; i++) {
            double w = wlo * pow(whi / wlo, (double)i / ZOA_SCAN), eps = 0.0;
            double a = zoa_depth(c, &dir[e], w, &eps);
            double psi = isfinite(a) ? w * tooth - eps : NAN;
            if (isfinite(psi) && isfinite(psi0) && psi > psi0) {
                double k0 = floor(psi0 / (2.0 * PI)), k1 = floor(psi / (2.0 * PI));
                if (k1 > k0 && k1 >= 0.0) {
                    if (k1 - k0 > 2.0) {
                        best = fmin(best, fmin(a0, a)); /* dense lobes: their envelope */
                    } else {
                        for (double k = fmax(k0 + 1.0, 0.0); k <= k1; k += 1.0) {
                            double lo = w0, hi = w, target = 2.0 * PI * k, depth = a;
                            for (int it = 0; it < 50; it++) {
                                double mid = 0.5 * (lo + hi), em = 0.0;
                                double am = zoa_depth(c, &dir[e], mid, &em);
                                if (!isfinite(am)) break;
                                depth = am;
                                if (mid * tooth - em < target) lo = mid;
                                else hi = mid;
                            }
                            best = fmin(best, depth);
                        }
                    }
                }
            }
            w0 = w;
            a0 = a;
            psi0 = psi;
        }
    }
    return best;
}

/* ---- the limit at the spindle speed ------------------------------------------------------------ */

static int sdm_steps(const Cut *c, double ap, int nodes_per_cycle) {
    double whi = 0.0, pitch = 2.0 * PI / c->z;
    for (int i = 0; i < c->n_modes; i++) whi = fmax(whi, c->modes[i].wn);
    double span = fmin(c->phi_ex - c->phi_st + c->kappa * ap, pitch);
    double cycles = whi / (2.0 * PI) * span / c->omega;
    return (int)ceil(nodes_per_cycle * cycles);
}

double stability_limit(const Cut *c, double ap_ref, double ap_max, int nodes_per_cycle,
                       int max_nodes, int *method) {
    int m = sdm_steps(c, ap_ref, nodes_per_cycle);
    if (m > max_nodes) {
        *method = 1;
        return fmin(zoa_limit(c, ap_max), ap_max);
    }
    *method = 2;
    if (m < 12) m = 12;
    /* Doubling scan from ap_max / 2^12 for the first unstable depth, then regula falsi
     * (Illinois) on log rho against log ap. */
    double lo = ldexp(ap_max, -12), rlo = sdm_spectral_radius(c, lo, m);
    if (!(rlo < 1.0)) return lo;
    double hi = lo, rhi = rlo;
    while (hi < ap_max) {
        lo = hi;
        rlo = rhi;
        hi = fmin(2.0 * hi, ap_max);
        rhi = sdm_spectral_radius(c, hi, m);
        if (!(rhi < 1.0)) break;
    }
    if (rhi < 1.0) return ap_max;
    double x0 = log(lo), f0 = log(rlo), x1 = log(hi), f1 = isfinite(rhi) ? log(rhi) : 1.0;
    int side = 0;
    for (int it = 0; it < 40 && x1 - x0 > 1e-4; it++) {
        double x = x1 - f1 * (x1 - x0) / (f1 - f0);
        if (!(x > x0 && x < x1)) x = 0.5 * (x0 + x1);
        double rx = sdm_spectral_radius(c, exp(x), m), fx = isfinite(rx) ? log(rx) : 1.0;
        if (fx < 0.0) {
            x0 = x;
            f0 = fx;
            if (side == -1) f1 *= 0.5;
            side = -1;
        } else {
            x1 = x;
            f1 = fx;
            if (side == 1) f0 *= 0.5;
            side = 1;
        }
    }
    return exp(0.5 * (x0 + x1));
}
