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

/* In Boot/multiboot.S: iretq to `entry` at CPL3 with IOPL 3 on the user stack. */
void guestkit_enter_user(void (*entry)(void)) __attribute__((noreturn));

/* A guest's own C or assembly functions, declared in its directory's guest.h. */
#if __has_include("guest.h")
#include "guest.h"
#endif

/* Linker-script symbols. */
extern char __image_start[];
extern char __image_end[];

#endif
