// The `interp` engine as Visor sees it: exits for port and MMIO accesses with the completeRead
// retry protocol, HLT, triple fault, stop requests, state round trips, the physical decode cache
// under self-modifying code, and robustness against random code, page tables and IDTs.
//
// Most tests run real machine code through `Decoder.decode` and the general-purpose interpreter
// (a broken decoder fails them); the others use `sysTinyDecoder`.

import Foundation
import Testing
import VisorCore
@testable import VisorX86
import VisorX86Decode

/// Deterministic random numbers (SplitMix64).
struct SysRandom {
    var state: UInt64
    mutating func next() -> UInt64 {
        state &+= 0x9e37_79b9_7f4a_7c15
        var z = state
        z = (z ^ (z >> 30)) &* 0xbf58_476d_1ce4_e5b9
        z = (z ^ (z >> 27)) &* 0x94d0_49bb_1331_11eb
        return z ^ (z >> 31)
    }
    mutating func bytes(_ n: Int) -> [UInt8] { (0..<n).map { _ in UInt8(truncatingIfNeeded: next()) } }
}

@Suite struct EngineTests {
    /// A vCPU on the engine over the long-mode fixture's memory and state, with `code` at 0x10_0000.
    func vcpu(_ code: [UInt8], decode: X86DecodeFunction? = nil,
              prepare: (SysMachine) -> Void = { _ in }) throws -> (InterpVirtualCPU, SysMachine) {
        let f = SysMachine.longMode()
        // Linear 0x40_0000-0x5f_ffff aliases physical 0-0x1f_ffff; 1 GiB at 0x4000_0000 is MMIO.
        f.bus.w64(SysLayout.pd + 16, 0x0 | 0x83)
        f.bus.w64(SysLayout.pdpt + 8, 0x4000_0000 | 0x83)
        f.bus.bytes(SysLayout.code, code)
        prepare(f)
        let engine = decode.map { InterpEngine(decode: $0) } ?? InterpEngine()
        let vm = try engine.makeMachine(memory: f.bus.memory, options: MachineOptions())
        let cpu = try #require(try vm.makeVCPU(index: 0) as? InterpVirtualCPU)
        try cpu.setState(f.cpu.state)
        return (cpu, f)
    }

    @Test func engineIdentity() {
        #expect(InterpEngine().name == "interp")
        #expect(InterpEngine().timeStampCounterFrequency() == 1e9)
    }

    @Test func portReadIsRetriedWithTheCompletedValue() throws {
        let (cpu, _) = try vcpu([0xe4, 0x60, 0xe6, 0x80, 0xf4, 0xe6, 0x81], decode: sysTinyDecoder)
        #expect(try cpu.run() == .portRead(port: 0x60, size: 1))
        #expect(try cpu.state().rip == SysLayout.code, "the IN has not retired")
        cpu.completeRead(0x5a)
        #expect(try cpu.run() == .portWrite(port: 0x80, size: 1, value: 0x5a))
        #expect(try cpu.run() == .halt)
        let s = try cpu.state()
        #expect(s.rax & 0xff == 0x5a)
        #expect(s.rip == SysLayout.code + 5)
        // After HLT, run() continues with the next instruction, as kvm does.
        #expect(try cpu.run() == .portWrite(port: 0x81, size: 1, value: 0x5a))
    }

    @Test func aReadIsAskedAgainUntilAnswered() throws {
        let (cpu, _) = try vcpu([0xe4, 0x61, 0xf4], decode: sysTinyDecoder)
        #expect(try cpu.run() == .portRead(port: 0x61, size: 1))
        #expect(try cpu.run() == .portRead(port: 0x61, size: 1), "no answer: the same exit again")
        cpu.completeRead(0x1ff)
        #expect(try cpu.run() == .halt)
        #expect(try cpu.state().rax & 0xffff == 0xff, "only the low byte is used")
    }

    @Test func tripleFaultIsShutdownForever() throws {
        let (cpu, _) = try vcpu([0x0f, 0x0b], decode: sysTinyDecoder) { $0.cpu.idtr.limit = 0 }
        #expect(try cpu.run() == .shutdown)
        #expect(try cpu.run() == .shutdown)
    }

    @Test func stopRequestedBeforeRun() throws {
        let (cpu, _) = try vcpu([0xf4], decode: sysTinyDecoder)
        cpu.requestStop()
        #expect(try cpu.run() == .stopped)
        #expect(try cpu.run() == .halt)
        #expect(cpu.run(budget: 0) == .stopped)
    }

    @Test func stateRoundTrip() throws {
        let (cpu, f) = try vcpu([0xf4], decode: sysTinyDecoder)
        var s = f.cpu.state
        s.rbx = 0x1234_5678_9abc_def0
        s.r15 = 7
        s.cr2 = 0xdead_0000
        try cpu.setState(s)
        #expect(try cpu.state() == s)
    }

    @Test func decodeCacheIsInvalidatedByAWriteThroughAnotherMapping() throws {
        let (cpu, _) = try vcpu([0xe6, 0x80, 0xf4], decode: sysTinyDecoder)
        #expect(try cpu.run() == .portWrite(port: 0x80, size: 1, value: 0))
        #expect(try cpu.run() == .halt)
        // Run again from the cache.
        cpu.machine.cpu.rip = SysLayout.code
        let hits = cpu.machine.decodeCache.hits
        #expect(try cpu.run() == .portWrite(port: 0x80, size: 1, value: 0))
        #expect(cpu.machine.decodeCache.hits > hits, "the second run used cached decodes")
        #expect(try cpu.run() == .halt)
        // Patch the port number through the alias at 0x40_0000 + physical.
        try cpu.machine.writeLinear(0x40_0000 + SysLayout.code + 1, size: 1, value: 0x81)
        cpu.machine.cpu.rip = SysLayout.code
        #expect(try cpu.run() == .portWrite(port: 0x81, size: 1, value: 0), "the patched instruction runs")
        #expect(cpu.machine.decodeCache.invalidations >= 1)
    }

    @Test func aWriteBesideCachedCodeOnItsPageKeepsTheCache() throws {
        // OUT at the page's start, then a store to a 64-byte chunk of the same page that holds
        // no cached instruction: the cache stays. A store into the OUT's chunk drops the page.
        let (cpu, _) = try vcpu([0xe6, 0x80, 0xf4], decode: sysTinyDecoder)
        #expect(try cpu.run() == .portWrite(port: 0x80, size: 1, value: 0))
        #expect(try cpu.run() == .halt)
        let page = SysLayout.code & ~0xfff
        let invalidations = cpu.machine.decodeCache.invalidations
        let codeOffset = SysLayout.code & 0xfff
        let dataOffset: UInt64 = codeOffset < 0x800 ? 0xc00 : 0x100
        try cpu.machine.writeLinear(page + dataOffset, size: 8, value: 0x1122_3344)
        #expect(cpu.machine.decodeCache.invalidations == invalidations, "no code in the written chunk")
        let dataOverlaps = cpu.machine.decodeCache.overlapsCode(page + dataOffset, size: 8)
        let codeOverlaps = cpu.machine.decodeCache.overlapsCode(SysLayout.code + 1, size: 1)
        #expect(!dataOverlaps)
        #expect(codeOverlaps)
        try cpu.machine.writeLinear(SysLayout.code + 1, size: 1, value: 0x81)
        #expect(cpu.machine.decodeCache.invalidations == invalidations + 1)
        cpu.machine.cpu.rip = SysLayout.code
        #expect(try cpu.run() == .portWrite(port: 0x81, size: 1, value: 0), "the patched instruction runs")
    }

    @Test("an instruction across a page boundary is decoded once, and a store to its bytes on either page is seen")
    func pageCrossingInstructionIsKeptAndDroppedByStores() throws {
        // jmp to 0xffd; at 0xffd `mov eax, 0x44332211` (two bytes of it on the next page);
        // out 0x80, eax; jmp back to the MOV.
        var code: [UInt8] = [0xe9, 0xf8, 0x0f, 0x00, 0x00]
        code += [UInt8](repeating: 0x90, count: 0xffd - code.count)
        code += [0xb8, 0x11, 0x22, 0x33, 0x44, 0xe7, 0x80, 0xeb, 0xf7]
        final class Count: @unchecked Sendable { var decodes = 0 }
        let count = Count()
        let (cpu, _) = try vcpu(code, decode: { bytes, mode in
            count.decodes += 1
            return Decoder.decode(bytes, mode: mode)
        })
        // Twice round: the jump back is decoded the second time.
        for _ in 0..<2 { #expect(try cpu.run() == .portWrite(port: 0x80, size: 4, value: 0x4433_2211)) }
        let decodes = count.decodes
        for _ in 0..<20 {
            #expect(try cpu.run() == .portWrite(port: 0x80, size: 4, value: 0x4433_2211))
        }
        #expect(count.decodes == decodes, "the MOV that crosses the page came from the step loop's cache")
        // Its first byte of immediate (on the first page), then its last (on the second).
        try cpu.machine.writeLinear(SysLayout.code + 0xffe, size: 1, value: 0x55)
        #expect(try cpu.run() == .portWrite(port: 0x80, size: 4, value: 0x4433_2255))
        try cpu.machine.writeLinear(SysLayout.code + 0x1001, size: 1, value: 0x66)
        #expect(try cpu.run() == .portWrite(port: 0x80, size: 4, value: 0x6633_2255))
    }

    @Test func codeChunksCoverAnInstructionsBytes() {
        #expect(X86DecodeCache.chunks(offset: 0, size: 1) == 1)
        #expect(X86DecodeCache.chunks(offset: 62, size: 3) == 0b11)
        #expect(X86DecodeCache.chunks(offset: 4095, size: 8) == 1 << 63)
        #expect(X86DecodeCache.chunks(offset: 0, size: 4096) == .max)
        #expect(X86DecodeCache.chunks(offset: 128, size: 64) == 0b100)
    }

    @Test func physicalCacheIsSharedByAliases() throws {
        let (cpu, _) = try vcpu([0xe6, 0x80, 0xf4], decode: sysTinyDecoder)
        #expect(try cpu.run() == .portWrite(port: 0x80, size: 1, value: 0))
        let fills = cpu.machine.decodeCache.fills
        cpu.machine.cpu.rip = 0x40_0000 + SysLayout.code  // same bytes, another linear address
        #expect(try cpu.run() == .portWrite(port: 0x80, size: 1, value: 0))
        #expect(cpu.machine.decodeCache.fills == fills, "the OUT came from the cache")
        #expect(try cpu.run() == .halt)
        #expect(cpu.machine.decodeCache.fills == fills + 1, "the HLT is decoded once")
    }

    @Test func instructionFetchAcrossIntoAnUnmappedPageFaultsWithCR2OnTheSecondPage() throws {
        let (cpu, f) = try vcpu([], decode: sysTinyDecoder)
        // Map linear 0x60_0000 (PD[3]) with 4 KiB pages: page 0 present, page 1 not.
        f.bus.w64(SysLayout.pd + 24, 0x23000 | 3)
        f.bus.w64(0x23000, 0x30000 | 3)
        f.bus.w8(0x30fff, 0xe6)  // OUT's first byte at the end of the page
        f.gate(14, handler: 0x10_4000)
        f.bus.bytes(0x10_4000, [0xf4])
        var s = try cpu.state()
        s.rip = 0x60_0fff
        try cpu.setState(s)
        #expect(try cpu.run() == .halt)
        let after = try cpu.state()
        #expect(after.cr2 == 0x60_1000)
        #expect(f.bus.r64(SysLayout.stack - 48) == 0x10, "not present, instruction fetch")
    }

    @Test func outsideRAMCodeIsUndefinedNotAnExit() throws {
        let (cpu, f) = try vcpu([], decode: sysTinyDecoder)
        f.gate(6, handler: 0x10_4000)
        f.bus.bytes(0x10_4000, [0xf4])
        var s = try cpu.state()
        s.rip = 0x4000_0000
        try cpu.setState(s)
        #expect(try cpu.run() == .halt)
        #expect(f.bus.r64(SysLayout.stack - 40) == 0x4000_0000, "#UD at the MMIO address")
    }

    // MARK: Real code (needs the decoder and the general-purpose interpreter)

    @Test func mmioReadAndWriteExits() throws {
        // mov eax, [0x5000_0000]; mov [0x5000_0010], eax; hlt
        let (cpu, _) = try vcpu([0x8b, 0x04, 0x25, 0x00, 0x00, 0x00, 0x50,
                                 0x89, 0x04, 0x25, 0x10, 0x00, 0x00, 0x50, 0xf4])
        #expect(try cpu.run() == .mmioRead(address: GuestPhysicalAddress(0x5000_0000), size: 4))
        cpu.completeRead(0xdead_beef)
        #expect(try cpu.run() == .mmioWrite(address: GuestPhysicalAddress(0x5000_0010), size: 4, value: 0xdead_beef))
        #expect(try cpu.run() == .halt)
        #expect(try cpu.state().rax == 0xdead_beef)
    }

    @Test func selfModifyingCodeThroughAnAlias() throws {
        // 0x100000: out 0x80, al
        // 0x100002: mov byte [0x500001], 0x81   (the OUT's port byte, through the alias)
        // 0x10000a: jmp 0x100000
        let (cpu, _) = try vcpu([0xe6, 0x80, 0xc6, 0x04, 0x25, 0x01, 0x00, 0x50, 0x00, 0x81, 0xeb, 0xf4])
        #expect(try cpu.run() == .portWrite(port: 0x80, size: 1, value: 0))
        #expect(try cpu.run() == .portWrite(port: 0x81, size: 1, value: 0))
    }

    @Test func requestStopFromAnotherThread() throws {
        let (cpu, _) = try vcpu([0xeb, 0xfe])  // jmp $
        DispatchQueue.global().asyncAfter(deadline: .now() + .milliseconds(50)) { cpu.requestStop() }
        #expect(try cpu.run() == .stopped)
        #expect(try cpu.state().rip == SysLayout.code)
    }

    // MARK: Robustness

    @Test func randomCodeNeverTrapsTheHost() throws {
        var random = SysRandom(state: 0x5eed)
        var outcomes: [String: Int] = [:]
        for _ in 0..<150 {
            let (cpu, f) = try vcpu(random.bytes(4096))
            // Every IDT vector points into the random code too.
            for v in 0..<256 { f.gate(v, handler: SysLayout.code + (random.next() & 0xfff)) }
            var s = try cpu.state()
            s.rax = random.next(); s.rbx = random.next(); s.rcx = random.next() & 0xffff
            s.rsi = random.next() & 0x3f_ffff; s.rdi = random.next() & 0x3f_ffff; s.rbp = random.next()
            try cpu.setState(s)
            var exit = Exit.stopped
            for _ in 0..<20 {
                exit = cpu.run(budget: 500)
                if case .portRead = exit { cpu.completeRead(random.next()) }
                if case .mmioRead = exit { cpu.completeRead(random.next()) }
                if exit == .shutdown || exit == .stopped { break }
            }
            if case .internalError(let m) = exit { Issue.record("internal error: \(m)") }
            outcomes[exit.reasonName, default: 0] += 1
            let after = try cpu.state()
            if after.cr0 & 1 != 0 && exit != .shutdown {
                #expect(cpu.machine.cpu.cpl == UInt8(after.cs.selector & 3), "CPL is CS.RPL")
            }
        }
        // The random code must reach many kinds of exit (port and MMIO accesses, HLT, shutdown,
        // budget ends ...), or it exercised little of the interpreter.
        print("random code: \(outcomes.sorted { $0.key < $1.key })")
        #expect(outcomes.count >= 4, "exits: \(outcomes)")
    }

    @Test func randomPageTablesAndIDTsEndInFaultsOrShutdown() throws {
        var random = SysRandom(state: 42)
        var shutdowns = 0, delivered = 0
        for round in 0..<300 {
            let (cpu, f) = try vcpu([0x0f, 0x0b], decode: sysTinyDecoder)
            // Random IDT, and (every other round) random paging structures below the code's mapping.
            f.bus.bytes(SysLayout.idt, random.bytes(4096))
            if round % 4 == 0 {
                f.gate(6, handler: 0x10_4000)  // a valid #UD gate: delivery works unless paging is random
                f.bus.bytes(0x10_4000, [0xf4])
            }
            if round % 2 == 1 {
                f.bus.bytes(SysLayout.pdpt + 8, random.bytes(4088))
                f.bus.bytes(SysLayout.pd + 16, random.bytes(4080))
            }
            if round % 3 == 0 { f.bus.bytes(SysLayout.gdt + 8, random.bytes(0x40)) }
            var s = try cpu.state()
            if round % 4 != 0 { s.idtr.limit = UInt16(truncatingIfNeeded: random.next()) }
            s.rsp = random.next() & 0x3f_fff8
            try cpu.setState(s)
            let exit = cpu.run(budget: 200)
            switch exit {
            case .shutdown: shutdowns += 1
            case .internalError(let m): Issue.record("internal error: \(m)")
            default: delivered += 1
            }
        }
        #expect(shutdowns > 0 && delivered > 0, "both outcomes occur: \(shutdowns) shutdowns, \(delivered) others")
    }
}
