/* The hpet guest's MMIO and memory accesses of the widths it checks. */
#include <stdint.h>

static inline uint64_t hp_mmio_read64(uint64_t address) { return *(volatile uint64_t *)address; }
static inline void hp_mmio_write64(uint64_t address, uint64_t v) { *(volatile uint64_t *)address = v; }
static inline uint8_t hp_peek8(uint64_t address) { return *(volatile uint8_t *)address; }
