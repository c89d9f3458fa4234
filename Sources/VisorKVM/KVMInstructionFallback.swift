// What the kvm engine does when the host kernel gives up on an instruction.
//
// On hosts where KVM emulates guest kernel code itself (the PVM backend runs guest CPL0 code
// through the kernel's instruction emulator), KVM_RUN ends with KVM_EXIT_INTERNAL_ERROR /
// KVM_INTERNAL_ERROR_EMULATION for instructions that emulator does not know: CLWB, RDPRU,
// XGETBV with CR4.OSXSAVE clear, CLAC/STAC, INVPCID, INT3 and INT n at CPL0. Hardware would run
// them or raise an exception, so Visor does: its software CPU (`X86Machine`, the `interp`
// engine's) runs that one instruction on a snapshot of the vCPU's registers over the guest's
// RAM (through the guest's own page tables), with the CPUID the kvm vCPU offers, and the
// resulting registers go back into the vCPU. An exception the instruction raises (#UD for an
// instruction CPUID does not offer, #PF, #GP, INT3's #BP, INT n's vector) is delivered by the
// software CPU through the guest's IDT exactly as on `interp`, so the vCPU resumes in the
// handler with the frame already pushed: no second trip through the host's emulator.
//
// Only instructions whose whole effect is in `X86State` and RAM are carried out: those listed
// in `carriedOut`, and, where the decoder knows no such instruction, the encodings in
// `notOffered` when the vCPU's CPUID (or CR4) says they raise #UD. Anything else (an instruction
// that would need MSRs, XCR0, ports, MMIO or state `X86State` does not hold) is refused, and
// the domain crashes with a message naming the bytes, as before — never a host trap: the
// software CPU bounds-checks every guest address itself.
//
// Departures (documented): CLAC/STAC run when Visor's CPUID table offers SMAP or CR4.SMAP is
// set; a host that shows the guest SMAP in a leaf 7 of its own (KVM's PVM backend does) while
// CR4.SMAP is clear gets #UD for them from the fallback. The snapshot has no interrupt shadow, pending event, debug
// registers or TF single-step, so an emulated instruction right after STI / MOV SS, or under
// TF, behaves as if none were in effect; SMEP/SMAP/PKE are not checked on the stack writes of
// an INT n's delivery (the software CPU implements none of them).

import VisorCore
import VisorX86
import VisorX86Decode

/// Runs one instruction the host could not emulate on Visor's software CPU.
struct KVMInstructionFallback {
    /// What became of the instruction.
    enum Outcome: Equatable {
        /// Carried out (or its exception delivered); `state` is the vCPU's registers after it.
        case done(state: X86State, instruction: String)
        /// Delivering an exception triple-faulted: the vCPU shuts down.
        case shutdown
        /// Not something the fallback may carry out; the reason names it.
        case refused(String)
    }

    let memory: GuestMemory
    let cpuid: CPUIDTable
    /// The vCPU's initial APIC ID (CPUID leaf 1 EBX[31:24]), as the kvm vCPU reports it.
    let apicID: UInt32

    /// Operations whose whole effect is on `X86State` and RAM, so the software CPU may run them
    /// for a kvm vCPU. (CLWB/CLFLUSH check the address only; CLAC/STAC change RFLAGS.AC;
    /// INT n/INT3/INTO/INT1 deliver through the IDT; far JMP/CALL and IRET read descriptors and
    /// TSSes from RAM and load segments, TR, LDTR and CR3: the host cannot emulate hardware task
    /// switches. IRET also ends NMI blocking, which the caller passes on to KVM.)
    static let carriedOut: Set<Operation> = [.int, .int3, .into, .int1, .clac, .stac, .clwb, .clflush,
                                             .jmpFar, .callFar, .iret]

    /// Operations the host is known to spin on without exiting (see `KVMStallWatchdog`): carried
    /// out only for a vCPU found stalled on one. (VMCALL and VMMCALL are not in the decoder's
    /// table at all, so they come through `notOffered` as #UD, which they raise outside VMX/SVM
    /// operation.)
    static let carriedOutWhenStalled: Set<Operation> = [.rdpmc]

    /// Runs the instruction at `state`'s CS:RIP. `stalled`: the host kept the vCPU at it without
    /// exiting, which admits `carriedOutWhenStalled` as well.
    func execute(_ state: X86State, stalled: Bool = false) -> Outcome {
        let (machine, bus) = softwareCPU(at: state)
        let name: String
        do {
            let insn = try machine.fetchInstruction()
            guard Self.carriedOut.contains(insn.operation)
                || (stalled && Self.carriedOutWhenStalled.contains(insn.operation)) else {
                return .refused("Visor does not carry out \(insn.operation) for the kvm engine (\(bytesAtRIP(machine)))")
            }
            name = "\(insn.operation)"
        } catch {
            // Fetch and decode raise what they raise; the step below raises it again and
            // delivers it. #UD is right only for an encoding that is not offered.
            guard case .fault(let fault) = error else {
                return .refused("fetching the instruction needed the hypervisor (\(bytesAtRIP(machine)))")
            }
            if fault.vector == X86Fault.invalidOpcode {
                guard let instruction = notOffered(machine) else {
                    return .refused("an instruction Visor's CPU does not know (\(bytesAtRIP(machine)))")
                }
                name = "\(instruction) #UD"
            } else {
                name = "fetch #\(fault.vector)"
            }
        }
        switch machine.step() {
        case nil:
            break
        case .shutdown?:
            return .shutdown
        case let other?:
            return .refused("Visor's CPU stopped with \(other) (\(bytesAtRIP(machine)))")
        }
        if let refusal = bus.refusal {
            return .refused("\(refusal) (\(bytesAtRIP(machine)))")
        }
        // A decoded instruction that raised an exception instead of retiring (CLAC without SMAP,
        // CLWB on an unmapped line) is counted apart from one that ran.
        if machine.instructionsRetired == 0 && !name.hasSuffix("#UD") && !name.hasPrefix("fetch") {
            return .done(state: machine.cpu.state, instruction: name + " fault")
        }
        return .done(state: machine.cpu.state, instruction: name)
    }

    /// The name of the instruction at RIP when it is one the host cannot emulate, the decoder
    /// does not know, and the vCPU does not offer (so #UD is what hardware raises); else nil.
    private func notOffered(_ machine: X86Machine) -> String? {
        guard let bytes = instructionBytes(machine) else { return nil }
        // Legacy prefixes that do not change these encodings' meaning (segment, address size),
        // the operand-size prefix (recorded: INVPCID needs it, the others must not have it), REX.
        var i = 0, operandSizePrefix = false
        while i < bytes.count {
            let b = bytes[i]
            if b == 0x66 { operandSizePrefix = true } else if [0x26, 0x2e, 0x36, 0x3e, 0x64, 0x65, 0x67].contains(b) {
            } else if machine.cpu.codeMode == .bits64 && b & 0xf0 == 0x40 {
            } else { break }
            i += 1
        }
        let opcode = Array(bytes[i...].prefix(4))
        let leaf7 = cpuid.lookup(function: 7, index: 0)
        let extended = cpuid.lookup(function: 0x8000_0000, index: 0).eax >= 0x8000_0008
            ? cpuid.lookup(function: 0x8000_0008, index: 0) : CPUIDEntry(function: 0x8000_0008)
        // VMCALL and VMMCALL: #UD outside VMX non-root / SVM guest operation, which is where a
        // guest of Visor's always is (it offers neither VMX nor SVM).
        if opcode.starts(with: [0x0f, 0x01, 0xc1]) { return "vmcall" }
        if opcode.starts(with: [0x0f, 0x01, 0xd9]) { return "vmmcall" }
        if opcode.starts(with: [0x0f, 0x01, 0xfd]) && !operandSizePrefix {
            return extended.ebx >> 4 & 1 == 0 ? "rdpru" : nil
        }
        if opcode.starts(with: [0x0f, 0x01, 0xd0]) && !operandSizePrefix {
            // XGETBV raises #UD while CR4.OSXSAVE is clear; with it set it reads XCR0, which
            // the snapshot does not hold.
            return machine.cpu.cr4 & (1 << 18) == 0 ? "xgetbv" : nil
        }
        if opcode.count == 4, opcode.starts(with: [0x0f, 0x38, 0x82]) && operandSizePrefix && opcode[3] >> 6 != 3 {
            return leaf7.ebx >> 10 & 1 == 0 ? "invpcid" : nil
        }
        return nil
    }

    /// Up to 15 bytes at CS:RIP (fewer at the end of a page or of RAM), or nil when RIP's page
    /// does not translate.
    private func instructionBytes(_ machine: X86Machine) -> [UInt8]? {
        let cpu = machine.cpu
        var linear = cpu.rip
        if cpu.codeMode != .bits64 { linear = (cpu.segments[X86CPU.cs].base &+ cpu.rip) & 0xffff_ffff }
        guard let physical = try? machine.translate(linear, .execute) else { return nil }
        let count = min(15, 4096 - Int(linear & 0xfff))
        var bytes: [UInt8] = []
        for k in 0..<count {
            guard let b = try? memory.load(UInt8.self, at: GuestPhysicalAddress(physical &+ UInt64(k))) else { break }
            bytes.append(b)
        }
        return bytes.isEmpty ? nil : bytes
    }

    /// True when the instruction at `state`'s RIP is a MOV to CR0 that sets CR0.PG while
    /// EFER.LME is clear: it turns on 32-bit (or PAE) paging outside long mode.
    func turnsOnPagingOutsideLongMode(_ state: X86State) -> Bool {
        guard state.cr0 & X86.cr0Paging == 0, state.efer & X86.eferLME == 0 else { return false }
        let machine = softwareCPU(at: state).machine
        guard let insn = try? machine.fetchInstruction(), insn.operation == .movControl,
              insn.destination.kind == .control, insn.destination.index == 0 else { return false }
        return machine.readRegister(insn.source.index, size: 4) & X86.cr0Paging != 0
    }

    /// Visor's CPU over the guest's RAM and this vCPU's CPUID, loaded with `state`, and its bus.
    private func softwareCPU(at state: X86State) -> (machine: X86Machine, bus: FallbackBus) {
        let bus = FallbackBus(memory: memory, cpuid: cpuid, apicID: apicID,
                              smapEnabled: state.cr4 & FallbackBus.cr4SMAP != 0)
        let machine = X86Machine(bus: bus)
        machine.cpu.load(state)
        return (machine, bus)
    }

    /// Where `state` is and the bytes there, for a report ("rip 0x…: 0f 01 c1 …").
    func describe(_ state: X86State) -> String {
        let machine = softwareCPU(at: state).machine
        return bytesAtRIP(machine)
    }

    private func bytesAtRIP(_ machine: X86Machine) -> String {
        let rip = "rip 0x" + String(machine.cpu.rip, radix: 16)
        guard let bytes = instructionBytes(machine) else { return rip + ", code page not mapped" }
        return rip + ": " + bytes.map { ($0 < 16 ? "0" : "") + String($0, radix: 16) }.joined(separator: " ")
    }
}

/// The software CPU's bus for one fallback instruction: guest RAM and the vCPU's CPUID. Ports,
/// MMIO, MSRs and the TSC are the kvm vCPU's business; an instruction that reaches them is not
/// one the fallback carries out, so the first such access is recorded as the refusal (and reads
/// stop the instruction).
final class FallbackBus: X86Bus {
    let memory: GuestMemory
    let cpuidTable: CPUIDTable
    let apicID: UInt32
    /// The vCPU runs with CR4.SMAP set.
    let smapEnabled: Bool
    /// Why the instruction cannot be carried out here, once it reached outside RAM.
    private(set) var refusal: String?

    static let cr4SMAP: UInt64 = 1 << 21
    static let leaf7SMAP: UInt32 = 1 << 20

    init(memory: GuestMemory, cpuid: CPUIDTable, apicID: UInt32, smapEnabled: Bool) {
        self.memory = memory; self.cpuidTable = cpuid; self.apicID = apicID; self.smapEnabled = smapEnabled
    }

    private func refuse(_ what: String) { if refusal == nil { refusal = what } }

    func portRead(port: UInt16, size: UInt8) throws(X86Stop) -> UInt32 {
        refuse("it reads port 0x\(String(port, radix: 16))")
        throw .needsHypervisor(.portRead(port: port, size: size))
    }
    func portWrite(port: UInt16, size: UInt8, value: UInt32) { refuse("it writes port 0x\(String(port, radix: 16))") }
    func mmioRead(address: UInt64, size: UInt8) throws(X86Stop) -> UInt64 {
        refuse("it reads MMIO at 0x\(String(address, radix: 16))")
        throw .needsHypervisor(.mmioRead(address: GuestPhysicalAddress(address), size: size))
    }
    func mmioWrite(address: UInt64, size: UInt8, value: UInt64) { refuse("it writes MMIO at 0x\(String(address, radix: 16))") }
    var hasPendingExit: Bool { false }

    func cpuid(function: UInt32, index: UInt32) -> CPUIDEntry {
        var e = cpuidTable.lookup(function: function, index: index)
        if function == 1 { e.ebx = (e.ebx & 0x00ff_ffff) | (apicID << 24) }
        // The host took CR4.SMAP, which the SDM allows only where SMAP is offered: the vCPU
        // offers it, whatever Visor's table says. (KVM's PVM backend shows the guest a leaf 7
        // with SMAP that KVM_GET_SUPPORTED_CPUID, and so Visor's table, leaves out; with CR4.SMAP
        // clear the fallback cannot see that, a documented departure.)
        if function == 7 && index == 0 && smapEnabled { e.ebx |= Self.leaf7SMAP }
        return e
    }
    func readTimeStampCounter() -> UInt64 {
        refuse("it reads the TSC")
        return 0
    }
    func readMSR(_ index: UInt32) throws(X86Stop) -> UInt64? {
        refuse("it reads MSR 0x\(String(index, radix: 16))")
        throw .needsHypervisor(.msrRead(index: index))
    }
    func writeMSR(_ index: UInt32, value: UInt64) -> Bool {
        refuse("it writes MSR 0x\(String(index, radix: 16))")
        return true
    }
}
