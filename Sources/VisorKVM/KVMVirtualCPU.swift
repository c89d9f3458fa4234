// One KVM vCPU: its registers, its CPUID, and the KVM_RUN loop turned into `Exit` values.

import CKVM
import Synchronization
import VisorCore
#if canImport(Glibc)
import Glibc
#endif

/// A vCPU on `/dev/kvm`. Driven by one host thread; `requestStop` may come from any thread.
public final class KVMVirtualCPU: VirtualCPU {
    public let index: Int
    let machine: KVMVirtualMachine
    let descriptor: OwnedDescriptor
    // SAFETY: `runArea` points at the vCPU's kvm_run area, `mappingSize` bytes mapped MAP_SHARED from
    // `descriptor`; it is unmapped only in deinit, after which nothing uses it. The kernel writes
    // it only during KVM_RUN, which this object alone calls, from the driving thread.
    nonisolated(unsafe) let runArea: UnsafeMutablePointer<kvm_run>
    let mappingSize: Int

    /// Port or MMIO access KVM reported and Visor has not finished handling. KVM_EXIT_IO can
    /// carry a whole `rep ins/outs` (`count` elements); Visor hands them out one `Exit` at a time
    /// and only re-enters the guest once all are done.
    private struct PendingAccess {
        var isPort: Bool
        var isRead: Bool
        var element: UInt32
        var count: UInt32
    }
    // Touched only by the driving thread.
    nonisolated(unsafe) private var pending: PendingAccess?
    /// A forwarded RDMSR waits for `completeRead`. Driving thread only.
    nonisolated(unsafe) private var pendingMSRRead = false

    private let stopRequested = Atomic<Bool>(false)
    /// The last thread that ran this vCPU with the kick signal unblocked. Driving thread only.
    nonisolated(unsafe) private var kickableThread: pthread_t?
    /// The thread inside `run()`, so `requestStop` can kick it out of KVM_RUN with a signal.
    private let runningThread = Mutex<pthread_t?>(nil)
    /// Visor's CPU for what the host cannot do for this vCPU.
    private let fallback: KVMInstructionFallback
    /// When the current KVM_RUN call began (monotonic ns), 0 outside one: `KVMStallWatchdog` reads it.
    let runEnteredAt = Atomic<UInt64>(0)
    /// Nanoseconds spent in KVM_RUN since the guest last exited on its own (kicks do not count).
    /// Driving thread only, as are the two below.
    nonisolated(unsafe) private var runSinceGuestExit: UInt64 = 0
    /// RIP at the last return from KVM_RUN by a signal, once `runSinceGuestExit` was long.
    nonisolated(unsafe) private var stallSampleRIP: UInt64?
    /// The RIP last reported as stalled, so one stall is reported once.
    nonisolated(unsafe) private var stallReportedRIP: UInt64?

    init(machine: KVMVirtualMachine, index: Int) throws(KVMError) {
        self.machine = machine
        self.index = index
        self.fallback = KVMInstructionFallback(memory: machine.memory, cpuid: machine.cpuid,
                                               apicID: UInt32(truncatingIfNeeded: index))
        let fd = try machine.descriptor.ioctl(CKVM_CREATE_VCPU, "KVM_CREATE_VCPU", value: UInt(index))
        self.descriptor = OwnedDescriptor(Int32(fd))
        self.mappingSize = machine.system.vcpuMappingSize
        let mapping = mmap(nil, mappingSize, PROT_READ | PROT_WRITE, MAP_SHARED, Int32(fd), 0)
        guard let mapping, mapping != MAP_FAILED else { throw .mmapFailed(errno: errno) }
        self.runArea = mapping.bindMemory(to: kvm_run.self, capacity: 1)
        try installCPUID(machine.cpuid)
        KickSignal.installHandler()
        KVMStallWatchdog.shared.watch(self)
    }

    deinit {
        munmap(UnsafeMutableRawPointer(runArea), mappingSize)
    }

    private func installCPUID(_ table: CPUIDTable) throws(KVMError) {
        var cpuid = ckvm_cpuid()
        let count = min(table.entries.count, Int(CKVM_MAX_CPUID_ENTRIES))
        cpuid.nent = UInt32(count)
        withUnsafeMutableBytes(of: &cpuid.entries) { raw in
            let entries = raw.bindMemory(to: kvm_cpuid_entry2.self)
            for (i, e) in table.entries.prefix(count).enumerated() {
                var k = kvm_cpuid_entry2()
                k.function = e.function; k.index = e.index
                k.flags = e.indexSignificant ? UInt32(KVM_CPUID_FLAG_SIGNIFCANT_INDEX) : 0
                k.eax = e.eax; k.ebx = e.ebx; k.ecx = e.ecx; k.edx = e.edx
                entries[i] = k
            }
        }
        let rc = ckvm_set_cpuid(descriptor.raw, &cpuid)
        guard rc >= 0 else { throw .ioctlFailed(request: "KVM_SET_CPUID2", errno: Int32(-rc)) }
    }

    // MARK: Running

    public func run() throws -> Exit {
        if let exit = nextPendingElement() { return exit }
        let current = pthread_self()
        if kickableThread.map({ pthread_equal($0, current) == 0 }) ?? true {
            // Threads from a dispatch pool (Swift concurrency, tests) start with signals
            // blocked; the kick must reach this thread or requestStop cannot interrupt KVM_RUN.
            KickSignal.unblockOnCurrentThread()
            kickableThread = current
        }
        runningThread.withLock { $0 = current }
        defer { runningThread.withLock { $0 = nil } }
        if stopRequested.exchange(false, ordering: .acquiring) {
            return .stopped
        }
        let entered = KVMStallWatchdog.monotonicNanoseconds()
        runEnteredAt.store(entered, ordering: .releasing)
        let rc = ckvm_ioctl_value(descriptor.raw, CKVM_RUN, 0)
        runEnteredAt.store(0, ordering: .releasing)
        if rc == -Int(EINTR) || rc == -Int(EAGAIN) {
            // A kick (requestStop, the watchdog) or another signal: the guest did not exit on
            // its own.
            ckvm_set_immediate_exit(runArea, 0)
            runSinceGuestExit &+= KVMStallWatchdog.monotonicNanoseconds() &- entered
            if stopRequested.exchange(false, ordering: .relaxed) { return .stopped }
            return checkForStall() ?? .stopped
        }
        if rc < 0 { throw KVMError.ioctlFailed(request: "KVM_RUN", errno: Int32(-rc)) }
        runSinceGuestExit = 0
        stallSampleRIP = nil
        stallReportedRIP = nil
        return decodeExit()
    }

    /// Maps the kvm_run exit KVM just reported onto `Exit`.
    private func decodeExit() -> Exit {
        let reason = ckvm_exit_reason(runArea)
        switch Int32(reason) {
        case KVM_EXIT_IO:
            let io = runArea.pointee.io
            guard io.count > 0 else { return .internalError("KVM_EXIT_IO with a count of 0") }
            pending = PendingAccess(isPort: true, isRead: io.direction == UInt8(KVM_EXIT_IO_IN), element: 0, count: io.count)
            return nextPendingElement() ?? .internalError("KVM_EXIT_IO with no data")
        case KVM_EXIT_MMIO:
            pending = PendingAccess(isPort: false, isRead: runArea.pointee.mmio.is_write == 0, element: 0, count: 1)
            return nextPendingElement() ?? .internalError("KVM_EXIT_MMIO with no data")
        case KVM_EXIT_HLT:
            return .halt
        case KVM_EXIT_SHUTDOWN:
            return shutdownOrHostLimit()
        case KVM_EXIT_SYSTEM_EVENT:
            // The guest asked for shutdown, reset or reported a crash (through PSCI/Hyper-V-like
            // paths KVM handles in kernel). Visor has no reset, so all end the run.
            return .shutdown
        case KVM_EXIT_FAIL_ENTRY:
            return .failedEntry(reason: runArea.pointee.fail_entry.hardware_entry_failure_reason)
        case KVM_EXIT_INTR:
            return .stopped
        case KVM_EXIT_IRQ_WINDOW_OPEN:
            return .interruptWindow
        case KVM_EXIT_X86_RDMSR:
            pendingMSRRead = true
            return .msrRead(index: ckvm_msr_index(runArea))
        case KVM_EXIT_X86_WRMSR:
            ckvm_complete_msr(runArea, ckvm_msr_data(runArea))
            return .msrWrite(index: ckvm_msr_index(runArea), value: ckvm_msr_data(runArea))
        case KVM_EXIT_INTERNAL_ERROR:
            let sub = runArea.pointee.internal.suberror
            if sub == UInt32(KVM_INTERNAL_ERROR_EMULATION) { return emulateFailedInstruction() }
            let names: [UInt32: String] = [1: "the instruction could not be emulated",
                                           2: "an exception arrived while delivering another",
                                           3: "an event could not be delivered",
                                           4: "an unexpected hardware exit"]
            return .internalError("KVM internal error \(sub): \(names[sub] ?? "unknown sub-error")")
        default:
            return .internalError("KVM exit reason \(reason), which Visor does not handle")
        }
    }

    /// The host could not emulate the instruction at RIP: Visor's software CPU carries it out on
    /// the vCPU's registers and RAM (`KVMInstructionFallback`), and the vCPU resumes after it (or
    /// in the handler of the exception it raised).
    private func emulateFailedInstruction() -> Exit {
        let failure = "KVM internal error \(KVM_INTERNAL_ERROR_EMULATION): the instruction could not be emulated"
        let before: X86State
        do { before = try state() } catch { return .internalError("\(failure), and its registers could not be read: \(error)") }
        // KVM has queued a #UD for the instruction along with the exit; what the guest gets
        // instead is what the software CPU does.
        let dropped = ckvm_drop_queued_invalid_opcode(descriptor.raw)
        if dropped < 0 {
            return .internalError("\(failure), and its queued #UD could not be dropped: KVM_SET_VCPU_EVENTS errno \(-dropped)")
        }
        switch fallback.execute(before) {
        case .done(let after, let instruction):
            do { try setState(after) } catch {
                return .internalError("\(failure); Visor carried it out but could not write the registers back: \(error)")
            }
            if instruction == "iret" {
                let rc = ckvm_unmask_nmi(descriptor.raw)
                if rc < 0 { return .internalError("\(failure); Visor carried out the IRET but could not end NMI blocking: errno \(-rc)") }
            }
            return .instructionEmulated(instruction: instruction)
        case .shutdown:
            return .shutdown
        case .refused(let reason):
            return .internalError("\(failure), nor by Visor: \(reason); --engine interp runs the guest on Visor's own CPU")
        }
    }

    /// KVM shut the vCPU down. On the PVM backend that is also how 32-bit paging ends: the
    /// vCPU is shut down at the MOV to CR0 that sets CR0.PG outside long mode (observed; the
    /// backend cannot run it). Say so, and which engine can run the guest, rather than call it
    /// the guest's triple fault.
    private func shutdownOrHostLimit() -> Exit {
        guard KVMSystem.isPVMBackend, let s = try? state() else { return .shutdown }
        guard fallback.turnsOnPagingOutsideLongMode(s) else { return .shutdown }
        return .internalError("the host's KVM shut the vCPU down with 32-bit paging on (CR0.PG set outside long mode), "
            + "which this host's KVM (its PVM backend) cannot run; --engine interp runs the guest on Visor's own CPU")
    }

    /// After a return from KVM_RUN by a signal: is the vCPU stalled (`KVMStallWatchdog`)? An
    /// instruction the host spins on is carried out by Visor's CPU; any other stall is reported
    /// once. Nil: not stalled (or not yet known).
    private func checkForStall() -> Exit? {
        guard runSinceGuestExit >= KVMStallWatchdog.stallAfter / 2, pending == nil, !pendingMSRRead,
              let now = try? state() else { return nil }
        let previous = stallSampleRIP
        stallSampleRIP = now.rip
        guard previous == now.rip, runSinceGuestExit >= KVMStallWatchdog.stallAfter else { return nil }
        let seconds = Double(runSinceGuestExit / 1_000_000) / 1000
        if case .done(let after, let instruction) = fallback.execute(now, stalled: true), (try? setState(after)) != nil {
            runSinceGuestExit = 0
            stallSampleRIP = nil
            return .instructionEmulated(instruction: instruction + " (host stalled)")
        }
        guard stallReportedRIP != now.rip else { return nil }
        stallReportedRIP = now.rip
        return .stalled(report: "vCPU \(index) has made no exit for \(seconds) s, at \(fallback.describe(now)): "
            + "the host's KVM may be spinning on that instruction (--engine interp runs the guest on Visor's own CPU)")
    }

    /// Kicks the thread out of KVM_RUN without asking it to stop: `run` then checks for a stall.
    func kickForWatchdog() {
        runningThread.withLock { thread in
            if let thread { _ = pthread_kill(thread, KickSignal.number) }
        }
    }

    /// The next element of a pending port or MMIO access, or nil (and no longer pending) when done.
    private func nextPendingElement() -> Exit? {
        guard var p = pending else { return nil }
        if p.element >= p.count {
            pending = nil
            return nil
        }
        if !p.isPort {
            // MMIO: one element. Reads wait for completeRead; writes are done once reported.
            let mmio = runArea.pointee.mmio
            let size = UInt8(min(mmio.len, 8))
            let address = GuestPhysicalAddress(mmio.phys_addr)
            p.element = 1
            pending = p.isRead ? p : nil
            if p.isRead { return .mmioRead(address: address, size: size) }
            var value: UInt64 = 0
            withUnsafeBytes(of: mmio.data) { bytes in
                for i in 0..<Int(size) { value |= UInt64(bytes[i]) << (8 * UInt64(i)) }
            }
            return .mmioWrite(address: address, size: size, value: value)
        }
        let io = runArea.pointee.io
        let size = io.size
        guard size == 1 || size == 2 || size == 4,
              Int(io.data_offset) + Int(io.count) * Int(size) <= mappingSize else {
            pending = nil
            return .internalError("KVM_EXIT_IO with size \(size) and data outside kvm_run")
        }
        if p.isRead {
            // Stays pending until completeRead stores the value for this element.
            pending = p
            return .portRead(port: io.port, size: size)
        }
        let offset = Int(io.data_offset) + Int(p.element) * Int(size)
        let raw = UnsafeRawPointer(runArea) + offset
        let value: UInt32
        switch size {
        case 1: value = UInt32(raw.load(as: UInt8.self))
        case 2: value = UInt32(raw.loadUnaligned(as: UInt16.self))
        default: value = raw.loadUnaligned(as: UInt32.self)
        }
        p.element += 1
        pending = p
        return .portWrite(port: io.port, size: size, value: value)
    }

    public func completeRead(_ value: UInt64) {
        if pendingMSRRead {
            pendingMSRRead = false
            ckvm_complete_msr(runArea, value)
            return
        }
        guard var p = pending, p.isRead, p.element < p.count || !p.isPort else { return }
        if p.isPort {
            let io = runArea.pointee.io
            let offset = Int(io.data_offset) + Int(p.element) * Int(io.size)
            let raw = UnsafeMutableRawPointer(runArea) + offset
            switch io.size {
            case 1: raw.storeBytes(of: UInt8(truncatingIfNeeded: value), as: UInt8.self)
            case 2: raw.storeBytes(of: UInt16(truncatingIfNeeded: value), as: UInt16.self)
            default: raw.storeBytes(of: UInt32(truncatingIfNeeded: value), as: UInt32.self)
            }
            p.element += 1
            pending = p.element < p.count ? p : nil
        } else {
            withUnsafeMutableBytes(of: &runArea.pointee.mmio.data) { bytes in
                for i in 0..<8 { bytes[i] = UInt8(truncatingIfNeeded: value >> (8 * UInt64(i))) }
            }
            pending = nil
        }
    }

    public func requestStop() {
        stopRequested.store(true, ordering: .releasing)
        ckvm_set_immediate_exit(runArea, 1)
        runningThread.withLock { thread in
            if let thread { _ = pthread_kill(thread, KickSignal.number) }
        }
    }

    // MARK: Interrupts

    /// As of the last exit (KVM updates both flags on every exit). Before the first run KVM
    /// reports "not ready", so the first interrupt waits for a window exit.
    public var interruptWindowOpen: Bool { ckvm_ready_for_interrupt(runArea) != 0 && pending == nil }

    public func injectInterrupt(vector: UInt8) throws {
        guard interruptWindowOpen else { throw InterruptWindowClosed(vector: vector) }
        let rc = ckvm_interrupt(descriptor.raw, UInt32(vector))
        if rc < 0 { throw KVMError.ioctlFailed(request: "KVM_INTERRUPT", errno: Int32(-rc)) }
        // KVM takes one queued interrupt at a time and reports "not ready" until it is delivered.
        runArea.pointee.ready_for_interrupt_injection = 0
    }

    public func requestInterruptWindow(_ wanted: Bool) {
        ckvm_set_request_interrupt_window(runArea, wanted ? 1 : 0)
    }

    /// KVM_NMI. Without an in-kernel irqchip KVM offers it as the processor's NMI input and
    /// does the rest: delivery through vector 2, blocking until IRET, one held pending.
    public func injectNMI() throws {
        let rc = ckvm_nmi(descriptor.raw)
        if rc < 0 { throw KVMError.ioctlFailed(request: "KVM_NMI", errno: Int32(-rc)) }
    }

    /// IA32_APIC_BASE bit 11 as KVM holds it (KVM clears CPUID.1:EDX.APIC itself when the guest
    /// clears the bit), from `kvm_run.apic_base`, which KVM fills in on every exit: no ioctl on
    /// each APIC access.
    public func localAPICEnabled() throws -> Bool {
        runArea.pointee.apic_base & (1 << 11) != 0
    }

    /// The guest's time-stamp counter now.
    public func timeStampCounter() throws -> UInt64 {
        var value: UInt64 = 0
        let rc = ckvm_guest_tsc(descriptor.raw, &value)
        if rc < 0 { throw KVMError.ioctlFailed(request: "KVM_GET_MSRS", errno: Int32(-rc)) }
        return value
    }

    // MARK: Registers

    public func state() throws -> X86State {
        var regs = kvm_regs()
        var sregs = kvm_sregs()
        try descriptor.ioctl(CKVM_GET_REGS, "KVM_GET_REGS", &regs)
        try descriptor.ioctl(CKVM_GET_SREGS, "KVM_GET_SREGS", &sregs)
        var s = X86State()
        s.rax = regs.rax; s.rbx = regs.rbx; s.rcx = regs.rcx; s.rdx = regs.rdx
        s.rsi = regs.rsi; s.rdi = regs.rdi; s.rsp = regs.rsp; s.rbp = regs.rbp
        s.r8 = regs.r8; s.r9 = regs.r9; s.r10 = regs.r10; s.r11 = regs.r11
        s.r12 = regs.r12; s.r13 = regs.r13; s.r14 = regs.r14; s.r15 = regs.r15
        s.rip = regs.rip; s.rflags = regs.rflags
        s.cs = Self.segment(sregs.cs); s.ds = Self.segment(sregs.ds); s.es = Self.segment(sregs.es)
        s.fs = Self.segment(sregs.fs); s.gs = Self.segment(sregs.gs); s.ss = Self.segment(sregs.ss)
        s.tr = Self.segment(sregs.tr); s.ldtr = Self.segment(sregs.ldt)
        s.gdtr = DescriptorTableRegister(base: sregs.gdt.base, limit: sregs.gdt.limit)
        s.idtr = DescriptorTableRegister(base: sregs.idt.base, limit: sregs.idt.limit)
        s.cr0 = sregs.cr0; s.cr2 = sregs.cr2; s.cr3 = sregs.cr3; s.cr4 = sregs.cr4; s.cr8 = sregs.cr8
        s.efer = sregs.efer
        var debug = kvm_debugregs()
        try descriptor.ioctl(CKVM_GET_DEBUGREGS, "KVM_GET_DEBUGREGS", &debug)
        (s.dr0, s.dr1, s.dr2, s.dr3) = debug.db
        s.dr6 = debug.dr6; s.dr7 = debug.dr7
        return s
    }

    public func setState(_ s: X86State) throws {
        var sregs = kvm_sregs()
        // Read first so fields X86State does not model (APIC base, pending interrupts) keep their values.
        try descriptor.ioctl(CKVM_GET_SREGS, "KVM_GET_SREGS", &sregs)
        sregs.cs = Self.kvmSegment(s.cs); sregs.ds = Self.kvmSegment(s.ds); sregs.es = Self.kvmSegment(s.es)
        sregs.fs = Self.kvmSegment(s.fs); sregs.gs = Self.kvmSegment(s.gs); sregs.ss = Self.kvmSegment(s.ss)
        sregs.tr = Self.kvmSegment(s.tr); sregs.ldt = Self.kvmSegment(s.ldtr)
        sregs.gdt.base = s.gdtr.base; sregs.gdt.limit = s.gdtr.limit
        sregs.idt.base = s.idtr.base; sregs.idt.limit = s.idtr.limit
        sregs.cr0 = s.cr0; sregs.cr2 = s.cr2; sregs.cr3 = s.cr3; sregs.cr4 = s.cr4; sregs.cr8 = s.cr8
        sregs.efer = s.efer
        try descriptor.ioctl(CKVM_SET_SREGS, "KVM_SET_SREGS", &sregs)

        var regs = kvm_regs()
        regs.rax = s.rax; regs.rbx = s.rbx; regs.rcx = s.rcx; regs.rdx = s.rdx
        regs.rsi = s.rsi; regs.rdi = s.rdi; regs.rsp = s.rsp; regs.rbp = s.rbp
        regs.r8 = s.r8; regs.r9 = s.r9; regs.r10 = s.r10; regs.r11 = s.r11
        regs.r12 = s.r12; regs.r13 = s.r13; regs.r14 = s.r14; regs.r15 = s.r15
        regs.rip = s.rip; regs.rflags = s.rflags
        try descriptor.ioctl(CKVM_SET_REGS, "KVM_SET_REGS", &regs)

        // KVM refuses DR6/DR7 with bits 63:32 set (as MOV DR does); the guest could not have
        // put them there.
        var debug = kvm_debugregs()
        debug.db = (s.dr0, s.dr1, s.dr2, s.dr3)
        debug.dr6 = s.dr6 & 0xffff_ffff; debug.dr7 = s.dr7 & 0xffff_ffff
        try descriptor.ioctl(CKVM_SET_DEBUGREGS, "KVM_SET_DEBUGREGS", &debug)
        pending = nil
        pendingMSRRead = false
    }

    static func segment(_ k: kvm_segment) -> SegmentRegister {
        SegmentRegister(selector: k.selector, base: k.base, limit: k.limit, type: k.type,
                        isCodeOrData: k.s != 0, dpl: k.dpl, present: k.present != 0 && k.unusable == 0,
                        longMode: k.l != 0, defaultSize32: k.db != 0, granularity4K: k.g != 0)
    }

    static func kvmSegment(_ s: SegmentRegister) -> kvm_segment {
        var k = kvm_segment()
        k.base = s.base; k.limit = s.limit; k.selector = s.selector; k.type = s.type
        k.present = s.present ? 1 : 0; k.dpl = s.dpl; k.db = s.defaultSize32 ? 1 : 0
        k.s = s.isCodeOrData ? 1 : 0; k.l = s.longMode ? 1 : 0; k.g = s.granularity4K ? 1 : 0
        k.unusable = s.present ? 0 : 1
        return k
    }
}

/// The signal `requestStop` sends to a thread inside KVM_RUN: its handler does nothing, so the
/// only effect is that KVM_RUN returns EINTR.
enum KickSignal {
    static let number: Int32 = SIGUSR1

    private static let installed: Bool = {
        var action = sigaction()
        action.__sigaction_handler.sa_handler = { _ in }
        sigemptyset(&action.sa_mask)
        action.sa_flags = 0  // no SA_RESTART: the ioctl must return EINTR
        return sigaction(number, &action, nil) == 0
    }()

    static func installHandler() { _ = installed }

    static func unblockOnCurrentThread() {
        var set = sigset_t()
        sigemptyset(&set)
        sigaddset(&set, number)
        pthread_sigmask(SIG_UNBLOCK, &set, nil)
    }
}
