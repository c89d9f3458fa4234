/* emufail's probes (probes.S): each runs one instruction at CPL0. A fault's handler records the
 * vector in `ef_vector` and resumes at `ef_fixup`, so a probe returns either way. */
#include <stdint.h>

extern uint64_t ef_fixup;
extern uint64_t ef_vector;
extern uint64_t ef_error;
extern uint64_t ef_rip;
extern char ef_int3_next[], ef_int80_next[];

void ef_clwb(const void *address);
void ef_rdpru(void);
void ef_xgetbv(void);
/* AC after `stac` then `clac` (bit 18 of RFLAGS), and after `stac` alone. */
uint64_t ef_clac(void);
uint64_t ef_stac(void);
/* AC after `clac` run with CR4.SMAP set just around it (call only where SMAP is offered: a
 * fault there could not be delivered, every page being a user page). */
uint64_t ef_clac_under_smap(void);
void ef_invpcid(uint64_t type, const void *descriptor);
void ef_vmcall(void);
void ef_vmmcall(void);
void ef_rdpmc_invalid(void);
void ef_int3(void);
void ef_int80(void);

static inline uint64_t ef_read_cr4(void) { uint64_t v; __asm__ volatile("mov %%cr4, %0" : "=r"(v)); return v; }
static inline void ef_write_cr4(uint64_t v) { __asm__ volatile("mov %0, %%cr4" : : "r"(v) : "memory"); }
static inline uint64_t ef_int3_next_address(void) { return (uint64_t)ef_int3_next; }
static inline uint64_t ef_int80_next_address(void) { return (uint64_t)ef_int80_next; }
