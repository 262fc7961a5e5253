// Python bindings of the native engine. The puzzle engine adds its functions here.
#include <nanobind/nanobind.h>
#include <nanobind/stl/string.h>

#include <string>

namespace nb = nanobind;

NB_MODULE(_native, m) {
    m.doc() = "fastmdm native engine (C++17)";
    m.def("compiler", []() {
#if defined(__clang__)
        return std::string("clang ") + __clang_version__;
#elif defined(__GNUC__)
        return std::string("gcc ") + __VERSION__;
#else
        return std::string("unknown");
#endif
    }, "The compiler that built this module.");
}
