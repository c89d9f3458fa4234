// Random byte strings in all three modes: the decoder never traps, lengths stay within the
// bytes given and the 15-byte limit, and `.truncated` only happens when fewer than 15 bytes
// were given. The seed is printed; replay with VISOR_DECODE_SEED=<seed>.

import Foundation
import Testing
@testable import VisorX86Decode

/// SplitMix64: small, seedable, good enough for fuzzing.
struct SplitMix64: RandomNumberGenerator {
    var state: UInt64
    init(seed: UInt64) { state = seed }
    mutating func next() -> UInt64 {
        state &+= 0x9e37_79b9_7f4a_7c15
        var z = state
        z = (z ^ (z >> 30)) &* 0xbf58_476d_1ce4_e5b9
        z = (z ^ (z >> 27)) &* 0x94d0_49bb_1331_11eb
        return z ^ (z >> 31)
    }
}

@Suite("Decoder robustness")
struct RobustnessTests {
    static let seed: UInt64 = {
        if let text = ProcessInfo.processInfo.environment["VISOR_DECODE_SEED"], let value = UInt64(text) { return value }
        return UInt64.random(in: 1...UInt64.max)
    }()

    /// Bytes biased towards prefixes, REX, escapes and interesting opcodes so that long and
    /// nested encodings are common.
    static func randomBytes(_ rng: inout SplitMix64, into buffer: inout [UInt8]) {
        let interesting: [UInt8] = [0x66, 0x67, 0xf0, 0xf2, 0xf3, 0x2e, 0x3e, 0x26, 0x36, 0x64, 0x65, 0x40, 0x48, 0x4f,
                                    0x41, 0x0f, 0x0f, 0x38, 0x3a, 0xc4, 0xc5, 0x62, 0x8f, 0xff, 0xf6, 0xf7, 0x80,
                                    0x81, 0x83, 0xc7, 0x01, 0xae, 0xba, 0x20, 0x22, 0x04, 0x05, 0x44, 0x84, 0x24, 0x25]
        for i in buffer.indices {
            let r = rng.next()
            buffer[i] = (r & 3 == 0) ? interesting[Int((r >> 8) % UInt64(interesting.count))] : UInt8(truncatingIfNeeded: r >> 16)
        }
    }

    @Test func randomBytesNeverTrap() {
        let seed = Self.seed
        print("Decoder robustness seed: \(seed) (replay: VISOR_DECODE_SEED=\(seed))")
        var rng = SplitMix64(seed: seed)
        let modes: [CodeMode] = [.bits16, .bits32, .bits64]
        var buffer = [UInt8](repeating: 0, count: 20)
        var counts: [String: Int] = [:]
        var failures: [String] = []
        let iterations = 300_000
        for n in 0..<iterations {
            Self.randomBytes(&rng, into: &buffer)
            // Mostly 15 bytes; sometimes fewer (a page end), sometimes more (only 15 are read).
            let r = rng.next()
            let given: Int
            switch r % 8 {
            case 0: given = Int((r >> 8) % 15)
            case 1: given = 15 + Int((r >> 8) % 6)
            default: given = 15
            }
            let mode = modes[n % 3]
            if (r >> 40) % 16 == 0 {
                // A long run of prefixes, so that the 15-byte limit is reached.
                let prefixes: [UInt8] = [0x66, 0x67, 0xf2, 0xf3, 0x2e, 0x3e, 0x26, 0x36, 0x64, 0x65, 0x48]
                for i in 0..<(8 + Int((r >> 44) % 8)) { buffer[i] = prefixes[Int((r >> UInt64(i % 8 * 4)) % 11)] }
            }
            let result = buffer.withUnsafeBytes { Decoder.decode(UnsafeRawBufferPointer(rebasing: $0[0..<given]), mode: mode) }
            switch result {
            case .instruction(let insn):
                counts["instruction", default: 0] += 1
                if insn.length < 1 || insn.length > 15 || Int(insn.length) > given {
                    failures.append("length \(insn.length) of \(given) bytes")
                }
                if !([1, 2, 4, 8, 16] as [UInt8]).contains(insn.operandSize) { failures.append("operandSize \(insn.operandSize)") }
                if !([2, 4, 8] as [UInt8]).contains(insn.addressSize) { failures.append("addressSize \(insn.addressSize)") }
                // The same bytes cut to the instruction's length decode identically.
                let again = buffer.withUnsafeBytes {
                    Decoder.decode(UnsafeRawBufferPointer(rebasing: $0[0..<Int(insn.length)]), mode: mode)
                }
                if again != result { failures.append("not stable when cut to its length") }
            case .truncated:
                counts["truncated", default: 0] += 1
                if given >= 15 { failures.append("truncated with \(given) bytes") }
            case .tooLong:
                counts["tooLong", default: 0] += 1
            case .undefined:
                counts["undefined", default: 0] += 1
            }
            if failures.count > 0 && failures.count < 10 && failures.last?.hasPrefix("[") == false {
                let hex = buffer[0..<given].map { String(format: "%02x", $0) }.joined(separator: " ")
                failures[failures.count - 1] = "[\(hex)] \(mode): " + failures[failures.count - 1]
            }
        }
        print("Decoder robustness: \(iterations) strings, \(counts.sorted { $0.key < $1.key })")
        #expect(failures.isEmpty, "seed \(seed): \(failures.prefix(10).joined(separator: "\n"))")
        // The inputs must exercise every outcome, or the test proves little.
        #expect(counts["instruction", default: 0] > iterations / 4)
        #expect(counts["truncated", default: 0] > 1000)
        #expect(counts["tooLong", default: 0] > 10)
        #expect(counts["undefined", default: 0] > 1000)
    }

    /// Every prefix of a valid instruction's bytes is reported truncated, never mis-decoded.
    @Test func everyShortPrefixIsTruncated() {
        let samples = ["48 b8 88 77 66 55 44 33 22 11", "66 2e 0f 1f 84 00 00 00 00 00", "64 48 8b 04 25 28 00 00 00",
                       "f0 48 0f c7 0f", "43 8b 44 fd 08", "c8 10 00 01", "66 0f 70 c1 44", "0f 01 f9"]
        for sample in samples {
            let bytes = hexBytes(sample)
            guard case .instruction(let full) = Decoder.decode(bytes, mode: .bits64) else {
                Issue.record("\(sample) does not decode"); continue
            }
            #expect(Int(full.length) == bytes.count)
            for cut in 0..<bytes.count {
                #expect(Decoder.decode(Array(bytes[0..<cut]), mode: .bits64) == .truncated, "\(sample) cut to \(cut)")
            }
        }
    }
}
