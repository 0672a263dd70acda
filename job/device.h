// --device: the processor the ranks train on (the choice itself: gpu_placement.h).
#pragma once

namespace dpt::job {

// automatic takes the GPUs when every rank has one of its own, else the CPU.
enum class Device { cpu, cuda, automatic };
const char* device_name(Device d);  // "cpu", "cuda", "auto"

}  // namespace dpt::job
