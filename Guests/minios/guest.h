/* minios's assembly (entry.S): the GDT/TSS load, the system call entry (int3), the kernel-stack switch,
 * the first entry of a task into user mode, and the user-side system call stub. */
#include <stdint.h>

void mos_syscall_entry(void);
void mos_task_start(void);
/* Saves the callee-saved registers on this stack, stores RSP in *save, switches to `next`. */
void mos_switch(uint64_t *save, uint64_t next);
/* User side: `int3` with rax = nr, rdi, rsi, rdx = a1..a3; returns rax. */
int64_t mos_sys(uint64_t nr, uint64_t a1, uint64_t a2, uint64_t a3);
/* The current task's kernel stack top (also in TSS.RSP0). */
extern uint64_t mos_kernel_rsp;
static inline uint64_t mos_syscall_entry_address(void) { return (uint64_t)&mos_syscall_entry; }
static inline uint64_t mos_task_start_address(void) { return (uint64_t)&mos_task_start; }
/* User side: n iterations of four register instructions; returns the new state. */
uint64_t mos_spin(uint64_t n, uint64_t state);
