// Makes the library importable as the Python module sinsim_ext._C; importing
// it runs the static TORCH_LIBRARY registrations in core/ops.cpp. Built by
// setup.py only (the CMake build produces a plain shared library).
#include <Python.h>

extern "C" {
PyObject* PyInit__C(void) {
  static struct PyModuleDef module_def = {PyModuleDef_HEAD_INIT, "_C", nullptr, -1, nullptr};
  return PyModule_Create(&module_def);
}
}
