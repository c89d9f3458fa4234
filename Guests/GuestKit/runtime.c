/*
 * The few C library functions Embedded Swift code calls: memory primitives and
 * a bump allocator. putchar lives in Swift (Console.swift) next to the UART.
 * Compiled with -ffreestanding so clang does not turn these loops into calls
 * to themselves.
 */
#include <stddef.h>
#include <stdint.h>

void *memset(void *dst, int c, size_t n) {
    void *d = dst;
    __asm__ volatile("rep stosb" : "+D"(d), "+c"(n) : "a"(c) : "memory");
    return dst;
}

void *memcpy(void *dst, const void *src, size_t n) {
    void *d = dst;
    __asm__ volatile("rep movsb" : "+D"(d), "+S"(src), "+c"(n) : : "memory");
    return dst;
}

void *memmove(void *dst, const void *src, size_t n) {
    unsigned char *d = dst;
    const unsigned char *s = src;
    if (d == s || n == 0) return dst;
    if (d < s || d >= s + n) return memcpy(dst, src, n);
    /* Overlapping, destination above source: copy backwards. */
    d += n - 1;
    s += n - 1;
    __asm__ volatile("std\n\trep movsb\n\tcld" : "+D"(d), "+S"(s), "+c"(n) : : "memory");
    return dst;
}

int memcmp(const void *a, const void *b, size_t n) {
    const unsigned char *x = a, *y = b;
    for (size_t i = 0; i < n; i++) {
        if (x[i] != y[i]) return x[i] < y[i] ? -1 : 1;
    }
    return 0;
}

size_t strlen(const char *s) {
    size_t n = 0;
    while (s[n]) n++;
    return n;
}

/* Bump allocator over the heap the linker script reserves (not zeroed);
 * free() does nothing. Guests are short-lived. Safe on several CPUs at once: the
 * bump is a compare-and-swap (lock cmpxchg). */
extern unsigned char __heap_start[], __heap_end[];
static size_t heap_used;

int posix_memalign(void **out, size_t alignment, size_t size) {
    if (alignment < 16) alignment = 16;
    if (alignment & (alignment - 1)) return 22; /* EINVAL */
    size_t heap_size = (size_t)(__heap_end - __heap_start);
    size_t used = __atomic_load_n(&heap_used, __ATOMIC_RELAXED);
    size_t start;
    do {
        start = (used + alignment - 1) & ~(alignment - 1);
        if (start > heap_size || size > heap_size - start) return 12; /* ENOMEM */
    } while (!__atomic_compare_exchange_n(&heap_used, &used, start + size, 0,
                                          __ATOMIC_SEQ_CST, __ATOMIC_RELAXED));
    *out = __heap_start + start;
    return 0;
}

void *malloc(size_t size) {
    void *p;
    return posix_memalign(&p, 16, size) == 0 ? p : NULL;
}

void free(void *p) { (void)p; }

/* Called if the Swift runtime traps through abort(). */
extern void guestkit_exit(uint32_t status) __attribute__((noreturn));
void abort(void) { guestkit_exit(0x7f); }
