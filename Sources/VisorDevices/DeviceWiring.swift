// The two small contracts a device model is wired through: an interrupt output and a byte output.
//
// Device models never know what is on the other end. An interrupt line may lead to an 8259 PIC,
// an I/O APIC or an event channel; a byte sink may be a terminal, a log file or a test buffer.

/// A device's interrupt output pin. The device drives the level; whatever the line is wired to
/// decides how (and whether) that becomes an interrupt in the guest.
///
/// Devices call `setLevel(_:)` only when the level changes, so a controller that wants edges
/// (an ISA IRQ on the 8259 is edge-triggered) can treat every call to `setLevel(true)` as one.
public protocol InterruptLine {
    /// Drives the line high (`true`: the device requests an interrupt) or low.
    func setLevel(_ high: Bool)
}

/// A line wired to nothing, for machines without an interrupt controller and for tests.
public struct NoInterruptLine: InterruptLine {
    public init() {}
    public func setLevel(_ high: Bool) {}
}

/// Where a device's output bytes go.
public protocol ByteSink {
    /// Takes one byte the device has sent. Called on the thread that performed the guest access,
    /// so an implementation should not block for long.
    func write(_ byte: UInt8)
}

/// Where a timer device learns the time. Device models never read a host clock: the runtime
/// hands them a source of its virtual clock, and a test hands them one it moves by hand.
///
/// A model asks for the time on every guest access and whenever the runtime calls its
/// `advance()`; it says when its output will next change with `nextEventTime(after:)`, so the
/// runtime can arm one host timer for that instant and call `advance()` when it fires.
public protocol TimeSource: AnyObject {
    /// Nanoseconds of the domain's virtual clock. Never decreases.
    var nanoseconds: UInt64 { get }
}

/// Where a local APIC hands the inter-processor interrupts its guest asks for (ICR writes).
/// The runtime routes them: it knows which vCPUs exist and which APIC IDs they have
/// (`LocalAPIC.isTarget(of:)` answers for each).
public protocol IPISink {
    /// Takes one IPI request. Called on the thread of the vCPU that wrote the ICR.
    func send(_ ipi: InterprocessorInterrupt)
}

/// A sink that drops every IPI, for single-vCPU machines and tests.
public struct NoIPISink: IPISink {
    public init() {}
    public func send(_ ipi: InterprocessorInterrupt) {}
}

/// Where a local APIC broadcasts the EOI of a level-triggered interrupt: the I/O APICs, which
/// clear the Remote IRR of the entries with that vector (the 82093AA's only way to learn of an EOI).
public protocol EOIBroadcastSink {
    func endOfInterrupt(vector: UInt8)
}

/// A sink for machines without an I/O APIC, and for tests.
public struct NoEOIBroadcastSink: EOIBroadcastSink {
    public init() {}
    public func endOfInterrupt(vector: UInt8) {}
}
