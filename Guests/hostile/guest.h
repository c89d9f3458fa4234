/* hostile's assembly (hostile.S), declared for Swift through GuestKit.h. */
#include <stdint.h>

void ho_cli_spin(void) __attribute__((noreturn));
uint64_t ho_trap_burst(uint64_t count, uint64_t *_Nonnull state);
int64_t ho_raw_trap(uint64_t rax, uint64_t rdi, uint64_t rsi, uint64_t rdx, uint64_t r10, uint64_t r8);
void ho_outsb(uint16_t port, const uint8_t *_Nonnull bytes, uint64_t count);

uint64_t ho_divide_fault(void);
uint64_t ho_noncanonical_fault(void);
extern char ho_divide_resume[];
extern char ho_noncanonical_resume[];
static inline uint64_t ho_divide_resume_address(void) { return (uint64_t)ho_divide_resume; }
static inline uint64_t ho_noncanonical_resume_address(void) { return (uint64_t)ho_noncanonical_resume; }

/* Probes: a fault inside [ho_probes_start, ho_probes_end) resumes at ho_probe_fault (returns ~0). */
extern char ho_probes_start[], ho_probes_end[], ho_probe_fault[];
static inline uint64_t ho_probes_start_address(void) { return (uint64_t)ho_probes_start; }
static inline uint64_t ho_probes_end_address(void) { return (uint64_t)ho_probes_end; }
static inline uint64_t ho_probe_fault_address(void) { return (uint64_t)ho_probe_fault; }
uint64_t ho_load8(uint64_t address);
uint64_t ho_load16(uint64_t address);
uint64_t ho_load32(uint64_t address);
uint64_t ho_load64(uint64_t address);
uint64_t ho_store8(uint64_t address, uint64_t value);
uint64_t ho_store16(uint64_t address, uint64_t value);
uint64_t ho_store32(uint64_t address, uint64_t value);
uint64_t ho_store64(uint64_t address, uint64_t value);
uint64_t ho_copy_in(uint64_t ram, uint64_t address, uint64_t bytes);
uint64_t ho_copy_out(uint64_t address, uint64_t ram, uint64_t bytes);
uint64_t ho_fill(uint64_t address, uint64_t value, uint64_t qwords);
uint64_t ho_xadd(uint64_t address, uint64_t value);
uint64_t ho_cmpxchg(uint64_t address, uint64_t expected, uint64_t replacement);
uint64_t ho_xchg(uint64_t address, uint64_t value);
uint64_t ho_exec(uint64_t address);

/* xmodify's code page: four 8-byte slots of `mov $imm32, %eax; ret; nop; nop`. */
extern uint64_t ho_code_page[];
typedef uint32_t (*ho_slot_t)(void);
static inline uint32_t ho_call_slot(uint32_t slot) { return ((ho_slot_t)(void *)&ho_code_page[slot & 3])(); }
/* One aligned 8-byte store: the slot holds the old or the new pair, never a mix. */
static inline void ho_write_slot(uint32_t slot, uint64_t encoding) {
    __atomic_store_n(&ho_code_page[slot & 3], encoding, __ATOMIC_SEQ_CST);
}
static inline uint64_t ho_slot_encoding(uint32_t imm) {
    /* b8 imm32 c3 90 90, little-endian. */
    return 0xb8ull | ((uint64_t)imm << 8) | (0xc3ull << 40) | (0x90ull << 48) | (0x90ull << 56);
}
static inline void ho_serialize(void) {
    uint32_t a = 0, b, c = 0, d;
    __asm__ volatile("cpuid" : "+a"(a), "=b"(b), "+c"(c), "=d"(d) : : "memory");
}
static inline void ho_invlpg(uint64_t address) { __asm__ volatile("invlpg (%0)" : : "r"(address) : "memory"); }
static inline void ho_write_cr3(uint64_t v) { __asm__ volatile("mov %0, %%cr3" : : "r"(v) : "memory"); }
static inline void ho_sti_nop_cli(void) { __asm__ volatile("sti; nop; cli" ::: "memory"); }
/* The page-map level 4 entry 0 (the boot stub's PDPT), through CR3 and the identity map. */
static inline uint64_t *_Nonnull ho_boot_pdpt(void) {
    uint64_t cr3;
    __asm__ volatile("mov %%cr3, %0" : "=r"(cr3));
    uint64_t *pml4 = (uint64_t *)(cr3 & 0x000ffffffffff000ull);
    return (uint64_t *)(pml4[0] & 0x000ffffffffff000ull);
}
