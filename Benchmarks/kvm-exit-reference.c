/*
 * kvm-exit-reference: the exit round-trip cost of a lean /dev/kvm VMM, as a
 * reference for Visor's kvm engine.
 *
 *   cc -O2 -o kvm-exit-reference Benchmarks/kvm-exit-reference.c
 *   kvm-exit-reference path/to/exitbench.elf [n]      (n defaults to 100000)
 *
 * Boots Guests/exitbench (an ELF32 multiboot v1 image) in 64 MiB of guest RAM
 * with the multiboot register state, answers its port I/O, and prints
 *
 *   cpl0_ns_per_exit=<float>
 *   cpl3_ns_per_exit=<float>
 *
 * the time between phase markers divided by n. Protocol (Guests/README.md):
 *   0x511 out (32-bit): markers 1 = CPL0 loop starts, 2 = ended, 3 = CPL3 loop starts, 4 = ended
 *   0x510 out (8-bit):  n writes per phase, one exit each
 *   0x604 out (16-bit): ACPI power off (0x2000 = SLP_EN): the run ends, success
 *   0xf4  out (32-bit): debug exit with status (v << 1) | 1: the run ends, failure
 *   0x3f8-0x3ff:        COM1; writes discarded, LSR (0x3fd) reads 0x60
 * Any other read answers all ones; any other exit is an error. With the
 * environment variable KVM_EXIT_REFERENCE_CONSOLE=1 the guest's COM1 output
 * goes to stderr instead of being discarded (for debugging).
 */
#define _GNU_SOURCE
#include <elf.h>
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <linux/kvm.h>
#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#define RAM_SIZE        (64u << 20)
#define MB_INFO_ADDR    0x9000u         /* multiboot info struct */
#define MB_CMDLINE_ADDR 0x9100u         /* its command line */
#define MB_HEADER_MAGIC 0x1BADB002u
#define MB_BOOT_MAGIC   0x2BADB002u

#define PORT_TICK       0x510
#define PORT_MARKER     0x511
#define PORT_COM1       0x3f8
#define PORT_PM1A_CNT   0x604
#define PORT_DEBUG_EXIT 0xf4

static void die(const char *fmt, ...) {
    va_list ap;
    va_start(ap, fmt);
    fputs("kvm-exit-reference: ", stderr);
    vfprintf(stderr, fmt, ap);
    va_end(ap);
    fputc('\n', stderr);
    exit(1);
}

static void die_errno(const char *what) { die("%s: %s", what, strerror(errno)); }

static uint64_t now_ns(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000000000u + (uint64_t)ts.tv_nsec;
}

/* Loads the PT_LOAD segments of an ELF32 i386 image at their physical addresses.
 * Returns the entry point. */
static uint32_t load_elf32(const char *path, uint8_t *ram) {
    int fd = open(path, O_RDONLY);
    if (fd < 0) die("%s: %s", path, strerror(errno));
    struct stat st;
    if (fstat(fd, &st) < 0) die_errno("fstat");
    size_t size = (size_t)st.st_size;
    if (size < sizeof(Elf32_Ehdr)) die("%s: too small for an ELF header", path);
    uint8_t *file = mmap(NULL, size, PROT_READ, MAP_PRIVATE, fd, 0);
    if (file == MAP_FAILED) die_errno("mmap image");
    close(fd);

    const Elf32_Ehdr *eh = (const Elf32_Ehdr *)file;
    if (memcmp(eh->e_ident, ELFMAG, SELFMAG) != 0) die("%s: not an ELF file", path);
    if (eh->e_ident[EI_CLASS] != ELFCLASS32 || eh->e_machine != EM_386)
        die("%s: not an ELF32 i386 image", path);
    if (eh->e_phentsize != sizeof(Elf32_Phdr) ||
        (uint64_t)eh->e_phoff + (uint64_t)eh->e_phnum * sizeof(Elf32_Phdr) > size)
        die("%s: bad program headers", path);

    /* A multiboot v1 header must sit 4-aligned in the first 8 KiB. */
    int found = 0;
    for (size_t off = 0; off + 12 <= size && off < 8192; off += 4) {
        const uint32_t *h = (const uint32_t *)(file + off);
        if (h[0] == MB_HEADER_MAGIC && (uint32_t)(h[0] + h[1] + h[2]) == 0) {
            if (h[1] & 0x00010000u) die("%s: a.out kludge headers are not supported", path);
            found = 1;
            break;
        }
    }
    if (!found) die("%s: no multiboot header in the first 8 KiB", path);

    const Elf32_Phdr *ph = (const Elf32_Phdr *)(file + eh->e_phoff);
    int loaded = 0;
    for (int i = 0; i < eh->e_phnum; i++) {
        if (ph[i].p_type != PT_LOAD || ph[i].p_memsz == 0) continue;
        uint64_t pa = ph[i].p_paddr, filesz = ph[i].p_filesz, memsz = ph[i].p_memsz;
        if (filesz > memsz || pa + memsz > RAM_SIZE || (uint64_t)ph[i].p_offset + filesz > size)
            die("%s: segment %d (paddr 0x%" PRIx64 ", memsz 0x%" PRIx64 ") does not fit", path, i, pa, memsz);
        memcpy(ram + pa, file + ph[i].p_offset, filesz);
        memset(ram + pa + filesz, 0, memsz - filesz);
        loaded++;
    }
    if (!loaded) die("%s: no PT_LOAD segments", path);
    uint32_t entry = eh->e_entry;
    munmap(file, size);
    return entry;
}

/* Minimal multiboot v1 info: memory sizes (flags bit 0) and command line (bit 2). */
static void write_multiboot_info(uint8_t *ram, unsigned long long n) {
    uint32_t info[22];
    memset(info, 0, sizeof info);
    info[0] = (1u << 0) | (1u << 2);
    info[1] = 639;                               /* mem_lower, KiB */
    info[2] = (RAM_SIZE - (1u << 20)) >> 10;     /* mem_upper, KiB above 1 MiB */
    info[4] = MB_CMDLINE_ADDR;
    memcpy(ram + MB_INFO_ADDR, info, sizeof info);
    snprintf((char *)ram + MB_CMDLINE_ADDR, 256, "exitbench n=%llu", n);
}

static void set_segment(struct kvm_segment *s, uint16_t selector, uint8_t type) {
    memset(s, 0, sizeof *s);
    s->base = 0;
    s->limit = 0xffffffff;
    s->selector = selector;
    s->type = type;
    s->present = 1;
    s->dpl = 0;
    s->db = 1;
    s->s = 1;
    s->l = 0;
    s->g = 1;
}

static void setup_cpuid(int kvm, int vcpu) {
    int nent = 128;
    for (;;) {
        struct kvm_cpuid2 *c = calloc(1, sizeof *c + (size_t)nent * sizeof(struct kvm_cpuid_entry2));
        if (!c) die("out of memory");
        c->nent = (uint32_t)nent;
        if (ioctl(kvm, KVM_GET_SUPPORTED_CPUID, c) < 0) {
            if (errno == E2BIG && nent < 4096) {
                free(c);
                nent *= 2;
                continue;
            }
            die_errno("KVM_GET_SUPPORTED_CPUID");
        }
        if (ioctl(vcpu, KVM_SET_CPUID2, c) < 0) die_errno("KVM_SET_CPUID2");
        free(c);
        return;
    }
}

static const char *exit_reason_name(uint32_t r) {
    switch (r) {
    case KVM_EXIT_HLT: return "HLT";
    case KVM_EXIT_MMIO: return "MMIO";
    case KVM_EXIT_SHUTDOWN: return "SHUTDOWN (triple fault)";
    case KVM_EXIT_FAIL_ENTRY: return "FAIL_ENTRY";
    case KVM_EXIT_INTERNAL_ERROR: return "INTERNAL_ERROR";
    case KVM_EXIT_EXCEPTION: return "EXCEPTION";
    case KVM_EXIT_DEBUG: return "DEBUG";
    case KVM_EXIT_UNKNOWN: return "UNKNOWN";
    case KVM_EXIT_SYSTEM_EVENT: return "SYSTEM_EVENT";
    default: return "other";
    }
}

int main(int argc, char **argv) {
    if (argc < 2 || argc > 3) {
        fprintf(stderr, "usage: %s path/to/exitbench.elf [n]\n", argv[0]);
        return 2;
    }
    unsigned long long n = 100000;
    if (argc == 3) {
        char *end;
        errno = 0;
        n = strtoull(argv[2], &end, 10);
        if (errno || *end || n == 0) die("n must be a positive integer, not '%s'", argv[2]);
    }

    int kvm = open("/dev/kvm", O_RDWR | O_CLOEXEC);
    if (kvm < 0) die_errno("/dev/kvm");
    if (ioctl(kvm, KVM_GET_API_VERSION, 0) != KVM_API_VERSION) die("unexpected KVM API version");
    int vm = ioctl(kvm, KVM_CREATE_VM, 0);
    if (vm < 0) die_errno("KVM_CREATE_VM");

    uint8_t *ram = mmap(NULL, RAM_SIZE, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE, -1, 0);
    if (ram == MAP_FAILED) die_errno("mmap guest RAM");
    struct kvm_userspace_memory_region region = {
        .slot = 0, .flags = 0, .guest_phys_addr = 0, .memory_size = RAM_SIZE, .userspace_addr = (uint64_t)(uintptr_t)ram,
    };
    if (ioctl(vm, KVM_SET_USER_MEMORY_REGION, &region) < 0) die_errno("KVM_SET_USER_MEMORY_REGION");

    uint32_t entry = load_elf32(argv[1], ram);
    write_multiboot_info(ram, n);

    int vcpu = ioctl(vm, KVM_CREATE_VCPU, 0);
    if (vcpu < 0) die_errno("KVM_CREATE_VCPU");
    int run_size = ioctl(kvm, KVM_GET_VCPU_MMAP_SIZE, 0);
    if (run_size < (int)sizeof(struct kvm_run)) die_errno("KVM_GET_VCPU_MMAP_SIZE");
    struct kvm_run *run = mmap(NULL, (size_t)run_size, PROT_READ | PROT_WRITE, MAP_SHARED, vcpu, 0);
    if (run == MAP_FAILED) die_errno("mmap kvm_run");

    setup_cpuid(kvm, vcpu);

    /* Multiboot v1 machine state: 32-bit flat protected mode, paging off. */
    struct kvm_sregs sregs;
    if (ioctl(vcpu, KVM_GET_SREGS, &sregs) < 0) die_errno("KVM_GET_SREGS");
    set_segment(&sregs.cs, 0x08, 0xb);           /* execute/read, accessed */
    set_segment(&sregs.ds, 0x10, 0x3);           /* read/write, accessed */
    sregs.es = sregs.fs = sregs.gs = sregs.ss = sregs.ds;
    sregs.cr0 = 0x11;                            /* PE | ET */
    sregs.cr3 = 0;
    sregs.cr4 = 0;
    sregs.efer = 0;
    if (ioctl(vcpu, KVM_SET_SREGS, &sregs) < 0) die_errno("KVM_SET_SREGS");

    struct kvm_regs regs;
    memset(&regs, 0, sizeof regs);
    regs.rax = MB_BOOT_MAGIC;
    regs.rbx = MB_INFO_ADDR;
    regs.rip = entry;
    regs.rsp = 0x8000;
    regs.rflags = 0x2;
    if (ioctl(vcpu, KVM_SET_REGS, &regs) < 0) die_errno("KVM_SET_REGS");

    uint64_t marker_ns[5] = {0};
    unsigned long long ticks = 0, ticks_at[5] = {0};
    int markers_seen = 0;
    const char *console_env = getenv("KVM_EXIT_REFERENCE_CONSOLE");
    int echo_console = console_env && strcmp(console_env, "1") == 0;

    for (;;) {
        if (ioctl(vcpu, KVM_RUN, 0) < 0) {
            if (errno == EINTR || errno == EAGAIN) continue;
            die_errno("KVM_RUN");
        }
        if (run->exit_reason != KVM_EXIT_IO) {
            if (run->exit_reason == KVM_EXIT_FAIL_ENTRY)
                die("unexpected exit FAIL_ENTRY (hardware reason 0x%llx)",
                    (unsigned long long)run->fail_entry.hardware_entry_failure_reason);
            if (run->exit_reason == KVM_EXIT_INTERNAL_ERROR)
                die("unexpected exit INTERNAL_ERROR (suberror %u)", run->internal.suberror);
            if (run->exit_reason == KVM_EXIT_MMIO)
                die("unexpected MMIO %s at 0x%llx", run->mmio.is_write ? "write" : "read",
                    (unsigned long long)run->mmio.phys_addr);
            die("unexpected exit %u (%s)", run->exit_reason, exit_reason_name(run->exit_reason));
        }

        uint8_t *data = (uint8_t *)run + run->io.data_offset;
        uint16_t port = run->io.port;
        uint32_t size = run->io.size, count = run->io.count;

        if (run->io.direction == KVM_EXIT_IO_IN) {
            if (port == PORT_COM1 + 5 && size == 1) {
                memset(data, 0x60, count);       /* LSR: THR empty, transmitter idle */
            } else {
                memset(data, 0xff, (size_t)size * count);
            }
            continue;
        }

        uint32_t value = 0;
        memcpy(&value, data, size <= 4 ? size : 4);
        if (port == PORT_TICK) {
            ticks += count;
        } else if (port == PORT_MARKER) {
            uint64_t t = now_ns();
            if (size != 4 || value < 1 || value > 4) die("bad marker write: %u bytes, value %u", size, value);
            if ((int)value != markers_seen + 1) die("marker %u out of order (after %d)", value, markers_seen);
            marker_ns[value] = t;
            ticks_at[value] = ticks;
            markers_seen = (int)value;
        } else if (port >= PORT_COM1 && port < PORT_COM1 + 8) {
            /* Console output: discarded (THR bytes echoed on request; DLAB is ignored). */
            if (echo_console && port == PORT_COM1)
                for (uint32_t i = 0; i < count; i++) fputc(data[(size_t)i * size], stderr);
        } else if (port == PORT_PM1A_CNT) {
            if (size != 2 || (value & 0x2000) == 0) die("unexpected write 0x%x to 0x604", value);
            break;
        } else if (port == PORT_DEBUG_EXIT) {
            die("guest failed: debug exit with value %u (status %u)", value, (value << 1) | 1);
        } else {
            /* Unknown port writes are ignored, as on a PC. */
        }
    }

    if (markers_seen != 4) die("guest powered off after marker %d of 4", markers_seen);
    unsigned long long cpl0 = ticks_at[2] - ticks_at[1], cpl3 = ticks_at[4] - ticks_at[3];
    if (cpl0 != n || cpl3 != n)
        die("expected %llu exits per phase, counted %llu at CPL0 and %llu at CPL3", n, cpl0, cpl3);

    printf("cpl0_ns_per_exit=%.1f\n", (double)(marker_ns[2] - marker_ns[1]) / (double)n);
    printf("cpl3_ns_per_exit=%.1f\n", (double)(marker_ns[4] - marker_ns[3]) / (double)n);
    return 0;
}
