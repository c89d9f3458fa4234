// CKVM: the C side of Visor's kvm engine. <linux/kvm.h> for the structures, and small
// non-variadic wrappers because Swift cannot call the variadic ioctl(2) or expand the
// _IO/_IOW macros that define the request numbers.
//
// Not API: only VisorKVM imports this module.
#ifndef CKVM_H
#define CKVM_H

#include <errno.h>
#include <stdint.h>
#include <string.h>
#include <sys/ioctl.h>
#include <linux/kvm.h>

// Request numbers, as constants Swift can import.
static const unsigned long CKVM_GET_API_VERSION = KVM_GET_API_VERSION;
static const unsigned long CKVM_CREATE_VM = KVM_CREATE_VM;
static const unsigned long CKVM_CHECK_EXTENSION = KVM_CHECK_EXTENSION;
static const unsigned long CKVM_GET_VCPU_MMAP_SIZE = KVM_GET_VCPU_MMAP_SIZE;
static const unsigned long CKVM_CREATE_VCPU = KVM_CREATE_VCPU;
static const unsigned long CKVM_SET_USER_MEMORY_REGION = KVM_SET_USER_MEMORY_REGION;
static const unsigned long CKVM_SET_TSS_ADDR = KVM_SET_TSS_ADDR;
static const unsigned long CKVM_RUN = KVM_RUN;
static const unsigned long CKVM_GET_REGS = KVM_GET_REGS;
static const unsigned long CKVM_SET_REGS = KVM_SET_REGS;
static const unsigned long CKVM_GET_SREGS = KVM_GET_SREGS;
static const unsigned long CKVM_SET_SREGS = KVM_SET_SREGS;
static const unsigned long CKVM_INTERRUPT = KVM_INTERRUPT;
static const unsigned long CKVM_GET_DEBUGREGS = KVM_GET_DEBUGREGS;
static const unsigned long CKVM_SET_DEBUGREGS = KVM_SET_DEBUGREGS;

/// ioctl(2) with an integer argument. Returns the result, or -errno on failure
/// (EINTR included: the caller decides whether to retry).
static inline long ckvm_ioctl_value(int fd, unsigned long request, unsigned long value) {
    long rc = ioctl(fd, request, value);
    return rc < 0 ? -errno : rc;
}

/// ioctl(2) with a pointer argument; the kernel reads or writes the structure the request names.
static inline long ckvm_ioctl_pointer(int fd, unsigned long request, void *argument) {
    long rc = ioctl(fd, request, argument);
    return rc < 0 ? -errno : rc;
}

/// Most CPUID entries any host reports; KVM answers E2BIG when the buffer is smaller.
#define CKVM_MAX_CPUID_ENTRIES 256

/// The layout of struct kvm_cpuid2 with room for its flexible array, so Swift can hold it as a value.
struct ckvm_cpuid {
    __u32 nent;
    __u32 padding;
    struct kvm_cpuid_entry2 entries[CKVM_MAX_CPUID_ENTRIES];
};
_Static_assert(__builtin_offsetof(struct ckvm_cpuid, entries) == __builtin_offsetof(struct kvm_cpuid2, entries),
               "ckvm_cpuid must match kvm_cpuid2");

/// KVM_GET_SUPPORTED_CPUID on the /dev/kvm fd. Returns 0 or -errno.
static inline long ckvm_get_supported_cpuid(int kvm_fd, struct ckvm_cpuid *cpuid) {
    cpuid->nent = CKVM_MAX_CPUID_ENTRIES;
    return ckvm_ioctl_pointer(kvm_fd, KVM_GET_SUPPORTED_CPUID, cpuid);
}

/// KVM_SET_CPUID2 on a vCPU fd. Returns 0 or -errno.
static inline long ckvm_set_cpuid(int vcpu_fd, struct ckvm_cpuid *cpuid) {
    return ckvm_ioctl_pointer(vcpu_fd, KVM_SET_CPUID2, cpuid);
}

// kvm_run's exit details live in an anonymous union; these accessors name the member read.
static inline struct kvm_run *ckvm_run(void *mapping) { return (struct kvm_run *)mapping; }
static inline uint32_t ckvm_exit_reason(const struct kvm_run *run) { return run->exit_reason; }
static inline void ckvm_set_immediate_exit(struct kvm_run *run, uint8_t value) {
    __atomic_store_n(&run->immediate_exit, value, __ATOMIC_SEQ_CST);
}

// Interrupt injection without an in-kernel irqchip: KVM reports whether the guest can take an
// interrupt at each exit, and exits with KVM_EXIT_IRQ_WINDOW_OPEN when asked to.
static inline int ckvm_ready_for_interrupt(const struct kvm_run *run) {
    return run->ready_for_interrupt_injection && run->if_flag;
}
static inline void ckvm_set_request_interrupt_window(struct kvm_run *run, uint8_t value) {
    run->request_interrupt_window = value;
}

/// KVM_INTERRUPT: queues external interrupt `vector`. Returns 0 or -errno.
static inline long ckvm_interrupt(int vcpu_fd, uint32_t vector) {
    struct kvm_interrupt irq = { .irq = vector };
    return ckvm_ioctl_pointer(vcpu_fd, KVM_INTERRUPT, &irq);
}

// MSRs handled in user space: KVM_CAP_X86_USER_SPACE_MSR with a filter that denies the MSRs
// Visor wants, so accesses to them exit with KVM_EXIT_X86_RDMSR / KVM_EXIT_X86_WRMSR.

/// Enables filter-driven MSR exits on a VM and denies (so forwards) `count` MSRs, each in a
/// one-MSR range, both for reads and writes. Returns 0 or -errno.
static inline long ckvm_forward_msrs(int vm_fd, const uint32_t *msrs, uint32_t count) {
    if (count > KVM_MSR_FILTER_MAX_RANGES) return -E2BIG;
    struct kvm_enable_cap cap;
    memset(&cap, 0, sizeof cap);
    cap.cap = KVM_CAP_X86_USER_SPACE_MSR;
    cap.args[0] = KVM_MSR_EXIT_REASON_FILTER;
    long rc = ckvm_ioctl_pointer(vm_fd, KVM_ENABLE_CAP, &cap);
    if (rc < 0) return rc;
    static const uint8_t deny = 0;  // a cleared bit denies the MSR, which forwards it
    struct kvm_msr_filter filter;
    memset(&filter, 0, sizeof filter);
    filter.flags = KVM_MSR_FILTER_DEFAULT_ALLOW;
    for (uint32_t i = 0; i < count; i++) {
        filter.ranges[i].flags = KVM_MSR_FILTER_READ | KVM_MSR_FILTER_WRITE;
        filter.ranges[i].nmsrs = 1;
        filter.ranges[i].base = msrs[i];
        filter.ranges[i].bitmap = (uint8_t *)&deny;
    }
    return ckvm_ioctl_pointer(vm_fd, KVM_X86_SET_MSR_FILTER, &filter);
}

static inline uint32_t ckvm_msr_index(const struct kvm_run *run) { return run->msr.index; }
static inline uint64_t ckvm_msr_data(const struct kvm_run *run) { return run->msr.data; }
/// Completes a forwarded MSR access: `data` for a read, error 0 (no #GP).
static inline void ckvm_complete_msr(struct kvm_run *run, uint64_t data) {
    run->msr.data = data;
    run->msr.error = 0;
}

/// The guest's IA32_TSC (MSR 0x10) now, through KVM_GET_MSRS. Returns 0 or -errno.
static inline long ckvm_guest_tsc(int vcpu_fd, uint64_t *value) {
    // struct kvm_msrs ends in a flexible array: room for one entry after it.
    _Alignas(8) uint8_t buffer[sizeof(struct kvm_msrs) + sizeof(struct kvm_msr_entry)];
    memset(buffer, 0, sizeof buffer);
    struct kvm_msrs *request = (struct kvm_msrs *)buffer;
    request->nmsrs = 1;
    request->entries[0].index = 0x10;
    long rc = ckvm_ioctl_pointer(vcpu_fd, KVM_GET_MSRS, request);
    if (rc < 0) return rc;
    if (rc != 1) return -EIO;
    *value = request->entries[0].data;
    return 0;
}

/// Drops the #UD KVM queues for the guest when its emulator fails on an instruction
/// (KVM_EXIT_INTERNAL_ERROR / KVM_INTERNAL_ERROR_EMULATION at CPL0 comes with #UD already
/// queued), through KVM_GET_VCPU_EVENTS and KVM_SET_VCPU_EVENTS; every other event is written
/// back as read. Returns 1 if one was dropped, 0 if none was queued, or -errno.
static inline long ckvm_drop_queued_invalid_opcode(int vcpu_fd) {
    struct kvm_vcpu_events events;
    memset(&events, 0, sizeof events);
    long rc = ckvm_ioctl_pointer(vcpu_fd, KVM_GET_VCPU_EVENTS, &events);
    if (rc < 0) return rc;
    if (events.exception.nr != 6 || (!events.exception.injected && !events.exception.pending)) return 0;
    events.exception.injected = 0;
    events.exception.pending = 0;
    events.exception.has_error_code = 0;
    events.exception.error_code = 0;
    events.exception_has_payload = 0;
    events.exception_payload = 0;
    rc = ckvm_ioctl_pointer(vcpu_fd, KVM_SET_VCPU_EVENTS, &events);
    return rc < 0 ? rc : 1;
}

/// Clears KVM's NMI blocking (an IRET Visor's CPU carried out for the vCPU ends it, as a real
/// IRET would), through KVM_GET_VCPU_EVENTS and KVM_SET_VCPU_EVENTS with only the NMI state
/// marked valid. Returns 0 or -errno.
static inline long ckvm_unmask_nmi(int vcpu_fd) {
    struct kvm_vcpu_events events;
    memset(&events, 0, sizeof events);
    long rc = ckvm_ioctl_pointer(vcpu_fd, KVM_GET_VCPU_EVENTS, &events);
    if (rc < 0) return rc;
    if (!events.nmi.masked) return 0;
    events.nmi.masked = 0;
    events.flags = KVM_VCPUEVENT_VALID_NMI_PENDING;
    rc = ckvm_ioctl_pointer(vcpu_fd, KVM_SET_VCPU_EVENTS, &events);
    return rc < 0 ? rc : 0;
}

/// KVM_NMI: queues an NMI on the vCPU (without an in-kernel irqchip this is the processor's
/// NMI pin; KVM keeps NMI blocking until IRET and holds one more pending). Returns 0 or -errno.
static inline long ckvm_nmi(int vcpu_fd) {
    long rc = ioctl(vcpu_fd, KVM_NMI);
    return rc < 0 ? -errno : rc;
}

/// The host's time-stamp counter, for converting guest TSC readings into time.
static inline uint64_t ckvm_host_rdtsc(void) { return __builtin_ia32_rdtsc(); }

#endif
