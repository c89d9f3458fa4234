// How a guest learns it runs on Visor: CPUID leaves in the hypervisor range, as Xen and KVM do.
//
// This file is compiled into the host and, under Embedded Swift, into every guest,
// so it holds plain integers only.

/// The CPUID leaves Visor answers at `0x4000_0000` and above.
public enum HypervisorCPUID {
    /// Leaf `0x4000_0000`: EAX is the highest hypervisor leaf; EBX, ECX, EDX hold the signature.
    public static let signatureLeaf: UInt32 = 0x4000_0000
    /// Leaf `0x4000_0001`: EAX is the ABI version, `major << 16 | minor`.
    public static let versionLeaf: UInt32 = 0x4000_0001
    /// Leaf `0x4000_0010`: timing, so guests need no calibration loop. EAX is the guest TSC's
    /// frequency in kHz, EBX the local APIC timer's input clock (before its divider) in kHz.
    /// The number and layout are the ones VMware defined and other hypervisors reuse.
    public static let timingLeaf: UInt32 = 0x4000_0010
    /// The highest leaf in the hypervisor range that Visor answers.
    public static let highestLeaf: UInt32 = timingLeaf

    /// "VisorVisorVM", as twelve ASCII bytes in EBX, ECX, EDX (each register little-endian),
    /// the layout of Xen's "XenVMMXenVMM" and KVM's "KVMKVMKVM".
    public static let signatureEBX: UInt32 = 0x6f73_6956  // "Viso"
    public static let signatureECX: UInt32 = 0x7369_5672  // "rVis"
    public static let signatureEDX: UInt32 = 0x4d56_726f  // "orVM"

    /// ABI version 1.1: discovery, the timing leaf, and the PV ABI of `Hypercall.swift`
    /// (docs/pv-abi.md), whose `xen_version` reports the same number.
    public static let abiVersionMajor: UInt32 = XenVersion.major
    public static let abiVersionMinor: UInt32 = XenVersion.minor
    public static var abiVersion: UInt32 { abiVersionMajor << 16 | abiVersionMinor }

    /// True when the three registers of leaf `0x4000_0000` carry Visor's signature.
    public static func isVisorSignature(ebx: UInt32, ecx: UInt32, edx: UInt32) -> Bool {
        ebx == signatureEBX && ecx == signatureECX && edx == signatureEDX
    }
}
