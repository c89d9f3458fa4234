// The PC's 8042 keyboard controller (as the IBM PC/AT Technical Reference and the PS/2
// controller's later commands describe it), at I/O ports 0x60 (data) and 0x64 (status on read,
// command on write), with nothing plugged into its keyboard or auxiliary (mouse) port, as a pure
// state machine.
//
// What it is for: Linux's i8042 driver probes it (flush, self test 0xAA → 0x55, the controller
// command byte, the auxiliary-port loop test) and finds it answers, and `reboot` pulses the CPU
// reset line through it (command 0xFE, or output-port bit 0 cleared with command 0xD1), which
// reaches the platform as `onReset`.
//
// No devices: a byte written for the keyboard (to port 0x60 outside a command) or for the mouse
// (command 0xD4) is answered with 0xFE ("resend"), the answer a PS/2 device gives to what it does
// not understand, so a driver's probe gives up at once instead of waiting for its timeouts.
//
// Interrupts: IRQ 1 is high while the output buffer holds a byte from the keyboard side and
// the command byte enables keyboard interrupts (bit 0); IRQ 12 likewise for the auxiliary side
// (bit 1). Reading port 0x60 empties the buffer and drops the line.
//
// Simplifications: the input buffer is never busy (status bit 1 reads 0); bytes the controller
// itself answers and bytes "from the devices" share one small output queue; scan-code
// translation (command byte bit 6) is stored and has nothing to translate; the A20 gate (output
// port bit 1) is stored and not enforced.

import VisorCore

/// The 8042 keyboard controller with empty keyboard and auxiliary ports.
///
/// Not thread-safe: the owner serialises guest accesses.
public final class I8042 {
    /// The data port; the status/command port is `dataPort + 4`.
    public static let dataPort: UInt16 = 0x60
    public static let statusPort: UInt16 = 0x64
    /// The keyboard's ISA interrupt.
    public static let keyboardIRQ = 1
    /// The auxiliary (mouse) port's ISA interrupt.
    public static let auxiliaryIRQ = 12

    /// Status register bits.
    public enum Status {
        public static let outputFull: UInt8 = 1 << 0
        public static let inputFull: UInt8 = 1 << 1
        /// The system flag: set once the controller passed its self test (firmware leaves it set).
        public static let system: UInt8 = 1 << 2
        /// The last write was to the command port (1) or the data port (0).
        public static let command: UInt8 = 1 << 3
        /// The keyboard is not inhibited by the keylock.
        public static let unlocked: UInt8 = 1 << 4
        /// The byte in the output buffer came from the auxiliary port.
        public static let auxiliaryData: UInt8 = 1 << 5
    }

    /// Controller command byte bits (read with 0x20, written with 0x60).
    public enum CommandByte {
        public static let keyboardInterrupt: UInt8 = 1 << 0
        public static let auxiliaryInterrupt: UInt8 = 1 << 1
        public static let system: UInt8 = 1 << 2
        public static let keyboardDisabled: UInt8 = 1 << 4
        public static let auxiliaryDisabled: UInt8 = 1 << 5
        public static let translate: UInt8 = 1 << 6
    }

    /// Controller commands (written to port 0x64).
    public enum Command {
        public static let readCommandByte: UInt8 = 0x20
        public static let writeCommandByte: UInt8 = 0x60
        public static let disableAuxiliary: UInt8 = 0xa7
        public static let enableAuxiliary: UInt8 = 0xa8
        public static let testAuxiliary: UInt8 = 0xa9
        public static let selfTest: UInt8 = 0xaa
        public static let testKeyboard: UInt8 = 0xab
        public static let disableKeyboard: UInt8 = 0xad
        public static let enableKeyboard: UInt8 = 0xae
        public static let readInputPort: UInt8 = 0xc0
        public static let readOutputPort: UInt8 = 0xd0
        public static let writeOutputPort: UInt8 = 0xd1
        public static let writeKeyboardBuffer: UInt8 = 0xd2
        public static let writeAuxiliaryBuffer: UInt8 = 0xd3
        public static let writeAuxiliary: UInt8 = 0xd4
        /// 0xf0-0xff pulse output-port lines for 6 µs: bit n clear pulses line n; bit 0 is the
        /// CPU reset line, so 0xfe resets the machine.
        public static let pulseOutputPort: UInt8 = 0xf0
    }

    /// Output port bits.
    public enum OutputPort {
        /// Low resets the CPU.
        public static let resetLine: UInt8 = 1 << 0
        public static let a20Gate: UInt8 = 1 << 1
    }

    /// The self test's "passed" answer.
    public static let selfTestPassed: UInt8 = 0x55
    /// What an interface test answers when the lines are fine.
    public static let interfaceTestPassed: UInt8 = 0x00
    /// A PS/2 device's "resend": the answer to a byte nothing understood.
    public static let resend: UInt8 = 0xfe
    /// Bytes the output queue holds before it drops more.
    public static let queueLimit = 16

    public let keyboardLine: any InterruptLine
    public let auxiliaryLine: any InterruptLine
    /// Called when the guest pulses the CPU reset line.
    public var onReset: (() -> Void)?

    /// The controller command byte; firmware leaves keyboard interrupts, the system flag and
    /// translation on.
    public private(set) var commandByte: UInt8 = CommandByte.keyboardInterrupt | CommandByte.system | CommandByte.translate
    public private(set) var outputPort: UInt8 = OutputPort.resetLine | OutputPort.a20Gate
    /// How many times the guest asked for a reset.
    public private(set) var resetRequests = 0
    private var lastWriteWasCommand = false
    /// A command waiting for its data byte on port 0x60.
    private var pendingCommand: UInt8?
    /// Bytes to read from port 0x60, each marked with whether it comes from the auxiliary side.
    private var queue: [(byte: UInt8, auxiliary: Bool)] = []
    private var keyboardLevel = false
    private var auxiliaryLevel = false

    public init(keyboardLine: any InterruptLine = NoInterruptLine(), auxiliaryLine: any InterruptLine = NoInterruptLine()) {
        self.keyboardLine = keyboardLine
        self.auxiliaryLine = auxiliaryLine
    }

    /// The status register.
    public var status: UInt8 {
        var s = Status.unlocked
        if commandByte & CommandByte.system != 0 { s |= Status.system }
        if lastWriteWasCommand { s |= Status.command }
        if let first = queue.first {
            s |= Status.outputFull
            if first.auxiliary { s |= Status.auxiliaryData }
        }
        return s
    }

    // MARK: Guest side

    /// Reads port `port` (0x60 or 0x64); other ports read 0xff.
    public func readPort(_ port: UInt16) -> UInt8 {
        switch port {
        case Self.dataPort:
            // An empty buffer reads the last byte again on hardware; 0 here.
            let byte = queue.isEmpty ? 0 : queue.removeFirst().byte
            updateLines()
            return byte
        case Self.statusPort:
            return status
        default:
            return 0xff
        }
    }

    /// Writes `value` to port `port` (0x60 or 0x64); other ports are ignored.
    public func writePort(_ port: UInt16, _ value: UInt8) {
        switch port {
        case Self.dataPort:
            lastWriteWasCommand = false
            writeData(value)
        case Self.statusPort:
            lastWriteWasCommand = true
            command(value)
        default:
            return
        }
        updateLines()
    }

    private func command(_ value: UInt8) {
        pendingCommand = nil
        switch value {
        case Command.readCommandByte: enqueue(commandByte)
        case Command.writeCommandByte, Command.writeOutputPort, Command.writeKeyboardBuffer,
            Command.writeAuxiliaryBuffer, Command.writeAuxiliary:
            pendingCommand = value
        case Command.disableAuxiliary: commandByte |= CommandByte.auxiliaryDisabled
        case Command.enableAuxiliary: commandByte &= ~CommandByte.auxiliaryDisabled
        case Command.testAuxiliary, Command.testKeyboard: enqueue(Self.interfaceTestPassed)
        case Command.selfTest:
            commandByte |= CommandByte.system
            enqueue(Self.selfTestPassed)
        case Command.disableKeyboard: commandByte |= CommandByte.keyboardDisabled
        case Command.enableKeyboard: commandByte &= ~CommandByte.keyboardDisabled
        case Command.readInputPort: enqueue(0)
        case Command.readOutputPort: enqueue(outputPort)
        case Command.pulseOutputPort...0xff:
            if value & OutputPort.resetLine == 0 { reset() }
        default:
            return  // commands this controller does not have are ignored
        }
    }

    private func writeData(_ value: UInt8) {
        guard let command = pendingCommand else {
            // A byte for the keyboard, which is not there to understand it.
            enqueue(Self.resend)
            return
        }
        pendingCommand = nil
        switch command {
        case Command.writeCommandByte: commandByte = value
        case Command.writeOutputPort:
            outputPort = value
            if value & OutputPort.resetLine == 0 { reset() }
        case Command.writeKeyboardBuffer: enqueue(value)
        case Command.writeAuxiliaryBuffer: enqueue(value, auxiliary: true)
        case Command.writeAuxiliary: enqueue(Self.resend, auxiliary: true)
        default: return
        }
    }

    private func reset() {
        resetRequests += 1
        onReset?()
    }

    private func enqueue(_ byte: UInt8, auxiliary: Bool = false) {
        guard queue.count < Self.queueLimit else { return }
        queue.append((byte, auxiliary))
    }

    private func updateLines() {
        let first = queue.first
        let keyboard = (first.map { !$0.auxiliary } ?? false) && commandByte & CommandByte.keyboardInterrupt != 0
        let auxiliary = (first?.auxiliary ?? false) && commandByte & CommandByte.auxiliaryInterrupt != 0
        if keyboard != keyboardLevel {
            keyboardLevel = keyboard
            keyboardLine.setLevel(keyboard)
        }
        if auxiliary != auxiliaryLevel {
            auxiliaryLevel = auxiliary
            auxiliaryLine.setLevel(auxiliary)
        }
    }
}

/// The 8042 on the I/O bus: ports 0x61-0x63 between its two belong to other devices on a PC
/// (port B at 0x61), so it is attached as two one-port windows.
extension I8042 {
    /// The data port (0x60) as a one-port bus device.
    public var dataWindow: any PortDevice { I8042Window(controller: self, port: Self.dataPort) }
    /// The status/command port (0x64) as a one-port bus device.
    public var statusWindow: any PortDevice { I8042Window(controller: self, port: Self.statusPort) }
}

/// One port of the 8042 on the bus; wider accesses take the byte at the port and read 0xff above.
final class I8042Window: PortDevice {
    unowned let controller: I8042
    let port: UInt16
    init(controller: I8042, port: UInt16) { self.controller = controller; self.port = port }

    func read(offset: UInt16, size: UInt8) -> UInt32 {
        guard offset == 0 else { return allOnes(size: size) }
        return UInt32(controller.readPort(port)) | (allOnes(size: size) & ~0xff)
    }

    func write(offset: UInt16, size: UInt8, value: UInt32) {
        guard offset == 0 else { return }
        controller.writePort(port, UInt8(truncatingIfNeeded: value))
    }
}
