// The devices of one domain, wired onto its I/O bus: COM1, the debug-exit port and the ACPI
// power-off register.

import Synchronization
import VisorABI
import VisorCore
import VisorDevices

/// The PC-like platform a domain's guest sees.
///
/// Sendable under a discipline: `bus` and the exit-only devices are used by the vCPU thread
/// alone; the UART is also fed by the console-input thread, so every access to it (guest port
/// I/O and host input) goes through `uartLock`.
final class Platform: @unchecked Sendable {
    let bus = IOBus()
    private let uart: LockedUART
    /// A power-off or debug-exit the guest requested during the last port write.
    private var requestedOutcome: DomainOutcome?
    var unbackedMMIOReads: UInt64 = 0
    var unbackedMMIOWrites: UInt64 = 0

    init(consoleOutput: @escaping @Sendable (UInt8) -> Void) throws {
        uart = LockedUART(UART16550(sink: ClosureSink(consoleOutput)))
        try bus.attach(uart, base: PlatformPorts.com1, count: PlatformPorts.uartRegisterCount)
        let debugExit = DebugExit()
        debugExit.onExitRequest = { [unowned self] status in
            if requestedOutcome == nil { requestedOutcome = .debugExit(status: status) }
        }
        try bus.attach(debugExit, base: PlatformPorts.debugExit, count: PlatformPorts.debugExitSize)
        let powerControl = PM1aControl()
        powerControl.onPowerOff = { [unowned self] in
            if requestedOutcome == nil { requestedOutcome = .poweredOff }
        }
        try bus.attach(powerControl, base: PlatformPorts.acpiPM1aControl, count: PlatformPorts.acpiPM1aControlSize)
    }

    /// Hands one byte of host input to the UART; false when its receive FIFO is full.
    func receive(_ byte: UInt8) -> Bool {
        uart.receive(byte)
    }

    /// The outcome a device requested since the last call, if any.
    func takeRequestedOutcome() -> DomainOutcome? {
        defer { requestedOutcome = nil }
        return requestedOutcome
    }
}

/// A byte sink that calls a closure.
struct ClosureSink: ByteSink {
    let body: @Sendable (UInt8) -> Void
    init(_ body: @escaping @Sendable (UInt8) -> Void) { self.body = body }
    func write(_ byte: UInt8) { body(byte) }
}

/// The UART behind a lock, shared by the vCPU thread (port I/O) and the console-input thread.
final class LockedUART: PortDevice, @unchecked Sendable {
    private let uart: Mutex<UART16550>
    init(_ uart: sending UART16550) { self.uart = Mutex(uart) }
    func read(offset: UInt16, size: UInt8) -> UInt32 { uart.withLock { $0.read(offset: offset, size: size) } }
    func write(offset: UInt16, size: UInt8, value: UInt32) {
        uart.withLock { $0.write(offset: offset, size: size, value: value) }
    }
    func receive(_ byte: UInt8) -> Bool { uart.withLock { $0.receive(byte) } }
}
