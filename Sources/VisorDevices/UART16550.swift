// A 16550A UART (after the National Semiconductor PC16550D datasheet) as a pure state machine.
//
// The model does no I/O and owns no threads: the guest reaches it through `PortDevice`, the host
// feeds it input with `receive(_:)`, transmitted bytes leave through a `ByteSink`, and the
// interrupt output is an `InterruptLine`. Everything the guest can do is a register access, and
// every register access is handled for any offset, size and value.
//
// Simplifications, all invisible to Linux's 8250 driver:
// - Transmission is instantaneous. THR and the transmitter are always empty (LSR THRE and TEMT
//   always read 1), so a write to THR delivers the byte at once and re-arms the THRE interrupt.
// - There is no baud clock. The divisor latch is stored and read back but paces nothing, and the
//   receiver's character-timeout interrupt is reported as soon as the FIFO holds fewer bytes
//   than the trigger level instead of four character times later.
// - Nothing corrupts a character, so parity, framing and break errors never occur; only overrun.
// - On a PC, MCR OUT2 gates the UART's interrupt onto the ISA bus. That gate is the board's, not
//   the UART's, and is not modelled: the line follows IIR whatever OUT2 says.

import VisorCore

/// A 16550A UART with a 16-byte receive FIFO.
///
/// Not thread-safe: the owner serialises guest accesses, `receive(_:)` and snapshots
/// (one lock or one thread).
public final class UART16550: PortDevice {
    /// Number of I/O ports the UART decodes from its base port.
    public static let registerCount: UInt16 = 8
    /// Depth of the receive FIFO when FIFOs are enabled (FCR FIFO enable).
    public static let fifoDepth = 16
    /// Divisor latch after reset: 12 gives 9600 baud from the PC's 1.8432 MHz clock.
    public static let resetDivisor: UInt16 = 12
    /// The modem inputs when not in loopback: a host console is always "connected", so Clear To
    /// Send, Data Set Ready and Data Carrier Detect are asserted and Ring Indicator is not.
    static let externalModemLines: UInt8 = MSR.cts | MSR.dsr | MSR.dcd

    /// The interrupt output (INTR pin).
    public let interruptLine: any InterruptLine
    /// Where transmitted bytes go (the SOUT pin), except in loopback mode.
    public let sink: any ByteSink

    private var divisor: UInt16
    private var ier: UInt8
    /// The FCR bits that persist: FIFO enable, DMA mode select and the receiver trigger level.
    private var fcr: UInt8
    private var lcr: UInt8
    private var mcr: UInt8
    /// LSR's sticky error bits (OE, PE, FE, BI), cleared by reading LSR.
    private var lineErrors: UInt8
    /// Modem inputs (high nibble) and their delta bits (low nibble, cleared by reading MSR).
    private var msr: UInt8
    private var scr: UInt8
    /// THR has become empty and the THRE interrupt has not been acknowledged yet.
    private var thrEmptyPending: Bool
    private var receiveFIFO: ByteFIFO

    /// The level last driven on `interruptLine`.
    public private(set) var interruptLevel: Bool = false

    /// A UART in its power-on reset state, with the interrupt line low.
    public init(sink: any ByteSink, interruptLine: any InterruptLine = NoInterruptLine()) {
        self.sink = sink
        self.interruptLine = interruptLine
        let reset = State()
        divisor = reset.divisor
        ier = reset.ier
        fcr = reset.fcr
        lcr = reset.lcr
        mcr = reset.mcr
        lineErrors = reset.lineErrors
        msr = reset.msr
        scr = reset.scr
        thrEmptyPending = reset.thrEmptyPending
        receiveFIFO = ByteFIFO()
    }

    /// A UART restored from a snapshot. If the restored registers have an interrupt pending,
    /// the line is driven high before this returns.
    public convenience init(
        state: State, sink: any ByteSink, interruptLine: any InterruptLine = NoInterruptLine()
    ) {
        self.init(sink: sink, interruptLine: interruptLine)
        self.state = state
    }

    // MARK: Host side

    /// Whether `receive(_:)` would accept a byte now: the receive FIFO (one byte deep while
    /// FIFOs are disabled) has room and the UART is not in loopback, where the serial input is
    /// disconnected.
    public var canReceive: Bool {
        !isLoopback && receiveFIFO.count < receiveCapacity
    }

    /// Delivers a byte from the host onto the serial input. Returns `false` if the byte was
    /// lost: in loopback mode it is ignored; if the receive FIFO is full it is an overrun,
    /// which sets LSR OE as a real UART would.
    public func receive(_ byte: UInt8) -> Bool {
        guard !isLoopback else { return false }
        let accepted = enqueueReceived(byte)
        updateInterruptLine()
        return accepted
    }

    // MARK: Guest side (PortDevice)

    /// Reads the register at `offset`. Only the low byte carries data whatever the access size;
    /// offsets past the eight registers read as 0xff, like an undecoded ISA port.
    public func read(offset: UInt16, size: UInt8) -> UInt32 {
        guard offset < Self.registerCount else { return 0xff }
        return UInt32(readRegister(offset))
    }

    /// Writes the low byte of `value` to the register at `offset`, whatever the access size.
    /// Offsets past the eight registers are ignored.
    public func write(offset: UInt16, size: UInt8, value: UInt32) {
        guard offset < Self.registerCount else { return }
        writeRegister(offset, UInt8(truncatingIfNeeded: value))
    }

    private var dlab: Bool { lcr & LCR.dlab != 0 }
    private var isLoopback: Bool { mcr & MCR.loop != 0 }
    private var fifosEnabled: Bool { fcr & FCR.fifoEnable != 0 }
    private var receiveCapacity: Int { fifosEnabled ? Self.fifoDepth : 1 }

    /// Receiver FIFO trigger level in bytes, from FCR bits 7-6.
    private var triggerLevel: Int {
        switch fcr & FCR.triggerLevelMask {
        case FCR.trigger1: return 1
        case FCR.trigger4: return 4
        case FCR.trigger8: return 8
        default: return 14
        }
    }

    private func readRegister(_ offset: UInt16) -> UInt8 {
        switch offset {
        case Register.dll where dlab:
            return UInt8(truncatingIfNeeded: divisor)
        case Register.rbr:
            let byte = receiveFIFO.pop() ?? 0
            updateInterruptLine()
            return byte
        case Register.dlm where dlab:
            return UInt8(truncatingIfNeeded: divisor >> 8)
        case Register.ier:
            return ier
        case Register.iir:
            let id = interruptIdentification
            // Reading IIR while it reports THRE is the acknowledgement of that interrupt.
            if id == IIR.thrEmpty {
                thrEmptyPending = false
                updateInterruptLine()
            }
            return id | (fifosEnabled ? IIR.fifosEnabled : 0)
        case Register.lcr:
            return lcr
        case Register.mcr:
            return mcr
        case Register.lsr:
            let value = lineStatus
            lineErrors = 0
            updateInterruptLine()
            return value
        case Register.msr:
            let value = msr
            msr &= ~MSR.deltaMask
            updateInterruptLine()
            return value
        default:  // Register.scr; the caller has bounded offset to the eight registers.
            return scr
        }
    }

    private func writeRegister(_ offset: UInt16, _ value: UInt8) {
        switch offset {
        case Register.dll where dlab:
            divisor = divisor & 0xff00 | UInt16(value)
        case Register.thr:
            transmit(value)
        case Register.dlm where dlab:
            divisor = divisor & 0x00ff | UInt16(value) << 8
        case Register.ier:
            ier = value & IER.writableMask
            // Enabling ETBEI while THR is empty raises THRE at once; the 8250 driver relies on
            // it both to start transmission and in its start-up probe for broken UARTs.
            if ier & IER.etbei != 0 {
                thrEmptyPending = true
            }
            updateInterruptLine()
        case Register.fcr:
            writeFIFOControl(value)
        case Register.lcr:
            lcr = value
        case Register.mcr:
            mcr = value & MCR.writableMask
            updateModemInputs()
            updateInterruptLine()
        case Register.lsr, Register.msr:
            // Status registers; the datasheet reserves writes for factory testing.
            break
        default:  // Register.scr
            scr = value
        }
    }

    private func transmit(_ byte: UInt8) {
        // Writing THR acknowledges THRE; the instantaneous transmitter then empties THR again,
        // so an enabled THRE interrupt drops and rises, giving an edge-triggered PIC a new edge.
        thrEmptyPending = false
        updateInterruptLine()
        if isLoopback {
            _ = enqueueReceived(byte)
        } else {
            sink.write(byte)
        }
        thrEmptyPending = true
        updateInterruptLine()
    }

    private func writeFIFOControl(_ value: UInt8) {
        let enable = value & FCR.fifoEnable != 0
        if enable != fifosEnabled {
            // Changing FIFO enable clears both FIFOs (datasheet, FCR bit 0).
            receiveFIFO.removeAll()
        }
        if enable {
            if value & FCR.clearReceiveFIFO != 0 {
                receiveFIFO.removeAll()
            }
            // FCR clear transmit FIFO: the transmitter is always empty, so there is nothing to drop.
            fcr = value & FCR.persistentMask
        } else {
            // With FCR bit 0 clear, the other FCR bits are not programmed.
            fcr = 0
        }
        updateInterruptLine()
    }

    /// Puts a byte into the receive FIFO, or records an overrun and drops it if the FIFO is full.
    private func enqueueReceived(_ byte: UInt8) -> Bool {
        guard receiveFIFO.count < receiveCapacity else {
            lineErrors |= LSR.oe
            return false
        }
        receiveFIFO.push(byte)
        return true
    }

    /// The modem inputs follow MCR in loopback (RTS→CTS, DTR→DSR, OUT1→RI, OUT2→DCD) and the
    /// external lines otherwise; every change sets its delta bit.
    private func updateModemInputs() {
        var lines: UInt8 = 0
        if isLoopback {
            if mcr & MCR.rts != 0 { lines |= MSR.cts }
            if mcr & MCR.dtr != 0 { lines |= MSR.dsr }
            if mcr & MCR.out1 != 0 { lines |= MSR.ri }
            if mcr & MCR.out2 != 0 { lines |= MSR.dcd }
        } else {
            lines = Self.externalModemLines
        }
        let old = msr & MSR.inputMask
        let changed = old ^ lines
        var deltas = msr & MSR.deltaMask
        if changed & MSR.cts != 0 { deltas |= MSR.dcts }
        if changed & MSR.dsr != 0 { deltas |= MSR.ddsr }
        if changed & MSR.dcd != 0 { deltas |= MSR.ddcd }
        // Ring Indicator reports only its trailing edge: asserted to not asserted.
        if old & MSR.ri != 0 && lines & MSR.ri == 0 { deltas |= MSR.teri }
        msr = lines | deltas
    }

    private var lineStatus: UInt8 {
        var value = lineErrors | LSR.thre | LSR.temt
        if !receiveFIFO.isEmpty { value |= LSR.dr }
        if fifosEnabled && lineErrors & (LSR.pe | LSR.fe | LSR.bi) != 0 { value |= LSR.rxfifoError }
        return value
    }

    /// IIR bits 3-0: the highest-priority enabled interrupt that is pending.
    private var interruptIdentification: UInt8 {
        if ier & IER.elsi != 0 && lineErrors != 0 {
            return IIR.receiverLineStatus
        }
        if ier & IER.erbfi != 0 && !receiveFIFO.isEmpty {
            if fifosEnabled && receiveFIFO.count < triggerLevel {
                return IIR.characterTimeout
            }
            return IIR.receivedDataAvailable
        }
        if ier & IER.etbei != 0 && thrEmptyPending {
            return IIR.thrEmpty
        }
        if ier & IER.edssi != 0 && msr & MSR.deltaMask != 0 {
            return IIR.modemStatus
        }
        return IIR.noInterruptPending
    }

    private func updateInterruptLine() {
        let level = interruptIdentification != IIR.noInterruptPending
        guard level != interruptLevel else { return }
        interruptLevel = level
        interruptLine.setLevel(level)
    }
}

// MARK: - Snapshots

extension UART16550 {
    /// Everything a UART holds, as plain values. The defaults are the power-on reset state.
    public struct State: Sendable, Equatable {
        /// Divisor latch, DLM:DLL.
        public var divisor: UInt16 = UART16550.resetDivisor
        /// Interrupt Enable Register (bits 3-0).
        public var ier: UInt8 = 0
        /// The FCR bits that persist: FIFO enable, DMA mode select and receiver trigger level.
        public var fcr: UInt8 = 0
        /// Line Control Register.
        public var lcr: UInt8 = 0
        /// Modem Control Register (bits 4-0).
        public var mcr: UInt8 = 0
        /// LSR error bits not yet cleared by a read of LSR (OE, PE, FE, BI).
        public var lineErrors: UInt8 = 0
        /// Modem Status Register. On restore only the delta bits (3-0) are taken; the inputs
        /// (7-4) follow from `mcr`.
        public var msr: UInt8 = UART16550.externalModemLines
        /// Scratch Register.
        public var scr: UInt8 = 0
        /// A THRE interrupt is pending (raised and not yet acknowledged).
        public var thrEmptyPending: Bool = false
        /// Bytes waiting in the receive FIFO, oldest first. On restore, bytes beyond the FIFO's
        /// capacity (16, or 1 with FIFOs disabled) are dropped.
        public var receiveFIFO: [UInt8] = []

        /// The power-on reset state.
        public init() {}
    }

    /// The UART's registers and FIFO contents. Setting it restores a snapshot: values a real
    /// UART could not hold are masked off, and the interrupt line is driven to match.
    public var state: State {
        get {
            var s = State()
            s.divisor = divisor
            s.ier = ier
            s.fcr = fcr
            s.lcr = lcr
            s.mcr = mcr
            s.lineErrors = lineErrors
            s.msr = msr
            s.scr = scr
            s.thrEmptyPending = thrEmptyPending
            s.receiveFIFO = receiveFIFO.contents
            return s
        }
        set {
            divisor = newValue.divisor
            ier = newValue.ier & IER.writableMask
            fcr = newValue.fcr & FCR.fifoEnable != 0 ? newValue.fcr & FCR.persistentMask : 0
            lcr = newValue.lcr
            mcr = newValue.mcr & MCR.writableMask
            lineErrors = newValue.lineErrors & (LSR.oe | LSR.pe | LSR.fe | LSR.bi)
            // Take the deltas, then let the inputs follow MCR without inventing new deltas.
            msr = newValue.msr & MSR.deltaMask
            let deltas = msr
            updateModemInputs()
            msr = msr & MSR.inputMask | deltas
            scr = newValue.scr
            thrEmptyPending = newValue.thrEmptyPending
            receiveFIFO.removeAll()
            for byte in newValue.receiveFIFO.prefix(receiveCapacity) {
                receiveFIFO.push(byte)
            }
            updateInterruptLine()
        }
    }
}

// MARK: - Registers and bits (PC16550D datasheet names)

extension UART16550 {
    /// Register offsets from the base port. Offsets 0 and 1 are the divisor latch while LCR DLAB
    /// is set.
    public enum Register {
        /// Receiver Buffer Register (read, DLAB = 0).
        public static let rbr: UInt16 = 0
        /// Transmitter Holding Register (write, DLAB = 0).
        public static let thr: UInt16 = 0
        /// Divisor Latch, least significant byte (DLAB = 1).
        public static let dll: UInt16 = 0
        /// Interrupt Enable Register (DLAB = 0).
        public static let ier: UInt16 = 1
        /// Divisor Latch, most significant byte (DLAB = 1).
        public static let dlm: UInt16 = 1
        /// Interrupt Identification Register (read).
        public static let iir: UInt16 = 2
        /// FIFO Control Register (write).
        public static let fcr: UInt16 = 2
        /// Line Control Register.
        public static let lcr: UInt16 = 3
        /// Modem Control Register.
        public static let mcr: UInt16 = 4
        /// Line Status Register.
        public static let lsr: UInt16 = 5
        /// Modem Status Register.
        public static let msr: UInt16 = 6
        /// Scratch Register.
        public static let scr: UInt16 = 7
    }

    /// Interrupt Enable Register bits.
    public enum IER {
        /// ERBFI: Enable Received Data Available Interrupt (and the character timeout).
        public static let erbfi: UInt8 = 0b0000_0001
        /// ETBEI: Enable Transmitter Holding Register Empty Interrupt.
        public static let etbei: UInt8 = 0b0000_0010
        /// ELSI: Enable Receiver Line Status Interrupt.
        public static let elsi: UInt8 = 0b0000_0100
        /// EDSSI: Enable Modem Status Interrupt.
        public static let edssi: UInt8 = 0b0000_1000
        /// Bits 7-4 are always 0 on a 16550A.
        public static let writableMask: UInt8 = 0b0000_1111
    }

    /// Interrupt Identification Register values. Bits 3-0 name the pending interrupt, highest
    /// priority first: line status, received data (or character timeout), THR empty, modem status.
    public enum IIR {
        /// Bit 0 set: no interrupt pending.
        public static let noInterruptPending: UInt8 = 0b0000_0001
        /// Receiver line status (priority 1): overrun, parity, framing error or break.
        public static let receiverLineStatus: UInt8 = 0b0000_0110
        /// Received data available (priority 2): the FIFO reached its trigger level.
        public static let receivedDataAvailable: UInt8 = 0b0000_0100
        /// Character timeout (priority 2): data below the trigger level waits in the FIFO.
        public static let characterTimeout: UInt8 = 0b0000_1100
        /// Transmitter Holding Register empty (priority 3).
        public static let thrEmpty: UInt8 = 0b0000_0010
        /// Modem status (priority 4): a delta bit is set in MSR.
        public static let modemStatus: UInt8 = 0b0000_0000
        /// Bits 3-0, the interrupt identification.
        public static let identificationMask: UInt8 = 0b0000_1111
        /// Bits 7-6, both set while FIFOs are enabled (how drivers tell a 16550A from a 16450).
        public static let fifosEnabled: UInt8 = 0b1100_0000
    }

    /// FIFO Control Register bits.
    public enum FCR {
        /// FIFO Enable; changing it clears both FIFOs.
        public static let fifoEnable: UInt8 = 0b0000_0001
        /// RCVR FIFO Reset: clears the receive FIFO (self-clearing).
        public static let clearReceiveFIFO: UInt8 = 0b0000_0010
        /// XMIT FIFO Reset: clears the transmit FIFO (self-clearing).
        public static let clearTransmitFIFO: UInt8 = 0b0000_0100
        /// DMA Mode Select.
        public static let dmaMode: UInt8 = 0b0000_1000
        /// RCVR Trigger, bits 7-6: receive FIFO level that raises the received-data interrupt.
        public static let triggerLevelMask: UInt8 = 0b1100_0000
        /// RCVR Trigger of 1 byte.
        public static let trigger1: UInt8 = 0b0000_0000
        /// RCVR Trigger of 4 bytes.
        public static let trigger4: UInt8 = 0b0100_0000
        /// RCVR Trigger of 8 bytes.
        public static let trigger8: UInt8 = 0b1000_0000
        /// RCVR Trigger of 14 bytes.
        public static let trigger14: UInt8 = 0b1100_0000
        /// The bits that are latched rather than acted on once.
        static let persistentMask: UInt8 = fifoEnable | dmaMode | triggerLevelMask
    }

    /// Line Control Register bits.
    public enum LCR {
        /// WLS, bits 1-0: word length select (5 + value data bits).
        public static let wordLengthMask: UInt8 = 0b0000_0011
        /// STB: number of stop bits (1, or 1.5/2).
        public static let stopBits: UInt8 = 0b0000_0100
        /// PEN: parity enable.
        public static let parityEnable: UInt8 = 0b0000_1000
        /// EPS: even parity select.
        public static let evenParity: UInt8 = 0b0001_0000
        /// Stick parity.
        public static let stickParity: UInt8 = 0b0010_0000
        /// Set Break.
        public static let setBreak: UInt8 = 0b0100_0000
        /// DLAB: Divisor Latch Access Bit; offsets 0 and 1 reach DLL and DLM while set.
        public static let dlab: UInt8 = 0b1000_0000
    }

    /// Modem Control Register bits.
    public enum MCR {
        /// DTR: Data Terminal Ready.
        public static let dtr: UInt8 = 0b0000_0001
        /// RTS: Request To Send.
        public static let rts: UInt8 = 0b0000_0010
        /// OUT1: user output 1 (looped back to RI).
        public static let out1: UInt8 = 0b0000_0100
        /// OUT2: user output 2 (looped back to DCD; on a PC it gates the IRQ).
        public static let out2: UInt8 = 0b0000_1000
        /// LOOP: local loopback; transmitted bytes are received, MCR outputs drive MSR inputs.
        public static let loop: UInt8 = 0b0001_0000
        /// Bits 7-5 are always 0 on a 16550A.
        public static let writableMask: UInt8 = 0b0001_1111
    }

    /// Line Status Register bits.
    public enum LSR {
        /// DR: Data Ready, a byte waits in RBR or the receive FIFO.
        public static let dr: UInt8 = 0b0000_0001
        /// OE: Overrun Error, a byte arrived with the receive FIFO full and was lost.
        public static let oe: UInt8 = 0b0000_0010
        /// PE: Parity Error.
        public static let pe: UInt8 = 0b0000_0100
        /// FE: Framing Error.
        public static let fe: UInt8 = 0b0000_1000
        /// BI: Break Interrupt.
        public static let bi: UInt8 = 0b0001_0000
        /// THRE: Transmitter Holding Register Empty.
        public static let thre: UInt8 = 0b0010_0000
        /// TEMT: Transmitter Empty (THR and the shift register).
        public static let temt: UInt8 = 0b0100_0000
        /// Error in RCVR FIFO: a parity, framing or break error is in the FIFO (FIFO mode only).
        public static let rxfifoError: UInt8 = 0b1000_0000
    }

    /// Modem Status Register bits.
    public enum MSR {
        /// DCTS: Delta Clear To Send.
        public static let dcts: UInt8 = 0b0000_0001
        /// DDSR: Delta Data Set Ready.
        public static let ddsr: UInt8 = 0b0000_0010
        /// TERI: Trailing Edge Ring Indicator.
        public static let teri: UInt8 = 0b0000_0100
        /// DDCD: Delta Data Carrier Detect.
        public static let ddcd: UInt8 = 0b0000_1000
        /// CTS: Clear To Send.
        public static let cts: UInt8 = 0b0001_0000
        /// DSR: Data Set Ready.
        public static let dsr: UInt8 = 0b0010_0000
        /// RI: Ring Indicator.
        public static let ri: UInt8 = 0b0100_0000
        /// DCD: Data Carrier Detect.
        public static let dcd: UInt8 = 0b1000_0000
        /// Bits 3-0, the delta bits, cleared by reading MSR.
        public static let deltaMask: UInt8 = 0b0000_1111
        /// Bits 7-4, the modem inputs.
        public static let inputMask: UInt8 = 0b1111_0000
    }
}

// MARK: - Receive FIFO

/// A first-in first-out queue of at most `UART16550.fifoDepth` bytes in fixed storage.
struct ByteFIFO {
    private var slots = [UInt8](repeating: 0, count: UART16550.fifoDepth)
    private var head = 0
    private(set) var count = 0

    var isEmpty: Bool { count == 0 }

    /// Appends `byte`; the caller has checked there is room.
    mutating func push(_ byte: UInt8) {
        precondition(count < slots.count, "ByteFIFO overflow: the UART checks capacity first")
        slots[(head + count) % slots.count] = byte
        count += 1
    }

    mutating func pop() -> UInt8? {
        guard count > 0 else { return nil }
        let byte = slots[head]
        head = (head + 1) % slots.count
        count -= 1
        return byte
    }

    mutating func removeAll() {
        head = 0
        count = 0
    }

    /// The bytes, oldest first.
    var contents: [UInt8] {
        (0..<count).map { slots[(head + $0) % slots.count] }
    }
}
