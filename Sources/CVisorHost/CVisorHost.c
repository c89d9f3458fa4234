// Header-only module: see include/CVisorHost.h.
