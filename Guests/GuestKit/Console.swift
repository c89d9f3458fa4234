// Console output on COM1, a 16550 UART at `PlatformPorts.com1`.
//
// Output is polled: each byte waits for LSR.THRE (bit 5, transmit holding register
// empty) before it is written to THR. Newlines are sent as "\n" only.

public enum Console {
    // Register offsets from the base port.
    private static let thr: UInt16 = 0      // transmit holding (DLAB = 0)
    private static let dll: UInt16 = 0      // divisor latch low (DLAB = 1)
    private static let ier: UInt16 = 1      // interrupt enable (DLAB = 0)
    private static let dlm: UInt16 = 1      // divisor latch high (DLAB = 1)
    private static let fcr: UInt16 = 2      // FIFO control
    private static let lcr: UInt16 = 3      // line control
    private static let mcr: UInt16 = 4      // modem control
    private static let lsr: UInt16 = 5      // line status
    private static let lsrTHRE: UInt8 = 1 << 5
    private static let lsrTEMT: UInt8 = 1 << 6

    private static var base: UInt16 { PlatformPorts.com1 }

    /// 115200 baud (divisor 1), 8N1, FIFOs on and cleared, interrupts off.
    public static func initialize() {
        gk_outb(base + ier, 0x00)
        gk_outb(base + lcr, 0x80)   // DLAB
        gk_outb(base + dll, 0x01)
        gk_outb(base + dlm, 0x00)
        gk_outb(base + lcr, 0x03)   // 8 data bits, no parity, 1 stop bit, DLAB off
        gk_outb(base + fcr, 0x07)   // enable FIFOs, clear RX and TX
        gk_outb(base + mcr, 0x03)   // DTR, RTS
    }

    /// Console output goes through PV `console_io` (set by `Paravirt.setUp` in PV mode):
    /// bytes collect in a per-CPU line buffer, sent at each newline, when full, or on `flush`.
    nonisolated(unsafe) public static var usePV = false
    static let pvBufferSize: UInt64 = 256

    /// Writes one byte: to the UART, or to the PV console buffer after `Paravirt.setUp` chose PV.
    public static func write(byte: UInt8) {
        if usePV {
            pvWrite(byte: byte)
            return
        }
        writeUART(byte: byte)
    }

    static func pvWrite(byte: UInt8) {
        let cpu = gk_cpu_index()
        let length = gk_pv_console_length_at(cpu)
        var n = gk_load64(length)
        if n >= pvBufferSize { n = 0 }          // cannot happen unless a handler raced us; stay in bounds
        gk_pv_console_buffer_at(cpu)[Int(n)] = byte
        n += 1
        gk_store64(length, n)
        if byte == 0x0a || n == pvBufferSize { pvFlush(cpu: cpu) }
    }

    static func pvFlush(cpu: UInt32) {
        let length = gk_pv_console_length_at(cpu)
        let n = min(gk_load64(length), pvBufferSize)
        gk_store64(length, 0)
        if n > 0 { _ = PV.consoleWrite(gk_pv_console_buffer_at(cpu), count: Int(n)) }
    }

    /// COM1 data ready (LSR bit 0).
    public static var uartHasInput: Bool { gk_inb(base + lsr) & 1 != 0 }
    /// One received byte from COM1 (check `uartHasInput` first).
    public static func readUART() -> UInt8 { gk_inb(base + thr) }

    /// Writes one byte to the UART, waiting for the transmit holding register to empty.
    /// Gives up waiting after a bounded number of polls so a missing UART cannot hang us.
    public static func writeUART(byte: UInt8) {
        var spins = 0
        while gk_inb(base + lsr) & lsrTHRE == 0 && spins < 100_000 {
            spins += 1
        }
        gk_outb(base + thr, byte)
    }

    /// Sends this CPU's PV console buffer; on the UART waits (bounded) until the transmitter
    /// is completely idle.
    public static func flush() {
        if usePV {
            if gk_cpl() == 0 { pvFlush(cpu: gk_cpu_index()) }
            return
        }
        var spins = 0
        while gk_inb(base + lsr) & lsrTEMT == 0 && spins < 100_000 {
            spins += 1
        }
    }

    public static func write(_ s: StaticString) {
        let p = s.utf8Start
        for i in 0..<s.utf8CodeUnitCount { write(byte: p[i]) }
    }

    public static func write(_ s: String) {
        for b in s.utf8 { write(byte: b) }
    }

    /// Unsigned decimal.
    public static func write(decimal value: UInt64) {
        var divisor: UInt64 = 1
        while value / divisor >= 10 { divisor *= 10 }
        while divisor > 0 {
            write(byte: UInt8(truncatingIfNeeded: value / divisor % 10) + 0x30)
            divisor /= 10
        }
    }

    /// Signed decimal.
    public static func write(decimal value: Int64) {
        if value < 0 {
            write(byte: 0x2d)
            write(decimal: UInt64(bitPattern: 0 &- value))
        } else {
            write(decimal: UInt64(value))
        }
    }

    /// "0x" and `digits` hex digits (at least; more if the value needs them), lower case.
    public static func write(hex value: UInt64, digits: Int = 1) {
        write("0x")
        var count = 16
        while count > max(digits, 1) && (value >> UInt64(4 * (count - 1))) & 0xf == 0 {
            count -= 1
        }
        while count > 0 {
            count -= 1
            let nibble = UInt8(truncatingIfNeeded: (value >> UInt64(4 * count)) & 0xf)
            write(byte: nibble < 10 ? 0x30 + nibble : 0x57 + nibble)
        }
    }
}

// print-like helpers at module scope.

public func put(_ s: StaticString) { Console.write(s) }
public func put(_ s: String) { Console.write(s) }
public func put<T: BinaryInteger>(_ value: T) {
    if T.isSigned { Console.write(decimal: Int64(truncatingIfNeeded: value)) }
    else { Console.write(decimal: UInt64(truncatingIfNeeded: value)) }
}
public func putHex<T: BinaryInteger>(_ value: T, digits: Int = 1) {
    Console.write(hex: UInt64(truncatingIfNeeded: value), digits: digits)
}
/// A whole line: the text and "\n".
public func putLine(_ s: StaticString) { Console.write(s); Console.write(byte: 0x0a) }
public func putLine(_ s: String) { Console.write(s); Console.write(byte: 0x0a) }
public func putLine() { Console.write(byte: 0x0a) }

/// The C `putchar` that Embedded Swift's `print` writes through.
@_cdecl("putchar")
public func guestkitPutchar(_ c: CInt) -> CInt {
    Console.write(byte: UInt8(truncatingIfNeeded: c))
    return c
}
