// Visor's paravirtual interface from the guest side (the ABI is Sources/VisorABI/Hypercall.swift,
// compiled into this module: `Hypercall`, `SchedOp`, `EventChannelOp`, `VCPUInfo`, ...).
//
// Discovery: CPUID 0x40000000 carries Visor's signature and EAX >= 0x40000002; leaf 0x40000002
// gives EAX = hypercall pages (>= 1), EBX = the hypercall-page MSR, ECX = the shared-info MSR.
// `PV.install()` writes the page address of `gk_hypercall_page` to the first (Visor fills it
// with one 32-byte stub per hypercall), and `gk_shared_info | upcallVector` to the second.
// Every pointer a hypercall takes is guest-physical; GuestKit's identity map makes that the
// address itself (stack variables included).
//
// Events: `bind(virq:)`, `bindIPI()`, `send`, `mask`/`unmask`, `close`, `status`. Each port has
// a handler (`PortHandler`, a C-ABI function) and the CPU it is bound to. The upcall (vector
// `upcallVector`, entry `gk_upcall_entry` in pv.S, no EOI) runs `dispatch`: clear
// upcall_pending, take the pending selector with xchg, and for each word scan pending & ~mask,
// clear each pending bit with `lock btr` and call the port's handler. Masking: the vCPU's
// upcall_mask byte is PV's interrupt flag; `enableEvents()` clears it and, if an upcall became
// pending meanwhile, runs `dispatch` in software (with IF off), as Xen's PV guests do.
//
// Time: `systemTime()` reads this vCPU's pvclock record (version loop, TSC scaled by mul/shift);
// `setTimer(absolute:)` is `set_timer_op`: VIRQ_TIMER fires on this vCPU, whose port handler
// records it in the per-CPU timer fields (as the native timer handler does).

public typealias PortHandler = @convention(c) (UInt32, UnsafeMutablePointer<UInt64>?) -> Void

public enum PV {
    /// The upcall vector GuestKit asks for (gk_upcall_entry pushes this number in its frame).
    public static let upcallVector: UInt32 = 0xf0

    /// CPUID says Visor with a hypercall page (set by `detect`).
    nonisolated(unsafe) public private(set) static var available = false
    /// Hypercall page and shared info installed.
    nonisolated(unsafe) public private(set) static var active = false
    /// CPUID 0x40000001 EAX (`major << 16 | minor`) and `xen_version` after install.
    nonisolated(unsafe) public private(set) static var cpuidVersion: UInt32 = 0
    nonisolated(unsafe) public private(set) static var abiVersion: Int64 = 0
    nonisolated(unsafe) public private(set) static var hypercallMSR: UInt32 = 0
    nonisolated(unsafe) public private(set) static var sharedInfoMSR: UInt32 = 0
    /// Send a local APIC EOI after each upcall (`pv_eoi=on`); Visor's upcall needs none.
    nonisolated(unsafe) public static var upcallNeedsEOI = false
    /// Called with the frame after each upcall's dispatch (e.g. a scheduler's preemption point).
    nonisolated(unsafe) public static var upcallHook: InterruptHandler? = nil
    /// Why `detect` said no (for boot messages).
    nonisolated(unsafe) public private(set) static var unavailableReason: StaticString = "not probed"

    // MARK: Discovery and installation

    /// Looks for Visor's signature and the hypercall leaf. No side effects beyond CPUID.
    @discardableResult
    public static func detect() -> Bool {
        let signature = CPU.cpuid(HypervisorCPUID.signatureLeaf)
        guard HypervisorCPUID.isVisorSignature(ebx: signature.ebx, ecx: signature.ecx, edx: signature.edx) else {
            unavailableReason = "no Visor signature at CPUID 0x40000000"
            return false
        }
        guard signature.eax >= PVDiscovery.hypercallLeaf else {
            unavailableReason = "Visor without the hypercall leaf 0x40000002"
            return false
        }
        cpuidVersion = CPU.cpuid(HypervisorCPUID.versionLeaf).eax
        let leaf = CPU.cpuid(PVDiscovery.hypercallLeaf)
        guard leaf.eax >= 1, leaf.ebx != 0, leaf.ecx != 0 else {
            unavailableReason = "Visor offers no hypercall page (leaf 0x40000002 EAX = 0)"
            return false
        }
        hypercallMSR = leaf.ebx
        sharedInfoMSR = leaf.ecx
        available = true
        unavailableReason = "Visor signature and hypercall leaf found"
        return true
    }

    /// Installs the hypercall page and the shared-info page (upcall on `upcallVector`), binds
    /// VIRQ_TIMER for the BSP, and leaves events masked on this vCPU (upcall_mask = 1, IF = 1).
    /// `Interrupts.setUp()` must have run. Returns false (and prints why) if Visor refused.
    public static func install() -> Bool {
        guard available || detect() else { return false }
        let page = gk_hypercall_page_address()
        gk_wrmsr(hypercallMSR, page)
        // Visor fills every stub; an all-zero stub means the page was not filled.
        let stub = UnsafePointer<UInt64>(bitPattern: UInt(page) + UInt(Hypercall.xenVersion) * 32)!
        if stub[0] == 0 && stub[1] == 0 {
            putLine("pv: the hypercall page stayed empty after the MSR write")
            return false
        }
        abiVersion = call(Hypercall.xenVersion, UInt64(XenVersion.version))
        if abiVersion < 0 {
            put("pv: xen_version failed: ")
            put(abiVersion)
            putLine()
            return false
        }
        Interrupts.setGate(vector: upcallVector, entry: gk_upcall_entry_address())
        setUpcallMask(true)
        gk_wrmsr(sharedInfoMSR, gk_shared_info_address() | UInt64(upcallVector))
        setUpcallMask(true)                     // Visor zeroes the page on install
        active = true
        guard bindTimer() else { return false }
        gk_sti()                                // PV's interrupt flag is upcall_mask from now on
        return true
    }

    // MARK: Hypercalls

    /// Hypercall `nr` with up to five arguments; the result (negative: `PVError`).
    @inline(__always)
    public static func call(_ nr: UInt32, _ a1: UInt64 = 0, _ a2: UInt64 = 0, _ a3: UInt64 = 0,
                            _ a4: UInt64 = 0, _ a5: UInt64 = 0) -> Int64 {
        gk_hypercall5(UInt64(nr), a1, a2, a3, a4, a5)
    }

    /// The address (= guest-physical address) of a value, for pointer arguments.
    @inline(__always)
    public static func address<T>(_ p: UnsafeMutablePointer<T>) -> UInt64 { UInt64(UInt(bitPattern: p)) }

    public static func consoleWrite(_ bytes: UnsafePointer<UInt8>, count: Int) -> Int64 {
        var done = 0
        while done < count {
            let n = min(count - done, Int(ConsoleIO.maximumCount))
            let r = call(Hypercall.consoleIO, UInt64(ConsoleIO.write), UInt64(n), UInt64(UInt(bitPattern: bytes + done)))
            if r < 0 { return r }
            done += n
        }
        return 0
    }

    public static func consoleRead(_ bytes: UnsafeMutablePointer<UInt8>, count: Int) -> Int64 {
        call(Hypercall.consoleIO, UInt64(ConsoleIO.read), UInt64(count), address(bytes))
    }

    public static func setTimer(absolute ns: UInt64) -> Int64 { call(Hypercall.setTimerOp, ns) }
    public static func block() -> Int64 { call(Hypercall.schedOp, UInt64(SchedOp.block)) }
    public static func yield() -> Int64 { call(Hypercall.schedOp, UInt64(SchedOp.yield)) }

    public static func shutdown(reason: UInt32) -> Int64 {
        var r = reason
        return call(Hypercall.schedOp, UInt64(SchedOp.shutdown), address(&r))
    }

    // MARK: vCPUs

    /// `vcpu_op(initialise)` then `vcpu_op(up)` for vCPU `index`: it starts in 64-bit mode at
    /// `gk_pv_ap_start` on its GuestKit AP stack with RDI = index, this CPU's CR3/CR4/EFER and
    /// the boot GDT. Returns the first failing result, or 0.
    public static func startVCPU(_ index: UInt32) -> Int64 {
        guard index > 0 && index < UInt32(GK_MAX_CPUS) else { return Int64(PVError.invalid) }
        let ctx = UnsafeMutablePointer<UInt64>.allocate(capacity: VCPUContext.size / 8)
        ctx[VCPUContext.ripOffset / 8] = gk_pv_ap_start_address()
        ctx[VCPUContext.rspOffset / 8] = gk_ap_stack_top(index)
        ctx[VCPUContext.rdiOffset / 8] = UInt64(index)
        ctx[VCPUContext.cr3Offset / 8] = gk_read_cr3()
        ctx[VCPUContext.gdtBaseOffset / 8] = gk_boot_gdt_base()
        ctx[VCPUContext.gdtLimitOffset / 8] = gk_boot_gdt_limit()
        ctx[VCPUContext.codeSelectorOffset / 8] = 0x08
        ctx[VCPUContext.dataSelectorOffset / 8] = 0x10
        ctx[VCPUContext.cr4Offset / 8] = gk_read_cr4()
        ctx[VCPUContext.eferOffset / 8] = gk_rdmsr(0xc000_0080)
        let r = call(Hypercall.vcpuOp, UInt64(VCPUOp.initialise), UInt64(index), address(ctx))
        if r < 0 { return r }
        return call(Hypercall.vcpuOp, UInt64(VCPUOp.up), UInt64(index))
    }

    public static func isUp(_ index: UInt32) -> Int64 {
        call(Hypercall.vcpuOp, UInt64(VCPUOp.isUp), UInt64(index))
    }

    // MARK: Shared info and events

    static var shared: UnsafeMutableRawPointer { UnsafeMutableRawPointer(bitPattern: UInt(gk_shared_info_address()))! }

    /// vCPU `cpu`'s `vcpu_info` (GuestKit's CPU index is the vCPU id under PV start-up).
    public static func vcpuInfo(_ cpu: UInt32) -> UnsafeMutableRawPointer {
        shared + Int(cpu % UInt32(SharedInfo.maximumVCPUs)) * SharedInfo.vcpuInfoSize
    }

    static func byte(_ p: UnsafeMutableRawPointer, _ offset: Int) -> UnsafeMutablePointer<UInt8> {
        (p + offset).assumingMemoryBound(to: UInt8.self)
    }
    static func word(_ p: UnsafeMutableRawPointer, _ offset: Int) -> UnsafeMutablePointer<UInt64> {
        (p + offset).assumingMemoryBound(to: UInt64.self)
    }
    static func pendingWord(_ port: UInt32) -> UnsafeMutablePointer<UInt64> {
        word(shared, SharedInfo.pendingOffset + Int(port / 64) * 8)
    }
    static func maskWord(_ port: UInt32) -> UnsafeMutablePointer<UInt64> {
        word(shared, SharedInfo.maskOffset + Int(port / 64) * 8)
    }

    /// This vCPU's upcall_mask: PV's "interrupts off".
    @inline(__always)
    public static func setUpcallMask(_ masked: Bool) {
        gk_store8(byte(vcpuInfo(gk_cpu_index()), VCPUInfo.upcallMaskOffset), masked ? 1 : 0)
    }
    public static var upcallMasked: Bool { gk_load8(byte(vcpuInfo(gk_cpu_index()), VCPUInfo.upcallMaskOffset)) != 0 }
    public static var upcallPending: Bool { gk_load8(byte(vcpuInfo(gk_cpu_index()), VCPUInfo.upcallPendingOffset)) != 0 }

    /// PV "enable": clears upcall_mask, then handles anything that became pending while it was
    /// set (Visor may not inject for it: the upcall was suppressed by the mask).
    public static func enableEvents() {
        setUpcallMask(false)
        if upcallPending { dispatchInSoftware() }
    }

    /// Runs the dispatcher without an upcall (IF off meanwhile, so a real upcall cannot nest).
    public static func dispatchInSoftware() {
        let flags = gk_irq_save()
        dispatch(frame: nil)
        gk_irq_restore(flags)
    }

    /// The event loop of an upcall: see the top of this file.
    public static func dispatch(frame: UnsafeMutablePointer<UInt64>?) {
        let cpu = gk_cpu_index()
        let info = vcpuInfo(cpu)
        let pendingFlag = byte(info, VCPUInfo.upcallPendingOffset)
        let selector = word(info, VCPUInfo.pendingSelectorOffset)
        repeat {
            gk_store8(pendingFlag, 0)
            var words = gk_exchange64(selector, 0)
            while words != 0 {
                let w = UInt32(words.trailingZeroBitCount)
                words &= words &- 1
                let pending = word(shared, SharedInfo.pendingOffset + Int(w) * 8)
                let masks = word(shared, SharedInfo.maskOffset + Int(w) * 8)
                var bits = gk_load64(pending) & ~gk_load64(masks)
                while bits != 0 {
                    let b = UInt32(bits.trailingZeroBitCount)
                    bits &= bits &- 1
                    let port = w * 64 + b
                    if gk_port_owner(port) != cpu { continue }
                    if gk_test_and_clear_bit64(pending, b) != 0 {
                        _ = gk_call_port_handler(port, frame)
                    }
                }
            }
        } while gk_load8(pendingFlag) != 0
    }

    /// Installs `handler` for `port`, to run on CPU `cpu`.
    public static func setHandler(port: UInt32, cpu: UInt32 = gk_cpu_index(), _ handler: PortHandler?) {
        gk_set_port_handler(port, handler, cpu)
    }

    /// Reads a small argument structure of 32-bit words back after a hypercall.
    static func eventOp(_ op: UInt32, _ words: inout (UInt32, UInt32, UInt32)) -> Int64 {
        withUnsafeMutablePointer(to: &words) { call(Hypercall.eventChannelOp, UInt64(op), address($0)) }
    }

    /// `bind_virq(virq, vcpu)`: the port, or a negative error.
    public static func bind(virq: UInt32, vcpu: UInt32 = gk_cpu_index(), handler: PortHandler?) -> Int64 {
        var a: (UInt32, UInt32, UInt32) = (virq, vcpu, 0)
        let r = eventOp(EventChannelOp.bindVIRQ, &a)
        if r < 0 { return r }
        setHandler(port: a.2, cpu: vcpu, handler)
        return Int64(a.2)
    }

    /// `bind_ipi(vcpu)`: a port that `send` makes pending on `vcpu`.
    public static func bindIPI(vcpu: UInt32 = gk_cpu_index(), handler: PortHandler?) -> Int64 {
        var a: (UInt32, UInt32, UInt32) = (vcpu, 0, 0)
        let r = eventOp(EventChannelOp.bindIPI, &a)
        if r < 0 { return r }
        setHandler(port: a.1, cpu: vcpu, handler)
        return Int64(a.1)
    }

    public static func send(port: UInt32) -> Int64 {
        var a: (UInt32, UInt32, UInt32) = (port, 0, 0)
        return eventOp(EventChannelOp.send, &a)
    }

    public static func close(port: UInt32) -> Int64 {
        var a: (UInt32, UInt32, UInt32) = (port, 0, 0)
        let r = eventOp(EventChannelOp.close, &a)
        if r == 0 { setHandler(port: port, cpu: 0, nil) }
        return r
    }

    /// `evtchn_status`: (result, status, vcpu).
    public static func status(port: UInt32) -> (result: Int64, status: UInt32, vcpu: UInt32) {
        var a: (UInt32, UInt32, UInt32) = (port, 0, 0)
        let r = eventOp(EventChannelOp.status, &a)
        return (r, a.1, a.2)
    }

    /// Sets the port's mask bit in the shared page (no hypercall).
    public static func mask(port: UInt32) { gk_set_bit64(maskWord(port), port % 64) }
    /// `evtchn_unmask`: Visor clears the mask bit and re-raises the upcall if the port is pending.
    public static func unmask(port: UInt32) -> Int64 {
        var a: (UInt32, UInt32, UInt32) = (port, 0, 0)
        return eventOp(EventChannelOp.unmask, &a)
    }
    public static func isPending(port: UInt32) -> Bool { gk_load64(pendingWord(port)) & (1 << UInt64(port % 64)) != 0 }
    public static func isMasked(port: UInt32) -> Bool { gk_load64(maskWord(port)) & (1 << UInt64(port % 64)) != 0 }

    // MARK: Time

    /// System time in ns from this vCPU's pvclock record; 0 if Visor never filled it.
    public static func systemTime() -> UInt64 {
        let t = vcpuInfo(gk_cpu_index()) + VCPUInfo.timeOffset
        let version = (t + 0).assumingMemoryBound(to: UInt32.self)
        while true {
            let v = gk_load32(version)
            if v & 1 != 0 {
                gk_pause()
                continue
            }
            let stamp = gk_load64(word(t, VCPUInfo.timeTSCTimestampOffset - VCPUInfo.timeOffset))
            let system = gk_load64(word(t, VCPUInfo.timeSystemTimeOffset - VCPUInfo.timeOffset))
            let mul = gk_load32((t + (VCPUInfo.timeMultiplierOffset - VCPUInfo.timeOffset)).assumingMemoryBound(to: UInt32.self))
            let shift = Int8(bitPattern: gk_load8(byte(t, VCPUInfo.timeShiftOffset - VCPUInfo.timeOffset)))
            let tsc = gk_rdtsc()
            if gk_load32(version) != v { continue }
            var delta = tsc &- stamp
            if Int64(bitPattern: delta) < 0 { delta = 0 }
            if shift >= 0 { delta <<= UInt64(shift) } else { delta >>= UInt64(-Int(shift)) }
            return system &+ gk_mul_shift32(delta, mul)
        }
    }

    /// Whether the pvclock record has a multiplier (Visor keeps it current).
    public static var hasClock: Bool {
        let t = vcpuInfo(gk_cpu_index()) + VCPUInfo.timeMultiplierOffset
        return gk_load32(t.assumingMemoryBound(to: UInt32.self)) != 0
    }

    /// Binds VIRQ_TIMER on this vCPU to the handler that records firing in the per-CPU fields.
    static func bindTimer() -> Bool {
        let cpu = gk_cpu_index()
        let port = bind(virq: VIRQ.timer, vcpu: cpu, handler: pvTimerHandler)
        if port <= 0 {
            put("pv: bind_virq(timer) failed: ")
            put(port)
            putLine()
            return false
        }
        gk_store32(gk_pv_timer_port_at(cpu), UInt32(port))
        return true
    }

    /// This CPU's VIRQ_TIMER port (0 before `install` / the AP's bring-up).
    public static var timerPort: UInt32 { gk_load32(gk_pv_timer_port_at(gk_cpu_index())) }
}

/// VIRQ_TIMER: the same per-CPU record as the native timer handler, then the timer hook.
let pvTimerHandler: PortHandler = { _, frame in
    let cpu = gk_cpu_index()
    gk_store64(gk_percpu_field(cpu, Timer.fireTSCField), gk_rdtsc())
    gk_store64(gk_percpu_field(cpu, Timer.firedField), 1)
    if let hook = Paravirt.timerHook { hook(frame) }
}

/// The upcall's IDT entry (pv.S) lands here.
@_cdecl("guestkit_upcall")
public func guestkitUpcall(_ frame: UnsafeMutablePointer<UInt64>) {
    if PV.upcallNeedsEOI { APIC.eoi() }
    PV.dispatch(frame: frame)
    if let hook = PV.upcallHook { hook(frame) }
}

/// A vCPU started by `PV.startVCPU` arrives here on its stack.
@_cdecl("guestkit_pv_ap_entry")
public func guestkitPVAPEntry(index: UInt32) -> Never {
    Interrupts.load()
    PV.setUpcallMask(true)
    gk_sti()
    _ = PV.bindTimer()
    gk_store64(gk_percpu_field(index, SMP.onlineField), 1)
    _ = gk_fetch_add64(&gk_cpus_online, 1)
    if let entry = SMP.apEntry { entry(index) }
    while true {
        Paravirt.ops.halt()
    }
}
