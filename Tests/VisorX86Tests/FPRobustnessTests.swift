// Hostile x87/MMX/SSE code: random instructions from the x87 escapes and the SIMD rows of the
// 0F map (random prefixes, ModRM, SIB, immediates) on random FPU state (registers of every
// class, control words, MXCSR, tags) and random CR0/CR4 availability bits, through the real
// decoder and the interpreter. Nothing may trap the host; every outcome is a retired
// instruction or an architectural fault. The seed is printed; VISOR_FP_FUZZ_SEED replays.

#if canImport(Glibc)
import Glibc
#endif
import Testing
import VisorCore
@testable import VisorX86
import VisorX86Decode

@Suite("x87, MMX and SSE: random code never traps the host")
struct FPRobustnessTests {
    @Test func randomFloatingPointInstructions() throws {
        var seed: UInt64 = 0xf9_f022
        if let s = getenv("VISOR_FP_FUZZ_SEED"), let v = UInt64(String(cString: s)) { seed = v }
        print("fp fuzz seed \(seed) (VISOR_FP_FUZZ_SEED)")
        var rng = SplitMix64(seed: seed)
        let h = Harness(memorySize: 4 << 20)
        var outcomes: [String: Int] = [:]
        var unexpected: [String] = []
        let simdOpcodes: [UInt8] = Array(0x10...0x17) + Array(0x28...0x2f) + Array(0x50...0x7f) + [0xae, 0xc2, 0xc3, 0xc4, 0xc5, 0xc6]
            + Array(0xd0...0xff)
        for round in 0..<200_000 {
            if round % 64 == 0 {
                // Fresh random FPU state and availability bits.
                var fx = FXImage()
                fx.fcw = UInt16(truncatingIfNeeded: rng.next()) | (rng.below(4) == 0 ? 0 : 0x3f)
                // Flags only sometimes (an unmasked one makes every waiting instruction #MF).
                fx.fsw = UInt16(truncatingIfNeeded: rng.next()) & (rng.below(4) == 0 ? 0xffff : 0xffc0)
                fx.ftw = UInt8(truncatingIfNeeded: rng.next())
                fx.mxcsr = UInt32(truncatingIfNeeded: rng.next()) & 0xffff
                for i in 0..<8 { fx.setST(i, FPValues.extended(&rng)) }
                for i in 0..<16 { fx.setXMM(i, (rng.next(), rng.next())) }
                try h.machine.fxrstor(fx.bytes, pointers64: true)
                let cr0Bits: UInt64 = 0b1110  // MP EM TS
                h.cpu.cr0 = (h.cpu.cr0 & ~cr0Bits) | (rng.below(4) == 0 ? rng.next() & cr0Bits : 0)
                h.cpu.cr4 = X86.cr4OSFXSR | (rng.bool() ? X86.cr4OSXMMEXCPT : 0)
                if rng.below(8) == 0 { h.cpu.cr4 = 0 }
            }
            for i in 0..<16 { h.cpu.gpr[i] = rng.below(2) == 0 ? UInt64(rng.below(0x30_0000)) : rng.next() }
            h.cpu.gpr[4] = 0x8_0000
            var bytes: [UInt8] = []
            for _ in 0..<rng.below(3) { bytes.append(rng.pick([0x66, 0xf2, 0xf3, 0x67, 0x2e, 0x64, 0x9b])) }
            if rng.bool() { bytes.append(0x40 | UInt8(rng.below(16))) }
            if rng.bool() {
                bytes.append(UInt8(0xd8 + rng.below(8)))
            } else {
                bytes += [0x0f, rng.pick(simdOpcodes)]
            }
            for _ in 0..<8 { bytes.append(UInt8(truncatingIfNeeded: rng.next())) }
            h.cpu.rip = Harness.startRIP
            switch Decoder.decode(bytes, mode: .bits64) {
            case .instruction(let insn):
                if let fault = h.fault(insn) {
                    outcomes["fault \(fault.vector)", default: 0] += 1
                    // #UD, #NM, #SS, #GP, #PF, #MF, #XM.
                    if ![6, 7, 12, 13, 14, 16, 19].contains(fault.vector) && unexpected.count < 10 {
                        unexpected.append("\(fault) for \(hex(bytes))")
                    }
                } else {
                    outcomes["retired", default: 0] += 1
                }
            default:
                outcomes["not decoded", default: 0] += 1
            }
        }
        print("fp fuzz outcomes: \(outcomes.sorted { $0.key < $1.key })")
        for u in unexpected { Issue.record(Comment(rawValue: "unexpected fault: " + u)) }
        #expect((outcomes["retired"] ?? 0) > 50_000, "a good share of the random instructions should run")
    }
}
