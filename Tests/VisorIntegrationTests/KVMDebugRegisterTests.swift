// The kvm engine keeps a vCPU's debug registers in its engine-neutral state: KVM holds them
// (KVM_GET/SET_DEBUGREGS), and `state()` / `setState()` carry them, so nothing that reads and
// writes a vCPU's registers (a snapshot, an instruction carried out by Visor's own CPU) loses a
// guest's breakpoints or DR6.

import Testing
import VisorCore
import VisorKVM

@Suite("kvm debug registers", .enabled(if: Host.kvmAvailable, Host.noKVM), .timeLimit(.minutes(5)))
struct KVMDebugRegisterTests {
    @Test("DR0-DR3, DR6 and DR7 go through setState and state, and the guest reads them")
    func roundTrip() throws {
        let memory = try GuestMemory(size: 1 << 20)
        // mov eax, dr7; hlt (32-bit protected mode, CPL0)
        try memory.write([0x0f, 0x21, 0xf8, 0xf4], at: GuestPhysicalAddress(0x1000))
        let machine = try KVMEngine().makeMachine(memory: memory, options: MachineOptions())
        let vcpu = try machine.makeVCPU(index: 0)
        var s = KVMExitTests.protectedModeState(entry: 0x1000)
        s.dr0 = 0x1234; s.dr1 = 0x5678; s.dr2 = 0x9abc; s.dr3 = 0x8_0000
        s.dr6 = 0xffff_4ff1; s.dr7 = 0x0003_0402  // G0 with R/W0 = 11 at 0x1234: nothing touches it
        try vcpu.setState(s)
        let back = try vcpu.state()
        #expect([back.dr0, back.dr1, back.dr2, back.dr3] == [0x1234, 0x5678, 0x9abc, 0x8_0000])
        #expect(back.dr6 & 0xffff_ffff == 0xffff_4ff1)
        #expect(back.dr7 == 0x0003_0402)
        #expect(try vcpu.run() == .halt)
        let after = try vcpu.state()
        #expect(after.rax & 0xffff_ffff == 0x0003_0402, "the guest's MOV from DR7 reads what was set")
        try vcpu.setState(after)
        #expect(try vcpu.state().dr7 == 0x0003_0402, "a state round trip keeps DR7")
    }
}
