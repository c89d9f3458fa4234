/* cpuhog's loop (spin.S). */
#include <stdint.h>
uint64_t hog_spin(uint64_t n, uint64_t state);
