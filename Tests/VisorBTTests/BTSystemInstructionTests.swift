// The system instructions bt translates instead of leaving to the interpreter: PUSHF and MOV
// from a segment register (sensitive: counted as interp counts them), CLI (IF cleared in the
// guest's RFLAGS, or a #GP by the interpreter when CPL > IOPL), SWAPGS and the fences; with
// them, what a kernel's entry code does around them: FS- and GS-relative accesses and PUSH
// from memory; RDTSC/RDTSCP (a callout); LOCK'd read-modify-writes, XCHG and CMPXCHG16B on
// memory, one host LOCK'd instruction each; CLD and STD; SYSCALL and SYSRET (a callout that
// changes the privilege level and goes on in the new level's code). (STI: BTInterruptTests.)

import Testing
import VisorCore
import VisorX86
import VisorX86Decode
@testable import VisorBT

@Suite("bt: PUSHF, MOV from Sreg and CLI translated")
struct BTSystemInstructionTests {
    /// add eax, eax; pushfq; pop rbx; mov ecx, ds; mov [0x3000], fs; mov dx, gs; cli;
    /// pushfq; pop rsi; hlt.
    static let code: [UInt8] = [
        0x01, 0xc0,                                      // add eax, eax
        0x9c,                                            // pushfq
        0x5b,                                            // pop rbx
        0x8c, 0xd9,                                      // mov ecx, ds
        0x8c, 0x24, 0x25, 0x00, 0x30, 0x00, 0x00,        // mov [0x3000], fs
        0x66, 0x8c, 0xea,                                // mov dx, gs
        0xfa,                                            // cli
        0x9c,                                            // pushfq
        0x5e,                                            // pop rsi
        0xf4,                                            // hlt
    ]

    func prepare(_ h: BTHarness, cpl: UInt8 = 0) throws {
        try h.load(Self.code)
        h.cpu.segments[3] = .flatData(selector: 0x18)
        h.cpu.segments[4] = .flatData(selector: 0x33)
        h.cpu.segments[5] = .flatData(selector: 0x2b)
        h.cpu.gpr[0] = 0x8000_0001
        h.cpu.gpr[2] = 0xffff_ffff_ffff_ffff
        h.cpu.rflags |= 0x200 | 0x400   // IF, and DF (kept in the pushed image)
        h.cpu.cpl = cpl
    }

    @Test("they run translated and leave what the interpreter leaves, counted the same")
    func matchInterpreter() throws {
        let interp = try BTHarness(translated: false)
        let bt = try BTHarness(translated: true)
        for h in [interp, bt] {
            try prepare(h)
            #expect(h.run() == .halted)
        }
        #expect(bt.cpu.gpr == interp.cpu.gpr)
        #expect(bt.cpu.rflags == interp.cpu.rflags)
        #expect(bt.cpu.rflags & 0x200 == 0, "CLI cleared IF")
        #expect(bt.cpu.gpr[3] & 0x200 != 0, "the first PUSHF saw IF set")
        #expect(bt.cpu.gpr[6] & 0x200 == 0, "the second PUSHF saw it clear")
        #expect(bt.cpu.gpr[1] == 0x18)
        #expect(bt.cpu.gpr[2] == 0xffff_ffff_ffff_002b, "a 16-bit MOV keeps the rest of RDX")
        let stored = try bt.bus.memory.read(at: GuestPhysicalAddress(0x3000), count: 2)
        #expect(stored == [0x33, 0x00])
        #expect(bt.machine.sensitiveInstructions == interp.machine.sensitiveInstructions)
        #expect(bt.machine.sensitiveInstructions.count(.pushf, cpl: 0) == 2)
        #expect(bt.machine.sensitiveInstructions.count(.movFromSegment, cpl: 0) == 3)
        let stats = try #require(bt.executor).statistics
        #expect(stats.instructionsRun == UInt64(9), "all but HLT ran translated")
    }

    @Test("CLI with CPL above IOPL stops the block: the interpreter raises the #GP")
    func cliAboveIOPL() throws {
        let interp = try BTHarness(translated: false)
        let bt = try BTHarness(translated: true)
        for h in [interp, bt] {
            try prepare(h, cpl: 3)
            _ = h.run(budget: 100)
        }
        #expect(bt.cpu.gpr == interp.cpu.gpr)
        #expect(bt.cpu.rip == interp.cpu.rip)
        #expect(bt.cpu.rflags == interp.cpu.rflags)
        #expect(bt.machine.isShutdown == interp.machine.isShutdown)
        let stats = try #require(bt.executor).statistics
        #expect(stats.instructionsRun >= 6, "the instructions before CLI ran translated")
    }

    @Test("CLI, STI and PUSHF at every CPL and IOPL: translated where CPL ≤ IOPL, stopped before for the #GP elsewhere, the status flags untouched")
    func interruptFlagAtEveryPrivilege() throws {
        // cli; pushfq; pop rbx; sti; nop; pushfq; pop rcx; hlt
        let code: [UInt8] = [0xfa, 0x9c, 0x5b, 0xfb, 0x90, 0x9c, 0x59, 0xf4]
        for cpl in UInt8(0)...3 {
            for iopl in UInt64(0)...3 {
                for status: UInt64 in [0, 0x8d5, 0x45, 0x880] {
                    let interp = try BTHarness(translated: false)
                    let bt = try BTHarness(translated: true)
                    for h in [interp, bt] {
                        try h.load(code)
                        h.cpu.rflags = 2 | status | 0x200 | iopl << 12
                        h.cpu.cpl = cpl
                        _ = h.run(budget: 100)
                    }
                    let context = "CPL \(cpl) IOPL \(iopl) flags \(String(status, radix: 16))"
                    #expect(bt.cpu.gpr == interp.cpu.gpr, "\(context)")
                    #expect(bt.cpu.rip == interp.cpu.rip, "\(context)")
                    #expect(bt.cpu.rflags == interp.cpu.rflags, "\(context)")
                    #expect(bt.machine.isShutdown == interp.machine.isShutdown, "\(context)")
                    let run = try #require(bt.executor).statistics.instructionsRun
                    if UInt64(cpl) <= iopl {
                        #expect(run == 7, "\(context): all but HLT ran translated")
                        #expect(bt.cpu.gpr[3] & 0xad5 == status, "\(context): PUSHF after CLI")
                        #expect(bt.cpu.gpr[1] & 0xad5 == status | 0x200, "\(context): PUSHF after STI")
                    } else {
                        #expect(run == 0, "\(context): CLI stopped the block")
                    }
                }
            }
        }
    }

    /// mov rax, gs:[0x10]; swapgs; mov rbx, gs:[0x10]; mov fs:[0x20], rbx; push qword fs:[0x20];
    /// pop rcx; push qword [rsp - 8]; pop rdx; mfence; lfence; hlt.
    static let entryCode: [UInt8] = [
        0x65, 0x48, 0x8b, 0x04, 0x25, 0x10, 0x00, 0x00, 0x00,  // mov rax, gs:[0x10]
        0x0f, 0x01, 0xf8,                                      // swapgs
        0x65, 0x48, 0x8b, 0x1c, 0x25, 0x10, 0x00, 0x00, 0x00,  // mov rbx, gs:[0x10]
        0x64, 0x48, 0x89, 0x1c, 0x25, 0x20, 0x00, 0x00, 0x00,  // mov fs:[0x20], rbx
        0x64, 0xff, 0x34, 0x25, 0x20, 0x00, 0x00, 0x00,        // push qword fs:[0x20]
        0x59,                                                  // pop rcx
        0xff, 0x74, 0x24, 0xf8,                                // push qword [rsp - 8]
        0x5a,                                                  // pop rdx
        0x0f, 0xae, 0xf0,                                      // mfence
        0x0f, 0xae, 0xe8,                                      // lfence
        0xf4,                                                  // hlt
    ]

    func prepareEntry(_ h: BTHarness, cpl: UInt8) throws {
        try h.load(Self.entryCode)
        try h.bus.memory.write(btBytes(0x1111, 8), at: GuestPhysicalAddress(0x4010))
        try h.bus.memory.write(btBytes(0x2222, 8), at: GuestPhysicalAddress(0x5010))
        h.cpu.segments[4].base = 0x6000
        h.cpu.segments[5].base = 0x4000
        h.cpu.kernelGSBase = 0x5000
        h.cpu.cpl = cpl
    }

    @Test("SWAPGS, FS and GS accesses, PUSH from memory and the fences run translated as interp runs them")
    func entrySequence() throws {
        let interp = try BTHarness(translated: false)
        let bt = try BTHarness(translated: true)
        for h in [interp, bt] {
            try prepareEntry(h, cpl: 0)
            #expect(h.run() == .halted)
        }
        #expect(bt.cpu.gpr == interp.cpu.gpr)
        #expect(bt.cpu.rflags == interp.cpu.rflags)
        #expect(bt.cpu.gpr[0] == 0x1111, "GS's base before SWAPGS")
        #expect(Array(bt.cpu.gpr[1...3]) == [0x2222, 0x2222, 0x2222], "and after it; then through FS and the stack")
        #expect(bt.cpu.segments[5].base == 0x5000 && bt.cpu.kernelGSBase == 0x4000, "SWAPGS exchanged the two")
        #expect(interp.cpu.segments[5].base == 0x5000 && interp.cpu.kernelGSBase == 0x4000)
        #expect(try bt.bus.memory.read(at: GuestPhysicalAddress(0x6020), count: 8) == btBytes(0x2222, 8))
        let stats = try #require(bt.executor).statistics
        #expect(stats.instructionsRun == 10, "all but HLT ran translated")
        #expect(stats.loadCallouts + stats.storeCallouts <= 4, "FS and GS accesses go through the host TLB")
    }

    @Test("SWAPGS above CPL 0 stops the block: the interpreter raises the #GP")
    func swapgsAboveCPL0() throws {
        let interp = try BTHarness(translated: false)
        let bt = try BTHarness(translated: true)
        for h in [interp, bt] {
            try prepareEntry(h, cpl: 3)
            _ = h.run(budget: 100)
        }
        #expect(bt.cpu.gpr == interp.cpu.gpr)
        #expect(bt.cpu.rip == interp.cpu.rip)
        #expect(bt.cpu.segments[5].base == 0x4000, "GS's base unchanged")
        #expect(bt.machine.isShutdown == interp.machine.isShutdown)
    }

    /// rdtsc; mov rbx, rax; mov rsi, rdx; rdtscp; hlt — the bus's counter is 0, so the
    /// time-stamp counter is the CPU's TSC offset.
    static let timeStampCode: [UInt8] = [0x0f, 0x31, 0x48, 0x89, 0xc3, 0x48, 0x89, 0xd6, 0x0f, 0x01, 0xf9, 0xf4]

    @Test("RDTSC and RDTSCP run translated, through a callout, as interp runs them; CR4.TSD above CPL 0 stops the block")
    func timeStamp() throws {
        for (cpl, tsd) in [(UInt8(0), false), (3, false), (3, true)] {
            let interp = try BTHarness(translated: false)
            let bt = try BTHarness(translated: true)
            for h in [interp, bt] {
                try h.load(Self.timeStampCode)
                h.cpu.tscOffset = 0x1234_5678_9abc_def0
                h.cpu.tscAux = 0xffff_0007
                h.cpu.gpr[1] = 0xdead_beef_0000_0000
                h.cpu.cpl = cpl
                if tsd { h.cpu.cr4 |= X86SystemBits.cr4TSD }
                _ = h.run(budget: 100)
            }
            #expect(bt.cpu.gpr == interp.cpu.gpr, "CPL \(cpl), TSD \(tsd)")
            #expect(bt.cpu.rip == interp.cpu.rip)
            #expect(bt.machine.isShutdown == interp.machine.isShutdown)
            let ran = try #require(bt.executor).statistics.instructionsRun
            if tsd {
                #expect(ran == 0, "the block stops before RDTSC: the interpreter raises the #GP")
                #expect(bt.cpu.gpr[0] == 0)
            } else {
                #expect(Array(bt.cpu.gpr[0...3]) == [0x9abc_def0, 0xffff_0007, 0x1234_5678, 0x9abc_def0])
                #expect(bt.cpu.gpr[6] == 0x1234_5678)
                #expect(ran == 4, "all but HLT ran translated")
            }
        }
    }

    /// LOCK'd ADD, SUB, OR, AND, XOR, INC, DEC, NEG, NOT and ADC on memory at each size, Linux's
    /// smp_mb() (`lock add $0, -4(%rsp)`) and a GS-relative LOCK INC; PUSHFQ; POP RDX; HLT.
    static let lockedCode: [UInt8] = [
        0xf0, 0x83, 0x03, 0x05,                          // lock add dword [rbx], 5
        0xf0, 0x48, 0x29, 0x43, 0x08,                    // lock sub [rbx+8], rax
        0xf0, 0x80, 0x4b, 0x10, 0x80,                    // lock or byte [rbx+0x10], 0x80
        0xf0, 0x66, 0x81, 0x63, 0x12, 0xf0, 0x0f,        // lock and word [rbx+0x12], 0x0ff0
        0xf0, 0x48, 0x31, 0x4b, 0x18,                    // lock xor [rbx+0x18], rcx
        0xf0, 0xff, 0x43, 0x20,                          // lock inc dword [rbx+0x20]
        0xf0, 0x48, 0xff, 0x4b, 0x28,                    // lock dec qword [rbx+0x28]
        0xf0, 0xf7, 0x5b, 0x30,                          // lock neg dword [rbx+0x30]
        0xf0, 0xf6, 0x53, 0x34,                          // lock not byte [rbx+0x34]
        0xf0, 0x83, 0x53, 0x38, 0x01,                    // lock adc dword [rbx+0x38], 1
        0xf0, 0x83, 0x44, 0x24, 0xfc, 0x00,              // lock add dword [rsp-4], 0
        0xf0, 0x65, 0xff, 0x04, 0x25, 0x40, 0x00, 0x00, 0x00,  // lock inc dword gs:[0x40]
        0x9c, 0x5a,                                      // pushfq; pop rdx
        0xf4,                                            // hlt
    ]

    @Test("LOCK'd read-modify-writes on memory run translated as one host LOCK'd instruction, as interp runs them")
    func lockedOperations() throws {
        let interp = try BTHarness(translated: false)
        let bt = try BTHarness(translated: true)
        let data = (0..<64).map { UInt8(truncatingIfNeeded: $0 &* 37 &+ 11) }
        for h in [interp, bt] {
            try h.load(Self.lockedCode)
            try h.bus.memory.write(data, at: GuestPhysicalAddress(0x5000))
            try h.bus.memory.write(data, at: GuestPhysicalAddress(0x6000))
            h.cpu.gpr[3] = 0x5000
            h.cpu.gpr[0] = 0x0123_4567_89ab_cdef
            h.cpu.gpr[1] = 0xf0f0_f0f0_0f0f_0f0f
            h.cpu.segments[5].base = 0x6000
            #expect(h.run() == .halted)
        }
        #expect(bt.cpu.gpr == interp.cpu.gpr)
        #expect(bt.cpu.rflags == interp.cpu.rflags)
        for page: UInt64 in [0x5000, 0x6000] {
            #expect(try bt.bus.memory.read(at: GuestPhysicalAddress(page), count: 64)
                    == interp.bus.memory.read(at: GuestPhysicalAddress(page), count: 64))
        }
        #expect(try bt.bus.memory.read(at: GuestPhysicalAddress(0x5000), count: 64) != data, "the operations wrote")
        #expect(try #require(bt.executor).statistics.instructionsRun == 14, "all but HLT ran translated")
    }

    /// std; pushfq; pop rax; cld; pushfq; pop rbx; xchg [rsi], rcx; xchg dl, [rsi+8]; std; hlt.
    static let directionAndExchangeCode: [UInt8] = [
        0xfd, 0x9c, 0x58,                    // std; pushfq; pop rax
        0xfc, 0x9c, 0x5b,                    // cld; pushfq; pop rbx
        0x48, 0x87, 0x0e,                    // xchg [rsi], rcx
        0x86, 0x56, 0x08,                    // xchg dl, [rsi+8]
        0xfd,                                // std
        0xf4,                                // hlt
    ]

    @Test("CLD, STD and XCHG with memory run translated as interp runs them; DF reaches the CPU at the exit")
    func directionAndExchange() throws {
        let interp = try BTHarness(translated: false)
        let bt = try BTHarness(translated: true)
        let data = (0..<16).map { UInt8($0 &+ 0xa0) }
        for h in [interp, bt] {
            try h.load(Self.directionAndExchangeCode)
            try h.bus.memory.write(data, at: GuestPhysicalAddress(0x5000))
            h.cpu.gpr[6] = 0x5000
            h.cpu.gpr[1] = 0x1122_3344_5566_7788
            h.cpu.gpr[2] = 0xffff_ffff_ffff_ff5a
            #expect(h.run() == .halted)
        }
        #expect(bt.cpu.gpr == interp.cpu.gpr)
        #expect(bt.cpu.rflags == interp.cpu.rflags)
        #expect(bt.cpu.gpr[0] & 0x400 != 0 && bt.cpu.gpr[3] & 0x400 == 0, "PUSHF saw STD's and CLD's DF")
        #expect(bt.cpu.rflags & 0x400 != 0, "the last STD's DF is the CPU's after the exit")
        #expect(try bt.bus.memory.read(at: GuestPhysicalAddress(0x5000), count: 16)
                == interp.bus.memory.read(at: GuestPhysicalAddress(0x5000), count: 16))
        #expect(bt.cpu.gpr[1] == 0xa7a6_a5a4_a3a2_a1a0 && bt.cpu.gpr[2] == 0xffff_ffff_ffff_ffa8)
        #expect(try #require(bt.executor).statistics.instructionsRun == 9, "all but HLT ran translated")
    }

    /// cmpxchg16b gs:[0x10] (equal: stores RCX:RBX); lock cmpxchg16b [rsi] (not: loads
    /// RDX:RAX); pushfq; pop rdi; hlt.
    static let compareExchange16Code: [UInt8] = [
        0x65, 0x48, 0x0f, 0xc7, 0x0c, 0x25, 0x10, 0x00, 0x00, 0x00,  // cmpxchg16b gs:[0x10]
        0xf0, 0x48, 0x0f, 0xc7, 0x0e,                                // lock cmpxchg16b [rsi]
        0x9c, 0x5f,                                                  // pushfq; pop rdi
        0xf4,                                                        // hlt
    ]

    @Test("CMPXCHG16B runs translated as one host LOCK CMPXCHG16B, as interp runs it; misaligned, the interpreter's #GP",
          arguments: [UInt64(0x5000), 0x5008])
    func compareExchange16(rsi: UInt64) throws {
        let interp = try BTHarness(translated: false)
        let bt = try BTHarness(translated: true)
        for h in [interp, bt] {
            try h.load(Self.compareExchange16Code)
            for (address, value) in [(UInt64(0x6010), UInt64(0x1111)), (0x6018, 0x2222), (0x5000, 0xaaaa), (0x5008, 0xbbbb),
                                     (0x5010, 0xcccc)] {
                try h.bus.memory.write(btBytes(value, 8), at: GuestPhysicalAddress(address))
            }
            h.cpu.segments[5].base = 0x6000
            h.cpu.gpr[0] = 0x1111; h.cpu.gpr[2] = 0x2222
            h.cpu.gpr[3] = 0x3333; h.cpu.gpr[1] = 0x4444
            h.cpu.gpr[6] = rsi
            _ = h.run(budget: 100)
        }
        #expect(bt.cpu.gpr == interp.cpu.gpr)
        #expect(bt.cpu.rip == interp.cpu.rip)
        #expect(bt.machine.isShutdown == interp.machine.isShutdown)
        for address: UInt64 in [0x5000, 0x6000] {
            #expect(try bt.bus.memory.read(at: GuestPhysicalAddress(address), count: 32)
                    == interp.bus.memory.read(at: GuestPhysicalAddress(address), count: 32))
        }
        #expect(try bt.bus.memory.read(at: GuestPhysicalAddress(0x6010), count: 16) == btBytes(0x3333, 8) + btBytes(0x4444, 8),
                "the first compared equal and stored RCX:RBX")
        let ran = try #require(bt.executor).statistics.instructionsRun
        if rsi & 15 == 0 {
            #expect(bt.cpu.gpr[0] == 0xaaaa && bt.cpu.gpr[2] == 0xbbbb, "the second did not, and loaded RDX:RAX")
            #expect(bt.cpu.gpr[7] & 0x40 == 0, "ZF clear after the second")
            #expect(ran == 4, "all but HLT ran translated")
        } else {
            #expect(ran == 1, "the block stopped before the misaligned one")
            #expect(bt.machine.isShutdown, "whose #GP (no IDT here) shut the CPU down, as on interp")
        }
    }

    /// At CPL 0: lea rcx, [rip + 9] (user); mov r11d, 0x246; sysretq. User (0x1010): add eax, 5;
    /// syscall. LSTAR (0x1100): mov rbx, rcx; mov rdx, r11; pushfq; pop rsi; hlt.
    static let systemCallCode: [UInt8] = [
        0x48, 0x8d, 0x0d, 0x09, 0x00, 0x00, 0x00,        // lea rcx, [rip + 9]
        0x41, 0xbb, 0x46, 0x02, 0x00, 0x00,              // mov r11d, 0x246
        0x48, 0x0f, 0x07,                                // sysretq
        0x83, 0xc0, 0x05,                                // user: add eax, 5
        0x0f, 0x05,                                      // syscall
    ]
    static let systemCallHandler: [UInt8] = [0x48, 0x89, 0xcb, 0x4c, 0x89, 0xda, 0x9c, 0x5e, 0xf4]

    func prepareSystemCalls(_ h: BTHarness, enabled: Bool = true, cpl: UInt8 = 0, rcx: UInt64? = nil) throws {
        var code = Self.systemCallCode
        if let rcx {
            // mov rcx, imm64 instead of the LEA (the SYSRET faults: what follows is not reached).
            code = [0x48, 0xb9] + btBytes(rcx, 8) + Array(code[7...])
        }
        try h.load(code)
        try h.load(Self.systemCallHandler, at: 0x1100)
        if enabled { h.cpu.efer |= X86SystemBits.eferSCE }
        h.cpu.star = 0x0010_0008_0000_0000  // SYSCALL: CS 0x08, SS 0x10; SYSRET: CS 0x23, SS 0x1b
        h.cpu.lstar = 0x1100
        h.cpu.sfmask = 0x4_7700             // Linux's: AC, NT, IOPL, DF, IF, TF
        h.cpu.rflags |= 0x400               // DF, which SYSCALL's mask clears
        h.cpu.cpl = cpl
    }

    @Test("SYSRET and SYSCALL run translated through a callout, into the other level's code, as interp runs them")
    func systemCallAndReturn() throws {
        let interp = try BTHarness(translated: false)
        let bt = try BTHarness(translated: true)
        for h in [interp, bt] {
            try prepareSystemCalls(h)
            #expect(h.run() == .halted)
        }
        #expect(bt.cpu.gpr == interp.cpu.gpr)
        #expect(bt.cpu.rip == interp.cpu.rip)
        #expect(bt.cpu.rflags == interp.cpu.rflags)
        #expect(bt.cpu.cpl == 0 && interp.cpu.cpl == 0)
        for s in [X86CPU.cs, X86CPU.ss] {
            #expect(bt.cpu.segments[s] == interp.cpu.segments[s])
        }
        #expect(bt.cpu.segments[X86CPU.cs].selector == 0x08)
        #expect(bt.cpu.gpr[3] == 0x1015, "SYSCALL's RCX: the address after it")
        #expect(bt.cpu.gpr[2] == 0x206, "R11: the user's RFLAGS (IF, PF), as SYSRET set them and ADD left them")
        #expect(bt.cpu.gpr[6] & 0x600 == 0, "IF and DF masked on entry")
        let stats = try #require(bt.executor).statistics
        #expect(stats.systemCalls == 2)
        #expect(stats.instructionsRun == 9, "all but HLT ran translated")
        #expect(stats.entries == 1, "in one entry: each callout went on in the other level's code")
    }

    @Test("SYSCALL or SYSRET that fault stop the block: the interpreter raises the #UD or #GP",
          arguments: ["SYSRET, SYSCALL not enabled", "SYSRET at CPL 3", "SYSRET to a non-canonical RCX",
                      "SYSCALL not enabled"])
    func systemCallFaults(_ case: String) throws {
        let interp = try BTHarness(translated: false)
        let bt = try BTHarness(translated: true)
        for h in [interp, bt] {
            switch `case` {
            case "SYSRET, SYSCALL not enabled": try prepareSystemCalls(h, enabled: false)
            case "SYSRET at CPL 3": try prepareSystemCalls(h, cpl: 3)
            case "SYSRET to a non-canonical RCX": try prepareSystemCalls(h, rcx: 0x0000_8000_0000_0000)
            default:
                try prepareSystemCalls(h, enabled: false)
                h.cpu.rip = 0x1010  // the user code's ADD and SYSCALL, at CPL 0
            }
            _ = h.run(budget: 100)
        }
        #expect(bt.cpu.gpr == interp.cpu.gpr)
        #expect(bt.cpu.rip == interp.cpu.rip)
        #expect(bt.cpu.cpl == interp.cpu.cpl)
        #expect(bt.machine.isShutdown && interp.machine.isShutdown, "the fault (no IDT here) shut the CPU down")
        #expect(try #require(bt.executor).statistics.systemCalls == 0)
    }
}
