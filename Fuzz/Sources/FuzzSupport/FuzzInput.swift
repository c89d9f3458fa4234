// What the fuzz targets share: an input read front to back as typed values, a clock moved by
// hand, and the check that turns a broken invariant into a crash libFuzzer records.

import VisorCore
import VisorDevices

/// A fuzzer's input read front to back as typed little-endian values. Past the end every read
/// is zero, so any input, even an empty one, is a complete script.
public struct FuzzInput {
    public let bytes: UnsafeRawBufferPointer
    public private(set) var position = 0

    /// The bytes libFuzzer hands to `LLVMFuzzerTestOneInput` (valid for the call only).
    public init(_ data: UnsafePointer<UInt8>?, _ count: Int) {
        bytes = UnsafeRawBufferPointer(start: data, count: data == nil ? 0 : count)
    }

    public var isAtEnd: Bool { position >= bytes.count }
    public var remaining: Int { max(bytes.count - position, 0) }

    public mutating func byte() -> UInt8 {
        guard position < bytes.count else { return 0 }
        defer { position += 1 }
        return bytes[position]
    }

    public mutating func bool() -> Bool { byte() & 1 != 0 }

    /// `width` bytes (at most 8) as a little-endian integer.
    public mutating func integer(width: Int) -> UInt64 {
        var value: UInt64 = 0
        for i in 0..<min(width, 8) { value |= UInt64(byte()) << (8 * UInt64(i)) }
        return value
    }

    public mutating func u16() -> UInt16 { UInt16(truncatingIfNeeded: integer(width: 2)) }
    public mutating func u32() -> UInt32 { UInt32(truncatingIfNeeded: integer(width: 4)) }
    public mutating func u64() -> UInt64 { integer(width: 8) }

    /// A number in `0..<bound` from one byte (bound at most 256).
    public mutating func below(_ bound: Int) -> Int { Int(byte()) % max(bound, 1) }

    /// A value a guest would plausibly use where a width or time is wanted: mostly small, now
    /// and then any 64-bit value (one tag byte, then 1, 2, 4 or 8 bytes).
    public mutating func scaled() -> UInt64 {
        switch byte() & 3 {
        case 0: return integer(width: 1)
        case 1: return integer(width: 2)
        case 2: return integer(width: 4)
        default: return integer(width: 8)
        }
    }

    /// The next `count` bytes (fewer at the end).
    public mutating func take(_ count: Int) -> [UInt8] {
        let n = min(max(count, 0), remaining)
        defer { position += n }
        return Array(bytes[position..<position + n])
    }

    /// Everything not read yet.
    public mutating func rest() -> [UInt8] { take(remaining) }
}

/// A clock for device models and engines that only moves when the script moves it.
public final class FuzzClock: TimeSource, VirtualClock, @unchecked Sendable {
    /// A domain's clock counts nanoseconds from its creation: 2^62 ns is 146 years, further
    /// than any domain runs. Values a guest writes may still point far beyond it.
    public static let endOfTime: UInt64 = 1 << 62
    public private(set) var nanoseconds: UInt64
    public init(_ start: UInt64 = 0) { nanoseconds = min(start, Self.endOfTime) }
    /// Moves the clock forward (never back, as the contract says), stopping at `endOfTime`.
    public func advance(by delta: UInt64) {
        nanoseconds += min(delta, Self.endOfTime - nanoseconds)
    }
}

/// An interrupt line that remembers its level and counts edges.
public final class FuzzLine: InterruptLine {
    public private(set) var isHigh = false
    public private(set) var rises = 0
    public init() {}
    public func setLevel(_ high: Bool) {
        if high && !isHigh { rises &+= 1 }
        isHigh = high
    }
}

/// Drops what a device sends, counting it.
public final class FuzzSink: ByteSink, IPISink {
    public private(set) var count = 0
    public init() {}
    public func write(_ byte: UInt8) { count &+= 1 }
    public func send(_ ipi: InterprocessorInterrupt) { count &+= 1 }
}

/// An invariant of the code under test. A violation is a finding: it stops the process the way
/// a trap would, with the message, and libFuzzer saves the input.
@inline(__always)
public func require(_ condition: @autoclosure () -> Bool, _ message: @autoclosure () -> String) {
    if !condition() { fatalError("fuzz invariant broken: \(message())") }
}
