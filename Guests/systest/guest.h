/* systest's assembly (entry.S) and the privileged one-liners it needs. */
#include <stdint.h>

extern const uint64_t exception_stubs[22];
extern const uint64_t exc_64_address, exc_65_address;
extern uint64_t syscall_return_with_iret;
extern uint64_t probe_fixup, syscall_seen_cs, syscall_saved_rflags, syscall_saved_rip;
uint64_t probe_read(uint64_t address);
uint64_t probe_write(uint64_t address, uint64_t value);
uint64_t probe_call(uint64_t address);
uint64_t probe_divide_by_zero(void);
uint64_t probe_ud2(void);
void probe_int3(void);
uint64_t probe_wrmsr(uint32_t msr, uint64_t value);
uint64_t probe_rdmsr(uint32_t msr);
uint64_t probe_rdpmc(uint32_t counter);
uint64_t probe_rdtscp(uint64_t *aux);
uint64_t probe_int_0x40(void);
uint64_t probe_int_0x41(void);
uint64_t probe_syscall(void);
void syscall_entry(void);
extern char probe_divide_instruction[], probe_ud2_instruction[], probe_int3_next[], probe_int_0x40_instruction[];

static inline uint64_t st_read_cr0(void) { uint64_t v; __asm__ volatile("mov %%cr0, %0" : "=r"(v)); return v; }
static inline void st_write_cr0(uint64_t v) { __asm__ volatile("mov %0, %%cr0" : : "r"(v) : "memory"); }
static inline uint64_t st_read_cr2(void) { uint64_t v; __asm__ volatile("mov %%cr2, %0" : "=r"(v)); return v; }
static inline uint64_t st_read_cr3(void) { uint64_t v; __asm__ volatile("mov %%cr3, %0" : "=r"(v)); return v; }
static inline void st_invlpg(uint64_t a) { __asm__ volatile("invlpg (%0)" : : "r"(a) : "memory"); }
static inline uint64_t st_rdmsr(uint32_t msr) {
    uint32_t lo, hi; __asm__ volatile("rdmsr" : "=a"(lo), "=d"(hi) : "c"(msr)); return ((uint64_t)hi << 32) | lo;
}
static inline void st_wrmsr(uint32_t msr, uint64_t v) {
    __asm__ volatile("wrmsr" : : "c"(msr), "a"((uint32_t)v), "d"((uint32_t)(v >> 32)));
}
static inline void st_lidt(const void *idtr) { __asm__ volatile("lidt (%0)" : : "r"(idtr) : "memory"); }
static inline uint64_t st_rdtsc(void) {
    uint32_t lo, hi; __asm__ volatile("rdtsc" : "=a"(lo), "=d"(hi)); return ((uint64_t)hi << 32) | lo;
}
static inline uint64_t st_read_cr4(void) { uint64_t v; __asm__ volatile("mov %%cr4, %0" : "=r"(v)); return v; }
static inline void st_write_cr4(uint64_t v) { __asm__ volatile("mov %0, %%cr4" : : "r"(v) : "memory"); }
static inline uint64_t st_read_rflags(void) { uint64_t v; __asm__ volatile("pushfq; popq %0" : "=r"(v)); return v; }

/* Addresses of assembly labels, as integers (Swift cannot import incomplete arrays). */
static inline uint64_t st_divide_instruction(void) { return (uint64_t)probe_divide_instruction; }
static inline uint64_t st_ud2_instruction(void) { return (uint64_t)probe_ud2_instruction; }
static inline uint64_t st_int3_next(void) { return (uint64_t)probe_int3_next; }
static inline uint64_t st_exception_stub(int vector) { return exception_stubs[vector]; }
static inline uint64_t st_syscall_entry(void) { return (uint64_t)&syscall_entry; }
static inline uint64_t st_int_0x40_instruction(void) { return (uint64_t)probe_int_0x40_instruction; }

/* Issue 15 items 5 and 9: NMIs and IPIs through the local APIC, APIC disable, I/O APIC ID,
 * port 0x92 (APICChecks.swift, apic.S). */
extern uint64_t apic_nmi_count, apic_nmi_depth, apic_nmi_nested, apic_nmi_resend, apic_nmi_icr_high;
extern uint64_t apic_fixed_count;
void apic_nmi_handler(void);
void apic_fixed_handler(void);
static inline uint64_t st_apic_nmi_handler(void) { return (uint64_t)&apic_nmi_handler; }
static inline uint64_t st_apic_fixed_handler(void) { return (uint64_t)&apic_fixed_handler; }
static inline uint64_t st_idt_base(void) {
    struct __attribute__((packed)) { uint16_t limit; uint64_t base; } idtr;
    __asm__ volatile("sidt %0" : "=m"(idtr));
    return idtr.base;
}
static inline void st_cli(void) { __asm__ volatile("cli" ::: "memory"); }
static inline void st_sti(void) { __asm__ volatile("sti" ::: "memory"); }
static inline uint64_t st_load64(const uint64_t *p) { return __atomic_load_n(p, __ATOMIC_SEQ_CST); }
static inline void st_store64(uint64_t *p, uint64_t v) { __atomic_store_n(p, v, __ATOMIC_SEQ_CST); }
/* Issue 15 item 7: compatibility-mode checks (CompatChecks.swift, compat.S). */
extern uint64_t compat_obs[24], compat_return_with_iret, compat_sysenter_return;
void compat_run(uint64_t entry, uint64_t fixup);
uint64_t compat_far_jump_to_tss(void);
uint64_t compat_far_call_to_task_gate(void);
uint64_t compat_iretq_with_nt(void);
void compat_cstar_entry(void);
void compat_sysenter_entry(void);
extern char compat_fixup[], compat_mode_probe[], compat_syscall_probe[], compat_syscall_instruction[],
    compat_after_syscall[], compat_sysenter_probe[], compat_sysenter_instruction[], compat_after_sysenter[],
    compat_int_probe[], compat_int_instruction[], compat_callgate_probe[], compat_callgate_instruction[];
void compat_callgate_entry(void);
/* The address of a compat.S label, by number (Swift cannot import incomplete arrays). */
static inline uint64_t compat_label(int which) {
    switch (which) {
    case 0: return (uint64_t)compat_fixup;
    case 1: return (uint64_t)compat_mode_probe;
    case 2: return (uint64_t)compat_syscall_probe;
    case 3: return (uint64_t)compat_syscall_instruction;
    case 4: return (uint64_t)compat_after_syscall;
    case 5: return (uint64_t)compat_sysenter_probe;
    case 6: return (uint64_t)compat_sysenter_instruction;
    case 7: return (uint64_t)compat_after_sysenter;
    case 8: return (uint64_t)compat_int_probe;
    case 9: return (uint64_t)compat_int_instruction;
    case 10: return (uint64_t)&compat_cstar_entry;
    case 12: return (uint64_t)compat_callgate_probe;
    case 13: return (uint64_t)compat_callgate_instruction;
    case 14: return (uint64_t)&compat_callgate_entry;
    case 11: return (uint64_t)&compat_sysenter_entry;
    default: return 0;
    }
}
static inline uint64_t compat_observed(int slot) { return compat_obs[slot]; }
static inline void compat_clear(void) { for (int i = 0; i < 24; i++) compat_obs[i] = 0; }
static inline void compat_lgdt(uint16_t limit, uint64_t base) {
    struct __attribute__((packed)) { uint16_t limit; uint64_t base; } gdtr = { limit, base };
    __asm__ volatile("lgdt %0" : : "m"(gdtr) : "memory");
}
static inline uint64_t compat_gdt_base(void) {
    struct __attribute__((packed)) { uint16_t limit; uint64_t base; } gdtr;
    __asm__ volatile("sgdt %0" : "=m"(gdtr));
    return gdtr.base;
}
/* Issue 15 item 4: debug registers and single-stepping (debug.S, DebugChecks.swift). */
extern uint64_t db_count, db_first_rip, db_first_rflags, db_last_rip, db_last_rflags;
extern uint64_t db_dr6, db_dr7, db_handler_rflags, ud_rflags, bp_counter, watched;
void debug_db_handler(void);
void debug_ud_handler(void);
void debug_ud2(void);
uint64_t debug_idt_base(void);
uint64_t debug_read_dr(int n);
uint64_t debug_write_dr(int n, uint64_t value);
uint64_t debug_general_detect(void);
void debug_bp_target(void);
void debug_write_watched(void);
uint32_t debug_read_watched(void);
uint32_t debug_read_watched_high(void);
void debug_write_beside(void);
void debug_single_step(void);
void debug_int3_step(void);
extern char debug_gd_instruction[], debug_after_write[], debug_after_read[], debug_ss_second[], debug_ss_end[];
extern char debug_int3_step_trap[], debug_read_dr4_instruction[], debug_after_read_high[];
static inline uint64_t dbg_db_handler(void) { return (uint64_t)&debug_db_handler; }
static inline uint64_t dbg_ud_handler(void) { return (uint64_t)&debug_ud_handler; }
static inline uint64_t dbg_bp_target(void) { return (uint64_t)&debug_bp_target; }
static inline uint64_t dbg_watched(void) { return (uint64_t)&watched; }
static inline uint64_t dbg_gd_instruction(void) { return (uint64_t)debug_gd_instruction; }
static inline uint64_t dbg_after_write(void) { return (uint64_t)debug_after_write; }
static inline uint64_t dbg_after_read(void) { return (uint64_t)debug_after_read; }
static inline uint64_t dbg_after_read_high(void) { return (uint64_t)debug_after_read_high; }
static inline uint64_t dbg_ss_second(void) { return (uint64_t)debug_ss_second; }
static inline uint64_t dbg_ss_end(void) { return (uint64_t)debug_ss_end; }
static inline uint64_t dbg_int3_step_trap(void) { return (uint64_t)debug_int3_step_trap; }
static inline uint64_t dbg_read_dr4_instruction(void) { return (uint64_t)debug_read_dr4_instruction; }
