// Command-line harness of the emulated CUDA kernels (warp_emulation.h):
//   kernel_harness INPUT OUTPUT
// INPUT (binary, little-endian): int64 dtype_bytes (8: double, 4: float), int64 index_bits (32|64),
// int64 N, S, M, D, Lq, L, P; int64 lengths[L], starts[L]; then in the dtype: value[N*S*M*D],
// locations[N*Lq*M*L*P], weights[N*Lq*M*L*P], grad_output[N*Lq*M*D].
// OUTPUT: in the dtype: output[N*Lq*M*D], then for the atomic and the deterministic backward each:
// grad_value[N*S*M*D], grad_locations[...], grad_weights[...].
#include "warp_emulation.h"

#include "ms_deform_attn_1d_kernels.cuh"

#include <cstdio>
#include <fstream>
#include <stdexcept>
#include <string>
#include <type_traits>

using namespace tp2detr_ops::cuda;

template <typename T>
std::vector<T> read(std::ifstream& in, int64_t count) {
  std::vector<T> values(static_cast<size_t>(count));
  in.read(reinterpret_cast<char*>(values.data()), static_cast<std::streamsize>(count * sizeof(T)));
  if (!in) throw std::runtime_error("input file too short");
  return values;
}

template <typename T>
void write(std::ofstream& out, const std::vector<T>& values) {
  out.write(reinterpret_cast<const char*>(values.data()), static_cast<std::streamsize>(values.size() * sizeof(T)));
}

template <typename T, typename index_t>
void run(std::ifstream& in, std::ofstream& out, const int64_t* dims) {
  const int64_t N = dims[0], S = dims[1], M = dims[2], D = dims[3], Lq = dims[4], L = dims[5], P = dims[6];
  const auto lengths = read<int64_t>(in, L);
  const auto starts = read<int64_t>(in, L);
  const auto value = read<T>(in, N * S * M * D);
  const auto locations = read<T>(in, N * Lq * M * L * P);
  const auto weights = read<T>(in, N * Lq * M * L * P);
  const auto grad_output = read<T>(in, N * Lq * M * D);
  const index_t n = N, s = S, m = M, d = D, lq = Lq, l = L, p = P;

  std::vector<T> output(static_cast<size_t>(N * Lq * M * D), T(-7));  // every element must be written
  warp_emulation::launch_one_warp([&] {
    forward_kernel<T, T, index_t>(value.data(), lengths.data(), starts.data(), locations.data(),
                                  weights.data(), output.data(), n, s, m, d, lq, l, p);
  });
  write(out, output);

  for (const bool atomic : {true, false}) {
    std::vector<T> grad_value(value.size(), T(0));
    std::vector<T> grad_locations(locations.size(), T(-7)), grad_weights(weights.size(), T(-7));
    warp_emulation::launch_one_warp([&] {
      auto sample_kernel = [&](auto atomic_tag) {
        backward_sample_kernel<T, T, index_t, decltype(atomic_tag)::value>(
            value.data(), lengths.data(), starts.data(), locations.data(), weights.data(), grad_output.data(),
            grad_value.data(), grad_locations.data(), grad_weights.data(), n, s, m, d, lq, l, p);
      };
      if (atomic) {
        sample_kernel(std::true_type{});
      } else {
        sample_kernel(std::false_type{});
      }
    });
    if (!atomic) {
      warp_emulation::launch_one_warp([&] {
        value_grad_deterministic_kernel<T, T>(lengths.data(), starts.data(), locations.data(), weights.data(),
                                              grad_output.data(), grad_value.data(), N, S, M, D, Lq, L, P);
      });
    }
    write(out, grad_value);
    write(out, grad_locations);
    write(out, grad_weights);
  }
}

int main(int argc, char** argv) {
  if (argc != 3) {
    std::fprintf(stderr, "usage: kernel_harness INPUT OUTPUT\n");
    return 2;
  }
  try {
    std::ifstream in(argv[1], std::ios::binary);
    std::ofstream out(argv[2], std::ios::binary);
    const auto header = read<int64_t>(in, 9);
    const int64_t* dims = header.data() + 2;
    if (header[0] == 8 && header[1] == 32) run<double, int32_t>(in, out, dims);
    else if (header[0] == 8 && header[1] == 64) run<double, int64_t>(in, out, dims);
    else if (header[0] == 4 && header[1] == 32) run<float, int32_t>(in, out, dims);
    else if (header[0] == 4 && header[1] == 64) run<float, int64_t>(in, out, dims);
    else throw std::runtime_error("unsupported dtype / index width");
  } catch (const std::exception& err) {
    std::fprintf(stderr, "kernel_harness: %s\n", err.what());
    return 1;
  }
  return 0;
}
