// Random and mutated images never trap: each one either loads or throws a BootError, and a throw
// leaves memory untouched.

#if canImport(Glibc)
import Glibc
#endif
import Testing
import VisorBoot
import VisorCore

/// SplitMix64: small, seedable, good enough to drive mutations.
struct SplitMix64: RandomNumberGenerator {
    var state: UInt64
    mutating func next() -> UInt64 {
        state &+= 0x9E37_79B9_7F4A_7C15
        var z = state
        z = (z ^ (z >> 30)) &* 0xBF58_476D_1CE4_E5B9
        z = (z ^ (z >> 27)) &* 0x94D0_49BB_1331_11EB
        return z ^ (z >> 31)
    }
}

@Suite struct RobustnessTests {
    /// Seed from VISOR_FUZZ_SEED, else a fixed default, so a failure can be replayed.
    static var seed: UInt64 {
        if let raw = getenv("VISOR_FUZZ_SEED"), let value = UInt64(String(cString: raw)) { return value }
        return 0x5EED_B007
    }

    @Test func mutatedAndRandomImagesLoadOrThrow() throws {
        let seed = Self.seed
        print("RobustnessTests seed: \(seed) (set VISOR_FUZZ_SEED to replay)")
        var rng = SplitMix64(state: seed)
        let bases: [[UInt8]] = [
            sampleKernel(is64: false).bytes, sampleKernel(is64: true).bytes,
            sampleKernel(is64: true, multiboot: nil).bytes, aoutImage(),
        ]
        let interesting: [UInt64] = [0, 1, 0x7f, 0x80, 0xff, 0xffff, 0x1000, 0x10_0000, 0x7F_FFFF, 0xFFFF_FFFF,
                                     0x1_0000_0000, UInt64.max, UInt64.max - 1, 0x8000_0000_0000_0000]
        let probes: [UInt64] = [0x1000, 0x2000, 0x9000, 0x10_0000, 0x20_0000]
        var loaded = 0, refused = 0
        let iterations = 3000

        for iteration in 0..<iterations {
            var bytes: [UInt8]
            if iteration % 5 == 0 {
                bytes = (0..<Int.random(in: 0...300, using: &rng)).map { _ in UInt8.random(in: 0...255, using: &rng) }
                if iteration % 10 == 0, bytes.count >= 4 { bytes.replace(at: 0, with: ELFImage.magic) }
            } else {
                bytes = bases[Int.random(in: 0..<bases.count, using: &rng)]
                for _ in 0..<Int.random(in: 1...4, using: &rng) {
                    guard !bytes.isEmpty else { break }
                    // Bias mutations towards headers, where the interesting fields are.
                    let limit = Bool.random(using: &rng) ? min(bytes.count, 0x240) : bytes.count
                    let at = Int.random(in: 0..<limit, using: &rng)
                    switch Int.random(in: 0..<4, using: &rng) {
                    case 0: bytes[at] = UInt8.random(in: 0...255, using: &rng)
                    case 1:
                        let value = interesting.randomElement(using: &rng)!
                        for i in 0..<8 where at + i < bytes.count { bytes[at + i] = UInt8(truncatingIfNeeded: value >> (i * 8)) }
                    case 2:
                        let value = UInt32.random(in: 0...UInt32.max, using: &rng)
                        for i in 0..<4 where at + i < bytes.count { bytes[at + i] = UInt8(truncatingIfNeeded: value >> (i * 8)) }
                    default: bytes.removeLast(Int.random(in: 0...bytes.count, using: &rng))
                    }
                }
            }
            let memory = try smallMemory(4 << 20)
            let modules = iteration % 7 == 0 ? [BootModule(name: "m", bytes: [1, 2, 3])] : []
            if let error = loadError(bytes, commandLine: "fuzz", modules: modules, memory: memory) {
                refused += 1
                #expect(!error.description.isEmpty)
                for p in probes {
                    #expect(try memory.bytes(p, 64).allSatisfy { $0 == 0 },
                            "seed \(seed) iteration \(iteration): \(error) but memory at \(hex(p)) was written")
                }
                if iteration % 100 == 0 {
                    #expect(try memory.isAllZero(), "seed \(seed) iteration \(iteration): \(error) but memory was written")
                }
            } else {
                loaded += 1
            }
        }
        print("RobustnessTests: \(loaded) loaded, \(refused) refused")
        // Both outcomes must occur, or the mutations are not exercising the parser.
        #expect(loaded > 50, "seed \(seed)")
        #expect(refused > 500, "seed \(seed)")
    }
}
