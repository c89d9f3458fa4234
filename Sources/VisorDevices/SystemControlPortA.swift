// System Control Port A (I/O port 0x92), the PC chipset's "fast A20 and INIT" register (PS/2
// heritage; on Intel's ICH/PCH it is `PORT92`): bit 0 written from 0 to 1 pulses the processors'
// INIT# pin, bit 1 gates address line 20. Guests use bit 0 as a quick reset.
//
// Visor has no firmware at the reset vector, so what an INIT does to a vCPU is the platform's
// business (every vCPU then waits for a start-up IPI); this model only says when the guest asked.
// The A20 gate is always open in Visor (memory never wraps at 1 MiB): bit 1 reads as 1 whatever
// was written.

import VisorCore

/// Port 0x92. Not thread-safe: the owner serialises guest accesses.
public final class SystemControlPortA: PortDevice {
    /// The port's address on a PC.
    public static let port: UInt16 = 0x92
    /// Bit 0: a 0-to-1 transition asserts INIT# on every processor.
    public static let fastInit: UInt8 = 0b01
    /// Bit 1: the A20 gate (1: open). Always open here.
    public static let a20Gate: UInt8 = 0b10

    /// The register as last written (bit 1 forced on). Bit 0 reads back as written, as on Intel's
    /// chipsets; the guest writes 0 before it can pulse INIT again.
    public private(set) var value: UInt8 = SystemControlPortA.a20Gate
    /// INIT pulses the guest has asked for.
    public private(set) var initRequests: UInt64 = 0
    /// Called on every 0-to-1 write of bit 0: the platform sends INIT to every vCPU.
    public var onInit: (() -> Void)?

    public init(onInit: (() -> Void)? = nil) {
        self.onInit = onInit
    }

    /// The register in the low byte; bytes of a wider access beyond the one port read as all ones.
    public func read(offset: UInt16, size: UInt8) -> UInt32 {
        guard offset == 0 else { return allOnes(size: size) }
        return allOnes(size: size) & ~0xff | UInt32(value)
    }

    /// Only the byte at the port counts; a 0-to-1 change of bit 0 is an INIT pulse.
    public func write(offset: UInt16, size: UInt8, value written: UInt32) {
        guard offset == 0 else { return }
        let byte = UInt8(truncatingIfNeeded: written) | Self.a20Gate
        let rising = byte & Self.fastInit != 0 && value & Self.fastInit == 0
        value = byte
        if rising {
            initRequests &+= 1
            onInit?()
        }
    }
}
