// QEMU's `isa-debug-exit` device: a port a test guest writes to end the run with a status.
//
// Attach it at `PlatformPorts.debugExit` (0xf4) for `PlatformPorts.debugExitSize` (4) ports, as
// QEMU's `-device isa-debug-exit,iobase=0xf4,iosize=0x04` does, so guests run unchanged on both.

import VisorCore

/// The `isa-debug-exit` device. A write of `v` asks for the guest to end with status
/// `(v << 1) | 1`; the low bit is always set, so a debug exit can never look like a clean
/// power-off (status 0).
///
/// Not thread-safe: the owner serialises guest accesses.
public final class DebugExit: PortDevice {
    /// Called with the exit status when the guest first asks to end.
    public typealias Handler = (_ status: Int) -> Void

    /// The status the guest asked to end with, or `nil` if it has not written the port.
    ///
    /// The full value is kept: for `v = 0xffff_ffff` it is `0x1_ffff_ffff`. QEMU passes the same
    /// value to `exit()`, and the operating system keeps only its low 8 bits as the process's exit
    /// status (so QEMU exits with `(v << 1 | 1) & 0xff`). The device does not truncate; the command
    /// line decides how to map the status onto its own exit code.
    public private(set) var requestedStatus: Int?

    /// Called once, on the first write, with `requestedStatus`.
    public var onExitRequest: Handler?

    public init(onExitRequest: Handler? = nil) {
        self.onExitRequest = onExitRequest
    }

    /// The status for a write of `value`: `(value << 1) | 1`, computed in 64 bits so that no
    /// 32-bit value can overflow.
    public static func status(forWrittenValue value: UInt32) -> Int {
        Int(truncatingIfNeeded: UInt64(value) << 1 | 1)
    }

    /// Reads return all ones, as QEMU's device does.
    public func read(offset: UInt16, size: UInt8) -> UInt32 {
        allOnes(size: size)
    }

    /// Any write records an exit request with the low `size` bytes of `value`, whatever the
    /// offset inside the device. The first request stands; later writes are ignored, because the
    /// guest has already asked to end and the domain is on its way down.
    public func write(offset: UInt16, size: UInt8, value: UInt32) {
        guard requestedStatus == nil else { return }
        let status = Self.status(forWrittenValue: value & allOnes(size: size))
        requestedStatus = status
        onExitRequest?(status)
    }

    /// Forgets a recorded request, for a domain that is reset rather than destroyed.
    public func reset() {
        requestedStatus = nil
    }
}
