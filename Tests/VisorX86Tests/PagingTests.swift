// Page walks with hand-built tables: 4 KiB / 2 MiB / 1 GiB pages, NX, WP, U/S, A/D bits,
// reserved bits, non-present entries at each level, tables outside RAM, TLB flush semantics.

import Testing
import VisorCore
@testable import VisorX86
import VisorX86Decode

/// PML4[1] (linear 0x80_0000_0000) → PDPT 0x20000 → PD 0x21000 → PT 0x22000.
struct PagingFixture {
    static let base: UInt64 = 0x80_0000_0000
    static let pdpt: UInt64 = 0x20000, pd: UInt64 = 0x21000, pt: UInt64 = 0x22000
    let s = SysMachine.longMode()
    var p: SysBus { s.bus }
    var m: X86Machine { s.machine }

    init(leaf: UInt64 = 0x30000 | 3, upper: UInt64 = 7) {
        p.w64(SysLayout.pml4 + 8, Self.pdpt | upper)
        p.w64(Self.pdpt, Self.pd | upper)
        p.w64(Self.pd, Self.pt | upper)
        p.w64(Self.pt, leaf)
    }

    func pf(_ linear: UInt64, _ kind: AccessKind, user: Bool = false) -> UInt32? {
        do { _ = try m.translate(linear, kind, user: user) } catch {
            if case .fault(let f) = error, f.vector == 14 {
                #expect(f.faultingAddress == linear)
                return f.errorCode
            }
        }
        return nil
    }
}

@Suite struct PagingTests {
    @Test func fourKilobytePageTranslatesAndSetsAccessedOnEveryLevel() throws {
        let f = PagingFixture()
        #expect(try f.m.translate(PagingFixture.base + 0x123, .read, user: false) == 0x30123)
        for entry in [SysLayout.pml4 + 8, PagingFixture.pdpt, PagingFixture.pd, PagingFixture.pt] {
            #expect(f.p.r64(entry) & 0x20 != 0, "A bit at \(entry)")
        }
        #expect(f.p.r64(PagingFixture.pt) & 0x40 == 0, "no D bit after a read")
        _ = try f.m.translate(PagingFixture.base + 8, .write, user: false)
        #expect(f.p.r64(PagingFixture.pt) & 0x40 != 0, "D bit after a write")
        #expect(f.p.r64(PagingFixture.pd) & 0x40 == 0, "D only on the leaf")
    }

    @Test func dirtyBitIsSetEvenWhenTheTranslationIsCachedByARead() throws {
        let f = PagingFixture()
        _ = try f.m.translate(PagingFixture.base, .read, user: false)
        #expect(f.p.r64(PagingFixture.pt) & 0x40 == 0)
        _ = try f.m.translate(PagingFixture.base, .write, user: false)
        #expect(f.p.r64(PagingFixture.pt) & 0x40 != 0)
    }

    @Test func twoMegabyteAndOneGigabytePages() throws {
        let f = PagingFixture()
        f.p.w64(PagingFixture.pd + 8, 0x20_0000 | 0x83)  // PD[1]: 2 MiB page
        #expect(try f.m.translate(PagingFixture.base + 0x20_0000 + 0x1_2345, .read, user: false) == 0x21_2345)
        f.p.w64(PagingFixture.pdpt + 8, 0x4000_0000 | 0x83)  // PDPT[1]: 1 GiB page
        #expect(try f.m.translate(PagingFixture.base + 0x4000_0000 + 0x123_4567, .write, user: false) == 0x4123_4567)
        #expect(f.p.r64(PagingFixture.pdpt + 8) & 0x60 == 0x60, "A and D on the 1 GiB leaf")
    }

    @Test func notPresentAtEachLevel() {
        for level in 0..<4 {
            let f = PagingFixture()
            let entry = [SysLayout.pml4 + 8, PagingFixture.pdpt, PagingFixture.pd, PagingFixture.pt][level]
            f.p.w64(entry, f.p.r64(entry) & ~1)
            #expect(f.pf(PagingFixture.base + 0x10, .read) == 0, "level \(level)")
            #expect(f.pf(PagingFixture.base + 0x10, .write) == 2)
            #expect(f.pf(PagingFixture.base + 0x10, .read, user: true) == 4)
            #expect(f.pf(PagingFixture.base + 0x10, .execute) == 0x10, "I/D with NXE and PAE")
        }
    }

    @Test func noExecute() {
        let f = PagingFixture(leaf: 0x30000 | 3 | (1 << 63))
        #expect(f.pf(PagingFixture.base, .execute) == 0x11)
        #expect(f.pf(PagingFixture.base, .read) == nil)
        f.m.cpu.efer &= ~X86SystemBits.eferNXE
        f.m.tlb.flush()
        #expect(f.pf(PagingFixture.base, .read) == 0x9, "XD without NXE is a reserved bit")
        // Without NXE, fetch faults report no I/D.
        f.p.w64(PagingFixture.pt, 0x30000 | 2)
        #expect(f.pf(PagingFixture.base, .execute) == 0)
    }

    @Test func writeProtect() throws {
        let f = PagingFixture(leaf: 0x30000 | 1 | 4)  // read-only user page
        #expect(f.pf(PagingFixture.base, .write) == 0x3, "supervisor write with WP=1")
        #expect(f.pf(PagingFixture.base, .write, user: true) == 0x7)
        f.m.cpu.cr0 &= ~X86SystemBits.cr0WP
        #expect(try f.m.translate(PagingFixture.base, .write, user: false) == 0x30000)
        #expect(f.pf(PagingFixture.base, .write, user: true) == 0x7, "WP never lets users write")
        // Read-only at an upper level counts too.
        let g = PagingFixture(leaf: 0x30000 | 3, upper: 5)
        #expect(g.pf(PagingFixture.base, .write) == 0x3)
    }

    @Test func userSupervisor() throws {
        let f = PagingFixture(leaf: 0x30000 | 3)  // supervisor page
        #expect(f.pf(PagingFixture.base, .read, user: true) == 0x5)
        #expect(f.pf(PagingFixture.base, .execute, user: true) == 0x15)
        let g = PagingFixture(leaf: 0x30000 | 7)  // user page: supervisor fetch allowed (no SMEP)
        #expect(try g.m.translate(PagingFixture.base, .execute, user: false) == 0x30000)
        let h = PagingFixture(leaf: 0x30000 | 7, upper: 3)  // supervisor at the PDPT/PD level
        #expect(h.pf(PagingFixture.base, .read, user: true) == 0x5)
    }

    @Test func reservedBits() {
        let f = PagingFixture(leaf: 0x30000 | 3 | (1 << 45))  // above MAXPHYADDR 40
        #expect(f.pf(PagingFixture.base, .read) == 0x9)
        #expect(f.pf(PagingFixture.base, .write, user: true) == 0xf)
        let g = PagingFixture()
        g.p.w64(PagingFixture.pd + 8, 0x20_0000 | 0x83 | 0x2000)  // 2 MiB page with bit 13
        #expect(g.pf(PagingFixture.base + 0x20_0000, .read) == 0x9)
        let h = PagingFixture()
        h.p.w64(SysLayout.pml4 + 8, PagingFixture.pdpt | 7 | 0x80)  // PS in a PML4E
        #expect(h.pf(PagingFixture.base, .read) == 0x9)
    }

    @Test func pageTablesOutsideRAMGiveACleanFault() {
        let f = PagingFixture()
        f.p.w64(PagingFixture.pd, 0xf000_0000 | 7)  // PT beyond the 4 MiB of RAM
        #expect(f.pf(PagingFixture.base, .read) == 0x9, "outside RAM reads as all ones: reserved bits")
        f.m.cpu.cr3 = 0xff_ffff_f000
        f.m.tlb.flush()
        #expect(f.pf(0x1000, .read) == 0x9)
    }

    @Test func tlbKeepsAStaleTranslationUntilInvlpgOrCR3Write() throws {
        let f = PagingFixture()
        f.p.w64(0x30000, 0x1111)
        f.p.w64(0x31000, 0x2222)
        #expect(try f.m.readLinear(PagingFixture.base, size: 8) == 0x1111)
        f.p.w64(PagingFixture.pt, 0x31000 | 3)
        #expect(try f.m.readLinear(PagingFixture.base, size: 8) == 0x1111, "stale before INVLPG")
        try f.m.execute(sysInsn(.invlpg, .memory(size: 1), length: 3,
                                memory: MemoryOperand(displacement: Int64(PagingFixture.base))))
        #expect(try f.m.readLinear(PagingFixture.base, size: 8) == 0x2222, "fresh after INVLPG")
        f.p.w64(PagingFixture.pt, 0x30000 | 3)
        #expect(try f.m.readLinear(PagingFixture.base, size: 8) == 0x2222)
        f.m.cpu.gpr[0] = SysLayout.pml4
        try f.m.execute(sysInsn(.movControl, Operand(.control, index: 3, size: 8), .register(0, size: 8)))
        #expect(try f.m.readLinear(PagingFixture.base, size: 8) == 0x1111, "fresh after MOV CR3")
    }

    @Test func movCR3KeepsGlobalTranslationsOnlyWithCR4PGE() throws {
        // Two pages, one global (G, bit 8), remapped behind the TLB's back; MOV CR3 of the same
        // value drops the other, keeps the global one while CR4.PGE is set, and a CR4.PGE
        // toggle drops it too (SDM Vol. 3A 4.10.4.1).
        let f = PagingFixture(leaf: 0x30000 | 0x103)
        f.p.w64(PagingFixture.pt + 8, 0x31000 | 3)
        f.p.w64(0x30000, 0x1111); f.p.w64(0x31000, 0x2222); f.p.w64(0x32000, 0x3333)
        f.m.cpu.cr4 |= X86SystemBits.cr4PGE
        f.m.tlb.flush()
        #expect(try f.m.readLinear(PagingFixture.base, size: 8) == 0x1111)
        #expect(try f.m.readLinear(PagingFixture.base + 0x1000, size: 8) == 0x2222)
        f.p.w64(PagingFixture.pt, 0x32000 | 0x103)
        f.p.w64(PagingFixture.pt + 8, 0x32000 | 3)
        let moveCR3 = sysInsn(.movControl, Operand(.control, index: 3, size: 8), .register(0, size: 8))
        f.m.cpu.gpr[0] = SysLayout.pml4
        try f.m.execute(moveCR3)
        #expect(try f.m.readLinear(PagingFixture.base, size: 8) == 0x1111, "the global page's translation kept")
        #expect(try f.m.readLinear(PagingFixture.base + 0x1000, size: 8) == 0x3333, "the other one walked again")
        // Without CR4.PGE nothing is global: MOV CR3 drops it all.
        f.m.cpu.gpr[0] = f.m.cpu.cr4 & ~X86SystemBits.cr4PGE
        try f.m.execute(sysInsn(.movControl, Operand(.control, index: 4, size: 8), .register(0, size: 8)))
        #expect(try f.m.readLinear(PagingFixture.base, size: 8) == 0x3333, "a CR4.PGE change flushes global pages")
        f.p.w64(PagingFixture.pt, 0x30000 | 0x103)
        f.m.cpu.gpr[0] = SysLayout.pml4
        try f.m.execute(moveCR3)
        #expect(try f.m.readLinear(PagingFixture.base, size: 8) == 0x1111, "G without CR4.PGE is not global")
    }

    @Test func thirtyTwoBitAndPAEPaging() throws {
        let p = SysBus()
        let m = X86Machine(bus: p)
        m.cpu.cr0 = X86SystemBits.cr0PE | X86SystemBits.cr0PG | X86SystemBits.cr0WP
        m.cpu.cr3 = 0x10000
        // 32-bit: PDE[1] → PT 0x11000; PTE[2] → 0x30000. Linear 0x402123.
        p.w32(0x10000 + 4, 0x11000 | 3)
        p.w32(0x11000 + 8, 0x30000 | 3)
        #expect(try m.translate(0x40_2123, .read, user: false) == 0x30123)
        #expect(p.r32(0x11000 + 8) & 0x20 != 0)
        // 4 MiB page with PSE.
        m.cpu.cr4 = X86SystemBits.cr4PSE
        p.w32(0x10000 + 8, 0x0040_0000 | 0x83)
        m.tlb.flush()
        #expect(try m.translate(0x80_1234, .read, user: false) == 0x40_1234)
        // PAE: PDPT at CR3, PDPTE[0] → PD 0x12000, PDE[1] → 2 MiB page at 0x200000.
        m.cpu.cr4 = X86SystemBits.cr4PAE
        m.cpu.cr3 = 0x13000
        p.w64(0x13000, 0x12000 | 1)
        p.w64(0x12000 + 8, 0x20_0000 | 0x83)
        m.tlb.flush()
        #expect(try m.translate(0x20_0042, .read, user: false) == 0x20_0042)
        p.w64(0x13000 + 8, 0x12000 | 1 | 2)  // R/W is reserved in a PAE PDPTE
        #expect(throws: X86Interruption.self) { try m.translate(0x4000_0000, .read, user: false) }
    }

    @Test func pageFaultDeliverySetsCR2AndPushesTheErrorCode() {
        let f = PagingFixture(leaf: 0x30000 | 1)
        f.s.gate(14, handler: 0x10_2000)
        let rsp = f.m.cpu.gpr[X86CPU.rsp]
        #expect(f.m.raise(.pf(3, address: PagingFixture.base + 0x44)))
        #expect(f.m.cpu.cr2 == PagingFixture.base + 0x44)
        #expect(f.m.cpu.rip == 0x10_2000)
        #expect(f.p.r64(rsp - 48) == 3, "error code on top of the frame")
        // A write through the machine faults with the same code.
        #expect(f.s.fault { try f.m.writeLinear(PagingFixture.base, size: 4, value: 1) } == .pf(3, address: PagingFixture.base))
    }
}
