/* sensitive's probes (probes.S). */
#include <stdint.h>

extern uint64_t sn_fixup;
extern uint64_t sn_vector;
extern uint64_t sn_error;
extern uint64_t sn_cs;
extern uint64_t sn_user_obs;
extern char sn_kernel_stack_top[];
void sn_user_return(void);

/* Every probe at the caller's CPL, observations into `obs` (zeroed, 40 slots, below 4 GiB). */
void sn_probes(uint64_t *obs);
/* sn_probes(sn_user_obs) at CPL3 (IOPL 0, IF 0), returning at CPL0. */
void sn_run_user(void);

static inline uint64_t sn_kernel_stack_top_address(void) { return (uint64_t)sn_kernel_stack_top; }
static inline uint64_t sn_user_return_address(void) { return (uint64_t)&sn_user_return; }

/* The GDT register: limit and base, and loading a new one. */
static inline void sn_read_gdtr(uint16_t *limit, uint64_t *base) {
    struct __attribute__((packed)) { uint16_t limit; uint64_t base; } r;
    __asm__ volatile("sgdt %0" : "=m"(r));
    *limit = r.limit;
    *base = r.base;
}
static inline void sn_load_gdtr(uint16_t limit, uint64_t base) {
    struct __attribute__((packed)) { uint16_t limit; uint64_t base; } r = { limit, base };
    __asm__ volatile("lgdt %0" : : "m"(r) : "memory");
}
