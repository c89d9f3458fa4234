/* cpubench's loops (loops.S), declared for Swift through GuestKit.h. */
#include <stdint.h>
uint64_t bench_alu(uint64_t n);
void bench_copy(void *dst, const void *src, uint64_t qwords);
uint64_t bench_sieve(uint8_t *flags, uint64_t size, uint64_t counters[2]);
uint64_t bench_calls(uint64_t n);
uint64_t bench_dispatch(uint64_t n, const uint8_t program[256]);
