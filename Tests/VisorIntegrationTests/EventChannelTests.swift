// Event channels on the host side: binding, sending, masking, closing and status, and the bits
// each leaves in the guest's shared-info page (pending, mask, selector, upcall_pending), plus
// the upcall decision the runtime makes from them.

import Testing
import VisorABI
import VisorCore
@testable import Visor

@Suite struct EventChannelTests {
    @Test func allocUnboundIsLoopback() throws {
        let h = try PVHarness()
        #expect(h.evtchn(EventChannelOp.allocUnbound, [UInt32(EventChannelOp.domainSelf) | UInt32(EventChannelOp.domainSelf) << 16, 0]).result == 0)
        let port = h.outPort(1)
        #expect(port == 1)
        #expect(h.evtchn(EventChannelOp.status, [port, 9, 9]).result == 0)
        #expect(h.outPort(1) == EventChannelStatus.unbound && h.outPort(2) == 0)
        // Sent from vCPU 1: pending there, and the port now notifies vCPU 1.
        #expect(h.send(port, from: 1) == HypercallOutcome(result: 0))
        #expect(h.pendingBit(port) && h.selector(1) == 1 && h.upcallPending(1) == 1 && h.upcallPending(0) == 0)
        _ = h.evtchn(EventChannelOp.status, [port, 0, 0])
        #expect(h.outPort(2) == 1)
        // The domain's own ID (0) works too; other domains do not.
        #expect(h.evtchn(EventChannelOp.allocUnbound, [0, 0]).result == 0)
        #expect(h.outPort(1) == 2)
        #expect(h.evtchn(EventChannelOp.allocUnbound, [5 | UInt32(EventChannelOp.domainSelf) << 16, 0]).result == PVError.permission)
        #expect(h.evtchn(EventChannelOp.allocUnbound, [UInt32(EventChannelOp.domainSelf) | 5 << 16, 0]).result == PVError.invalid)
    }

    @Test func ipiDeliversToBoundVCPU() throws {
        let h = try PVHarness(vcpus: 3)
        let port = h.bindIPI(2)
        #expect(h.evtchn(EventChannelOp.status, [port, 0, 0]).result == 0)
        #expect(h.outPort(1) == EventChannelStatus.ipi && h.outPort(2) == 2)
        #expect(h.send(port, from: 0) == HypercallOutcome(result: 0, actions: [.kick(2)]))
        #expect(h.pendingBit(port) && h.selector(2) == 1 && h.upcallPending(2) == 1)
        #expect(h.selector(0) == 0 && h.upcallPending(0) == 0)
        #expect(h.pv.upcallVector(for: 2) == UInt8(PVHarness.vector))
        #expect(h.pv.upcallVector(for: 0) == nil)
        // Already pending: nothing new, no kick.
        #expect(h.send(port, from: 0) == HypercallOutcome(result: 0))
        #expect(h.pv.statistics.eventsDelivered == 1)
        // Selector set but upcall cleared by the guest (mid-scan): no new upcall, as in Xen.
        h.setUpcallPending(2, 0)
        h.put64([0], at: PVHarness.sharedInfoAddress + UInt64(SharedInfo.pendingOffset))
        #expect(h.send(port, from: 0).actions == [])
        #expect(h.upcallPending(2) == 0 && h.pendingBit(port))
        // From itself: no kick.
        h.guestAcknowledge(2)
        #expect(h.send(port, from: 2) == HypercallOutcome(result: 0))
        #expect(h.upcallPending(2) == 1)
    }

    @Test func highPortsUseTheirSelectorWord() throws {
        let h = try PVHarness()
        var port: UInt32 = 0
        for _ in 0..<130 { port = h.bindIPI(1) }
        #expect(port == 130)
        #expect(h.send(port).actions == [.kick(1)])
        #expect(h.selector(1) == 1 << 2)
        #expect(h.pendingBit(130) && !h.pendingBit(129))
    }

    @Test func maskAndUnmask() throws {
        let h = try PVHarness()
        let port = h.bindIPI(1)
        h.setMask(port, true)
        #expect(h.send(port) == HypercallOutcome(result: 0))
        #expect(h.pendingBit(port) && h.selector(1) == 0 && h.upcallPending(1) == 0)
        #expect(h.pv.upcallVector(for: 1) == nil)
        #expect(h.evtchn(EventChannelOp.unmask, [port]) == HypercallOutcome(result: 0, actions: [.kick(1)]))
        #expect(!h.maskBit(port) && h.selector(1) == 1 && h.upcallPending(1) == 1)
        #expect(h.pv.upcallVector(for: 1) == UInt8(PVHarness.vector))
        // Unmasking a port that is not masked, or not pending, raises nothing.
        h.guestAcknowledge(1)
        #expect(h.evtchn(EventChannelOp.unmask, [port]) == HypercallOutcome(result: 0))
        h.setMask(port, true)
        #expect(h.evtchn(EventChannelOp.unmask, [port]) == HypercallOutcome(result: 0))
        #expect(h.upcallPending(1) == 0)
        // The upcall mask holds the vector back; the guest's handler clearing upcall_pending ends it.
        _ = h.send(port)
        #expect(h.pv.upcallVector(for: 1) == UInt8(PVHarness.vector))
        h.setUpcallMask(1, 1)
        #expect(h.pv.upcallVector(for: 1) == nil)
        h.setUpcallMask(1, 0)
        h.setUpcallPending(1, 0)
        #expect(h.pv.upcallVector(for: 1) == nil)
        #expect(h.pv.upcallVector(for: 7) == nil)
        #expect(h.pv.upcallVector(for: -1) == nil)
    }

    @Test func closeAndStatus() throws {
        let h = try PVHarness()
        let timer = h.bindVIRQ(VIRQ.timer, vcpu: 1)
        _ = h.evtchn(EventChannelOp.status, [timer, 0, 0])
        #expect(h.outPort(1) == EventChannelStatus.virq && h.outPort(2) == 1)
        #expect(h.send(timer).result == PVError.invalid)  // VIRQ ports are not sent to
        #expect(h.pv.fireTimers(vcpu: 1, now: 0) == [])
        #expect(h.call(Hypercall.setTimerOp, 1, vcpu: 1).result == 0)
        #expect(h.pendingBit(timer))
        #expect(h.evtchn(EventChannelOp.close, [timer]) == HypercallOutcome(result: 0))
        #expect(!h.pendingBit(timer))
        _ = h.evtchn(EventChannelOp.status, [timer, 9, 9])
        #expect(h.outPort(1) == EventChannelStatus.closed && h.outPort(2) == 0)
        #expect(h.evtchn(EventChannelOp.close, [timer]).result == PVError.invalid)
        #expect(h.send(timer).result == PVError.invalid)
        // Rebinding after close works and reuses the lowest port.
        #expect(h.bindVIRQ(VIRQ.timer, vcpu: 1) == timer)
    }

    @Test func bindErrors() throws {
        let h = try PVHarness()
        _ = h.bindVIRQ(VIRQ.timer, vcpu: 0)
        #expect(h.evtchn(EventChannelOp.bindVIRQ, [VIRQ.timer, 0, 0]).result == PVError.exists)
        #expect(h.evtchn(EventChannelOp.bindVIRQ, [VIRQ.timer, 1, 0]).result == 0)
        #expect(h.evtchn(EventChannelOp.bindVIRQ, [VIRQ.timer, 2, 0]).result == PVError.noEntry)
        #expect(h.evtchn(EventChannelOp.bindVIRQ, [1, 0, 0]).result == PVError.invalid)
        #expect(h.evtchn(EventChannelOp.bindVIRQ, [3, 0, 0]).result == PVError.invalid)
        #expect(h.evtchn(EventChannelOp.bindVIRQ, [.max, 0, 0]).result == PVError.invalid)
        #expect(h.evtchn(EventChannelOp.bindIPI, [2, 0]).result == PVError.noEntry)
        #expect(h.evtchn(EventChannelOp.bindIPI, [.max, 0]).result == PVError.noEntry)
        // A vCPU without a vcpu_info in the page cannot take events.
        let big = try PVHarness(vcpus: 33)
        #expect(big.evtchn(EventChannelOp.bindIPI, [32, 0]).result == PVError.invalid)
        #expect(big.evtchn(EventChannelOp.bindVIRQ, [VIRQ.timer, 32, 0]).result == PVError.invalid)
        #expect(big.evtchn(EventChannelOp.allocUnbound, [0, 0], vcpu: 32).result == PVError.invalid)
        #expect(big.call(Hypercall.setTimerOp, 1, vcpu: 32).result == 0)
        #expect(big.pv.upcallVector(for: 32) == nil)
    }

    @Test func portsRunOut() throws {
        let h = try PVHarness()
        for expected in 1..<SharedInfo.maximumPorts {
            #expect(h.evtchn(EventChannelOp.allocUnbound, [0, 0]).result == 0)
            if h.outPort(1) != expected { Issue.record("port \(h.outPort(1)), expected \(expected)"); return }
        }
        #expect(h.evtchn(EventChannelOp.allocUnbound, [0, 0]).result == PVError.noSpace)
        #expect(h.evtchn(EventChannelOp.bindIPI, [0, 0]).result == PVError.noSpace)
        #expect(h.evtchn(EventChannelOp.bindVIRQ, [VIRQ.timer, 0, 0]).result == PVError.noSpace)
        #expect(h.evtchn(EventChannelOp.close, [1023]).result == 0)
        #expect(h.evtchn(EventChannelOp.bindIPI, [0, 0]).result == 0)
        #expect(h.outPort(1) == 1023)
        #expect(h.send(1023).result == 0 && h.pendingBit(1023))
    }

    @Test func portRangeAndCommandErrors() throws {
        let h = try PVHarness()
        for port: UInt32 in [0, 1024, 4095, 4096, .max] {
            for command in [EventChannelOp.close, EventChannelOp.send, EventChannelOp.unmask, EventChannelOp.status] {
                #expect(h.evtchn(command, [port, 0, 0]).result == PVError.invalid, "command \(command) port \(port)")
            }
        }
        // A closed port in range: status says closed; unmask just clears the mask bit.
        #expect(h.evtchn(EventChannelOp.status, [5, 9, 9]).result == 0 && h.outPort(1) == EventChannelStatus.closed)
        h.setMask(5, true)
        #expect(h.evtchn(EventChannelOp.unmask, [5]) == HypercallOutcome(result: 0))
        #expect(!h.maskBit(5))
        // Not implemented in Visor (bind_interdomain, bind_pirq, bind_vcpu) or unknown.
        for command: UInt64 in [0, 2, 8, 10, 11, 1 << 32, .max] {
            #expect(h.call(Hypercall.eventChannelOp, command, PVHarness.scratch).result == PVError.invalid)
        }
    }

    @Test func faults() throws {
        let h = try PVHarness()
        let end = h.memory.size
        let cases: [(UInt32, Int)] = [(EventChannelOp.bindVIRQ, 12), (EventChannelOp.bindIPI, 8), (EventChannelOp.allocUnbound, 8),
                                      (EventChannelOp.close, 4), (EventChannelOp.send, 4), (EventChannelOp.unmask, 4),
                                      (EventChannelOp.status, 12)]
        for (command, size) in cases {
            for address in [end - UInt64(size) + 1, end, 0xc000_0000, 0xffff_ffff, .max - UInt64(size) + 2, .max] {
                #expect(h.call(Hypercall.eventChannelOp, UInt64(command), address).result == PVError.fault,
                        "command \(command) at 0x\(String(address, radix: 16))")
            }
            // The last bytes of RAM are fine.
            try h.memory.fill(0, at: GuestPhysicalAddress(end - UInt64(size)), count: UInt64(size))
            #expect(h.call(Hypercall.eventChannelOp, UInt64(command), end - UInt64(size)).result != PVError.fault)
        }
    }

    /// Pointers into the hole below 4 GiB and past the end of RAM above it, on a domain with
    /// RAM on both sides.
    @Test func faultsAroundTheHole() throws {
        let h = try PVHarness(ramBytes: GuestMemory.lowMemoryLimit + (1 << 20))
        let lowEnd = GuestMemory.lowMemoryLimit, high = GuestMemory.highMemoryStart, highEnd = high + (1 << 20)
        for address in [lowEnd - 2, lowEnd, 0xd000_0000, high - 4, highEnd - 2, highEnd] {
            #expect(h.evtchn(EventChannelOp.bindIPI, [0, 0]).result == 0)  // (sanity: scratch works)
            #expect(h.call(Hypercall.eventChannelOp, UInt64(EventChannelOp.bindIPI), address).result == PVError.fault)
            #expect(h.call(Hypercall.consoleIO, UInt64(ConsoleIO.write), 8, address).result == PVError.fault)
        }
        h.put32([1, 0], at: high)
        #expect(h.call(Hypercall.eventChannelOp, UInt64(EventChannelOp.bindIPI), high).result == 0)
        #expect(h.pv.writeMSR(PVDiscovery.sharedInfoMSR, value: high | 0x40) == .accepted)
        #expect(h.pv.writeMSR(PVDiscovery.sharedInfoMSR, value: (lowEnd - 4096) | 0x40) == .accepted)
        #expect(h.pv.writeMSR(PVDiscovery.sharedInfoMSR, value: lowEnd | 0x40) == .refused)
        #expect(h.pv.writeMSR(PVDiscovery.sharedInfoMSR, value: highEnd | 0x40) == .refused)
        #expect(h.pv.writeMSR(PVDiscovery.hypercallPageMSR, value: highEnd - 4096) == .accepted)
    }

    @Test func eventsWithoutSharedInfoAreDropped() throws {
        let h = try PVHarness(installSharedInfo: false)
        let port = h.bindIPI(1)
        #expect(h.send(port) == HypercallOutcome(result: 0))
        #expect(h.pv.statistics.eventsDropped == 1)
        #expect(h.pv.upcallVector(for: 1) == nil)
        #expect(h.call(Hypercall.schedOp, UInt64(SchedOp.block)).actions == [.block])
        #expect(h.evtchn(EventChannelOp.unmask, [port]) == HypercallOutcome(result: 0))
        // Once the page is installed, events are recorded.
        #expect(h.pv.writeMSR(PVDiscovery.sharedInfoMSR, value: PVHarness.sharedInfoAddress | 0x40) == .accepted)
        #expect(h.send(port).actions == [.kick(1)])
    }
}

@Suite struct HypercallFuzzTests {
    /// Random hypercalls with random arguments over random memory, from random vCPUs and
    /// privilege levels: never a trap, always a result Visor defines, actions that make sense.
    @Test func randomHypercallsNeverTrap() throws {
        var rng = SplitMix64(seed: 0x5eed_f00d)
        let h = try PVHarness(vcpus: 4, ramBytes: 1 << 20)
        // Random bytes everywhere, including the shared-info page.
        var bytes = [UInt8](repeating: 0, count: 1 << 20)
        for i in stride(from: 0, to: bytes.count, by: 8) {
            let r = rng.next()
            for j in 0..<8 { bytes[i + j] = UInt8(truncatingIfNeeded: r >> UInt64(j * 8)) }
        }
        try h.memory.write(bytes, at: GuestPhysicalAddress(0))
        let numbers: [UInt64] = [15, 17, 18, 24, 29, 32]
        let allowed: Set<Int32> = [0, 1, PVError.permission, PVError.noEntry, PVError.fault, PVError.exists, PVError.invalid,
                                   PVError.noSpace, PVError.noSystem, 0x0001_0001]
        func argument(_ rng: inout SplitMix64) -> UInt64 {
            switch rng.next() % 8 {
            case 0: return rng.next() % 16                               // small: commands, vCPUs
            case 1: return rng.next() % (1 << 20)                        // in RAM
            case 2: return (1 << 20) - rng.next() % 32                   // at the end of RAM
            case 3: return 0x20000 + (rng.next() % 64) * 4               // a hot area
            case 4: return UInt64.max - rng.next() % 64                  // overflowing
            case 5: return 0xc000_0000 + rng.next() % 0x4000_0000        // the hole
            case 6: return 1_000_000 + rng.next() % 10_000_000            // times
            default: return rng.next()
            }
        }
        for i in 0..<200_000 {
            let number = rng.next() % 4 == 0 ? rng.next() % 80 : numbers[Int(rng.next() % UInt64(numbers.count))]
            let vcpu = Int(rng.next() % 4)
            let cpl = UInt8(rng.next() % 8 == 0 ? rng.next() % 4 : 0)
            // Sub-operation commands mostly valid, so the calls get past the first check.
            let command = rng.next() % 4 == 0 ? argument(&rng)
                : rng.next() % 16 == 0 ? UInt64(SchedOp.shutdownRequest) : rng.next() % 11
            let registers = HypercallRegisters(rax: number, rdi: command, rsi: argument(&rng), rdx: argument(&rng),
                                               r10: argument(&rng), r8: argument(&rng), cpl: cpl)
            // Keep the hot area and the structures it points at random.
            if i % 7 == 0 { h.put64([argument(&rng), argument(&rng), argument(&rng)], at: 0x20000 + (rng.next() % 64) * 4) }
            if i % 1000 == 0 {
                _ = h.pv.writeMSR(PVDiscovery.sharedInfoMSR, value: argument(&rng))
                _ = h.pv.writeMSR(PVDiscovery.hypercallPageMSR, value: argument(&rng))
                _ = h.pv.receiveConsoleInput([UInt8(truncatingIfNeeded: i)])
                _ = h.pv.requestShutdown(rng.next() % 2 == 0 ? .poweroff : .reboot)
                h.pv.updateTime(vcpu: vcpu, tsc: rng.next(), now: h.context.now)
            }
            h.context.now &+= rng.next() % 100_000
            let outcome = h.pv.dispatch(vcpu: vcpu, registers: registers, context: h.context)
            let fine = allowed.contains(outcome.result) || (outcome.result > 0 && outcome.result <= 4096)
            if !fine { Issue.record("call \(i): \(registers) -> \(outcome.result)"); return }
            if cpl != 0 && outcome != HypercallOutcome(result: PVError.permission) {
                Issue.record("call \(i) at CPL \(cpl): \(outcome)"); return
            }
            for action in outcome.actions {
                switch action {
                case .kick(let v), .resumeVCPU(let v), .startVCPU(let v, _):
                    if !(0..<4).contains(v) || (v == vcpu && action == .kick(v)) {
                        Issue.record("call \(i): bad action \(action)"); return
                    }
                case .yield, .block, .shutdown, .stopVCPU: break
                }
            }
            if outcome.result < 0 && !outcome.actions.isEmpty { Issue.record("call \(i): error with actions"); return }
            for v in 0..<4 {
                _ = h.pv.upcallVector(for: v)
                if let deadline = h.pv.nextTimerDeadline(vcpu: v), deadline <= h.context.now {
                    _ = h.pv.fireTimers(vcpu: v, now: h.context.now)
                }
            }
        }
        #expect(h.pv.statistics.totalHypercalls == 200_000)
        #expect(h.pv.statistics.failedHypercalls > 0 && h.pv.statistics.failedHypercalls < 200_000)
    }
}
