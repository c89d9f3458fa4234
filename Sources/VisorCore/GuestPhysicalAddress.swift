// Typed guest addresses, so a guest-physical address is never mistaken for a host pointer.

/// An address in the guest's physical address space.
public struct GuestPhysicalAddress: RawRepresentable, Hashable, Comparable, Sendable,
    CustomStringConvertible
{
    public var rawValue: UInt64
    public init(rawValue: UInt64) { self.rawValue = rawValue }
    public init(_ rawValue: UInt64) { self.rawValue = rawValue }

    public static func < (a: Self, b: Self) -> Bool { a.rawValue < b.rawValue }

    /// The address `offset` bytes further on, or nil if that wraps past 2^64.
    public func advanced(by offset: UInt64) -> GuestPhysicalAddress? {
        let (sum, overflow) = rawValue.addingReportingOverflow(offset)
        return overflow ? nil : GuestPhysicalAddress(sum)
    }

    public var description: String { "0x" + String(rawValue, radix: 16) }
}
