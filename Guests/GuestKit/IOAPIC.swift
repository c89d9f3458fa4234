// The I/O APIC (82093AA) at its PC address, 0xfec00000: just enough to route one ISA interrupt
// to a vector on one CPU. GuestKit masks the 8259s and uses local APICs, so a device interrupt
// (the ACPI SCI) reaches a CPU only through here. Registers are reached indirectly: the index
// goes to IOREGSEL (+0x00), the value through IOWIN (+0x10), 32 bits at a time; each access is
// an exit on Visor.

public enum IOAPIC {
    public static let base: UInt64 = 0xfec0_0000
    static let registerSelect: UInt64 = 0x00
    static let window: UInt64 = 0x10
    /// Redirection entry `pin`: low dword at index 0x10 + 2 * pin, high dword after it.
    static func redirectionIndex(pin: UInt32) -> UInt32 { 0x10 + 2 * pin }

    /// Redirection entry bits (low dword).
    static let activeLow: UInt32 = 1 << 13
    static let levelTriggered: UInt32 = 1 << 15
    static let masked: UInt32 = 1 << 16

    static func write(_ index: UInt32, _ value: UInt32) {
        gk_mmio_write32(base + registerSelect, index)
        gk_mmio_write32(base + window, value)
    }

    /// Routes input `pin` to `vector` on the local APIC with ID `apicID` (fixed delivery,
    /// physical destination), unmasked. The destination is written first, so the entry is never
    /// unmasked towards a stale CPU. Visor (and a PC) puts ISA IRQ n on pin n, but for the
    /// PIT's IRQ 0 (pin 2).
    public static func route(pin: UInt32, vector: UInt32, apicID: UInt32, levelTriggered level: Bool, activeLow low: Bool) {
        let index = redirectionIndex(pin: pin)
        write(index + 1, apicID << 24)
        write(index, (vector & 0xff) | (level ? levelTriggered : 0) | (low ? activeLow : 0))
    }
}
