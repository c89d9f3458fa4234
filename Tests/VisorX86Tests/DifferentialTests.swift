// Differential tests: every implemented general-purpose operation, at every operand size, on
// edge-biased random inputs, run on the host CPU (CX86Native) and in the interpreter; registers,
// memory and the flags the SDM defines must agree. Faults must agree too (#DE ↔ SIGFPE,
// #GP ↔ SIGSEGV), and a faulting instruction must leave the interpreter's state unchanged.
//
// Seeded: the seed is printed; VISOR_DIFF_SEED replays a run and VISOR_DIFF_CASES sets the
// number of cases per family (default 1500).

#if canImport(Glibc)
import Glibc
#endif
import CX86Native
import Synchronization
import Testing
import VisorCore
@testable import VisorX86
import VisorX86Decode

/// One generated case: the encoding (bytes + matching instruction), inputs, and what to ignore.
struct DifferentialCase {
    var family: String
    var encoding: Encoding
    var instruction: DecodedInstruction
    var registers: [UInt64]
    var flags: UInt64
    /// Flags the SDM leaves undefined for this instance.
    var undefinedFlags: UInt64 = 0
    var xmm: [(low: UInt64, high: UInt64)]? = nil
    /// Bytes stored at addresses after the data window is randomized (to make compares succeed).
    var patches: [(address: UInt64, bytes: [UInt8])] = []
}

/// Where the cases' addresses point: the native region's layout (guest RAM mirrors it at the
/// same addresses).
struct DifferentialLayout {
    let base: UInt64
    var dataStart: UInt64 { base + UInt64(CX86_DATA_OFFSET) }
    var stackTop: UInt64 { base + UInt64(CX86_STACK_TOP_OFFSET) }
    /// Where memory operands point: the middle of a 2 KiB window re-randomized for each case.
    var hotCenter: UInt64 { dataStart + 0x800 }

    /// The native region's, nil when CX86Native could not map it (or VISOR_TEST_WITHOUT names
    /// native-region, to see the skip on a machine where it maps).
    static let native: DifferentialLayout? = {
        let without = getenv("VISOR_TEST_WITHOUT").map { String(cString: $0) } ?? ""
        if without.split(whereSeparator: { $0 == " " || $0 == "," }).contains("native-region") { return nil }
        let base = cx86_region_base()
        return base == 0 ? nil : DifferentialLayout(base: base)
    }()
    static let unmapped: Comment = """
        needs the native test region, which could not be mapped (CX86Native: mmap of an executable \
        region at a low fixed address failed): the interpreter is NOT compared with the host CPU
        """
}

/// The native region is one per process: every rig holds this while it fills, runs and reads it
/// (the integer and the x87/SSE suites run in parallel).
let nativeRegionLock = Mutex(())

/// The shared region (native) mirrored into guest RAM at the same addresses (interpreter).
final class DifferentialRig {
    let layout: DifferentialLayout
    let harness: Harness
    let host: UnsafeMutableRawPointer
    let guest: UnsafeMutableRawPointer
    var base: UInt64 { layout.base }

    init?() {
        guard let layout = DifferentialLayout.native else { return nil }
        self.layout = layout
        let base = layout.base
        let size = max(4 << 20, (base + UInt64(CX86_REGION_SIZE) + 0xfffff) & ~0xfffff)
        harness = Harness(mode: .bits64, memorySize: size)
        host = UnsafeMutableRawPointer(bitPattern: UInt(base))!
        let memory = harness.bus.memory
        guest = UnsafeMutableRawPointer(bitPattern: UInt(memory.hostAddress(of: memory.regions[0])))! + Int(base)
        harness.cpu.cpl = 3
    }

    /// Runs one case on both sides; nil when they agree, else a description of the difference.
    func run(_ c: DifferentialCase, rng: inout SplitMix64) -> String? {
        nativeRegionLock.withLock { _ in runLocked(c, rng: &rng) }
    }

    private func runLocked(_ c: DifferentialCase, rng: inout SplitMix64) -> String? {
        // Fresh random bytes in the hot window and the top of the stack, then mirror.
        for offset in stride(from: 0x400, to: 0xc00, by: 8) {
            host.storeBytes(of: rng.next(), toByteOffset: Int(CX86_DATA_OFFSET) + offset, as: UInt64.self)
        }
        for offset in stride(from: -0x100, to: 0x100, by: 8) {
            host.storeBytes(of: rng.next(), toByteOffset: Int(CX86_STACK_TOP_OFFSET) + offset, as: UInt64.self)
        }
        for patch in c.patches {
            for (i, byte) in patch.bytes.enumerated() {
                host.storeBytes(of: byte, toByteOffset: Int(patch.address - base) + i, as: UInt8.self)
            }
        }
        let mirrored = Int(CX86_REGION_SIZE - CX86_DATA_OFFSET)
        memcpy(guest + Int(CX86_DATA_OFFSET), host + Int(CX86_DATA_OFFSET), mirrored)

        var state = CX86State()
        state.setDefaultFPU()
        withUnsafeMutableBytes(of: &state.gpr) { p in
            for i in 0..<16 { p.storeBytes(of: c.registers[i], toByteOffset: 8 * i, as: UInt64.self) }
        }
        state.rflags = c.flags
        if let xmm = c.xmm {
            withUnsafeMutableBytes(of: &state.xmm) { p in
                for i in 0..<16 {
                    p.storeBytes(of: xmm[i].low, toByteOffset: 16 * i, as: UInt64.self)
                    p.storeBytes(of: xmm[i].high, toByteOffset: 16 * i + 8, as: UInt64.self)
                }
            }
        }
        let bytes = c.encoding.bytes
        let signal = bytes.withUnsafeBufferPointer { cx86_run($0.baseAddress, $0.count, &state) }

        let cpu = harness.cpu
        cpu.gpr = c.registers
        cpu.rflags = c.flags
        cpu.rip = base + UInt64(CX86_CODE_OFFSET)
        if let xmm = c.xmm { cpu.xmm = xmm }
        var fault: X86Fault? = nil
        do {
            try harness.machine.execute(c.instruction)
        } catch {
            if case .fault(let f) = error { fault = f } else { return "stopped: \(error)" }
        }

        let context = "\(c.family) [\(hex(bytes))] \(c.instruction.operation) size \(c.instruction.operandSize) "
            + "regs \(c.registers.map { String($0, radix: 16) }) flags \(String(c.flags, radix: 16))"
        if signal != 0 || fault != nil {
            let expected: UInt8? = switch signal {
            case 0: nil
            case SIGFPE: X86Fault.divideError
            case SIGILL: X86Fault.invalidOpcode
            case SIGSEGV: X86Fault.generalProtection
            default: 0xff
            }
            guard expected == fault?.vector else {
                return "\(context): native signal \(signal), interpreter fault \(String(describing: fault))"
            }
            guard cpu.gpr == c.registers, cpu.rip == base, cpu.rflags == c.flags else {
                return "\(context): state changed by a faulting instruction"
            }
            return nil
        }

        var differences: [String] = []
        let nativeRegisters = withUnsafeBytes(of: state.gpr) { p in (0..<16).map { p.load(fromByteOffset: 8 * $0, as: UInt64.self) } }
        for i in 0..<16 where nativeRegisters[i] != cpu.gpr[i] {
            differences.append("r\(i): native \(String(nativeRegisters[i], radix: 16)) interp \(String(cpu.gpr[i], radix: 16))")
        }
        let compared = (F.status | F.df) & ~c.undefinedFlags
        if state.rflags & compared != cpu.rflags & compared {
            differences.append("flags: native \(String(state.rflags & compared, radix: 16)) interp \(String(cpu.rflags & compared, radix: 16)) (compared \(String(compared, radix: 16)))")
        }
        if cpu.rip != base + UInt64(bytes.count) {
            differences.append("rip: \(String(cpu.rip, radix: 16)), expected \(String(base + UInt64(bytes.count), radix: 16))")
        }
        if memcmp(guest + Int(CX86_DATA_OFFSET), host + Int(CX86_DATA_OFFSET), mirrored) != 0 {
            for offset in Int(CX86_DATA_OFFSET)..<Int(CX86_REGION_SIZE) {
                let n = host.load(fromByteOffset: offset, as: UInt8.self)
                let g = guest.load(fromByteOffset: offset, as: UInt8.self)
                if n != g {
                    differences.append("memory at +\(String(offset, radix: 16)): native \(n) interp \(g)")
                    break
                }
            }
        }
        if c.xmm != nil {
            let nativeXMM = withUnsafeBytes(of: state.xmm) { p in
                (0..<16).map { (p.load(fromByteOffset: 16 * $0, as: UInt64.self), p.load(fromByteOffset: 16 * $0 + 8, as: UInt64.self)) }
            }
            for i in 0..<16 where nativeXMM[i] != cpu.xmm[i] {
                differences.append("xmm\(i): native \(nativeXMM[i]) interp \(cpu.xmm[i])")
            }
        }
        return differences.isEmpty ? nil : "\(context): " + differences.joined(separator: "; ")
    }
}

/// Settings from the environment.
enum DifferentialSettings {
    static var seed: UInt64 {
        if let s = getenv("VISOR_DIFF_SEED"), let v = UInt64(String(cString: s), radix: 16) ?? UInt64(String(cString: s)) {
            return v
        }
        return 0x5eed_2026_1127
    }
    static var casesPerFamily: Int {
        if let s = getenv("VISOR_DIFF_CASES"), let v = Int(String(cString: s)), v > 0 { return v }
        return 1500
    }
}

@Suite("Differential: interpreter vs host CPU", .serialized)
struct DifferentialTests {
    @Test(.enabled(if: DifferentialLayout.native != nil, DifferentialLayout.unmapped))
    func everyFamilyMatchesTheHostCPU() throws {
        let rig = try #require(DifferentialRig())
        let seed = DifferentialSettings.seed
        let perFamily = DifferentialSettings.casesPerFamily
        print("differential: seed 0x\(String(seed, radix: 16)) (VISOR_DIFF_SEED), \(perFamily) cases per family (VISOR_DIFF_CASES), region at 0x\(String(rig.base, radix: 16))")
        var rng = SplitMix64(seed: seed)
        var generator = CaseGenerator(layout: rig.layout)
        var failures: [String] = []
        var total = 0
        var summary: [String] = []
        for family in CaseGenerator.families {
            var count = 0
            var failed = 0
            for _ in 0..<perFamily {
                guard let c = generator.make(family, &rng) else { continue }
                count += 1
                if let problem = rig.run(c, rng: &rng) {
                    failed += 1
                    if failures.count < 25 { failures.append(problem) }
                }
            }
            total += count
            summary.append("\(family) \(count)\(failed > 0 ? " (\(failed) FAILED)" : "")")
        }
        print("differential: \(total) cases: " + summary.joined(separator: ", "))
        #expect(total >= perFamily * CaseGenerator.families.count / 2)
        for f in failures { Issue.record(Comment(rawValue: f)) }
    }

    /// The hand-built `DecodedInstruction` of each case is what the decoder makes of its bytes.
    /// Needs no native region: the addresses in the registers do not enter the encoding.
    @Test func handBuiltInstructionsMatchTheDecoder() throws {
        var rng = SplitMix64(seed: DifferentialSettings.seed ^ 0xdec0de)
        var generator = CaseGenerator(layout: DifferentialLayout(base: 0x10_0000))
        var undefined = 0
        var checked = 0
        var mismatches: [String] = []
        for family in CaseGenerator.families {
            for _ in 0..<200 {
                guard let c = generator.make(family, &rng) else { continue }
                switch Decoder.decode(c.encoding.bytes, mode: .bits64) {
                case .instruction(let decoded):
                    checked += 1
                    if decoded != c.instruction && mismatches.count < 25 {
                        mismatches.append("\(family) [\(hex(c.encoding.bytes))]: decoder \(decoded) vs hand-built \(c.instruction)")
                    }
                default:
                    undefined += 1
                }
            }
        }
        print("differential cross-check: \(checked) encodings decoded and compared, \(undefined) not decoded")
        for m in mismatches { Issue.record(Comment(rawValue: m)) }
        // Every family makes cases; a decoder that decodes none of them is broken, not absent.
        #expect(checked + undefined >= 100 * CaseGenerator.families.count, "the generator made only \(checked + undefined) cases")
        #expect(checked > 0, "the decoder decoded none of \(undefined) valid encodings")
        #expect(undefined == 0, "the decoder rejected \(undefined) valid encodings")
    }

    @Test(.enabled(if: DifferentialLayout.native != nil, DifferentialLayout.unmapped))
    func nativeRunnerCatchesDivideError() throws {
        var state = CX86State()
        state.rflags = 0x2
        let code: [UInt8] = [0x48, 0xf7, 0xf1]  // div rcx with rcx = 0
        let signal = code.withUnsafeBufferPointer { cx86_run($0.baseAddress, $0.count, &state) }
        #expect(signal == SIGFPE)
        var ok = CX86State()
        ok.gpr.0 = 41; ok.rflags = 0x2
        let inc: [UInt8] = [0x48, 0xff, 0xc0]  // inc rax
        ok.gpr.4 = cx86_region_base() + UInt64(CX86_STACK_TOP_OFFSET)
        let s2 = inc.withUnsafeBufferPointer { cx86_run($0.baseAddress, $0.count, &ok) }
        #expect(s2 == 0 && ok.gpr.0 == 42)
    }
}
