// parked: puts every vCPU in a state it does not leave by itself, so the host's stop path can be
// tested against each one (a stop request must end the run whatever the vCPUs are doing), and
// so the states nothing can wake end the run as `halted` by themselves.
//
// Command line: bsp=<how> (default init), aps=<how>[,<how>...] (default wait; AP n parks as the
// ((n - 1) mod count)-th), cpus=<N> (vCPUs to start, the BSP included; default 1). With more
// vCPUs than N the rest are never started under PV start-up (vcpu_op); the native start-up's
// broadcast INIT and SIPIs start every vCPU, so give N = --vcpus there.
// <how>:
//   spin    cli, then a `pause` loop: running, interrupts off, no exits
//   exits   interrupts off, an endless stream of port writes to an unbacked port (0x80)
//   halt    sti; hlt with no timer armed: halted, wakeable only by an interrupt
//   clihlt  cli; hlt: halted with interrupts off (nothing but INIT can wake it)
//   init    an INIT IPI to itself (ICR shorthand "self"): waits for a start-up IPI
//   port92  bit 0 of System Control Port A (0x92), the chipset's fast INIT: every vCPU waits
//           for a start-up IPI
//   block   PV sched_op block with nothing bound that could wake it (PV only)
//   poll    PV sched_op poll on its timer port, never armed, no timeout (PV only)
//   down    PV vcpu_op down on itself (PV only)
//   wait    (APs only) never started: they wait for a start-up IPI from reset
// The PV modes boot the guest paravirtualized (and start the APs with vcpu_op); the others boot
// it native (APs started with INIT, SIPI, SIPI).
//
// Output: `parked: all parking` on the BSP once every AP is up, then `parked: cpu <N> parks:
// <how>` on each vCPU just before it parks. A mode that returns when it should not have (an
// INIT or vcpu_op down that did not take) prints `parked: cpu <N>: <how> did not park`
// and spins with interrupts on, so the run does not end as `halted` by accident.
// Exit: none by itself. init/port92/clihlt/down on every vCPU (aps=wait counts) end the run
// as halted (status 4); everything else runs until the host stops it (status 6).

/// How a vCPU parks. A struct of constants rather than an enum keeps Hashable out of the guest.
struct ParkMode: Equatable {
    let rawValue: UInt8
    static let spin = ParkMode(rawValue: 0)
    static let exits = ParkMode(rawValue: 1)
    static let halt = ParkMode(rawValue: 2)
    static let cliHalt = ParkMode(rawValue: 3)
    static let selfInit = ParkMode(rawValue: 4)
    static let port92 = ParkMode(rawValue: 5)
    static let block = ParkMode(rawValue: 6)
    static let poll = ParkMode(rawValue: 7)
    static let down = ParkMode(rawValue: 8)
    static let wait = ParkMode(rawValue: 9)

    static let names: [StaticString] = ["spin", "exits", "halt", "clihlt", "init", "port92", "block", "poll", "down", "wait"]

    var name: StaticString { ParkMode.names[Int(rawValue)] }
    var needsPV: Bool { self == .block || self == .poll || self == .down }

    /// The mode called `text`, or nil.
    static func named(_ text: String) -> ParkMode? {
        for (index, name) in names.enumerated() {
            let bytes = UnsafeBufferPointer(start: name.utf8Start, count: name.utf8CodeUnitCount)
            if text.utf8.elementsEqual(bytes) { return ParkMode(rawValue: UInt8(index)) }
        }
        return nil
    }
}

/// How the APs park, in turn (at most `maximumAPModes`).
nonisolated(unsafe) var apModes: [ParkMode] = [.wait]
let maximumAPModes = 8
nonisolated(unsafe) var apsParking: UInt64 = 0
/// Set by the BSP once start-up is over: an AP that parked by INIT before the second start-up
/// IPI was sent would be started again by it.
nonisolated(unsafe) var parkNow: UInt64 = 0

/// System Control Port A: bit 0 is the chipset's fast INIT (fast reset), bit 1 the A20 gate.
let systemControlPortA: UInt16 = 0x92
/// The POST-code port: nothing answers it on Visor, so each write is a plain exit.
let postCodePort: UInt16 = 0x80

func guestMain() {
    let bsp = GuestKit.multiboot?.argument("bsp").map(mode(named:)) ?? .selfInit
    apModes = GuestKit.multiboot?.argument("aps").map(modes(named:)) ?? [.wait]
    let startAPs = !apModes.contains(.wait)
    if !startAPs && apModes.count > 1 {
        putLine("parked: aps=wait cannot be mixed with other modes")
        GuestKit.exit(1)
    }
    let cpus = UInt32(min(max(GuestKit.multiboot?.unsignedArgument("cpus") ?? 1, 1), UInt64(SMP.maxCPUs)))
    if bsp == .wait {
        putLine("parked: bsp=wait makes no sense (the BSP is running); it is for aps=")
        GuestKit.exit(1)
    }
    if bsp.needsPV || apModes.contains(where: { $0.needsPV }) {
        guard Paravirt.setUp() == .pv else {
            put("parked: a PV mode needs PV, which is not available: ")
            putLine(Paravirt.reason)
            GuestKit.exit(1)
        }
    } else {
        Platform.setUp()
    }
    if cpus > 1 && startAPs {
        let online = Paravirt.isPV ? Paravirt.ops.startCPUs(cpus, apEntry) : UInt32(SMP.start(expected: Int(cpus), entry: apEntry))
        if online != cpus {
            put("parked: only ")
            put(online)
            put(" of ")
            put(cpus)
            putLine(" vCPUs came up")
            GuestKit.exit(1)
        }
        // Each AP counts itself, then parks when told.
        while gk_load64(&apsParking) < UInt64(cpus - 1) { gk_pause() }
    }
    Console.withLock { putLine("parked: all parking") }
    gk_store64(&parkNow, 1)
    park(bsp, cpu: 0)
}

func mode(named text: String) -> ParkMode {
    if let mode = ParkMode.named(text) { return mode }
    put("parked: unknown mode ")
    put(text)
    putLine(": use spin, exits, halt, clihlt, init, port92, block, poll, down or wait")
    GuestKit.exit(1)
}

/// `a,b,c` as modes (at most `maximumAPModes`).
func modes(named text: String) -> [ParkMode] {
    var result: [ParkMode] = []
    for word in text.utf8.split(separator: 0x2c) where result.count < maximumAPModes {
        result.append(mode(named: String(decoding: word, as: UTF8.self)))
    }
    return result.isEmpty ? [.wait] : result
}

/// On each started AP, interrupts (ops level) off.
let apEntry: APEntry = { index in
    _ = gk_fetch_add64(&apsParking, 1)
    while gk_load64(&parkNow) == 0 { gk_pause() }
    park(apModes[Int(index &- 1) % apModes.count], cpu: index)
}

/// Parks this vCPU as `how` says; returns only through `didNotPark`.
func park(_ how: ParkMode, cpu: UInt32) -> Never {
    Console.withLock {
        put("parked: cpu ")
        put(cpu)
        put(" parks: ")
        putLine(how.name)
    }
    Console.flush()
    switch how {
    case .spin:
        gk_cli()
        while true { gk_pause() }
    case .exits:
        gk_cli()
        var code: UInt8 = 0
        while true {
            gk_outb(postCodePort, code)
            code &+= 1
        }
    case .halt:
        // No timer armed, the PIC masked: only an interrupt the host makes up could wake it.
        if Paravirt.isPV { PV.setUpcallMask(false) }
        while true { gk_sti_hlt() }
    case .cliHalt:
        while true {
            gk_cli()
            gk_hlt()
        }
    case .selfInit:
        APIC.enable()
        gk_cli()
        // INIT, level assert, shorthand "self": the host parks this vCPU before the next instruction.
        APIC.sendICR(low: 0x4_0000 | 0x4500, destination: 0)
    case .port92:
        gk_cli()
        gk_outb(systemControlPortA, gk_inb(systemControlPortA) | 1)
    case .block:
        // sched_op block unmasks events; nothing bound will raise one. An event left over from
        // the start-up (a timer that fired late) ends one block: handle it and block again.
        while true {
            PV.setUpcallMask(true)
            if PV.upcallPending { PV.dispatchInSoftware() }
            _ = PV.block()
        }
    case .poll:
        let ports = UnsafeMutablePointer<UInt32>.allocate(capacity: 1)
        ports[0] = PV.timerPort
        var argument: (UInt64, UInt64, UInt64) = (PV.address(ports), 1, 0)
        while true {
            if PV.isPending(port: ports[0]) { PV.dispatchInSoftware() }
            _ = withUnsafeMutablePointer(to: &argument) { PV.call(Hypercall.schedOp, UInt64(SchedOp.poll), PV.address($0)) }
        }
    case .down:
        _ = PV.call(Hypercall.vcpuOp, UInt64(VCPUOp.down), UInt64(cpu))
    default:
        break
    }
    didNotPark(how, cpu: cpu)
}

/// The vCPU came back from a state it should not have left: say so, and keep it running with
/// interrupts on so the run cannot end as `halted` because of the failure.
func didNotPark(_ how: ParkMode, cpu: UInt32) -> Never {
    Console.withLock {
        put("parked: cpu ")
        put(cpu)
        put(": ")
        put(how.name)
        putLine(" did not park")
    }
    Console.flush()
    gk_sti()
    while true { gk_pause() }
}
