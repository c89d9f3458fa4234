// Runs x86-64 code snippets natively on the host CPU, for differential tests of the software
// CPU. Snippets run at CPL3 in this process, in a fixed-address RWX region that also holds a
// data area and a stack, so the interpreter can be given the very same addresses.
#ifndef CX86NATIVE_H
#define CX86NATIVE_H

#include <stddef.h>
#include <stdint.h>

/// Registers in and out of a snippet. `gpr` is in encoding order (rAX, rCX, rDX, rBX, rSP,
/// rBP, rSI, rDI, r8 ... r15). Only CF PF AF ZF SF DF OF of `rflags` should be set on input.
/// `fx` is the x87/MMX/SSE state as FXSAVE64 lays it out (loaded with FXRSTOR64 before the
/// snippet and stored with FXSAVE64 after it), except that XMM0-15 come from and go to `xmm`.
/// When the snippet faults, `trap` is the exception vector (the kernel's trap number), `error`
/// its error code, `fault_rip` the faulting instruction, and `fault_fx` the FPU state then.
typedef struct {
    uint64_t gpr[16];
    uint64_t rflags;
    uint64_t xmm[16][2];
    uint64_t reserved;
    uint8_t fx[512] __attribute__((aligned(16)));
    int32_t trap;
    uint32_t error;
    uint64_t fault_rip;
    uint8_t fault_fx[512] __attribute__((aligned(16)));
} CX86State;

/// Region layout (offsets from the base).
#define CX86_CODE_OFFSET 0x0000u
#define CX86_DATA_OFFSET 0x1000u
#define CX86_DATA_SIZE 0x3000u
#define CX86_STACK_TOP_OFFSET 0xf000u
#define CX86_REGION_SIZE 0x10000u

/// Maps the region once (at a low fixed address, so guest RAM of a few MiB can mirror it);
/// returns its base, or 0 when no candidate address could be mapped.
uint64_t cx86_region_base(void);

/// Copies `length` code bytes to the code area, loads `state`, runs the bytes, and stores the
/// registers back into `state`. Returns 0, or the signal the snippet raised (SIGFPE for #DE,
/// #MF, #XM, SIGILL for #UD, SIGSEGV/SIGBUS for #GP/#PF/#AC), in which case only `trap`,
/// `error`, `fault_rip` and `fault_fx` of `state` change. The host's own FPU state is saved
/// and restored around the snippet. Serialized: safe to call from several threads.
int cx86_run(const uint8_t *code, size_t length, CX86State *state);

#endif
