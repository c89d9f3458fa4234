// The devices of one domain and the wires between them: where an interrupt comes from and how
// it reaches a vCPU.
//
//   PIT channel 0 ──IRQ0─┐  ┌▶ 8259A pair ──INTR─▶ LINT0 of vCPU 0's local APIC (ExtINT, virtual wire)
//   8042 ────IRQ1, IRQ12─┤  │
//   COM1 (16550A) ──IRQ4─┼──┤
//   CMOS RTC ───────IRQ8─┤  └▶ I/O APIC (IRQ n on pin n, IRQ0 on pin 2) ──▶ IRR of the local APIC(s)
//   ACPI SCI ───────IRQ9─┘       ▲ ▲ EOI of a level-triggered vector (broadcast) ─┘   its entry addresses
//   HPET timers ─────────────────┘ └─ (legacy replacement: timer 0 on IRQ0, timer 1 on IRQ8,
//     (Tn_INT_ROUTE_CNF: pins 20-23)      the PIT's and RTC's lines cut off)
//   APIC timer, IPIs (ICR) ──────────────────▶ IRR of the target vCPU's local APIC
//   NMI IPIs (ICR, I/O APIC entries) ────────▶ the target vCPU's NMI latch, then its engine
//   port 0x92 bit 0 (fast INIT) ─────────────▶ INIT to every vCPU
//
// Every ISA line goes to both interrupt controllers, as on a PC: the guest uses the 8259s until it
// switches to the I/O APIC (Linux does once the ACPI MADT says there is one) and masks the
// other. The I/O APIC's pin 0 (the 8259's output on a PC, for ExtINT through the I/O APIC) is
// not wired: the 8259 reaches the CPU through LINT0.
//
// A device raising its line ends in `VCPUSignal.interrupt` to one vCPU's runner, which wakes
// that vCPU if it is halted or kicks it out of the guest if it is running; the runner, on its
// own thread, then takes the highest-priority interrupt (its APIC's first, then an ExtINT from
// the PIC) and injects it through the engine. See ARCHITECTURE.md, "Interrupts".
//
// Every device model here, and every vCPU's interrupt state, is guarded by one lock, the
// platform lock (as QEMU's big lock guards its devices): guest accesses, host console input and
// the runtime's timer work all take it. Device models stay plain single-threaded state machines.

#if canImport(Glibc)
import Glibc
#endif
import VisorABI
import VisorACPI
import VisorBoot
import VisorCore
import VisorDevices

/// Why a vCPU's runner should look at its interrupt state.
enum VCPUSignal: Equatable {
    /// An interrupt may be pending for it (its APIC's INTR went high, or the PIC's for vCPU 0).
    case interrupt
    /// An INIT IPI: reset and wait for a start-up IPI.
    case initialize
    /// A start-up IPI with this vector: start in real mode at `vector << 12`.
    case startup(vector: UInt8)
}

/// The PC-like platform a domain's guest sees: its devices, on the I/O bus and by MMIO, and the
/// interrupt wiring between them and the vCPUs, on every engine. (The name says which side it is:
/// the domain's devices, not `VisorX86.X86Bus`, the software CPU's door out to all of this.)
/// Guarded by `lock`: `@unchecked Sendable` under that discipline.
final class DevicePlatform: @unchecked Sendable {
    /// The platform lock. Hold it for every call into this object except the `let`s.
    let lock = HostMutex()
    let clock: any TimeSource
    let bus = IOBus()
    let uart: UART16550
    let pic: PIC8259Pair
    let pit: PIT8254
    let rtc: MC146818RTC
    let hpet: HPET
    let ioapic: IOAPIC
    let keyboardController: I8042
    let pm1aEvent: PM1aEvent
    /// One local APIC per vCPU, APIC ID = vCPU index.
    let apics: [LocalAPIC]
    private let router: InterruptRouter

    /// A power-off or debug-exit the guest requested during the last port write.
    private var requestedOutcome: DomainOutcome?
    var unbackedMMIOReads: UInt64 = 0
    var unbackedMMIOWrites: UInt64 = 0
    /// IPIs with delivery modes Visor does not deliver (SMI, the two reserved modes).
    private(set) var ignoredIPIs: UInt64 = 0
    /// Each vCPU's NMI input: an NMI routed to it and not yet handed to its engine. One is
    /// latched; more collapse into it (the engine holds one more while NMIs are blocked).
    private var pendingNMIs: [Bool]
    /// Bumped whenever the guest may have reprogrammed a timer (an access to the PIT, RTC,
    /// a local APIC or IA32_TSC_DEADLINE, or an INIT), so runners know their cached next timer
    /// event is stale.
    var timerGeneration: UInt64 = 0

    /// Notes a guest port access: one to the PIT or RTC bumps `timerGeneration`.
    func noteAccess(port: UInt16) {
        let pitPorts = PIT8254.base..<PIT8254.base + PIT8254.portCount
        let rtcPorts = MC146818RTC.base..<MC146818RTC.base + MC146818RTC.portCount
        if pitPorts.contains(port) || rtcPorts.contains(port) || port == PIT8254.systemControlPort {
            timerGeneration &+= 1
        }
    }

    /// The vCPU whose thread holds the platform lock for its own exit or entry, if any: a
    /// signal to that vCPU needs no kick.
    var actingVCPU: Int?

    /// - Parameters:
    ///   - tscFrequency: the guest TSC's rate, for IA32_TSC_DEADLINE.
    ///   - signal: called with the platform lock held when a vCPU must look at its interrupt
    ///     state; the domain wakes or kicks that vCPU.
    init(vcpuCount: Int, clock: any TimeSource, tscFrequency: UInt64, apicTimerFrequency: UInt64,
         consoleOutput: @escaping @Sendable (UInt8) -> Void) throws {
        self.clock = clock
        let router = InterruptRouter()
        self.router = router
        pic = PIC8259Pair(interruptLine: CPUInterruptLine(vcpu: 0, router: router))
        router.pic = pic
        ioapic = IOAPIC(id: 0, output: IOAPICRouting(router: router))
        router.ioapic = ioapic
        keyboardController = I8042(keyboardLine: ISAInterruptLine(irq: I8042.keyboardIRQ, router: router),
                                   auxiliaryLine: ISAInterruptLine(irq: I8042.auxiliaryIRQ, router: router))
        pm1aEvent = PM1aEvent(sciLine: ISAInterruptLine(irq: Self.sciIRQ, router: router))
        uart = UART16550(sink: ClosureSink(consoleOutput), interruptLine: ISAInterruptLine(irq: 4, router: router))
        pit = PIT8254(clock: clock, interruptLine: ReplaceableTimerLine(irq: 0, router: router))
        rtc = MC146818RTC(clock: clock, epochSeconds: Int64(clamping: wallClockSeconds()),
                          interruptLine: ReplaceableTimerLine(irq: 8, router: router))
        hpet = HPET(clock: clock, output: HPETRouting(router: router))
        apics = (0..<vcpuCount).map { index in
            LocalAPIC(id: UInt8(truncatingIfNeeded: index), clock: clock, ipiSink: RouterIPISink(router: router),
                      interruptLine: CPUInterruptLine(vcpu: index, router: router),
                      eoiSink: IOAPICRouting(router: router), timerFrequency: apicTimerFrequency, tscFrequency: max(tscFrequency, 1),
                      isBootstrapProcessor: index == 0)
        }
        pendingNMIs = [Bool](repeating: false, count: vcpuCount)
        router.platform = self

        try bus.attach(uart, base: PlatformPorts.com1, count: PlatformPorts.uartRegisterCount)
        let debugExit = DebugExit()
        debugExit.onExitRequest = { [unowned self] status in
            if requestedOutcome == nil { requestedOutcome = .debugExit(status: status) }
        }
        try bus.attach(debugExit, base: PlatformPorts.debugExit, count: PlatformPorts.debugExitSize)
        let powerControl = PM1aControl()
        powerControl.onPowerOff = { [unowned self] in
            if requestedOutcome == nil { requestedOutcome = .poweredOff }
        }
        try bus.attach(powerControl, base: PlatformPorts.acpiPM1aControl, count: PlatformPorts.acpiPM1aControlSize)
        try bus.attach(pm1aEvent, base: PlatformPorts.acpiPM1aEvent, count: PlatformPorts.acpiPM1aEventSize)
        try bus.attach(ACPIPMTimer(clock: clock), base: PlatformPorts.acpiPMTimer, count: PlatformPorts.acpiPMTimerSize)
        keyboardController.onReset = { [unowned self] in
            if requestedOutcome == nil { requestedOutcome = .rebooted(how: "8042 reset line") }
        }
        try bus.attach(keyboardController.dataWindow, base: I8042.dataPort, count: 1)
        try bus.attach(keyboardController.statusWindow, base: I8042.statusPort, count: 1)
        try bus.attach(pic.masterPorts, base: PIC8259Pair.masterBase, count: PIC8259Pair.portCount)
        try bus.attach(pic.slavePorts, base: PIC8259Pair.slaveBase, count: PIC8259Pair.portCount)
        try bus.attach(pic.elcrPorts, base: PIC8259Pair.elcrBase, count: PIC8259Pair.portCount)
        try bus.attach(pit.ports, base: PIT8254.base, count: PIT8254.portCount)
        try bus.attach(pit.systemControlPorts, base: PIT8254.systemControlPort, count: 1)
        try bus.attach(rtc.ports, base: MC146818RTC.base, count: MC146818RTC.portCount)
        // Port 0x92's fast INIT goes to every processor, as the chipset's INIT# pin does.
        let portA = SystemControlPortA()
        let vcpuCount = apics.count
        portA.onInit = { [unowned router] in
            for index in 0..<vcpuCount { router.signal(index, .initialize) }
        }
        try bus.attach(portA, base: SystemControlPortA.port, count: 1)
    }

    /// The ACPI tables describing this platform with `vcpuCount` vCPUs, for the boot loader to put
    /// in the BIOS area (Linux's boot protocols hand the kernel their RSDP).
    static func firmwareTables(vcpuCount: Int, virtioDevices: Int = 0) -> FirmwareTables {
        var description = ACPIPlatform(processorCount: vcpuCount)
        description.virtioMMIODevices = (0..<min(virtioDevices, VirtioPlacement.maximumDevices)).map {
            ACPIPlatform.VirtioMMIODevice(base: UInt32(VirtioPlacement.base(ofDevice: $0)),
                                          length: UInt32(VirtioPlacement.stride), interrupt: UInt8(VirtioPlacement.irqs[$0]))
        }
        description.localAPICAddress = UInt32(LocalAPIC.defaultBase)
        description.ioAPICAddress = UInt32(IOAPIC.defaultBase)
        description.sciInterrupt = UInt8(sciIRQ)
        description.pm1aEventBlock = PlatformPorts.acpiPM1aEvent
        description.pm1aControlBlock = PlatformPorts.acpiPM1aControl
        description.pmTimerBlock = PlatformPorts.acpiPMTimer
        description.rtcCenturyIndex = MC146818RTC.Register.century
        description.hpetAddress = HPET.defaultBase
        description.hpetEventTimerBlockID = HPET.eventTimerBlockID
        description.hpetMinimumPeriodicTicks = UInt16(HPET.minimumPeriodTicks)
        let tables = ACPITables.build(description)
        return FirmwareTables(address: tables.base, bytes: tables.bytes, rsdpAddress: tables.rsdpAddress)
    }

    /// The ISA IRQ of the ACPI SCI (the FADT's SCI_INT, level-triggered, active high).
    static let sciIRQ = Int(PlatformPorts.acpiSCIInterrupt)

    /// Presses the ACPI power button if the guest enabled it (PM1_EN.PWRBTN_EN): PWRBTN_STS is
    /// set and the SCI rises, which signals the vCPU the guest routed IRQ 9 to (through the
    /// I/O APIC or the PIC). Returns false, changing nothing, when the button is not enabled:
    /// the status bit of a button nobody listens to would only be found by a later poll.
    func pressPowerButtonIfEnabled() -> Bool {
        guard pm1aEvent.enable & PM1aEvent.Bit.powerButton != 0 else { return false }
        pm1aEvent.pressPowerButton()
        return true
    }

    /// The I/O APIC pin an ISA IRQ reaches: its own number, except the PIT's IRQ 0 on pin 2 (the
    /// MADT's interrupt source override, as on PCs).
    static func ioapicPin(forISAIRQ irq: Int) -> Int { irq == 0 ? 2 : irq }

    /// Drives ISA IRQ line `irq` (to the PIC and the I/O APIC), for devices outside this file
    /// (virtio-mmio). Platform lock held.
    func setISAIRQ(_ irq: Int, level: Bool) {
        ISAInterruptLine(irq: irq, router: router).setLevel(level)
    }

    /// The offset into the I/O APIC's register window, if `address` falls in it.
    func ioapicOffset(_ address: GuestPhysicalAddress) -> UInt64? {
        let a = address.rawValue
        guard a >= IOAPIC.defaultBase, a - IOAPIC.defaultBase < IOAPIC.windowSize else { return nil }
        return a - IOAPIC.defaultBase
    }

    /// The offset into the HPET's register block, if `address` falls in it.
    func hpetOffset(_ address: GuestPhysicalAddress) -> UInt64? {
        let a = address.rawValue
        guard a >= HPET.defaultBase, a - HPET.defaultBase < HPET.windowSize else { return nil }
        return a - HPET.defaultBase
    }

    /// Where the platform sends vCPU signals. Set once by the domain before any vCPU runs.
    func setSignalHandler(_ handler: @escaping (Int, VCPUSignal) -> Void) {
        router.signal = handler
    }

    /// Hands one byte of host input to the UART; false when its receive FIFO is full.
    func receive(_ byte: UInt8) -> Bool {
        uart.receive(byte)
    }

    /// The outcome a device requested since the last call, if any.
    func takeRequestedOutcome() -> DomainOutcome? {
        defer { requestedOutcome = nil }
        return requestedOutcome
    }

    // MARK: Interrupts and time, for vCPU `index`

    /// Brings the timers that interrupt vCPU `index` up to the present: its APIC's, and for
    /// vCPU 0 the PIT's, the RTC's and the HPET's (vCPU 0 keeps the platform's timers: the first
    /// two reach it through the PIC; the HPET's interrupts go wherever the I/O APIC sends them).
    func advanceTimers(for index: Int) {
        guard apics.indices.contains(index) else { return }
        apics[index].advance()
        if index == 0 {
            pit.advance()
            rtc.advance()
            hpet.advance()
        }
    }

    /// When vCPU `index`'s timers next need `advanceTimers`, on the domain clock.
    func nextTimerEvent(for index: Int) -> UInt64? {
        guard apics.indices.contains(index) else { return nil }
        let now = clock.nanoseconds
        var next = apics[index].nextEventTime(after: now)
        if index == 0 {
            for candidate in [pit.nextEventTime(after: now), rtc.nextEventTime(after: now), hpet.nextEventTime(after: now)] {
                if let candidate { next = min(next ?? candidate, candidate) }
            }
        }
        return next
    }

    /// Whether a maskable interrupt is waiting for vCPU `index`.
    func hasPendingInterrupt(for index: Int) -> Bool {
        guard apics.indices.contains(index) else { return false }
        if apics[index].pendingVector() != nil { return true }
        return index == 0 && apics[0].acceptsExternalInterrupts && pic.pendingVector() != nil
    }

    /// The INTA cycle for vCPU `index`: the vector of the interrupt it takes now (its APIC's
    /// highest, else the PIC's through LINT0), or nil when nothing is pending.
    func acknowledgeInterrupt(for index: Int) -> UInt8? {
        guard apics.indices.contains(index) else { return nil }
        let apic = apics[index]
        if apic.pendingVector() != nil { return apic.acknowledge() }
        if index == 0 && apic.acceptsExternalInterrupts && pic.pendingVector() != nil { return pic.acknowledge() }
        return nil
    }

    /// Whether an NMI is waiting for vCPU `index` (it wakes a halted vCPU, IF or not).
    func hasPendingNMI(for index: Int) -> Bool {
        pendingNMIs.indices.contains(index) && pendingNMIs[index]
    }

    /// Takes vCPU `index`'s latched NMI, for its engine's NMI input; false when there is none.
    func takeNMI(for index: Int) -> Bool {
        guard hasPendingNMI(for: index) else { return false }
        pendingNMIs[index] = false
        return true
    }

    // MARK: IPIs

    /// Delivers an IPI some APIC's ICR sent, to every APIC it addresses.
    fileprivate func route(_ ipi: InterprocessorInterrupt) {
        for (index, apic) in apics.enumerated() where apic.isTarget(of: ipi) {
            switch ipi.deliveryMode {
            case .fixed:
                apic.acceptInterrupt(vector: ipi.vector, levelTriggered: ipi.levelTriggered)
            case .lowestPriority:
                // Visor does not arbitrate: the first addressed APIC takes it.
                apic.acceptInterrupt(vector: ipi.vector, levelTriggered: ipi.levelTriggered)
                return
            case .initialization:
                // A level de-assert INIT (legacy MP start-up) does nothing on current processors.
                guard ipi.assert || !ipi.levelTriggered else { continue }
                router.signal(index, .initialize)
            case .startup:
                router.signal(index, .startup(vector: ipi.vector))
            case .nmi:
                // The vector is ignored: an NMI is vector 2 at the target, past IRR and priority,
                // and a software-disabled APIC still accepts it.
                pendingNMIs[index] = true
                router.signal(index, .interrupt)
            case .smi, .reserved3, .reserved7:
                ignoredIPIs &+= 1
            }
        }
    }

    fileprivate func raise(vcpu index: Int) {
        router.signal(index, .interrupt)
    }
}

/// Wires device outputs to the PIC, the I/O APIC and vCPUs. Guarded by the platform lock.
private final class InterruptRouter: @unchecked Sendable {
    weak var pic: PIC8259Pair?
    weak var ioapic: IOAPIC?
    weak var platform: DevicePlatform?
    var signal: (Int, VCPUSignal) -> Void = { _, _ in }
    /// The HPET's LEG_RT_CNF: the PIT's IRQ0 and the RTC's IRQ8 are cut off.
    var legacyReplacement = false
    /// The levels the PIT (IRQ0) and the RTC (IRQ8) drive, cut off or not.
    var replaceableLevels: [Int: Bool] = [:]
}

/// The PIT's IRQ0 or the RTC's IRQ8: an ISA line the HPET's legacy replacement routing cuts off.
private struct ReplaceableTimerLine: InterruptLine {
    let irq: Int
    unowned let router: InterruptRouter
    func setLevel(_ high: Bool) {
        router.replaceableLevels[irq] = high
        if !router.legacyReplacement { ISAInterruptLine(irq: irq, router: router).setLevel(high) }
    }
}

/// The HPET's outputs: I/O APIC pins, and in legacy replacement mode ISA IRQ0 and IRQ8 in place
/// of the PIT's and the RTC's (which drop while cut off and come back with their level after).
private struct HPETRouting: HPETInterruptOutput {
    unowned let router: InterruptRouter
    func setIOAPICPin(_ pin: Int, level: Bool) { router.ioapic?.setPin(pin, level: level) }
    func setLegacyIRQ(_ irq: Int, level: Bool) { ISAInterruptLine(irq: irq, router: router).setLevel(level) }
    func legacyReplacementChanged(_ enabled: Bool) {
        router.legacyReplacement = enabled
        for irq in HPET.legacyIRQs where router.replaceableLevels[irq] == true {
            ISAInterruptLine(irq: irq, router: router).setLevel(!enabled)
        }
    }
}

/// An ISA device's IRQ pin, wired to the PIC and to the I/O APIC.
private struct ISAInterruptLine: InterruptLine {
    let irq: Int
    unowned let router: InterruptRouter
    func setLevel(_ high: Bool) {
        router.pic?.setIRQ(irq, level: high)
        router.ioapic?.setPin(DevicePlatform.ioapicPin(forISAIRQ: irq), level: high)
    }
}

/// The I/O APIC's messages go to the local APICs they address, routed like IPIs; the local
/// APICs' EOI broadcasts go back to the I/O APIC.
private struct IOAPICRouting: IOAPICOutput, EOIBroadcastSink {
    unowned let router: InterruptRouter
    func deliver(_ message: IOAPICMessage) {
        router.platform?.route(InterprocessorInterrupt(icr: message.icrValue, source: 0))
    }
    func endOfInterrupt(vector: UInt8) { router.ioapic?.endOfInterrupt(vector: vector) }
}

/// A processor's INTR input: a rising level is news for that vCPU's runner.
private struct CPUInterruptLine: InterruptLine {
    let vcpu: Int
    unowned let router: InterruptRouter
    func setLevel(_ high: Bool) {
        if high { router.platform?.raise(vcpu: vcpu) }
    }
}

private struct RouterIPISink: IPISink {
    unowned let router: InterruptRouter
    func send(_ ipi: InterprocessorInterrupt) { router.platform?.route(ipi) }
}

/// A byte sink that calls a closure.
struct ClosureSink: ByteSink {
    let body: @Sendable (UInt8) -> Void
    init(_ body: @escaping @Sendable (UInt8) -> Void) { self.body = body }
    func write(_ byte: UInt8) { body(byte) }
}

/// Seconds since the Unix epoch, for the RTC's initial time.
private func wallClockSeconds() -> Int {
    var ts = timespec()
    clock_gettime(CLOCK_REALTIME, &ts)
    return ts.tv_sec
}
