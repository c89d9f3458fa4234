// CX86Atomics is header-only; this file gives SwiftPM a source to build.
#include "CX86Atomics.h"
