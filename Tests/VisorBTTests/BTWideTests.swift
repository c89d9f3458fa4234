// MUL, DIV, IDIV, BT/BTS/BTR/BTC on registers, BSF/BSR/TZCNT, SHLD/SHRD, BSWAP and LEAVE:
// translated, they end as the interpreter ends them over random operands (seeded), divisions
// that fault included (those the translated code leaves to the interpreter). Flags the SDM
// leaves undefined are not compared, except for the bit scans and double shifts, whose
// translation makes the interpreter's choice (kept, or OF from the sign's change and AF clear).

import Testing
import VisorCore
import VisorX86
import VisorX86Decode
@testable import VisorBT

@Suite("bt: wide arithmetic, bit tests and scans, double shifts, BSWAP, LEAVE")
struct BTWideTests {
    struct Generator {
        var state: UInt64
        mutating func next() -> UInt64 {
            state &+= 0x9e37_79b9_7f4a_7c15
            var z = state
            z = (z ^ (z >> 30)) &* 0xbf58_476d_1ce4_e5b9
            z = (z ^ (z >> 27)) &* 0x94d0_49bb_1331_11eb
            return z ^ (z >> 31)
        }
        /// Values that hit the edges often: 0, 1, -1, the most negative, small, random.
        mutating func interesting() -> UInt64 {
            switch next() % 8 {
            case 0: return 0
            case 1: return 1
            case 2: return .max
            case 3: return 0x8000_0000_0000_0000
            case 4: return 0x8000_0000
            case 5: return next() & 0xff
            default: return next()
            }
        }
    }

    /// (name, code bytes, flags that must match)
    static let cases: [(String, [UInt8], UInt64)] = [
        ("mul rcx", [0x48, 0xf7, 0xe1], 0x801),
        ("mul ecx", [0xf7, 0xe1], 0x801),
        ("div rcx", [0x48, 0xf7, 0xf1], 0),
        ("div ecx", [0xf7, 0xf1], 0),
        ("idiv rcx", [0x48, 0xf7, 0xf9], 0),
        ("idiv ecx", [0xf7, 0xf9], 0),
        ("div qword [rsi]", [0x48, 0xf7, 0x36], 0),
        ("mul dword [rsi]", [0xf7, 0x26], 0x801),
        ("bt rax, rcx", [0x48, 0x0f, 0xa3, 0xc8], 0x41),
        ("bts eax, ecx", [0x0f, 0xab, 0xc8], 0x41),
        ("btr ax, cx", [0x66, 0x0f, 0xb3, 0xc8], 0x41),
        ("btc rax, 45", [0x48, 0x0f, 0xba, 0xf8, 0x2d], 0x41),
        ("bts qword [rsi], 50", [0x48, 0x0f, 0xba, 0x2e, 0x32], 0x41),
        ("btr dword [rsi], 3", [0x0f, 0xba, 0x36, 0x03], 0x41),
        ("bt word [rsi], 17", [0x66, 0x0f, 0xba, 0x26, 0x11], 0x41),
        ("btc qword [rsi], 63", [0x48, 0x0f, 0xba, 0x3e, 0x3f], 0x41),
        ("lock cmpxchg [rsi], rcx", [0xf0, 0x48, 0x0f, 0xb1, 0x0e], 0x8d5),
        ("cmpxchg dword [rsi], ecx", [0x0f, 0xb1, 0x0e], 0x8d5),
        ("lock cmpxchg word [rsi], dx", [0xf0, 0x66, 0x0f, 0xb1, 0x16], 0x8d5),
        ("lock cmpxchg byte [rsi], cl", [0xf0, 0x0f, 0xb0, 0x0e], 0x8d5),
        ("lock xadd [rsi], rdx", [0xf0, 0x48, 0x0f, 0xc1, 0x16], 0x8d5),
        ("xadd dword [rsi], ecx", [0x0f, 0xc1, 0x0e], 0x8d5),
        ("bsf rax, rcx", [0x48, 0x0f, 0xbc, 0xc1], 0x8d5),
        ("bsf ecx, edx", [0x0f, 0xbc, 0xca], 0x8d5),
        ("bsr ax, cx", [0x66, 0x0f, 0xbd, 0xc1], 0x8d5),
        ("bsr r9, qword [rsi]", [0x4c, 0x0f, 0xbd, 0x0e], 0x8d5),
        ("tzcnt rax, rcx", [0xf3, 0x48, 0x0f, 0xbc, 0xc1], 0x8d5),
        ("tzcnt ecx, dword [rsi]", [0xf3, 0x0f, 0xbc, 0x0e], 0x8d5),
        ("tzcnt dx, ax", [0x66, 0xf3, 0x0f, 0xbc, 0xd0], 0x8d5),
        ("shrd rax, rdx, 10", [0x48, 0x0f, 0xac, 0xd0, 0x0a], 0x8d5),
        ("shrd eax, ecx, 31", [0x0f, 0xac, 0xc8, 0x1f], 0x8d5),
        ("shld r8, r9, 1", [0x4d, 0x0f, 0xa4, 0xc8, 0x01], 0x8d5),
        ("shld ecx, edx, 7", [0x0f, 0xa4, 0xd1, 0x07], 0x8d5),
        ("bt qword [rsi], rcx (bit string)", [0x48, 0x0f, 0xa3, 0x0e], 0x41),
        ("bts dword [rsi], ecx (bit string)", [0x0f, 0xab, 0x0e], 0x41),
        ("btr word [rsi], dx (bit string)", [0x66, 0x0f, 0xb3, 0x16], 0x41),
        ("btc qword [rsi], rax (bit string)", [0x48, 0x0f, 0xbb, 0x06], 0x41),
        ("lock bts qword [rsi], rdx (bit string)", [0xf0, 0x48, 0x0f, 0xab, 0x16], 0x41),
        ("lock btr dword [rsi], ecx (bit string)", [0xf0, 0x0f, 0xb3, 0x0e], 0x41),
        ("lock btc word [rsi], ax (bit string)", [0xf0, 0x66, 0x0f, 0xbb, 0x06], 0x41),
        ("lock bts qword [rsi], 45", [0xf0, 0x48, 0x0f, 0xba, 0x2e, 0x2d], 0x41),
        ("lock btr dword [rsi], 3", [0xf0, 0x0f, 0xba, 0x36, 0x03], 0x41),
        ("bswap eax", [0x0f, 0xc8], 0x8d5),
        ("bswap r9", [0x49, 0x0f, 0xc9], 0x8d5),
        ("leave", [0xc9], 0x8d5),
    ]

    @Test("each runs translated and ends as on the interpreter (1000 seeded cases each)",
          arguments: BTWideTests.cases.indices)
    func matchesInterpreter(_ index: Int) throws {
        let (name, bytes, compared) = Self.cases[index]
        var g = Generator(state: 0x5eed_0000 &+ UInt64(index))
        var translated: UInt64 = 0
        for round in 0..<1000 {
            let interp = try BTHarness(translated: false)
            let bt = try BTHarness(translated: true)
            var gpr = (0..<16).map { _ in g.interesting() }
            gpr[4] = 0x7_0000                      // RSP
            gpr[6] = 0x6_0000 + (g.next() & 0xff8) // RSI: a scratch qword
            if name == "leave" { gpr[5] = 0x5_0000 + (g.next() & 0xff8) }
            let bitString = name.hasSuffix("(bit string)")
            if bitString {
                // Indexes within 4096 bits either way (the word may lie before the operand),
                // with garbage above a dword's or word's index now and then.
                for r in 0...2 {
                    var v = UInt64(bitPattern: Int64(g.next() % 8192) - 4096)
                    if !name.contains("qword") && g.next() % 2 == 0 {
                        let keep: UInt64 = name.contains("dword") ? 0xffff_ffff : 0xffff
                        v = (v & keep) | (g.next() & ~keep)
                    }
                    gpr[r] = v
                }
            }
            // CMPXCHG succeeds half the time: the accumulator equals the memory word.
            let scratchOverride: UInt64? = name.contains("cmpxchg") && g.next() % 2 == 0 ? gpr[0] : nil
            // Dividends that fit the quotient three times in four (random ones mostly fault).
            if name.hasPrefix("div") && g.next() % 4 != 0 { gpr[2] = 0 }
            if name.hasPrefix("idiv") && g.next() % 4 != 0 {
                gpr[2] = name.hasSuffix("rcx") ? UInt64(bitPattern: Int64(bitPattern: gpr[0]) >> 63)
                    : (gpr[0] & 0x8000_0000 != 0 ? 0xffff_ffff : 0)
            }
            let flags = (g.next() & 0x8d5) | 2
            let scratch = scratchOverride ?? g.interesting()
            var window = [UInt8](repeating: 0, count: bitString ? 1200 : 0)
            for i in window.indices { window[i] = UInt8(truncatingIfNeeded: g.next()) }
            for h in [interp, bt] {
                try h.load(bytes + [0xf4])
                try h.bus.memory.write(window, at: GuestPhysicalAddress(gpr[6] - 600))
                try h.bus.memory.store(scratch, at: GuestPhysicalAddress(gpr[6]))
                try h.bus.memory.store(scratch, at: GuestPhysicalAddress(gpr[5] & 0xf_fff8))
                for i in 0..<16 { h.cpu.gpr[i] = gpr[i] }
                h.cpu.rflags = flags
            }
            let a = interp.run(budget: 10)
            let b = bt.run(budget: 10)
            let context = "\(name) round \(round): registers \(gpr.map { String($0, radix: 16) }) flags \(String(flags, radix: 16)) memory \(String(scratch, radix: 16))"
            #expect(a == b, "\(context)")
            #expect(bt.cpu.gpr == interp.cpu.gpr, "\(context)")
            #expect(bt.cpu.rip == interp.cpu.rip, "\(context)")
            #expect(bt.cpu.rflags & compared == interp.cpu.rflags & compared, "\(context)")
            let x: UInt64 = try interp.bus.memory.load(UInt64.self, at: GuestPhysicalAddress(gpr[6]))
            let y: UInt64 = try bt.bus.memory.load(UInt64.self, at: GuestPhysicalAddress(gpr[6]))
            #expect(x == y, "\(context): memory")
            if bitString {
                let near = { (h: BTHarness) in try h.bus.memory.read(at: GuestPhysicalAddress(gpr[6] - 600), count: 1200) }
                #expect(try near(interp) == near(bt), "\(context): the bit string")
            }
            translated &+= try #require(bt.executor).statistics.instructionsRun
            if bt.cpu.gpr != interp.cpu.gpr { break }
        }
        // Most cases ran translated (a division that would fault is left to the interpreter).
        #expect(translated > 500, "\(name): only \(translated) of 1000 ran translated")
    }
}

@Suite("bt: REP STOS and REP MOVS through the string callout")
struct BTStringTests {
    static let cases: [(String, [UInt8])] = [
        ("rep stosb", [0xf3, 0xaa]),
        ("rep stosw", [0x66, 0xf3, 0xab]),
        ("rep stosd", [0xf3, 0xab]),
        ("rep stosq", [0xf3, 0x48, 0xab]),
        ("rep movsb", [0xf3, 0xa4]),
        ("rep movsd", [0xf3, 0xa5]),
        ("rep movsq", [0xf3, 0x48, 0xa5]),
    ]

    @Test("random counts, addresses across pages, overlapping copies and DF: as on the interpreter",
          arguments: BTStringTests.cases.indices)
    func matchesInterpreter(_ index: Int) throws {
        let (name, bytes) = Self.cases[index]
        var g = BTWideTests.Generator(state: 0x57a7_0000 &+ UInt64(index))
        var translated: UInt64 = 0
        for round in 0..<150 {
            let interp = try BTHarness(translated: false)
            let bt = try BTHarness(translated: true)
            var gpr = (0..<16).map { _ in g.next() }
            gpr[4] = 0x7_0000
            // RAX (STOS's value): random, one byte repeated (the callout's memset), the same
            // with other bytes above bit 15 (which stosb and stosw ignore), or one bit off.
            let repeated = 0x0101_0101_0101_0101 &* (g.next() & 0xff)
            switch g.next() % 4 {
            case 0: gpr[0] = repeated
            case 1: gpr[0] = repeated ^ 0xdead_0000_0000_0000
            case 2: gpr[0] = repeated ^ 1 << (g.next() % 64)
            default: break
            }
            gpr[1] = g.next() % 5 == 0 ? 0 : g.next() % 9000          // RCX: sometimes 0, up to 2+ pages
            gpr[6] = 0x10_0000 + g.next() % 0x3000                     // RSI
            // RDI: apart, or overlapping the source just after or before it.
            switch g.next() % 3 {
            case 0: gpr[7] = 0x20_0000 + g.next() % 0x3000
            case 1: gpr[7] = gpr[6] + g.next() % 64
            default: gpr[7] = gpr[6] &- g.next() % 64
            }
            // Element-aligned addresses three times in four (an element across a page is left
            // to the interpreter).
            if g.next() % 4 != 0 {
                let size = UInt64(name.hasSuffix("q") ? 8 : name.hasSuffix("d") ? 4 : name.hasSuffix("w") ? 2 : 1)
                gpr[6] &= ~(size - 1)
                gpr[7] &= ~(size - 1)
            }
            let flags = (g.next() % 3 == 0 ? 0x400 : 0) | (g.next() & 0x8d5) | 2   // DF (copying down) now and then
            var pattern = [UInt8](repeating: 0, count: 0x4000)
            for i in pattern.indices { pattern[i] = UInt8(truncatingIfNeeded: g.next()) }
            for h in [interp, bt] {
                try h.load(bytes + [0xf4])
                try h.bus.memory.write(pattern, at: GuestPhysicalAddress(0x10_0000))
                try h.bus.memory.write(pattern, at: GuestPhysicalAddress(0x20_0000))
                for i in 0..<16 { h.cpu.gpr[i] = gpr[i] }
                h.cpu.rflags = flags
            }
            let a = interp.run(budget: 100_000)
            let b = bt.run(budget: 100_000)
            let context = "\(name) round \(round): rcx \(gpr[1]) rsi \(String(gpr[6], radix: 16)) rdi \(String(gpr[7], radix: 16)) flags \(String(flags, radix: 16))"
            #expect(a == b, "\(context)")
            #expect(bt.cpu.gpr == interp.cpu.gpr, "\(context)")
            #expect(bt.cpu.rip == interp.cpu.rip, "\(context)")
            #expect(bt.cpu.rflags & 0x8d5 == interp.cpu.rflags & 0x8d5, "\(context)")
            for base in [UInt64(0x10_0000), 0x20_0000] {
                let x = try interp.bus.memory.read(at: GuestPhysicalAddress(base), count: 0x4000)
                let y = try bt.bus.memory.read(at: GuestPhysicalAddress(base), count: 0x4000)
                #expect(x == y, "\(context): memory at \(String(base, radix: 16)) differs")
            }
            translated &+= try #require(bt.executor).statistics.instructionsRun
            if bt.cpu.gpr != interp.cpu.gpr { break }
        }
        #expect(translated > 75, "\(name): only \(translated) of 150 ran translated")
    }
}

@Suite("bt: a REP STOS longer than one callout's run")
struct BTLongStringTests {
    @Test("3 MiB of REP STOSB goes on in runs of translated code to the end, as on the interpreter")
    func longMemset() throws {
        let count: UInt64 = 3 << 20
        let code: [UInt8] = [0xf3, 0xaa, 0xf4]  // rep stosb; hlt
        let interp = try BTHarness(translated: false, memory: try GuestMemory(size: 8 << 20))
        let bt = try BTHarness(translated: true, memory: try GuestMemory(size: 8 << 20))
        for h in [interp, bt] {
            try h.load(code)
            h.cpu.gpr[0] = 0x5a
            h.cpu.gpr[1] = count
            h.cpu.gpr[7] = 0x10_0000
            #expect(h.run(budget: 10_000_000) == .halted)
        }
        #expect(bt.cpu.gpr == interp.cpu.gpr)
        #expect(bt.cpu.gpr[1] == 0 && bt.cpu.gpr[7] == 0x10_0000 + count)
        let x = try interp.bus.memory.read(at: GuestPhysicalAddress(0x10_0000), count: Int(count) + 16)
        let y = try bt.bus.memory.read(at: GuestPhysicalAddress(0x10_0000), count: Int(count) + 16)
        #expect(x == y)
        let stats = try #require(bt.executor).statistics
        // Every run was translated code: one per MiB, none left to the interpreter.
        #expect(stats.instructionsRun == count / UInt64(BTExecutor.stringBytesPerCall))
        #expect(bt.machine.instructionsRetired == stats.instructionsRun + 1)  // + the HLT
    }
}
