// /dev/kvm itself: the API version, capabilities and what the host CPU supports.

import CKVM
import VisorCore
#if canImport(Glibc)
import Glibc
#endif

/// An open `/dev/kvm`.
public final class KVMSystem: Sendable {
    /// Where Linux exposes KVM.
    public static let defaultPath = "/dev/kvm"

    let descriptor: OwnedDescriptor
    /// Size of each vCPU's shared `kvm_run` area (KVM_GET_VCPU_MMAP_SIZE).
    let vcpuMappingSize: Int
    /// The CPUID leaves this host lets guests see (KVM_GET_SUPPORTED_CPUID).
    public let supportedCPUID: [CPUIDEntry]

    /// True when the host's KVM is the PVM backend (the `kvm_pvm` module is loaded): guest CPL0
    /// code is emulated by the host kernel, which cannot run 32-bit paging outside long mode nor
    /// `INT n` from CPL3, and gives up on some instructions (see `KVMInstructionFallback`).
    public static let isPVMBackend: Bool = access("/sys/module/kvm_pvm", F_OK) == 0

    /// Opens `path` and checks that its KVM is one Visor can drive.
    public init(path: String = KVMSystem.defaultPath) throws(KVMError) {
        let fd = open(path, O_RDWR | O_CLOEXEC)
        if fd < 0 {
            let e = errno
            switch e {
            case ENOENT: throw .deviceMissing(path: path)
            case EACCES, EPERM: throw .permissionDenied(path: path)
            default: throw .openFailed(path: path, errno: e)
            }
        }
        let descriptor = OwnedDescriptor(fd)
        let version = try descriptor.ioctl(CKVM_GET_API_VERSION, "KVM_GET_API_VERSION")
        guard version == 12 else { throw .unsupportedAPIVersion(version) }
        for (capability, name) in [(KVM_CAP_USER_MEMORY, "KVM_CAP_USER_MEMORY"),
                                   (KVM_CAP_IMMEDIATE_EXIT, "KVM_CAP_IMMEDIATE_EXIT")] {
            let present = try descriptor.ioctl(CKVM_CHECK_EXTENSION, "KVM_CHECK_EXTENSION", value: UInt(capability))
            guard present > 0 else { throw .missingCapability(name) }
        }
        self.descriptor = descriptor
        self.vcpuMappingSize = try descriptor.ioctl(CKVM_GET_VCPU_MMAP_SIZE, "KVM_GET_VCPU_MMAP_SIZE")

        var cpuid = ckvm_cpuid()
        let rc = ckvm_get_supported_cpuid(fd, &cpuid)
        guard rc >= 0 else { throw .ioctlFailed(request: "KVM_GET_SUPPORTED_CPUID", errno: Int32(-rc)) }
        let count = min(Int(cpuid.nent), Int(CKVM_MAX_CPUID_ENTRIES))
        self.supportedCPUID = withUnsafeBytes(of: &cpuid.entries) { raw in
            raw.bindMemory(to: kvm_cpuid_entry2.self).prefix(count).map { e in
                CPUIDEntry(function: e.function, index: e.index,
                           indexSignificant: e.flags & UInt32(KVM_CPUID_FLAG_SIGNIFCANT_INDEX) != 0,
                           eax: e.eax, ebx: e.ebx, ecx: e.ecx, edx: e.edx)
            }
        }
    }

    /// Whether the host's KVM has capability `number` (KVM_CHECK_EXTENSION).
    func has(_ capability: Int32) -> Bool {
        (try? descriptor.ioctl(CKVM_CHECK_EXTENSION, "KVM_CHECK_EXTENSION", value: UInt(capability))) ?? 0 > 0
    }
}

/// The host's time-stamp counter. Guests on `kvm` (and under QEMU's TCG) read it at the same
/// rate, so benchmarks convert guest TSC deltas to time with the host's frequency.
public enum HostTimeStampCounter {
    public static func read() -> UInt64 { ckvm_host_rdtsc() }

    /// Ticks per second, measured against CLOCK_MONOTONIC over `milliseconds`.
    public static func measureFrequency(milliseconds: Int = 200) -> Double {
        var t0 = timespec(), t1 = timespec()
        clock_gettime(CLOCK_MONOTONIC, &t0)
        let c0 = read()
        usleep(UInt32(milliseconds * 1000))
        clock_gettime(CLOCK_MONOTONIC, &t1)
        let c1 = read()
        let seconds = Double(t1.tv_sec - t0.tv_sec) + Double(t1.tv_nsec - t0.tv_nsec) / 1e9
        return Double(c1 &- c0) / seconds
    }
}

/// The `kvm` engine: hardware-assisted virtualization through Linux `/dev/kvm`.
public struct KVMEngine: Engine {
    public var name: String { "kvm" }
    public let path: String
    public init(path: String = KVMSystem.defaultPath) { self.path = path }

    public func makeMachine(memory: GuestMemory, options: MachineOptions) throws -> any VirtualMachine {
        try KVMVirtualMachine(system: KVMSystem(path: path), memory: memory, options: options)
    }

    /// Guests on KVM read the host's TSC (offset, not scaled, as Visor sets no TSC scaling).
    public func timeStampCounterFrequency() -> Double { Self.hostTimeStampCounterFrequency }
    /// The guest TSC ticks with the host's: measured once, on first use.
    static let hostTimeStampCounterFrequency = HostTimeStampCounter.measureFrequency(milliseconds: 50)
}
