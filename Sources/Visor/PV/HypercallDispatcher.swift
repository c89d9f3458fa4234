// Performing one hypercall: the guest's registers in, the 32-bit result and what the runtime
// must do out. Every guest pointer and length goes through `GuestMemory` (-EFAULT), unknown
// numbers give -ENOSYS, unknown sub-operations -EINVAL, calls from CPL > 0 -EPERM; nothing a
// guest passes can trap, block the calling thread or reach another domain. Spec: docs/pv-abi.md.

import VisorABI
import VisorCore

/// The registers a hypercall reads (Xen's x86-64 convention).
struct HypercallRegisters: Sendable, Equatable {
    /// The hypercall number.
    var rax: UInt64
    /// Arguments 1 to 5.
    var rdi: UInt64, rsi: UInt64, rdx: UInt64, r10: UInt64, r8: UInt64
    /// The privilege level the call was made from.
    var cpl: UInt8

    init(rax: UInt64, rdi: UInt64 = 0, rsi: UInt64 = 0, rdx: UInt64 = 0, r10: UInt64 = 0, r8: UInt64 = 0, cpl: UInt8 = 0) {
        self.rax = rax; self.rdi = rdi; self.rsi = rsi; self.rdx = rdx; self.r10 = r10; self.r8 = r8; self.cpl = cpl
    }

    /// The registers of a vCPU stopped at the stub's `in`. CPL is CS.RPL in protected mode
    /// (0 in real mode).
    init(_ state: X86State) {
        let protected = state.cr0 & X86.cr0ProtectionEnable != 0
        self.init(rax: state.rax, rdi: state.rdi, rsi: state.rsi, rdx: state.rdx, r10: state.r10, r8: state.r8,
                  cpl: protected ? UInt8(truncatingIfNeeded: state.cs.selector & 3) : 0)
    }
}

/// What the dispatcher needs from the runtime.
protocol PVContext {
    /// The domain clock now, in ns: PV system time.
    var now: UInt64 { get }
    /// Writes bytes to the domain's console (`console_io write`).
    func consoleWrite(_ bytes: [UInt8])
}

/// Why a guest shut down (`SCHEDOP_shutdown` reasons).
enum PVShutdownReason: UInt32, Sendable, Equatable {
    case poweroff = 0, reboot = 1, suspend = 2, crash = 3, watchdog = 4
}

/// Something the runtime must do after a hypercall, beyond answering it.
enum PVAction: Sendable, Equatable {
    /// Give the pCPU away (`sched_op yield`).
    case yield
    /// The calling vCPU blocks: do not enter it while `PVState.isBlocked(vcpu:)`; it wakes at a
    /// `.kick`/wake for it or at `nextTimerDeadline(vcpu:)` (then call `fireTimers`).
    case block
    /// End the domain.
    case shutdown(PVShutdownReason)
    /// Start offline vCPU `index` with this state (`vcpu_op up` after `initialise`).
    case startVCPU(Int, X86State)
    /// Restart vCPU `index` where it stopped (`vcpu_op up` after it took itself down).
    case resumeVCPU(Int)
    /// The calling vCPU goes offline (`vcpu_op down`) until another vCPU brings it up.
    case stopVCPU
    /// vCPU `index` (not the caller) has a new upcall pending, was woken from a block or poll,
    /// or had its timers changed: wake it if sleeping, kick it out of the guest if running.
    case kick(Int)
}

/// The result of one hypercall.
struct HypercallOutcome: Sendable, Equatable {
    /// The value the guest sees in EAX (sign-extended into RAX by the stub).
    var result: Int32
    var actions: [PVAction] = []

    /// The value to answer the stub's port read with.
    var portValue: UInt64 { UInt64(UInt32(bitPattern: result)) }
}

/// A guest structure of `size` bytes at a guest-physical address, checked once to lie wholly
/// in RAM; its fields are then read and written at offsets inside it.
private struct GuestStruct {
    let memory: GuestMemory
    let base: UInt64

    init?(_ memory: GuestMemory, _ address: UInt64, size: Int) {
        guard memory.contains(GuestPhysicalAddress(address), length: UInt64(size)) else { return nil }
        self.memory = memory
        self.base = address
    }

    func u16(_ offset: Int) -> UInt16 { (try? memory.load(UInt16.self, at: GuestPhysicalAddress(base &+ UInt64(offset)))) ?? 0 }
    func u32(_ offset: Int) -> UInt32 { (try? memory.load(UInt32.self, at: GuestPhysicalAddress(base &+ UInt64(offset)))) ?? 0 }
    func u64(_ offset: Int) -> UInt64 { (try? memory.load(UInt64.self, at: GuestPhysicalAddress(base &+ UInt64(offset)))) ?? 0 }
    func store(_ value: UInt32, _ offset: Int) { try? memory.store(value, at: GuestPhysicalAddress(base &+ UInt64(offset))) }
}

extension PVState {
    /// Performs the hypercall vCPU `vcpu` made with `registers`.
    func dispatch(vcpu: Int, registers: HypercallRegisters, context: some PVContext) -> HypercallOutcome {
        statistics.count(hypercall: registers.rax)
        var outcome: HypercallOutcome
        if registers.cpl != 0 {
            outcome = HypercallOutcome(result: PVError.permission)
        } else if !vcpus.indices.contains(vcpu) {
            outcome = HypercallOutcome(result: PVError.invalid)
        } else {
            outcome = perform(vcpu: vcpu, registers, context)
            // The caller re-examines its own state before it next enters: no kick for it.
            outcome.actions.removeAll { $0 == .kick(vcpu) }
        }
        if outcome.result < 0 { statistics.failedHypercalls &+= 1 }
        return outcome
    }

    private func perform(vcpu: Int, _ r: HypercallRegisters, _ context: some PVContext) -> HypercallOutcome {
        guard r.rax < UInt64(Hypercall.count) else { return HypercallOutcome(result: PVError.noSystem) }
        switch UInt32(r.rax) {
        case Hypercall.setTimerOp: return setTimerOp(vcpu: vcpu, timeout: r.rdi, now: context.now)
        case Hypercall.xenVersion: return xenVersion(command: r.rdi)
        case Hypercall.consoleIO: return consoleIO(command: r.rdi, count: r.rsi, buffer: r.rdx, context)
        case Hypercall.vcpuOp: return vcpuOp(vcpu: vcpu, command: r.rdi, target: r.rsi, argument: r.rdx, now: context.now)
        case Hypercall.schedOp: return schedOp(vcpu: vcpu, command: r.rdi, argument: r.rsi, now: context.now)
        case Hypercall.eventChannelOp: return eventChannelOp(vcpu: vcpu, command: r.rdi, argument: r.rsi)
        default: return HypercallOutcome(result: PVError.noSystem)
        }
    }

    private static func fail(_ error: Int32) -> HypercallOutcome { HypercallOutcome(result: error) }
    private static let ok = HypercallOutcome(result: 0)

    private static func kicks(_ vcpus: [Int]) -> [PVAction] { vcpus.map { .kick($0) } }

    // MARK: xen_version

    private func xenVersion(command: UInt64) -> HypercallOutcome {
        guard command == UInt64(XenVersion.version) else { return Self.fail(PVError.invalid) }
        return HypercallOutcome(result: Int32(bitPattern: XenVersion.major << 16 | XenVersion.minor))
    }

    // MARK: console_io

    private func consoleIO(command: UInt64, count: UInt64, buffer: UInt64, _ context: some PVContext) -> HypercallOutcome {
        switch command {
        case UInt64(ConsoleIO.write):
            guard count <= ConsoleIO.maximumCount else { return Self.fail(PVError.invalid) }
            guard count > 0 else { return Self.ok }
            guard let bytes = try? memory.read(at: GuestPhysicalAddress(buffer), count: Int(count)) else {
                return Self.fail(PVError.fault)
            }
            statistics.consoleBytesOut &+= count
            context.consoleWrite(bytes)
            return Self.ok
        case UInt64(ConsoleIO.read):
            let limit = min(count, ConsoleIO.maximumCount)
            guard limit > 0 else { return Self.ok }
            guard memory.contains(GuestPhysicalAddress(buffer), length: limit) else { return Self.fail(PVError.fault) }
            let bytes = takeConsoleInput(Int(limit))
            guard (try? memory.write(bytes, at: GuestPhysicalAddress(buffer))) != nil else { return Self.fail(PVError.fault) }
            return HypercallOutcome(result: Int32(bytes.count))
        default:
            return Self.fail(PVError.invalid)
        }
    }

    // MARK: set_timer_op

    private func setTimerOp(vcpu: Int, timeout: UInt64, now: UInt64) -> HypercallOutcome {
        armSingleShot(vcpu: vcpu, timeout: timeout == 0 ? nil : timeout, now: now)
    }

    /// Arms (or with nil cancels) `vcpu`'s single-shot timer; a time not in the future fires now.
    private func armSingleShot(vcpu: Int, timeout: UInt64?, now: UInt64) -> HypercallOutcome {
        guard let timeout else {
            update(vcpu) { $0.singleShotDeadline = nil }
            return Self.ok
        }
        if timeout <= now {
            update(vcpu) { $0.singleShotDeadline = nil }
            return HypercallOutcome(result: 0, actions: Self.kicks(raiseTimer(vcpu: vcpu)))
        }
        update(vcpu) { $0.singleShotDeadline = timeout }
        return Self.ok
    }

    // MARK: vcpu_op

    private func vcpuOp(vcpu: Int, command: UInt64, target: UInt64, argument: UInt64, now: UInt64) -> HypercallOutcome {
        let known: [UInt32] = [VCPUOp.initialise, VCPUOp.up, VCPUOp.down, VCPUOp.isUp, VCPUOp.setPeriodicTimer,
                               VCPUOp.stopPeriodicTimer, VCPUOp.setSingleshotTimer, VCPUOp.stopSingleshotTimer]
        guard command <= UInt64(UInt32.max), known.contains(UInt32(command)) else { return Self.fail(PVError.invalid) }
        guard target < UInt64(vcpus.count) else { return Self.fail(PVError.noEntry) }
        let t = Int(target)
        switch UInt32(command) {
        case VCPUOp.initialise:
            guard !vcpus[t].online else { return Self.fail(PVError.exists) }
            guard let fields = GuestStruct(memory, argument, size: VCPUContext.size) else { return Self.fail(PVError.fault) }
            guard let state = Self.initialState(fields, memory: memory) else { return Self.fail(PVError.invalid) }
            update(t) { $0.initialContext = state }
            return Self.ok
        case VCPUOp.up:
            if vcpus[t].online { return Self.ok }
            if let state = vcpus[t].initialContext {
                update(t) { $0.initialContext = nil; $0.online = true; $0.hasRun = true }
                return HypercallOutcome(result: 0, actions: [.startVCPU(t, state)])
            }
            guard vcpus[t].hasRun else { return Self.fail(PVError.invalid) }
            update(t) { $0.online = true }
            return HypercallOutcome(result: 0, actions: [.resumeVCPU(t)])
        case VCPUOp.down:
            guard t == vcpu else { return Self.fail(PVError.invalid) }
            update(t) { $0.online = false }
            return HypercallOutcome(result: 0, actions: [.stopVCPU])
        case VCPUOp.isUp:
            return HypercallOutcome(result: vcpus[t].online ? 1 : 0)
        case VCPUOp.setPeriodicTimer:
            guard let fields = GuestStruct(memory, argument, size: 8) else { return Self.fail(PVError.fault) }
            let period = fields.u64(0)
            guard period >= VCPUOp.minimumPeriodNanoseconds else { return Self.fail(PVError.invalid) }
            update(t) {
                $0.periodicPeriod = period
                $0.periodicNext = PVState.saturatingSum(now, period)
            }
            return HypercallOutcome(result: 0, actions: t == vcpu ? [] : [.kick(t)])
        case VCPUOp.stopPeriodicTimer:
            update(t) { $0.periodicPeriod = nil }
            return Self.ok
        case VCPUOp.setSingleshotTimer:
            guard t == vcpu else { return Self.fail(PVError.invalid) }
            guard let fields = GuestStruct(memory, argument, size: 16) else { return Self.fail(PVError.fault) }
            // VCPU_SSHOTTMR_future is accepted: a past timeout fires at once either way.
            return armSingleShot(vcpu: t, timeout: fields.u64(0), now: now)
        case VCPUOp.stopSingleshotTimer:
            guard t == vcpu else { return Self.fail(PVError.invalid) }
            update(t) { $0.singleShotDeadline = nil }
            return Self.ok
        default:
            return Self.fail(PVError.invalid)
        }
    }

    /// The register state a `VCPUContext` describes, or nil when it cannot be a 64-bit start:
    /// CR4.PAE and EFER.LME required, a ring-0 GDT code selector inside the GDT limit, a data
    /// selector inside it (or null), canonical RIP and RSP, the top-level page table in RAM.
    fileprivate static func initialState(_ f: GuestStruct, memory: GuestMemory) -> X86State? {
        let rip = f.u64(VCPUContext.ripOffset), rsp = f.u64(VCPUContext.rspOffset)
        let cr3 = f.u64(VCPUContext.cr3Offset), cr4 = f.u64(VCPUContext.cr4Offset), efer = f.u64(VCPUContext.eferOffset)
        let gdtLimit = UInt16(truncatingIfNeeded: f.u64(VCPUContext.gdtLimitOffset))
        let code = f.u64(VCPUContext.codeSelectorOffset), data = f.u64(VCPUContext.dataSelectorOffset)
        func isCanonical(_ a: UInt64) -> Bool { let top = a >> 47; return top == 0 || top == 0x1ffff }
        func inGDT(_ selector: UInt64) -> Bool {
            selector <= 0xffff && selector & 4 == 0 && selector | 7 <= UInt64(gdtLimit)
        }
        guard cr4 & X86.cr4PAE != 0, efer & X86.eferLME != 0,
              code & ~7 != 0, code & 3 == 0, inGDT(code),
              data == 0 || (data & 3 == 0 && inGDT(data)),
              isCanonical(rip), isCanonical(rsp), isCanonical(f.u64(VCPUContext.gdtBaseOffset)),
              memory.contains(GuestPhysicalAddress(cr3 & 0x000f_ffff_ffff_f000), length: GuestMemory.pageSize)
        else { return nil }
        var state = X86State()
        state.rip = rip
        state.rsp = rsp
        state.rdi = f.u64(VCPUContext.rdiOffset)
        state.rflags = X86.rflagsReserved1
        state.cs = .flatCode(selector: UInt16(code), longMode: true)
        let flat = SegmentRegister.flatData(selector: UInt16(data))
        state.ds = flat; state.es = flat; state.fs = flat; state.gs = flat; state.ss = flat
        state.gdtr = DescriptorTableRegister(base: f.u64(VCPUContext.gdtBaseOffset), limit: gdtLimit)
        state.idtr = DescriptorTableRegister(base: 0, limit: 0)
        state.cr0 = X86.cr0ProtectionEnable | X86.cr0MonitorCoprocessor | X86.cr0ExtensionType
            | X86.cr0NumericError | X86.cr0WriteProtect | X86.cr0Paging
        state.cr3 = cr3
        state.cr4 = cr4
        state.efer = efer | X86.eferLMA
        return state
    }

    // MARK: sched_op

    private func schedOp(vcpu: Int, command: UInt64, argument: UInt64, now: UInt64) -> HypercallOutcome {
        switch command {
        case UInt64(SchedOp.yield):
            return HypercallOutcome(result: 0, actions: [.yield])
        case UInt64(SchedOp.block):
            // Events on first, then the check: an event that arrived after the guest's own
            // check (made with events masked) is seen here, so no wake-up is lost.
            sharedInfo?.setUpcallMask(vcpu: vcpu, false)
            if sharedInfo?.upcallPending(vcpu: vcpu) == true { return Self.ok }
            update(vcpu) { $0.blockedForEvent = true }
            return HypercallOutcome(result: 0, actions: [.block])
        case UInt64(SchedOp.shutdown):
            guard let fields = GuestStruct(memory, argument, size: ShutdownArgument.size) else { return Self.fail(PVError.fault) }
            guard let reason = PVShutdownReason(rawValue: fields.u32(0)) else { return Self.fail(PVError.invalid) }
            return HypercallOutcome(result: 0, actions: [.shutdown(reason)])
        case UInt64(SchedOp.poll):
            return poll(vcpu: vcpu, argument: argument, now: now)
        case UInt64(SchedOp.shutdownRequest):
            // The pointer first: a call that faults leaves the request for a correct one.
            guard let fields = GuestStruct(memory, argument, size: ShutdownRequestArgument.size) else {
                return Self.fail(PVError.fault)
            }
            guard let reason = takeShutdownRequest() else { return Self.fail(PVError.noEntry) }
            fields.store(reason.rawValue, ShutdownRequestArgument.reasonOffset)
            return Self.ok
        default:
            return Self.fail(PVError.invalid)
        }
    }

    private func poll(vcpu: Int, argument: UInt64, now: UInt64) -> HypercallOutcome {
        guard let fields = GuestStruct(memory, argument, size: PollArgument.size) else { return Self.fail(PVError.fault) }
        let list = fields.u64(PollArgument.portsOffset)
        let count = fields.u32(PollArgument.countOffset)
        let timeout = fields.u64(PollArgument.timeoutOffset)
        guard count <= PollArgument.maximumPorts, count > 0 || timeout != 0 else { return Self.fail(PVError.invalid) }
        var ports: [UInt32] = []
        if count > 0 {
            guard let array = GuestStruct(memory, list, size: Int(count) * 4) else { return Self.fail(PVError.fault) }
            for i in 0..<Int(count) {
                let port = array.u32(i * 4)
                guard Self.isValidPort(port) else { return Self.fail(PVError.invalid) }
                ports.append(port)
            }
        }
        if let page = sharedInfo, ports.contains(where: { page.isPending($0) }) { return Self.ok }
        if timeout != 0 && timeout <= now { return Self.ok }
        update(vcpu) {
            $0.pollPorts = ports
            $0.pollTimeout = timeout == 0 ? nil : timeout
        }
        return HypercallOutcome(result: 0, actions: [.block])
    }

    // MARK: event_channel_op

    private func eventChannelOp(vcpu: Int, command: UInt64, argument: UInt64) -> HypercallOutcome {
        switch command {
        case UInt64(EventChannelOp.bindVIRQ):
            guard let f = GuestStruct(memory, argument, size: 12) else { return Self.fail(PVError.fault) }
            let virq = f.u32(0), target = UInt64(f.u32(4))
            guard virq == VIRQ.timer || virq == VIRQ.console || virq == VIRQ.shutdownRequest else {
                return Self.fail(PVError.invalid)
            }
            if virq != VIRQ.timer && target != 0 { return Self.fail(PVError.invalid) }  // global: vCPU 0
            guard target < UInt64(vcpus.count) else { return Self.fail(PVError.noEntry) }
            guard target < UInt64(SharedInfo.maximumVCPUs) else { return Self.fail(PVError.invalid) }
            guard virqPort(virq, vcpu: Int(target)) == nil else { return Self.fail(PVError.exists) }
            guard let port = freePort() else { return Self.fail(PVError.noSpace) }
            bind(port, .virq(virq, vcpu: Int(target)))
            f.store(port, 8)
            return Self.ok
        case UInt64(EventChannelOp.bindIPI):
            guard let f = GuestStruct(memory, argument, size: 8) else { return Self.fail(PVError.fault) }
            let target = UInt64(f.u32(0))
            guard target < UInt64(vcpus.count) else { return Self.fail(PVError.noEntry) }
            guard target < UInt64(SharedInfo.maximumVCPUs) else { return Self.fail(PVError.invalid) }
            guard let port = freePort() else { return Self.fail(PVError.noSpace) }
            bind(port, .ipi(vcpu: Int(target)))
            f.store(port, 4)
            return Self.ok
        case UInt64(EventChannelOp.allocUnbound):
            guard let f = GuestStruct(memory, argument, size: 8) else { return Self.fail(PVError.fault) }
            let dom = f.u16(0), remote = f.u16(2)
            guard dom == EventChannelOp.domainSelf || dom == domainID else { return Self.fail(PVError.permission) }
            guard remote == EventChannelOp.domainSelf || remote == domainID else { return Self.fail(PVError.invalid) }
            guard vcpu < SharedInfo.maximumVCPUs else { return Self.fail(PVError.invalid) }
            guard let port = freePort() else { return Self.fail(PVError.noSpace) }
            bind(port, .unbound(vcpu: vcpu))
            f.store(port, 4)
            return Self.ok
        case UInt64(EventChannelOp.close), UInt64(EventChannelOp.send), UInt64(EventChannelOp.unmask):
            guard let f = GuestStruct(memory, argument, size: 4) else { return Self.fail(PVError.fault) }
            let port = f.u32(0)
            guard Self.isValidPort(port) else { return Self.fail(PVError.invalid) }
            let channel = channels[Int(port)]
            switch command {
            case UInt64(EventChannelOp.close):
                guard channel != .closed else { return Self.fail(PVError.invalid) }
                close(port)
                return Self.ok
            case UInt64(EventChannelOp.send):
                switch channel {
                case .ipi(let target):
                    return HypercallOutcome(result: 0, actions: Self.kicks(setPending(port: port, vcpu: target)))
                case .unbound:
                    guard vcpu < SharedInfo.maximumVCPUs else { return Self.fail(PVError.invalid) }
                    renotify(port, vcpu: vcpu)
                    return HypercallOutcome(result: 0, actions: Self.kicks(setPending(port: port, vcpu: vcpu)))
                case .closed, .virq:
                    return Self.fail(PVError.invalid)
                }
            default:  // unmask
                guard let page = sharedInfo else { return Self.ok }
                guard page.testAndClearMask(port), let target = channel.vcpu else { return Self.ok }
                return HypercallOutcome(result: 0, actions: Self.kicks(reraise(port: port, vcpu: target)))
            }
        case UInt64(EventChannelOp.status):
            guard let f = GuestStruct(memory, argument, size: 12) else { return Self.fail(PVError.fault) }
            let port = f.u32(0)
            guard Self.isValidPort(port) else { return Self.fail(PVError.invalid) }
            let channel = channels[Int(port)]
            f.store(channel.status, 4)
            f.store(UInt32(truncatingIfNeeded: channel.vcpu ?? 0), 8)
            return Self.ok
        default:
            return Self.fail(PVError.invalid)
        }
    }
}
