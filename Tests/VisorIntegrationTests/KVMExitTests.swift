// The kvm engine's exits, driven directly with a few hand-assembled instructions in 32-bit
// protected mode: string I/O split into one exit per element, port and MMIO reads completed
// by Visor, and HLT.

import Foundation
import Testing
import VisorCore
import VisorKVM

// The time limit guards against a hang, not a slow host: on a busy 2-core machine a test may
// wait minutes for one of Swift Testing's threads.
@Suite("kvm exits", .enabled(if: Host.kvmAvailable, Host.noKVM), .timeLimit(.minutes(5)))
struct KVMExitTests {
    static let code: [UInt8] = [
        0xbe, 0x00, 0x20, 0x00, 0x00,  // mov esi, 0x2000
        0xb9, 0x03, 0x00, 0x00, 0x00,  // mov ecx, 3
        0x66, 0xba, 0x80, 0x00,        // mov dx, 0x80
        0xfc,                          // cld
        0xf3, 0x6e,                    // rep outsb
        0xec,                          // in al, dx
        0xe6, 0x81,                    // out 0x81, al
        0xa1, 0x00, 0x00, 0x00, 0xd0,  // mov eax, [0xd0000000]
        0x40,                          // inc eax
        0xa3, 0x00, 0x00, 0x00, 0xd0,  // mov [0xd0000000], eax
        0xf4,                          // hlt
    ]

    static func protectedModeState(entry: UInt64) -> X86State {
        var s = X86State()
        s.cs = .flatCode(selector: 0x8, longMode: false)
        s.ds = .flatData(selector: 0x10); s.es = s.ds; s.ss = s.ds; s.fs = s.ds; s.gs = s.ds
        s.cr0 = X86.cr0ProtectionEnable | X86.cr0ExtensionType
        s.rip = entry
        s.rsp = 0x8000
        return s
    }

    @Test("rep outsb gives one exit per byte; reads are answered by Visor; MMIO and HLT exit")
    func exitSequence() throws {
        let memory = try GuestMemory(size: 1 << 20)
        try memory.write(Self.code, at: GuestPhysicalAddress(0x1000))
        try memory.write(Array("abc".utf8), at: GuestPhysicalAddress(0x2000))
        let machine = try KVMEngine().makeMachine(memory: memory, options: MachineOptions())
        let vcpu = try machine.makeVCPU(index: 0)
        try vcpu.setState(Self.protectedModeState(entry: 0x1000))

        var exits: [Exit] = []
        for _ in 0..<20 {
            let exit = try vcpu.run()
            exits.append(exit)
            switch exit {
            case .portRead: vcpu.completeRead(0x5a)
            case .mmioRead: vcpu.completeRead(0x1122_3344)
            default: break
            }
            if exit == .halt { break }
        }
        #expect(exits == [
            .portWrite(port: 0x80, size: 1, value: UInt32(UInt8(ascii: "a"))),
            .portWrite(port: 0x80, size: 1, value: UInt32(UInt8(ascii: "b"))),
            .portWrite(port: 0x80, size: 1, value: UInt32(UInt8(ascii: "c"))),
            .portRead(port: 0x80, size: 1),
            .portWrite(port: 0x81, size: 1, value: 0x5a),
            .mmioRead(address: GuestPhysicalAddress(0xd000_0000), size: 4),
            .mmioWrite(address: GuestPhysicalAddress(0xd000_0000), size: 4, value: 0x1122_3345),
            .halt,
        ])
        let state = try vcpu.state()
        #expect(state.rip == 0x1000 + UInt64(Self.code.count))
        #expect(state.rcx == 0)
    }

    @Test("requestStop from another thread makes run return .stopped")
    func stop() throws {
        let memory = try GuestMemory(size: 1 << 20)
        try memory.write([0xeb, 0xfe], at: GuestPhysicalAddress(0x1000))  // jmp $
        let machine = try KVMEngine().makeMachine(memory: memory, options: MachineOptions())
        let vcpu = try machine.makeVCPU(index: 0)
        try vcpu.setState(Self.protectedModeState(entry: 0x1000))
        let stopper = Thread { usleep(200_000); vcpu.requestStop() }
        stopper.start()
        #expect(try vcpu.run() == .stopped)
    }

    @Test("a vCPU kept in KVM_RUN at one instruction is reported as stalled, once, with RIP and the bytes")
    func stall() throws {
        let memory = try GuestMemory(size: 1 << 20)
        try memory.write([0xeb, 0xfe], at: GuestPhysicalAddress(0x1000))  // jmp $, with IF clear: no exit ever
        let machine = try KVMEngine().makeMachine(memory: memory, options: MachineOptions())
        let vcpu = try machine.makeVCPU(index: 0)
        try vcpu.setState(Self.protectedModeState(entry: 0x1000))
        // The watchdog kicks the vCPU out of KVM_RUN every quarter second or so; after a second
        // in KVM_RUN with RIP unchanged it is a stall. 200 returns bound the wait, not the time.
        var stopped = 0
        var report: String?
        while report == nil && stopped < 200 {
            switch try vcpu.run() {
            case .stopped: stopped += 1
            case .stalled(let r): report = r
            case let other: Issue.record("unexpected exit \(other)"); return
            }
        }
        let r = try #require(report)
        #expect(r.contains("vCPU 0 has made no exit for"))
        #expect(r.contains("rip 0x1000: eb fe"), "\(r)")
        #expect(r.contains("--engine interp"))
        // Two samples at the same RIP come first: the first returns as a plain kick. (How many
        // kicks come before the first sample depends on how late a loaded host delivers them:
        // one returned here once in a full run beside a busy loop.)
        #expect(stopped >= 1, "a first sample at this RIP came before the report")
        // Reported once: the next returns are plain kicks while it stays there.
        for _ in 0..<2 { #expect(try vcpu.run() == .stopped) }
    }

    @Test("32-bit paging, which this host cannot run, ends in a crash that names it and the engine that can")
    func thirtyTwoBitPaging() throws {
        let memory = try GuestMemory(size: 1 << 20)
        // A page directory at 0x3000 whose first entry maps the first 1 MiB through a page table
        // at 0x4000, identity.
        try memory.store(UInt32(0x4000 | 3), at: GuestPhysicalAddress(0x3000))
        for page in 0..<256 { try memory.store(UInt32(page * 4096 | 3), at: GuestPhysicalAddress(UInt64(0x4000 + page * 4))) }
        let code: [UInt8] = [
            0xb8, 0x00, 0x30, 0x00, 0x00,  // mov eax, 0x3000
            0x0f, 0x22, 0xd8,              // mov cr3, eax
            0x0f, 0x20, 0xc0,              // mov eax, cr0
            0x0d, 0x00, 0x00, 0x00, 0x80,  // or eax, 0x80000000
            0x0f, 0x22, 0xc0,              // mov cr0, eax
            0xf4,                          // hlt
        ]
        try memory.write(code, at: GuestPhysicalAddress(0x1000))
        let machine = try KVMEngine().makeMachine(memory: memory, options: MachineOptions())
        let vcpu = try machine.makeVCPU(index: 0)
        try vcpu.setState(Self.protectedModeState(entry: 0x1000))
        let exit = try vcpu.run()
        if KVMSystem.isPVMBackend {
            // Observed on this host: KVM_EXIT_SHUTDOWN as soon as CR0.PG is set.
            guard case .internalError(let message) = exit else { Issue.record("\(exit) \(try vcpu.state())"); return }
            #expect(message.contains("32-bit paging") && message.contains("--engine interp"), "\(message)")
        } else {
            #expect(exit == .halt)  // hardware-assisted KVM runs it
        }
    }

    @Test("the guest sees Visor's CPUID signature")
    func cpuid() throws {
        let memory = try GuestMemory(size: 1 << 20)
        let code: [UInt8] = [
            0xb8, 0x00, 0x00, 0x00, 0x40,  // mov eax, 0x40000000
            0x0f, 0xa2,                    // cpuid
            0xf4,                          // hlt
        ]
        try memory.write(code, at: GuestPhysicalAddress(0x1000))
        let machine = try KVMEngine().makeMachine(memory: memory, options: MachineOptions())
        let vcpu = try machine.makeVCPU(index: 0)
        try vcpu.setState(Self.protectedModeState(entry: 0x1000))
        #expect(try vcpu.run() == .halt)
        let s = try vcpu.state()
        #expect(s.rax == 0x4000_0010)
        #expect(s.rbx == 0x6f73_6956 && s.rcx == 0x7369_5672 && s.rdx == 0x4d56_726f)
    }
}
