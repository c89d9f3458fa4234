// Processor access: port I/O, CPUID, RDTSC. The instructions live in GuestKit.h.

/// Port I/O. Allowed at CPL0, and at CPL3 when RFLAGS.IOPL is 3 (as `enterUserMode` sets).
public enum Port {
    @inline(__always) public static func inb(_ port: UInt16) -> UInt8 { gk_inb(port) }
    @inline(__always) public static func inw(_ port: UInt16) -> UInt16 { gk_inw(port) }
    @inline(__always) public static func inl(_ port: UInt16) -> UInt32 { gk_inl(port) }
    @inline(__always) public static func outb(_ port: UInt16, _ value: UInt8) { gk_outb(port, value) }
    @inline(__always) public static func outw(_ port: UInt16, _ value: UInt16) { gk_outw(port, value) }
    @inline(__always) public static func outl(_ port: UInt16, _ value: UInt32) { gk_outl(port, value) }
}

/// The four registers CPUID returns.
public struct CPUIDResult {
    public var eax: UInt32
    public var ebx: UInt32
    public var ecx: UInt32
    public var edx: UInt32
}

public enum CPU {
    /// Executes CPUID for `leaf` and `subleaf`.
    public static func cpuid(_ leaf: UInt32, _ subleaf: UInt32 = 0) -> CPUIDResult {
        var regs: (UInt32, UInt32, UInt32, UInt32) = (0, 0, 0, 0)
        withUnsafeMutablePointer(to: &regs) { p in
            p.withMemoryRebound(to: UInt32.self, capacity: 4) { gk_cpuid(leaf, subleaf, $0) }
        }
        return CPUIDResult(eax: regs.0, ebx: regs.1, ecx: regs.2, edx: regs.3)
    }

    /// The time-stamp counter.
    public static func rdtsc() -> UInt64 { gk_rdtsc() }

    /// CPUID.1:ECX bit 31, set by hypervisors.
    public static var hypervisorPresent: Bool { cpuid(1).ecx & (1 << 31) != 0 }

    /// The twelve bytes of three registers (each little-endian), in the order given, as
    /// CPUID returns vendor and hypervisor signatures.
    public static func signatureBytes(_ a: UInt32, _ b: UInt32, _ c: UInt32) -> [UInt8] {
        var bytes: [UInt8] = []
        for word in [a, b, c] {
            for shift in stride(from: 0, to: 32, by: 8) {
                bytes.append(UInt8(truncatingIfNeeded: word >> UInt32(shift)))
            }
        }
        return bytes
    }

    /// The signature as text without trailing NUL padding ("KVMKVMKVM\0\0\0" gives
    /// "KVMKVMKVM"). Other non-printable bytes become ".".
    public static func signatureText(_ a: UInt32, _ b: UInt32, _ c: UInt32) -> String {
        var bytes = signatureBytes(a, b, c)
        while let last = bytes.last, last == 0 { bytes.removeLast() }
        for i in bytes.indices where bytes[i] < 0x20 || bytes[i] >= 0x7f { bytes[i] = 0x2e }
        return String(decoding: bytes, as: UTF8.self)
    }

    /// Whether the signature is printable ASCII, allowing NUL padding at the end
    /// (at least one printable byte; all zeros is not printable).
    public static func signatureIsPrintable(_ a: UInt32, _ b: UInt32, _ c: UInt32) -> Bool {
        var bytes = signatureBytes(a, b, c)
        while let last = bytes.last, last == 0 { bytes.removeLast() }
        return !bytes.isEmpty && bytes.allSatisfy { $0 >= 0x20 && $0 < 0x7f }
    }
}
