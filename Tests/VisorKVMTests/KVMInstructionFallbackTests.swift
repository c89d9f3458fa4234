// The kvm engine's fallback for instructions the host kernel cannot emulate, without /dev/kvm:
// a register snapshot and RAM in, registers (and RAM) out, as `KVMVirtualCPU` uses it.

import Testing
import VisorCore
@testable import VisorKVM

/// 32-bit protected mode without paging: code at 0x1000, an IDT at 0x2000 whose gates point at
/// 0x3000 + vector * 16, a GDT at 0x4000 (flat code 0x08, flat data 0x10), the stack below 0x8000.
struct FallbackFixture {
    let memory: GuestMemory
    var state = X86State()

    init(code: [UInt8]) throws {
        memory = try GuestMemory(size: 1 << 20)
        try memory.write(code, at: GuestPhysicalAddress(0x1000))
        for vector in 0..<256 {
            let handler = UInt32(0x3000 + vector * 16)
            let gate: [UInt8] = [UInt8(handler & 0xff), UInt8(handler >> 8 & 0xff), 0x08, 0x00,
                                 0x00, 0x8e, UInt8(handler >> 16 & 0xff), UInt8(handler >> 24)]
            try memory.write(gate, at: GuestPhysicalAddress(UInt64(0x2000 + vector * 8)))
        }
        for (i, descriptor) in [UInt64(0), 0x00cf_9a00_0000_ffff, 0x00cf_9200_0000_ffff].enumerated() {
            try memory.store(descriptor, at: GuestPhysicalAddress(UInt64(0x4000 + i * 8)))
        }
        state.gdtr = DescriptorTableRegister(base: 0x4000, limit: 3 * 8 - 1)
        state.cr0 = X86.cr0ProtectionEnable | X86.cr0ExtensionType
        state.cs = .flatCode(selector: 0x08, longMode: false)
        state.ss = .flatData(selector: 0x10)
        state.ds = .flatData(selector: 0x10)
        state.es = .flatData(selector: 0x10)
        state.idtr = DescriptorTableRegister(base: 0x2000, limit: 256 * 8 - 1)
        state.rip = 0x1000
        state.rsp = 0x8000
    }

    func run(leaf7EBX: UInt32 = 0) -> KVMInstructionFallback.Outcome {
        let cpuid = CPUIDTable(hostSupported: [CPUIDEntry(function: 0, eax: 7),
                                               CPUIDEntry(function: 7, index: 0, indexSignificant: true, ebx: leaf7EBX)])
        return KVMInstructionFallback(memory: memory, cpuid: cpuid, apicID: 0).execute(state)
    }

    func stackWord(_ offset: UInt64) throws -> UInt32 {
        try memory.load(UInt32.self, at: GuestPhysicalAddress(0x8000 - 12 + offset))
    }
}

let smapBit: UInt32 = 1 << 20
let acFlag: UInt64 = 1 << 18

@Suite struct KVMInstructionFallbackTests {
    @Test func clacClearsACWhenSMAPIsOffered() throws {
        var f = try FallbackFixture(code: [0x0f, 0x01, 0xca])
        f.state.rflags |= acFlag
        guard case .done(let after, let name) = f.run(leaf7EBX: smapBit) else { Issue.record("\(f.run(leaf7EBX: smapBit))"); return }
        #expect(name == "clac")
        #expect(after.rip == 0x1003)
        #expect(after.rflags & acFlag == 0)
    }

    @Test func stacSetsACWhenSMAPIsOffered() throws {
        let f = try FallbackFixture(code: [0x0f, 0x01, 0xcb])
        guard case .done(let after, _) = f.run(leaf7EBX: smapBit) else { Issue.record("\(f.run(leaf7EBX: smapBit))"); return }
        #expect(after.rip == 0x1003)
        #expect(after.rflags & acFlag != 0)
    }

    @Test func clacWithoutSMAPDeliversInvalidOpcode() throws {
        let f = try FallbackFixture(code: [0x0f, 0x01, 0xca])
        guard case .done(let after, let name) = f.run() else { Issue.record("\(f.run())"); return }
        #expect(name == "clac fault")
        #expect(after.rip == 0x3000 + 6 * 16)
        #expect(try f.stackWord(0) == 0x1000)  // the fault's EIP: the instruction itself
    }

    @Test func rdpruNotOfferedDeliversInvalidOpcode() throws {
        let f = try FallbackFixture(code: [0x0f, 0x01, 0xfd])
        guard case .done(let after, let name) = f.run() else { Issue.record("\(f.run())"); return }
        #expect(name == "rdpru #UD")
        #expect(after.rip == 0x3000 + 6 * 16)
    }

    @Test func xgetbvWithOSXSAVEClearDeliversInvalidOpcode() throws {
        let f = try FallbackFixture(code: [0x0f, 0x01, 0xd0])
        guard case .done(let after, let name) = f.run() else { Issue.record("\(f.run())"); return }
        #expect(name == "xgetbv #UD")
        #expect(after.rip == 0x3000 + 6 * 16)
    }

    @Test func xgetbvWithOSXSAVESetIsRefused() throws {
        var f = try FallbackFixture(code: [0x0f, 0x01, 0xd0])
        f.state.cr4 |= 1 << 18
        guard case .refused(let reason) = f.run() else { Issue.record("\(f.run())"); return }
        #expect(reason.contains("0f 01 d0"))
    }

    @Test func int3DeliversBreakpointWithEIPAfterIt() throws {
        let f = try FallbackFixture(code: [0xcc])
        guard case .done(let after, let name) = f.run() else { Issue.record("\(f.run())"); return }
        #expect(name == "int3")
        #expect(after.rip == 0x3000 + 3 * 16)
        #expect(try f.stackWord(0) == 0x1001)
    }

    @Test func intNDeliversItsVector() throws {
        let f = try FallbackFixture(code: [0xcd, 0x80])
        guard case .done(let after, let name) = f.run() else { Issue.record("\(f.run())"); return }
        #expect(name == "int")
        #expect(after.rip == 0x3000 + 0x80 * 16)
        #expect(try f.stackWord(0) == 0x1002)
    }

    @Test func portAccessIsRefusedAndNothingChanges() throws {
        let f = try FallbackFixture(code: [0xec])  // in al, dx
        guard case .refused(let reason) = f.run() else { Issue.record("\(f.run())"); return }
        #expect(reason.contains("rip 0x1000: ec"))
    }

    @Test func codeOutsideRAMIsRefused() throws {
        var f = try FallbackFixture(code: [])
        f.state.rip = 0xfff0_0000
        guard case .refused = f.run() else { Issue.record("\(f.run())"); return }
    }

    @Test func aTripleFaultIsAShutdown() throws {
        var f = try FallbackFixture(code: [0xcc])
        f.state.idtr = DescriptorTableRegister(base: 0, limit: 0)
        #expect(f.run() == .shutdown)
    }
}
