// Fuzz target `apic`: two local APICs (the BSP's and an AP's) under a script of guest MMIO
// accesses, IA32_TSC_DEADLINE writes, interrupts accepted and acknowledged, and time steps,
// with IPIs routed between them the way `DevicePlatform` routes them (synchronously, from inside
// the ICR write).
//
// Input: the TSC rate (one byte picks it) and 8 bytes of start time, then operations until the
// input ends, each an opcode byte and its operands (the first operand picks the APIC):
//   0 read (offset mostly a register, size 0-16)   1 write (same; mostly 4-byte, any value)
//   2 an interrupt arrives (any vector, edge or level)   3 the core takes an interrupt (INTA)
//   4 time moves on   5 the runtime's timer pass   6 WRMSR IA32_TSC_DEADLINE (with or without
//   the TSC)   7 is this APIC the target of an ICR value   8 INIT (reset)
// Invariants, beyond "never traps": INTR is high exactly when a vector beats the processor
// priority, and the model agrees with its line; after `advance()` the next event is in the
// future; INTA returns the pending vector.

import FuzzSupport
import VisorDevices

/// Routes IPIs like `DevicePlatform.route`: fixed and lowest-priority ones into the addressed APICs.
final class IPIRouter: IPISink {
    var apics: [LocalAPIC] = []
    func send(_ ipi: InterprocessorInterrupt) {
        for apic in apics where apic.isTarget(of: ipi) {
            switch ipi.deliveryMode {
            case .fixed: apic.acceptInterrupt(vector: ipi.vector, levelTriggered: ipi.levelTriggered)
            case .lowestPriority:
                apic.acceptInterrupt(vector: ipi.vector, levelTriggered: ipi.levelTriggered)
                return
            default: break
            }
        }
    }
}

@_cdecl("LLVMFuzzerTestOneInput")
public func fuzzLocalAPIC(_ data: UnsafePointer<UInt8>?, _ count: Int) -> CInt {
    var input = FuzzInput(data, count)
    let tscRates: [UInt64] = [1_000_000_000, 2_500_000_000, 3_999_999_999, 1_000_000, 7]
    let tscFrequency = tscRates[input.below(tscRates.count)]
    let clock = FuzzClock(input.u64() >> 4)
    let router = IPIRouter()
    let lines = [FuzzLine(), FuzzLine()]
    let apics = (0..<2).map {
        LocalAPIC(id: UInt8($0), clock: clock, ipiSink: router, interruptLine: lines[$0],
                  tscFrequency: tscFrequency, isBootstrapProcessor: $0 == 0)
    }
    router.apics = apics
    defer { router.apics = [] }  // the APICs hold the router: break the cycle
    let sizes: [UInt8] = [4, 4, 4, 4, 1, 2, 8, 0, 3, 16]
    func offset(_ input: inout FuzzInput) -> UInt64 {
        let pick = input.byte()
        return pick < 0xc0 ? UInt64(pick % 0x40) * 0x10 : UInt64(input.u16())
    }
    while !input.isAtEnd {
        let op = input.byte()
        let which = Int(op >> 7)
        let apic = apics[which]
        switch op % 9 {
        case 0: _ = apic.read(offset: offset(&input), size: sizes[input.below(sizes.count)])
        case 1:
            let at = offset(&input)
            let size = sizes[input.below(sizes.count)]
            apic.write(offset: at, size: size, value: input.bool() ? UInt64(input.u32()) : input.u64())
        case 2: apic.acceptInterrupt(vector: input.byte(), levelTriggered: input.bool())
        case 3:
            let pending = apic.pendingVector()
            let vector = apic.acknowledge()
            if let pending { require(vector == pending, "INTA gave \(vector), pending was \(pending)") }
        case 4: clock.advance(by: input.scaled())
        case 5:
            apic.advance()
            let now = clock.nanoseconds
            if let next = apic.nextEventTime(after: now) {
                require(next > now, "after advance() at \(now) the next event is at \(next)")
            }
        case 6:
            let deadline = input.scaled()
            if input.bool() {
                apic.writeTSCDeadline(deadline, timeStampCounter: input.scaled())
            } else {
                apic.writeTSCDeadline(deadline)
            }
        case 7: _ = apic.isTarget(of: InterprocessorInterrupt(icr: input.u64(), source: input.byte()))
        default: apic.reset()
        }
        for (apic, line) in zip(apics, lines) {
            require(line.isHigh == (apic.pendingVector() != nil), "INTR \(line.isHigh), pending \(String(describing: apic.pendingVector()))")
            require(apic.interruptLevel == line.isHigh, "model level \(apic.interruptLevel), line \(line.isHigh)")
        }
    }
    return 0
}
