// x87/MMX/SSE behaviour the differential tests cannot reach because the host runs them at CPL3
// under Linux: the CR0/CR4 availability checks, #XM versus #UD, #MF delivered through the IDT,
// FXSAVE outside 64-bit mode, and the FNSTENV layouts of the other modes. Instructions are
// given as bytes and go through the real decoder.

import Testing
import VisorCore
@testable import VisorX86
import VisorX86Decode

extension Harness {
    /// Decodes `bytes` at RIP and executes them; the fault, or nil.
    func execute(_ bytes: [UInt8]) -> X86Fault? {
        for (i, b) in bytes.enumerated() { store8(b, at: cpu.rip + UInt64(i)) }
        guard case .instruction(let insn) = Decoder.decode(bytes, mode: cpu.codeMode) else { return .undefined }
        return fault(insn)
    }
}

@Suite("x87, MMX and SSE: what the host cannot show")
struct FPUnitTests {
    static let cr0MP: UInt64 = 1 << 1, cr0EM: UInt64 = 1 << 2, cr0TS: UInt64 = 1 << 3

    @Test func sseNeedsOSFXSRAndNoEmulation() {
        let h = Harness()
        let addps: [UInt8] = [0x0f, 0x58, 0xc1]
        h.cpu.cr4 = 0
        #expect(h.execute(addps) == .undefined)
        h.cpu.cr4 = X86.cr4OSFXSR
        h.cpu.cr0 |= Self.cr0EM
        #expect(h.execute(addps) == .undefined)
        h.cpu.cr0 = h.cpu.cr0 & ~Self.cr0EM | Self.cr0TS
        #expect(h.execute(addps) == .deviceNotAvailableFault)
        h.cpu.cr0 &= ~Self.cr0TS
        #expect(h.execute(addps) == nil)
    }

    @Test func mmxNeedsNoEmulationButNotOSFXSR() {
        let h = Harness()
        let paddb: [UInt8] = [0x0f, 0xfc, 0xc1]
        h.cpu.cr4 = 0
        #expect(h.execute(paddb) == nil)
        #expect(h.cpu.ftw == 0xff && h.cpu.fsw & 0x3800 == 0, "the x87-to-MMX transition")
        h.cpu.cr0 |= Self.cr0EM
        #expect(h.execute(paddb) == .undefined)
        h.cpu.cr0 = h.cpu.cr0 & ~Self.cr0EM | Self.cr0TS
        #expect(h.execute(paddb) == .deviceNotAvailableFault)
        h.cpu.cr0 &= ~Self.cr0TS
        h.cpu.fcw = 0x037e; h.cpu.fsw = 0x0001  // IE flagged and unmasked: pending
        h.machine.updateErrorSummary()
        #expect(h.execute(paddb) == .x87FloatingPoint)
    }

    @Test func x87AndFWAITAvailability() {
        let h = Harness()
        let fadd: [UInt8] = [0xd8, 0xc1], fwait: [UInt8] = [0x9b]
        h.cpu.cr0 |= Self.cr0EM
        #expect(h.execute(fadd) == .deviceNotAvailableFault)
        #expect(h.execute(fwait) == nil, "FWAIT ignores EM")
        h.cpu.cr0 = h.cpu.cr0 & ~Self.cr0EM | Self.cr0TS
        #expect(h.execute(fadd) == .deviceNotAvailableFault)
        #expect(h.execute(fwait) == nil, "TS alone does not stop FWAIT")
        h.cpu.cr0 |= Self.cr0MP
        #expect(h.execute(fwait) == .deviceNotAvailableFault, "MP and TS do")
    }

    @Test func unmaskedSIMDExceptionIsXMOrUD() {
        let h = Harness()
        let divss: [UInt8] = [0xf3, 0x0f, 0x5e, 0xc1]  // divss xmm0, xmm1
        h.cpu.xmm[0] = (0x3f80_0000, 0)  // 1.0
        h.cpu.xmm[1] = (0, 0)            // 0.0
        h.cpu.mxcsr = 0x1f80 & ~(1 << 9)  // divide by zero unmasked
        h.cpu.cr4 = X86.cr4OSFXSR | X86.cr4OSXMMEXCPT
        #expect(h.execute(divss) == .simdFloatingPoint)
        #expect(h.cpu.mxcsr & 4 != 0 && h.cpu.xmm[0].low == 0x3f80_0000)
        h.cpu.cr4 = X86.cr4OSFXSR
        #expect(h.execute(divss) == .undefined, "#UD while the OS has not enabled #XM")
        h.cpu.mxcsr |= 1 << 9
        #expect(h.execute(divss) == nil)
        #expect(h.cpu.xmm[0].low == 0x7f80_0000, "masked: +infinity")
    }

    /// An unmasked x87 exception waits for the next waiting x87 instruction, which delivers #MF
    /// through the IDT with the RIP of that instruction; a no-wait instruction in between runs.
    @Test func pendingX87ExceptionIsDeliveredThroughTheIDT() throws {
        let s = SysMachine.longMode()
        let handler: UInt64 = 0x10_1000
        s.gate(Int(X86Fault.x87Error), handler: handler)
        s.bus.bytes(handler, [0xf4])  // hlt
        s.bus.w16(0x5000, 0x037b)     // control word: divide by zero unmasked
        let code: [UInt8] = [
            0xd9, 0x2c, 0x25, 0x00, 0x50, 0x00, 0x00,  // fldcw [0x5000]
            0xd9, 0xe8,                                // fld1
            0xd9, 0xee,                                // fldz
            0xde, 0xf9,                                // fdivp st1, st0: 1 / 0
            0xdf, 0xe0,                                // fnstsw ax (no wait)
            0xd9, 0xd0,                                // fnop: delivers #MF
        ]
        s.bus.bytes(SysLayout.code, code)
        for _ in 0..<5 { #expect(s.machine.step() == nil) }
        #expect(s.cpu.gpr[0] & 0x80 != 0, "ES is visible to FNSTSW before #MF is taken")
        #expect(s.machine.step() == nil)  // the fnop raises #MF, delivered
        #expect(s.cpu.rip == handler)
        let pushedRIP = s.bus.r64(s.cpu.gpr[X86CPU.rsp])
        #expect(pushedRIP == SysLayout.code + 15, "the fault points at the waiting instruction")
        #expect(s.cpu.fop == 0x6f9 && s.cpu.fip == SysLayout.code + 11, "FOP/FIP name the FDIVP")
    }

    @Test func fxsaveChecksAlignmentAndSavesEightRegistersOutsideLongMode() throws {
        let h = Harness(mode: .bits32)
        h.cpu.gpr[3] = 0x2008
        let fxsave: [UInt8] = [0x0f, 0xae, 0x03]  // fxsave [ebx]
        #expect(h.execute(fxsave) == .gp(0))
        h.cpu.gpr[3] = 0x2000
        h.cpu.cr0 |= Self.cr0TS
        #expect(h.execute(fxsave) == .deviceNotAvailableFault)
        h.cpu.cr0 &= ~Self.cr0TS
        for i in 0..<16 { h.cpu.xmm[i] = (UInt64(i) + 1, UInt64(i) + 1) }
        for offset in stride(from: 0x2000, to: 0x2200, by: 8) { h.store64(0xaaaa_aaaa_aaaa_aaaa, at: UInt64(offset)) }
        #expect(h.execute(fxsave) == nil)
        #expect(h.load64(0x2000 + 160 + 16 * 7) == 8, "XMM7 saved")
        #expect(h.load64(0x2000 + 160 + 16 * 8) == 0xaaaa_aaaa_aaaa_aaaa, "XMM8 does not exist here")
        #expect(h.load32(0x2000 + 28) == 0xffff, "MXCSR_MASK")
    }

    /// A store that would cross into an unmapped page faults before writing anything.
    @Test func wideStoresFaultBeforeWritingAnything() throws {
        let s = SysMachine.longMode()  // identity-maps the first 4 MiB only
        let area: UInt64 = 0x40_0000 - 0x100
        for i in stride(from: UInt64(0), to: 0x100, by: 8) { s.bus.w64(area + i, 0x5555_5555_5555_5555) }
        s.cpu.gpr[3] = area
        func run(_ bytes: [UInt8]) -> X86Fault? {
            guard case .instruction(let insn) = Decoder.decode(bytes, mode: .bits64) else { return .undefined }
            return s.fault { try s.machine.execute(insn) }
        }
        let fxsave = run([0x0f, 0xae, 0x03])        // fxsave [rbx]: 416 bytes from 0x3fff00
        #expect(fxsave?.vector == X86Fault.pageFault && fxsave?.faultingAddress == 0x40_0000)
        let fnsave = run([0xdd, 0x33])              // fnsave [rbx]: 108 bytes
        s.cpu.gpr[3] = area + 0xf0
        let fnstenv = run([0xd9, 0x33])             // fnstenv [rbx]: 28 bytes from 0x3ffff0
        #expect(fnsave == nil, "108 bytes fit below the boundary")
        #expect(fnstenv?.vector == X86Fault.pageFault)
        for i in stride(from: UInt64(0xf0), to: 0x100, by: 8) {
            #expect(s.bus.r64(area + i) == 0x5555_5555_5555_5555, "byte \(i) was written")
        }
        #expect(s.cpu.fcw == 0x037f && s.cpu.ftw == 0, "FNSAVE reinitialized the FPU; the failed FNSTENV changed nothing")
    }

    /// FNSTENV in real-address mode stores linear 20-bit pointers split around the opcode.
    @Test func fnstenvRealModeLayout() throws {
        let h = Harness(mode: .bits16)
        h.cpu.segments[X86CPU.cs] = SegmentRegister(selector: 0x1000, base: 0x1_0000, limit: 0xffff, type: 0xb)
        h.cpu.rip = 0x0100
        h.cpu.fcw = 0x037f
        let fldz: [UInt8] = [0xd9, 0xee]
        for (i, b) in fldz.enumerated() { h.store8(b, at: 0x1_0100 + UInt64(i)) }
        guard case .instruction(let load) = Decoder.decode(fldz, mode: .bits16) else { Issue.record("decode"); return }
        try h.run(load)
        h.cpu.gpr[3] = 0x3000
        let fnstenv: [UInt8] = [0xd9, 0x37]  // fnstenv [bx] (16-bit format)
        h.cpu.rip = 0x0200
        #expect(h.execute(fnstenv) == nil)
        #expect(h.load16(0x3000) == 0x037f)
        #expect(h.load16(0x3006) == 0x0100, "FIP bits 15:0 of the linear address 0x10100")
        #expect(h.load16(0x3008) == (1 << 12 | 0x1ee), "FIP bits 19:16, then FOP")
    }
}
