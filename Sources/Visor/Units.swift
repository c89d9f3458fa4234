// Parsing the sizes and durations users type: `--memory 256M`, `--timeout 10s`.

import Foundation

/// A size in bytes parsed from text such as `128M`, `1G`, `512MiB` or `65536K`.
/// A bare number means MiB, as with xl's `memory=` and QEMU's `-m`.
public enum ByteSize {
    public static func parse(_ text: String) -> UInt64? {
        let trimmed = text.trimmingCharacters(in: .whitespaces)
        let digits = trimmed.prefix { $0.isNumber }
        guard !digits.isEmpty, let number = UInt64(digits) else { return nil }
        let unit = trimmed.dropFirst(digits.count).lowercased()
        let shift: UInt64
        switch unit {
        case "b": shift = 0
        case "k", "kb", "kib": shift = 10
        case "", "m", "mb", "mib": shift = 20
        case "g", "gb", "gib": shift = 30
        default: return nil
        }
        let (bytes, overflow) = number.multipliedReportingOverflow(by: 1 << shift)
        return overflow ? nil : bytes
    }

    /// `134217728` as `128 MiB`.
    public static func describe(_ bytes: UInt64) -> String {
        if bytes >= 1 << 30, bytes % (1 << 30) == 0 { return "\(bytes >> 30) GiB" }
        if bytes >= 1 << 20, bytes % (1 << 20) == 0 { return "\(bytes >> 20) MiB" }
        if bytes >= 1 << 10, bytes % (1 << 10) == 0 { return "\(bytes >> 10) KiB" }
        return "\(bytes) bytes"
    }
}

/// A duration parsed from text such as `10s`, `500ms`, `2m` or `1.5s`. A bare number means seconds.
public enum DurationText {
    public static func parse(_ text: String) -> Duration? {
        let trimmed = text.trimmingCharacters(in: .whitespaces)
        let numberPart = trimmed.prefix { $0.isNumber || $0 == "." }
        guard !numberPart.isEmpty, let value = Double(numberPart), value.isFinite, value >= 0 else { return nil }
        let scale: Double
        switch trimmed.dropFirst(numberPart.count).lowercased() {
        case "", "s", "sec": scale = 1
        case "ms": scale = 1e-3
        case "us", "µs": scale = 1e-6
        case "m", "min": scale = 60
        case "h": scale = 3600
        default: return nil
        }
        let seconds = value * scale
        guard seconds < 1e9 else { return nil }
        return .nanoseconds(Int64(seconds * 1e9))
    }
}
