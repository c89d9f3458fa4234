// An I/O APIC after the Intel 82093AA datasheet: 24 interrupt input pins, each with a redirection
// table entry that turns the pin's signal into an interrupt message for the local APICs, as a
// pure state machine.
//
// The guest reaches it through two memory-mapped registers at 0xfec00000: IOREGSEL (+0x00), which
// selects an indirect register, and IOWIN (+0x10), which reads or writes it. The indirect
// registers are IOAPICID (0x00), IOAPICVER (0x01), IOAPICARB (0x02) and the redirection table,
// two 32-bit halves per pin from 0x10 (low half 0x10 + 2n, high half 0x11 + 2n).
//
// Devices drive pins with `setPin(_:level:)`; a message goes to the `IOAPICOutput`, which delivers
// it to the local APICs it addresses; the local APICs' EOI of a level-triggered vector comes back
// through `endOfInterrupt(vector:)` (the EOI broadcast).
//
// Edge-triggered pins send one message per inactive-to-active transition while unmasked; an edge
// on a masked pin is ignored (not held pending), as the datasheet says. Level-triggered pins
// send a message while the pin is active, unmasked and Remote IRR is clear; sending sets Remote
// IRR, and an EOI for the entry's vector clears it, after which a pin still active sends again.
// Unmasking an active level-triggered pin sends at once. Polarity (bit 13) says which level is
// active: high (0) or low (1).
//
// Simplifications:
// - Remote IRR is set when the message is sent, whether or not a local APIC accepted it.
// - The delivery status bit (12) always reads idle: messages are delivered at once.
// - No pin-assertion or EOI registers (the 82093AA, version 0x11, has neither; EOIs arrive
//   only as local-APIC broadcasts).
// - Accesses to IOREGSEL and IOWIN are honoured as 32-bit accesses at those offsets (the
//   datasheet allows only those); any other access reads 0 or is ignored.

/// One interrupt message an I/O APIC sends: the redirection entry's fields at the time.
public struct IOAPICMessage: Sendable, Equatable {
    public var vector: UInt8
    /// Delivery mode, bits 10-8: 0 fixed, 1 lowest priority, 2 SMI, 4 NMI, 5 INIT, 7 ExtINT.
    public var deliveryMode: UInt8
    /// Destination mode (bit 11): logical when `true`, physical otherwise.
    public var logicalDestination: Bool
    /// Trigger mode (bit 15): level when `true`, edge otherwise.
    public var levelTriggered: Bool
    /// The destination (bits 63-56): an APIC ID in physical mode, a set of APICs in logical mode.
    public var destination: UInt8
    /// The pin that sent it.
    public var pin: Int

    public init(vector: UInt8, deliveryMode: UInt8, logicalDestination: Bool, levelTriggered: Bool,
                destination: UInt8, pin: Int) {
        self.vector = vector; self.deliveryMode = deliveryMode; self.logicalDestination = logicalDestination
        self.levelTriggered = levelTriggered; self.destination = destination; self.pin = pin
    }

    /// The message in the encoding of a local APIC's ICR (vector, delivery mode, destination
    /// mode, trigger mode, level asserted, destination), so it can be routed like an IPI.
    public var icrValue: UInt64 {
        UInt64(vector) | UInt64(deliveryMode & 7) << 8 | (logicalDestination ? 1 << 11 : 0)
            | 1 << 14 | (levelTriggered ? 1 << 15 : 0) | UInt64(destination) << 56
    }
}

/// Where an I/O APIC sends its interrupt messages: the local APICs of the system.
public protocol IOAPICOutput {
    func deliver(_ message: IOAPICMessage)
}

/// Drops every message, for tests and machines without local APICs.
public struct NoIOAPICOutput: IOAPICOutput {
    public init() {}
    public func deliver(_ message: IOAPICMessage) {}
}

/// The 82093AA I/O APIC.
///
/// Not thread-safe: the owner serialises device lines, guest accesses and EOIs.
public final class IOAPIC {
    /// The default base of the register window, where PCs and the ACPI MADT put the first I/O APIC.
    public static let defaultBase: UInt64 = 0xfec0_0000
    /// Bytes of the register window the runtime decodes (the datasheet's 4 KiB page).
    public static let windowSize: UInt64 = 0x1000
    /// Interrupt input pins.
    public static let pinCount = 24
    /// The 82093AA's version.
    public static let versionNumber: UInt32 = 0x11

    /// Offsets of the two directly addressed registers in the window.
    public enum Window {
        /// I/O register select: which indirect register IOWIN reaches (bits 7-0).
        public static let registerSelect: UInt64 = 0x00
        /// I/O window: the selected register's contents.
        public static let data: UInt64 = 0x10
    }

    /// Indirect register indices.
    public enum Register {
        public static let id: UInt8 = 0x00
        public static let version: UInt8 = 0x01
        public static let arbitration: UInt8 = 0x02
        /// The first redirection table register (pin 0, low half).
        public static let redirectionTable: UInt8 = 0x10
    }

    /// Redirection table entry bits.
    public enum Entry {
        public static let vectorMask: UInt64 = 0xff
        public static let deliveryModeShift: UInt64 = 8
        public static let logicalDestination: UInt64 = 1 << 11
        public static let deliveryStatus: UInt64 = 1 << 12
        public static let activeLow: UInt64 = 1 << 13
        public static let remoteIRR: UInt64 = 1 << 14
        public static let levelTriggered: UInt64 = 1 << 15
        public static let mask: UInt64 = 1 << 16
        public static let destinationShift: UInt64 = 56
        /// Bits the guest writes: all but delivery status and Remote IRR (read-only), and the
        /// reserved bits 55-17.
        public static let writable: UInt64 = 0xff00_0000_0001_afff
    }

    public let output: any IOAPICOutput
    /// The I/O APIC ID (IOAPICID bits 27-24).
    public private(set) var id: UInt8
    /// The bus arbitration ID (IOAPICARB bits 27-24), loaded from the ID when the ID is written.
    public private(set) var arbitrationID: UInt8
    /// IOREGSEL as last written.
    public private(set) var selectedRegister: UInt8 = 0
    private var entries = [UInt64](repeating: Entry.mask, count: IOAPIC.pinCount)
    /// Each pin's input level as the device drives it (true: high).
    private var pinLevels = [Bool](repeating: false, count: IOAPIC.pinCount)

    /// An I/O APIC after reset: every entry masked, every other bit 0.
    public init(id: UInt8 = 0, output: any IOAPICOutput = NoIOAPICOutput()) {
        self.id = id & 0xf
        self.arbitrationID = id & 0xf
        self.output = output
    }

    /// Redirection table entry `pin` (nil for a pin that does not exist).
    public func redirectionEntry(_ pin: Int) -> UInt64? {
        entries.indices.contains(pin) ? entries[pin] : nil
    }

    // MARK: Device side

    /// Drives input pin `pin` (0-23; others are ignored) to `level` (true: high).
    public func setPin(_ pin: Int, level: Bool) {
        guard pinLevels.indices.contains(pin) else { return }
        let wasActive = isActive(pin)
        pinLevels[pin] = level
        let active = isActive(pin)
        let entry = entries[pin]
        if entry & Entry.levelTriggered != 0 {
            if active { serviceLevel(pin) }
        } else if active && !wasActive && entry & Entry.mask == 0 {
            send(pin)
        }
    }

    /// A local APIC's EOI broadcast for `vector`: clears Remote IRR of every level-triggered entry
    /// with that vector, and sends again for a pin that is still active.
    public func endOfInterrupt(vector: UInt8) {
        for pin in entries.indices
        where entries[pin] & Entry.levelTriggered != 0 && UInt8(entries[pin] & Entry.vectorMask) == vector {
            entries[pin] &= ~Entry.remoteIRR
            serviceLevel(pin)
        }
    }

    // MARK: Guest side (MMIO)

    /// Reads `size` bytes at `offset` into the register window.
    public func read(offset: UInt64, size: UInt8) -> UInt64 {
        guard size == 4 else { return 0 }
        switch offset {
        case Window.registerSelect: return UInt64(selectedRegister)
        case Window.data: return UInt64(readRegister(selectedRegister))
        default: return 0
        }
    }

    /// Writes the low `size` bytes of `value` at `offset` into the register window.
    public func write(offset: UInt64, size: UInt8, value: UInt64) {
        guard size == 4 else { return }
        switch offset {
        case Window.registerSelect: selectedRegister = UInt8(truncatingIfNeeded: value)
        case Window.data: writeRegister(selectedRegister, UInt32(truncatingIfNeeded: value))
        default: return
        }
    }

    private func readRegister(_ index: UInt8) -> UInt32 {
        switch index {
        case Register.id: return UInt32(id) << 24
        case Register.version: return UInt32(Self.pinCount - 1) << 16 | Self.versionNumber
        case Register.arbitration: return UInt32(arbitrationID) << 24
        default:
            guard let (pin, high) = Self.redirectionSlot(index) else { return 0 }
            return UInt32(truncatingIfNeeded: high ? entries[pin] >> 32 : entries[pin])
        }
    }

    private func writeRegister(_ index: UInt8, _ value: UInt32) {
        switch index {
        case Register.id:
            id = UInt8(truncatingIfNeeded: value >> 24) & 0xf
            arbitrationID = id
        case Register.version, Register.arbitration:
            return  // read-only
        default:
            guard let (pin, high) = Self.redirectionSlot(index) else { return }
            let old = entries[pin]
            let written = high
                ? old & 0xffff_ffff | UInt64(value) << 32
                : old & 0xffff_ffff_0000_0000 | UInt64(value)
            entries[pin] = written & Entry.writable | old & (Entry.remoteIRR | Entry.deliveryStatus)
            // An edge-triggered entry has no Remote IRR.
            if entries[pin] & Entry.levelTriggered == 0 { entries[pin] &= ~Entry.remoteIRR }
            serviceLevel(pin)
        }
    }

    /// The pin and half (true: bits 63-32) register `index` of the redirection table holds.
    private static func redirectionSlot(_ index: UInt8) -> (Int, Bool)? {
        guard index >= Register.redirectionTable else { return nil }
        let pin = Int(index - Register.redirectionTable) / 2
        guard pin < pinCount else { return nil }
        return (pin, index & 1 == 1)
    }

    // MARK: Delivery

    /// Whether pin `pin` is at its active level (per the entry's polarity).
    private func isActive(_ pin: Int) -> Bool {
        pinLevels[pin] != (entries[pin] & Entry.activeLow != 0)
    }

    /// Sends for a level-triggered pin that is active, unmasked and has Remote IRR clear.
    private func serviceLevel(_ pin: Int) {
        let entry = entries[pin]
        guard entry & Entry.levelTriggered != 0, entry & (Entry.mask | Entry.remoteIRR) == 0, isActive(pin) else {
            return
        }
        entries[pin] |= Entry.remoteIRR
        send(pin)
    }

    private func send(_ pin: Int) {
        let entry = entries[pin]
        output.deliver(IOAPICMessage(
            vector: UInt8(entry & Entry.vectorMask),
            deliveryMode: UInt8((entry >> Entry.deliveryModeShift) & 7),
            logicalDestination: entry & Entry.logicalDestination != 0,
            levelTriggered: entry & Entry.levelTriggered != 0,
            destination: UInt8(truncatingIfNeeded: entry >> Entry.destinationShift),
            pin: pin))
    }
}
