// Fused per-edge kernels of the ACNN descriptor (acnn_mpi/model/descriptor.py), CPU, float32.
//
// forward:  one pass over the centre-sorted edges of a batch: radial features resolved by
//           neighbour element, radial[i, z_j, n] = sum_j g_n(r_ij), and the unmixed angular
//           densities dens[i, z_j, n, lm] = sum_j g^a_n(r_ij) Y_lm(r_ij / r_ij) (lm innermost:
//           the per-edge loops run over 25 contiguous columns; measured faster than n innermost).
// backward: dL/d r_ij (E, 3) from dL/d radial and dL/d dens, recomputing g, dg/dr, Y and dY/du
//           per edge, so nothing per edge is stored between the two.
// Basis: g_n = (1 + T_n(w)) h with w = 2u^2 - 1, u = 1 - r/r_c, h = f_c/2 (Eq. 8), by the
// Chebyshev recurrences (dT_n/dw = n U_{n-1}(w)). Harmonics: Y_col = Zpoly_col(z) * XY_col(x, y)
// with XY = Re/Im (x + iy)^|m| (descriptor.RealSphericalHarmonics).
#include <torch/extension.h>
#include <cmath>
#include <cstring>
#include <vector>

namespace {

constexpr int MAX_BASIS = 64;
constexpr int MAX_L = 8;
constexpr int MAX_LM = (MAX_L + 1) * (MAX_L + 1);

struct Basis {
  float g[MAX_BASIS];
  float dg[MAX_BASIS];
};

// g_n(r) and dg_n/dr for n < n_basis; r < r_cut required
inline void basis(float r, float r_cut, int n_basis, Basis& out) {
  const float pi = 3.14159265358979323846f;
  float arg = r * (pi / r_cut);
  float h = 0.25f * (std::cos(arg) + 1.0f);
  float dh = (-0.25f * pi / r_cut) * std::sin(arg);
  float u = 1.0f - r / r_cut;
  float w = 2.0f * u * u - 1.0f;
  float dw = -4.0f * u / r_cut;
  float t[MAX_BASIS], un[MAX_BASIS];  // T_n(w), U_n(w)
  t[0] = 1.0f;
  un[0] = 1.0f;
  if (n_basis > 1) {
    t[1] = w;
    un[1] = 2.0f * w;
  }
  for (int n = 2; n < n_basis; ++n) {
    t[n] = 2.0f * w * t[n - 1] - t[n - 2];
    un[n] = 2.0f * w * un[n - 1] - un[n - 2];
  }
  out.g[0] = 2.0f * h;
  out.dg[0] = 2.0f * dh;
  for (int n = 1; n < n_basis; ++n) {
    out.g[n] = (1.0f + t[n]) * h;
    out.dg[n] = dh * (1.0f + t[n]) + h * n * un[n - 1] * dw;
  }
}

struct Harmonics {
  float y[MAX_LM];
  float dy[3][MAX_LM];  // dY/du (u the unit vector taken as free)
};

// Per-call constants of the harmonics: zc (L+1, n_lm) coefficients of the z polynomials, their
// derivatives dzc[k] = (k+1) zc[k+1], and the index m + L of each column's xy factor.
struct HarmonicsTable {
  int l_max, n_lm;
  std::vector<float> zc, dzc;
  std::vector<int> xy_index;
  HarmonicsTable(int l_max_, const float* zc_, const int* xy_m) : l_max(l_max_), n_lm((l_max_ + 1) * (l_max_ + 1)) {
    zc.assign(zc_, zc_ + (l_max + 1) * n_lm);
    dzc.assign((l_max + 1) * n_lm, 0.0f);
    for (int k = 0; k < l_max; ++k)
      for (int c = 0; c < n_lm; ++c) dzc[k * n_lm + c] = (k + 1) * zc[(k + 1) * n_lm + c];
    for (int c = 0; c < n_lm; ++c) xy_index.push_back(xy_m[c] + l_max);
  }
};

// Y (and dY/du) of the unit vector (x, y, z); loops over the n_lm columns are vectorizable
inline void harmonics(float x, float y, float z, const HarmonicsTable& t, bool derivatives, Harmonics& out) {
  const int L = t.l_max, n_lm = t.n_lm;
  float re[MAX_L + 1], im[MAX_L + 1], zp[MAX_L + 1];
  re[0] = 1.0f;
  im[0] = 0.0f;
  zp[0] = 1.0f;
  for (int k = 1; k <= L; ++k) {
    re[k] = re[k - 1] * x - im[k - 1] * y;
    im[k] = re[k - 1] * y + im[k - 1] * x;
    zp[k] = zp[k - 1] * z;
  }
  // xy factor of each m = -L..L (index m + L): Im P_|m| for m < 0, 1, Re P_m for m > 0; and its
  // x, y derivatives from dP_m/dx = m P_{m-1}, dP_m/dy = i m P_{m-1}
  float xyv[2 * MAX_L + 1], dxv[2 * MAX_L + 1], dyv[2 * MAX_L + 1];
  xyv[L] = 1.0f;
  dxv[L] = dyv[L] = 0.0f;
  for (int a = 1; a <= L; ++a) {
    xyv[L + a] = re[a];
    dxv[L + a] = a * re[a - 1];
    dyv[L + a] = -a * im[a - 1];
    xyv[L - a] = im[a];
    dxv[L - a] = a * im[a - 1];
    dyv[L - a] = a * re[a - 1];
  }
  float poly[MAX_LM], dpoly[MAX_LM];
  for (int c = 0; c < n_lm; ++c) poly[c] = dpoly[c] = 0.0f;
  for (int k = 0; k <= L; ++k) {
    const float* row = t.zc.data() + k * n_lm;
    const float* drow = t.dzc.data() + k * n_lm;
    float p = zp[k];
#pragma omp simd
    for (int c = 0; c < n_lm; ++c) {
      poly[c] += row[c] * p;
      dpoly[c] += drow[c] * p;
    }
  }
  const int* xi = t.xy_index.data();
#pragma omp simd
  for (int c = 0; c < n_lm; ++c) out.y[c] = poly[c] * xyv[xi[c]];
  if (derivatives) {
#pragma omp simd
    for (int c = 0; c < n_lm; ++c) {
      out.dy[0][c] = poly[c] * dxv[xi[c]];
      out.dy[1][c] = poly[c] * dyv[xi[c]];
      out.dy[2][c] = dpoly[c] * xyv[xi[c]];
    }
  }
}

void check(const torch::Tensor& t, torch::ScalarType type, const char* name) {
  TORCH_CHECK(t.device().is_cpu() && t.scalar_type() == type && t.is_contiguous(), name,
              " must be a contiguous CPU tensor of the kernel's type");
}

// The inputs both passes share, checked: edge vectors, CSR offsets, neighbour elements, harmonics.
struct EdgeInputs {
  const float* v;
  const int64_t* off;
  const int64_t* z;
  int64_t n_atoms;
  HarmonicsTable table;
};

EdgeInputs edge_inputs(const torch::Tensor& vectors, const torch::Tensor& offsets, const torch::Tensor& species,
                       int64_t n_r, int64_t n_a, int64_t l_max, const torch::Tensor& zc, const torch::Tensor& xy_m) {
  check(vectors, torch::kFloat32, "vectors");
  check(offsets, torch::kInt64, "offsets");
  check(species, torch::kInt64, "neighbour species");
  check(zc, torch::kFloat32, "zc");
  check(xy_m, torch::kInt32, "xy_m");
  TORCH_CHECK(n_r <= MAX_BASIS && n_a <= MAX_BASIS && l_max <= MAX_L, "basis too large for the kernel");
  return EdgeInputs{vectors.data_ptr<float>(), offsets.data_ptr<int64_t>(), species.data_ptr<int64_t>(),
                    offsets.size(0) - 1, HarmonicsTable(l_max, zc.data_ptr<float>(), xy_m.data_ptr<int>())};
}

// f(i, e, x, y, z, r) for every edge e of every atom i with r > 0, in parallel over atoms with
// torch's thread count (torch.set_num_threads), not the OpenMP runtime's default: the extension
// may link another libgomp than torch's, whose default would be every core, on every MPI rank
template <class F>
void for_each_edge(const EdgeInputs& in, F&& f) {
  const int n_threads = at::get_num_threads();
#pragma omp parallel for schedule(dynamic, 8) num_threads(n_threads)
  for (int64_t i = 0; i < in.n_atoms; ++i) {
    for (int64_t e = in.off[i]; e < in.off[i + 1]; ++e) {
      float x = in.v[3 * e], y = in.v[3 * e + 1], w = in.v[3 * e + 2];
      float r = std::sqrt(x * x + y * y + w * w);
      if (r > 0.0f) f(i, e, x, y, w, r);
    }
  }
}

}  // namespace

// vectors (E, 3) float32; offsets (N+1) int64 (edges of atom i: offsets[i]..offsets[i+1]);
// neighbour_species (E) int64; zc (L+1, n_lm) float32; xy_m (n_lm) int32.
// Returns radial (N, S, n_r) and dens (N, S, n_a, n_lm).
std::vector<torch::Tensor> forward(torch::Tensor vectors, torch::Tensor offsets, torch::Tensor species,
                                   int64_t n_elements, double r_cut, double r_cut_a, int64_t n_r,
                                   int64_t n_a, int64_t l_max, torch::Tensor zc, torch::Tensor xy_m) {
  const EdgeInputs in = edge_inputs(vectors, offsets, species, n_r, n_a, l_max, zc, xy_m);
  const int64_t n_atoms = in.n_atoms;
  const int n_lm = (l_max + 1) * (l_max + 1);
  auto radial = torch::zeros({n_atoms, n_elements, n_r}, vectors.options());
  auto dens = torch::zeros({n_atoms, n_elements, n_a, n_lm}, vectors.options());
  const float rc = r_cut, rca = r_cut_a;
  const int64_t* z = in.z;
  const HarmonicsTable& table = in.table;
  float* rad = radial.data_ptr<float>();
  float* den = dens.data_ptr<float>();
  for_each_edge(in, [&](int64_t i, int64_t e, float x, float y, float w, float r) {
    Basis b;
    Harmonics h;
    int64_t zj = z[e];
    if (r < rc) {
      basis(r, rc, n_r, b);
      float* out = rad + (i * n_elements + zj) * n_r;
      for (int n = 0; n < n_r; ++n) out[n] += b.g[n];
    }
    if (r < rca) {
      basis(r, rca, n_a, b);
      harmonics(x / r, y / r, w / r, table, false, h);
      float* out = den + (i * n_elements + zj) * n_a * n_lm;
      for (int n = 0; n < n_a; ++n) {
        float gn = b.g[n];
        float* row = out + n * n_lm;
#pragma omp simd
        for (int c = 0; c < n_lm; ++c) row[c] += gn * h.y[c];
      }
    }
  });
  return {radial, dens};
}

// dL/d vectors (E, 3) from grad_radial (N, S, n_r) and grad_dens (N, S, n_a, n_lm).
torch::Tensor backward(torch::Tensor grad_radial, torch::Tensor grad_dens, torch::Tensor vectors,
                       torch::Tensor offsets, torch::Tensor species, double r_cut, double r_cut_a,
                       int64_t n_r, int64_t n_a, int64_t l_max, torch::Tensor zc, torch::Tensor xy_m) {
  check(grad_radial, torch::kFloat32, "grad_radial");
  check(grad_dens, torch::kFloat32, "grad_dens");
  const EdgeInputs in = edge_inputs(vectors, offsets, species, n_r, n_a, l_max, zc, xy_m);
  const int64_t n_elements = grad_radial.size(1);
  const int n_lm = (l_max + 1) * (l_max + 1);
  auto grad = torch::zeros_like(vectors);
  const float rc = r_cut, rca = r_cut_a;
  const int64_t* z = in.z;
  const HarmonicsTable& table = in.table;
  const float* gr = grad_radial.data_ptr<float>();
  const float* gd = grad_dens.data_ptr<float>();
  float* out = grad.data_ptr<float>();
  for_each_edge(in, [&](int64_t i, int64_t e, float x, float y, float w, float r) {
    Basis b;
    Harmonics h;
    float dl_dy[MAX_LM];
    int64_t zj = z[e];
    float dl_dr = 0.0f;
    float ux = x / r, uy = y / r, uz = w / r;
    float du[3] = {0.0f, 0.0f, 0.0f};
    if (r < rc) {
      basis(r, rc, n_r, b);
      const float* g = gr + (i * n_elements + zj) * n_r;
      for (int n = 0; n < n_r; ++n) dl_dr += g[n] * b.dg[n];
    }
    if (r < rca) {
      basis(r, rca, n_a, b);
      harmonics(ux, uy, uz, table, true, h);
      const float* block = gd + (i * n_elements + zj) * n_a * n_lm;
      for (int c = 0; c < n_lm; ++c) dl_dy[c] = 0.0f;
      for (int n = 0; n < n_a; ++n) {
        const float* row = block + n * n_lm;
        float gn = b.g[n], dot = 0.0f;
#pragma omp simd reduction(+ : dot)
        for (int c = 0; c < n_lm; ++c) {
          dl_dy[c] += gn * row[c];
          dot += row[c] * h.y[c];
        }
        dl_dr += dot * b.dg[n];
      }
      for (int k = 0; k < 3; ++k) {
        float s = 0.0f;
#pragma omp simd reduction(+ : s)
        for (int c = 0; c < n_lm; ++c) s += dl_dy[c] * h.dy[k][c];
        du[k] = s;
      }
    }
    // v = r u: dL/dv = (dL/du - (dL/du . u) u) / r + dL/dr u
    float radial_part = dl_dr - (du[0] * ux + du[1] * uy + du[2] * uz) / r;
    out[3 * e] = du[0] / r + radial_part * ux;
    out[3 * e + 1] = du[1] / r + radial_part * uy;
    out[3 * e + 2] = du[2] / r + radial_part * uz;
  });
  return grad;
}

// ---- generic edge helpers of model/forces.py (any atomic-energy model, float32 or float64) ----
namespace {

template <class T>
int64_t prune_impl(const T* x, const int64_t* i, const int64_t* j, const double* shifts, const T* cell,
                   const int64_t* system, int64_t n_edges, T limit2, T* out, int64_t* out_i, int64_t* out_j,
                   double* out_shifts) {
  int64_t n = 0;
  for (int64_t e = 0; e < n_edges; ++e) {
    const int64_t a = i[e], b = j[e];
    const T* h = cell + 9 * system[a];
    const double* s = shifts + 3 * e;
    const T s0 = static_cast<T>(s[0]), s1 = static_cast<T>(s[1]), s2 = static_cast<T>(s[2]);
    T v[3];
    for (int k = 0; k < 3; ++k) v[k] = x[3 * b + k] - x[3 * a + k] + (s0 * h[k] + s1 * h[3 + k] + s2 * h[6 + k]);
    if (v[0] * v[0] + v[1] * v[1] + v[2] * v[2] < limit2) {
      for (int k = 0; k < 3; ++k) {
        out[3 * n + k] = v[k];
        out_shifts[3 * n + k] = s[k];
      }
      out_i[n] = a;
      out_j[n] = b;
      ++n;
    }
  }
  return n;
}

template <class T>
void scatter_impl(const T* g, const int64_t* i, const int64_t* j, const double* shifts, const int64_t* system,
                  int64_t n_edges, T* d_positions, T* moments) {
  for (int64_t e = 0; e < n_edges; ++e) {
    const T* ge = g + 3 * e;
    T* di = d_positions + 3 * i[e];
    T* dj = d_positions + 3 * j[e];
    T* m = moments + 9 * system[i[e]];
    for (int k = 0; k < 3; ++k) {
      di[k] -= ge[k];
      dj[k] += ge[k];
    }
    for (int a = 0; a < 3; ++a) {
      const T sa = static_cast<T>(shifts[3 * e + a]);
      if (sa != T(0))
        for (int k = 0; k < 3; ++k) m[3 * a + k] += sa * ge[k];
    }
  }
}

}  // namespace

// Edge vectors r_e = x[j] - x[i] + S_e . cell[system[i]] of the edges shorter than sqrt(limit2),
// in one pass: returns (vectors (E', 3), index (2, E'), cell shifts (E', 3) float64) of the kept
// edges, in their order. positions (N, 3) and cell (B, 3, 3) of one float type; index (2, E) and
// system (N) int64; shifts (E, 3) float64.
std::vector<torch::Tensor> prune_edge_vectors(torch::Tensor positions, torch::Tensor index, torch::Tensor shifts,
                                              torch::Tensor cell, torch::Tensor system, double limit2) {
  check(index, torch::kInt64, "index");
  check(system, torch::kInt64, "system");
  check(shifts, torch::kFloat64, "shifts");
  check(cell, positions.scalar_type(), "cell");
  const int64_t n_edges = index.size(1);
  auto out = torch::empty({n_edges, 3}, positions.options());
  auto out_index = torch::empty({2, n_edges}, index.options());
  auto out_shifts = torch::empty({n_edges, 3}, shifts.options());
  int64_t n = 0;
  AT_DISPATCH_FLOATING_TYPES(positions.scalar_type(), "prune_edge_vectors", [&] {
    check(positions, positions.scalar_type(), "positions");
    n = prune_impl<scalar_t>(positions.data_ptr<scalar_t>(), index.data_ptr<int64_t>(),
                             index.data_ptr<int64_t>() + n_edges, shifts.data_ptr<double>(),
                             cell.data_ptr<scalar_t>(), system.data_ptr<int64_t>(), n_edges,
                             static_cast<scalar_t>(limit2), out.data_ptr<scalar_t>(),
                             out_index.data_ptr<int64_t>(), out_index.data_ptr<int64_t>() + n_edges,
                             out_shifts.data_ptr<double>());
  });
  // row j moved up behind the n kept centres, so that the first 2n entries are the (2, n) index
  int64_t* raw = out_index.data_ptr<int64_t>();
  std::memmove(raw + n, raw + n_edges, sizeof(int64_t) * n);
  auto kept_index = out_index.view({-1}).narrow(0, 0, 2 * n).view({2, n});
  return {out.narrow(0, 0, n), kept_index, out_shifts.narrow(0, 0, n)};
}

// The sums of an edge-vector gradient g (E, 3): dE/dx (N, 3) (+g at the neighbour j, -g at the
// centre i) and per structure sum_e S_e (x) g_e (B, 3, 3); index (2, E), system (N) int64,
// shifts (E, 3) float64.
std::vector<torch::Tensor> scatter_edge_gradient(torch::Tensor g, torch::Tensor index, torch::Tensor shifts,
                                                 torch::Tensor system, int64_t n_atoms, int64_t n_systems) {
  check(index, torch::kInt64, "index");
  check(system, torch::kInt64, "system");
  check(shifts, torch::kFloat64, "shifts");
  auto d_positions = torch::zeros({n_atoms, 3}, g.options());
  auto moments = torch::zeros({n_systems, 3, 3}, g.options());
  AT_DISPATCH_FLOATING_TYPES(g.scalar_type(), "scatter_edge_gradient", [&] {
    check(g, g.scalar_type(), "g");
    scatter_impl<scalar_t>(g.data_ptr<scalar_t>(), index.data_ptr<int64_t>(), index.data_ptr<int64_t>() + index.size(1),
                           shifts.data_ptr<double>(), system.data_ptr<int64_t>(), index.size(1),
                           d_positions.data_ptr<scalar_t>(), moments.data_ptr<scalar_t>());
  });
  return {d_positions, moments};
}
