// The PC's pair of 8259A programmable interrupt controllers (after the Intel 8259A datasheet),
// master at 0x20-0x21 and slave at 0xa0-0xa1 on the master's IR2, plus the PIIX edge/level
// control registers (ELCR) at 0x4d0-0x4d1, as a pure state machine.
//
// Devices drive the sixteen ISA lines with `setIRQ(_:level:)`; the CPU side asks
// `pendingVector()` and takes an interrupt with `acknowledge()` (the two INTA cycles); the
// master's INT pin is an `InterruptLine` driven whenever the answer to `pendingVector()` changes
// between "something" and "nothing".
//
// Simplifications:
// - An edge-triggered request is latched in IRR on the rising edge and kept until INTA, even if
//   the line drops first. (The datasheet asks the line to stay high until INTA; a runtime that
//   delivers time in steps may lower it sooner, and the request must not be lost.) A request
//   still vanishes, giving the spurious IRQ7/IRQ15 vector, when it is masked between
//   `pendingVector()` and `acknowledge()`, or when a level-triggered line drops.
// - The master's IR2 latches the slave's INT output like an edge-triggered input, and latches
//   it again right after an INTA if the slave still holds INT high, so a slave with a second
//   request ready does not lose it for want of a new edge. The cascade is always on IR2 (ICW3
//   is stored, not interpreted); ICW1 SNGL makes IR2 an ordinary input.
// - Level triggering (ICW1 LTIM or an ELCR bit) makes IRR follow the line. The ELCR bits the
//   PIIX hard-wires to edge (IRQ0, 1, 2, 8, 13) read 0.
// - The vector is always the 8086 form (ICW2 base + IRQ); the 8080 call format (ICW4 uPM = 0),
//   buffered mode and special fully nested mode are stored and ignored.
// - A 2- or 4-byte port access is split into byte accesses at consecutive ports, as the ISA
//   bus does; bytes past a device's ports read 0xff.

import VisorCore

/// The PC's two cascaded 8259A PICs and their ELCR registers.
///
/// Not thread-safe: the owner serialises device lines, guest port accesses and INTA.
public final class PIC8259Pair {
    /// First port of the master PIC (command at +0, data at +1).
    public static let masterBase: UInt16 = 0x20
    /// First port of the slave PIC.
    public static let slaveBase: UInt16 = 0xa0
    /// First port of the edge/level control registers (master's at +0, slave's at +1).
    public static let elcrBase: UInt16 = 0x4d0
    /// Ports each of the three windows decodes.
    public static let portCount: UInt16 = 2
    /// The master input the slave's INT output is wired to.
    public static let cascadeIRQ = 2

    /// The master's INT pin, wired to the CPU's INTR input.
    public let interruptLine: any InterruptLine
    /// The level last driven on `interruptLine`.
    public private(set) var interruptLevel = false

    var master = PIC8259Chip(elcrWritable: 0b1111_1000)
    var slave = PIC8259Chip(elcrWritable: 0b1101_1110)

    /// A pair in the state the datasheet leaves after power-on: no ICW yet, nothing masked,
    /// vector bases 0, INT low.
    public init(interruptLine: any InterruptLine = NoInterruptLine()) {
        self.interruptLine = interruptLine
    }

    // MARK: Device side

    /// Drives ISA line `line` (0-15; others are ignored). On an edge-triggered input a change
    /// from low to high requests an interrupt; on a level-triggered one the request follows
    /// the level.
    public func setIRQ(_ line: Int, level: Bool) {
        guard (0..<16).contains(line) else { return }
        if line < 8 {
            // In a cascaded pair IR2 belongs to the slave; a device's IRQ2 goes nowhere.
            guard line != Self.cascadeIRQ || master.single else { return }
            master.setInput(line, level: level)
        } else {
            slave.setInput(line - 8, level: level)
        }
        update()
    }

    // MARK: CPU side

    /// The vector the next INTA would return, or `nil` if INT is low.
    public func pendingVector() -> UInt8? {
        guard let irq = master.pendingIRQ() else { return nil }
        if irq == Self.cascadeIRQ && !master.single {
            guard let slaveIRQ = slave.pendingIRQ() else { return slave.vector(for: 7) }
            return slave.vector(for: slaveIRQ)
        }
        return master.vector(for: irq)
    }

    /// The INTA cycles: moves the highest-priority request from IRR to ISR (unless in auto-EOI
    /// mode) and returns its vector. If no request is pending any more, returns the spurious
    /// vector (the master's IRQ7, or the slave's IRQ15 when the master saw the cascade) and
    /// sets no ISR bit for it.
    public func acknowledge() -> UInt8 {
        defer { update() }
        guard let irq = master.pendingIRQ() else { return master.vector(for: 7) }
        master.acknowledge(irq)
        if irq == Self.cascadeIRQ && !master.single {
            guard let slaveIRQ = slave.pendingIRQ() else { return slave.vector(for: 7) }
            slave.acknowledge(slaveIRQ)
            return slave.vector(for: slaveIRQ)
        }
        return master.vector(for: irq)
    }

    // MARK: Guest side

    /// Reads the byte at `port` (one of 0x20, 0x21, 0xa0, 0xa1, 0x4d0, 0x4d1); other ports
    /// read 0xff.
    public func readPort(_ port: UInt16) -> UInt8 {
        defer { update() }
        switch port {
        case Self.masterBase, Self.masterBase + 1:
            if master.pollNext {
                master.pollNext = false
                return pollMaster()
            }
            return master.read(data: port & 1 != 0)
        case Self.slaveBase, Self.slaveBase + 1:
            if slave.pollNext {
                slave.pollNext = false
                return slave.poll()
            }
            return slave.read(data: port & 1 != 0)
        case Self.elcrBase: return master.elcr
        case Self.elcrBase + 1: return slave.elcr
        default: return 0xff
        }
    }

    /// Writes `value` to `port`; ports the pair does not decode are ignored.
    public func writePort(_ port: UInt16, _ value: UInt8) {
        switch port {
        case Self.masterBase, Self.masterBase + 1: master.write(data: port & 1 != 0, value)
        case Self.slaveBase, Self.slaveBase + 1: slave.write(data: port & 1 != 0, value)
        case Self.elcrBase: master.writeELCR(value)
        case Self.elcrBase + 1: slave.writeELCR(value)
        default: return
        }
        update()
    }

    /// The master's ports (0x20-0x21) as a device to attach at `masterBase`.
    public var masterPorts: any PortDevice { PortWindow(pair: self, base: Self.masterBase) }
    /// The slave's ports (0xa0-0xa1) as a device to attach at `slaveBase`.
    public var slavePorts: any PortDevice { PortWindow(pair: self, base: Self.slaveBase) }
    /// The ELCR ports (0x4d0-0x4d1) as a device to attach at `elcrBase`.
    public var elcrPorts: any PortDevice { PortWindow(pair: self, base: Self.elcrBase) }

    // MARK: Inspection (tests, debugging, snapshots)

    /// Interrupt request registers: master in the low byte, slave in the high byte.
    public var irr: UInt16 { UInt16(master.irr) | UInt16(slave.irr) << 8 }
    /// In-service registers, laid out as `irr`.
    public var isr: UInt16 { UInt16(master.isr) | UInt16(slave.isr) << 8 }
    /// Interrupt mask registers (OCW1), laid out as `irr`.
    public var imr: UInt16 { UInt16(master.imr) | UInt16(slave.imr) << 8 }

    /// A poll command on the master acknowledges like INTA, following the cascade.
    private func pollMaster() -> UInt8 {
        guard let irq = master.pendingIRQ() else { return 0 }
        master.acknowledge(irq)
        if irq == Self.cascadeIRQ && !master.single, let slaveIRQ = slave.pendingIRQ() {
            slave.acknowledge(slaveIRQ)
        }
        return 0x80 | UInt8(irq)
    }

    /// Recomputes the cascade input and the INT output after any change.
    private func update() {
        if !master.single {
            if slave.pendingIRQ() != nil { master.irr |= 1 << Self.cascadeIRQ }
        }
        let level = master.pendingIRQ() != nil
        if level != interruptLevel {
            interruptLevel = level
            interruptLine.setLevel(level)
        }
    }

    /// One of the pair's three two-port windows on the I/O bus.
    private final class PortWindow: PortDevice {
        let pair: PIC8259Pair
        let base: UInt16
        init(pair: PIC8259Pair, base: UInt16) {
            self.pair = pair
            self.base = base
        }
        func read(offset: UInt16, size: UInt8) -> UInt32 {
            var value: UInt32 = 0
            for i in 0..<UInt16(min(size, 4)) {
                let byte = offset &+ i < PIC8259Pair.portCount
                    ? pair.readPort(base &+ offset &+ i) : 0xff
                value |= UInt32(byte) << (8 * UInt32(i))
            }
            return value
        }
        func write(offset: UInt16, size: UInt8, value: UInt32) {
            for i in 0..<UInt16(min(size, 4)) where offset &+ i < PIC8259Pair.portCount {
                pair.writePort(base &+ offset &+ i, UInt8(truncatingIfNeeded: value >> (8 * UInt32(i))))
            }
        }
    }
}

/// One 8259A. Register names after the datasheet.
struct PIC8259Chip {
    /// Command words, told apart by the port and bits 4 and 3 of the value.
    enum ICW1 {
        static let marker: UInt8 = 0x10
        static let ic4: UInt8 = 0x01
        static let sngl: UInt8 = 0x02
        static let ltim: UInt8 = 0x08
    }
    enum ICW4 {
        static let aeoi: UInt8 = 0x02
    }
    enum OCW3 {
        static let marker: UInt8 = 0x08
        static let ris: UInt8 = 0x01
        static let rr: UInt8 = 0x02
        static let p: UInt8 = 0x04
        static let smm: UInt8 = 0x20
        static let esmm: UInt8 = 0x40
    }

    /// Which initialisation command word the data port expects next.
    enum InitStep { case ready, icw2, icw3, icw4 }

    var irr: UInt8 = 0
    var isr: UInt8 = 0
    var imr: UInt8 = 0
    var elcr: UInt8 = 0
    let elcrWritable: UInt8
    /// The levels of the IR inputs, for edge detection.
    var inputs: UInt8 = 0
    var vectorBase: UInt8 = 0
    var icw3: UInt8 = 0
    var icw4: UInt8 = 0
    var step = InitStep.ready
    var needsICW4 = false
    var single = false
    var levelTriggeredAll = false
    var readISR = false
    var pollNext = false
    var specialMask = false
    var rotateOnAutoEOI = false
    /// The IR with the lowest priority; the one after it (mod 8) has the highest. 7 after ICW1.
    var lowestPriority = 7

    init(elcrWritable: UInt8) {
        self.elcrWritable = elcrWritable
    }

    var autoEOI: Bool { icw4 & ICW4.aeoi != 0 }
    var levelTriggered: UInt8 { (levelTriggeredAll ? 0xff : elcr) }

    func vector(for irq: Int) -> UInt8 { vectorBase | UInt8(irq) }

    mutating func setInput(_ irq: Int, level: Bool) {
        let bit = UInt8(1) << irq
        if level {
            if inputs & bit == 0 || levelTriggered & bit != 0 { irr |= bit }
            inputs |= bit
        } else {
            inputs &= ~bit
            if levelTriggered & bit != 0 { irr &= ~bit }
        }
    }

    /// The first IR of `bits` in priority order, if any.
    func highestPriority(in bits: UInt8) -> Int? {
        for rank in 1...8 {
            let irq = (lowestPriority + rank) & 7
            if bits & (1 << irq) != 0 { return irq }
        }
        return nil
    }

    /// Rank of `irq` in the current priority order: 0 is the highest.
    func rank(of irq: Int) -> Int { (irq - lowestPriority - 1) & 7 }

    /// The IR this chip would present on INT: the highest-priority unmasked request, if it
    /// beats everything in service (special mask mode ignores masked in-service levels).
    func pendingIRQ() -> Int? {
        guard let irq = highestPriority(in: irr & ~imr) else { return nil }
        let blocking = specialMask ? isr & ~imr : isr
        if let serving = highestPriority(in: blocking), rank(of: serving) <= rank(of: irq) {
            return nil
        }
        return irq
    }

    mutating func acknowledge(_ irq: Int) {
        let bit = UInt8(1) << irq
        if levelTriggered & bit == 0 { irr &= ~bit }
        if autoEOI {
            if rotateOnAutoEOI { lowestPriority = irq }
        } else {
            isr |= bit
        }
    }

    /// The poll command's answer: acknowledges the pending IR and reports it in bits 2-0 with
    /// bit 7 set, or 0 if nothing is pending.
    mutating func poll() -> UInt8 {
        guard let irq = pendingIRQ() else { return 0 }
        acknowledge(irq)
        return 0x80 | UInt8(irq)
    }

    func read(data: Bool) -> UInt8 {
        if data { return imr }
        return readISR ? isr : irr
    }

    mutating func write(data: Bool, _ value: UInt8) {
        if !data {
            if value & ICW1.marker != 0 {
                initialise(value)
            } else if value & OCW3.marker != 0 {
                operationCommand3(value)
            } else {
                operationCommand2(value)
            }
            return
        }
        switch step {
        case .ready:
            imr = value  // OCW1
        case .icw2:
            vectorBase = value & 0xf8
            step = single ? (needsICW4 ? .icw4 : .ready) : .icw3
        case .icw3:
            icw3 = value
            step = needsICW4 ? .icw4 : .ready
        case .icw4:
            icw4 = value
            step = .ready
        }
    }

    mutating func writeELCR(_ value: UInt8) {
        elcr = value & elcrWritable
        // A line switched to level sensing requests while it is high; switched to edge, it
        // keeps what it had latched.
        irr |= inputs & levelTriggered
    }

    /// ICW1: starts the initialisation sequence. The datasheet's reset: IMR cleared, IR7 lowest
    /// priority, special mask mode off, IRR selected for reading, and the edge sense latches
    /// cleared, so a line already high must fall and rise again to request.
    private mutating func initialise(_ value: UInt8) {
        needsICW4 = value & ICW1.ic4 != 0
        single = value & ICW1.sngl != 0
        levelTriggeredAll = value & ICW1.ltim != 0
        icw4 = 0
        imr = 0
        isr = 0
        irr = inputs & levelTriggered
        lowestPriority = 7
        specialMask = false
        readISR = false
        pollNext = false
        rotateOnAutoEOI = false
        step = .icw2
    }

    private mutating func operationCommand2(_ value: UInt8) {
        let level = Int(value & 7)
        switch value >> 5 {
        case 0b001:  // non-specific EOI
            if let irq = highestPriority(in: isr) { isr &= ~(1 << irq) }
        case 0b011:  // specific EOI
            isr &= ~(1 << level)
        case 0b101:  // rotate on non-specific EOI
            if let irq = highestPriority(in: isr) {
                isr &= ~(1 << irq)
                lowestPriority = irq
            }
        case 0b111:  // rotate on specific EOI
            isr &= ~(1 << level)
            lowestPriority = level
        case 0b110:  // set priority
            lowestPriority = level
        case 0b100:
            rotateOnAutoEOI = true
        case 0b000:
            rotateOnAutoEOI = false
        default:  // 0b010: no operation
            break
        }
    }

    private mutating func operationCommand3(_ value: UInt8) {
        if value & OCW3.esmm != 0 { specialMask = value & OCW3.smm != 0 }
        if value & OCW3.rr != 0 { readISR = value & OCW3.ris != 0 }
        if value & OCW3.p != 0 { pollNext = true }
    }
}
