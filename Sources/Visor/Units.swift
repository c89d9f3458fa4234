// Parsing the sizes and durations users type: `--memory 256M`, `--timeout 10s`.

import Foundation

/// A size in bytes parsed from text such as `128M`, `1G`, `512MiB` or `65536K`.
/// A bare number means MiB, as with xl's `memory=` and QEMU's `-m`.
public enum ByteSize {
    /// Why a text is not a size.
    public enum Problem: Error, Equatable {
        /// Not a whole number with one of the units.
        case notASize
        /// A size, but more bytes than 64 bits count.
        case tooLarge
    }

    /// The units, in the words a message gives them.
    public static let unitsHelp = "a whole number with an optional unit K, M or G (a bare number is MiB)"

    public static func read(_ text: String) -> Result<UInt64, Problem> {
        let trimmed = text.trimmingCharacters(in: .whitespaces)
        let digits = trimmed.prefix { $0.isASCII && $0.isNumber }
        guard !digits.isEmpty else { return .failure(.notASize) }
        let unit = trimmed.dropFirst(digits.count).lowercased()
        let shift: UInt64
        switch unit {
        case "b": shift = 0
        case "k", "kb", "kib": shift = 10
        case "", "m", "mb", "mib": shift = 20
        case "g", "gb", "gib": shift = 30
        default: return .failure(.notASize)
        }
        guard let number = UInt64(digits) else { return .failure(.tooLarge) }
        let (bytes, overflow) = number.multipliedReportingOverflow(by: 1 << shift)
        return overflow ? .failure(.tooLarge) : .success(bytes)
    }

    public static func parse(_ text: String) -> UInt64? { try? read(text).get() }

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
    /// Why a text is not a duration.
    public enum Problem: Error, Equatable {
        /// Not a number with one of the units.
        case notADuration
        /// A duration with a minus sign.
        case negative
        /// Longer than `longest`.
        case tooLong
    }

    /// The longest duration accepted: a billion seconds (about 31 years).
    public static let longestSeconds: Double = 1e9

    /// The units, in the words a message gives them.
    public static let unitsHelp = "a number with an optional unit ms, s, m or h (a bare number is seconds)"

    public static func read(_ text: String) -> Result<Duration, Problem> {
        let trimmed = text.trimmingCharacters(in: .whitespaces)
        if trimmed.hasPrefix("-") {
            if case .success = read(String(trimmed.dropFirst())) { return .failure(.negative) }
            return .failure(.notADuration)
        }
        let numberPart = trimmed.prefix { ($0.isASCII && $0.isNumber) || $0 == "." }
        guard !numberPart.isEmpty, let value = Double(numberPart), value.isFinite else { return .failure(.notADuration) }
        let scale: Double
        switch trimmed.dropFirst(numberPart.count).lowercased() {
        case "", "s", "sec": scale = 1
        case "ms": scale = 1e-3
        case "us", "µs": scale = 1e-6
        case "m", "min": scale = 60
        case "h": scale = 3600
        default: return .failure(.notADuration)
        }
        let seconds = value * scale
        guard seconds < longestSeconds else { return .failure(.tooLong) }
        return .success(.nanoseconds(Int64(seconds * 1e9)))
    }

    public static func parse(_ text: String) -> Duration? { try? read(text).get() }
}
