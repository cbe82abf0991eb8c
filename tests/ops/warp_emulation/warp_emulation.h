// Runs the op's CUDA kernels (ops/csrc/ms_deform_attn_1d_kernels.cuh) on the CPU, one warp at a
// time, so that their logic is tested where no GPU is at hand. The warp's 32 lanes are coroutines
// (ucontext) of one host thread, resumed in turn by a scheduler; a shuffle writes the lane's value
// to a shared slot and yields, then reads its source lane's slot and yields again. Every lane
// thus sees every other lane's value of the same shuffle: the lockstep semantics of __shfl_sync
// with a full mask, which requires all 32 lanes to call it in the same order. A kernel that breaks
// that rule (a lane finishes while others still shuffle) is reported as an error. atomicAdd is a
// plain add (one host thread). Only the CUDA features the kernels use are provided.
#pragma once

#include <ucontext.h>

#include <cmath>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <functional>
#include <vector>

#define __global__
#define __device__
#define __forceinline__ inline

struct EmulatedDim3 {
  unsigned int x = 0, y = 0, z = 0;
};

inline EmulatedDim3 threadIdx;  // the running lane's (set by the scheduler before resuming it)
inline EmulatedDim3 blockIdx;
inline EmulatedDim3 blockDim{32, 1, 1};
inline EmulatedDim3 gridDim{1, 1, 1};

namespace warp_emulation {

constexpr int kLanes = 32;

constexpr size_t kStackBytes = 256 * 1024;

struct Warp {
  ucontext_t scheduler;
  ucontext_t lanes[kLanes];
  std::vector<char> stacks[kLanes];
  bool finished[kLanes] = {};
  long yields[kLanes] = {};
  alignas(8) unsigned char slots[kLanes][8];
  const std::function<void()>* kernel = nullptr;
};

inline Warp* current_warp = nullptr;

inline int current_lane() { return static_cast<int>(threadIdx.x) % kLanes; }

inline void yield_to_scheduler() {
  Warp& warp = *current_warp;
  const int lane = current_lane();
  ++warp.yields[lane];
  swapcontext(&warp.lanes[lane], &warp.scheduler);
}

template <typename T>
T exchange(T value, int source_lane) {
  static_assert(sizeof(T) <= 8, "a shuffled value has at most 8 bytes");
  Warp& warp = *current_warp;
  std::memcpy(warp.slots[current_lane()], &value, sizeof(T));
  yield_to_scheduler();  // every lane has written
  T result;
  std::memcpy(&result, warp.slots[source_lane & (kLanes - 1)], sizeof(T));
  yield_to_scheduler();  // every lane has read
  return result;
}

inline void lane_entry() {
  Warp& warp = *current_warp;
  (*warp.kernel)();
  warp.finished[current_lane()] = true;
  swapcontext(&warp.lanes[current_lane()], &warp.scheduler);
}

// Run `kernel()` as one block of one warp (gridDim = 1, blockDim = 32).
inline void launch_one_warp(const std::function<void()>& kernel) {
  Warp warp;
  warp.kernel = &kernel;
  current_warp = &warp;
  gridDim = {1, 1, 1};
  blockDim = {kLanes, 1, 1};
  blockIdx = {0, 0, 0};
  for (int lane = 0; lane < kLanes; ++lane) {
    warp.stacks[lane].resize(kStackBytes);
    getcontext(&warp.lanes[lane]);
    warp.lanes[lane].uc_stack.ss_sp = warp.stacks[lane].data();
    warp.lanes[lane].uc_stack.ss_size = kStackBytes;
    warp.lanes[lane].uc_link = nullptr;
    makecontext(&warp.lanes[lane], lane_entry, 0);
  }
  for (;;) {
    int running = 0;
    for (int lane = 0; lane < kLanes; ++lane) {
      if (warp.finished[lane]) continue;
      threadIdx = {static_cast<unsigned int>(lane), 0, 0};
      swapcontext(&warp.scheduler, &warp.lanes[lane]);
      running += warp.finished[lane] ? 0 : 1;
    }
    if (running == 0) break;
    for (int lane = 1; lane < kLanes; ++lane) {
      if (warp.finished[lane] != warp.finished[0] || warp.yields[lane] != warp.yields[0]) {
        std::fprintf(stderr, "warp emulation: lanes diverged at a shuffle (lane %d: %ld yields%s, lane 0: %ld%s)\n",
                     lane, warp.yields[lane], warp.finished[lane] ? ", finished" : "", warp.yields[0],
                     warp.finished[0] ? ", finished" : "");
        std::exit(3);
      }
    }
  }
  current_warp = nullptr;
}

}  // namespace warp_emulation

template <typename T>
T __shfl_sync(unsigned int /*mask*/, T value, int source_lane) {
  return warp_emulation::exchange(value, source_lane);
}

template <typename T>
T __shfl_xor_sync(unsigned int /*mask*/, T value, int lane_mask) {
  return warp_emulation::exchange(value, warp_emulation::current_lane() ^ lane_mask);
}

template <typename T>
T atomicAdd(T* address, T value) {
  const T old = *address;
  *address = old + value;
  return old;
}
