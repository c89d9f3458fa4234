// The CPUID answers a guest sees: the host's supported features plus Visor's hypervisor leaves.
// Engine-neutral, so the software CPU can answer CPUID from the very table `kvm` installs.

import VisorABI

/// One CPUID answer: for leaf `function` (and sub-leaf `index` where the leaf has sub-leaves).
public struct CPUIDEntry: Sendable, Equatable {
    public var function: UInt32
    public var index: UInt32
    /// True when `index` matters for this leaf (KVM_CPUID_FLAG_SIGNIFCANT_INDEX).
    public var indexSignificant: Bool
    public var eax: UInt32, ebx: UInt32, ecx: UInt32, edx: UInt32

    public init(function: UInt32, index: UInt32 = 0, indexSignificant: Bool = false,
                eax: UInt32 = 0, ebx: UInt32 = 0, ecx: UInt32 = 0, edx: UInt32 = 0) {
        self.function = function; self.index = index; self.indexSignificant = indexSignificant
        self.eax = eax; self.ebx = ebx; self.ecx = ecx; self.edx = edx
    }
}

/// The CPUID table of one machine.
public struct CPUIDTable: Sendable, Equatable {
    public private(set) var entries: [CPUIDEntry]

    /// CPUID.1:ECX bit 31: "a hypervisor is present", the bit guests check before leaf 0x4000_0000.
    public static let hypervisorPresentBit: UInt32 = 1 << 31

    /// CPUID.1:EDX bit 9: an on-chip local APIC.
    public static let apicBit: UInt32 = 1 << 9
    /// CPUID.1:ECX bit 21: x2APIC, which Visor's local APIC does not implement.
    public static let x2APICBit: UInt32 = 1 << 21
    /// CPUID.1:ECX bit 24: the APIC timer's TSC-deadline mode.
    public static let tscDeadlineBit: UInt32 = 1 << 24

    /// The guest's table: `hostSupported` with any hypervisor-range leaves the host proposed
    /// replaced by Visor's, and the hypervisor-present bit set in leaf 1. Leaf 1 describes
    /// Visor's local APIC (xAPIC with TSC-deadline mode, no x2APIC), and the timing leaf gives
    /// `timeStampCounterFrequency` and `apicTimerFrequency` (Hz; 0 when not known).
    public init(hostSupported: [CPUIDEntry], timeStampCounterFrequency: UInt64 = 0,
                apicTimerFrequency: UInt64 = 0) {
        var result = hostSupported.filter { $0.function & 0xffff_0000 != HypervisorCPUID.signatureLeaf }
        if let leaf1 = result.firstIndex(where: { $0.function == 1 }) {
            result[leaf1].ecx |= Self.hypervisorPresentBit | Self.tscDeadlineBit
            result[leaf1].ecx &= ~Self.x2APICBit
            result[leaf1].edx |= Self.apicBit
        }
        result.append(CPUIDEntry(function: HypervisorCPUID.signatureLeaf, eax: HypervisorCPUID.highestLeaf,
                                 ebx: HypervisorCPUID.signatureEBX, ecx: HypervisorCPUID.signatureECX,
                                 edx: HypervisorCPUID.signatureEDX))
        result.append(CPUIDEntry(function: HypervisorCPUID.versionLeaf, eax: HypervisorCPUID.abiVersion))
        result.append(CPUIDEntry(function: PVDiscovery.hypercallLeaf, eax: 1, ebx: PVDiscovery.hypercallPageMSR,
                                 ecx: PVDiscovery.sharedInfoMSR))
        func kilohertz(_ hz: UInt64) -> UInt32 { UInt32(clamping: hz / 1000) }
        result.append(CPUIDEntry(function: HypervisorCPUID.timingLeaf, eax: kilohertz(timeStampCounterFrequency),
                                 ebx: kilohertz(apicTimerFrequency)))
        entries = result
    }

    /// The answer for `function`/`index`, as a CPU gives it: an exact match, or all zeros.
    public func lookup(function: UInt32, index: UInt32 = 0) -> CPUIDEntry {
        entries.first { $0.function == function && (!$0.indexSignificant || $0.index == index) }
            ?? CPUIDEntry(function: function, index: index)
    }
}
