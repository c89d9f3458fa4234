// Option values as the commands use them, each read with a message that names the option, the
// value and what is allowed ("--vcpus '0' is out of range: a domain has 1 to 64 vCPUs"). The
// errors are ValidationErrors: status 64, the usage-error status in README's table.
//
// Options whose value may start with '-' (a negative number, a command line such as "-v") are
// declared with `parsing: .unconditional`, so that the value is read and judged here instead of
// being taken for another option ("Missing value").

import ArgumentParser
import Visor

enum OptionValue {
    /// A whole number in `range`; `allowed` says what the option takes.
    static func wholeNumber<T: FixedWidthInteger>(_ text: String, option: String, in range: ClosedRange<T>,
                                                  allowed: String) throws -> T {
        let trimmed = text.trimmingCharacters(in: .whitespaces)
        let digits = trimmed.first == "-" || trimmed.first == "+" ? trimmed.dropFirst() : Substring(trimmed)
        guard !digits.isEmpty, digits.allSatisfy({ $0.isASCII && $0.isNumber }) else {
            throw ValidationError("\(option) '\(text)' is not a whole number: \(allowed)")
        }
        // Negative for an unsigned type, or too many digits for the type: out of range too.
        guard let value = T(trimmed), range.contains(value) else {
            throw ValidationError("\(option) '\(text)' is out of range: \(allowed)")
        }
        return value
    }

    /// A decimal number in `range`.
    static func decimal(_ text: String, option: String, in range: ClosedRange<Double>, allowed: String) throws -> Double {
        guard let value = Double(text.trimmingCharacters(in: .whitespaces)), value.isFinite else {
            throw ValidationError("\(option) '\(text)' is not a number: \(allowed)")
        }
        guard range.contains(value) else { throw ValidationError("\(option) '\(text)' is out of range: \(allowed)") }
        return value
    }

    /// A duration above zero.
    static func duration(_ text: String, option: String) throws -> Duration {
        let allowed = "give a duration above zero, \(DurationText.unitsHelp), e.g. 10s, 500ms or 2m"
        switch DurationText.read(text) {
        case .success(let duration) where duration > .zero:
            return duration
        case .success:
            throw ValidationError("\(option) '\(text)' is zero: \(allowed)")
        case .failure(.negative):
            throw ValidationError("\(option) '\(text)' is negative: \(allowed)")
        case .failure(.tooLong):
            throw ValidationError("\(option) '\(text)' is too long: at most \(Int(DurationText.longestSeconds)) seconds")
        case .failure(.notADuration):
            throw ValidationError("\(option) '\(text)' is not a duration: \(allowed)")
        }
    }

    /// Guest RAM in bytes.
    static func guestRAM(_ text: String, option: String = "--memory") throws -> UInt64 {
        let allowed = "guest RAM is \(RunOptionLimits.memoryRange): \(ByteSize.unitsHelp), e.g. 256M or 2G"
        switch ByteSize.read(text) {
        case .success(let bytes):
            guard RunOptionLimits.memoryProblem(bytes) == nil else {
                throw ValidationError("\(option) '\(text)' is out of range: \(allowed)")
            }
            return bytes
        case .failure(.tooLarge):
            throw ValidationError("\(option) '\(text)' is out of range: \(allowed)")
        case .failure(.notASize):
            throw ValidationError("\(option) '\(text)' is not a size: \(allowed)")
        }
    }

    /// `--pin-pcpus` with `pcpuCount` pCPUs: pCPU i is the i-th host CPU this process may use,
    /// so there must be that many.
    static func pinnable(_ pcpuCount: Int, pin: Bool) throws -> Bool {
        let usable = HostCPUBinding.usableCount
        guard pin, pcpuCount > usable else { return pin }
        throw ValidationError("--pin-pcpus binds each pCPU to a host CPU of its own: --pcpus \(pcpuCount) needs more than the \(usable) host CPUs this process may use")
    }

    /// An engine name.
    static func engine(_ text: String, option: String = "--engine") throws -> String {
        if let problem = EngineRegistry.problem(withName: text) { throw ValidationError("\(option): \(problem)") }
        return text
    }
}
