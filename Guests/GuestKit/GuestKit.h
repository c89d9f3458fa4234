/*
 * GuestKit's C side, imported into Swift with -import-objc-header.
 * Swift has no inline assembly, so every privileged or I/O instruction the
 * guests need is a tiny static inline function here.
 */
#ifndef GUESTKIT_H
#define GUESTKIT_H

#include <stdint.h>

/* Port I/O. */
static inline void gk_outb(uint16_t port, uint8_t v) { __asm__ volatile("outb %0, %1" : : "a"(v), "Nd"(port)); }
static inline void gk_outw(uint16_t port, uint16_t v) { __asm__ volatile("outw %0, %1" : : "a"(v), "Nd"(port)); }
static inline void gk_outl(uint16_t port, uint32_t v) { __asm__ volatile("outl %0, %1" : : "a"(v), "Nd"(port)); }
static inline uint8_t gk_inb(uint16_t port) { uint8_t v; __asm__ volatile("inb %1, %0" : "=a"(v) : "Nd"(port)); return v; }
static inline uint16_t gk_inw(uint16_t port) { uint16_t v; __asm__ volatile("inw %1, %0" : "=a"(v) : "Nd"(port)); return v; }
static inline uint32_t gk_inl(uint16_t port) { uint32_t v; __asm__ volatile("inl %1, %0" : "=a"(v) : "Nd"(port)); return v; }

/* `count` byte writes of `value` to `port` in a three-instruction loop
 * (out, dec, jnz): the exit benchmark's timed loop. count == 0 does nothing. */
static inline void gk_outb_repeat(uint16_t port, uint8_t value, uint64_t count) {
    if (count == 0) return;
    __asm__ volatile("1: outb %%al, %%dx\n\t"
                     "dec %%rcx\n\t"
                     "jnz 1b"
                     : "+c"(count) : "a"(value), "d"(port) : "memory", "cc");
}

/* CPUID leaf/subleaf; results in a[0..3] = EAX, EBX, ECX, EDX. */
static inline void gk_cpuid(uint32_t leaf, uint32_t subleaf, uint32_t regs[4]) {
    __asm__ volatile("cpuid"
                     : "=a"(regs[0]), "=b"(regs[1]), "=c"(regs[2]), "=d"(regs[3])
                     : "a"(leaf), "c"(subleaf));
}

static inline uint64_t gk_rdtsc(void) {
    uint32_t lo, hi;
    __asm__ volatile("rdtsc" : "=a"(lo), "=d"(hi));
    return ((uint64_t)hi << 32) | lo;
}

/* Current privilege level: the low two bits of CS. */
static inline uint32_t gk_cpl(void) {
    uint16_t cs;
    __asm__ volatile("mov %%cs, %0" : "=r"(cs));
    return cs & 3;
}

static inline void gk_cli(void) { __asm__ volatile("cli" ::: "memory"); }
static inline void gk_hlt(void) { __asm__ volatile("hlt" ::: "memory"); }
static inline void gk_pause(void) { __asm__ volatile("pause" ::: "memory"); }

/* Load the IDT register: base and limit (limit 0 = no vectors at all). */
static inline void gk_lidt(uint64_t base, uint16_t limit) {
    struct __attribute__((packed)) { uint16_t limit; uint64_t base; } idtr = { limit, base };
    __asm__ volatile("lidt %0" : : "m"(idtr) : "memory");
}

static inline void gk_int3(void) { __asm__ volatile("int3" ::: "memory"); }
static inline void gk_ud2(void) { __asm__ volatile("ud2" ::: "memory"); }

/* Interrupt flag. `gk_sti_hlt` is `sti; hlt` back to back: the STI shadow covers HLT, so an
 * interrupt that became pending while IF was 0 wakes the HLT instead of slipping in between
 * (a lost wake-up). It returns with IF = 1 after the handler ran. */
static inline void gk_sti(void) { __asm__ volatile("sti" ::: "memory"); }
static inline void gk_sti_hlt(void) { __asm__ volatile("sti; hlt" ::: "memory"); }
static inline uint64_t gk_read_rflags(void) { uint64_t v; __asm__ volatile("pushfq; popq %0" : "=r"(v) :: "memory"); return v; }
/* Saves IF and disables interrupts; `gk_irq_restore` sets IF back as it was. */
static inline uint64_t gk_irq_save(void) { uint64_t f = gk_read_rflags(); gk_cli(); return f; }
static inline void gk_irq_restore(uint64_t f) { if (f & (1u << 9)) gk_sti(); }

/* MSRs (CPL0). */
static inline uint64_t gk_rdmsr(uint32_t msr) {
    uint32_t lo, hi;
    __asm__ volatile("rdmsr" : "=a"(lo), "=d"(hi) : "c"(msr));
    return ((uint64_t)hi << 32) | lo;
}
static inline void gk_wrmsr(uint32_t msr, uint64_t v) {
    __asm__ volatile("wrmsr" : : "c"(msr), "a"((uint32_t)v), "d"((uint32_t)(v >> 32)) : "memory");
}
static inline uint64_t gk_read_cr2(void) { uint64_t v; __asm__ volatile("mov %%cr2, %0" : "=r"(v)); return v; }

/* a * b / c with a 128-bit intermediate (mul, div); all ones if the quotient overflows or c = 0. */
static inline uint64_t gk_muldiv64(uint64_t a, uint64_t b, uint64_t c) {
    uint64_t hi, lo;
    __asm__("mulq %3" : "=a"(lo), "=d"(hi) : "a"(a), "rm"(b) : "cc");
    if (hi >= c) return ~(uint64_t)0;
    uint64_t q, r;
    __asm__("divq %4" : "=a"(q), "=d"(r) : "a"(lo), "d"(hi), "rm"(c) : "cc");
    (void)r;
    return q;
}

/* 32-bit MMIO (the local APIC page): volatile, exactly one access each. */
static inline uint32_t gk_mmio_read32(uint64_t address) { return *(volatile uint32_t *)address; }
static inline void gk_mmio_write32(uint64_t address, uint32_t v) { *(volatile uint32_t *)address = v; }

/* Shared memory between CPUs and interrupt handlers: each is one access the compiler may not
 * merge, cache in a register or move across another (x86 is TSO; `lock` gives the atomics). */
static inline uint64_t gk_load64(const uint64_t *p) { return __atomic_load_n(p, __ATOMIC_SEQ_CST); }
static inline void gk_store64(uint64_t *p, uint64_t v) { __atomic_store_n(p, v, __ATOMIC_SEQ_CST); }
static inline uint32_t gk_load32(const uint32_t *p) { return __atomic_load_n(p, __ATOMIC_SEQ_CST); }
static inline void gk_store32(uint32_t *p, uint32_t v) { __atomic_store_n(p, v, __ATOMIC_SEQ_CST); }
/* lock xadd: returns the old value. */
static inline uint64_t gk_fetch_add64(uint64_t *p, uint64_t v) {
    __asm__ volatile("lock xaddq %0, %1" : "+r"(v), "+m"(*p) : : "memory", "cc");
    return v;
}
/* xchg with memory (implicitly locked): returns the old value. */
static inline uint32_t gk_exchange32(uint32_t *p, uint32_t v) {
    __asm__ volatile("xchgl %0, %1" : "+r"(v), "+m"(*p) : : "memory");
    return v;
}
/* Test-and-test-and-set spinlock on a 32-bit word (0 free, 1 held). */
static inline void gk_spin_lock(uint32_t *lock) {
    while (gk_exchange32(lock, 1) != 0) {
        while (__atomic_load_n(lock, __ATOMIC_RELAXED) != 0) gk_pause();
    }
}
static inline int gk_spin_trylock(uint32_t *lock) { return gk_exchange32(lock, 1) == 0; }
static inline void gk_spin_unlock(uint32_t *lock) { __atomic_store_n(lock, 0, __ATOMIC_RELEASE); }

/* ---------------------------------------------------------------- interrupts (GuestKit/isr.S)
 * 256 entry stubs, 16 bytes apart from `gk_isr_stubs`; each pushes a dummy error code where the
 * CPU pushes none, then the vector, then the caller-saved registers, and calls the handler in
 * `gk_vector_handlers[vector]` with a pointer to this frame (indices in `InterruptFrame`):
 *   r11 r10 r9 r8 rdi rsi rdx rcx rax | vector error | rip cs rflags rsp ss
 * After the handler, vectors 32-254 get an EOI to the local APIC; then iretq. */
typedef void (*gk_handler_t)(uint64_t *_Nonnull frame);
extern char gk_isr_stubs[];
extern gk_handler_t gk_vector_handlers[256];
extern uint8_t gk_idt[4096];
static inline uint64_t gk_isr_stub_address(uint32_t vector) { return (uint64_t)gk_isr_stubs + 16 * (uint64_t)vector; }
static inline void gk_set_vector_handler(uint32_t vector, gk_handler_t _Nullable h) { gk_vector_handlers[vector & 0xff] = h; }
static inline uint64_t gk_idt_address(void) { return (uint64_t)gk_idt; }

/* --------------------------------------------------------------------- SMP (GuestKit/smp.S)
 * The AP trampoline (copied to GK_TRAMPOLINE_BASE), per-CPU stacks and per-CPU data. */
#define GK_MAX_CPUS 32
#define GK_AP_STACK_SIZE 16384
#define GK_TRAMPOLINE_BASE 0x70000
extern char gk_trampoline_start[], gk_trampoline_end[], gk_trampoline_efer[];
extern char gk_ap_stacks[];
extern uint32_t gk_ap_next_index;
static inline uint64_t gk_trampoline_address(void) { return (uint64_t)gk_trampoline_start; }
static inline uint64_t gk_trampoline_size(void) { return (uint64_t)(gk_trampoline_end - gk_trampoline_start); }
static inline uint64_t gk_trampoline_efer_offset(void) { return (uint64_t)(gk_trampoline_efer - gk_trampoline_start); }

/* Per-CPU data, indexed by the CPU index (0 = the BSP, APs in order of arrival). */
typedef struct {
    uint64_t timer_fired;       /* set by GuestKit's timer handler */
    uint64_t timer_fire_tsc;    /* TSC at that handler's entry */
    uint64_t apic_id;
    uint64_t online;
    uint64_t timer_mode;        /* LVT timer mode last programmed (+1; 0 = never) */
    uint64_t user[3];           /* free for guests */
} gk_percpu_t;
extern gk_percpu_t gk_percpu[GK_MAX_CPUS];
static inline gk_percpu_t *_Nonnull gk_percpu_at(uint32_t index) { return &gk_percpu[index % GK_MAX_CPUS]; }
/* Field `field` (0 timer_fired ... 7 user[2]) of CPU `index`, for gk_load64/gk_store64. */
static inline uint64_t *_Nonnull gk_percpu_field(uint32_t index, uint32_t field) {
    return &((uint64_t *)gk_percpu_at(index))[field & 7];
}
/* The console's spinlock word and the count of CPUs online (smp.S). */
extern uint32_t gk_console_lock;
extern uint64_t gk_cpus_online;
/* This CPU's index, from its stack pointer: APs run on their own stacks in `gk_ap_stacks`
 * (index i on stack i - 1), everything else is the BSP. No memory or MMIO access needed. */
static inline uint32_t gk_cpu_index(void) {
    uint64_t rsp;
    __asm__ volatile("mov %%rsp, %0" : "=r"(rsp));
    uint64_t base = (uint64_t)gk_ap_stacks;
    if (rsp <= base || rsp > base + (uint64_t)(GK_MAX_CPUS - 1) * GK_AP_STACK_SIZE) return 0;
    return (uint32_t)((rsp - 1 - base) / GK_AP_STACK_SIZE) + 1;
}

/* ------------------------------------------------------- paravirtualization (GuestKit/pv.S)
 * See PV.swift. Every address below is guest-physical too (the identity map). */
extern uint8_t gk_hypercall_page[4096];
extern uint8_t gk_shared_info[4096];
int64_t gk_hypercall5(uint64_t nr, uint64_t a1, uint64_t a2, uint64_t a3, uint64_t a4, uint64_t a5);
void gk_upcall_entry(void);
void gk_pv_ap_start(void);
static inline uint64_t gk_hypercall_page_address(void) { return (uint64_t)gk_hypercall_page; }
static inline uint64_t gk_shared_info_address(void) { return (uint64_t)gk_shared_info; }
static inline uint64_t gk_upcall_entry_address(void) { return (uint64_t)&gk_upcall_entry; }
static inline uint64_t gk_pv_ap_start_address(void) { return (uint64_t)&gk_pv_ap_start; }

/* An event-channel handler: the port, and the interrupt frame when the upcall came through the
 * IDT (NULL when the events were found pending and dispatched in software). */
typedef void (*gk_port_handler_t)(uint32_t port, uint64_t *_Nullable frame);
extern gk_port_handler_t gk_port_handlers[1024];
extern uint8_t gk_port_cpu[1024];
extern uint32_t gk_pv_timer_port[32];
extern uint64_t gk_pv_console_length[32];
extern uint8_t gk_pv_console_buffer[32 * 256];
static inline void gk_set_port_handler(uint32_t port, gk_port_handler_t _Nullable h, uint32_t cpu) {
    gk_port_handlers[port & 1023] = h;
    gk_port_cpu[port & 1023] = (uint8_t)cpu;
}
static inline uint32_t gk_port_owner(uint32_t port) { return gk_port_cpu[port & 1023]; }
/* Calls the port's handler; returns 0 when it has none. */
static inline int gk_call_port_handler(uint32_t port, uint64_t *_Nullable frame) {
    gk_port_handler_t h = gk_port_handlers[port & 1023];
    if (!h) return 0;
    h(port, frame);
    return 1;
}
static inline uint32_t *_Nonnull gk_pv_timer_port_at(uint32_t cpu) { return &gk_pv_timer_port[cpu & 31]; }
static inline uint64_t *_Nonnull gk_pv_console_length_at(uint32_t cpu) { return &gk_pv_console_length[cpu & 31]; }
static inline uint8_t *_Nonnull gk_pv_console_buffer_at(uint32_t cpu) { return &gk_pv_console_buffer[(cpu & 31) * 256]; }

/* 64-bit atomics and bit operations on shared memory (the shared-info page). */
static inline uint64_t gk_exchange64(uint64_t *_Nonnull p, uint64_t v) {
    __asm__ volatile("xchgq %0, %1" : "+r"(v), "+m"(*p) : : "memory");
    return v;
}
static inline int gk_test_and_clear_bit64(uint64_t *_Nonnull p, uint32_t bit) {
    uint8_t old;
    __asm__ volatile("lock btrq %2, %1; setc %0" : "=q"(old), "+m"(*p) : "r"((uint64_t)(bit & 63)) : "memory", "cc");
    return old;
}
static inline void gk_set_bit64(uint64_t *_Nonnull p, uint32_t bit) {
    __asm__ volatile("lock btsq %1, %0" : "+m"(*p) : "r"((uint64_t)(bit & 63)) : "memory", "cc");
}
static inline void gk_clear_bit64(uint64_t *_Nonnull p, uint32_t bit) {
    __asm__ volatile("lock btrq %1, %0" : "+m"(*p) : "r"((uint64_t)(bit & 63)) : "memory", "cc");
}
static inline uint8_t gk_load8(const uint8_t *_Nonnull p) { return __atomic_load_n(p, __ATOMIC_SEQ_CST); }
static inline void gk_store8(uint8_t *_Nonnull p, uint8_t v) { __atomic_store_n(p, v, __ATOMIC_SEQ_CST); }
static inline void gk_compiler_barrier(void) { __asm__ volatile("" ::: "memory"); }

/* (a * mul) >> 32 with a 96-bit intermediate: the pvclock scaling. */
static inline uint64_t gk_mul_shift32(uint64_t a, uint32_t mul) {
    uint64_t hi, lo;
    __asm__("mulq %3" : "=a"(lo), "=d"(hi) : "a"(a), "rm"((uint64_t)mul) : "cc");
    return (hi << 32) | (lo >> 32);
}

static inline uint64_t gk_read_cr3(void) { uint64_t v; __asm__ volatile("mov %%cr3, %0" : "=r"(v)); return v; }
static inline uint64_t gk_read_cr4(void) { uint64_t v; __asm__ volatile("mov %%cr4, %0" : "=r"(v)); return v; }

/* The boot stub's GDT (Boot/multiboot.S): base and limit. */
extern char gdt[];
extern char gdt_limit[];
static inline uint64_t gk_boot_gdt_base(void) { return (uint64_t)gdt; }
/* gdt.S: LGDT, reload CS/DS/ES/SS from it, LTR 0x28. */
void gk_load_gdt_and_tss(const void *gdtr);
static inline uint64_t gk_boot_gdt_limit(void) { return (uint64_t)gdt_limit; }
static inline uint64_t gk_ap_stack_top(uint32_t index) { return (uint64_t)gk_ap_stacks + (uint64_t)index * GK_AP_STACK_SIZE; }

/* In Boot/multiboot.S: iretq to `entry` at CPL3 with IOPL 3 on the user stack; IF = 1 when
 * `interruptible` is non-zero (a TSS with RSP0 must be loaded), else IF = 0. */
void guestkit_enter_user(void (*entry)(void), uint64_t interruptible) __attribute__((noreturn));

/* A guest's own C or assembly functions, declared in its directory's guest.h. */
#if __has_include("guest.h")
#include "guest.h"
#endif

/* Linker-script symbols. */
extern char __image_start[];
extern char __image_end[];

#endif
