// Port I/O routing: which device model answers which port.

/// A device reached through x86 I/O ports. Models are plain state machines; the bus calls them
/// with the offset from the device's base port.
public protocol PortDevice: AnyObject {
    /// A read of `size` bytes (1, 2 or 4) at `offset` from the device's base port.
    func read(offset: UInt16, size: UInt8) -> UInt32
    /// A write of the low `size` bytes of `value` at `offset`.
    func write(offset: UInt16, size: UInt8, value: UInt32)
}

/// Errors raised while wiring devices to the bus (a Visor bug or a bad configuration, never the guest).
public enum IOBusError: Error, Equatable, CustomStringConvertible {
    /// The new range overlaps a device already on the bus.
    case overlap(base: UInt16, count: UInt16)
    /// The range is empty or runs past port 0xffff.
    case invalidRange(base: UInt16, count: UInt16)

    public var description: String {
        switch self {
        case .overlap(let base, let count):
            return "I/O ports 0x\(String(base, radix: 16))+\(count) overlap a device already attached"
        case .invalidRange(let base, let count):
            return "I/O port range 0x\(String(base, radix: 16))+\(count) is empty or past 0xffff"
        }
    }
}

/// Routes port accesses to devices. Ports no device claims read as all ones and ignore writes,
/// as on a PC's ISA bus; both are counted so a user can see a guest probing for hardware.
public final class IOBus {
    private struct Attachment {
        let base: UInt16
        let count: UInt16
        let device: any PortDevice
    }
    private var attachments: [Attachment] = []

    /// Reads from ports no device claims.
    public private(set) var unbackedReads: UInt64 = 0
    /// Writes to ports no device claims.
    public private(set) var unbackedWrites: UInt64 = 0

    public init() {}

    /// Attaches `device` to ports `[base, base + count)`.
    public func attach(_ device: any PortDevice, base: UInt16, count: UInt16) throws(IOBusError) {
        guard count > 0, UInt32(base) + UInt32(count) <= 0x1_0000 else {
            throw .invalidRange(base: base, count: count)
        }
        let end = UInt32(base) + UInt32(count)
        for a in attachments where UInt32(base) < UInt32(a.base) + UInt32(a.count) && UInt32(a.base) < end {
            throw .overlap(base: base, count: count)
        }
        attachments.append(Attachment(base: base, count: count, device: device))
    }

    private func find(_ port: UInt16) -> Attachment? {
        attachments.first { port >= $0.base && port - $0.base < $0.count }
    }

    /// All ones in the low `size` bytes.
    @inline(__always)
    static func allOnes(size: UInt8) -> UInt32 {
        size >= 4 ? 0xffff_ffff : (UInt32(1) << (UInt32(size) * 8)) &- 1
    }

    /// Performs a guest's port read.
    public func read(port: UInt16, size: UInt8) -> UInt32 {
        guard let a = find(port) else {
            unbackedReads &+= 1
            return Self.allOnes(size: size)
        }
        return a.device.read(offset: port - a.base, size: size) & Self.allOnes(size: size)
    }

    /// Performs a guest's port write.
    public func write(port: UInt16, size: UInt8, value: UInt32) {
        guard let a = find(port) else {
            unbackedWrites &+= 1
            return
        }
        a.device.write(offset: port - a.base, size: size, value: value & Self.allOnes(size: size))
    }
}
