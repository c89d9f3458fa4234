// Host atomics on raw addresses, for the software CPU's SMP guarantees: LOCK-prefixed
// read-modify-write instructions and XCHG on guest RAM, atomic A/D-bit updates in paging
// entries, and the machine-wide bitmaps the vCPUs share. Swift's Synchronization module makes
// atomics only from its own `Atomic` storage, not from an address inside guest RAM, hence C.
//
// Every function takes a pointer the caller has checked: inside a live mapping and naturally
// aligned for the width (the compiler builtins require both). All are sequentially consistent,
// which on x86 hosts is what a LOCK-prefixed instruction gives the guest anyway.

#ifndef CX86_ATOMICS_H
#define CX86_ATOMICS_H

#include <stdbool.h>
#include <stdint.h>

/// Compare-exchange: stores `desired` at `p` if it holds `expected`; true if it did.
static inline bool cx86_cas8(void *p, uint8_t expected, uint8_t desired) {
    return __atomic_compare_exchange_n((uint8_t *)p, &expected, desired, false, __ATOMIC_SEQ_CST, __ATOMIC_SEQ_CST);
}
static inline bool cx86_cas16(void *p, uint16_t expected, uint16_t desired) {
    return __atomic_compare_exchange_n((uint16_t *)p, &expected, desired, false, __ATOMIC_SEQ_CST, __ATOMIC_SEQ_CST);
}
static inline bool cx86_cas32(void *p, uint32_t expected, uint32_t desired) {
    return __atomic_compare_exchange_n((uint32_t *)p, &expected, desired, false, __ATOMIC_SEQ_CST, __ATOMIC_SEQ_CST);
}
static inline bool cx86_cas64(void *p, uint64_t expected, uint64_t desired) {
    return __atomic_compare_exchange_n((uint64_t *)p, &expected, desired, false, __ATOMIC_SEQ_CST, __ATOMIC_SEQ_CST);
}

/// Atomic loads.
static inline uint8_t cx86_load8(const void *p) { return __atomic_load_n((const uint8_t *)p, __ATOMIC_SEQ_CST); }
static inline uint16_t cx86_load16(const void *p) { return __atomic_load_n((const uint16_t *)p, __ATOMIC_SEQ_CST); }
static inline uint32_t cx86_load32(const void *p) { return __atomic_load_n((const uint32_t *)p, __ATOMIC_SEQ_CST); }
static inline uint64_t cx86_load64(const void *p) { return __atomic_load_n((const uint64_t *)p, __ATOMIC_SEQ_CST); }
/// A relaxed load: for hot-path checks of shared bitmaps, where a stale answer is allowed.
static inline uint64_t cx86_load64_relaxed(const void *p) {
    return __atomic_load_n((const uint64_t *)p, __ATOMIC_RELAXED);
}

/// Atomic OR / AND-NOT (bit sets and clears); return the previous value.
static inline uint32_t cx86_fetch_or32(void *p, uint32_t bits) {
    return __atomic_fetch_or((uint32_t *)p, bits, __ATOMIC_SEQ_CST);
}
static inline uint64_t cx86_fetch_or64(void *p, uint64_t bits) {
    return __atomic_fetch_or((uint64_t *)p, bits, __ATOMIC_SEQ_CST);
}
static inline uint64_t cx86_fetch_andnot64(void *p, uint64_t bits) {
    return __atomic_fetch_and((uint64_t *)p, ~bits, __ATOMIC_SEQ_CST);
}

#endif
