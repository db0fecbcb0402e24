#pragma once

// The lowest index reported by any thread of a parallel loop, e.g. the first invalid edge: the
// CPU kernels check values as they read them and raise once the loop has finished, naming the
// same element whatever the thread count.

#include <atomic>
#include <cstdint>

namespace refine_fast {

class FirstIndex {
 public:
  explicit FirstIndex(int64_t none) : none_(none), value_(none) {}

  void report(int64_t i) {
    int64_t current = value_.load();
    while (i < current && !value_.compare_exchange_weak(current, i)) {
    }
  }

  bool found() const { return value_.load() != none_; }
  int64_t get() const { return value_.load(); }

 private:
  const int64_t none_;
  std::atomic<int64_t> value_;
};

}  // namespace refine_fast
