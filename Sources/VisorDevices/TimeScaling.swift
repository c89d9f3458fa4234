// Conversions between the virtual clock's nanoseconds and a device's own clock ticks, exact in
// 128-bit intermediate arithmetic and saturating instead of trapping.

/// `value * multiplier / divisor`, rounded down (or up), saturating at `UInt64.max`.
/// `divisor` must not be 0.
func scale(_ value: UInt64, by multiplier: UInt64, over divisor: UInt64, roundingUp: Bool = false)
    -> UInt64
{
    let product = value.multipliedFullWidth(by: multiplier)
    guard product.high < divisor else { return .max }
    let (quotient, remainder) = divisor.dividingFullWidth(product)
    if roundingUp && remainder != 0 {
        return quotient == .max ? .max : quotient + 1
    }
    return quotient
}

/// Nanoseconds per second, the virtual clock's unit.
let nanosecondsPerSecond: UInt64 = 1_000_000_000
