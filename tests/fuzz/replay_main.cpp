// Replays a fuzzing corpus through LLVMFuzzerTestOneInput without libFuzzer, so that ctest
// checks every committed input with whatever compiler (and sanitizers) the build uses.
// Usage: rnnsweep_fuzz_replay DIR|FILE...; fails when it finds no input (a wrong path would
// otherwise pass without testing anything).
#include <algorithm>
#include <cstdint>
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <iterator>
#include <string>
#include <vector>

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size);

int main(int argc, char** argv) {
  namespace fs = std::filesystem;
  std::vector<fs::path> inputs;
  for (int i = 1; i < argc; ++i) {
    if (fs::is_directory(argv[i])) {
      for (const auto& e : fs::directory_iterator(argv[i]))
        if (e.is_regular_file()) inputs.push_back(e.path());
    } else {
      inputs.push_back(argv[i]);
    }
  }
  std::sort(inputs.begin(), inputs.end());  // the same order on every machine
  if (inputs.empty()) {
    std::fprintf(stderr, "rnnsweep_fuzz_replay: no inputs (usage: rnnsweep_fuzz_replay DIR|FILE...)\n");
    return 1;
  }
  for (const auto& p : inputs) {
    std::ifstream in(p, std::ios::binary);
    if (!in) {
      std::fprintf(stderr, "rnnsweep_fuzz_replay: cannot read %s\n", p.c_str());
      return 1;
    }
    const std::string bytes((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
    // a finding aborts inside, after naming itself; name the input first
    std::fprintf(stderr, "%s\n", p.c_str());
    LLVMFuzzerTestOneInput(reinterpret_cast<const std::uint8_t*>(bytes.data()), bytes.size());
  }
  std::printf("rnnsweep_fuzz_replay: %zu inputs, no finding\n", inputs.size());
  return 0;
}
