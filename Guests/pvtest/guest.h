/* pvtest's assembly (entry.S): a round trip to CPL3 that comes back through int3 (a DPL3 gate on vector 3). */
#include <stdint.h>
/* Runs fn() at CPL3 (IOPL 3, IF = 0) on `stack_top`; fn ends with pt_return(value), which
 * comes back here (int3 to CPL0) and returns that value. */
uint64_t pt_call_user(void (*fn)(void), uint64_t stack_top);
void pt_return(uint64_t value) __attribute__((noreturn));
void pt_syscall_entry(void);
static inline uint64_t pt_syscall_entry_address(void) { return (uint64_t)&pt_syscall_entry; }
