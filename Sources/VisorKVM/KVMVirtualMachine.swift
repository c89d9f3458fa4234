// One KVM virtual machine: guest RAM handed to the kernel as memory slots, and its vCPUs.

import CKVM
import VisorCore
#if canImport(Glibc)
import Glibc
#endif

/// A VM on `/dev/kvm` (the fd KVM_CREATE_VM returns).
public final class KVMVirtualMachine: VirtualMachine {
    /// A three-page region KVM on Intel needs for real-mode emulation without unrestricted guest;
    /// placed just below the BIOS area at the top of the 32-bit space, where Visor maps no RAM.
    static let taskStateAddress: UInt = 0xfffb_d000

    let system: KVMSystem
    let descriptor: OwnedDescriptor
    public let memory: GuestMemory
    let cpuid: CPUIDTable

    init(system: KVMSystem, memory: GuestMemory, options: MachineOptions) throws(KVMError) {
        self.system = system
        self.memory = memory
        self.cpuid = CPUIDTable(hostSupported: system.supportedCPUID,
                                timeStampCounterFrequency: UInt64(KVMEngine.hostTimeStampCounterFrequency),
                                apicTimerFrequency: options.apicTimerFrequency)
        let fd = try system.descriptor.ioctl(CKVM_CREATE_VM, "KVM_CREATE_VM")
        self.descriptor = OwnedDescriptor(Int32(fd))
        if system.has(KVM_CAP_SET_TSS_ADDR) {
            try descriptor.ioctl(CKVM_SET_TSS_ADDR, "KVM_SET_TSS_ADDR", value: Self.taskStateAddress)
        }
        // No in-kernel irqchip: the interrupt controllers are Visor's device models. The one MSR
        // of theirs that is not memory-mapped, IA32_TSC_DEADLINE, is forwarded to Visor.
        let forwarded = PlatformMSR.all
        let rc = forwarded.withUnsafeBufferPointer { ckvm_forward_msrs(descriptor.raw, $0.baseAddress, UInt32($0.count)) }
        guard rc >= 0 else { throw .ioctlFailed(request: "KVM_X86_SET_MSR_FILTER", errno: Int32(-rc)) }
        for (slot, region) in memory.regions.enumerated() {
            var slotDescription = kvm_userspace_memory_region(
                slot: UInt32(slot), flags: 0, guest_phys_addr: region.guestStart.rawValue,
                memory_size: region.size, userspace_addr: memory.hostAddress(of: region))
            // SAFETY: the region lies inside `memory`'s mapping, which `self` keeps alive for as
            // long as the VM fd (and so the slot) exists.
            try descriptor.ioctl(CKVM_SET_USER_MEMORY_REGION, "KVM_SET_USER_MEMORY_REGION", &slotDescription)
        }
    }

    public func makeVCPU(index: Int) throws -> any VirtualCPU {
        try KVMVirtualCPU(machine: self, index: index)
    }
}
